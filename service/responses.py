"""Model outputs -> proto messages. Tensors go out as raw little-endian bytes with dtype and shape."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from atento.v1 import encoder_pb2 as pb

from .batcher import ItemOutput
from .requests import AttentionSelection, EmbedOptions
from .tokenizer import Encoded

NUMPY_DTYPE: dict[int, np.dtype[np.floating]] = {pb.DTYPE_FLOAT32: np.dtype("<f4"), pb.DTYPE_FLOAT16: np.dtype("<f2")}


def fill_tensor(target: pb.Tensor, array: np.ndarray, dtype: pb.DType) -> None:
    """Raw little-endian bytes in C order: ``tobytes`` makes the one copy, even from a strided view."""
    target.dtype = dtype
    target.shape.extend(array.shape)
    target.data = array.astype(NUMPY_DTYPE[dtype], copy=False).tobytes()


def tokens(encoded: Encoded) -> list[pb.Token]:
    return [
        pb.Token(id=int(token_id), text=text, start=start, end=end, special=bool(special))
        for token_id, text, (start, end), special in zip(
            encoded.ids, encoded.tokens, encoded.offsets, encoded.special, strict=True
        )
    ]


def selected_maps(maps: np.ndarray, selection: AttentionSelection) -> np.ndarray:
    """One text's attention maps (layers, heads, S, S) -> the selection's (layers', heads' or 1, S, S)."""
    if selection.layers != tuple(range(maps.shape[0])) or selection.heads != tuple(range(maps.shape[1])):
        maps = maps[np.ix_(selection.layers, selection.heads)]
    if selection.average_heads:
        maps = maps.mean(axis=1, keepdims=True)  # (layers, 1, S, S)
    return maps


def fill_encoding(
    target: pb.Encoding, encoded: Encoded, output: ItemOutput, options: EmbedOptions, embedding: np.ndarray | None
) -> None:
    """Written in place: protobuf copies a large sub-message given to a constructor slowly (5 ms for 4 MB)."""
    target.truncated = encoded.truncated
    if embedding is not None:
        fill_tensor(target.embedding, embedding, options.dtype)
    if options.token_embeddings:
        fill_tensor(target.token_embeddings, output.hidden, options.dtype)
    if (selection := options.attention_selection) is not None and output.attention_maps is not None:
        fill_tensor(target.attention, selected_maps(output.attention_maps, selection), options.dtype)
        target.attention_layers.extend(selection.layers)
        target.attention_heads.extend(selection.heads)
    if options.tokens:
        target.tokens.extend(tokens(encoded))


def embed_response(
    model: str,
    encoded: Sequence[Encoded],
    outputs: Sequence[ItemOutput],
    options: EmbedOptions,
    tokenize_s: float,
    embeddings: Sequence[np.ndarray] | None = None,
) -> pb.EmbedResponse:
    """Every text's Encoding, with usage and the stage timings (total is filled in by the caller)."""
    response = pb.EmbedResponse(model=model)
    for i, (item, output) in enumerate(zip(encoded, outputs, strict=True)):
        fill_encoding(response.results.add(), item, output, options, None if embeddings is None else embeddings[i])
    response.usage.texts = len(encoded)
    response.usage.tokens = sum(len(e) for e in encoded)
    response.timings.tokenize_ns = int(tokenize_s * 1e9)
    response.timings.queue_ns = int(max(o.queue_s for o in outputs) * 1e9)
    response.timings.inference_ns = int(max(o.inference_s for o in outputs) * 1e9)
    return response


def tokenized(encoded: Encoded) -> pb.TokenizedText:
    return pb.TokenizedText(tokens=tokens(encoded), truncated=encoded.truncated)
