"""Ordered concurrency for bidirectional streams: up to ``window`` requests worked on at once,
responses leaving in request order.

A request is read only when the window has room, and a request's slot is freed only once its
response has been handed on (written to the client), so a client that stops reading responses is
held back by flow control (its requests stay unread in gRPC's buffers) instead of growing the
server: at most ``window`` requests of one stream are parsed, computing or waiting to be sent.
Whatever way the stream ends (done, failed, cancelled, client gone), every task it started is
cancelled before the generator closes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar

Request = TypeVar("Request")
Response = TypeVar("Response")
Track = Callable[[asyncio.Task[Any]], None]


def _untracked(task: asyncio.Task[Any]) -> None:
    pass


async def in_order(
    requests: AsyncIterator[Request],
    handle: Callable[[int, Request], Coroutine[Any, Any, Response]],
    window: int,
    track: Track = _untracked,
) -> AsyncGenerator[Response, None]:
    """``handle(index, request)`` for each request, concurrently within ``window``; results in order.

    A failure of the request stream itself (a broken or malformed stream) is raised in its place,
    after the responses of every request that came before it. ``track`` sees every task started,
    so a caller can count them (leaks show as a gauge that does not return to zero).
    """
    slots = asyncio.Semaphore(window)
    started: asyncio.Queue[asyncio.Task[Response] | BaseException | None] = asyncio.Queue()  # at most window

    async def read() -> None:
        index = 0
        try:
            while True:
                await slots.acquire()
                try:
                    request = await anext(requests)
                except StopAsyncIteration:
                    break
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
    finally:
        reader.cancel()
        while not started.empty():
            if isinstance(pending := started.get_nowait(), asyncio.Task):
                pending.cancel()
