"""Log lines as an operator reads them: JSON that parses (`--log-format json`), and refusals under
overload at most one line per second, each saying how many it stands for."""

from __future__ import annotations

import itertools
import json
import threading
import time
from datetime import datetime
from pathlib import Path

import grpc
from atento.v1 import encoder_pb2 as pb

from tests.servers import running_server
from tests.service.test_overload import QUEUE_FULL_OF_SLOW_WORK, SLOW_REQUEST, TEXTS


def test_json_logs_parse_and_refusals_log_at_most_once_a_second(minilm_bundle: Path) -> None:
    with running_server(minilm_bundle, *QUEUE_FULL_OF_SLOW_WORK, "--log-format", "json") as server:
        stub = server.stub()
        end = time.monotonic() + 3

        def keep_the_queue_full() -> None:
            while time.monotonic() < end:
                try:
                    stub.Embed(SLOW_REQUEST, timeout=120)
                except grpc.RpcError:  # refused while the other caller's request was queued
                    time.sleep(0.01)

        filler = threading.Thread(target=keep_the_queue_full)
        filler.start()
        refused = 0
        while time.monotonic() < end:  # a caller that retries at once, for three seconds; a request as
            try:  # large as the queue is admitted only into an empty one, so nearly every try is refused
                stub.Embed(pb.EmbedRequest(texts=["one more"] * TEXTS), timeout=60)
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                refused += 1
        filler.join()
        server.terminate()
    records = [json.loads(line) for line in server.lines]  # every line is one JSON object
    assert {"asctime", "level", "logger", "message"} <= set(records[0])
    assert any(r["message"].startswith("serving all-MiniLM-L6-v2") for r in records)
    full = [r for r in records if r["message"].startswith("queue full")]
    assert refused >= 20, refused  # many refusals ...
    assert 2 <= len(full) <= 5, [r["message"] for r in full]  # ... at most one line a second for ~3 s
    times = [datetime.strptime(r["asctime"], "%Y-%m-%d %H:%M:%S,%f") for r in full]
    assert all((b - a).total_seconds() >= 0.99 for a, b in itertools.pairwise(times)), times
    assert all(r["level"] == "WARNING" for r in full)
    counted = sum(1 + r["suppressed"] for r in full)  # each line, and those it held back before it
    assert counted <= refused and any(r["suppressed"] > 0 for r in full), [r["message"] for r in full]
    assert any("more like it since the last such line" in r["message"] for r in full)
