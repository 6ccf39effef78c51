"""The proto contract under Buf: lint passes, and the breaking-change check against the committed
image (proto/atento.binpb) catches a removed field. The Buf CLI is PyPI's buf-bin (dev extra)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
IMAGE = ROOT / "proto" / "atento.binpb"


def buf(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    tool = shutil.which("buf", path=str(Path(sys.executable).parent))
    assert tool is not None, "buf is missing: `make venv` installs buf-bin (dev extra)"
    return subprocess.run([tool, *args], cwd=cwd, capture_output=True, text=True, timeout=120, check=False)


def contract_copy(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "buf.yaml", tmp_path / "buf.yaml")
    shutil.copytree(
        ROOT / "proto" / "atento" / "v1", tmp_path / "proto" / "atento" / "v1", ignore=shutil.ignore_patterns("*.py*")
    )
    return tmp_path


def test_the_contract_passes_lint_and_matches_its_image(tmp_path: Path) -> None:
    work = contract_copy(tmp_path)
    assert buf("lint", cwd=work).returncode == 0
    result = buf("breaking", "--against", str(IMAGE), cwd=work)
    assert result.returncode == 0, f"the contract broke against {IMAGE.name}:\n{result.stdout}{result.stderr}"


def test_removing_a_field_fails_the_breaking_check(tmp_path: Path) -> None:
    work = contract_copy(tmp_path)
    proto = work / "proto" / "atento" / "v1" / "encoder.proto"
    text, removed = re.subn(r"\n  string model = 4;\n", "\n", proto.read_text(), count=1)
    assert removed == 1
    proto.write_text(text)
    result = buf("breaking", "--against", str(IMAGE), cwd=work)
    assert result.returncode != 0
    assert 'Previously present field "4" with name "model" on message "EmbedResponse" was deleted' in result.stdout
