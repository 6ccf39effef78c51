"""The LangChain and LlamaIndex adapters (atento.client.integrations) against a real server: the same
vectors as Client.embed, blocking and asyncio, in batches; and no import cost without them."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import numpy as np
import pytest
from atento.client import Client

from tests.servers import ServerProcess

TEXTS = [f"{i}: It is a truth universally acknowledged." for i in range(7)]


def expected(server: ServerProcess) -> np.ndarray:
    with Client(server.target, timeout=30) as client:
        vectors = client.embed(TEXTS).embeddings
    assert vectors is not None
    return vectors


def test_importing_the_client_imports_no_framework() -> None:
    code = (
        "import sys, atento.client, atento.client.integrations as i;"
        "heavy = {m for m in sys.modules if m.split('.')[0] in ('langchain_core', 'llama_index', 'pydantic')};"
        "assert not heavy, sorted(heavy)[:5];"
        "assert i.__all__ == ['AtentoEmbeddings', 'AtentoEmbedding']"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_langchain_embeddings(minilm_server: ServerProcess) -> None:
    pytest.importorskip("langchain_core", reason="the optional extra atento[langchain] is not installed")
    from atento.client.integrations import AtentoEmbeddings
    from langchain_core.embeddings import Embeddings

    embeddings = AtentoEmbeddings(minilm_server.target, batch_size=3, timeout=30)  # 7 texts: 3 calls
    assert isinstance(embeddings, Embeddings)
    want = expected(minilm_server)
    np.testing.assert_allclose(embeddings.embed_documents(TEXTS), want, atol=1e-6)
    np.testing.assert_allclose(embeddings.embed_query(TEXTS[2]), want[2], atol=1e-6)

    async def both() -> tuple[list[list[float]], list[float]]:
        return await embeddings.aembed_documents(TEXTS), await embeddings.aembed_query(TEXTS[4])

    documents, query = asyncio.run(both())
    np.testing.assert_allclose(documents, want, atol=1e-6)
    np.testing.assert_allclose(query, want[4], atol=1e-6)
    embeddings.close()


def test_llamaindex_embedding(minilm_server: ServerProcess) -> None:
    pytest.importorskip("llama_index.core", reason="the optional extra atento[llamaindex] is not installed")
    from atento.client.integrations import AtentoEmbedding
    from llama_index.core.base.embeddings.base import BaseEmbedding

    model = AtentoEmbedding(minilm_server.target, embed_batch_size=4, timeout=30)
    assert isinstance(model, BaseEmbedding)
    want = expected(minilm_server)
    np.testing.assert_allclose(model.get_text_embedding_batch(TEXTS), want, atol=1e-6)
    np.testing.assert_allclose(model.get_query_embedding(TEXTS[1]), want[1], atol=1e-6)
    np.testing.assert_allclose(asyncio.run(model.aget_text_embedding_batch(TEXTS)), want, atol=1e-6)
    np.testing.assert_allclose(asyncio.run(model.aget_query_embedding(TEXTS[3])), want[3], atol=1e-6)
