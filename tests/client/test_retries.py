"""Retries through gRPC's service config: a restarting server, and overload with a retry hint."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

from atento.client import Client
from atento.v1 import encoder_pb2 as pb

from tests.servers import ServerProcess, running_server
from tests.service.test_metrics import free_port


def serve_on(bundle: Path, port: int, metrics_port: int) -> ServerProcess:
    server = ServerProcess(["--bundle", str(bundle), "--port", str(port), "--metrics-port", str(metrics_port)])
    server.wait_serving()
    return server


def test_a_call_made_while_the_server_restarts_succeeds_once_it_is_back(tiny_bundle: Path) -> None:
    port, metrics_port = free_port(), free_port()
    first = serve_on(tiny_bundle, port, metrics_port)
    with Client(f"127.0.0.1:{port}", timeout=60) as client:
        assert client.embed("before").embeddings is not None
        assert first.terminate() == 0  # the server is down now
        outcome: dict[str, object] = {}

        def call() -> None:
            started = time.monotonic()
            try:
                outcome["result"] = client.embed("during the restart")
            except Exception as error:  # recorded, asserted below
                outcome["error"] = error
            outcome["seconds"] = time.monotonic() - started

        caller = threading.Thread(target=call)
        caller.start()
        time.sleep(1.5)  # the call is waiting for a server
        assert caller.is_alive()
        second = serve_on(tiny_bundle, port, metrics_port)
        try:
            caller.join(60)
            assert "error" not in outcome, outcome.get("error")
            assert outcome["seconds"] < 60  # type: ignore[operator]
            assert second.metric("atento_requests_total", method="Embed", code="OK") == 1
        finally:
            second.terminate()


def test_resource_exhausted_is_retried_after_the_hint(minilm_bundle: Path) -> None:
    hint_ms = 1500
    queue = ("--max-queued-texts", "4", "--max-texts-per-request", "4", "--max-batch-tokens", "512")
    args = (*queue, "--retry-after-min-ms", str(hint_ms))
    with running_server(minilm_bundle, *args) as server:
        long_text = "She is tolerable, but not handsome enough to tempt me. " * 60
        slow = threading.Thread(
            target=lambda: server.stub().Embed(pb.EmbedRequest(texts=[long_text] * 4, truncation=2), timeout=60)
        )
        slow.start()
        while server.metric("atento_queue_depth") < 2:
            time.sleep(0.005)
        with Client(server.target, timeout=30) as client:
            started = time.monotonic()
            result = client.embed(["refused first", "then retried", "after the hint"])  # 3 > room in the queue
            elapsed = time.monotonic() - started
        slow.join()
        assert result.embeddings is not None and result.embeddings.shape == (3, 384)
        refusals = re.findall(r"queue full: refused 3 texts, retry after (\d+) ms", server.log)
        assert refusals and all(int(ms) >= hint_ms for ms in refusals)
        assert elapsed >= hint_ms / 1000 * len(refusals)  # gRPC waited the server's hint before each retry
        assert server.metric("atento_requests_total", method="Embed", code="RESOURCE_EXHAUSTED") == len(refusals)
