"""Every call's life on the server: admitted within atento's own concurrency limits, timed, counted
by method and status code, refused while draining, and mapped from domain errors to gRPC statuses
(through ``errors``) in one place.

The limits live here rather than in gRPC's ``maximum_concurrent_rpcs``, which counts every RPC of
the server: the health ``Watch`` streams the SDK keeps open per channel, and reflection, would
take the slots of real calls. Only the Encoder's methods pass through ``observe``, so only they count.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from .errors import NotReady, Overloaded, Quota, abort, status_for
from .metrics import Metrics

T = TypeVar("T")
# A call cancelled with less than this left of its deadline was ended by the deadline, not the client:
# the client's deadline and the server's copy of it (from the grpc-timeout header) differ by the
# header's trip and the server's scheduling, measured up to ~7 ms on a loaded 2-core machine. The
# slack grows with the deadline (a share of it), so a long call on a busy server is judged alike.
DEADLINE_SLACK_S = 0.025
DEADLINE_SLACK_SHARE = 0.05


@dataclass(frozen=True)
class CallLimits:
    """How many calls, and how many of them streams, may be open at once (0: no bound)."""

    max_calls: int = 0
    max_streams: int = 0
    retry_after_s: float = 0.1


def ended_by(context: grpc.aio.ServicerContext, allowed: float | None) -> grpc.StatusCode:
    """Why a call was cut short: its deadline passed (DEADLINE_EXCEEDED), or the client left (CANCELLED).

    gRPC cancels the handler in both cases alike; only the time left tells them apart. ``allowed``
    is the time the call had when it started (None: no deadline).
    """
    remaining = context.time_remaining()
    slack = max(DEADLINE_SLACK_S, DEADLINE_SLACK_SHARE * (allowed or 0.0))
    if remaining is not None and remaining <= slack:
        return grpc.StatusCode.DEADLINE_EXCEEDED
    return grpc.StatusCode.CANCELLED


def past_deadline(context: grpc.aio.ServicerContext, allowed: float | None) -> bool:
    """The call's deadline has passed: whatever it returns now, its client has had DEADLINE_EXCEEDED.

    gRPC ends a call at its deadline in two ways that race: by cancelling the handler, or by ending
    the request stream (a read answers "no more requests"), after which a stream's handler returns
    normally; ``context.cancelled()`` says neither (it reports only a status the server set).
    """
    return allowed is not None and (context.time_remaining() or 0.0) <= 0.0


class CallTracker:
    """Counts the calls in flight, so that a drain can wait for them to finish and limits can hold."""

    def __init__(self, metrics: Metrics, limits: CallLimits = CallLimits()) -> None:
        self.metrics, self.limits = metrics, limits
        self.refused_while_draining = 0
        self.drain_started = asyncio.Event()  # streams watch it to stop taking requests
        self._active = 0
        self._streams = 0
        self._idle = asyncio.Event()

    @property
    def draining(self) -> bool:
        return self.drain_started.is_set()

    @draining.setter
    def draining(self, value: bool) -> None:
        if value:
            self.drain_started.set()
        else:
            self.drain_started.clear()

    async def drained(self) -> None:
        """Until no call is in flight. New calls are refused once ``draining`` is set."""
        while self._active:
            self._idle.clear()
            await self._idle.wait()

    def _admit(self, stream: bool, while_draining: bool = False) -> None:
        """Refuse a call the server has no room for, before it does any work."""
        if self.draining and not while_draining:
            self.refused_while_draining += 1
            raise NotReady("the server is shutting down; retry on another replica", reason="SHUTTING_DOWN")
        limits = self.limits
        if limits.max_calls and self._active >= limits.max_calls:
            self.metrics.rejected.labels("too_many_calls").inc()
            raise Overloaded(
                f"{limits.max_calls} calls are in flight, the most this server takes",
                limits.retry_after_s,
                reason="TOO_MANY_CALLS",
                quota=Quota("max_concurrent_rpcs", f"at most {limits.max_calls} calls at once"),
            )
        if stream and limits.max_streams and self._streams >= limits.max_streams:
            self.metrics.rejected.labels("too_many_streams").inc()
            raise Overloaded(
                f"{limits.max_streams} streams are open, the most this server takes",
                limits.retry_after_s,
                reason="TOO_MANY_STREAMS",
                quota=Quota("max_open_streams", f"at most {limits.max_streams} open streams"),
            )

    @contextlib.contextmanager
    def counted(self) -> Iterator[None]:
        """One call of another front door (HTTP) in flight: admitted like a gRPC call, waited for by drains."""
        self._admit(stream=False)
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
        stream: bool = False,
        *,
        while_draining: bool = False,
    ) -> T:
        """Run ``work`` as the body of call ``method``; a domain error ends the call with its status.

        ``stream``: counted against the open-streams limit too. ``while_draining``: answered while
        draining too (a liveness question has a true answer then)."""
        start, allowed = time.perf_counter(), context.time_remaining()
        code = grpc.StatusCode.OK
        admitted = False
        self.metrics.in_flight.labels(method).inc()
        try:
            try:
                self._admit(stream, while_draining)
            except Exception:
                work.close()
                raise
            admitted = True
            self._active += 1
            self._streams += stream
            result = await work
            if past_deadline(context, allowed):  # its end can reach a stream as the end of its requests
                code = grpc.StatusCode.DEADLINE_EXCEEDED
            return result
        except (asyncio.CancelledError, grpc.aio.InternalError, grpc.aio.UsageError):
            # Cancelled, or gRPC refused a read or write: the call is over from the client's side.
            code = ended_by(context, allowed)
            raise
        except Exception as error:
            status = status_for(error)
            code = status.code
            await abort(context, status)
        finally:
            if admitted:
                self._active -= 1
                self._streams -= stream
                if not self._active:
                    self._idle.set()
            # Counted before it leaves the in-flight gauge: a scrape that sees it gone sees it counted.
            self.metrics.requests.labels(method, code.name).inc()
            self.metrics.request_duration.labels(method, code.name).observe(time.perf_counter() - start)
            self.metrics.in_flight.labels(method).dec()
