"""Ordered concurrency for bidirectional streams: up to ``window`` requests worked on at once,
responses leaving in request order.

A reader task takes requests only while the window has room, so a client that stops reading
responses is held back by flow control (its requests stay unread in gRPC's buffers) instead of
growing the server; whatever way the stream ends (done, failed, cancelled, client gone), every task
it started is cancelled before the generator closes.
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
    slots: asyncio.Queue[asyncio.Task[Response] | BaseException | None] = asyncio.Queue(window)

    async def read() -> None:
        index = 0
        try:
            async for request in requests:
                task = asyncio.create_task(handle(index, request))
                track(task)
                await slots.put(task)
                index += 1
        except asyncio.CancelledError:
            raise
        except Exception as error:  # answered in order, after what came before
            await slots.put(error)
            return
        await slots.put(None)

    reader = asyncio.create_task(read())
    track(reader)
    try:
        while (item := await slots.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield await item
    finally:
        reader.cancel()
        while not slots.empty():
            if isinstance(pending := slots.get_nowait(), asyncio.Task):
                pending.cancel()
