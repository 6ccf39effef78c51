"""Every server status reaches the caller as its typed exception, with the server's message."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from atento.client import (
    AttentionSelection,
    Client,
    DeadlineExceededError,
    FieldViolation,
    InternalError,
    InvalidInputError,
    OverloadedError,
    UnauthenticatedError,
    UnavailableError,
)
from atento.client.errors import from_rpc_error
from atento.v1 import encoder_pb2 as pb

from tests.faults import FAILING_BATCH, faulty_bundle
from tests.servers import ServerProcess, running_server

LONG = "It is a truth universally acknowledged that a single man in possession of a good fortune " * 40


def test_invalid_input(minilm_server: ServerProcess) -> None:
    with Client(minilm_server.target) as client:
        with pytest.raises(InvalidInputError, match=r"texts\[1\]: must not be empty") as raised:
            client.embed(["fine", ""])
        # The google.rpc details, decoded: the stable reason and the field, as data.
        assert raised.value.reason == "EMPTY_TEXT" and raised.value.details.domain == "atento.v1"
        assert raised.value.field_violations == (FieldViolation("texts[1]", "must not be empty", "EMPTY_TEXT"),)
        with pytest.raises(InvalidInputError, match=r"attention.layers\[0\]: layer 6 is out of range"):
            client.embed("x", attention=AttentionSelection(layers=[6]))


def test_overloaded_carries_the_retry_hint(minilm_bundle: Path) -> None:
    args = ("--max-queued-texts", "4", "--max-texts-per-request", "4", "--max-batch-tokens", "512")
    with running_server(minilm_bundle, *args) as server:
        slow = threading.Thread(
            target=lambda: server.stub().Embed(pb.EmbedRequest(texts=[LONG] * 4, truncation=2), timeout=60)
        )
        slow.start()
        while server.metric("atento_queue_depth") < 2:
            time.sleep(0.005)
        with Client(server.target, retry=None) as client, pytest.raises(OverloadedError, match="queue full") as raised:
            client.embed(["a", "b", "c", "d"])
        assert raised.value.retry_after is not None and raised.value.retry_after >= 0.1
        assert raised.value.reason == "QUEUE_FULL" and raised.value.details.retry_after == raised.value.retry_after
        assert [q.subject for q in raised.value.quota_violations] == ["max_queued_texts"]
        assert raised.value.resource is not None and raised.value.resource.resource_type == "atento.v1.queue"
        slow.join()


def test_unavailable_while_draining(tiny_bundle: Path) -> None:
    # The drain notice keeps the server answering (and refusing) for 5 s after SIGTERM.
    with running_server(tiny_bundle, "--drain-notice-seconds", "5", "--drain-seconds", "30") as server:
        release = threading.Event()

        def requests() -> Iterator[pb.EmbedRequest]:
            yield pb.EmbedRequest(texts=["keep a call in flight"])
            release.wait(30)

        stream = server.stub().EmbedStream(requests(), timeout=60)
        next(stream)
        server.process.send_signal(signal.SIGTERM)
        while server.health("") != 2:  # NOT_SERVING
            time.sleep(0.01)
        # A client that does not watch health sends the call, and hears why it was refused.
        blind = Client(server.target, retry=None, health_check=False)
        with blind, pytest.raises(UnavailableError, match="shutting down"):
            blind.embed("x")
        # One that does (the default) holds the call back, while health() still reaches the server.
        with Client(server.target, timeout=1) as watching:
            assert watching.health() == "NOT_SERVING" and watching.health("liveness") == "SERVING"
            with pytest.raises(DeadlineExceededError):
                watching.embed("x")
        assert server.metric("atento_requests_total", method="Embed", code="UNAVAILABLE") == 1
        release.set()
        with pytest.raises(UnavailableError):  # the open stream ends with the drain, retryable
            try:
                list(stream)
            except grpc.RpcError as error:
                raise from_rpc_error(error) from None


def test_deadline_exceeded(minilm_server: ServerProcess) -> None:
    with Client(minilm_server.target) as client, pytest.raises(DeadlineExceededError):
        client.embed([LONG] * 32, truncate=True, timeout=0.05)


def test_unauthenticated(tiny_bundle: Path) -> None:
    with running_server(tiny_bundle, env={"ATENTO_AUTH_TOKEN": "right-token"}) as server:
        with Client(server.target) as anonymous, pytest.raises(UnauthenticatedError, match="missing bearer token"):
            anonymous.embed("x")
        with (
            Client(server.target, token="wrong") as wrong,
            pytest.raises(UnauthenticatedError, match="wrong bearer token") as raised,
        ):
            wrong.embed("x")
        assert raised.value.reason == "UNAUTHENTICATED" and raised.value.details.metadata == {"token": "wrong"}
        with Client(server.target, token="right-token") as right:
            assert right.embed("x").embeddings is not None


def test_internal_with_the_traceback_in_the_log_only(tiny_bundle: Path, tmp_path: Path) -> None:
    bundle = faulty_bundle(tiny_bundle, tmp_path / "faulty")
    with running_server(bundle) as server, Client(server.target) as client:
        with pytest.raises(InternalError, match=r"internal error \(the server logged the details\)") as raised:
            client.embed(["x"] * FAILING_BATCH, attention=True)
        assert "Gather" not in raised.value.message  # no internals leak to the client
        assert raised.value.reason == "INTERNAL"
        assert client.embed("the server is still fine").embeddings is not None
        time.sleep(0.2)
        assert "Traceback" in server.log and "Gather" in server.log
