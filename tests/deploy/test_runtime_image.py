"""The CPU image's runtime stage, installed for real: exactly its dependency line in a clean venv."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.servers import ServerProcess
from tests.venvs import installed, venv_with

DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile.cpu"
MARKER = "# runtime-dependencies"


def runtime_install_line() -> list[str]:
    """The pip arguments of the RUN line that follows the marker in the runtime stage."""
    runtime = DOCKERFILE.read_text().split("AS runtime", 1)[1]
    line = runtime.split(MARKER, 1)[1].split("\n", 2)[1]
    assert line.startswith("RUN pip install "), line
    command = line.removeprefix("RUN ").split("&&")[0]
    return shlex.split(command)[2:]  # after "pip install"


def test_runtime_stage_serves_without_torch(tiny_bundle: Path, tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels), str(ROOT)], check=True
    )
    (wheel,) = wheels.glob("atento-*.whl")
    args = runtime_install_line()
    assert args[:2] == ["-c", "/tmp/constraints.txt"]
    assert args[2] == f"/tmp/wheels/{wheel.name}[serve]", "the Dockerfile names another wheel than the project builds"
    python = venv_with(tmp_path / "venv", "-c", str(ROOT / "constraints.txt"), f"{wheel}[serve]")

    packages = installed(python)
    assert "onnxruntime" in packages and "torch" not in packages and "onnxruntime-gpu" not in packages
    torch = subprocess.run([str(python), "-c", "import torch"], capture_output=True, text=True, check=False)
    assert torch.returncode != 0 and "No module named 'torch'" in torch.stderr

    atento = tmp_path / "venv" / "bin" / "atento"
    server = ServerProcess(
        ["--bundle", str(tiny_bundle), "--port", "0", "--metrics-port", "0"], command=[str(atento), "serve"]
    )
    try:
        server.wait_serving()
        assert server.health("") == 1  # SERVING
    finally:
        assert server.terminate() == 0
