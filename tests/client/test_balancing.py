"""Client-side round-robin over three servers on 127.0.0.1, .2 and .3, and a replica killed mid-run."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from atento.client import Client

from tests.servers import ServerProcess, running_server

HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")


@pytest.fixture
def three_servers(tiny_bundle: Path) -> Iterator[list[ServerProcess]]:
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(running_server(tiny_bundle, host=host)) for host in HOSTS]


def embed_many(client: Client, count: int, threads: int = 6) -> list[int]:
    with ThreadPoolExecutor(threads) as pool:
        return list(pool.map(lambda i: client.embed(f"call number {i}").usage.texts, range(count)))


def test_calls_spread_over_every_replica(three_servers: list[ServerProcess]) -> None:
    with Client([s.target for s in three_servers]) as client:
        assert sum(embed_many(client, 300)) == 300
    counts = [s.metric("atento_requests_total", method="Embed", code="OK") for s in three_servers]
    assert sum(counts) == 300
    assert min(counts) >= 50, counts


def test_killing_a_replica_mid_run_loses_no_call(three_servers: list[ServerProcess]) -> None:
    with Client([s.target for s in three_servers]) as client:
        assert sum(embed_many(client, 60)) == 60
        victim = three_servers[1]
        with ThreadPoolExecutor(1) as killer:
            killer.submit(lambda: (embed_many(client, 30), victim.process.send_signal(signal.SIGKILL)))
            done = embed_many(client, 240)  # running while the replica dies
        assert sum(done) == 240  # every call answered
        assert victim.process.wait(10) == -signal.SIGKILL
        survivors = [
            s.metric("atento_requests_total", method="Embed", code="OK") for s in (three_servers[0], three_servers[2])
        ]
        assert sum(survivors) > 0
