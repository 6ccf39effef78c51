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
        """Embed any number of texts over one stream, in input order, with bounded memory."""
        batches = calls.StreamBatches(batch_size=batch_size, max_in_flight=max_in_flight, **options)
        slots = asyncio.Semaphore(batches.max_in_flight)

        async def requests() -> AsyncIterator[pb.EmbedRequest]:
            async for text in _texts_from(texts):
                if (request := batches.add(text)) is not None:
                    await slots.acquire()
                    yield request
            if (last := batches.finish()) is not None:
                await slots.acquire()
                yield last

        call = self._stream(requests(), **self._call_options(timeout))
        try:
            with rpc_errors():
                async for response in call:
                    slots.release()
                    for encoding in batches.decode(response):
                        yield encoding
        finally:
            call.cancel()

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
