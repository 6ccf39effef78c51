"""The server-wide budget of response bytes computed but not yet sent.

A response is reserved before it is computed (its size is known from the token counts, see
``requests.check_response_size``) and released only once it has left: for a unary call when gRPC
reports the call done (the status follows the message, so the message was taken by the client's
HTTP/2 window first), for a stream when ``context.write`` returned. Clients that never read their
responses therefore hold at most the budget, however many they are: the work of the others waits
for room (within its deadline) or is refused with RESOURCE_EXHAUSTED and a retry hint.

Large responses (attention maps, token embeddings) may fill only three quarters of the budget, so
clients of attention maps that never read cannot lock out plain embeddings, which use the rest.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from prometheus_client import Gauge

from .errors import Overloaded
from .metrics import Metrics

MIB = 1 << 20
DEFAULT_BYTES = 512 * MIB  # no container memory limit to derive it from
SHARE_OF_MEMORY_LIMIT = 4  # a quarter of the container's memory limit
SMALL_SHARE = 64  # a response at most 1/64 of the budget is small: it may use the last quarter
LARGE_FILL = 0.75
MAX_WAIT_S = 10.0  # waiting for room longer than this (or than the deadline) is refused
CGROUP_LIMITS = (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))
NO_LIMIT_ABOVE = 1 << 60  # cgroup v1 writes "no limit" as a huge number


def container_memory_limit(files: tuple[Path, ...] = CGROUP_LIMITS) -> int | None:
    """The container's memory limit in bytes (cgroup v2, then v1), or None where none is set."""
    for file in files:
        try:
            text = file.read_text().strip()
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < NO_LIMIT_ABOVE:
            return int(text)
        return None  # "max": no limit
    return None


def budget_bytes(mib: int, memory_limit: int | None) -> int:
    """``--max-unsent-response-mib``, or when 0 a quarter of the memory limit, or 512 MiB without one."""
    if mib:
        return mib * MIB
    return memory_limit // SHARE_OF_MEMORY_LIMIT if memory_limit else DEFAULT_BYTES


class ResponseBudget:
    """Bytes reserved for responses not yet sent; ``reserve`` waits for room, ``release`` gives it back."""

    def __init__(self, capacity: int, retry_after_s: float, metrics: Metrics) -> None:
        self.capacity, self.retry_after_s, self.metrics = capacity, retry_after_s, metrics
        self.used = 0
        self._changed = asyncio.Event()
        registry = metrics.registry
        self._gauge = Gauge(
            "atento_unsent_response_bytes", "Response bytes reserved: computing or not yet sent", registry=registry
        )
        Gauge("atento_unsent_response_capacity_bytes", "The response-bytes budget", registry=registry).set(capacity)

    def _fits(self, size: int) -> bool:
        small = size <= self.capacity // SMALL_SHARE
        return self.used + size <= (self.capacity if small else self.capacity * LARGE_FILL) or not self.used

    async def reserve(self, size: int, deadline: float | None) -> int:
        """Take ``size`` bytes (at most the whole budget, so one response always fits alone).

        ``deadline`` is a ``time.perf_counter()`` value; waits until then, at most ``MAX_WAIT_S``.
        """
        size = min(size, self.capacity)
        end = time.perf_counter() + MAX_WAIT_S
        if deadline is not None:
            end = min(end, deadline)
        while not self._fits(size):
            left = end - time.perf_counter()
            changed = self._changed
            try:
                if left <= 0:
                    raise TimeoutError
                await asyncio.wait_for(changed.wait(), left)
            except TimeoutError:
                self.metrics.rejected.labels("response_budget").inc()
                raise Overloaded(
                    f"responses of {self.used >> 20} MiB are waiting to be sent, against a budget of "
                    f"{self.capacity >> 20} MiB; this one needs {max(1, size >> 20)} MiB",
                    self.retry_after_s,
                ) from None
        self.used += size
        self._gauge.set(self.used)
        return size

    def release(self, size: int) -> None:
        self.used -= size
        self._gauge.set(self.used)
        self._changed.set()  # wakes every waiter; each checks whether it fits now
        self._changed = asyncio.Event()


class Hold:
    """One response's reservation: taken before computing, released (once) when sent or abandoned."""

    def __init__(self, budget: ResponseBudget, owner: StreamShare | None = None) -> None:
        self.budget, self.owner = budget, owner
        self.size = 0

    async def reserve(self, size: int, deadline: float | None) -> None:
        self.size = await self.budget.reserve(size, deadline)
        if self.owner is not None:
            self.owner.held += self.size

    def release(self) -> None:
        size, self.size = self.size, 0
        if size:
            self.budget.release(size)
        if self.owner is not None:
            self.owner.let_go(self, size)


class StreamShare:
    """One stream's part of the budget: it reads no further request while it holds more than ``share``."""

    def __init__(self, budget: ResponseBudget, share: int) -> None:
        self.budget, self.share = budget, share
        self.held = 0
        self.holds: set[Hold] = set()
        self._changed = asyncio.Event()

    def hold(self) -> Hold:
        hold = Hold(self.budget, self)
        self.holds.add(hold)
        return hold

    def let_go(self, hold: Hold, size: int) -> None:
        self.holds.discard(hold)
        self.held -= size
        self._changed.set()
        self._changed = asyncio.Event()

    async def room(self) -> None:
        """Until this stream's unsent bytes are within its share."""
        while self.held > self.share:
            await self._changed.wait()

    def close(self) -> None:
        """The stream ended: whatever it still holds is not going to be sent."""
        for hold in list(self.holds):
            hold.release()
