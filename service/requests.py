"""Request validation: proto messages in, plain options out, or InvalidArgument naming the field.

Everything here runs before any tokenisation or inference, except the checks that need token
counts (``check_lengths``, ``check_response_size``), which run right after tokenisation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from atento.v1 import encoder_pb2 as pb

from .bundle import GraphRole, ModelSpec
from .config import Settings
from .errors import FailedPrecondition, InvalidArgument, Quota, TooLarge
from .rpc import Malformed
from .tokenizer import Encoded

# Proto enums arrive as plain ints, unknown values included: these tables say which are known.
T = TypeVar("T")
POOLING: dict[int, str | None] = {
    pb.POOLING_MEAN: "mean",
    pb.POOLING_CLS: "cls",
    pb.POOLING_NONE: None,
    pb.POOLING_MAX: "max",
    pb.POOLING_MEAN_SQRT_LEN: "mean_sqrt_len_tokens",
    pb.POOLING_WEIGHTED_MEAN: "weightedmean",
    pb.POOLING_LAST_TOKEN: "lasttoken",
}
DTYPES: dict[int, pb.DType] = {
    pb.DTYPE_UNSPECIFIED: pb.DTYPE_FLOAT32,
    pb.DTYPE_FLOAT32: pb.DTYPE_FLOAT32,
    pb.DTYPE_FLOAT16: pb.DTYPE_FLOAT16,
}
TRUNCATIONS: dict[int, bool] = {pb.TRUNCATION_UNSPECIFIED: False, pb.TRUNCATION_ERROR: False, pb.TRUNCATION_CUT: True}
BYTES_PER_VALUE: dict[int, int] = {pb.DTYPE_FLOAT32: 4, pb.DTYPE_FLOAT16: 2}


def well_formed(request: T, field: str = "request") -> T:
    """The request, or INVALID_ARGUMENT when its bytes did not parse (see ``rpc.lenient``)."""
    if isinstance(request, Malformed):
        raise InvalidArgument(field, f"not a valid {request.message}: {request.error}", reason="MALFORMED_REQUEST")
    return request


@dataclass(frozen=True)
class AttentionSelection:
    """Which attention maps a request wants (the proto's ``AttentionSpec``, validated)."""

    layers: tuple[int, ...]
    heads: tuple[int, ...]
    average_heads: bool


@dataclass(frozen=True)
class EmbedOptions:
    pooling: str | None  # "mean", "cls", or None for no pooled embedding
    normalize: bool
    token_embeddings: bool
    attention_selection: AttentionSelection | None  # None: no attention maps
    dtype: pb.DType  # DTYPE_FLOAT32 or DTYPE_FLOAT16
    cut: bool  # truncate over-long texts instead of refusing them
    tokens: bool  # send tokens with offsets
    prompt: str = ""  # put in front of every text (the request's, or the model's default prompt)
    dimensions: int | None = None  # Matryoshka: keep the first N dimensions of the embedding

    @property
    def graph(self) -> GraphRole:
        """Attention maps come only from the attention-maps graph; everything else from the fast one."""
        return GraphRole.FAST if self.attention_selection is None else GraphRole.ATTENTION_MAPS


def check_texts(texts: Sequence[str], settings: Settings, prefix: str = "") -> None:
    if not texts:
        raise InvalidArgument(f"{prefix}texts", "must hold at least one text", reason="NO_TEXTS")
    if len(texts) > settings.max_texts_per_request:
        raise TooLarge(
            f"{prefix}texts",
            f"{len(texts)} texts exceed the limit of {settings.max_texts_per_request} per request",
            reason="TOO_MANY_TEXTS",
            quota=Quota("max_texts_per_request", f"at most {settings.max_texts_per_request} texts per request"),
        )
    for i, text in enumerate(texts):
        if not text:
            raise InvalidArgument(f"{prefix}texts[{i}]", "must not be empty", reason="EMPTY_TEXT")
        if len(text) > settings.max_chars_per_text:
            raise TooLarge(
                f"{prefix}texts[{i}]",
                f"{len(text)} characters exceed the limit of {settings.max_chars_per_text}",
                reason="TEXT_TOO_LONG",
                quota=Quota("max_chars_per_text", f"at most {settings.max_chars_per_text} characters per text"),
            )


def enum_value(value: int, known: Mapping[int, object], field: str) -> None:
    if value not in known:
        raise InvalidArgument(field, f"unknown value {value}", reason="UNKNOWN_ENUM_VALUE")


def check_truncation(value: int, field: str) -> bool:
    enum_value(value, TRUNCATIONS, field)
    return TRUNCATIONS[value]


def indices(values: Sequence[int], count: int, field: str, what: str) -> tuple[int, ...]:
    if not values:
        return tuple(range(count))
    seen: set[int] = set()
    for i, value in enumerate(values):
        if not 0 <= value < count:
            raise InvalidArgument(
                f"{field}[{i}]", f"{what} {value} is out of range [0, {count})", reason="INDEX_OUT_OF_RANGE"
            )
        if value in seen:
            raise InvalidArgument(f"{field}[{i}]", f"{what} {value} is listed twice", reason="DUPLICATE_INDEX")
        seen.add(value)
    return tuple(values)


def prompt_text(request: pb.EmbedRequest, model: ModelSpec, max_chars: int, prefix: str = "") -> str:
    """The prompt sentence-transformers would apply: the text given, the one named, or the model's default."""
    if request.HasField("prompt"):
        if len(request.prompt) > max_chars:
            raise InvalidArgument(
                f"{prefix}prompt", f"{len(request.prompt)} characters exceed the limit of {max_chars}"
            )
        return request.prompt
    prompts = model.prompt_texts
    if request.prompt_name:
        if request.prompt_name not in prompts:
            known = ", ".join(repr(name) for name in prompts) or "none"
            raise InvalidArgument(
                f"{prefix}prompt_name", f"{request.prompt_name!r} is not a prompt of this model (it knows: {known})"
            )
        return prompts[request.prompt_name]
    return prompts.get(model.default_prompt_name or "", "")


def check_dimensions(value: int, model: ModelSpec, field: str) -> int | None:
    if value == 0:
        return None
    if not 1 <= value <= model.output_size:
        raise InvalidArgument(field, f"{value} is out of range [1, {model.output_size}] (0 keeps every dimension)")
    return value


def embed_options(
    request: pb.EmbedRequest, model: ModelSpec, settings: Settings, maps_available: bool, prefix: str = ""
) -> EmbedOptions:
    check_texts(request.texts, settings, prefix)
    if request.pooling == pb.POOLING_UNSPECIFIED:
        pooling: str | None = model.pooling
    else:
        enum_value(request.pooling, POOLING, f"{prefix}pooling")
        pooling = POOLING[request.pooling]
    enum_value(request.output_dtype, DTYPES, f"{prefix}output_dtype")
    cut = check_truncation(request.truncation, f"{prefix}truncation")
    selection = None
    if request.HasField("attention"):  # the request's attention selection
        if not maps_available:
            raise FailedPrecondition(
                "attention maps are off on this server (started with --no-attention-maps)", reason="ATTENTION_MAPS_OFF"
            )
        spec = request.attention
        selection = AttentionSelection(
            layers=indices(spec.layers, model.num_layers, f"{prefix}attention.layers", "layer"),
            heads=indices(spec.heads, model.num_heads, f"{prefix}attention.heads", "head"),
            average_heads=spec.average_heads,
        )
    if pooling is None and not request.token_embeddings and selection is None and not request.return_tokens:
        raise InvalidArgument(
            f"{prefix}pooling",
            "POOLING_NONE without token_embeddings, attention or tokens asks for nothing",
            reason="NOTHING_REQUESTED",
        )
    return EmbedOptions(
        pooling=pooling,
        normalize=request.normalize if request.HasField("normalize") else model.normalize,
        token_embeddings=request.token_embeddings,
        attention_selection=selection,
        dtype=DTYPES[request.output_dtype],
        cut=cut,
        tokens=request.return_tokens or request.token_embeddings or selection is not None,
        prompt=prompt_text(request, model, settings.max_chars_per_text, prefix),
        dimensions=check_dimensions(request.dimensions, model, f"{prefix}dimensions"),
    )


def check_lengths(encoded: Sequence[Encoded], cut: bool, max_tokens: int, prefix: str = "") -> None:
    if cut:
        return
    for i, item in enumerate(encoded):
        if item.truncated:
            raise InvalidArgument(
                f"{prefix}texts[{i}]",
                f"longer than the model's maximum of {max_tokens} tokens (set truncation to TRUNCATION_CUT to cut it)",
                reason="TOO_MANY_TOKENS",
                quota=Quota("max_tokens", f"the model reads at most {max_tokens} tokens per text"),
            )


def check_response_size(encoded: Sequence[Encoded], options: EmbedOptions, model: ModelSpec, limit: int) -> int:
    """Refuse, before computing it, a response larger than the server may send; else its size, in bytes."""
    per_value = BYTES_PER_VALUE[options.dtype]
    total = 0
    for item in encoded:
        n = len(item)
        total += (model.output_size + (model.hidden_size * n if options.token_embeddings else 0)) * per_value
        if (selection := options.attention_selection) is not None:
            heads = 1 if selection.average_heads else len(selection.heads)
            total += len(selection.layers) * heads * n * n * per_value
        if options.tokens:
            total += n * 32  # a token message: id, text, offsets
    if total > limit:
        raise InvalidArgument(
            "attention" if options.attention_selection is not None else "token_embeddings",
            f"the response would take about {total >> 20} MiB, over the {limit >> 20} MiB limit: "
            "ask for fewer texts, layers or heads, average the heads, or use DTYPE_FLOAT16",
            reason="RESPONSE_TOO_LARGE",
            quota=Quota("max_send_message_bytes", f"responses of at most {limit} bytes"),
        )
    return total
