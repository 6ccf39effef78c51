"""The client's sans-I/O core, in-process: requests built from every option, bad values refused by
name, responses built by hand decoded into typed results, and stream batching in input order."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from atento.client import AttentionSelection, calls
from atento.client.health import HealthCheckResponse
from atento.v1 import encoder_pb2 as pb

pytestmark = pytest.mark.fast


def tensor(array: np.ndarray, dtype: int = pb.DTYPE_FLOAT32) -> pb.Tensor:
    little = array.astype("<f4" if dtype == pb.DTYPE_FLOAT32 else "<f2")
    return pb.Tensor(dtype=dtype, shape=list(array.shape), data=little.tobytes())


def encoding(seed: int, *, hidden: int = 4, tokens: int = 3, attention: bool = False) -> pb.Encoding:
    rng = np.random.default_rng(seed)
    message = pb.Encoding(
        embedding=tensor(rng.standard_normal(hidden)),
        token_embeddings=tensor(rng.standard_normal((tokens, hidden)), pb.DTYPE_FLOAT16),
        tokens=[pb.Token(id=101, text="[CLS]", special=True), pb.Token(id=7 + seed, text=f"w{seed}", start=0, end=2)],
        truncated=seed % 2 == 1,
    )
    if attention:
        message.attention.CopyFrom(tensor(np.full((1, 2, tokens, tokens), 1 / tokens)))
        message.attention_layers[:] = [4]
        message.attention_heads[:] = [0, 3]
    return message


def test_embed_defaults_leave_the_model_its_choices() -> None:
    call = calls.embed(["a", "b"])
    request = call.request
    assert call.method == calls.EMBED and list(request.texts) == ["a", "b"]
    assert request.pooling == pb.POOLING_UNSPECIFIED and not request.HasField("normalize")
    assert not request.HasField("attention") and not request.token_embeddings and not request.return_tokens
    assert request.output_dtype == pb.DTYPE_FLOAT32 and request.truncation == pb.TRUNCATION_ERROR
    assert list(calls.embed("one text").request.texts) == ["one text"]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"normalize": False}, {"normalize": False}),
        ({"normalize": True}, {"normalize": True}),
        ({"pooling": "mean"}, {"pooling": pb.POOLING_MEAN}),
        ({"pooling": "cls"}, {"pooling": pb.POOLING_CLS}),
        ({"pooling": "none"}, {"pooling": pb.POOLING_NONE}),
        ({"token_embeddings": True}, {"token_embeddings": True}),
        ({"dtype": "float16"}, {"output_dtype": pb.DTYPE_FLOAT16}),
        ({"truncate": True}, {"truncation": pb.TRUNCATION_CUT}),
        ({"tokens": True}, {"return_tokens": True}),
    ],
)
def test_each_embed_option_sets_its_field(options: dict[str, Any], expected: dict[str, Any]) -> None:
    request = calls.embed("x", **options).request
    for name, value in expected.items():
        assert getattr(request, name) == value, name


def test_attention_selection_becomes_the_spec() -> None:
    selected = calls.embed("x", attention=AttentionSelection(layers=[4], heads=[3, 1], average_heads=True)).request
    assert selected.HasField("attention")
    assert (list(selected.attention.layers), list(selected.attention.heads)) == ([4], [3, 1])
    assert selected.attention.average_heads
    everything = calls.embed("x", attention=True).request
    assert everything.HasField("attention") and everything.attention == pb.AttentionSpec()
    for off in (False, None):
        assert not calls.embed("x", attention=off).request.HasField("attention")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"pooling": "maximum"}, "pooling must be one of"),
        ({"prompt_name": ""}, "prompt_name must be a non-empty string"),
        ({"prompt": 3}, "prompt must be a string"),
        ({"dimensions": 0}, "dimensions must be a positive integer"),
        ({"dimensions": True}, "dimensions must be a positive integer"),
        ({"dtype": "int8"}, "dtype must be one of"),
        ({"normalize": "yes"}, "normalize must be True or False"),
        ({"token_embeddings": 1}, "token_embeddings must be True or False"),
        ({"truncate": "no"}, "truncate must be True or False"),
        ({"tokens": None}, "tokens must be True or False"),
        ({"attention": [4]}, "attention must be an AttentionSelection"),
        ({"attention": AttentionSelection(layers=["4"])}, r"attention\.layers must be integers"),  # type: ignore[list-item]
        ({"attention": AttentionSelection(heads=[1.5])}, r"attention\.heads must be integers"),  # type: ignore[list-item]
        ({"attention": AttentionSelection(average_heads=1)}, r"attention\.average_heads must be True or False"),  # type: ignore[arg-type]
    ],
)
def test_a_bad_option_is_refused_by_name(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        calls.embed("x", **options)


def test_bad_texts_and_unknown_options_are_refused() -> None:
    with pytest.raises(ValueError, match=r"texts\[1\] must be a string, not 3"):
        calls.embed(["fine", 3])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="unknown embed option.*pooled"):
        calls.embed("x", pooled=True)  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="truncate must be True or False"):
        calls.tokenize("x", truncate="yes")  # type: ignore[arg-type]


def test_tokenize_info_and_health_requests() -> None:
    tokenize = calls.tokenize(["a", "b"], truncate=True)
    assert tokenize.method == calls.TOKENIZE and list(tokenize.request.texts) == ["a", "b"]
    assert tokenize.request.truncation == pb.TRUNCATION_CUT
    assert calls.info().method == calls.MODEL_INFO and calls.info().request == pb.GetModelInfoRequest()
    health = calls.health_check("liveness")
    assert health.method == calls.HEALTH_CHECK and health.request.service == "liveness"


def test_embed_response_decodes_into_read_only_arrays() -> None:
    response = pb.EmbedResponse(
        results=[encoding(0, attention=True), encoding(1, attention=True)],
        usage=pb.Usage(texts=2, tokens=6),
        timings=pb.Timings(tokenize_ns=1_000, queue_ns=2_000_000, inference_ns=3_000_000_000, total_ns=4_000_000_000),
        model="tiny",
    )
    result = calls.embed(["a", "b"]).decode(response)
    assert result.model == "tiny" and len(result) == 2 and (result.usage.texts, result.usage.tokens) == (2, 6)
    assert (result.timings.tokenize_s, result.timings.queue_s, result.timings.total_s) == (1e-6, 2e-3, 4.0)
    assert result.embeddings is not None and result.embeddings.shape == (2, 4)
    first, second = result.results
    expected = np.frombuffer(response.results[0].embedding.data, "<f4")
    np.testing.assert_array_equal(first.embedding, expected)
    assert first.embedding is not None and not first.embedding.flags.writeable  # a view on the message's bytes
    assert first.token_embeddings is not None and first.token_embeddings.dtype == np.float16
    assert first.token_embeddings.shape == (3, 4)
    assert first.attention_maps is not None and first.attention_maps.shape == (1, 2, 3, 3)
    assert first.attention is first.attention_maps  # the name before the rename still reads the maps
    assert (first.attention_layers, first.attention_heads) == ([4], [0, 3])
    assert [(t.id, t.text, t.start, t.end, t.special) for t in second.tokens] == [
        (101, "[CLS]", 0, 0, True),
        (8, "w1", 0, 2, False),
    ]
    assert (first.truncated, second.truncated) == (False, True)


def test_absent_fields_decode_as_none() -> None:
    bare = pb.EmbedResponse(results=[pb.Encoding(), pb.Encoding()])
    result = calls.embed(["a", "b"]).decode(bare)
    assert result.embeddings is None
    assert all(r.embedding is None and r.token_embeddings is None and r.attention_maps is None for r in result.results)
    with pytest.raises(ValueError, match="unknown tensor dtype 9"):
        calls.embed("a").decode(pb.EmbedResponse(results=[pb.Encoding(embedding=pb.Tensor(dtype=9))]))


def test_tokenize_info_and_health_responses() -> None:
    tokenized = calls.tokenize("a").decode(
        pb.TokenizeResponse(
            results=[pb.TokenizedText(tokens=[pb.Token(id=5, text="a", start=0, end=1)], truncated=True)]
        )
    )
    assert [(t.ids, t.truncated) for t in tokenized] == [([5], True)]
    info = calls.info().decode(
        pb.ModelInfo(
            name="tiny",
            hidden_size=4,
            limits=pb.Limits(max_texts_per_request=64, max_send_message_bytes=1 << 30),
            default_pooling=pb.POOLING_CLS,
            attention_available=True,
        )
    )
    assert (info.name, info.hidden_size, info.default_pooling, info.attention_available) == ("tiny", 4, "cls", True)
    assert (info.limits.max_texts_per_request, info.limits.max_send_message_bytes) == (64, 1 << 30)
    names = [calls.health_check().decode(HealthCheckResponse(status=s)) for s in (0, 1, 2, 3, 7)]
    assert names == ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN", "UNKNOWN(7)"]


def test_similarity_embeds_only_texts_normalised() -> None:
    given = np.eye(3, dtype=np.float32)
    (same,) = calls.similarity_inputs(given)
    assert same is given
    first, second = calls.similarity_inputs(["a", "b"], given)
    assert second is given and isinstance(first, calls.Call)
    assert first.method == calls.EMBED and first.request.normalize and list(first.request.texts) == ["a", "b"]
    pooled = first.decode(pb.EmbedResponse(results=[encoding(0), encoding(1)]))
    assert pooled.shape == (2, 4)
    with pytest.raises(ValueError, match="no pooled embeddings"):
        first.decode(pb.EmbedResponse(results=[pb.Encoding()]))


def counted(count: int, read: list[int]) -> Iterator[str]:
    for i in range(count):
        read.append(i)
        yield f"text {i}"


def test_stream_cuts_batches_in_input_order_and_reads_lazily() -> None:
    batches = calls.StreamBatches(batch_size=3, dtype="float16", truncate=True)
    read: list[int] = []
    requests = batches.requests(counted(7, read))
    first = next(requests)
    assert list(first.texts) == ["text 0", "text 1", "text 2"] and read == [0, 1, 2]  # no text read ahead
    rest = list(requests)
    assert [list(r.texts) for r in rest] == [["text 3", "text 4", "text 5"], ["text 6"]]
    assert all(r.output_dtype == pb.DTYPE_FLOAT16 and r.truncation == pb.TRUNCATION_CUT for r in [first, *rest])
    assert list(calls.StreamBatches(batch_size=2).requests([])) == []


def test_stream_add_and_finish_and_ordered_decoding() -> None:
    batches = calls.StreamBatches(batch_size=2)
    assert batches.add("a") is None
    full = batches.add("b")
    assert full is not None and list(full.texts) == ["a", "b"]
    assert batches.finish() is None  # nothing left over
    assert batches.add("c") is None
    last = batches.finish()
    assert last is not None and list(last.texts) == ["c"]
    responses = [pb.EmbedResponse(results=[encoding(0), encoding(1)]), pb.EmbedResponse(results=[encoding(2)])]
    decoded = [e for response in responses for e in batches.decode(response)]
    assert [e.tokens[1].text for e in decoded] == ["w0", "w1", "w2"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"batch_size": 0}, "batch_size must be an integer of at least 1, not 0"),
        ({"max_in_flight": 0}, "max_in_flight must be an integer of at least 1"),
        ({"batch_size": 2.5}, "batch_size must be an integer"),
        ({"pooling": "maximum"}, "pooling must be one of"),
        ({"prompt_name": ""}, "prompt_name must be a non-empty string"),
        ({"prompt": 3}, "prompt must be a string"),
        ({"dimensions": 0}, "dimensions must be a positive integer"),
        ({"dimensions": True}, "dimensions must be a positive integer"),  # before the stream opens, not inside it
    ],
)
def test_stream_refuses_bad_arguments_up_front(arguments: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        calls.StreamBatches(**arguments)


def test_bulk_is_an_embed_option_and_the_stream_default() -> None:
    assert calls.embed_request(["a"], bulk=True).bulk and not calls.embed_request(["a"]).bulk
    with pytest.raises(ValueError, match="bulk must be True or False"):
        calls.embed_request(["a"], bulk="yes")  # type: ignore[typeddict-item]
    assert all(r.bulk for r in calls.StreamBatches(batch_size=2).requests(["a", "b", "c"]))  # indexing: bulk
    assert not any(r.bulk for r in calls.StreamBatches(batch_size=2, bulk=False).requests(["a", "b", "c"]))
