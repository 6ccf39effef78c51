"""Both HTTP ports (metrics and the OpenAI-compatible API) under clients that misbehave: /metrics
answers only /metrics, idle and trickling connections are closed by the timeout, and the metrics
port holds a bounded number of connections."""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import ServerProcess, running_server

IDLE_TIMEOUT_S = 1.0
METRICS_MAX_CONNECTIONS = 16  # service/http_metrics.py


@pytest.fixture(scope="module")
def server(tiny_bundle: Path) -> Iterator[ServerProcess]:
    with running_server(tiny_bundle, "--http-port", "0", "--http-idle-timeout-s", str(IDLE_TIMEOUT_S)) as process:
        yield process


def status_of(url: str, method: str = "GET") -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def closed_within(sock: socket.socket, seconds: float, trickle: bytes = b"") -> float | None:
    """Seconds until the server closes ``sock`` (None: still open after ``seconds``), sending one
    byte of ``trickle`` every 0.2 s meanwhile, as a slowloris client does."""
    start = time.monotonic()
    sock.settimeout(0.2)
    for byte in trickle or b"\0" * 1000:
        if time.monotonic() - start > seconds:
            return None
        try:
            if trickle:
                sock.sendall(bytes([byte]))
            if sock.recv(1) == b"":
                return time.monotonic() - start
        except TimeoutError:
            continue
        except OSError:  # reset: closed too
            return time.monotonic() - start
    return None


def test_metrics_port_serves_only_metrics(server: ServerProcess) -> None:
    base = f"http://{server.host}:{server.metrics_port}"
    assert status_of(f"{base}/metrics") == 200 and "atento_ready 1.0" in server.metrics()
    for path in ("/", "/metrics/", "/v1/embeddings", "/favicon.ico", "/metrics?x=1#y"):
        assert status_of(f"{base}{path}") == (200 if path.startswith("/metrics?") else 404), path
    assert status_of(f"{base}/metrics", method="POST") == 405


@pytest.mark.parametrize("port", ["metrics", "http"])
def test_idle_and_trickling_connections_are_closed_by_the_timeout(server: ServerProcess, port: str) -> None:
    address = (server.host, server.metrics_port if port == "metrics" else server.http_port)
    with socket.create_connection(address) as idle, socket.create_connection(address) as slowloris:
        idle_after = closed_within(idle, IDLE_TIMEOUT_S * 5)
        trickled_after = closed_within(slowloris, IDLE_TIMEOUT_S * 5, b"GET /metrics HTTP/1.1\r\nX-Slow: " + b"a" * 100)
    assert idle_after is not None and idle_after < IDLE_TIMEOUT_S * 3
    assert trickled_after is not None and trickled_after < IDLE_TIMEOUT_S * 5


def test_metrics_connections_are_bounded(server: ServerProcess) -> None:
    address = (server.host, server.metrics_port)
    held = [socket.create_connection(address) for _ in range(METRICS_MAX_CONNECTIONS)]
    try:
        time.sleep(0.1)
        with socket.create_connection(address) as extra:
            assert closed_within(extra, 0.5) is not None  # past the limit: closed at once
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.1)
    assert status_of(f"http://{server.host}:{server.metrics_port}/metrics") == 200
