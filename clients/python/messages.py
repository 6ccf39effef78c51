"""Python arguments -> request messages: every request option is named, defaulted and checked here.

A bad value fails with a ValueError that names the option before anything is sent, so a caller
learns which argument to fix without a round trip, and the server never sees a malformed message.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, TypedDict, Unpack

from atento.v1 import encoder_pb2 as pb

PoolingName = Literal["mean", "cls", "max", "mean_sqrt_len", "weighted_mean", "last_token", "none"]
DTypeName = Literal["float32", "float16"]
POOLING = {
    None: pb.POOLING_UNSPECIFIED,
    "mean": pb.POOLING_MEAN,
    "cls": pb.POOLING_CLS,
    "max": pb.POOLING_MAX,
    "mean_sqrt_len": pb.POOLING_MEAN_SQRT_LEN,
    "weighted_mean": pb.POOLING_WEIGHTED_MEAN,
    "last_token": pb.POOLING_LAST_TOKEN,
    "none": pb.POOLING_NONE,
}
DTYPE = {"float32": pb.DTYPE_FLOAT32, "float16": pb.DTYPE_FLOAT16}


@dataclass(frozen=True)
class AttentionSelection:
    """Which attention maps an embed call asks for: empty layers or heads mean all of them, and
    ``average_heads`` returns the mean over the selected heads as one map per layer."""

    layers: Sequence[int] = field(default_factory=tuple)
    heads: Sequence[int] = field(default_factory=tuple)
    average_heads: bool = False


class EmbedOptions(TypedDict, total=False):
    """What an embed call may ask for besides its texts; a key left out takes the default below.

    normalize, pooling: the model's own (None); token_embeddings: False (per-token vectors);
    attention: None (an AttentionSelection, or True for every layer and head); dtype: "float32";
    truncate: False (a text over the model's maximum fails instead of being cut); tokens: False;
    prompt_name: None (one of ModelInfo.prompts; None: the model's default prompt); prompt: None (the
    prompt's text itself, "" for none, wins over prompt_name); dimensions: None (all; N keeps the
    first N dimensions, renormalised when normalised: Matryoshka).
    bulk: False (True for indexing and backfills: the server fills batches with interactive texts
    first and lets bulk work hold only its share of the queue; ``embed_stream`` defaults to True).
    """

    normalize: bool | None
    pooling: PoolingName | None
    token_embeddings: bool
    attention: AttentionSelection | bool | None
    dtype: DTypeName
    truncate: bool
    tokens: bool
    prompt_name: str | None
    prompt: str | None
    dimensions: int | None
    bulk: bool


def texts_list(texts: str | Sequence[str]) -> list[str]:
    items = [texts] if isinstance(texts, str) else list(texts)
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise ValueError(f"texts[{i}] must be a string, not {text!r}")
    return items


def yes_no(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, not {value!r}")
    return value


def truncation(truncate: object) -> pb.Truncation:
    return pb.TRUNCATION_CUT if yes_no("truncate", truncate) else pb.TRUNCATION_ERROR


def indices(name: str, values: Sequence[int]) -> list[int]:
    """Layer or head numbers; their range is the server's to check, since it knows the model."""
    items = list(values)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        raise ValueError(f"{name} must be integers, not {items!r}")
    return items


def attention_spec(attention: object) -> pb.AttentionSpec | None:
    if attention is None or attention is False:
        return None
    if attention is True:
        attention = AttentionSelection()
    if not isinstance(attention, AttentionSelection):
        raise ValueError(f"attention must be an AttentionSelection, True or None, not {attention!r}")
    return pb.AttentionSpec(
        layers=indices("attention.layers", attention.layers),
        heads=indices("attention.heads", attention.heads),
        average_heads=yes_no("attention.average_heads", attention.average_heads),
    )


def embed_request(texts: str | Sequence[str], **options: Unpack[EmbedOptions]) -> pb.EmbedRequest:
    unknown = options.keys() - EmbedOptions.__optional_keys__
    if unknown:  # only reachable untyped, e.g. from **kwargs: mypy already refuses it
        raise TypeError(f"unknown embed option(s): {', '.join(sorted(unknown))}")
    pooling, dtype = options.get("pooling"), options.get("dtype", "float32")
    if pooling not in POOLING:
        raise ValueError(f"pooling must be one of {sorted(k for k in POOLING if k)}, not {pooling!r}")
    if dtype not in DTYPE:
        raise ValueError(f"dtype must be one of {sorted(DTYPE)}, not {dtype!r}")
    request = pb.EmbedRequest(
        texts=texts_list(texts),
        pooling=POOLING[pooling],
        token_embeddings=yes_no("token_embeddings", options.get("token_embeddings", False)),
        output_dtype=DTYPE[dtype],
        truncation=truncation(options.get("truncate", False)),
        return_tokens=yes_no("tokens", options.get("tokens", False)),
        bulk=yes_no("bulk", options.get("bulk", False)),
    )
    normalize = options.get("normalize")
    if normalize is not None:
        request.normalize = yes_no("normalize", normalize)
    prompt_name, prompt, dimensions = options.get("prompt_name"), options.get("prompt"), options.get("dimensions")
    if prompt_name is not None:
        if not isinstance(prompt_name, str) or not prompt_name:
            raise ValueError(f"prompt_name must be a non-empty string, not {prompt_name!r}")
        request.prompt_name = prompt_name
    if prompt is not None:
        if not isinstance(prompt, str):
            raise ValueError(f"prompt must be a string, not {prompt!r}")
        request.prompt = prompt
    if dimensions is not None:
        if not isinstance(dimensions, int) or isinstance(dimensions, bool) or dimensions < 1:
            raise ValueError(f"dimensions must be a positive integer, not {dimensions!r}")
        request.dimensions = dimensions
    spec = attention_spec(options.get("attention"))
    if spec is not None:
        request.attention.CopyFrom(spec)
    return request


def tokenize_request(texts: str | Sequence[str], *, truncate: bool = False) -> pb.TokenizeRequest:
    return pb.TokenizeRequest(texts=texts_list(texts), truncation=truncation(truncate))
