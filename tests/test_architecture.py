"""The import contracts (pyproject.toml, [tool.importlinter]) hold, and would catch a breach."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PACKAGES = {
    "v1": ROOT / "proto" / "atento" / "v1",
    "inference": ROOT / "proto" / "atento" / "inference",
    "export": ROOT / "export",
    "client": ROOT / "clients" / "python",
}


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).parent / "lint-imports"), str(ROOT / "pyproject.toml"), "--no-cache"]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True, timeout=300, check=False)


def package_tree(tmp_path: Path, planted: str, back_edge: bool = False) -> Path:
    """The installed package's shape, with a copy of the service holding one planted module (and,
    with ``back_edge``, packed_mask importing it, so that planted -> packing -> packed_mask closes a cycle)."""
    (tmp_path / "atento").mkdir()
    for name, folder in PACKAGES.items():
        (tmp_path / "atento" / name).symlink_to(folder)
    shutil.copytree(ROOT / "service", tmp_path / "atento" / "service", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "atento" / "service" / "planted.py").write_text(planted)
    if back_edge:
        with (tmp_path / "atento" / "service" / "packed_mask.py").open("a") as file:
            file.write("\nfrom atento.service import planted  # noqa: E402\n")
    return tmp_path


def test_the_contracts_hold_on_the_tree(tmp_path: Path) -> None:
    result = lint_imports(package_tree(tmp_path, '"""Nothing imported."""\n'))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("planted", "back_edge", "contract"),
    [
        ("import torch\n", False, "the service never imports torch"),
        ("from atento.export import model\n", False, "build time sits over run time"),
        ("from atento.client import calls\n", False, "the service never imports torch"),
        ("from atento.service import packing\n", True, "no import cycles"),
    ],
)
def test_a_breach_planted_in_the_service_breaks_its_contract(
    tmp_path: Path, planted: str, back_edge: bool, contract: str
) -> None:
    result = lint_imports(package_tree(tmp_path, planted, back_edge))
    assert result.returncode != 0
    broken = result.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken, result.stdout
