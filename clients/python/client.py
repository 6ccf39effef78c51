"""The blocking client."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import grpc
import numpy as np
from atento.v1 import encoder_pb2 as pb

from . import health
from .base import DEFAULT, ClientBase
from .errors import from_rpc_error
from .messages import AttentionSelection, DTypeName, PoolingName, embed_request, tokenize_request
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
from .similarity import cosine_matrix


class Client(ClientBase):
    """A blocking atento client. Use it as a context manager, or call ``close``."""

    def _call(self, method: Any, request: Any, timeout: Any) -> Any:
        try:
            return method(request, timeout=self._seconds(timeout), metadata=self.connection.metadata())
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None

    def embed(
        self,
        texts: str | Sequence[str],
        *,
        normalize: bool | None = None,
        pooling: PoolingName | None = None,
        token_embeddings: bool = False,
        attention: AttentionSelection | bool | None = None,
        dtype: DTypeName = "float32",
        truncate: bool = False,
        tokens: bool = False,
        timeout: Any = DEFAULT,
    ) -> EmbedResult:
        """Embed texts in one call. Unset ``normalize``/``pooling`` take the model's defaults."""
        request = embed_request(
            texts,
            normalize=normalize,
            pooling=pooling,
            token_embeddings=token_embeddings,
            attention=attention,
            dtype=dtype,
            truncate=truncate,
            tokens=tokens,
        )
        return embed_result_from(self._call(self._stub.Embed, request, timeout))

    def embed_stream(
        self,
        texts: Iterable[str],
        *,
        batch_size: int = 32,
        max_in_flight: int = 8,
        timeout: float | None = None,
        **options: Any,
    ) -> Iterator[Encoding]:
        """Embed any number of texts over one bidirectional stream; results come in input order.

        At most ``max_in_flight`` requests of ``batch_size`` texts are outstanding, so memory stays
        bounded however long the input is: the input is read only as results are consumed.
        """
        slots = threading.Semaphore(max_in_flight)
        finished = threading.Event()

        def requests() -> Iterator[pb.EmbedRequest]:
            batch: list[str] = []
            for text in texts:
                batch.append(text)
                if len(batch) == batch_size:
                    if not self._wait_slot(slots, finished):
                        return
                    yield embed_request(batch, **options)
                    batch = []
            if batch and self._wait_slot(slots, finished):
                yield embed_request(batch, **options)

        call = self._stub.EmbedStream(requests(), timeout=timeout, metadata=self.connection.metadata())
        try:
            for response in call:
                slots.release()
                for message in response.results:
                    yield encoding_from(message)
        except grpc.RpcError as error:
            raise from_rpc_error(error) from None
        finally:
            finished.set()
            call.cancel()

    @staticmethod
    def _wait_slot(slots: threading.Semaphore, finished: threading.Event) -> bool:
        while not slots.acquire(timeout=0.1):
            if finished.is_set():  # the reader is gone: stop producing requests
                return False
        return True

    def tokenize(
        self, texts: str | Sequence[str], *, truncate: bool = False, timeout: Any = DEFAULT
    ) -> list[TokenizedText]:
        return tokenized_from(self._call(self._stub.Tokenize, tokenize_request(texts, truncate=truncate), timeout))

    def info(self, *, timeout: Any = DEFAULT) -> ModelInfo:
        return model_info_from(self._call(self._stub.GetModelInfo, pb.GetModelInfoRequest(), timeout))

    def health(self, service: str = "", *, timeout: Any = DEFAULT) -> str:
        """The standard health check: SERVING, NOT_SERVING, SERVICE_UNKNOWN or UNKNOWN."""
        return health.status_name(self._call(self._health, service, timeout))

    def similarity(
        self, a: str | Sequence[str] | np.ndarray, b: str | Sequence[str] | np.ndarray | None = None
    ) -> np.ndarray:
        """Cosine similarity matrix (len(a), len(b)) of texts (embedded here) or embeddings; b defaults to a."""

        def vectors(x: str | Sequence[str] | np.ndarray) -> np.ndarray:
            if isinstance(x, np.ndarray):
                return x
            result = self.embed(x, normalize=True)
            assert result.embeddings is not None
            return result.embeddings

        first = vectors(a)
        return cosine_matrix(first, first if b is None else vectors(b))

    def close(self) -> None:
        for channel in self._channels():
            channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
