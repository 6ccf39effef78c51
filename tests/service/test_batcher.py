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
from atento.service.tokenizer import Encoded, pack_by_width, pack_rows


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
        "row_tokens": 64,
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


def test_oldest_first_within_the_token_budget(runtime: Runtime) -> None:
    batches = lengths_taken(runtime, [(50, False), (10, False), (48, False), (200, False), (52, False)])
    assert batches[0] == [50, 10, 48]  # 108 tokens; the next (200) would pass 160
    assert batches[1:] == [[200], [52]]  # a text over the budget still runs, alone


def test_attention_and_plain_texts_never_share_a_batch(runtime: Runtime) -> None:
    batches = lengths_taken(runtime, [(8, True), (8, False), (8, True), (8, False)])
    assert batches == [[8, 8], [8, 8]]


def test_batch_size_and_attention_memory_bounds(runtime: Runtime) -> None:
    assert lengths_taken(runtime, [(4, False)] * 5, max_batch_size=2) == [[4, 4], [4, 4], [4]]
    cell = 2 * 4 * 4  # tiny: 2 layers x 4 heads x float32 per (query, key)
    # rows of 20 tokens: two texts of 10 need 2 rows (with the slack allowance), three need 3
    batches = lengths_taken(runtime, [(10, True)] * 3, row_tokens=20, max_attention_batch_bytes=2 * 20 * 20 * cell)
    assert batches == [[10], [10], [10]] or batches == [[10, 10], [10]]


def test_packing_puts_several_texts_in_a_row() -> None:
    encoded = [text(n) for n in (30, 5, 40, 12, 3)]
    inputs, places = pack_rows(encoded, row_tokens=48)
    assert inputs["input_ids"].shape == (2, 48)  # 90 tokens in 2 rows of 48, not 5 rows of 40
    for place, item in zip(places, encoded, strict=True):
        assert place.length == len(item)
        row_mask = inputs["attention_mask"][place.row, place.start : place.start + place.length]
        assert len(set(row_mask)) == 1 and row_mask[0] > 0  # one text, one number
    assert sum(p.length for p in places) == (inputs["attention_mask"] > 0).sum()


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


def test_long_texts_run_apart_from_the_packed_short_ones() -> None:
    encoded = [text(n) for n in (10, 200, 20, 90, 30)]
    runs = pack_by_width(encoded, row_tokens=64)
    (short_inputs, short, _), (long_inputs, long, _) = runs
    assert short == [0, 2, 4] and short_inputs["input_ids"].shape == (1, 60)  # 60 tokens: one row, no wider
    assert long == [1, 3] and long_inputs["input_ids"].shape == (2, 200)  # as wide as the longest
