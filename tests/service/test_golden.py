"""The default bundle's vectors for fixed texts stay where users indexed them (tests/golden.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.golden import TEXTS, TOLERANCE, embed, golden_file, quantize


@pytest.fixture(scope="module")
def int8_bundle(minilm_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return quantize(minilm_bundle, tmp_path_factory.mktemp("golden") / "minilm-int8")


def assert_golden(ours: np.ndarray, precision: str) -> None:
    golden = np.load(golden_file(precision), allow_pickle=False)
    moved = float(np.abs(ours - golden).max())
    assert ours.shape == golden.shape and moved <= TOLERANCE[precision], (
        f"{precision} vectors moved by {moved:.3g} (bound {TOLERANCE[precision]:g}): if this is deliberate, "
        "regenerate them as tests/golden.py says and say why in the commit"
    )


def test_fp32_vectors_are_golden(minilm_bundle: Path) -> None:
    assert_golden(embed(minilm_bundle), "fp32")


def test_int8_vectors_are_golden(int8_bundle: Path) -> None:
    assert_golden(embed(int8_bundle), "int8")


def test_the_golden_vectors_are_sentence_transformers_own() -> None:
    """The committed fp32 vectors are what SentenceTransformer.encode gives, so golden means right."""
    from atento.export.parity import quiet_references
    from atento.export.sources import minilm_directory

    quiet_references()
    from sentence_transformers import SentenceTransformer

    theirs = SentenceTransformer(str(minilm_directory()), device="cpu").encode(TEXTS, convert_to_numpy=True)
    golden = np.load(golden_file("fp32"), allow_pickle=False)
    assert np.sum(golden * theirs, axis=1).min() >= 0.99999  # both unit length (the model normalises)
