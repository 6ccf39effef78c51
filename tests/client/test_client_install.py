"""`pip install atento[client]` alone: grpcio, protobuf, googleapis-common-protos (the google.rpc error
details) and numpy, and every client command works."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.servers import ServerProcess
from tests.test_readme import expected_outputs, fenced_after
from tests.venvs import installed


def install_as_the_readme_says(venv: Path, dist: Path) -> None:
    """README's install example, line by line, with the clean venv's pip: build the wheel from this
    checkout into ``dist``, then install it with the client extra."""
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {**os.environ, "PATH": f"{venv / 'bin'}:{os.environ['PATH']}"}
    env.pop("VIRTUAL_ENV", None)
    for line, expected in expected_outputs(fenced_after("install-example"), prefix=""):
        command = line.replace("dist", str(dist))
        result = subprocess.run(
            command, shell=True, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False
        )
        assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
        assert expected in result.stdout, f"{command}\n{result.stdout}"
    (wheel,) = dist.glob("atento-*.whl")
    assert wheel.name.endswith("-py3-none-any.whl")


def test_client_wheel_installs_only_grpc_protobuf_numpy_tqdm_and_works(
    minilm_server: ServerProcess, tmp_path: Path
) -> None:
    install_as_the_readme_says(tmp_path / "venv", tmp_path / "dist")
    python = tmp_path / "venv" / "bin" / "python"
    packages = {name.replace("_", "-") for name in installed(python)} - {"pip", "setuptools", "wheel"}
    light = {"atento", "grpcio", "protobuf", "numpy", "googleapis-common-protos", "tqdm"}
    assert packages - {"typing-extensions"} == light, packages  # (grpcio's own need); no torch, no onnxruntime
    code = (
        "from atento.client import Client;"
        f"c = Client('{minilm_server.target}');"
        "r = c.embed(['offline and light']);"
        "print(r.embeddings.shape, c.health());"
        "from atento.client import InvalidInputError\n"
        "try: c.embed([''])\n"
        "except InvalidInputError as e: print(e.reason, e.field_violations[0].field)"
    )
    result = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split("\n")[:2] == ["(1, 384) SERVING", "EMPTY_TEXT texts[0]"]
    atento = tmp_path / "venv" / "bin" / "atento"
    health = subprocess.run(
        [str(atento), "health", "--target", minilm_server.target], capture_output=True, text=True, check=False
    )
    assert health.stdout.strip() == "SERVING"
    for command, extra in (("serve", "atento[serve]"), ("export", "atento[export]")):
        refused = subprocess.run([str(atento), command, "--out", "x"], capture_output=True, text=True, check=False)
        assert refused.returncode == 2 and f"pip install '{extra}'" in refused.stderr, refused.stderr  # names the fix
