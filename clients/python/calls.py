"""The client's core, without I/O: what each call sends and how its answer becomes a typed result.

Every SDK method is a ``Call``: the RPC's name, the request message built (and checked) from the
Python arguments, and the decoder of the response. ``Client`` and ``AsyncClient`` only send calls
and hand the responses to the decoders, the one blocking and the other awaiting, so each option,
each check and each decoding rule is written once, and tested here without a server.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, Unpack

import numpy as np
from atento.v1 import encoder_pb2 as pb

from . import health
from .messages import EmbedOptions, embed_request, tokenize_request
from .results import (
    EmbedResult,
    Encoding,
    ModelInfo,
    TokenizedText,
    embed_result_from,
    encoding_from,
    model_info_from,
    tokenized_from,
)

R = TypeVar("R")
Texts = str | Sequence[str]
Vectors = str | Sequence[str] | np.ndarray  # texts to embed, or embeddings already made

EMBED, TOKENIZE, MODEL_INFO = "Embed", "Tokenize", "GetModelInfo"
ENCODER_METHODS = (EMBED, TOKENIZE, MODEL_INFO)  # unary methods of the atento.v1.Encoder service
HEALTH_CHECK = health.CHECK_METHOD  # sent on the probe channel, which reaches replicas that are not SERVING


@dataclass(frozen=True)
class Call(Generic[R]):
    """One unary RPC, described: ``method`` (an ENCODER_METHODS name or HEALTH_CHECK), the request
    message, and ``decode``, which turns the response message into what the SDK method returns."""

    method: str
    request: Any
    decode: Callable[[Any], R]


def embed(texts: Texts, **options: Unpack[EmbedOptions]) -> Call[EmbedResult]:
    return Call(EMBED, embed_request(texts, **options), embed_result_from)


def tokenize(texts: Texts, *, truncate: bool = False) -> Call[list[TokenizedText]]:
    return Call(TOKENIZE, tokenize_request(texts, truncate=truncate), tokenized_from)


def info() -> Call[ModelInfo]:
    return Call(MODEL_INFO, pb.GetModelInfoRequest(), model_info_from)


def health_check(service: str = "") -> Call[str]:
    """The standard health check: SERVING, NOT_SERVING, SERVICE_UNKNOWN or UNKNOWN."""
    return Call(HEALTH_CHECK, health.HealthCheckRequest(service=service), health.status_name)


def pooled_embeddings(response: pb.EmbedResponse) -> np.ndarray:
    embeddings = embed_result_from(response).embeddings
    if embeddings is None:  # only a server that ignores the pooling asked for answers so
        raise ValueError("the server returned no pooled embeddings to compare")
    return embeddings


def similarity_inputs(a: Vectors, b: Vectors | None = None) -> list[np.ndarray | Call[np.ndarray]]:
    """What a similarity compares, a then b (none for b means a with itself): embeddings given as
    arrays are used as they are; texts need the call that embeds them, normalised and pooled."""

    def vectors(x: Vectors) -> np.ndarray | Call[np.ndarray]:
        if isinstance(x, np.ndarray):
            return x
        return Call(EMBED, embed_request(x, normalize=True), pooled_embeddings)

    return [vectors(a)] if b is None else [vectors(a), vectors(b)]


class StreamBatches:
    """One embed stream, without I/O: texts in, requests of ``batch_size`` texts out, and responses
    back into encodings, in input order (the server answers a stream's requests in order).

    Texts are cut into requests as they come (``add``, then ``finish`` for the rest), so an input of
    any length is read only as far as requests are sent. Each client bounds the requests in flight
    to ``max_in_flight`` with its own kind of semaphore. Bad options fail here, before the stream
    opens, instead of inside the stream's request iterator.
    """

    def __init__(self, *, batch_size: int = 32, max_in_flight: int = 8, **options: Unpack[EmbedOptions]) -> None:
        for name, value in (("batch_size", batch_size), ("max_in_flight", max_in_flight)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be an integer of at least 1, not {value!r}")
        # A stream of batches is bulk work (indexing) unless the caller says otherwise: the server
        # then serves interactive calls first, and this stream never starves them.
        options = {"bulk": True, **options}
        embed_request([], **options)  # checks every option now
        self.batch_size, self.max_in_flight, self.options = batch_size, max_in_flight, options
        self._pending: list[str] = []

    def add(self, text: str) -> pb.EmbedRequest | None:
        """The next request, once ``text`` fills a batch."""
        self._pending.append(text)
        return self._cut() if len(self._pending) == self.batch_size else None

    def finish(self) -> pb.EmbedRequest | None:
        """The last, shorter request, if texts are left over."""
        return self._cut() if self._pending else None

    def requests(self, texts: Iterable[str]) -> Iterator[pb.EmbedRequest]:
        for text in texts:
            if (request := self.add(text)) is not None:
                yield request
        if (request := self.finish()) is not None:
            yield request

    def _cut(self) -> pb.EmbedRequest:
        batch, self._pending = self._pending, []
        return embed_request(batch, **self.options)

    @staticmethod
    def decode(response: pb.EmbedResponse) -> list[Encoding]:
        return [encoding_from(message) for message in response.results]
