"""The lock-file drift check (tests/lock_drift.py, run by `make lint`) passes today and catches drift."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.lock_drift import LOCKS, ROLES, ROOT, drift


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """The files the check reads, copied so they can be made to drift."""
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    shutil.copy(ROOT / "constraints.txt", tmp_path)
    shutil.copytree(LOCKS, tmp_path / LOCKS.relative_to(ROOT))
    return tmp_path


@pytest.mark.fast
@pytest.mark.parametrize("role", ROLES)
def test_the_committed_locks_agree(role: str) -> None:
    assert drift(role) == []


@pytest.mark.fast
def test_a_raised_requirement_is_drift(checkout: Path) -> None:
    pyproject = checkout / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"prometheus-client>=0.21"', '"prometheus-client>=99"'))
    assert any("prometheus-client>=99 does not admit" in p for p in drift("serve", checkout))


@pytest.mark.fast
def test_a_new_or_dropped_requirement_is_drift(checkout: Path) -> None:
    pyproject = checkout / "pyproject.toml"
    text = pyproject.read_text()
    swapped = text.replace('    "aiohttp>=3.10",\n', '    "rich>=13",\n', 1)  # in the serve extra
    assert swapped != text, "pyproject's serve extra no longer lists aiohttp>=3.10: update this test"
    pyproject.write_text(swapped)
    problems = drift("serve", checkout)
    assert any("rich>=13 is not locked" in p for p in problems)
    assert any(
        p.endswith("aiohttp is locked as a requirement of atento but pyproject no longer asks for it") for p in problems
    )


@pytest.mark.fast
def test_a_moved_pin_or_a_missing_hash_is_drift(checkout: Path) -> None:
    constraints = checkout / "constraints.txt"
    constraints.write_text(constraints.read_text().replace("numpy==2.4.6", "numpy==2.4.5"))
    lock = checkout / LOCKS.relative_to(ROOT) / "gpu.txt"
    kept, in_protobuf = [], False
    for line in lock.read_text().splitlines():
        if line[:1].isalpha():
            in_protobuf = line.startswith("protobuf==")
            line = line.removesuffix(" \\") if in_protobuf else line
        if not (in_protobuf and "--hash" in line):
            kept.append(line)
    lock.write_text("\n".join(kept))
    problems = drift("gpu", checkout)
    assert any("constraints.txt pins numpy==2.4.5, the lock has 2.4.6" in p for p in problems)
    assert any(p.endswith("protobuf has no hashes") for p in problems)
