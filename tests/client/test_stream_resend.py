"""embed_stream's resend rule over fake streams, in-process: a stream that ends UNAVAILABLE (or with
gRPC core's INTERNAL in its place) is continued on a new one that sends the unanswered requests
first; every result arrives once, in order; other errors, and a spent retry policy, are raised."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
from atento.client import AsyncClient, Client, InternalError, Retry, UnavailableError
from atento.client.resume import CORE_INTERNAL
from atento.v1 import encoder_pb2 as pb

from tests.client.test_offline import answer

pytestmark = pytest.mark.fast
TEXTS = [f"n {i}" for i in range(20)]
QUICK = Retry(attempts=3, initial_backoff_s=0.001, max_backoff_s=0.001)


class Ended(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return ()


DRAINED = Ended(grpc.StatusCode.UNAVAILABLE, "the server is shutting down")
CORE_LOST = Ended(grpc.StatusCode.INTERNAL, CORE_INTERNAL)
SERVER_FAULT = Ended(grpc.StatusCode.INTERNAL, "internal error (the server logged the details)")


def first_numbers(requests: list[pb.EmbedRequest]) -> list[int]:
    return [int(r.texts[0].split()[-1]) for r in requests]


class Streams:
    """Stands in for EmbedStream: the first ``breaking`` streams read three requests, answer
    ``answers`` of them and end with ``error``; the streams after them answer every request."""

    def __init__(self, error: grpc.RpcError, breaking: int = 1, answers: int = 1) -> None:
        self.error, self.breaking, self.answers = error, breaking, answers
        self.sent: list[list[pb.EmbedRequest]] = []  # per stream, the requests it was given

    def __call__(self, requests: Any, **options: Any) -> Any:
        seen: list[pb.EmbedRequest] = []
        self.sent.append(seen)
        breaks = len(self.sent) <= self.breaking
        error, answers = self.error, self.answers

        def step(request: pb.EmbedRequest) -> tuple[list[pb.EmbedResponse], grpc.RpcError | None]:
            """What this stream answers on reading ``request``, and the error that ends it (the third)."""
            seen.append(request)
            if breaks and len(seen) == 3:
                return [answer(r) for r in seen[:answers]], error
            return ([] if breaks else [answer(request)]), None

        class Call:
            def __iter__(self) -> Iterator[pb.EmbedResponse]:
                for request in requests:
                    responses, ending = step(request)
                    yield from responses
                    if ending is not None:
                        raise ending

            async def __aiter__(self) -> AsyncIterator[pb.EmbedResponse]:
                async for request in requests:
                    responses, ending = step(request)
                    for response in responses:
                        yield response
                    if ending is not None:
                        raise ending

            def cancel(self) -> None:
                pass

        return Call()


def stream_sync(streams: Streams, retry: Retry | None = QUICK) -> list[float]:
    with Client("127.0.0.1:1", retry=retry) as client:
        client._stream = streams
        return [e.embedding[0] for e in client.embed_stream(TEXTS, batch_size=2) if e.embedding is not None]


def stream_async(streams: Streams, retry: Retry | None = QUICK) -> list[float]:
    async def run() -> list[float]:
        async with AsyncClient("127.0.0.1:1", retry=retry) as client:
            client._stream = streams
            return [e.embedding[0] async for e in client.embed_stream(TEXTS, batch_size=2) if e.embedding is not None]

    return asyncio.run(run())


@pytest.mark.parametrize("error", [DRAINED, CORE_LOST], ids=["unavailable", "core-internal"])
@pytest.mark.parametrize("run", [stream_sync, stream_async], ids=["blocking", "asyncio"])
def test_the_unanswered_requests_go_first_on_a_new_stream(run: Any, error: grpc.RpcError) -> None:
    streams = Streams(error)
    assert run(streams) == list(range(len(TEXTS)))  # every result once, in input order
    assert first_numbers(streams.sent[0]) == [0, 2, 4]  # three sent, the first answered
    assert first_numbers(streams.sent[1])[:3] == [2, 4, 6]  # the two unanswered first, then the input
    assert sum(len(s) for s in streams.sent) == len(TEXTS) // 2 + 2  # only those two were sent twice


@pytest.mark.parametrize("run", [stream_sync, stream_async], ids=["blocking", "asyncio"])
def test_a_server_fault_is_not_resent(run: Any) -> None:
    streams = Streams(SERVER_FAULT)
    with pytest.raises(InternalError, match="server logged"):
        run(streams)
    assert len(streams.sent) == 1


@pytest.mark.parametrize("run", [stream_sync, stream_async], ids=["blocking", "asyncio"])
def test_the_retry_policy_bounds_the_new_streams(run: Any) -> None:
    progressing = Streams(DRAINED, breaking=4)  # more breaks than attempts, but each answered one
    assert run(progressing) == list(range(len(TEXTS)))  # an answer starts the count again
    assert len(progressing.sent) == 5
    stuck = Streams(DRAINED, breaking=10, answers=0)
    with pytest.raises(UnavailableError):
        run(stuck)
    assert len(stuck.sent) == QUICK.attempts  # the first stream and two more, then the error stands
    off = Streams(DRAINED)
    with pytest.raises(UnavailableError):
        run(off, None)  # retries off: nothing is resent
    assert len(off.sent) == 1
