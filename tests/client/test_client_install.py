"""`pip install atento[client]` alone: grpcio, protobuf, googleapis-common-protos (the google.rpc error
details) and numpy, and every client command works."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.servers import ServerProcess
from tests.venvs import installed, venv_with


def test_client_extra_installs_only_grpc_protobuf_numpy_and_works(minilm_server: ServerProcess, tmp_path: Path) -> None:
    python = venv_with(tmp_path / "venv", "{root}[client]")
    packages = {name.replace("_", "-") for name in installed(python)} - {"pip", "setuptools", "wheel"}
    light = {"atento", "grpcio", "protobuf", "numpy", "googleapis-common-protos", "tqdm"}  # tqdm: progress bars
    assert packages - {"typing-extensions"} == light, packages  # (grpcio's own need)
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
