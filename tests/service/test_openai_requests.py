"""OpenAI's embeddings request validated, its response built, and domain errors mapped to HTTP, in process."""

from __future__ import annotations

import base64
import logging

import grpc
import numpy as np
import pytest
from atento.service import openai_requests
from atento.service.bundle import ModelSpec
from atento.service.config import Settings
from atento.service.errors import (
    HttpError,
    InvalidArgument,
    NotFound,
    NotReady,
    Overloaded,
    TooLarge,
    Unauthenticated,
    http_error_for,
    status_for,
)
from atento.service.tokenizer import Encoded

pytestmark = pytest.mark.fast

MODEL = ModelSpec("m", hidden_size=8, num_layers=3, num_heads=2, max_positions=16, vocab_size=100, pooling="mean",
                  normalize=True)  # fmt: skip
SETTINGS = Settings(max_texts_per_request=4, max_chars_per_text=10)


def parse(body: object) -> openai_requests.EmbeddingsRequest:
    return openai_requests.parse_embeddings(body, MODEL, SETTINGS)


def refusal(body: object) -> HttpError:
    with pytest.raises((InvalidArgument, NotFound)) as error:
        parse(body)
    return http_error_for(error.value)


def test_a_string_or_a_list_of_strings_is_accepted() -> None:
    assert parse({"input": "one"}) == openai_requests.EmbeddingsRequest(["one"], False, None)
    assert parse({"input": ["a", "b"], "model": "m", "encoding_format": "base64", "dimensions": 4}) == (
        openai_requests.EmbeddingsRequest(["a", "b"], True, 4)
    )


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"input": [1, 2, 3]}, 400, "input"),  # token ids
        ({"input": [[1, 2], [3]]}, 400, "input"),
        ({"input": ["a", None]}, 400, "input[1]"),
        ({"input": {"text": "a"}}, 400, "input"),
        ({}, 400, "input"),
        ([], 400, "request"),
        ({"input": []}, 400, "texts"),
        ({"input": ["a"] * 5}, 413, "texts"),  # past max_texts_per_request
        ({"input": ["a" * 11]}, 413, "texts[0]"),  # past max_chars_per_text
        ({"input": "a", "encoding_format": "int8"}, 400, "encoding_format"),
        ({"input": "a", "dimensions": 0}, 400, "dimensions"),
        ({"input": "a", "dimensions": 9}, 400, "dimensions"),
        ({"input": "a", "dimensions": 2.0}, 400, "dimensions"),
        ({"input": "a", "model": "other"}, 404, None),
    ],
)
def test_bad_requests_name_their_field_with_the_right_status(body: object, status: int, param: str | None) -> None:
    answer = refusal(body)
    assert (answer.status, answer.param) == (status, param)
    assert set(answer.body()["error"]) == {"message", "type", "param", "code"}


def test_token_ids_are_refused_saying_why() -> None:
    assert "token-id arrays are not supported" in refusal({"input": [101, 102]}).message


def test_options_are_the_models_own_with_the_requested_dimensions() -> None:
    """The cut itself is the engine's (pooling.SentenceHead, as sentence-transformers' truncate_dim):
    the door asks for it with the model's own pooling, normalisation and default prompt."""
    options = openai_requests.embed_options(MODEL, 4)
    assert (options.pooling, options.normalize, options.dimensions, options.prompt) == (
        MODEL.pooling,
        MODEL.normalize,
        4,
        "",
    )
    assert not options.token_embeddings and options.attention_selection is None and not options.cut
    assert openai_requests.embed_options(MODEL, None).dimensions is None
    stacked = openai_requests.vectors([np.ones(4, np.float32), np.zeros(4, np.float32)])
    assert stacked.shape == (2, 4) and stacked.dtype == np.float32


def test_base64_is_little_endian_float32_and_usage_counts_tokens() -> None:
    matrix = np.array([[0.5, -1.25]], dtype=np.float32)
    ids = np.array([101, 7, 102])
    encoded = [Encoded(ids, np.zeros(3, dtype=np.int64), ["a", "b", "c"], [(0, 0)] * 3, [1, 0, 1], truncated=False)]
    body = openai_requests.embeddings_response("m", encoded, matrix, as_base64=True)
    assert base64.b64decode(body["data"][0]["embedding"]) == b"\x00\x00\x00\x3f\x00\x00\xa0\xbf"
    assert body["usage"] == {"prompt_tokens": 3, "total_tokens": 3} and body["object"] == "list"
    assert openai_requests.embeddings_response("m", encoded, matrix, as_base64=False)["data"][0]["embedding"] == [
        0.5,
        -1.25,
    ]


def test_http_and_grpc_tables_agree_on_each_domain_error(caplog: pytest.LogCaptureFixture) -> None:
    cases = [
        (InvalidArgument("texts[0]", "bad"), 400, grpc.StatusCode.INVALID_ARGUMENT),
        (TooLarge("texts", "too many"), 413, grpc.StatusCode.INVALID_ARGUMENT),
        (Unauthenticated("missing"), 401, grpc.StatusCode.UNAUTHENTICATED),
        (NotFound("no such model", "model_not_found"), 404, grpc.StatusCode.NOT_FOUND),
        (Overloaded("queue full", 1.2), 429, grpc.StatusCode.RESOURCE_EXHAUSTED),
        (NotReady("loading"), 503, grpc.StatusCode.UNAVAILABLE),
    ]
    for error, status, code in cases:
        answer = http_error_for(error)
        assert (answer.status, answer.grpc_code) == (status, code) == (status, status_for(error).code)
    overloaded = http_error_for(Overloaded("queue full", 1.2))
    assert overloaded.headers == {"Retry-After": "2", "retry-after-ms": "1200"}
    with caplog.at_level(logging.ERROR, logger="atento.errors"):
        internal = http_error_for(ValueError("secret detail"))
    assert internal.status == 500 and "secret" not in internal.message and "secret detail" in caplog.text
