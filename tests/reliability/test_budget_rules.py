"""The response-bytes budget's rules, in process: its default, waiting for room, refusing, sharing."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from atento.service.budget import (
    DEFAULT_BYTES,
    MIB,
    ResponseBudget,
    StreamShare,
    budget_bytes,
    container_memory_limit,
)
from atento.service.errors import Overloaded
from atento.service.metrics import Metrics

pytestmark = pytest.mark.fast


def test_the_default_is_a_quarter_of_the_container_memory_limit(tmp_path: Path) -> None:
    v2, v1 = tmp_path / "memory.max", tmp_path / "memory.limit_in_bytes"
    v2.write_text("4294967296\n")
    assert container_memory_limit((v2, v1)) == 4 << 30
    assert budget_bytes(0, container_memory_limit((v2, v1))) == 1 << 30
    v2.write_text("max\n")  # cgroup v2 without a limit
    assert container_memory_limit((v2, v1)) is None
    assert budget_bytes(0, None) == DEFAULT_BYTES
    v1.write_text(f"{(1 << 63) - 4096}\n")  # cgroup v1 without a limit: a huge number
    assert container_memory_limit((tmp_path / "absent", v1)) is None
    v1.write_text("2147483648\n")
    assert container_memory_limit((tmp_path / "absent", v1)) == 2 << 30
    assert budget_bytes(300, 2 << 30) == 300 * MIB  # the flag wins


def test_work_waits_for_room_and_is_refused_past_its_deadline() -> None:
    async def run() -> None:
        budget = ResponseBudget(100 * MIB, 0.25, Metrics())
        assert await budget.reserve(60 * MIB, None) == 60 * MIB
        with pytest.raises(Overloaded) as refused:  # 60 + 60 > 75 (large responses: 3/4)
            await budget.reserve(60 * MIB, time.perf_counter() + 0.1)
        assert refused.value.retry_after_s == 0.25
        assert budget.metrics.rejected.labels("response_budget")._value.get() == 1
        assert await budget.reserve(1 * MIB, None) == MIB  # a small one still fits in the last quarter
        waiting = asyncio.create_task(budget.reserve(60 * MIB, time.perf_counter() + 5))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        budget.release(60 * MIB)
        assert await waiting == 60 * MIB
        budget.release(61 * MIB)
        assert budget.used == 0
        assert await budget.reserve(500 * MIB, None) == 100 * MIB  # larger than the budget: served alone

    asyncio.run(run())


def test_a_stream_reads_no_further_past_its_share() -> None:
    async def run() -> None:
        budget = ResponseBudget(100 * MIB, 0.1, Metrics())
        share = StreamShare(budget, 10 * MIB)
        first, second = share.hold(), share.hold()
        await first.reserve(8 * MIB, None)
        await share.room()  # within its share
        await second.reserve(8 * MIB, None)
        room = asyncio.create_task(share.room())
        await asyncio.sleep(0.05)
        assert not room.done()
        first.release()
        await asyncio.wait_for(room, 1)
        share.close()  # what the stream never sent goes back
        assert budget.used == 0 and share.held == 0

    asyncio.run(run())
