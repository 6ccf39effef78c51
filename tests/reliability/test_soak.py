"""Soak: thousands of mixed calls leak no memory, file descriptors, threads or queued work."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from atento.client import AsyncClient, AttentionSelection

from tests.reliability.conftest import proc_status, scale
from tests.reliability.load import mixed_texts
from tests.servers import ServerProcess, running_server


async def mixed_calls(target: str, count: int, seed: int, *, largest: bool = False) -> int:
    """``count`` calls of every kind from 16 callers; returns how many failed. With ``largest``, only
    the longest texts: the warm-up that grows every buffer to its final size."""
    rng = random.Random(seed)
    texts = mixed_texts(rng, 2000)
    if largest:
        texts = sorted(texts, key=len)[-40:]
    remaining = list(range(count))
    failures = 0

    async def caller(client: AsyncClient, own: random.Random) -> None:
        nonlocal failures
        while remaining:
            remaining.pop()
            kind = own.random()
            try:
                if kind < 0.6:
                    await client.embed(own.sample(texts, own.randint(1, 8)), truncate=True)
                elif kind < 0.75:
                    await client.embed(own.choice(texts), truncate=True, token_embeddings=True, dtype="float16")
                elif kind < 0.85:
                    await client.embed(
                        own.choice(texts)[:300], truncate=True, attention=AttentionSelection([0, 5], [1])
                    )
                elif kind < 0.95:
                    await client.tokenize(own.sample(texts, 3), truncate=True)
                else:
                    async for _ in client.embed_stream(own.sample(texts, 20), batch_size=4, truncate=True):
                        pass
            except Exception:  # counted and asserted zero
                failures += 1

    async with AsyncClient(target, timeout=120) as client:
        await asyncio.gather(*(caller(client, random.Random(seed + i)) for i in range(16)))
    return failures


def settle(server: ServerProcess) -> dict[str, int]:
    time.sleep(1.5)  # connections closed by the client are reaped
    return proc_status(server.process.pid)


# 20 000 mixed calls take ~17 minutes on 2 cores: past the suite's 10-minute per-test limit.
@pytest.mark.timeout(scale(600, 2700))
def test_soak_returns_to_its_baseline(minilm_bundle: Path, record: Callable[..., None]) -> None:
    calls = scale(1000, 20000)
    with running_server(minilm_bundle) as server:
        assert asyncio.run(mixed_calls(server.target, 150, seed=1, largest=True)) == 0  # warm-up: the largest shapes
        assert asyncio.run(mixed_calls(server.target, 150, seed=1)) == 0  # and every path
        baseline = settle(server)
        started = time.monotonic()
        failures = asyncio.run(mixed_calls(server.target, calls, seed=2))
        seconds = time.monotonic() - started
        after = settle(server)
        growth = after["VmRSS"] / baseline["VmRSS"] - 1
        assert failures == 0
        assert growth <= 0.10, (baseline, after)
        assert after["fds"] <= baseline["fds"], (baseline, after)
        assert after["Threads"] <= baseline["Threads"], (baseline, after)
        assert server.metric("atento_queue_depth") == 0
        assert server.metric("atento_in_flight_requests") == 0
        assert server.metric("atento_stream_tasks") == 0
    record(
        calls=calls,
        seconds=seconds,
        rss_growth=growth,
        rss_mib=after["VmRSS"] / 1024,
        fds=f"{baseline['fds']}->{after['fds']}",
        threads=f"{baseline['Threads']}->{after['Threads']}",
        calls_lost=failures,
    )
