"""Every SDK method, blocking and asyncio, against a real server; results equal the raw stub's."""

from __future__ import annotations

import asyncio
import subprocess
import sys

import grpc
import numpy as np
import pytest
from atento.client import AsyncClient, AtentoError, Attention, AttentionSelection, Client, EmbedResult, similarity
from atento.v1 import encoder_pb2 as pb

from tests.servers import ServerProcess

TEXTS = ["A single man in possession of a good fortune.", "Mr. Darcy danced only once.", "Lizzy laughed."]


def raw(tensor: pb.Tensor) -> np.ndarray | None:
    if not tensor.ByteSize():  # an absent field
        return None
    return np.frombuffer(tensor.data, dtype={1: "<f4", 2: "<f2"}[tensor.dtype]).reshape(tuple(tensor.shape))


def check_against_stub(result: EmbedResult, response: pb.EmbedResponse) -> None:
    assert result.model == response.model and result.usage.tokens == response.usage.tokens
    assert len(result.results) == len(response.results)
    for ours, theirs in zip(result.results, response.results, strict=True):
        for field, proto_field in (
            ("embedding", "embedding"),
            ("token_embeddings", "token_embeddings"),
            ("attention_maps", "attention"),
        ):
            mine, stubs = getattr(ours, field), raw(getattr(theirs, proto_field))
            assert (mine is None) == (stubs is None), field
            if mine is not None:
                np.testing.assert_array_equal(mine, stubs)
        assert [(t.id, t.text, t.start, t.end, t.special) for t in ours.tokens] == [
            (t.id, t.text, t.start, t.end, t.special) for t in theirs.tokens
        ]
        assert ours.attention_layers == list(theirs.attention_layers) and ours.truncated == theirs.truncated


def test_import_pulls_in_no_server_or_export_dependencies() -> None:
    code = (
        "import sys, atento.client, atento.client.cli, atento.client.bench;"
        "heavy = {'torch', 'onnxruntime', 'tokenizers', 'onnx', 'transformers'} & set(sys.modules);"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_blocking_client_round_trips(minilm_server: ServerProcess) -> None:
    stub = minilm_server.stub()
    request = pb.EmbedRequest(
        texts=TEXTS,
        token_embeddings=True,
        attention=pb.AttentionSpec(layers=[2, 4], heads=[0]),
        output_dtype=pb.DTYPE_FLOAT16,
    )
    with Client(minilm_server.target) as client:
        selection = AttentionSelection([2, 4], [0])
        result = client.embed(TEXTS, token_embeddings=True, attention=selection, dtype="float16")
        check_against_stub(result, stub.Embed(request, timeout=30))
        # the names before the rename still work: Attention for the selection, .attention for the maps
        assert Attention is AttentionSelection and result.results[0].attention is result.results[0].attention_maps
        assert result.embeddings is not None and result.embeddings.shape == (3, 384)
        first = result.results[0].embedding
        assert first is not None and not first.flags.writeable and not first.flags.owndata  # a view on the bytes

        plain = client.embed(TEXTS[0])
        check_against_stub(plain, stub.Embed(pb.EmbedRequest(texts=[TEXTS[0]]), timeout=30))

        tokenized = client.tokenize(TEXTS)
        expected = stub.Tokenize(pb.TokenizeRequest(texts=TEXTS), timeout=30)
        assert [t.ids for t in tokenized] == [[tok.id for tok in r.tokens] for r in expected.results]

        info = client.info()
        theirs = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=30)
        assert (info.name, info.hidden_size, info.num_layers, info.bundle_sha256) == (
            theirs.name,
            theirs.hidden_size,
            theirs.num_layers,
            theirs.bundle_sha256,
        )
        assert (
            info.default_pooling == "mean" and info.limits.max_texts_per_request == theirs.limits.max_texts_per_request
        )

        assert client.health() == "SERVING" and client.health("liveness") == "SERVING"
        with pytest.raises(AtentoError) as unknown:
            client.health("no.such.Service")
        assert unknown.value.code == grpc.StatusCode.NOT_FOUND

        streamed = list(client.embed_stream(iter(TEXTS * 5), batch_size=2))
        assert len(streamed) == 15
        for i, encoding in enumerate(streamed):
            np.testing.assert_allclose(
                encoding.embedding, result.results[i % 3].embedding.astype(np.float32), atol=2e-3
            )


def test_similarity_of_texts_and_embeddings(minilm_server: ServerProcess) -> None:
    with Client(minilm_server.target) as client:
        matrix = client.similarity(
            ["The dog runs in the park.", "A puppy is running outside.", "Stock prices fell today."]
        )
        embeddings = client.embed(["The dog runs in the park.", "Stock prices fell today."]).embeddings
    assert matrix.shape == (3, 3)
    np.testing.assert_allclose(np.diag(matrix), 1.0, atol=1e-5)
    assert matrix[0, 1] > matrix[0, 2] + 0.3  # alike meanings score higher
    assert embeddings is not None
    np.testing.assert_allclose(similarity(embeddings), matrix[np.ix_([0, 2], [0, 2])], atol=1e-5)


def test_async_client_round_trips(minilm_server: ServerProcess) -> None:
    stub = minilm_server.stub()

    async def scenario() -> None:
        async with AsyncClient(minilm_server.target) as client:
            result = await client.embed(TEXTS, token_embeddings=True, attention=True, tokens=True)
            check_against_stub(
                result,
                stub.Embed(
                    pb.EmbedRequest(texts=TEXTS, token_embeddings=True, attention=pb.AttentionSpec()), timeout=30
                ),
            )
            assert [t.ids for t in await client.tokenize(TEXTS)] == [
                t.ids for t in Client(minilm_server.target).tokenize(TEXTS)
            ]
            assert (await client.info()).name == "all-MiniLM-L6-v2"
            assert await client.health() == "SERVING"

            async def texts():  # an async source works too
                for text in TEXTS * 4:
                    yield text

            streamed = [e async for e in client.embed_stream(texts(), batch_size=5)]
            assert len(streamed) == 12
            np.testing.assert_allclose(streamed[4].embedding, result.results[1].embedding, atol=1e-5)
            matrix = await client.similarity(TEXTS[:2], TEXTS)
            assert matrix.shape == (2, 3)

    asyncio.run(scenario())


def test_bad_arguments_fail_before_any_call() -> None:
    with Client("127.0.0.1:1") as client:
        with pytest.raises(ValueError, match="pooling must be one of"):
            client.embed("x", pooling="maximum")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="dtype must be one of"):
            client.embed("x", dtype="int8")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="several targets must be IP:port"):
        Client(["a.example:1", "b.example:1"])
    with pytest.raises(ValueError, match="go together"):
        Client("127.0.0.1:1", client_certificate=b"-----BEGIN CERTIFICATE-----")
