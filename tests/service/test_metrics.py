"""/metrics is valid Prometheus exposition, and a real Prometheus scrapes it and answers quantiles.

Prometheus and promtool come from the Debian package `prometheus`, which `.ci/run` installs.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from atento.v1 import encoder_pb2 as pb

from tests.servers import ServerProcess, running_server

EXPECTED = [
    "atento_requests_total",
    "atento_request_duration_seconds_bucket",
    "atento_tokenize_duration_seconds_bucket",
    "atento_queue_duration_seconds_bucket",
    "atento_inference_duration_seconds_bucket",
    "atento_serialize_duration_seconds_bucket",
    "atento_batch_size_bucket",
    "atento_batch_tokens_bucket",
    "atento_batch_padding_ratio_bucket",
    "atento_input_tokens_bucket",
    "atento_queue_depth",
    "atento_queue_capacity",
    "atento_in_flight_requests",
    "atento_ready",
    "atento_model_info",
    "process_resident_memory_bytes",
]


def tool(name: str) -> str:
    path = shutil.which(name)
    assert path, f"{name} is not installed: apt-get install prometheus (make test does)"
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_metrics_pass_promtool_and_name_every_stage(minilm_server: ServerProcess) -> None:
    minilm_server.stub().Embed(pb.EmbedRequest(texts=["warm the histograms"]), timeout=30)
    text = minilm_server.metrics()
    result = subprocess.run(
        [tool("promtool"), "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "_created" not in text  # prometheus_client's creation-time series are off
    for name in EXPECTED:
        assert f"\n{name}" in text, name
    assert (
        "atento_model_info{" in text
        and 'model="all-MiniLM-L6-v2"' in text
        and 'provider="CPUExecutionProvider"' in text
    )


@pytest.fixture
def prometheus(minilm_server: ServerProcess, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: atento\n    static_configs: [{{targets: ['127.0.0.1:{minilm_server.metrics_port}']}}]\n"
    )
    process = subprocess.Popen(
        [
            tool("prometheus"),
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        process.wait(30)


def query(base: str, promql: str) -> list[dict[str, object]]:
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    result: list[dict[str, object]] = body["data"]["result"]
    return result


def test_prometheus_scrapes_and_answers_p99(minilm_server: ServerProcess, prometheus: str) -> None:
    stub = minilm_server.stub()
    promql = 'histogram_quantile(0.99, sum by (le) (rate(atento_request_duration_seconds_bucket{method="Embed"}[30s])))'
    end = time.monotonic() + 60
    answer: list[dict[str, object]] = []
    while time.monotonic() < end:
        for _ in range(5):
            stub.Embed(pb.EmbedRequest(texts=["keep the rate above zero"]), timeout=30)
        try:
            answer = query(prometheus, promql)
        except OSError:  # Prometheus still starting
            answer = []
        if answer and answer[0]["value"][1] not in ("NaN",):  # type: ignore[index]
            break
        time.sleep(0.5)
    assert answer, "Prometheus returned no series"
    p99 = float(answer[0]["value"][1])  # type: ignore[index]
    assert 0 < p99 < 10
    up = query(prometheus, 'up{job="atento"}')
    assert up and up[0]["value"][1] == "1"  # type: ignore[index]


def bucket_bounds(text: str, name: str) -> list[str]:
    """The `le` values of one histogram's first series, in exposition order."""
    first_labels = None
    bounds = []
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket{{"):
            labels = line.split("{", 1)[1].split("}", 1)[0]
            others = ",".join(x for x in labels.split(",") if not x.startswith("le="))
            first_labels = others if first_labels is None else first_labels
            if others == first_labels:
                bounds.append(labels.split('le="', 1)[1].split('"', 1)[0])
    return bounds


@pytest.mark.fast
def test_size_buckets_are_powers_of_two_ending_at_the_maximum() -> None:
    from atento.service.metrics import powers_of_two_up_to

    assert powers_of_two_up_to(24) == (1, 2, 4, 8, 16, 24)
    assert powers_of_two_up_to(64) == (1, 2, 4, 8, 16, 32, 64)
    assert powers_of_two_up_to(1) == (1,)
    assert powers_of_two_up_to(3000, start=4) == (4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 3000)


def test_batch_buckets_fit_the_configured_maxima_and_pass_promtool(tiny_bundle: Path) -> None:
    with running_server(tiny_bundle, "--max-batch-size", "24", "--max-batch-tokens", "3000") as server:
        server.stub().Embed(pb.EmbedRequest(texts=["fill", "the", "histograms"]), timeout=30)
        text = server.metrics()
    result = subprocess.run(
        [tool("promtool"), "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "_created" not in text
    assert bucket_bounds(text, "atento_batch_size") == ["1.0", "2.0", "4.0", "8.0", "16.0", "24.0", "+Inf"]
    tokens = bucket_bounds(text, "atento_batch_tokens")
    assert tokens[-2:] == ["3000.0", "+Inf"] and tokens[0] == "4.0", tokens
    assert bucket_bounds(text, "atento_input_tokens")[-2:] == ["3000.0", "+Inf"]
