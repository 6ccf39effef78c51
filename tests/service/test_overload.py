"""Overload past the queue bound, and deadlines that expire in the queue."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from atento.v1 import encoder_pb2 as pb

from tests.servers import ServerProcess, running_server

# 64 texts of the model's 256 tokens, four to a batch, on one thread: the queue stays busy for about
# two seconds on this project's 2-core CI (a third of a second was too close to the 0.3 s deadline).
TEXTS = 64
LONG = "It is a truth universally acknowledged that a single man in possession of a good fortune " * 40
SLOW_REQUEST = pb.EmbedRequest(texts=[f"{i} {LONG}" for i in range(TEXTS)], truncation=pb.TRUNCATION_CUT)


QUEUE_FULL_OF_SLOW_WORK = (
    *("--max-queued-texts", str(TEXTS), "--max-texts-per-request", str(TEXTS)),
    *("--max-batch-tokens", "1024", "--intra-op-threads", "1"),
)


@pytest.fixture(scope="module")
def server(minilm_bundle: Path) -> Iterator[ServerProcess]:
    with running_server(minilm_bundle, *QUEUE_FULL_OF_SLOW_WORK) as process:
        yield process


def start_slow_work(server: ServerProcess) -> threading.Thread:
    done: list[pb.EmbedResponse] = []
    worker = threading.Thread(target=lambda: done.append(server.stub().Embed(SLOW_REQUEST, timeout=120)))
    worker.start()
    end = time.monotonic() + 10
    while server.metric("atento_queue_depth") == 0 and time.monotonic() < end:
        time.sleep(0.01)
    assert server.metric("atento_queue_depth") > 0
    return worker


def test_overload_is_resource_exhausted_with_a_retry_hint(server: ServerProcess) -> None:
    worker = start_slow_work(server)
    codes, hints = [], []
    for _ in range(5):
        try:
            server.stub().Embed(pb.EmbedRequest(texts=["one more"] * 8), timeout=60)
            codes.append(grpc.StatusCode.OK)
        except grpc.RpcError as error:
            codes.append(error.code())
            trailers = dict(error.trailing_metadata() or ())
            hints.append((trailers.get("grpc-retry-pushback-ms"), trailers.get("retry-after-ms"), error.details()))
    worker.join()
    assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes
    assert set(codes) <= {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}, codes  # never INTERNAL
    for pushback, retry_after, details in hints:
        assert pushback is not None and int(pushback) >= 100 and pushback == retry_after
        assert "queue full" in details
    assert server.metric("atento_rejected_requests_total", reason="queue_full") >= 1
    assert server.stub().Embed(pb.EmbedRequest(texts=["afterwards"]), timeout=30).results  # and it serves again


def test_a_deadline_that_expires_in_the_queue_is_not_computed(server: ServerProcess) -> None:
    computed_before = server.metric("atento_texts_total")
    dropped_before = server.metric("atento_dropped_texts_total")  # deadline or cancelled
    worker = start_slow_work(server)
    with pytest.raises(grpc.RpcError) as raised:
        server.stub().Embed(pb.EmbedRequest(texts=["too late"]), timeout=0.3)
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    worker.join()
    end = time.monotonic() + 10
    while server.metric("atento_dropped_texts_total") == dropped_before and time.monotonic() < end:
        time.sleep(0.05)
    # Dropped from the queue, never computed. Counted "deadline", or "cancelled" when gRPC's
    # cancellation at the client's deadline reaches the queue a hair before the server's own deadline.
    assert server.metric("atento_dropped_texts_total") == dropped_before + 1
    assert server.metric("atento_texts_total") == computed_before + TEXTS  # the slow request only
