"""The README's two commands: `make serve` starts the service, `make test` is what CI runs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.conftest import ROOT
from tests.servers import ServerProcess
from tests.service.test_metrics import free_port

README = (ROOT / "README.md").read_text()


def test_readme_names_the_two_commands_and_ci_runs_the_test_one() -> None:
    assert re.search(r"^make serve\b", README, re.MULTILINE)
    assert re.search(r"^make test\b", README, re.MULTILINE)
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_make_serve_builds_a_missing_bundle_and_serves(tmp_path: Path) -> None:
    """The main command, with the tiny model so that building the missing bundle takes seconds."""
    port, metrics_port = free_port(), free_port()
    bundle = tmp_path / "bundle"
    command = ["make", "-s", "serve", "MODEL=tiny", f"BUNDLE={bundle}", f"PORT={port}", f"METRICS_PORT={metrics_port}"]
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        status = None
        end = time.monotonic() + 300
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while time.monotonic() < end and process.poll() is None:
                try:  # what grpc_health_probe does: the standard health client, service ""
                    status = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=1).status
                    if status == health_pb2.HealthCheckResponse.SERVING:
                        break
                except grpc.RpcError:
                    time.sleep(0.2)
        assert status == health_pb2.HealthCheckResponse.SERVING, (
            process.stdout.read() if process.poll() is not None else ""
        )
        assert (bundle / "manifest.json").is_file()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
    assert "serving tiny" in output


def test_readme_documents_every_setting_with_its_default() -> None:
    from atento.service.config import markdown_table

    assert markdown_table() in README, "README's configuration table is stale: paste markdown_table()'s output"


def fenced_after(marker: str) -> str:
    block = README.split(f"<!-- {marker} -->", 1)[1]
    return block.split("```", 2)[1].split("\n", 1)[1]


def test_readme_sdk_example_runs(minilm_server: ServerProcess) -> None:
    code = fenced_after("sdk-example")
    assert len(code.strip().splitlines()) <= 10
    result = subprocess.run(
        [sys.executable, "-c", code.replace("127.0.0.1:50051", minilm_server.target)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    first, third = lines[0], lines[-1]
    assert first.startswith("(2, 384) ['[CLS]', 'the', 'dog'")
    assert third.startswith("(1, 1, ")


def test_readme_cli_example_runs(minilm_server: ServerProcess, tmp_path: Path) -> None:
    lines = [line for line in fenced_after("cli-example").splitlines() if line.strip()]
    assert len(lines) <= 5
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "ATENTO_TARGET": minilm_server.target, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    for line in lines:
        result = subprocess.run(
            line, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False
        )
        assert result.returncode == 0, f"{line}\n{result.stderr}"
    assert (tmp_path / "attention.png").stat().st_size > 10_000
