"""The committed stubs are exactly what the .proto files generate."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.conftest import ROOT

GENERATED = {
    "v1": ["encoder_pb2.py", "encoder_pb2.pyi", "encoder_pb2_grpc.py"],
    "inference": ["grpc_predict_v2_pb2.py", "grpc_predict_v2_pb2.pyi", "grpc_predict_v2_pb2_grpc.py"],
}


def test_regenerating_the_stubs_changes_nothing(tmp_path: Path) -> None:
    subprocess.run(["make", "-s", "proto", f"PROTO_OUT={tmp_path}"], cwd=ROOT, check=True, capture_output=True)
    for package, names in GENERATED.items():
        for name in names:
            fresh = (tmp_path / "atento" / package / name).read_bytes()
            committed = (ROOT / "proto" / "atento" / package / name).read_bytes()
            assert fresh == committed, f"proto/atento/{package}/{name} drifted from its .proto: run `make proto`"
