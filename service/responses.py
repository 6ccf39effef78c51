"""Model outputs -> proto messages. Tensors go out as raw little-endian bytes with dtype and shape."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from atento.v1 import encoder_pb2 as pb

from .batcher import ItemOutput
from .pooling import l2_normalize, pool
from .requests import EmbedOptions
from .tokenizer import Encoded

NUMPY_DTYPE: dict[int, np.dtype[np.floating]] = {pb.DTYPE_FLOAT32: np.dtype("<f4"), pb.DTYPE_FLOAT16: np.dtype("<f2")}


def tensor(array: np.ndarray, dtype: pb.DType) -> pb.Tensor:
    data = np.ascontiguousarray(array, dtype=NUMPY_DTYPE[dtype])
    return pb.Tensor(dtype=dtype, shape=data.shape, data=data.tobytes())


def tokens(encoded: Encoded) -> list[pb.Token]:
    return [
        pb.Token(id=int(token_id), text=text, start=start, end=end, special=bool(special))
        for token_id, text, (start, end), special in zip(
            encoded.ids, encoded.tokens, encoded.offsets, encoded.special, strict=True
        )
    ]


def encoding(encoded: Encoded, output: ItemOutput, options: EmbedOptions) -> pb.Encoding:
    fields: dict[str, object] = {"truncated": encoded.truncated}
    if options.pooling is not None:
        pooled = pool(output.hidden[None], np.ones((1, len(encoded)), dtype=np.int64), options.pooling)
        fields["embedding"] = tensor((l2_normalize(pooled) if options.normalize else pooled)[0], options.dtype)
    if options.token_embeddings:
        fields["token_embeddings"] = tensor(output.hidden, options.dtype)
    if options.attention is not None and output.attentions is not None:
        selection = options.attention
        maps = output.attentions[np.ix_(selection.layers, selection.heads)]  # (layers, heads, S, S)
        if selection.average_heads:
            maps = maps.mean(axis=1, keepdims=True)  # (layers, 1, S, S)
        fields["attention"] = tensor(maps, options.dtype)
        fields["attention_layers"] = selection.layers
        fields["attention_heads"] = selection.heads
    if options.tokens:
        fields["tokens"] = tokens(encoded)
    return pb.Encoding(**fields)  # type: ignore[arg-type]


def embed_response(
    model: str,
    encoded: Sequence[Encoded],
    outputs: Sequence[ItemOutput],
    options: EmbedOptions,
    tokenize_s: float,
) -> pb.EmbedResponse:
    """Every text's Encoding, with usage and the stage timings (total is filled in by the caller)."""
    return pb.EmbedResponse(
        results=[encoding(e, o, options) for e, o in zip(encoded, outputs, strict=True)],
        usage=pb.Usage(texts=len(encoded), tokens=sum(len(e) for e in encoded)),
        timings=pb.Timings(
            tokenize_ns=int(tokenize_s * 1e9),
            queue_ns=int(max(o.queue_s for o in outputs) * 1e9),
            inference_ns=int(max(o.inference_s for o in outputs) * 1e9),
        ),
        model=model,
    )


def tokenized(encoded: Encoded) -> pb.TokenizedText:
    return pb.TokenizedText(tokens=tokens(encoded), truncated=encoded.truncated)
