"""Batch formation: oldest first, within the budgets, one graph per batch; the queue bound; dropping."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest
from atento.service.batcher import Batcher, BatchLimits
from atento.service.bundle import GraphRole, read_bundle
from atento.service.config import Settings
from atento.service.errors import DeadlineExceeded, NotReady, Overloaded
from atento.service.metrics import Metrics
from atento.service.packing import pack_by_width
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
        "row_tokens": 64,
        "max_queued_texts": 100,
        "max_attention_batch_bytes": 1 << 30,
    }
    return BatchLimits(**{**values, **overrides})


FAST, MAPS = GraphRole.FAST, GraphRole.ATTENTION_MAPS


def lengths_taken(runtime: Runtime, pending: list[tuple[int, GraphRole]], **overrides: int) -> list[list[int]]:
    """Submit texts of these lengths (for the fast or the attention-maps graph), oldest first; return the
    batches formed in turn."""

    async def scenario() -> list[list[int]]:
        batcher = Batcher(runtime, limits(**overrides), Metrics())
        for length, graph in pending:
            batcher.submit([text(length)], graph=graph, deadline=None)
        batches = []
        while batcher.queued:
            batches.append([len(item) for item in batcher._take()])
        return batches

    return asyncio.run(scenario())


def test_oldest_first_within_the_token_budget(runtime: Runtime) -> None:
    batches = lengths_taken(runtime, [(50, FAST), (10, FAST), (48, FAST), (200, FAST), (52, FAST)])
    assert batches[0] == [50, 10, 48]  # 108 tokens; the next (200) would pass 160
    assert batches[1:] == [[200], [52]]  # a text over the budget still runs, alone


def test_the_two_graphs_never_share_a_batch(runtime: Runtime) -> None:
    batches = lengths_taken(runtime, [(8, MAPS), (8, FAST), (8, MAPS), (8, FAST)])
    assert batches == [[8, 8], [8, 8]]


def test_batch_size_and_attention_memory_bounds(runtime: Runtime) -> None:
    assert lengths_taken(runtime, [(4, FAST)] * 5, max_batch_size=2) == [[4, 4], [4, 4], [4]]
    cell = 2 * 4 * 4  # tiny: 2 layers x 4 heads x float32 per (query, key)
    # rows of 20 tokens: two texts of 10 share one row and fit the budget of one row; a third would
    # open a second row, so it waits for the next batch
    batches = lengths_taken(runtime, [(10, MAPS)] * 3, row_tokens=20, max_attention_batch_bytes=1 * 20 * 20 * cell)
    assert batches == [[10, 10], [10]]


def test_attention_bytes_are_counted_as_the_graph_allocates_them(runtime: Runtime) -> None:
    """Texts longer than a row run one to a row, as wide as the longest (``pack_by_width``): one of
    128 tokens and many of 65 take a row of 128 each. Counted as tokens / width rows, as before, 28
    of them passed a budget of 16 rows: 1.75x the bytes the graph then allocated."""
    cell = 2 * 4 * 4
    budget = 16 * 128 * 128 * cell
    pending = [(128, MAPS)] + [(65, MAPS)] * 40
    batches = lengths_taken(runtime, pending, max_attention_batch_bytes=budget, max_batch_tokens=1 << 20)
    assert batches[0] == [128] + [65] * 15  # 16 rows of 128: the budget, exactly
    for lengths in batches:
        runs = pack_by_width([text(n) for n in lengths], 64)
        maps = [runtime.run(run.inputs, MAPS).attention_maps for run in runs]
        allocated = sum(m.nbytes for m in maps if m is not None)  # (rows, layers, heads, S, S) float32
        assert allocated <= budget, (lengths, allocated / budget)


def test_bulk_texts_fill_batches_after_interactive_ones(runtime: Runtime) -> None:
    async def scenario() -> list[list[str]]:
        batcher = Batcher(runtime, limits(max_batch_size=3), Metrics())
        for bulk, name in ((True, "b1"), (True, "b2"), (False, "i1"), (True, "b3"), (False, "i2")):
            reservation = batcher.admit(1, 5, bulk=bulk)
            (item,) = batcher.submit([text(5)], graph=FAST, deadline=None, reservation=reservation)
            names[id(item)] = name
        batches = []
        while batcher.queued:
            batches.append([names[id(item)] for item in batcher._take()])
        for bulk in (True, False):
            batcher.submit([text(5)], graph=FAST, deadline=None, reservation=batcher.admit(1, 5, bulk=bulk))
        lane = batcher._take(interactive_only=True)  # the worker kept free of bulk work
        assert [item.reservation.bulk for item in lane] == [False]
        batcher._take()
        assert batcher.admission.tokens == 0  # every taken text left the queue's budget
        return batches

    names: dict[int, str] = {}
    assert asyncio.run(scenario()) == [["i1", "i2", "b1"], ["b2", "b3"]]


def test_queue_bound_and_closing(runtime: Runtime) -> None:
    async def scenario() -> None:
        batcher = Batcher(runtime, limits(max_queued_texts=3), Metrics())
        batcher.submit([text(5), text(5)], graph=FAST, deadline=None)
        with pytest.raises(Overloaded) as raised:
            batcher.submit([text(5), text(5)], graph=FAST, deadline=None)
        assert dict(raised.value.trailing_metadata())["grpc-retry-pushback-ms"].isdigit()
        batcher.start()
        await batcher.close()  # finishes what was queued
        with pytest.raises(NotReady):
            batcher.submit([text(5)], graph=FAST, deadline=None)

    asyncio.run(scenario())


def test_expired_texts_are_dropped_not_computed(runtime: Runtime) -> None:
    async def scenario() -> None:
        metrics = Metrics()
        batcher = Batcher(runtime, limits(), metrics)
        (late,) = batcher.submit([text(5)], graph=FAST, deadline=time.perf_counter() - 1)
        (fine,) = batcher.submit([text(5)], graph=FAST, deadline=None)
        batcher.start()
        output = await fine.future
        assert output.hidden.shape == (5, 32)
        with pytest.raises(DeadlineExceeded):
            await late.future
        await batcher.close()
        assert metrics.registry.get_sample_value("atento_texts_total") == 1  # only the live text ran
        assert metrics.registry.get_sample_value("atento_dropped_texts_total", {"reason": "deadline"}) == 1

    asyncio.run(scenario())
