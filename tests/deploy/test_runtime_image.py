"""The CPU image's runtime stage, installed for real: exactly its dependency line in a clean venv."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.servers import ServerProcess
from tests.venvs import installed

DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile.cpu"
MARKER = "# runtime-dependencies"


def runtime_installs() -> tuple[dict[str, str], list[list[str]]]:
    """The runtime stage's COPY lines (destination -> source) and the pip arguments of the RUN line
    after the marker, one list per `pip install` it chains."""
    runtime = DOCKERFILE.read_text().split("AS runtime", 1)[1]
    copies = dict(reversed(line.split()[-2:]) for line in runtime.splitlines() if line.startswith("COPY "))
    lines = runtime.split(MARKER, 1)[1].splitlines()[1:]  # after the marker's own comment line
    run = next(line for line in lines if not line.startswith("#"))
    assert run.startswith("RUN pip install "), run
    commands = [shlex.split(c) for c in run.removeprefix("RUN ").split("&&")]
    return copies, [c[2:] for c in commands if c[:2] == ["pip", "install"]]


def test_runtime_stage_serves_without_torch(tiny_bundle: Path, tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels), str(ROOT)], check=True
    )
    (wheel,) = wheels.glob("atento-*.whl")
    copies, installs = runtime_installs()
    assert installs == [
        ["--require-hashes", "-r", "/tmp/requirements.txt"],
        ["--no-deps", f"/tmp/wheels/{wheel.name}"],
    ], "the runtime stage installs something else than the lock file and the wheel the project builds"
    assert copies["/tmp/requirements.txt"] == "deploy/locks/serve.txt"
    # The same two lines in a clean venv, the image's paths replaced by this checkout's.
    subprocess.run([sys.executable, "-m", "venv", str(tmp_path / "venv")], check=True)
    python = tmp_path / "venv" / "bin" / "python"
    paths = {"/tmp/requirements.txt": str(ROOT / copies["/tmp/requirements.txt"]), installs[1][1]: str(wheel)}
    for args in installs:
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *(paths.get(a, a) for a in args)],
            check=True,
            timeout=900,
        )

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
