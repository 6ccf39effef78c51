"""The asyncio client: the same methods as ``Client``, awaitable."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Sequence
from typing import Any

import grpc
import numpy as np
from atento.v1 import encoder_pb2 as pb

from . import health
from .base import DEFAULT, ClientBase
from .errors import from_rpc_error
from .messages import AttentionSelection, DTypeName, PoolingName, embed_request, tokenize_request
from .results import (
    EmbedResult,
    Encoding,
    ModelInfo,
    TokenizedText,
    embed_result_from,
    encoding_from,
    model_info_from,
    tokenized_from,
)
from .similarity import cosine_matrix


class AsyncClient(ClientBase):
    """An asyncio atento client with the blocking client's methods, awaitable. Create it inside a
    running event loop; use it as an async context manager, or await ``close``."""

    channels = grpc.aio

    async def _call(self, method: Any, request: Any, timeout: Any) -> Any:
        try:
            return await method(request, timeout=self._seconds(timeout), metadata=self.connection.metadata())
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None

    async def embed(
        self,
        texts: str | Sequence[str],
        *,
        normalize: bool | None = None,
        pooling: PoolingName | None = None,
        token_embeddings: bool = False,
        attention: AttentionSelection | bool | None = None,
        dtype: DTypeName = "float32",
        truncate: bool = False,
        tokens: bool = False,
        timeout: Any = DEFAULT,
    ) -> EmbedResult:
        request = embed_request(
            texts,
            normalize=normalize,
            pooling=pooling,
            token_embeddings=token_embeddings,
            attention=attention,
            dtype=dtype,
            truncate=truncate,
            tokens=tokens,
        )
        return embed_result_from(await self._call(self._stub.Embed, request, timeout))

    async def embed_stream(
        self,
        texts: Iterable[str] | AsyncIterable[str],
        *,
        batch_size: int = 32,
        max_in_flight: int = 8,
        timeout: float | None = None,
        **options: Any,
    ) -> AsyncIterator[Encoding]:
        """Embed any number of texts over one stream, in input order, with bounded memory."""
        slots = asyncio.Semaphore(max_in_flight)

        async def source() -> AsyncIterator[str]:
            if isinstance(texts, AsyncIterable):
                async for text in texts:
                    yield text
            else:
                for text in texts:
                    yield text

        async def requests() -> AsyncIterator[pb.EmbedRequest]:
            batch: list[str] = []
            async for text in source():
                batch.append(text)
                if len(batch) == batch_size:
                    await slots.acquire()
                    yield embed_request(batch, **options)
                    batch = []
            if batch:
                await slots.acquire()
                yield embed_request(batch, **options)

        call = self._stub.EmbedStream(requests(), timeout=timeout, metadata=self.connection.metadata())
        try:
            async for response in call:
                slots.release()
                for message in response.results:
                    yield encoding_from(message)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        finally:
            call.cancel()

    async def tokenize(
        self, texts: str | Sequence[str], *, truncate: bool = False, timeout: Any = DEFAULT
    ) -> list[TokenizedText]:
        return tokenized_from(
            await self._call(self._stub.Tokenize, tokenize_request(texts, truncate=truncate), timeout)
        )

    async def info(self, *, timeout: Any = DEFAULT) -> ModelInfo:
        return model_info_from(await self._call(self._stub.GetModelInfo, pb.GetModelInfoRequest(), timeout))

    async def health(self, service: str = "", *, timeout: Any = DEFAULT) -> str:
        return health.status_name(await self._call(self._health, service, timeout))

    async def similarity(
        self, a: str | Sequence[str] | np.ndarray, b: str | Sequence[str] | np.ndarray | None = None
    ) -> np.ndarray:
        async def vectors(x: str | Sequence[str] | np.ndarray) -> np.ndarray:
            if isinstance(x, np.ndarray):
                return x
            result = await self.embed(x, normalize=True)
            assert result.embeddings is not None
            return result.embeddings

        first = await vectors(a)
        return cosine_matrix(first, first if b is None else await vectors(b))

    async def close(self) -> None:
        for channel in self._channels():
            await channel.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
