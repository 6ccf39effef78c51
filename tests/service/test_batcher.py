"""Batch formation: oldest first, neighbours in length, within the budgets; the queue bound."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest
from atento.service.batcher import Batcher, BatchLimits
from atento.service.bundle import read_bundle
from atento.service.config import Settings
from atento.service.errors import DeadlineExceeded, NotReady, Overloaded
from atento.service.metrics import Metrics
from atento.service.runtime import Runtime
from atento.service.tokenizer import Encoded


@pytest.fixture(scope="module")
def runtime(tiny_bundle: Path) -> Runtime:
    return Runtime(read_bundle(tiny_bundle), Settings(bundle=tiny_bundle, provider="cpu"))


def text(length: int) -> Encoded:
    ids = np.full(length, 2000, dtype=np.int64)
    return Encoded(ids, np.zeros_like(ids), ["x"] * length, [(0, 0)] * length, [0] * length, False)


def limits(**overrides: int) -> BatchLimits:
    values = {
        "max_batch_tokens": 160,
        "max_batch_size": 64,
        "max_queued_texts": 100,
        "max_attention_batch_bytes": 1 << 30,
    }
    return BatchLimits(**{**values, **overrides})


def lengths_taken(runtime: Runtime, pending: list[tuple[int, bool]], **overrides: int) -> list[list[int]]:
    """Submit texts of these lengths (attention or not), oldest first; return the batches formed in turn."""

    async def scenario() -> list[list[int]]:
        batcher = Batcher(runtime, limits(**overrides), Metrics())
        for length, attention in pending:
            batcher.submit([text(length)], attention=attention, deadline=None)
        batches = []
        while batcher.queued:
            batches.append([len(item) for item in batcher._take()])
        return batches

    return asyncio.run(scenario())


def test_oldest_first_with_its_nearest_neighbours_in_length(runtime: Runtime) -> None:
    batches = lengths_taken(runtime, [(50, False), (10, False), (48, False), (200, False), (52, False)])
    assert sorted(batches[0]) == [48, 50, 52]  # 3 x 52 = 156 fits 160; adding 10 would not
    assert batches[1:] == [[10], [200]]  # then the oldest left (10); 200 alone although over budget


def test_attention_and_plain_texts_never_share_a_batch(runtime: Runtime) -> None:
    batches = lengths_taken(runtime, [(8, True), (8, False), (8, True), (8, False)])
    assert batches == [[8, 8], [8, 8]]


def test_batch_size_and_attention_memory_bounds(runtime: Runtime) -> None:
    assert lengths_taken(runtime, [(4, False)] * 5, max_batch_size=2) == [[4, 4], [4, 4], [4]]
    cell = 2 * 4 * 4  # tiny: 2 layers x 4 heads x float32 per (query, key)
    batches = lengths_taken(runtime, [(10, True)] * 3, max_attention_batch_bytes=2 * 10 * 10 * cell)
    assert batches == [[10, 10], [10]]


def test_queue_bound_and_closing(runtime: Runtime) -> None:
    async def scenario() -> None:
        batcher = Batcher(runtime, limits(max_queued_texts=3), Metrics())
        batcher.submit([text(5), text(5)], attention=False, deadline=None)
        with pytest.raises(Overloaded) as raised:
            batcher.submit([text(5), text(5)], attention=False, deadline=None)
        assert dict(raised.value.trailing_metadata())["grpc-retry-pushback-ms"].isdigit()
        batcher.start()
        await batcher.close()  # finishes what was queued
        with pytest.raises(NotReady):
            batcher.submit([text(5)], attention=False, deadline=None)

    asyncio.run(scenario())


def test_expired_texts_are_dropped_not_computed(runtime: Runtime) -> None:
    async def scenario() -> None:
        metrics = Metrics()
        batcher = Batcher(runtime, limits(), metrics)
        (late,) = batcher.submit([text(5)], attention=False, deadline=time.perf_counter() - 1)
        (fine,) = batcher.submit([text(5)], attention=False, deadline=None)
        batcher.start()
        output = await fine.future
        assert output.hidden.shape == (5, 32)
        with pytest.raises(DeadlineExceeded):
            await late.future
        await batcher.close()
        assert metrics.registry.get_sample_value("atento_texts_total") == 1  # only the live text ran
        assert metrics.registry.get_sample_value("atento_dropped_texts_total", {"reason": "deadline"}) == 1

    asyncio.run(scenario())
