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

from . import requests
from .batcher import Batcher, ItemOutput
from .budget import Hold
from .bundle import Bundle
from .config import Settings
from .metrics import Metrics
from .requests import EmbedOptions
from .runtime import Runtime
from .tokenizer import Encoded, TextTokenizer

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
    ) -> None:
        self.bundle, self.runtime, self.tokenizer, self.batcher = bundle, runtime, tokenizer, batcher
        self.settings, self.metrics = settings, metrics
        self._threads = ThreadPoolExecutor(max_workers=2, thread_name_prefix="atento-cpu")

    async def in_thread(self, function: Callable[..., T], *args: Any) -> T:
        """CPU work that would stall the event loop: tokenising long texts, building large responses."""
        return await asyncio.get_running_loop().run_in_executor(self._threads, function, *args)

    async def tokenize(self, texts: Sequence[str]) -> tuple[list[Encoded], float]:
        start = time.perf_counter()
        if sum(len(text) for text in texts) <= INLINE_TOKENIZE_CHARS:
            encoded = self.tokenizer.encode_each(texts)  # tens of microseconds: less than a thread hop
        else:
            encoded = await self.in_thread(self.tokenizer.encode_batch, texts)
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
    ) -> Embedded:
        """Tokenise, check the lengths and the response size, and wait for every text's outputs.

        ``deadline`` is a ``time.perf_counter()`` value (None: none); ``prefix`` goes in front of
        the field names of refusals (``requests[3].``). Cancelled, it drops what is still queued.
        ``hold`` reserves the response's bytes in the budget before any is computed (budget.py);
        the caller releases it once the response has been sent.
        """
        encoded, tokenize_s = await self.tokenize(texts)
        requests.check_lengths(encoded, options.cut, self.tokenizer.max_tokens, prefix)
        size = requests.check_response_size(encoded, options, self.bundle.model, self.settings.max_send_message_bytes)
        if hold is not None:
            await hold.reserve(size, deadline)
        items = self.batcher.submit(encoded, graph=options.graph, deadline=deadline)
        try:
            outputs: list[ItemOutput] = await asyncio.gather(*(item.future for item in items))
        finally:
            for item in items:  # on failure or cancellation, nothing else of this call is worth computing
                item.future.cancel()
        return Embedded(encoded, outputs, tokenize_s)
