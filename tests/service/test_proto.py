"""The committed stubs are exactly what the .proto generates."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import ROOT

GENERATED = ["encoder_pb2.py", "encoder_pb2.pyi", "encoder_pb2_grpc.py"]


def test_regenerating_the_stubs_changes_nothing(tmp_path: Path) -> None:
    subprocess.run(["make", "-s", "proto", f"PROTO_OUT={tmp_path}"], cwd=ROOT, check=True, capture_output=True)
    for name in GENERATED:
        fresh = (tmp_path / "atento" / "v1" / name).read_bytes()
        committed = (ROOT / "proto" / "atento" / "v1" / name).read_bytes()
        assert fresh == committed, f"proto/atento/v1/{name} drifted from encoder.proto: run `make proto`"
