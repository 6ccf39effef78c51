"""Response building in process: pooled, per-token and attention-map tensors as raw little-endian bytes."""

from __future__ import annotations

import numpy as np
import pytest
from atento.service.batcher import ItemOutput
from atento.service.pooling import SentenceHead
from atento.service.requests import AttentionSelection, EmbedOptions
from atento.service.responses import embed_response
from atento.service.tokenizer import Encoded
from atento.v1 import encoder_pb2 as pb

pytestmark = pytest.mark.fast

RNG = np.random.default_rng(0)


def text(length: int) -> tuple[Encoded, ItemOutput]:
    ids = np.arange(length, dtype=np.int64)
    item = Encoded(ids, ids * 0, [f"t{i}" for i in ids], [(i, i + 1) for i in ids], [0] * length, False)
    maps = RNG.random((3, 2, length, length), dtype=np.float32)
    return item, ItemOutput(RNG.standard_normal((length, 4), dtype=np.float32), maps, 0.001, 0.002)


def decode(tensor: pb.Tensor) -> np.ndarray:
    dtype = {pb.DTYPE_FLOAT32: "<f4", pb.DTYPE_FLOAT16: "<f2"}[tensor.dtype]
    return np.frombuffer(tensor.data, dtype=dtype).reshape(tuple(tensor.shape))


def embed_options(**changes: object) -> EmbedOptions:
    values: dict[str, object] = {
        "pooling": "mean",
        "normalize": False,
        "token_embeddings": False,
        "attention_selection": None,
        "dtype": pb.DTYPE_FLOAT32,
        "cut": False,
        "tokens": False,
    }
    return EmbedOptions(**{**values, **changes})  # type: ignore[arg-type]


def test_pooled_embeddings_mean_cls_and_normalised() -> None:
    items = [text(5), text(2)]
    encoded, outputs = [i for i, _ in items], [o for _, o in items]
    head = SentenceHead("mean", include_prompt=True)
    for pooling, expected in (("mean", [o.hidden.mean(0) for o in outputs]), ("cls", [o.hidden[0] for o in outputs])):
        vectors = [head.embed(o.hidden, pooling=pooling) for o in outputs]
        response = embed_response("m", encoded, outputs, embed_options(pooling=pooling), 0.0, vectors)
        for result, vector in zip(response.results, expected, strict=True):
            np.testing.assert_allclose(decode(result.embedding), vector, rtol=1e-6)
    vectors = [head.embed(o.hidden, normalize=True) for o in outputs]
    normalised = embed_response("m", encoded, outputs, embed_options(normalize=True), 0.0, vectors)
    assert np.allclose([np.linalg.norm(decode(r.embedding)) for r in normalised.results], 1.0)
    assert normalised.usage.texts == 2 and normalised.usage.tokens == 7 and normalised.model == "m"


def test_token_embeddings_and_tokens_in_float16() -> None:
    encoded, output = text(4)
    chosen = embed_options(pooling=None, token_embeddings=True, tokens=True, dtype=pb.DTYPE_FLOAT16)
    (result,) = embed_response("m", [encoded], [output], chosen, 0.0).results
    assert not result.HasField("embedding")
    np.testing.assert_allclose(decode(result.token_embeddings), output.hidden, atol=1e-2)
    assert [(t.id, t.text, t.start, t.end) for t in result.tokens][1] == (1, "t1", 1, 2)


def test_attention_maps_follow_the_selection() -> None:
    encoded, output = text(3)
    assert output.attention_maps is not None
    picked = embed_options(attention_selection=AttentionSelection(layers=(2, 0), heads=(1,), average_heads=False))
    (result,) = embed_response("m", [encoded], [output], picked, 0.0).results
    np.testing.assert_array_equal(decode(result.attention), output.attention_maps[[2, 0]][:, [1]])
    assert list(result.attention_layers) == [2, 0] and list(result.attention_heads) == [1]
    averaged = embed_options(attention_selection=AttentionSelection(layers=(1,), heads=(0, 1), average_heads=True))
    (result,) = embed_response("m", [encoded], [output], averaged, 0.0).results
    np.testing.assert_allclose(decode(result.attention), output.attention_maps[[1]].mean(axis=1, keepdims=True))
