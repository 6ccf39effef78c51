"""Bad input gets INVALID_ARGUMENT naming the field, and the server keeps serving."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from atento.v1 import encoder_pb2 as pb

from tests.servers import ServerProcess, running_server

LIMITS = ("--max-texts-per-request", "8", "--max-chars-per-text", "2000")


@pytest.fixture(scope="module")
def server(tiny_bundle: Path) -> Iterator[ServerProcess]:
    with running_server(tiny_bundle, *LIMITS) as process:
        yield process


CASES = [
    (pb.EmbedRequest(), "texts: must hold at least one text"),
    (pb.EmbedRequest(texts=["fine", ""]), "texts[1]: must not be empty"),
    (pb.EmbedRequest(texts=["x" * 2001]), "texts[0]: 2001 characters exceed the limit of 2000"),
    (pb.EmbedRequest(texts=["a"] * 9), "texts: 9 texts exceed the limit of 8 per request"),
    (
        pb.EmbedRequest(texts=["a"], attention=pb.AttentionSpec(layers=[2])),
        "attention.layers[0]: layer 2 is out of range [0, 2)",
    ),
    (
        pb.EmbedRequest(texts=["a"], attention=pb.AttentionSpec(layers=[-1])),
        "attention.layers[0]: layer -1 is out of range",
    ),
    (
        pb.EmbedRequest(texts=["a"], attention=pb.AttentionSpec(heads=[0, 4])),
        "attention.heads[1]: head 4 is out of range [0, 4)",
    ),
    (
        pb.EmbedRequest(texts=["a"], attention=pb.AttentionSpec(heads=[1, 1])),
        "attention.heads[1]: head 1 is listed twice",
    ),
    (pb.EmbedRequest(texts=["a"], pooling=17), "pooling: unknown value 17"),  # type: ignore[arg-type]
    (pb.EmbedRequest(texts=["a"], prompt_name="query"), "prompt_name: 'query' is not a prompt of this model"),
    (pb.EmbedRequest(texts=["a"], dimensions=33), "dimensions: 33 is out of range [1, 32]"),
    (pb.EmbedRequest(texts=["a"], dimensions=-2), "dimensions: -2 is out of range [1, 32]"),
    (pb.EmbedRequest(texts=["a"], prompt="p" * 2001), "prompt: 2001 characters exceed the limit of 2000"),
    (pb.EmbedRequest(texts=["a"], output_dtype=3), "output_dtype: unknown value 3"),  # type: ignore[arg-type]
    (pb.EmbedRequest(texts=["a"], truncation=9), "truncation: unknown value 9"),  # type: ignore[arg-type]
    (pb.EmbedRequest(texts=["a"], pooling=pb.POOLING_NONE), "pooling: POOLING_NONE without token_embeddings"),
    (
        pb.EmbedRequest(texts=["short", "elizabeth " * 140], truncation=pb.TRUNCATION_ERROR),
        "texts[1]: longer than the model's maximum of 128 tokens",
    ),
    (pb.EmbedRequest(texts=["elizabeth " * 140]), "texts[0]: longer than the model's maximum"),  # ERROR is the default
]


@pytest.mark.parametrize(
    ("request_", "message"), CASES, ids=[c[1].split(":")[0] + f"-{i}" for i, c in enumerate(CASES)]
)
def test_bad_embed_requests_name_the_field(server: ServerProcess, request_: pb.EmbedRequest, message: str) -> None:
    stub = server.stub()
    with pytest.raises(grpc.RpcError) as raised:
        stub.Embed(request_, timeout=10)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in raised.value.details()
    assert stub.Embed(pb.EmbedRequest(texts=["the next good request"]), timeout=10).results[0].embedding.shape == [32]


def test_truncation_cut_reports_it(server: ServerProcess) -> None:
    response = server.stub().Embed(
        pb.EmbedRequest(texts=["elizabeth " * 140, "short"], truncation=pb.TRUNCATION_CUT, return_tokens=True),
        timeout=10,
    )
    cut, whole = response.results
    assert cut.truncated and len(cut.tokens) == 128 and cut.tokens[-1].text == "[SEP]"
    assert not whole.truncated


def test_bad_tokenize_requests(server: ServerProcess) -> None:
    stub = server.stub()
    for request, message in [
        (pb.TokenizeRequest(), "texts: must hold at least one text"),
        (pb.TokenizeRequest(texts=["ok", ""]), "texts[1]: must not be empty"),
        (pb.TokenizeRequest(texts=["elizabeth " * 140]), "texts[0]: longer than the model's maximum"),
    ]:
        with pytest.raises(grpc.RpcError) as raised:
            stub.Tokenize(request, timeout=10)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT and message in raised.value.details()
    ok = stub.Tokenize(pb.TokenizeRequest(texts=["Mr. Darcy"]), timeout=10).results[0]
    assert [(t.text, t.start, t.end) for t in ok.tokens] == [
        ("[CLS]", 0, 0),
        ("mr", 0, 2),
        (".", 2, 3),
        ("darcy", 4, 9),
        ("[SEP]", 0, 0),
    ]


def test_a_bad_stream_request_ends_the_stream_naming_it(server: ServerProcess) -> None:
    requests = [pb.EmbedRequest(texts=["one"]), pb.EmbedRequest(texts=["two", ""])]
    with pytest.raises(grpc.RpcError) as raised:
        list(server.stub().EmbedStream(iter(requests), timeout=10))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "requests[1].texts[1]: must not be empty" in raised.value.details()


def test_attention_off_is_a_failed_precondition(tiny_bundle: Path) -> None:
    with running_server(tiny_bundle, "--no-attention-maps") as server:
        with pytest.raises(grpc.RpcError) as raised:
            server.stub().Embed(pb.EmbedRequest(texts=["a"], attention=pb.AttentionSpec()), timeout=10)
        assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert not server.stub().GetModelInfo(pb.GetModelInfoRequest(), timeout=10).attention_available


def test_response_larger_than_the_send_limit_is_refused_before_work(tiny_bundle: Path) -> None:
    with running_server(tiny_bundle, "--max-send-message-mib", "1") as server:
        texts = ["elizabeth " * 120] * 64
        with pytest.raises(grpc.RpcError) as raised:
            server.stub().Embed(pb.EmbedRequest(texts=texts, attention=pb.AttentionSpec()), timeout=30)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "over the 1 MiB limit" in raised.value.details()
        assert server.metric("atento_texts_total") == 0
