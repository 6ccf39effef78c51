"""The model at work, whatever protocol asked: tokenise, queue for the batcher, await the outputs.

Every front door (the gRPC servicer today) turns its request into texts and ``EmbedOptions``,
calls ``Engine.embed``, and formats the ``Embedded`` it gets back in its own protocol, so all of
them share one batcher, one set of limits and one tokenizer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from . import requests
from .admission import token_bound
from .batcher import Batcher, ItemOutput, WorkItem
from .budget import Hold
from .bundle import Bundle
from .config import Settings
from .metrics import Metrics
from .pooling import SentenceHead
from .requests import EmbedOptions
from .runtime import Runtime
from .tokenizer import Encoded, TextTokenizer
from .tracing import CallTracer, Run

T = TypeVar("T")
# Requests this short are tokenised on the event loop, by design (measured: ~50 us, against
# ~300 us for the round trip to a worker thread); longer ones in a thread, so the loop never stalls.
INLINE_TOKENIZE_CHARS = 2000


@dataclass(frozen=True)
class Embedded:
    """One request's texts, tokenised and computed, in request order."""

    encoded: list[Encoded]
    outputs: list[ItemOutput]
    tokenize_s: float
    embeddings: list[np.ndarray] | None = None  # (size,) float32 each: the sentence embeddings, when pooled


class Engine:
    """What every front door works with once the model is loaded and warm."""

    def __init__(
        self,
        bundle: Bundle,
        runtime: Runtime,
        tokenizer: TextTokenizer,
        batcher: Batcher,
        settings: Settings,
        metrics: Metrics,
        head: SentenceHead | None = None,
    ) -> None:
        self.bundle, self.runtime, self.tokenizer, self.batcher = bundle, runtime, tokenizer, batcher
        self.settings, self.metrics = settings, metrics
        self.head = head or SentenceHead.from_bundle(bundle)  # pooling, Dense, Normalize: after the graph
        self._threads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="atento-cpu")
        self.tracer = CallTracer()  # spans of each call's stages; the server sets a real one when tracing is on

    async def in_thread(self, function: Callable[..., T], *args: Any) -> T:
        """CPU work that would stall the event loop: tokenising long texts, building large responses."""
        return await asyncio.get_running_loop().run_in_executor(self._threads, function, *args)

    async def tokenize(self, texts: Sequence[str], prompt: str = "") -> tuple[list[Encoded], float]:
        start = time.perf_counter()
        with self.tracer.span("tokenize", **{"atento.texts": len(texts)}):
            if sum(len(text) + len(prompt) for text in texts) <= INLINE_TOKENIZE_CHARS:
                encoded = self.tokenizer.encode_each(texts, prompt)  # tens of microseconds: less than a thread hop
            else:
                encoded = await self.in_thread(self.tokenizer.encode_batch, texts, prompt)
        elapsed = time.perf_counter() - start
        self.metrics.tokenize_duration.observe(elapsed)
        return encoded, elapsed

    async def embed(
        self,
        texts: Sequence[str],
        options: EmbedOptions,
        deadline: float | None,
        prefix: str = "",
        hold: Hold | None = None,
        *,
        bulk: bool = False,
    ) -> Embedded:
        """Admit, tokenise, check the lengths and the response size, and wait for every text's outputs.

        ``deadline`` is a ``time.perf_counter()`` value (None: none); ``prefix`` goes in front of
        the field names of refusals (``requests[3].``); ``bulk`` texts fill batches after interactive
        ones. The request is admitted to the queue by an upper bound on its tokens before it is
        tokenised (``admission``), so a full queue refuses it before any work. ``hold`` reserves the
        response's bytes in the budget before any is computed (budget.py); the caller releases it
        once the response has been sent. Cancelled, it drops what is still queued.
        """
        limit, added = self.tokenizer.max_tokens, self.tokenizer.added_tokens
        bound = sum(token_bound(options.prompt + text, limit, added) for text in texts)  # the prompt counts too
        reservation = self.batcher.admit(len(texts), bound, bulk=bulk)
        items: list[WorkItem] = []
        try:
            encoded, tokenize_s = await self.tokenize(texts, options.prompt)
            reservation.settle(sum(len(e) for e in encoded))
            requests.check_lengths(encoded, options.cut, self.tokenizer.max_tokens, prefix)
            limit_bytes = self.settings.max_send_message_bytes
            size = requests.check_response_size(encoded, options, self.bundle.model, limit_bytes)
            if hold is not None:
                await hold.reserve(size, deadline)
            items = self.batcher.submit(encoded, graph=options.graph, deadline=deadline, reservation=reservation)
            outputs: list[ItemOutput] = await asyncio.gather(*(item.future for item in items))
            if self.tracer.records:  # the batches' timings, gathered only for a tracer that keeps them
                self.tracer.batches(items[0].enqueued, batch_runs(items, outputs), time.perf_counter())
        finally:
            for item in items:  # on failure or cancellation, nothing else of this call is worth computing
                item.future.cancel()
            reservation.close()
        return Embedded(encoded, outputs, tokenize_s, self.sentence_embeddings(encoded, outputs, options))

    def sentence_embeddings(
        self, encoded: Sequence[Encoded], outputs: Sequence[ItemOutput], options: EmbedOptions
    ) -> list[np.ndarray] | None:
        """Each text's embedding as its sentence-transformers modules make it (tens of microseconds a text)."""
        if options.pooling is None:
            return None
        return [
            self.head.embed(
                output.hidden,
                pooling=options.pooling,
                prompt_tokens=item.prompt_tokens,
                normalize=options.normalize,
                dimensions=options.dimensions,
            )
            for item, output in zip(encoded, outputs, strict=True)
        ]


def batch_runs(items: Sequence[WorkItem], outputs: Sequence[ItemOutput]) -> list[Run]:
    """The batches a call's texts ran in, (start, seconds in ONNX Runtime) each: texts of one batch
    share its start, which is when they stopped waiting in the queue."""
    runs = {
        round(item.enqueued + output.queue_s, 6): output.inference_s
        for item, output in zip(items, outputs, strict=True)
    }
    return sorted(runs.items())
