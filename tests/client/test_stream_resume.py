"""embed_stream across a rolling restart: the replica holding the stream drains (SIGTERM) or dies
(SIGKILL) mid-stream, and the SDK continues on the other replica (or on the only one, once it is
back) with every result once, in order."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import numpy as np
import pytest
from atento.client import AsyncClient, Client, Encoding

from tests.servers import ServerProcess, running_server

TEXTS = [f"sentence number {i} of the indexing job" for i in range(600)]
HOSTS = ("127.0.0.1", "127.0.0.2")


@pytest.fixture
def two_servers(tiny_bundle: Path) -> Iterator[list[ServerProcess]]:
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(running_server(tiny_bundle, host=host)) for host in HOSTS]


def reference(client: Client) -> np.ndarray:
    rows = [client.embed(TEXTS[i : i + 100]).embeddings for i in range(0, len(TEXTS), 100)]
    matrix = np.concatenate([r for r in rows if r is not None])
    assert np.abs(matrix[1:] - matrix[:-1]).max(axis=1).min() > 1e-4  # a result out of order would show
    return matrix


def holder(servers: list[ServerProcess]) -> ServerProcess:
    """The replica the open stream landed on."""
    (found,) = [s for s in servers if s.metric("atento_in_flight_requests", method="EmbedStream") == 1]
    return found


def check(streamed: list[Encoding], expected: np.ndarray) -> None:
    assert len(streamed) == len(TEXTS)  # every text once: none lost, none repeated
    got = np.stack([e.embedding for e in streamed if e.embedding is not None])
    np.testing.assert_allclose(got, expected, atol=1e-4)  # in input order


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["drains", "dies"])
def test_a_stream_continues_on_another_replica(two_servers: list[ServerProcess], signum: signal.Signals) -> None:
    with Client([s.target for s in two_servers]) as client:
        expected = reference(client)
        streamed: list[Encoding] = []
        for encoding in client.embed_stream(TEXTS, batch_size=4, max_in_flight=8):
            streamed.append(encoding)
            if len(streamed) == 100:  # mid-stream, with requests in flight
                victim = holder(two_servers)
                victim.process.send_signal(signum)
        check(streamed, expected)
    survivor = next(s for s in two_servers if s is not victim)
    assert survivor.metric("atento_requests_total", method="EmbedStream", code="OK") >= 1
    assert victim.process.wait(60) == (0 if signum == signal.SIGTERM else -signal.SIGKILL)


def test_the_async_client_continues_too(two_servers: list[ServerProcess]) -> None:
    victims: list[ServerProcess] = []

    async def run() -> tuple[list[Encoding], np.ndarray]:
        with Client([s.target for s in two_servers]) as blocking:
            expected = reference(blocking)
        streamed: list[Encoding] = []
        async with AsyncClient([s.target for s in two_servers]) as client:

            async def texts() -> AsyncIterator[str]:
                for text in TEXTS:
                    await asyncio.sleep(0)
                    yield text

            async for encoding in client.embed_stream(texts(), batch_size=4, max_in_flight=8):
                streamed.append(encoding)
                if len(streamed) == 100:
                    victims.append(holder(two_servers))
                    victims[0].process.send_signal(signal.SIGTERM)
        return streamed, expected

    check(*asyncio.run(run()))
    (survivor,) = [s for s in two_servers if s is not victims[0]]
    assert survivor.metric("atento_requests_total", method="EmbedStream", code="OK") == 1  # it finished the job
    assert victims[0].process.wait(60) == 0


def test_the_only_replica_restarting_holds_the_stream_until_it_is_back(tiny_bundle: Path) -> None:
    with contextlib.ExitStack() as stack:
        first = stack.enter_context(running_server(tiny_bundle))
        port = first.target.rsplit(":", 1)[1]
        replaced: list[ServerProcess] = []

        def restart() -> None:  # a rolling restart of a one-pod deployment: drained, then started again
            assert first.terminate() == 0
            replaced.append(stack.enter_context(running_server(tiny_bundle, "--port", port)))

        with Client(first.target) as client:
            expected = reference(client)
            streamed: list[Encoding] = []
            restarting = threading.Thread(target=restart)
            for encoding in client.embed_stream(TEXTS, batch_size=4, max_in_flight=8, timeout=120):
                streamed.append(encoding)
                if len(streamed) == 100:
                    restarting.start()  # the stream waits (wait-for-ready) while no server is up
            restarting.join()
        check(streamed, expected)
        assert replaced[0].metric("atento_requests_total", method="EmbedStream", code="OK") == 1


def test_results_are_not_held_back_by_a_slow_input(tiny_bundle: Path) -> None:
    """An input that waits for the results already sent (a crawler fed by its own results) is served."""
    first_results = threading.Event()

    def texts() -> Iterator[str]:
        yield from TEXTS[:8]
        assert first_results.wait(30), "results already answered were held back while the input waited"
        yield from TEXTS[8:16]

    with running_server(tiny_bundle) as server, Client(server.target) as client:
        streamed = []
        for encoding in client.embed_stream(texts(), batch_size=4, max_in_flight=8):
            streamed.append(encoding)
            if len(streamed) == 8:
                first_results.set()
    assert len(streamed) == 16


class BrokenInputError(ValueError):
    pass


def failing_after(count: int) -> Iterator[str]:
    yield from TEXTS[:count]
    raise BrokenInputError(f"the input broke after {count} texts")


def test_an_error_of_the_input_reaches_the_caller_across_a_resume(two_servers: list[ServerProcess]) -> None:
    streamed = 0
    with Client([s.target for s in two_servers]) as client, pytest.raises(BrokenInputError, match="after 300"):
        for _ in client.embed_stream(failing_after(300), batch_size=4, max_in_flight=8):
            streamed += 1
            if streamed == 100:
                holder(two_servers).process.send_signal(signal.SIGTERM)
    assert 100 <= streamed <= 300  # never a silent, shorter success


def test_an_error_of_the_async_input_reaches_the_caller(tiny_bundle: Path) -> None:
    async def run() -> int:
        streamed = 0
        async with AsyncClient(server.target) as client:

            async def texts() -> AsyncIterator[str]:
                for text in failing_after(50):
                    yield text

            with pytest.raises(BrokenInputError, match="after 50"):
                async for _ in client.embed_stream(texts(), batch_size=4):
                    streamed += 1
        return streamed

    with running_server(tiny_bundle) as server:
        assert asyncio.run(run()) <= 50
