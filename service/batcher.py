"""The batcher between the RPCs and ONNX Runtime.

Texts from every concurrent call wait in one queue. A worker takes them oldest first, within a
token budget and a batch-size bound, so nothing starves; it packs them several to a row (see
``packing``), so that short and long texts share a batch with little padding. Texts
whose deadline passed or whose call was cancelled are dropped before they cost anything. Requests
enter the queue through ``admission`` (by an upper bound on their tokens, before tokenising); past
the queue's bounds they are refused with a retry hint derived from the measured throughput. Bulk
texts fill a batch only after every interactive text waiting for the same graph.
ONNX Runtime runs in a worker thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from .admission import Admission, Reservation
from .bundle import GraphRole
from .errors import DeadlineExceeded, NotReady
from .metrics import Metrics
from .packing import PackedRun, pack_by_width
from .runtime import Runtime
from .tokenizer import Encoded

log = logging.getLogger("atento.batcher")


@dataclass(frozen=True)
class BatchLimits:
    max_batch_tokens: int
    max_batch_size: int
    row_tokens: int
    max_queued_texts: int
    max_attention_batch_bytes: int
    max_wait_s: float = 0.0
    retry_after_min_s: float = 0.1
    workers: int = 1
    max_queued_tokens: int = 1 << 20
    bulk_queue_share: float = 0.5


@dataclass(frozen=True)
class ItemOutput:
    hidden: np.ndarray  # (tokens, D) float32
    attention_maps: np.ndarray | None  # (layers, heads, tokens, tokens) float32, from the attention-maps graph
    queue_s: float
    inference_s: float


@dataclass(eq=False)
class WorkItem:
    encoded: Encoded
    graph: GraphRole  # which graph the text must run through; a batch never mixes graphs
    deadline: float | None  # time.perf_counter() value, or None for no deadline
    future: asyncio.Future[ItemOutput]
    reservation: Reservation  # its request's share of the queue, released as the text leaves it
    enqueued: float = field(default_factory=time.perf_counter)

    def __len__(self) -> int:
        return len(self.encoded)


class Batcher:
    def __init__(self, runtime: Runtime, limits: BatchLimits, metrics: Metrics) -> None:
        self.runtime, self.limits, self.metrics = runtime, limits, metrics
        self._pending: list[WorkItem] = []  # arrival order
        self._wakeup = asyncio.Event()
        self._closed = False
        self._executor = ThreadPoolExecutor(max_workers=limits.workers, thread_name_prefix="atento-ort")
        self._workers: list[asyncio.Task[None]] = []
        self._tokens_per_second = 0.0  # moving average, for the retry hint
        self._bulk_running = 0  # bulk-only batches being computed
        self.admission = Admission(
            limits.max_queued_texts, limits.max_queued_tokens, limits.bulk_queue_share, metrics, self._retry_after
        )
        model = runtime.bundle.model
        self._map_bytes_per_cell = model.num_layers * model.num_heads * 4  # float32 per (query, key)

    def start(self) -> None:
        self._workers = [asyncio.create_task(self._work(i), name=f"batcher-{i}") for i in range(self.limits.workers)]

    @property
    def queued(self) -> int:
        return len(self._pending)

    def _retry_after(self, waiting_tokens: int) -> float:
        rate = self._tokens_per_second or 2000.0  # before any measurement, a modest CPU's rate
        return min(30.0, max(self.limits.retry_after_min_s, waiting_tokens / rate))

    def retry_after(self) -> float:
        """Seconds until the queue should have room: what waits, over the measured throughput."""
        return self._retry_after(self.admission.tokens)

    def admit(self, texts: int, tokens: int, *, bulk: bool = False) -> Reservation:
        """Room in the queue for ``texts`` texts of at most ``tokens`` tokens, before tokenising them:
        NotReady when closed, Overloaded when full."""
        if self._closed:
            raise NotReady("the server is shutting down; retry on another replica", reason="SHUTTING_DOWN")
        return self.admission.reserve(texts, tokens, bulk=bulk)

    def submit(
        self,
        encoded: Sequence[Encoded],
        *,
        graph: GraphRole,
        deadline: float | None,
        reservation: Reservation | None = None,
    ) -> list[WorkItem]:
        """Queue one request's tokenised texts within ``reservation`` (admitted now when None)."""
        if self._closed:
            raise NotReady("the server is shutting down; retry on another replica", reason="SHUTTING_DOWN")
        if reservation is None:
            reservation = self.admit(len(encoded), sum(len(e) for e in encoded))
        loop = asyncio.get_running_loop()
        items = [WorkItem(e, graph, deadline, loop.create_future(), reservation) for e in encoded]
        self._pending.extend(items)
        self.metrics.queue_depth.set(len(self._pending))
        self._wakeup.set()
        return items

    async def close(self) -> None:
        """Refuse new texts, finish every queued one, stop the workers."""
        self._closed = True
        self._wakeup.set()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._executor.shutdown(wait=True)

    async def _work(self, worker: int) -> None:
        """One inference worker: its batches run on its own sessions (on CUDA, its own stream)."""
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            if batch is None:
                return
            bulk = all(item.reservation.bulk for item in batch)
            self._bulk_running += bulk
            try:
                outputs = await loop.run_in_executor(self._executor, self._compute, batch, worker)
            except Exception as error:  # an ORT failure fails this batch's calls, not the server
                log.exception("batch of %d texts failed", len(batch))
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(error)
                continue
            finally:
                self._bulk_running -= bulk
                self._wakeup.set()  # a worker held back from bulk work may take it now
            for item, output in zip(batch, outputs, strict=True):
                if not item.future.done():  # cancelled while computing: nobody waits any more
                    item.future.set_result(output)

    async def _next_batch(self) -> list[WorkItem] | None:
        while True:
            self._drop_dead()
            if self._pending and self._may_take():
                if self.limits.max_wait_s > 0 and not self._closed:
                    await self._wait_for_more()
                    self._drop_dead()
                    if not self._pending:
                        continue
                lane = self.limits.workers > 1 and self._bulk_running >= self.limits.workers - 1
                return self._take(interactive_only=lane)
            if self._closed and not self._pending:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()

    def _may_take(self) -> bool:
        """With several workers, bulk-only batches never take the last free one: it stays for
        interactive texts, which then wait for no bulk batch at all."""
        if self.limits.workers == 1 or self._bulk_running < self.limits.workers - 1:
            return True
        return any(not item.reservation.bulk for item in self._pending)

    async def _wait_for_more(self) -> None:
        """Hold an under-full batch back until the oldest text has waited max_wait_s."""
        limit = self._pending[0].enqueued + self.limits.max_wait_s
        while len(self._pending) < self.limits.max_batch_size and (remaining := limit - time.perf_counter()) > 0:
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return

    def _drop_dead(self) -> None:
        """Remove texts nobody waits for (cancelled) or that are already too late (deadline)."""
        now = time.perf_counter()
        alive = []
        for item in self._pending:
            expired = item.deadline is not None and item.deadline <= now
            if item.future.done():  # its call ended: gRPC cancels a call whose deadline passed too
                self.metrics.dropped.labels("deadline" if expired else "cancelled").inc()
            elif expired:
                self.metrics.dropped.labels("deadline").inc()
                item.future.set_exception(DeadlineExceeded("the deadline passed while the text was queued"))
            else:
                alive.append(item)
                continue
            item.reservation.release(1, len(item))
        if len(alive) != len(self._pending):
            self._pending = alive
            self.metrics.queue_depth.set(len(alive))

    def _take(self, interactive_only: bool = False) -> list[WorkItem]:
        """The oldest interactive texts for the graph of the oldest one, then (unless
        ``interactive_only``: the worker kept free of bulk work) the oldest bulk texts for that
        graph, while they fit the budgets."""
        ordered = [item for item in self._pending if not item.reservation.bulk]
        if not interactive_only:
            ordered += [item for item in self._pending if item.reservation.bulk]
        graph = ordered[0].graph
        batch: list[WorkItem] = []
        tokens = 0
        for item in ordered:
            if item.graph is not graph:
                continue
            if batch and not self._fits(batch, item, tokens + len(item)):
                break
            batch.append(item)
            tokens += len(item)
        if graph is GraphRole.ATTENTION_MAPS:
            while len(batch) > 1 and self._attention_bytes(batch) > self.limits.max_attention_batch_bytes:
                batch.pop()  # the estimate packed it tighter than pack_by_width does
        chosen = {id(item) for item in batch}
        self._pending = [item for item in self._pending if id(item) not in chosen]
        self.metrics.queue_depth.set(len(self._pending))
        for item in batch:
            item.reservation.release(1, len(item))
        return batch

    def _fits(self, batch: list[WorkItem], item: WorkItem, tokens: int) -> bool:
        if len(batch) + 1 > self.limits.max_batch_size or tokens > self.limits.max_batch_tokens:
            return False
        if item.graph is not GraphRole.ATTENTION_MAPS:
            return True
        return self._attention_estimate([*batch, item]) <= self.limits.max_attention_batch_bytes

    def _attention_estimate(self, batch: list[WorkItem]) -> int:
        """The attention maps' bytes, as ``pack_by_width`` runs them: short texts packed into rows of
        up to ``row_tokens`` (counted as perfectly packed: ``_take`` checks the real layout after),
        longer ones one to a row as wide as the longest. Per run: rows x width x width x cell."""
        row = self.limits.row_tokens
        short = [len(item) for item in batch if len(item) <= row]
        long = [len(item) for item in batch if len(item) > row]
        cells = 0
        if short:
            width = max(max(short), min(row, sum(short)))
            cells += -(-sum(short) // width) * width * width
        if long:
            cells += len(long) * max(long) ** 2
        return cells * self._map_bytes_per_cell

    def _attention_bytes(self, batch: list[WorkItem]) -> int:
        """The attention maps' bytes the attention-maps graph will allocate for ``batch``: exactly."""
        runs = pack_by_width([item.encoded for item in batch], self.limits.row_tokens, self.runtime.row_align)
        return sum(attention_cells(run) for run in runs) * self._map_bytes_per_cell

    def _compute(self, batch: list[WorkItem], worker: int = 0) -> list[ItemOutput]:
        """In a worker thread: pack (``pack_by_width``), run ONNX Runtime, slice each text back out."""
        start = time.perf_counter()
        graph = batch[0].graph
        hidden: list[np.ndarray | None] = [None] * len(batch)
        maps: list[np.ndarray | None] = [None] * len(batch)
        padded = real = 0
        for run in pack_by_width([item.encoded for item in batch], self.limits.row_tokens, self.runtime.row_align):
            outputs = self.runtime.run(run.inputs, graph, worker)
            padded += run.inputs["input_ids"].size
            for i, place in zip(run.texts, run.placements, strict=True):
                text = place.columns
                hidden[i] = outputs.hidden[place.row, text]
                if outputs.attention_maps is not None:
                    maps[i] = outputs.attention_maps[place.row, :, :, text, text]
                real += place.length
        inference_s = time.perf_counter() - start
        self._tokens_per_second = 0.8 * self._tokens_per_second + 0.2 * (real / max(inference_s, 1e-6))
        m = self.metrics
        m.inference_duration.labels(graph).observe(inference_s)
        m.batch_size.labels(graph).observe(len(batch))
        m.batch_tokens.observe(padded)
        m.batch_padding_ratio.observe(1 - real / padded)
        m.texts.inc(len(batch))
        m.tokens.inc(real)
        results = []
        for item, states, attn in zip(batch, hidden, maps, strict=True):
            assert states is not None
            queue_s = start - item.enqueued
            m.queue_duration.observe(queue_s)
            m.input_tokens.observe(len(item))
            results.append(ItemOutput(states, attn, queue_s, inference_s))
        return results


def attention_cells(run: PackedRun) -> int:
    """(query, key) pairs per layer and head of one run: rows x width x width."""
    rows, width = run.inputs["input_ids"].shape  # (B, S)
    return int(rows * width * width)
