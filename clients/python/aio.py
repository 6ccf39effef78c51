"""The asyncio client: the blocking client's methods, awaitable, over the same ``calls`` core."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from typing import TypeVar, Unpack

import grpc
import numpy as np
from atento.v1 import encoder_pb2 as pb

from . import calls
from .base import DEFAULT, ClientBase, Timeout
from .calls import Call, Texts, Vectors
from .errors import rpc_errors
from .messages import EmbedOptions
from .results import EmbedResult, Encoding, ModelInfo, TokenizedText
from .resume import Unanswered
from .similarity import similarity

R = TypeVar("R")


async def _texts_from(texts: Iterable[str] | AsyncIterable[str]) -> AsyncIterator[str]:
    """Plain and async iterables alike, read one text at a time."""
    if isinstance(texts, AsyncIterable):
        async for text in texts:
            yield text
    else:
        for text in texts:
            yield text


async def _requests(
    batches: calls.StreamBatches, texts: Iterable[str] | AsyncIterable[str]
) -> AsyncIterator[pb.EmbedRequest]:
    async for text in _texts_from(texts):
        if (request := batches.add(text)) is not None:
            yield request
    if (last := batches.finish()) is not None:
        yield last


class AsyncClient(ClientBase):
    """An asyncio atento client with the blocking client's methods, awaitable. Create it inside a
    running event loop; use it as an async context manager, or await ``close``."""

    channels = grpc.aio

    async def _send(self, call: Call[R], timeout: Timeout) -> R:
        with rpc_errors():
            response = await self._unary[call.method](call.request, **self._call_options(timeout))
        return call.decode(response)

    async def embed(self, texts: Texts, *, timeout: Timeout = DEFAULT, **options: Unpack[EmbedOptions]) -> EmbedResult:
        return await self._send(calls.embed(texts, **options), timeout)

    async def embed_stream(
        self,
        texts: Iterable[str] | AsyncIterable[str],
        *,
        batch_size: int = 32,
        max_in_flight: int = 8,
        timeout: float | None = None,
        **options: Unpack[EmbedOptions],
    ) -> AsyncIterator[Encoding]:
        """Embed any number of texts over one stream, in input order, with bounded memory; a stream
        that a draining or dying server ends is continued on a new one (see ``resume``); ``timeout``
        is each stream's deadline. An error the input raises is raised here."""
        batches = calls.StreamBatches(batch_size=batch_size, max_in_flight=max_in_flight, **options)
        source = _requests(batches, texts)
        unanswered = Unanswered(self.connection.retry)
        slots = asyncio.Semaphore(batches.max_in_flight)  # one per unanswered request
        reading = asyncio.Lock()  # one read of the input at a time, whichever stream asks

        async def take_slot(ended: asyncio.Event) -> bool:
            """A slot for the next request, unless the stream ends first (then none is kept)."""
            acquiring, ending = asyncio.ensure_future(slots.acquire()), asyncio.ensure_future(ended.wait())
            try:
                await asyncio.wait((acquiring, ending), return_when=asyncio.FIRST_COMPLETED)
            finally:
                ending.cancel()
                if ended.is_set() and acquiring.done() and not acquiring.cancelled():
                    slots.release()
                acquiring.cancel()
            return not ended.is_set()

        async def read(number: int) -> None:
            """Read request ``number`` into ``unanswered`` unless a stream already did; a slot is held
            for it (given back if not used). Shielded by the caller: a stream cancelled mid-read must
            not lose what the input gave."""
            async with reading:
                if unanswered.at(number) is None:
                    if unanswered.failure is not None:
                        raise unanswered.failure
                    try:
                        request = await anext(source, None)
                    except Exception as error:
                        unanswered.failure = error
                        raise
                    if request is not None:
                        unanswered.sent(request)
                        return
            slots.release()  # already read (by an ended stream), or the input is over

        async def requests(ended: asyncio.Event) -> AsyncIterator[pb.EmbedRequest]:
            # gRPC reads this on a task of its own that an ended call does not always cancel: ``ended``
            # stops it, so an old stream never takes a slot or a request from the next one.
            number = unanswered.first  # what an ended stream left unanswered goes first
            while not ended.is_set():
                if unanswered.at(number) is None:
                    if not await take_slot(ended):
                        return
                    await asyncio.shield(read(number))
                if (request := unanswered.at(number)) is None:  # the input is over
                    return
                yield request
                number += 1

        while True:
            ended = asyncio.Event()
            call = self._stream(requests(ended), **self._call_options(timeout))
            with unanswered.attempt(call, ended) as attempt, rpc_errors():
                async for response in call:
                    unanswered.answered()
                    slots.release()
                    for encoding in batches.decode(response):
                        yield encoding
                return
            await asyncio.sleep(attempt.wait)

    async def tokenize(
        self, texts: Texts, *, truncate: bool = False, timeout: Timeout = DEFAULT
    ) -> list[TokenizedText]:
        return await self._send(calls.tokenize(texts, truncate=truncate), timeout)

    async def info(self, *, timeout: Timeout = DEFAULT) -> ModelInfo:
        return await self._send(calls.info(), timeout)

    async def health(self, service: str = "", *, timeout: Timeout = DEFAULT) -> str:
        return await self._send(calls.health_check(service), timeout)

    async def similarity(self, a: Vectors, b: Vectors | None = None, *, timeout: Timeout = DEFAULT) -> np.ndarray:
        inputs = calls.similarity_inputs(a, b)
        return similarity(*[x if isinstance(x, np.ndarray) else await self._send(x, timeout) for x in inputs])

    async def close(self) -> None:
        for channel in self._channels():
            await channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
