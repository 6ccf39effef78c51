"""Plain, typed results holding numpy arrays, decoded from the proto messages."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from atento.v1 import encoder_pb2 as pb

from .identity import VectorIdentity, identity_from

NUMPY_DTYPE: dict[int, np.dtype[np.floating]] = {pb.DTYPE_FLOAT32: np.dtype("<f4"), pb.DTYPE_FLOAT16: np.dtype("<f2")}


def decode_tensor(tensor: pb.Tensor) -> np.ndarray:
    """A read-only view over the message's bytes: no copy is made."""
    dtype = NUMPY_DTYPE.get(tensor.dtype)
    if dtype is None:
        raise ValueError(f"unknown tensor dtype {tensor.dtype}")
    array: np.ndarray = np.frombuffer(tensor.data, dtype=dtype).reshape(tuple(tensor.shape))
    return array


@dataclass(frozen=True)
class Token:
    id: int
    text: str
    start: int  # character offsets into the text, [start, end); 0, 0 for special tokens
    end: int
    special: bool


@dataclass(frozen=True)
class Encoding:
    """One text's outputs; fields not asked for are None or empty."""

    embedding: np.ndarray | None  # (hidden,)
    token_embeddings: np.ndarray | None  # (tokens, hidden)
    tokens: list[Token]
    attention_maps: np.ndarray | None  # (layers, heads, tokens, tokens) probabilities; heads = 1 when averaged
    attention_layers: list[int]  # the layers and heads the maps cover, in order
    attention_heads: list[int]
    truncated: bool

    @property
    def attention(self) -> np.ndarray | None:
        """Deprecated alias of ``attention_maps`` (the field's name before the rename), kept so that
        code written against it still runs; read-only."""
        return self.attention_maps


@dataclass(frozen=True)
class Usage:
    texts: int
    tokens: int


@dataclass(frozen=True)
class Timings:
    tokenize_s: float
    queue_s: float
    inference_s: float
    total_s: float


@dataclass(frozen=True)
class EmbedResult:
    model: str
    results: list[Encoding]
    usage: Usage
    timings: Timings
    embeddings: np.ndarray | None = field(default=None)  # (texts, hidden), the pooled embeddings stacked
    identity: VectorIdentity | None = None  # what produced the vectors (None from a server that does not say)

    def __len__(self) -> int:
        return len(self.results)


@dataclass(frozen=True)
class TokenizedText:
    tokens: list[Token]
    truncated: bool

    @property
    def ids(self) -> list[int]:
        return [t.id for t in self.tokens]


@dataclass(frozen=True)
class Limits:
    max_texts_per_request: int
    max_chars_per_text: int
    max_batch_tokens: int
    max_batch_size: int
    max_queued_texts: int
    max_receive_message_bytes: int
    max_send_message_bytes: int


@dataclass(frozen=True)
class ModelInfo:
    name: str
    hidden_size: int
    num_layers: int
    num_heads: int
    max_tokens: int
    limits: Limits
    provider: str
    bundle_sha256: str
    atento_version: str
    default_pooling: str
    default_normalize: bool
    attention_available: bool
    precision: str
    prompts: dict[str, str] = field(default_factory=dict)  # the names an embed call's prompt_name may take
    default_prompt_name: str | None = None  # the prompt applied when a call names none
    embedding_size: int = 0  # the pooled embedding's size (dimensions may ask for fewer)


def tokens_from(messages: Sequence[pb.Token]) -> list[Token]:
    return [Token(t.id, t.text, t.start, t.end, t.special) for t in messages]


def encoding_from(message: pb.Encoding) -> Encoding:
    return Encoding(
        embedding=decode_tensor(message.embedding) if message.HasField("embedding") else None,
        token_embeddings=decode_tensor(message.token_embeddings) if message.HasField("token_embeddings") else None,
        tokens=tokens_from(message.tokens),
        attention_maps=decode_tensor(message.attention) if message.HasField("attention") else None,
        attention_layers=list(message.attention_layers),
        attention_heads=list(message.attention_heads),
        truncated=message.truncated,
    )


def embed_result_from(response: pb.EmbedResponse) -> EmbedResult:
    results = [encoding_from(r) for r in response.results]
    pooled = [r.embedding for r in results if r.embedding is not None]
    t = response.timings
    return EmbedResult(
        model=response.model,
        results=results,
        usage=Usage(texts=response.usage.texts, tokens=response.usage.tokens),
        timings=Timings(t.tokenize_ns / 1e9, t.queue_ns / 1e9, t.inference_ns / 1e9, t.total_ns / 1e9),
        embeddings=np.stack(pooled) if pooled and len(pooled) == len(results) else None,
        identity=identity_from(response.identity) if response.HasField("identity") else None,
    )


def tokenized_from(response: pb.TokenizeResponse) -> list[TokenizedText]:
    return [TokenizedText(tokens_from(r.tokens), r.truncated) for r in response.results]


def model_info_from(message: pb.ModelInfo) -> ModelInfo:
    limits = message.limits
    return ModelInfo(
        name=message.name,
        hidden_size=message.hidden_size,
        num_layers=message.num_layers,
        num_heads=message.num_heads,
        max_tokens=message.max_tokens,
        limits=Limits(
            limits.max_texts_per_request,
            limits.max_chars_per_text,
            limits.max_batch_tokens,
            limits.max_batch_size,
            limits.max_queued_texts,
            limits.max_receive_message_bytes,
            limits.max_send_message_bytes,
        ),
        provider=message.provider,
        bundle_sha256=message.bundle_sha256,
        atento_version=message.atento_version,
        default_pooling=pb.Pooling.Name(message.default_pooling).removeprefix("POOLING_").lower(),
        default_normalize=message.default_normalize,
        attention_available=message.attention_available,
        precision=message.precision,
        prompts=dict(message.prompts),
        default_prompt_name=message.default_prompt_name or None,
        embedding_size=message.embedding_size,
    )
