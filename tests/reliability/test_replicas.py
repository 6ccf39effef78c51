"""Three replicas behind the SDK's round-robin: a SIGKILL and a SIGTERM under load lose no call."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

from atento.client import Client

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
    try:
        pause = scale(3, 10)
        time.sleep(pause)
        servers[1].process.send_signal(signal.SIGKILL)  # dies mid-call, without a word
        servers[1].process.wait()
        time.sleep(pause)
        servers[1] = start(tiny_bundle, HOSTS[1], ports[1])  # back, same address
        time.sleep(pause)
        servers[2].process.send_signal(signal.SIGTERM)  # drains: refuses new calls, finishes the rest
        assert servers[2].process.wait(60) == 0
        time.sleep(pause)
        servers[2] = start(tiny_bundle, HOSTS[2], ports[2])
        time.sleep(pause)
        served_by_returners = [s.metric("atento_requests_total", method="Embed", code="OK") for s in servers[1:]]
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
        client.close()
        for server in servers:
            server.terminate()
    assert not failures, failures[:3]
    assert calls[0] > 100
    assert all(n > 0 for n in served_by_returners)  # traffic found the restarted replicas again
    record(calls=calls[0], calls_lost=len(failures), sigkills=1, sigterms=1, restarts=2)
