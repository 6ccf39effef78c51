"""The int8 variant: which matmuls it rewrites, and its accuracy against fp32 on the parity sentences."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from atento.export.quantize import int8_agreement, quantize_file
from atento.export.sentences import parity_sentences
from atento.service.bundle import read_bundle

from tests.conftest import export_bundle


@pytest.fixture(scope="module")
def int8_graph(minilm_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("int8") / "encoder.onnx"
    assert quantize_file(minilm_bundle / "encoder.onnx", path) == 12  # two feed-forward matmuls x 6 layers
    return path


def test_only_the_feed_forward_is_int8(int8_graph: Path) -> None:
    counts = Counter(n.op_type for n in onnx.load(str(int8_graph)).graph.node)
    assert counts["MatMulInteger"] == 12 and counts["MatMul"] == 24  # Q, K, V and O stay fp32
    assert counts["Attention"] == 6 and counts["Softmax"] == 0
    assert counts["QuantizeLinear"] == 12  # one per distinct activation, per token


def test_int8_accuracy_on_the_parity_sentences(minilm_bundle: Path, int8_graph: Path) -> None:
    texts = parity_sentences()
    assert len(texts) >= 50
    figures = int8_agreement(minilm_bundle / "encoder.onnx", int8_graph, minilm_bundle / "tokenizer.json", 512, texts)
    assert figures["min_cosine"] >= 0.99
    assert figures["mean_cosine"] >= 0.995


def test_a_text_does_not_depend_on_its_batch(int8_graph: Path, minilm_bundle: Path) -> None:
    """Per-token scales: one text alone and the same text among others embed the same."""
    from atento.service.packing import pad_batch
    from atento.service.tokenizer import TextTokenizer

    tokenizer = TextTokenizer(minilm_bundle / "tokenizer.json", 512)
    session = ort.InferenceSession(str(int8_graph))
    texts = ["How so?", "It is a truth universally acknowledged " * 10]
    alone = session.run(None, pad_batch(tokenizer.encode_batch(texts[:1])))[0][0]
    together = session.run(None, pad_batch(tokenizer.encode_batch(texts)))[0][0, : alone.shape[0]]
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_export_quantize_int8_writes_and_records_it(tmp_path: Path) -> None:
    result = export_bundle("tiny", tmp_path / "int8", "--quantize", "int8")
    assert result.returncode == 0, result.stderr
    assert "[7/7]" in result.stderr and "int8_vs_fp32.min_cosine" in result.stdout
    manifest = json.loads((tmp_path / "int8" / "manifest.json").read_text())
    assert {g["precision"] for g in manifest["graphs"].values()} == {"int8"}
    assert manifest["parity"]["int8_vs_fp32"]["min_cosine"] >= 0.99
    shutil.rmtree(tmp_path / "int8")


def test_an_fp32_bundle_quantises_without_torch(minilm_bundle: Path, tmp_path: Path) -> None:
    """`--from-bundle`: the int8 variant of an existing bundle, its manifest naming its source."""
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "atento.export",
            "--from-bundle",
            str(minilm_bundle),
            "--quantize",
            "int8",
            "--out",
            str(tmp_path / "q"),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    bundle = read_bundle(tmp_path / "q")
    manifest = bundle.manifest
    assert {g.precision for g in bundle.graphs.values()} == {"int8"}
    assert manifest["parity"]["int8_vs_fp32"]["min_cosine"] >= 0.99
    assert manifest["provenance"]["derived_from"]["sha256"] == read_bundle(minilm_bundle).sha256
    assert manifest["model"] == json.loads((minilm_bundle / "manifest.json").read_text())["model"]
