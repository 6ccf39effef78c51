"""Session fixtures: real bundles, built once per test run by the real exporter command line.

Set ATENTO_TEST_MINILM_BUNDLE (or ATENTO_TEST_TINY_BUNDLE) to a bundle directory built earlier to
skip the ~1 minute MiniLM export while iterating locally; CI always builds them fresh.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import ServerProcess, running_server

ROOT = Path(__file__).resolve().parent.parent

# Any attempt to reach the network during export fails fast: these proxies lead nowhere.
OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HTTP_PROXY": "http://127.0.0.1:9",
    "HTTPS_PROXY": "http://127.0.0.1:9",
    "NO_PROXY": "",
}


def export_bundle(model: str, out: Path, *extra: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """`python -m atento.export --model MODEL --out OUT [EXTRA...]`, offline."""
    return subprocess.run(
        [sys.executable, "-m", "atento.export", "--model", model, "--out", str(out), *extra],
        env={**os.environ, **OFFLINE_ENV},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _bundle(model: str, variable: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    prebuilt = os.environ.get(variable)
    if prebuilt:
        return Path(prebuilt)
    out = tmp_path_factory.mktemp(f"bundle-{model}") / model
    result = export_bundle(model, out)
    assert result.returncode == 0, f"export of {model} failed:\n{result.stderr}"
    return out


@pytest.fixture(scope="session")
def minilm_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded default model, all-MiniLM-L6-v2, exported as the README does."""
    return _bundle("minilm", "ATENTO_TEST_MINILM_BUNDLE", tmp_path_factory)


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer random-weight model with MiniLM's tokenizer: fast, for tests that need any model."""
    return _bundle("tiny", "ATENTO_TEST_TINY_BUNDLE", tmp_path_factory)


@pytest.fixture(scope="session")
def minilm_server(minilm_bundle: Path) -> Iterator[ServerProcess]:
    """One default-configured server on the MiniLM bundle, shared by the tests that only call it."""
    with running_server(minilm_bundle) as server:
        yield server
