"""Python arguments -> request messages, shared by the blocking and the asyncio client."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from atento.v1 import encoder_pb2 as pb

PoolingName = Literal["mean", "cls", "none"]
DTypeName = Literal["float32", "float16"]
POOLING = {None: pb.POOLING_UNSPECIFIED, "mean": pb.POOLING_MEAN, "cls": pb.POOLING_CLS, "none": pb.POOLING_NONE}
DTYPE = {"float32": pb.DTYPE_FLOAT32, "float16": pb.DTYPE_FLOAT16}


@dataclass(frozen=True)
class AttentionSelection:
    """Which attention maps an embed call asks for: empty layers or heads mean all of them, and
    ``average_heads`` returns the mean over the selected heads as one map per layer."""

    layers: Sequence[int] = field(default_factory=tuple)
    heads: Sequence[int] = field(default_factory=tuple)
    average_heads: bool = False


def texts_list(texts: str | Sequence[str]) -> list[str]:
    return [texts] if isinstance(texts, str) else list(texts)


def embed_request(
    texts: str | Sequence[str],
    *,
    normalize: bool | None = None,
    pooling: PoolingName | None = None,
    token_embeddings: bool = False,
    attention: AttentionSelection | bool | None = None,
    dtype: DTypeName = "float32",
    truncate: bool = False,
    tokens: bool = False,
) -> pb.EmbedRequest:
    if pooling not in POOLING:
        raise ValueError(f"pooling must be one of {sorted(k for k in POOLING if k)}, not {pooling!r}")
    if dtype not in DTYPE:
        raise ValueError(f"dtype must be one of {sorted(DTYPE)}, not {dtype!r}")
    request = pb.EmbedRequest(
        texts=texts_list(texts),
        pooling=POOLING[pooling],
        token_embeddings=token_embeddings,
        output_dtype=DTYPE[dtype],
        truncation=pb.TRUNCATION_CUT if truncate else pb.TRUNCATION_ERROR,
        return_tokens=tokens,
    )
    if normalize is not None:
        request.normalize = normalize
    if attention is True:
        attention = AttentionSelection()
    if isinstance(attention, AttentionSelection):
        request.attention.CopyFrom(
            pb.AttentionSpec(
                layers=list(attention.layers), heads=list(attention.heads), average_heads=attention.average_heads
            )
        )
    return request


def tokenize_request(texts: str | Sequence[str], *, truncate: bool = False) -> pb.TokenizeRequest:
    return pb.TokenizeRequest(
        texts=texts_list(texts), truncation=pb.TRUNCATION_CUT if truncate else pb.TRUNCATION_ERROR
    )
