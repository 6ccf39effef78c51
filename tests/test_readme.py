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
import pytest
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


# Every fenced example in README.md sits under a marker: `<!-- NAME -->` for one a test runs (by that
# name), `<!-- run-by: WHERE -->` for one another part of the suite runs, `<!-- not-run: WHY -->` for
# make targets and commands that rewrite the repository or need a GPU or a cluster.
MARKER = re.compile(r"^ *<!-- (?P<name>[^>]*?) -->\n *```", re.MULTILINE)
FENCE = re.compile(r"^ *```", re.MULTILINE)
PYTHON_EXAMPLES = ("sdk-example", "identity-example", "integrations-example")
SHELL_EXAMPLES = ("health-example", "cli-example", "grpcurl-example")
ELSEWHERE = {
    "triton-example": "tests/kserve",
    "curl-example": "tests/service",
    "openai-example": "tests/service",
    "install-example": "tests/client",
}


def fenced_after(marker: str) -> str:
    block = README.split(f"<!-- {marker} -->", 1)[1]
    lines = block.split("```", 2)[1].split("\n")[1:]
    return "\n".join(line.removeprefix("  ") for line in lines).rstrip(" ")  # a block in a list is indented


def expected_outputs(code: str, prefix: str = "print(") -> list[tuple[str, str]]:
    """(line, what it prints) for each line that starts with ``prefix`` and ends in `  # EXPECTED`."""
    pairs = []
    for line in code.replace("\\\n", "").splitlines():
        statement, marker, expected = line.strip().rpartition("  # ")
        if marker and line.strip().startswith(prefix):
            pairs.append((statement, expected))
    return pairs


def test_every_readme_example_is_run_or_says_why_not() -> None:
    fences = len(FENCE.findall(README)) // 2
    markers = [m["name"] for m in MARKER.finditer(README)]
    assert len(markers) == fences, f"{fences} examples, {len(markers)} markers: mark every fenced block"
    tests = "\n".join(path.read_text() for path in (ROOT / "tests").rglob("*.py"))
    for name in markers:
        if name.startswith(("not-run: ", "run-by: ")):
            continue
        assert name in (*PYTHON_EXAMPLES, *SHELL_EXAMPLES, "cli-error-example") or (
            name in ELSEWHERE and f'"{name}"' in tests
        ), f"README example {name!r} is run by no test"


@pytest.mark.parametrize("marker", PYTHON_EXAMPLES)
def test_readme_python_example_prints_what_it_says(minilm_server: ServerProcess, marker: str) -> None:
    code = fenced_after(marker)
    expected = expected_outputs(code)
    assert expected, f"{marker}: no print(...)  # EXPECTED line"
    result = subprocess.run(
        [sys.executable, "-c", code.replace("127.0.0.1:50051", minilm_server.target)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [printed for _, printed in expected]


def shell_env(target: str) -> dict[str, str]:
    bin_dir = Path(sys.executable).parent
    return {**os.environ, "ATENTO_TARGET": target, "PATH": f"{bin_dir}:{os.environ['PATH']}"}


@pytest.mark.parametrize("marker", SHELL_EXAMPLES)
def test_readme_shell_example_prints_what_it_says(minilm_server: ServerProcess, marker: str, tmp_path: Path) -> None:
    code = fenced_after(marker).replace(".venv/bin/python", sys.executable)
    lines = expected_outputs(code.replace("127.0.0.1:50051", minilm_server.target), prefix="")
    assert len(lines) == len([line for line in code.replace("\\\n", "").splitlines() if line.strip()])
    for line, expected in lines:
        result = subprocess.run(
            line,
            shell=True,
            cwd=tmp_path,
            env=shell_env(minilm_server.target),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, f"{line}\n{result.stderr}"
        assert expected in result.stdout, f"{line}\nprinted {result.stdout[:2000]!r}, README says {expected!r}"
    if marker == "cli-example":
        assert (tmp_path / "attention.png").stat().st_size > 10_000


def test_readme_cli_error_example_is_what_the_cli_prints(minilm_server: ServerProcess) -> None:
    command, printed = fenced_after("cli-error-example").strip().splitlines()
    result = subprocess.run(
        command.removeprefix("$ "), shell=True, env=shell_env(minilm_server.target), capture_output=True, text=True
    )
    assert result.returncode == 1 and result.stderr.strip() == printed
