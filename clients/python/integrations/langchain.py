"""LangChain's ``Embeddings`` over atento's gRPC client (``pip install 'atento[langchain]'``).

from atento.client.integrations.langchain import AtentoEmbeddings
embeddings = AtentoEmbeddings("127.0.0.1:50051")  # any Client keyword: token=, tls=, timeout= ...
vectors = embeddings.embed_documents(["The dog runs.", "Stocks fell."])
"""

from __future__ import annotations

from typing import Any

from langchain_core.embeddings import Embeddings

from .vectors import DEFAULT_BATCH_SIZE, Embedder


class AtentoEmbeddings(Embeddings):
    """Documents and queries embedded alike (the model's own pooling and normalisation)."""

    def __init__(self, target: str = "127.0.0.1:50051", *, batch_size: int = DEFAULT_BATCH_SIZE, **connection: Any):
        self._embedder = Embedder(target, batch_size, connection)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._embedder.embed(texts)

    def embed_query(self, text: str) -> list[float]:
        return self._embedder.embed([text])[0]

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return await self._embedder.aembed(texts)

    async def aembed_query(self, text: str) -> list[float]:
        return (await self._embedder.aembed([text]))[0]

    def close(self) -> None:
        self._embedder.close()
