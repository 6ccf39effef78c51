"""Ordered concurrency for bidirectional streams: up to ``window`` requests worked on at once,
responses leaving in request order.

A request is read only when the window has room, and a request's slot is freed only once its
response has been handed on (written to the client), so a client that stops reading responses is
held back by flow control (its requests stay unread in gRPC's buffers) instead of growing the
server: at most ``window`` requests of one stream are parsed, computing or waiting to be sent.
Whatever way the stream ends (done, failed, cancelled, client gone), every task it started is
cancelled before the generator closes.

A stream also ends by itself, after answering everything it holds: when ``stop`` is set (the
server drains: UNAVAILABLE, the rest may be retried elsewhere), or when it has been idle for
``idle_s`` (no request received and none in flight: DEADLINE_EXCEEDED), so a client that opens
streams and sends nothing cannot keep them open for ever. ``room``, awaited before each read, lets
the caller hold reading back further (the stream's share of the response-bytes budget).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from .errors import DeadlineExceeded, NotReady

Request = TypeVar("Request")
Response = TypeVar("Response")
Track = Callable[[asyncio.Task[Any]], None]


def _untracked(task: asyncio.Task[Any]) -> None:
    pass


async def _always() -> None:
    pass


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class _End:
    """The request stream is over (the client half-closed)."""


async def _next_or_end(requests: AsyncIterator[Request]) -> Request | _End:
    try:
        return await anext(requests)
    except StopAsyncIteration:
        return _End()


async def in_order(
    requests: AsyncIterator[Request],
    handle: Callable[[int, Request], Coroutine[Any, Any, Response]],
    window: int,
    track: Track = _untracked,
    *,
    idle_s: float = 0.0,
    stop: asyncio.Event | None = None,
    room: Callable[[], Awaitable[None]] = _always,
) -> AsyncGenerator[Response, None]:
    """``handle(index, request)`` for each request, concurrently within ``window``; results in order.

    A failure of the request stream itself (a broken or malformed stream, a drain, idleness) is
    raised in its place, after the responses of every request that came before it. ``track`` sees
    every task started, so a caller can count them (leaks show as a gauge that does not return to zero).
    """
    loop = asyncio.get_running_loop()
    slots = asyncio.Semaphore(window)
    started: asyncio.Queue[asyncio.Task[Response] | BaseException | None] = asyncio.Queue()  # at most window
    busy = 0  # requests read whose responses have not been handed on yet
    quiet_since = loop.time()

    async def next_request() -> Request | _End:
        """The next request, unless the drain starts or the stream idles out first."""
        reading = asyncio.ensure_future(_next_or_end(requests))
        stopping = asyncio.ensure_future(stop.wait()) if stop is not None else None
        try:
            while True:
                timeout = None
                if idle_s:
                    timeout = idle_s if busy else max(0.0, quiet_since + idle_s - loop.time())
                waits = {reading} if stopping is None else {reading, stopping}
                await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if stop is not None and stop.is_set():
                    raise NotReady(
                        "the server is shutting down: requests not answered yet may be retried elsewhere",
                        reason="SHUTTING_DOWN",
                    )
                if reading.done():
                    return reading.result()
                if idle_s and not busy and loop.time() - quiet_since >= idle_s:
                    raise DeadlineExceeded(f"the stream was idle for {idle_s:g} s (no request, none in flight)")
        finally:
            for waiting in (reading, stopping):
                if waiting is not None:
                    waiting.cancel()
                    # A read the call's end interrupts finishes with gRPC's AbortError rather than the
                    # cancellation, before or after this: retrieved either way, so asyncio does not
                    # log it as an exception never retrieved.
                    waiting.add_done_callback(_retrieve)

    async def read() -> None:
        nonlocal busy
        index = 0
        try:
            while True:
                await slots.acquire()
                await room()
                request = await next_request()
                if isinstance(request, _End):
                    break
                busy += 1
                task = asyncio.create_task(handle(index, request))
                track(task)
                started.put_nowait(task)
                index += 1
        except asyncio.CancelledError:
            raise
        except Exception as error:  # answered in order, after what came before
            started.put_nowait(error)
            return
        started.put_nowait(None)

    reader = asyncio.create_task(read())
    track(reader)
    try:
        while (item := await started.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            try:
                yield await item
            finally:
                slots.release()  # handed on (or abandoned): room for the next request
                busy -= 1
                if not busy:
                    quiet_since = loop.time()
    finally:
        reader.cancel()
        while not started.empty():
            if isinstance(pending := started.get_nowait(), asyncio.Task):
                pending.cancel()
