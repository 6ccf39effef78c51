"""Stream ordering in process: concurrent within the window, answered in request order, nothing leaked."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from atento.service.streaming import in_order

pytestmark = pytest.mark.fast


async def numbers(count: int, then: BaseException | None = None) -> AsyncIterator[int]:
    for i in range(count):
        yield i
    if then is not None:
        raise then


def test_responses_leave_in_request_order_however_long_each_takes() -> None:
    running, most = 0, 0

    async def handle(index: int, request: int) -> str:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.001 * (10 - request))  # the first requests take the longest
        running -= 1
        return f"{index}:{request}"

    async def scenario() -> list[str]:
        return [r async for r in in_order(numbers(10), handle, window=3)]

    assert asyncio.run(scenario()) == [f"{i}:{i}" for i in range(10)]
    assert 1 < most <= 3  # concurrent, never beyond the window


def test_a_broken_request_stream_fails_after_the_answers_before_it() -> None:
    async def handle(index: int, request: int) -> int:
        return request

    async def scenario() -> list[int]:
        seen: list[int] = []
        with pytest.raises(ValueError, match="broken"):
            async for response in in_order(numbers(3, ValueError("broken")), handle, window=8):
                seen.append(response)
        return seen

    assert asyncio.run(scenario()) == [0, 1, 2]


def test_closing_early_cancels_every_task_it_started() -> None:
    tasks: list[asyncio.Task[object]] = []

    async def handle(index: int, request: int) -> int:
        await asyncio.sleep(0 if index == 0 else 60)
        return request

    async def scenario() -> None:
        ordered = in_order(numbers(100), handle, window=4, track=tasks.append)
        async with contextlib.aclosing(ordered) as responses:
            async for _ in responses:
                break  # the caller goes away after the first answer
        await asyncio.sleep(0)
        assert tasks and all(task.done() for task in tasks)
        assert len(tasks) <= 1 + 4  # the reader, and at most a window of requests

    asyncio.run(scenario())
