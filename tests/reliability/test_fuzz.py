"""Hostile input: every request field fuzzed, and raw bytes that are not protobuf at all.

Never INTERNAL, never a crash, memory stable, and the next good call succeeds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from atento.v1 import encoder_pb2 as pb
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.reliability.conftest import proc_status, scale
from tests.servers import ServerProcess, running_server

LIMITS = ("--max-texts-per-request", "16", "--max-chars-per-text", "600", "--max-receive-message-mib", "1")
ALLOWED = {
    grpc.StatusCode.OK,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}
EXAMPLES = scale(120, 2000)
TRIED: dict[str, int] = {}

# Every plane of Unicode, controls and NUL included; surrogates alone cannot be UTF-8 at all.
characters = st.characters(codec="utf-8", exclude_categories=())
texts = st.lists(
    st.one_of(
        st.text(characters, max_size=40),
        st.text(characters, min_size=590, max_size=620),  # around the 600-character limit
        st.just("\x00" * 10),
        st.just("word " * 200),  # past the tiny model's 128 tokens
    ),
    max_size=20,  # around the 16-text limit
)
numbers = st.integers(min_value=-(2**31), max_value=2**31 - 1)
enums = st.one_of(st.integers(min_value=-2, max_value=5), numbers)
attention = st.one_of(
    st.none(),
    st.builds(
        pb.AttentionSpec,
        layers=st.lists(st.one_of(st.integers(-3, 4), numbers), max_size=6),
        heads=st.lists(st.one_of(st.integers(-3, 6), numbers), max_size=6),
        average_heads=st.booleans(),
    ),
)


@st.composite
def embed_requests(draw: st.DrawFn) -> pb.EmbedRequest:
    request = pb.EmbedRequest(
        texts=draw(texts),
        pooling=draw(enums),
        token_embeddings=draw(st.booleans()),
        output_dtype=draw(enums),
        truncation=draw(enums),
        return_tokens=draw(st.booleans()),
    )
    if (normalize := draw(st.one_of(st.none(), st.booleans()))) is not None:
        request.normalize = normalize
    if (spec := draw(attention)) is not None:
        request.attention.CopyFrom(spec)
    return request


@pytest.fixture(scope="module")
def server(tiny_bundle: Path) -> Iterator[ServerProcess]:
    with running_server(tiny_bundle, *LIMITS) as process:
        yield process


def call(method: Callable[..., object], request: object) -> grpc.StatusCode:
    try:
        method(request, timeout=30)
        return grpc.StatusCode.OK
    except grpc.RpcError as error:
        return error.code()


def check(server: ServerProcess, code: grpc.StatusCode, what: str) -> None:
    assert code in ALLOWED, f"{what}: {code}"
    assert server.process.poll() is None, "the server died"
    TRIED[what] = TRIED.get(what, 0) + 1


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def test_fuzzed_embed_requests(server: ServerProcess) -> None:
    stub = server.stub()

    @FUZZ
    @given(request=embed_requests())
    def one(request: pb.EmbedRequest) -> None:
        check(server, call(stub.Embed, request), "Embed")

    one()


def test_fuzzed_streams_and_tokenize(server: ServerProcess) -> None:
    stub = server.stub()

    @FUZZ
    @given(
        requests=st.lists(embed_requests(), max_size=4),
        tokenize=st.builds(pb.TokenizeRequest, texts=texts, truncation=enums),
    )
    def one(requests: list[pb.EmbedRequest], tokenize: pb.TokenizeRequest) -> None:
        try:
            for _ in stub.EmbedStream(iter(requests), timeout=30):
                pass
            code = grpc.StatusCode.OK
        except grpc.RpcError as error:
            code = error.code()
        check(server, code, "EmbedStream")
        check(server, call(stub.Tokenize, tokenize), "Tokenize")

    one()


@pytest.mark.parametrize("method", ["Embed", "EmbedStream", "Tokenize", "GetModelInfo"])
def test_raw_bytes_that_are_not_protobuf(server: ServerProcess, method: str) -> None:
    with server.channel() as channel:
        path = f"/atento.v1.Encoder/{method}"
        if method == "EmbedStream":
            rpc = channel.stream_stream(path, request_serializer=None, response_deserializer=None)
        else:
            rpc = channel.unary_unary(path, request_serializer=None, response_deserializer=None)

        @FUZZ
        @given(
            data=st.one_of(st.binary(max_size=2048), st.just(b"\x0a\xff\xff\xff\xff\x0f"), st.just(b"\x0a\x02\xc3\x28"))
        )
        def one(data: bytes) -> None:
            try:
                result = rpc(iter([data, data]), timeout=30) if method == "EmbedStream" else rpc(data, timeout=30)
                if method == "EmbedStream":
                    list(result)  # type: ignore[call-overload]
                code = grpc.StatusCode.OK
            except grpc.RpcError as error:
                code = error.code()
            check(server, code, f"raw {method}")

        one()


def test_invalid_utf8_is_invalid_argument_naming_the_request(server: ServerProcess) -> None:
    with server.channel() as channel:
        rpc = channel.unary_unary("/atento.v1.Encoder/Embed", request_serializer=None, response_deserializer=None)
        with pytest.raises(grpc.RpcError) as raised:
            rpc(b"\x0a\x02\xc3\x28", timeout=10)  # texts[0] = two bytes that are not UTF-8
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "request: not a valid EmbedRequest" in raised.value.details()


def test_afterwards_memory_is_stable_and_good_calls_succeed(server: ServerProcess, record: Callable[..., None]) -> None:
    stub = server.stub()
    worst = pb.EmbedRequest(texts=["word " * 119] * 16, attention=pb.AttentionSpec(), token_embeddings=True)
    for _ in range(20):  # the largest legal request grows the heap once; then it must stay put
        stub.Embed(worst, timeout=30)
    before = proc_status(server.process.pid)["VmRSS"]
    for _ in range(scale(300, 3000)):
        stub.Embed(worst, timeout=30)
    after = proc_status(server.process.pid)["VmRSS"]
    assert after <= before * 1.10, (before, after)
    assert stub.Embed(pb.EmbedRequest(texts=["a good call"]), timeout=10).results
    assert "Traceback" not in server.log
    record(inputs_tried=dict(TRIED), rss_mib=after / 1024, rss_growth=after / before - 1)
