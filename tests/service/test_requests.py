"""Request validation in process: proto messages in, options out, or InvalidArgument naming the field."""

from __future__ import annotations

import numpy as np
import pytest
from atento.service.bundle import GraphRole, ModelSpec
from atento.service.config import Settings
from atento.service.errors import FailedPrecondition, InvalidArgument
from atento.service.requests import EmbedOptions, check_lengths, check_response_size, embed_options, well_formed
from atento.service.rpc import lenient
from atento.service.tokenizer import Encoded
from atento.v1 import encoder_pb2 as pb

pytestmark = pytest.mark.fast

MODEL = ModelSpec("m", hidden_size=8, num_layers=3, num_heads=2, max_positions=16, vocab_size=100, pooling="mean",
                  normalize=True)  # fmt: skip
SETTINGS = Settings(max_texts_per_request=4, max_chars_per_text=10)


def options(request: pb.EmbedRequest, maps_available: bool = True, prefix: str = "") -> EmbedOptions:
    return embed_options(request, MODEL, SETTINGS, maps_available, prefix)


def encoded(length: int, truncated: bool = False) -> Encoded:
    ids = np.ones(length, dtype=np.int64)
    return Encoded(ids, ids * 0, ["t"] * length, [(0, 1)] * length, [0] * length, truncated)


def test_defaults_are_the_models_own() -> None:
    chosen = options(pb.EmbedRequest(texts=["hi"]))
    assert (chosen.pooling, chosen.normalize, chosen.token_embeddings, chosen.cut) == ("mean", True, False, False)
    assert chosen.attention_selection is None and chosen.graph is GraphRole.FAST
    assert chosen.dtype == pb.DTYPE_FLOAT32 and not chosen.tokens


def test_an_attention_selection_picks_the_attention_maps_graph() -> None:
    request = pb.EmbedRequest(texts=["hi"], attention=pb.AttentionSpec(layers=[2], heads=[1, 0], average_heads=True))
    chosen = options(request)
    assert chosen.graph is GraphRole.ATTENTION_MAPS and chosen.tokens
    assert chosen.attention_selection is not None
    assert (chosen.attention_selection.layers, chosen.attention_selection.heads) == ((2,), (1, 0))
    everything = options(pb.EmbedRequest(texts=["hi"], attention=pb.AttentionSpec()))
    assert everything.attention_selection is not None and everything.attention_selection.layers == (0, 1, 2)


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.EmbedRequest(), "texts"),
        (pb.EmbedRequest(texts=["a"] * 5), "texts"),
        (pb.EmbedRequest(texts=["a", ""]), "texts[1]"),
        (pb.EmbedRequest(texts=["a", "x" * 11]), "texts[1]"),
        (pb.EmbedRequest(texts=["a"], pooling=9), "pooling"),  # type: ignore[arg-type]
        (pb.EmbedRequest(texts=["a"], output_dtype=7), "output_dtype"),  # type: ignore[arg-type]
        (pb.EmbedRequest(texts=["a"], truncation=5), "truncation"),  # type: ignore[arg-type]
        (pb.EmbedRequest(texts=["a"], attention=pb.AttentionSpec(layers=[3])), "attention.layers[0]"),
        (pb.EmbedRequest(texts=["a"], attention=pb.AttentionSpec(heads=[0, 0])), "attention.heads[1]"),
        (pb.EmbedRequest(texts=["a"], pooling=pb.POOLING_NONE), "pooling"),
    ],
)
def test_each_bad_field_is_named(request_: pb.EmbedRequest, field: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        options(request_, prefix="requests[2].")
    assert str(raised.value).startswith(f"requests[2].{field}: ")


def test_attention_maps_on_a_server_without_them_is_a_failed_precondition() -> None:
    with pytest.raises(FailedPrecondition, match="--no-attention-maps"):
        options(pb.EmbedRequest(texts=["a"], attention=pb.AttentionSpec()), maps_available=False)


def test_bytes_that_do_not_parse_are_refused_not_crashed() -> None:
    parsed = lenient(pb.EmbedRequest)(b"\xff\xff\xff")
    with pytest.raises(InvalidArgument, match="^request: not a valid EmbedRequest"):
        well_formed(parsed)


def test_over_long_texts_are_refused_unless_cut() -> None:
    with pytest.raises(InvalidArgument, match=r"texts\[1\]: longer than the model's maximum of 16 tokens"):
        check_lengths([encoded(3), encoded(16, truncated=True)], cut=False, max_tokens=16)
    check_lengths([encoded(16, truncated=True)], cut=True, max_tokens=16)


def test_a_response_over_the_send_limit_is_refused_before_computing() -> None:
    chosen = options(pb.EmbedRequest(texts=["a"], attention=pb.AttentionSpec()))
    limit = 3 * 2 * 16 * 16 * 4  # all layers and heads of one 16-token text, float32
    check_response_size([encoded(16)], chosen, MODEL, limit + 10_000)
    with pytest.raises(InvalidArgument, match="^attention: the response would take"):
        check_response_size([encoded(16)], chosen, MODEL, limit)
