"""Client and AsyncClient over fake RPCs, in-process: both send what the core builds, with the
connection's deadline and token, decode alike, translate gRPC errors, and stream in input order."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import numpy as np
import pytest
from atento.client import AsyncClient, AttentionSelection, Client, OverloadedError
from atento.client.calls import EMBED, HEALTH_CHECK
from atento.client.health import HealthCheckResponse
from atento.v1 import encoder_pb2 as pb

pytestmark = pytest.mark.fast


class Refused(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.RESOURCE_EXHAUSTED

    def details(self) -> str:
        return "queue full"

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("grpc-retry-pushback-ms", "250"),)


def answer(request: pb.EmbedRequest) -> pb.EmbedResponse:
    """One pooled vector per text: [index of the text's number, 1], so results show their order."""
    vectors = [np.array([float(t.split()[-1]), 1.0], dtype="<f4") for t in request.texts]
    results = [pb.Encoding(embedding=pb.Tensor(dtype=pb.DTYPE_FLOAT32, shape=[2], data=v.tobytes())) for v in vectors]
    return pb.EmbedResponse(results=results, model="fake")


class Recorder:
    """Stands in for the gRPC method table: records each call and answers it."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, Any, dict[str, Any]]] = []

    def unary(self, method: str) -> Any:
        def call(request: Any, **options: Any) -> Any:
            self.sent.append((method, request, options))
            if method == HEALTH_CHECK:
                return HealthCheckResponse(status=1)
            if method == EMBED and "refuse" in request.texts:
                raise Refused()
            return answer(request)

        return call

    def stream(self, requests: Iterator[pb.EmbedRequest], **options: Any) -> Answers:
        self.sent.append(("EmbedStream", None, options))
        return Answers(requests)


class Answers:
    """A stream call: each request answered as it is read, so the client's in-flight bound holds."""

    def __init__(self, requests: Any) -> None:
        self.requests = requests

    def __iter__(self) -> Iterator[pb.EmbedResponse]:
        return (answer(request) for request in self.requests)

    async def __aiter__(self) -> AsyncIterator[pb.EmbedResponse]:
        async for request in self.requests:
            yield answer(request)

    def cancel(self) -> None:
        pass


def fake(client: Client | AsyncClient, recorder: Recorder, *, awaitable: bool = False) -> None:
    def wrap(method: str) -> Any:
        call = recorder.unary(method)

        async def later(request: Any, **options: Any) -> Any:
            return call(request, **options)

        return later if awaitable else call

    client._unary = {method: wrap(method) for method in client._unary}
    client._stream = recorder.stream


def test_blocking_client_sends_the_core_calls_with_deadline_and_token() -> None:
    recorder = Recorder()
    with Client("127.0.0.1:1", token="t0k", timeout=7) as client:
        fake(client, recorder)
        result = client.embed(["n 1", "n 2"], attention=AttentionSelection([1]), dtype="float16", timeout=2)
        assert result.model == "fake" and result.embeddings is not None and result.embeddings[:, 0].tolist() == [1, 2]
        assert client.health() == "SERVING"
        method, request, options = recorder.sent[0]
        assert method == EMBED and list(request.attention.layers) == [1] and request.output_dtype == pb.DTYPE_FLOAT16
        assert options == {"timeout": 2, "metadata": (("authorization", "Bearer t0k"),)}
        assert recorder.sent[1][2]["timeout"] == 7  # the connection's default deadline
        matrix = client.similarity(["n 1", "n 2"], np.array([[1.0, 1.0]]))
        assert matrix.shape == (2, 1) and recorder.sent[-1][1].normalize
        with pytest.raises(OverloadedError, match="queue full") as refused:
            client.embed("refuse")
        assert refused.value.retry_after == 0.25
        streamed = list(client.embed_stream((f"n {i}" for i in range(7)), batch_size=3, tokens=True))
        assert [e.embedding[0] for e in streamed if e.embedding is not None] == list(range(7))
        assert recorder.sent[-1][2]["timeout"] is None  # a stream has no deadline unless given one


def test_async_client_sends_the_same_calls() -> None:
    async def scenario() -> list[tuple[str, Any, dict[str, Any]]]:
        recorder = Recorder()
        async with AsyncClient("127.0.0.1:1", token="t0k", timeout=7) as client:
            fake(client, recorder, awaitable=True)
            result = await client.embed(["n 1", "n 2"], attention=AttentionSelection([1]), dtype="float16", timeout=2)
            assert result.embeddings is not None and result.embeddings[:, 0].tolist() == [1, 2]
            assert await client.health() == "SERVING"
            assert (await client.similarity(["n 1", "n 2"])).shape == (2, 2)
            with pytest.raises(OverloadedError, match="queue full"):
                await client.embed("refuse")

            async def texts() -> AsyncIterator[str]:
                for i in range(5):
                    yield f"n {i}"

            streamed = [e async for e in client.embed_stream(texts(), batch_size=2)]
            assert [e.embedding[0] for e in streamed if e.embedding is not None] == list(range(5))
        assert recorder.sent[-1][0] == "EmbedStream"
        return recorder.sent

    sent = asyncio.run(scenario())
    blocking = Recorder()
    with Client("127.0.0.1:1", token="t0k", timeout=7) as client:
        fake(client, blocking)
        client.embed(["n 1", "n 2"], attention=AttentionSelection([1]), dtype="float16", timeout=2)
    assert sent[0] == blocking.sent[0]  # the same method, request and call options
