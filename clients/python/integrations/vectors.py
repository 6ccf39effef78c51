"""What both adapters do: texts -> lists of floats over atento's gRPC clients, in batches."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from ..aio import AsyncClient
from ..client import Client

DEFAULT_BATCH_SIZE = 64  # texts per Embed call: well under the server's default limit of 256


class Embedder:
    """One blocking ``Client``, and an ``AsyncClient`` made on first async use in the running event
    loop (a grpc.aio channel belongs to the loop it was made in). ``connection`` holds the clients'
    keyword options (``token=``, ``tls=``, ``timeout=`` ...)."""

    def __init__(self, target: str, batch_size: int, connection: dict[str, Any]) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, not {batch_size}")
        self.target, self.batch_size, self.connection = target, batch_size, connection
        self._client: Client | None = None
        self._async: tuple[asyncio.AbstractEventLoop, AsyncClient] | None = None

    @property
    def client(self) -> Client:
        if self._client is None:
            self._client = Client(self.target, **self.connection)
        return self._client

    def _async_client(self) -> AsyncClient:
        loop = asyncio.get_running_loop()
        if self._async is None or self._async[0] is not loop:
            self._async = (loop, AsyncClient(self.target, **self.connection))
        return self._async[1]

    def _batches(self, texts: Sequence[str]) -> list[list[str]]:
        return [list(texts[i : i + self.batch_size]) for i in range(0, len(texts), self.batch_size)]

    def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for batch in self._batches(texts):
            vectors.extend(_rows(self.client.embed(batch).embeddings))
        return vectors

    async def aembed(self, texts: Sequence[str]) -> list[list[float]]:
        client = self._async_client()
        vectors: list[list[float]] = []
        for batch in self._batches(texts):
            vectors.extend(_rows((await client.embed(batch)).embeddings))
        return vectors

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _rows(embeddings: Any) -> list[list[float]]:
    """(texts, hidden) float32 -> lists of Python floats, as the frameworks want them."""
    if embeddings is None:  # pragma: no cover - the default pooling always yields embeddings
        raise RuntimeError("the server returned no pooled embeddings")
    rows: list[list[float]] = embeddings.tolist()
    return rows
