"""An embed stream that outlives the replica it started on: what was not answered is sent again.

A draining server answers every request it holds, then ends the stream with UNAVAILABLE (the rest
may be retried elsewhere); a replica that dies ends it with UNAVAILABLE too. Embedding has no side
effects, so the client opens a new stream, which the channel gives to a replica that is SERVING (or
holds until one is: gRPC's wait-for-ready), and sends the unanswered requests first: the caller sees
every result once, in input order, across a rolling restart. ``Client`` and ``AsyncClient`` share
this bookkeeping; each reads the input and holds the in-flight slots its own way.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from atento.v1 import encoder_pb2 as pb

from .connection import Retry
from .errors import AtentoError, InternalError, UnavailableError

CORE_INTERNAL = "Internal error from Core"  # gRPC's client, when a call ends under its writes


@dataclass
class Attempt:
    """One stream of the job; ``wait``: seconds before the next stream, once this one ended resumably."""

    wait: float = 0.0


class Unanswered:
    """The requests of an embed stream taken from the input and not answered yet, and when to send
    them again.

    Requests are numbered from the input's start: a stream sends from ``first`` on, reading the
    input only past ``end``. Attempts and backoff (jittered, as gRPC's own) follow the connection's
    ``Retry`` policy; an answer starts the count again; ``retry=None`` resends nothing.
    """

    def __init__(self, retry: Retry | None) -> None:
        self.retry = retry
        self.first = 0  # the number of the oldest request not answered
        self._requests: deque[pb.EmbedRequest] = deque()  # at most max_in_flight: their slots are held
        self._failures = 0  # streams ended UNAVAILABLE since the last answer
        # What the input raised, on whichever stream's reader (gRPC only logs an error there): no
        # more is read from it, and the caller gets it once the stream ends.
        self.failure: Exception | None = None

    @property
    def end(self) -> int:
        """The number the next request read from the input will have."""
        return self.first + len(self._requests)

    def at(self, number: int) -> pb.EmbedRequest | None:
        """Request ``number`` if it was read and is not answered yet, else None."""
        return self._requests[number - self.first] if self.first <= number < self.end else None

    def sent(self, request: pb.EmbedRequest) -> None:
        self._requests.append(request)

    def answered(self) -> None:
        self._requests.popleft()  # a stream answers its requests in order
        self.first += 1
        self._failures = 0

    @staticmethod
    def resumable(error: AtentoError) -> bool:
        """The stream ended under its requests, not because of them: UNAVAILABLE (a drain, a replica
        gone), or the INTERNAL that gRPC's client reports in its place when the server ends a
        bidirectional call while the client is still writing (the server's own INTERNAL names its
        reason; this one has none and gRPC core's words)."""
        core_lost_it = isinstance(error, InternalError) and error.reason is None and error.message == CORE_INTERNAL
        return isinstance(error, UnavailableError) or core_lost_it

    def backoff(self) -> float | None:
        """Seconds to wait before opening the next stream, or None: give up (the UNAVAILABLE stands)."""
        if self.retry is None or self._failures + 1 >= self.retry.attempts:
            return None
        ceiling = min(self.retry.initial_backoff_s * self.retry.multiplier**self._failures, self.retry.max_backoff_s)
        self._failures += 1
        return random.uniform(0, ceiling)

    @contextlib.contextmanager
    def attempt(self, call: Any, ended: threading.Event | asyncio.Event) -> Iterator[Attempt]:
        """Around one stream: however it ends, its request reader is told to stop (``ended``) and the
        call is cancelled. An error that ends it resumably is held back and ``wait`` set; any other
        error, or one past the retry policy, leaves as it came, and an error of the input itself
        (``failure``) leaves in its place: it is the caller's, whichever stream's reader met it."""
        attempt = Attempt()
        try:
            yield attempt
        except AtentoError as error:
            if self.failure is None and self.resumable(error) and (wait := self.backoff()) is not None:
                attempt.wait = wait
            elif self.failure is None:
                raise
        except asyncio.CancelledError:
            if self.failure is None:  # grpc.aio cancels a call whose input raised: that is the error
                raise
        finally:
            ended.set()
            call.cancel()
        if self.failure is not None:
            raise self.failure
