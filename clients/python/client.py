"""The blocking client: it sends the calls that ``calls`` builds and waits for their answers."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar, Unpack

import numpy as np
from atento.v1 import encoder_pb2 as pb

from . import calls
from .base import DEFAULT, ClientBase, Timeout
from .calls import Call, Texts, Vectors
from .errors import rpc_errors
from .messages import EmbedOptions
from .results import EmbedResult, Encoding, ModelInfo, TokenizedText
from .resume import Unanswered
from .similarity import similarity

R = TypeVar("R")


class Client(ClientBase):
    """A blocking atento client. Use it as a context manager, or call ``close``."""

    def _send(self, call: Call[R], timeout: Timeout) -> R:
        with rpc_errors():
            response = self._unary[call.method](call.request, **self._call_options(timeout))
        return call.decode(response)

    def embed(self, texts: Texts, *, timeout: Timeout = DEFAULT, **options: Unpack[EmbedOptions]) -> EmbedResult:
        """Embed texts in one call. Options left out take the defaults EmbedOptions lists."""
        return self._send(calls.embed(texts, **options), timeout)

    def embed_stream(
        self,
        texts: Iterable[str],
        *,
        batch_size: int = 32,
        max_in_flight: int = 8,
        timeout: float | None = None,
        **options: Unpack[EmbedOptions],
    ) -> Iterator[Encoding]:
        """Embed any number of texts over one bidirectional stream; results come in input order.

        At most ``max_in_flight`` requests of ``batch_size`` texts are outstanding, so memory stays
        bounded however long the input is: the input is read only as results are consumed. A stream
        that a draining or dying server ends is continued on a new one (see ``resume``); ``timeout``
        is each stream's deadline. An error the input raises is raised here.
        """
        batches = calls.StreamBatches(batch_size=batch_size, max_in_flight=max_in_flight, **options)
        source = batches.requests(texts)
        unanswered = Unanswered(self.connection.retry)
        slots = threading.Semaphore(batches.max_in_flight)  # one per unanswered request
        ledger = threading.Lock()  # ``unanswered``, shared by gRPC's threads and this one
        reading = threading.Lock()  # one read of the input at a time; results never wait for it

        def read(number: int) -> pb.EmbedRequest | None:
            """Request ``number``, read from the input unless a stream already did; a slot is held for it."""
            with reading:
                with ledger:
                    request = unanswered.at(number)
                if request is None:
                    if unanswered.failure is not None:
                        raise unanswered.failure
                    try:
                        request = next(source, None)
                    except Exception as error:
                        unanswered.failure = error
                        raise
                    if request is not None:
                        with ledger:
                            unanswered.sent(request)
                        return request
            slots.release()  # already read (by an ended stream), or the input is over
            return request

        def requests(ended: threading.Event) -> Iterator[pb.EmbedRequest]:
            number = unanswered.first  # what an ended stream left unanswered goes first
            while not ended.is_set():  # runs on gRPC's thread, which sends what it yields
                with ledger:
                    request = unanswered.at(number)
                if request is None and (not self._wait_slot(slots, ended) or (request := read(number)) is None):
                    return
                yield request
                number += 1

        while True:
            ended = threading.Event()
            call = self._stream(requests(ended), **self._call_options(timeout))
            with unanswered.attempt(call, ended) as attempt, rpc_errors():
                for response in call:
                    with ledger:
                        unanswered.answered()
                    slots.release()
                    yield from batches.decode(response)
                return
            time.sleep(attempt.wait)

    @staticmethod
    def _wait_slot(slots: threading.Semaphore, finished: threading.Event) -> bool:
        while not slots.acquire(timeout=0.1):
            if finished.is_set():  # the reader is gone: stop producing requests
                return False
        if finished.is_set():  # the stream ended meanwhile: the slot is the next stream's
            slots.release()
            return False
        return True

    def tokenize(self, texts: Texts, *, truncate: bool = False, timeout: Timeout = DEFAULT) -> list[TokenizedText]:
        return self._send(calls.tokenize(texts, truncate=truncate), timeout)

    def info(self, *, timeout: Timeout = DEFAULT) -> ModelInfo:
        return self._send(calls.info(), timeout)

    def health(self, service: str = "", *, timeout: Timeout = DEFAULT) -> str:
        """The standard health check: SERVING, NOT_SERVING, SERVICE_UNKNOWN or UNKNOWN."""
        return self._send(calls.health_check(service), timeout)

    def similarity(self, a: Vectors, b: Vectors | None = None, *, timeout: Timeout = DEFAULT) -> np.ndarray:
        """Cosine similarity matrix (len(a), len(b)) of texts (embedded here) or embeddings; b defaults to a."""
        inputs = calls.similarity_inputs(a, b)
        return similarity(*[x if isinstance(x, np.ndarray) else self._send(x, timeout) for x in inputs])

    def close(self) -> None:
        for channel in self._channels():
            channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
