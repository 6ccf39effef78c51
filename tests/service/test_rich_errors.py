"""Every refusal atento makes carries a google.rpc.Status (the `grpc-status-details-bin` trailer),
decoded here as any gRPC client would: `grpc_status.rpc_status.from_call` + `error_details_pb2`.

One test per detail type (ErrorInfo, BadRequest, RetryInfo, QuotaFailure, ResourceInfo), then a
sweep of the refusals the suite knows, each decoded."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from atento.v1 import encoder_pb2 as pb
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from tests.servers import ServerProcess, running_server

LIMITS = ("--max-texts-per-request", "8", "--max-chars-per-text", "2000", "--max-send-message-mib", "1")
LONG = "It is a truth universally acknowledged that a single man in possession of a good fortune " * 40
DETAIL_TYPES = (
    error_details_pb2.ErrorInfo,
    error_details_pb2.BadRequest,
    error_details_pb2.RetryInfo,
    error_details_pb2.QuotaFailure,
    error_details_pb2.ResourceInfo,
)


@pytest.fixture(scope="module")
def server(tiny_bundle: Path) -> Iterator[ServerProcess]:
    with running_server(tiny_bundle, *LIMITS) as process:
        yield process


def refusal(call: Callable[[], Any]) -> tuple[grpc.RpcError, status_pb2.Status]:
    """The error ``call`` raises, and its google.rpc.Status (which must be there and agree with it)."""
    with pytest.raises(grpc.RpcError) as raised:
        call()
    status = rpc_status.from_call(raised.value)
    assert status is not None, f"{raised.value.code()} {raised.value.details()!r} carries no google.rpc.Status"
    assert status.code == raised.value.code().value[0] and status.message == raised.value.details()
    return raised.value, status


def details(status: status_pb2.Status) -> dict[type[Message], Message]:
    """The status's detail messages by type; every detail must be one of the types atento sends."""
    found: dict[type[Message], Message] = {}
    for holder in status.details:
        kind = next(k for k in DETAIL_TYPES if holder.Is(k.DESCRIPTOR))
        found[kind] = kind()
        holder.Unpack(found[kind])
    return found


def reason(status: status_pb2.Status) -> str:
    info = details(status)[error_details_pb2.ErrorInfo]
    assert isinstance(info, error_details_pb2.ErrorInfo) and info.domain == "atento.v1"
    return str(info.reason)


def test_error_info_has_a_stable_reason_and_the_domain(server: ServerProcess) -> None:
    _, status = refusal(lambda: server.stub().Embed(pb.EmbedRequest(texts=["x" * 2001]), timeout=10))
    assert reason(status) == "TEXT_TOO_LONG"


def test_bad_request_names_the_field_of_the_request_in_the_stream(server: ServerProcess) -> None:
    requests = [pb.EmbedRequest(texts=["fine"])] * 3 + [pb.EmbedRequest(texts=["a"] * 5 + [""])]
    _, status = refusal(lambda: list(server.stub().EmbedStream(iter(requests), timeout=10)))
    bad = details(status)[error_details_pb2.BadRequest]
    assert isinstance(bad, error_details_pb2.BadRequest)
    [violation] = bad.field_violations
    assert (violation.field, violation.description, violation.reason) == (
        "requests[3].texts[5]",
        "must not be empty",
        "EMPTY_TEXT",
    )


def test_quota_failure_names_the_limit(server: ServerProcess) -> None:
    _, status = refusal(lambda: server.stub().Embed(pb.EmbedRequest(texts=["a"] * 9), timeout=10))
    quota = details(status)[error_details_pb2.QuotaFailure]
    assert isinstance(quota, error_details_pb2.QuotaFailure)
    assert [v.subject for v in quota.violations] == ["max_texts_per_request"]
    assert "at most 8 texts" in quota.violations[0].description
    assert reason(status) == "TOO_MANY_TEXTS"


def test_queue_full_carries_retry_info_resource_info_and_the_trailers(minilm_bundle: Path) -> None:
    with running_server(
        minilm_bundle, "--max-queued-texts", "4", "--max-texts-per-request", "4", "--max-batch-tokens", "512"
    ) as busy:
        slow = threading.Thread(
            target=lambda: busy.stub().Embed(pb.EmbedRequest(texts=[LONG] * 4, truncation=2), timeout=60)
        )
        slow.start()
        while busy.metric("atento_queue_depth") < 2:
            time.sleep(0.005)
        error, status = refusal(lambda: busy.stub().Embed(pb.EmbedRequest(texts=list("abcd")), timeout=10))
        slow.join()
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and reason(status) == "QUEUE_FULL"
    found = details(status)
    retry, resource = found[error_details_pb2.RetryInfo], found[error_details_pb2.ResourceInfo]
    assert isinstance(retry, error_details_pb2.RetryInfo) and isinstance(resource, error_details_pb2.ResourceInfo)
    trailers = dict(error.trailing_metadata())
    # RetryInfo and both trailers say the same delay: gRPC's retry policy reads grpc-retry-pushback-ms.
    assert retry.retry_delay.ToMilliseconds() == int(trailers["grpc-retry-pushback-ms"]) >= 100
    assert trailers["retry-after-ms"] == trailers["grpc-retry-pushback-ms"]
    assert (resource.resource_type, resource.resource_name) == ("atento.v1.queue", "batcher")
    quota = found[error_details_pb2.QuotaFailure]
    assert isinstance(quota, error_details_pb2.QuotaFailure) and quota.violations[0].subject == "max_queued_texts"


# The refusals the suite knows, each with its code, reason and (for a bad argument) field.
SWEEP = [
    (pb.EmbedRequest(), "NO_TEXTS", "texts"),
    (pb.EmbedRequest(texts=["fine", ""]), "EMPTY_TEXT", "texts[1]"),
    (pb.EmbedRequest(texts=["x" * 2001]), "TEXT_TOO_LONG", "texts[0]"),
    (pb.EmbedRequest(texts=["a"] * 9), "TOO_MANY_TEXTS", "texts"),
    (pb.EmbedRequest(texts=["a"], attention=pb.AttentionSpec(layers=[2])), "INDEX_OUT_OF_RANGE", "attention.layers[0]"),
    (pb.EmbedRequest(texts=["a"], attention=pb.AttentionSpec(heads=[1, 1])), "DUPLICATE_INDEX", "attention.heads[1]"),
    (pb.EmbedRequest(texts=["a"], pooling=99), "UNKNOWN_ENUM_VALUE", "pooling"),  # type: ignore[arg-type]
    (pb.EmbedRequest(texts=["a"], output_dtype=3), "UNKNOWN_ENUM_VALUE", "output_dtype"),  # type: ignore[arg-type]
    (pb.EmbedRequest(texts=["a"], truncation=9), "UNKNOWN_ENUM_VALUE", "truncation"),  # type: ignore[arg-type]
    (pb.EmbedRequest(texts=["a"], pooling=pb.POOLING_NONE), "NOTHING_REQUESTED", "pooling"),
    (pb.EmbedRequest(texts=["ok", "elizabeth " * 140]), "TOO_MANY_TOKENS", "texts[1]"),
    (
        pb.EmbedRequest(texts=["elizabeth " * 120] * 8, attention=pb.AttentionSpec()),
        "RESPONSE_TOO_LARGE",
        "attention",
    ),
]


@pytest.mark.parametrize(("request_", "expected", "field"), SWEEP, ids=[f"{c[1]}-{c[2]}" for c in SWEEP])
def test_every_invalid_argument_is_decodable(
    server: ServerProcess, request_: pb.EmbedRequest, expected: str, field: str
) -> None:
    error, status = refusal(lambda: server.stub().Embed(request_, timeout=30))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT and reason(status) == expected
    bad = details(status)[error_details_pb2.BadRequest]
    assert isinstance(bad, error_details_pb2.BadRequest) and [v.field for v in bad.field_violations] == [field]


def test_malformed_bytes_are_decodable(server: ServerProcess) -> None:
    with server.channel() as channel:
        raw = channel.unary_unary("/atento.v1.Encoder/Embed")
        _, status = refusal(lambda: raw(b"\xff\xff\xff", timeout=10))
    assert reason(status) == "MALFORMED_REQUEST"


def test_tokenize_refusal_is_decodable(server: ServerProcess) -> None:
    _, status = refusal(lambda: server.stub().Tokenize(pb.TokenizeRequest(texts=["ok", ""]), timeout=10))
    assert reason(status) == "EMPTY_TEXT"


def test_attention_maps_off_is_decodable(tiny_bundle: Path) -> None:
    with running_server(tiny_bundle, "--no-attention") as off:
        request = pb.EmbedRequest(texts=["a"], attention=pb.AttentionSpec())
        error, status = refusal(lambda: off.stub().Embed(request, timeout=10))
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION and reason(status) == "ATTENTION_MAPS_OFF"


def test_unauthenticated_is_decodable(tiny_bundle: Path) -> None:
    with running_server(tiny_bundle, env={"ATENTO_AUTH_TOKEN": "s3cret"}) as guarded:
        error, status = refusal(lambda: guarded.stub().Embed(pb.EmbedRequest(texts=["a"]), timeout=10))
        _, wrong = refusal(
            lambda: guarded.stub().Embed(
                pb.EmbedRequest(texts=["a"]), timeout=10, metadata=(("authorization", "Bearer nope"),)
            )
        )
    assert error.code() == grpc.StatusCode.UNAUTHENTICATED and reason(status) == "UNAUTHENTICATED"
    info = details(wrong)[error_details_pb2.ErrorInfo]
    assert isinstance(info, error_details_pb2.ErrorInfo) and info.metadata["token"] == "wrong"


def test_loading_is_decodable(minilm_bundle: Path) -> None:
    """Between listening and warm, calls are refused: MODEL_LOADING (the load takes seconds)."""
    with running_server(minilm_bundle, wait=False) as loading:
        loading.wait_listening()
        error, status = refusal(lambda: loading.stub().GetModelInfo(pb.GetModelInfoRequest(), timeout=10))
    assert error.code() == grpc.StatusCode.UNAVAILABLE and reason(status) == "MODEL_LOADING"


def test_draining_is_decodable(tiny_bundle: Path) -> None:
    with running_server(tiny_bundle, "--drain-seconds", "30", "--drain-notice-seconds", "5") as draining:
        release = threading.Event()

        def requests() -> Iterator[pb.EmbedRequest]:
            yield pb.EmbedRequest(texts=["a call in flight"])
            release.wait(30)

        stream = draining.stub().EmbedStream(requests(), timeout=60)
        next(stream)
        draining.process.send_signal(signal.SIGTERM)
        while draining.health("") != 2:  # NOT_SERVING
            time.sleep(0.01)
        error, status = refusal(lambda: draining.stub().Embed(pb.EmbedRequest(texts=["a"]), timeout=5))
        release.set()
        with pytest.raises(grpc.RpcError) as ended:  # the open stream ends with the drain too
            list(stream)
    assert error.code() == grpc.StatusCode.UNAVAILABLE and reason(status) == "SHUTTING_DOWN"
    assert ended.value.code() == grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
    assert reason(rpc_status.from_call(ended.value)) == "SHUTTING_DOWN"  # type: ignore[arg-type]
