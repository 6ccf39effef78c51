"""LlamaIndex's ``BaseEmbedding`` over atento's gRPC client (``pip install 'atento[llamaindex]'``).

from atento.client.integrations.llamaindex import AtentoEmbedding
Settings.embed_model = AtentoEmbedding("127.0.0.1:50051")  # any Client keyword: token=, tls= ...
"""

from __future__ import annotations

from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.bridge.pydantic import PrivateAttr

from .vectors import DEFAULT_BATCH_SIZE, Embedder


class AtentoEmbedding(BaseEmbedding):
    """Texts and queries embedded alike; LlamaIndex's ``embed_batch_size`` sets the texts per call."""

    _embedder: Embedder = PrivateAttr()

    def __init__(
        self,
        target: str = "127.0.0.1:50051",
        *,
        model_name: str = "atento",
        embed_batch_size: int = DEFAULT_BATCH_SIZE,
        **connection: Any,
    ) -> None:
        super().__init__(model_name=model_name, embed_batch_size=embed_batch_size)
        self._embedder = Embedder(target, embed_batch_size, connection)

    @classmethod
    def class_name(cls) -> str:
        return "AtentoEmbedding"

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._embedder.embed([query])[0]

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._embedder.embed([text])[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._embedder.embed(texts)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return (await self._embedder.aembed([query]))[0]

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return (await self._embedder.aembed([text]))[0]

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return await self._embedder.aembed(texts)
