"""Load: 64 concurrent callers with mixed request sizes; overload only past the queue bound."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from tests.reliability.conftest import scale
from tests.reliability.load import drive
from tests.servers import running_server


def test_64_mixed_callers_get_nothing_but_ok(minilm_bundle: Path, record: Callable[..., None]) -> None:
    with running_server(minilm_bundle) as server:
        result = asyncio.run(drive(server.target, clients=64, seconds=scale(15, 60)))
        assert result.calls >= 64
        assert set(result.codes) == {"OK"}, result.codes
        assert server.metric("atento_queue_depth") == 0
    record(
        seconds=result.seconds,
        calls=result.calls,
        texts_per_s=result.texts / result.seconds,
        tokens_per_s=result.tokens / result.seconds,
        p50_s=result.percentile(50),
        p99_s=result.percentile(99),
        statuses=dict(result.codes),
    )


def test_overload_is_only_resource_exhausted(minilm_bundle: Path, record: Callable[..., None]) -> None:
    """A queue bound of 256 texts against ~1000 offered: refusals, and no other error."""
    with running_server(minilm_bundle, "--max-queued-texts", "256") as server:
        result = asyncio.run(drive(server.target, clients=64, seconds=scale(10, 30), seed=1))
        assert set(result.codes) <= {"OK", "RESOURCE_EXHAUSTED"}, result.codes
        assert result.codes["RESOURCE_EXHAUSTED"] > 0 and result.codes["OK"] > 0
        assert (
            server.metric("atento_rejected_requests_total", reason="queue_full") == result.codes["RESOURCE_EXHAUSTED"]
        )
    record(calls=result.calls, statuses=dict(result.codes))
