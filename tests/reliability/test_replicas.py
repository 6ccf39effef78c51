"""Replicas behind the SDK's round-robin: a SIGKILL and a SIGTERM under load lose no call, and a call
made while the only replica drains waits for the one that replaces it."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from atento.client import Client
from grpc_health.v1 import health_pb2

from tests.reliability.conftest import scale
from tests.servers import ServerProcess
from tests.service.test_metrics import free_port

HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")


def start(bundle: Path, host: str, port: int) -> ServerProcess:
    server = ServerProcess(
        ["--bundle", str(bundle), "--port", str(port), "--metrics-port", "0", "--drain-seconds", "20"], host=host
    )
    server.wait_serving()
    return server


def test_replicas_die_and_return_under_load(tiny_bundle: Path, record: Callable[..., None]) -> None:
    ports = [free_port() for _ in HOSTS]
    servers = [start(tiny_bundle, host, port) for host, port in zip(HOSTS, ports, strict=True)]
    calls, failures = [0], []
    stop = threading.Event()
    client = Client([f"{h}:{p}" for h, p in zip(HOSTS, ports, strict=True)], timeout=30)

    def load(worker: int) -> None:
        i = 0
        while not stop.is_set():
            try:
                client.embed(f"worker {worker} call {i}")
                calls[0] += 1
            except Exception as error:  # every lost call is recorded and fails the test
                failures.append(error)
            i += 1

    threads = [threading.Thread(target=load, args=(w,)) for w in range(6)]
    for thread in threads:
        thread.start()
    drains = scale(2, 9)  # rolling restarts by SIGTERM, each replica in turn
    try:
        pause = scale(3, 10)
        time.sleep(pause)
        servers[1].process.send_signal(signal.SIGKILL)  # dies mid-call, without a word
        servers[1].process.wait()
        time.sleep(pause)
        servers[1] = start(tiny_bundle, HOSTS[1], ports[1])  # back, same address
        for k in range(drains):
            time.sleep(pause)
            victim = (2 + k) % len(servers)
            servers[victim].process.send_signal(signal.SIGTERM)  # drains: refuses new calls, finishes the rest
            assert servers[victim].process.wait(60) == 0
            servers[victim] = start(tiny_bundle, HOSTS[victim], ports[victim])
        time.sleep(pause)
        served_by_returners = [s.metric("atento_requests_total", method="Embed", code="OK") for s in servers]
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
        client.close()
        for server in servers:
            server.terminate()
    assert not failures, failures[:3]
    assert calls[0] > 100
    assert all(n > 0 for n in served_by_returners)  # traffic found every restarted replica again
    record(calls=calls[0], calls_lost=len(failures), sigkills=1, sigterms=drains, restarts=1 + drains)


def test_a_call_made_while_the_only_replica_drains_is_served_by_its_successor(tiny_bundle: Path) -> None:
    # A rolling restart of a single replica: the SDK watches readiness, so a call made during the
    # drain is held back (not refused, not cancelled) and goes to the new process within its deadline.
    port = free_port()
    first = start(tiny_bundle, HOSTS[0], port)
    outcome: list[object] = []
    with Client(f"{HOSTS[0]}:{port}", timeout=60) as client:
        client.embed("the connection is up")
        first.process.send_signal(signal.SIGTERM)
        end = time.monotonic() + 10
        while first.health("") != health_pb2.HealthCheckResponse.NOT_SERVING and time.monotonic() < end:
            time.sleep(0.01)

        def call() -> None:
            try:
                outcome.append(client.embed("made while the only replica drains"))
            except Exception as error:  # recorded, and fails the test below
                outcome.append(error)

        caller = threading.Thread(target=call)
        caller.start()
        assert first.process.wait(60) == 0
        assert "drained: 0 calls refused" in first.log  # the call never reached the draining server
        assert caller.is_alive() and not outcome
        second = start(tiny_bundle, HOSTS[0], port)
        try:
            caller.join(60)
            assert len(outcome) == 1 and not isinstance(outcome[0], Exception), outcome
            assert second.metric("atento_requests_total", method="Embed", code="OK") == 1
        finally:
            second.terminate()
