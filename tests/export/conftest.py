"""Per-architecture fixtures: a small random checkpoint of each model_type, exported by the real
command line, and a real server on its bundle; built once per architecture for the whole session."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import export_bundle
from tests.export.random_checkpoints import CASES, ArchitectureCase, write_checkpoint
from tests.servers import ServerProcess, running_server

# Exported and served in every run; bert is the tiny/MiniLM bundles' own, camembert is checked in
# process (tests/export/test_architectures.py) since it is xlm-roberta under another name.
EXPORTED = ("roberta", "xlm-roberta", "distilbert", "electra", "mpnet")


@dataclass(frozen=True)
class ArchitectureBundle:
    case: ArchitectureCase
    checkpoint: Path  # the sentence-transformers directory the bundle was exported from
    bundle: Path

    @property
    def manifest(self) -> dict[str, Any]:
        manifest: dict[str, Any] = json.loads((self.bundle / "manifest.json").read_text())
        return manifest


@pytest.fixture(scope="session", params=EXPORTED)
def architecture(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> ArchitectureBundle:
    case = CASES[request.param]
    root = tmp_path_factory.mktemp(f"architecture-{case.model_type}")
    checkpoint = write_checkpoint(case, root / "checkpoint")
    result = export_bundle(str(checkpoint), root / "bundle")
    assert result.returncode == 0, f"export of {case.model_type} failed:\n{result.stderr}"
    return ArchitectureBundle(case, checkpoint, root / "bundle")


@pytest.fixture(scope="session")
def architecture_server(architecture: ArchitectureBundle) -> Iterator[ServerProcess]:
    """One server per architecture, shared by that architecture's tests."""
    with running_server(architecture.bundle) as server:
        yield server


# The real-weights test needs a downloaded model: only `make real-weights` (which sets the variable)
# collects it.
collect_ignore = [] if os.environ.get("ATENTO_REAL_WEIGHTS") else ["test_real_weights.py"]
