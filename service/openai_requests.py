"""OpenAI's embeddings request and response, validated and built; the HTTP door (http_api.py) serves them.

Request: ``{"input": str | [str], "model": str, "encoding_format": "float" | "base64", "dimensions": int}``.
Token-id input (``[int]`` or ``[[int]]``, which OpenAI accepts for its own tokenizer) is refused:
the vectors come from this model's tokenizer, and ids from another one would be meaningless.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from atento.v1 import encoder_pb2 as pb

from .bundle import ModelSpec
from .config import Settings
from .errors import InvalidArgument, NotFound
from .identity import VectorIdentity
from .requests import EmbedOptions, check_texts
from .tokenizer import Encoded

ENCODING_FORMATS = ("float", "base64")


@dataclass(frozen=True)
class EmbeddingsRequest:
    texts: list[str]
    base64: bool  # encoding_format "base64": little-endian float32 bytes, base64-encoded
    dimensions: int | None  # Matryoshka: the first N dimensions (None: all)


def _is_token_ids(value: Any) -> bool:
    return (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    )


def _texts(raw: Any) -> list[str]:
    if isinstance(raw, str):
        return [raw]
    if not isinstance(raw, list):
        raise InvalidArgument("input", "must be a string or a list of strings")
    for i, item in enumerate(raw):
        if isinstance(item, str):
            continue
        if _is_token_ids(item):
            raise InvalidArgument(
                "input", "token-id arrays are not supported: send the text (this server tokenises with its own model)"
            )
        raise InvalidArgument(f"input[{i}]", f"must be a string, not {type(item).__name__}")
    return raw


def parse_embeddings(body: Any, model: ModelSpec, settings: Settings) -> EmbeddingsRequest:
    """The request, or InvalidArgument / NotFound naming the field."""
    if not isinstance(body, dict):
        raise InvalidArgument("request", "must be a JSON object")
    name = body.get("model")
    if name is not None and name != model.name:  # absent: the one model served
        raise NotFound(f"the model '{name}' does not exist: this server serves '{model.name}'", "model_not_found")
    if "input" not in body:
        raise InvalidArgument("input", "is required: a string or a list of strings")
    texts = _texts(body["input"])
    check_texts(texts, settings)  # the same limits as gRPC's EmbedRequest
    encoding = body.get("encoding_format") or "float"
    if encoding not in ENCODING_FORMATS:
        raise InvalidArgument("encoding_format", f"must be one of {', '.join(ENCODING_FORMATS)}, not {encoding!r}")
    dimensions = body.get("dimensions")
    if dimensions is not None and (
        not isinstance(dimensions, int) or isinstance(dimensions, bool) or not 1 <= dimensions <= model.output_size
    ):
        raise InvalidArgument("dimensions", f"must be a whole number from 1 to {model.output_size}, not {dimensions!r}")
    return EmbeddingsRequest(texts, encoding == "base64", dimensions)


def embed_options(model: ModelSpec, dimensions: int | None) -> EmbedOptions:
    """The model's own pooling, modules, normalisation and default prompt (as sentence-transformers'
    ``encode`` applies them), pooled vectors only, float32; over-long texts refused."""
    return EmbedOptions(
        pooling=model.pooling,
        normalize=model.normalize,
        token_embeddings=False,
        attention_selection=None,
        dtype=pb.DTYPE_FLOAT32,
        cut=False,
        tokens=False,
        prompt=model.prompt_texts.get(model.default_prompt_name or "", ""),
        dimensions=dimensions,
    )


def vectors(embeddings: Sequence[np.ndarray] | None) -> np.ndarray:
    """(texts, dimensions) float32: the sentence embeddings the engine made, as the gRPC response has them."""
    assert embeddings is not None, "the OpenAI door always pools"
    return np.stack(embeddings)


def embeddings_response(
    model: str,
    encoded: Sequence[Encoded],
    matrix: np.ndarray,
    as_base64: bool,
    vectors_identity: VectorIdentity | None = None,
) -> dict[str, Any]:
    """OpenAI's response body; base64 is the vector's little-endian float32 bytes. ``atento_identity``
    (an extra member OpenAI clients ignore) says exactly what produced the vectors (identity.py)."""
    data = []
    for i, vector in enumerate(matrix):
        embedding: Any = base64.b64encode(vector.astype("<f4").tobytes()).decode() if as_base64 else vector.tolist()
        data.append({"object": "embedding", "index": i, "embedding": embedding})
    tokens = sum(len(e) for e in encoded)
    body = {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
    if vectors_identity is not None:
        body["atento_identity"] = vectors_identity.as_dict()
    return body
