"""The batcher between the RPCs and ONNX Runtime.

Texts from every concurrent call wait in one queue. A worker takes them oldest first, within a
token budget and a batch-size bound, so nothing starves; it packs them several to a row (see
``packing``), so that short and long texts share a batch with little padding. Texts
whose deadline passed or whose call was cancelled are dropped before they cost anything. Past the
queue bound, submissions are refused with a retry hint derived from the measured throughput.
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

from .bundle import GraphRole
from .errors import DeadlineExceeded, NotReady, Overloaded, Quota
from .metrics import Metrics
from .packing import pack_by_width
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
        metrics.queue_capacity.set(limits.max_queued_texts)
        model = runtime.bundle.model
        self._map_bytes_per_cell = model.num_layers * model.num_heads * 4  # float32 per (query, key)

    def start(self) -> None:
        self._workers = [asyncio.create_task(self._work(), name=f"batcher-{i}") for i in range(self.limits.workers)]

    @property
    def queued(self) -> int:
        return len(self._pending)

    def retry_after(self) -> float:
        """Seconds until the queue should have room: what waits, over the measured throughput."""
        waiting = sum(len(item) for item in self._pending)
        rate = self._tokens_per_second or 2000.0  # before any measurement, a modest CPU's rate
        return min(30.0, max(self.limits.retry_after_min_s, waiting / rate))

    def submit(self, encoded: Sequence[Encoded], *, graph: GraphRole, deadline: float | None) -> list[WorkItem]:
        """Queue one request's texts, or refuse them all: NotReady when closed, Overloaded when full."""
        if self._closed:
            raise NotReady("the server is shutting down; retry on another replica", reason="SHUTTING_DOWN")
        if len(self._pending) + len(encoded) > self.limits.max_queued_texts:
            self.metrics.rejected.labels("queue_full").inc()
            retry_after = self.retry_after()
            log.info("queue full: refused %d texts, retry after %.0f ms", len(encoded), retry_after * 1000)
            raise Overloaded(
                f"queue full: {len(self._pending)} texts waiting, bound {self.limits.max_queued_texts}",
                retry_after,
                quota=Quota("max_queued_texts", f"at most {self.limits.max_queued_texts} texts wait for a batch"),
            )
        loop = asyncio.get_running_loop()
        items = [WorkItem(e, graph, deadline, loop.create_future()) for e in encoded]
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

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._next_batch()
            if batch is None:
                return
            try:
                outputs = await loop.run_in_executor(self._executor, self._compute, batch)
            except Exception as error:  # an ORT failure fails this batch's calls, not the server
                log.exception("batch of %d texts failed", len(batch))
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(error)
                continue
            for item, output in zip(batch, outputs, strict=True):
                if not item.future.done():  # cancelled while computing: nobody waits any more
                    item.future.set_result(output)

    async def _next_batch(self) -> list[WorkItem] | None:
        while True:
            self._drop_dead()
            if self._pending:
                if self.limits.max_wait_s > 0 and not self._closed:
                    await self._wait_for_more()
                    self._drop_dead()
                    if not self._pending:
                        continue
                batch = self._take()
                self.metrics.queue_depth.set(len(self._pending))
                return batch
            if self._closed:
                return None
            self._wakeup.clear()
            await self._wakeup.wait()

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
        if len(alive) != len(self._pending):
            self._pending = alive
            self.metrics.queue_depth.set(len(alive))

    def _take(self) -> list[WorkItem]:
        """The oldest texts for the oldest text's graph, while they fit the budgets."""
        graph = self._pending[0].graph
        batch: list[WorkItem] = []
        tokens = longest = 0
        for item in self._pending:
            if item.graph is not graph:
                continue
            grown_tokens, grown_longest = tokens + len(item), max(longest, len(item))
            if batch and not self._fits(len(batch) + 1, grown_tokens, grown_longest, graph):
                break
            batch.append(item)
            tokens, longest = grown_tokens, grown_longest
        chosen = {id(item) for item in batch}
        self._pending = [item for item in self._pending if id(item) not in chosen]
        return batch

    def _fits(self, count: int, tokens: int, longest: int, graph: GraphRole) -> bool:
        if count > self.limits.max_batch_size or tokens > self.limits.max_batch_tokens:
            return False
        if graph is not GraphRole.ATTENTION_MAPS:
            return True
        width = max(longest, min(self.limits.row_tokens, tokens))
        rows = -(-tokens // width) + 1  # packing leaves at most about one row's worth of slack
        return rows * width * width * self._map_bytes_per_cell <= self.limits.max_attention_batch_bytes

    def _compute(self, batch: list[WorkItem]) -> list[ItemOutput]:
        """In a worker thread: pack (``pack_by_width``), run ONNX Runtime, slice each text back out."""
        start = time.perf_counter()
        graph = batch[0].graph
        hidden: list[np.ndarray | None] = [None] * len(batch)
        maps: list[np.ndarray | None] = [None] * len(batch)
        padded = real = 0
        for run in pack_by_width([item.encoded for item in batch], self.limits.row_tokens, self.runtime.row_align):
            outputs = self.runtime.run(run.inputs, graph)
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
