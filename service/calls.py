"""Every call's life on the server: timed, counted by method and status code, refused while
draining, and mapped from domain errors to gRPC statuses (through ``errors``) in one place."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

import grpc

from .errors import NotReady, abort, status_for
from .metrics import Metrics

T = TypeVar("T")


class CallTracker:
    """Counts the calls in flight, so that a drain can wait for them to finish."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.draining = False
        self.refused_while_draining = 0
        self._active = 0
        self._idle = asyncio.Event()

    async def drained(self) -> None:
        """Until no call is in flight. New calls are refused once ``draining`` is set."""
        while self._active:
            self._idle.clear()
            await self._idle.wait()

    @contextlib.contextmanager
    def counted(self) -> Iterator[None]:
        """One call of another front door (HTTP) in flight: refused while draining, waited for by drains."""
        if self.draining:
            self.refused_while_draining += 1
            raise NotReady("the server is shutting down; retry on another replica")
        self._active += 1
        try:
            yield
        finally:
            self._active -= 1
            if not self._active:
                self._idle.set()

    async def observe(
        self,
        method: str,
        context: grpc.aio.ServicerContext,
        work: Coroutine[Any, Any, T],
        *,
        while_draining: bool = False,
    ) -> T:
        """Run ``work`` as the body of call ``method``; a domain error ends the call with its status.

        ``while_draining``: answered while draining too (a liveness question has a true answer then).
        """
        start = time.perf_counter()
        code = grpc.StatusCode.OK
        self.metrics.in_flight.labels(method).inc()
        self._active += 1
        try:
            if self.draining and not while_draining:
                work.close()
                self.refused_while_draining += 1
                raise NotReady("the server is shutting down; retry on another replica", reason="SHUTTING_DOWN")
            result = await work
            if context.cancelled():  # the client went away: a stream can end "normally" after that
                code = grpc.StatusCode.CANCELLED
            return result
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except Exception as error:
            status = status_for(error)
            code = status.code
            await abort(context, status)
        finally:
            self._active -= 1
            if not self._active:
                self._idle.set()
            # Counted before it leaves the in-flight gauge: a scrape that sees it gone sees it counted.
            self.metrics.requests.labels(method, code.name).inc()
            self.metrics.request_duration.labels(method, code.name).observe(time.perf_counter() - start)
            self.metrics.in_flight.labels(method).dec()
