"""Parity of the MiniLM encoder against transformers, sentence-transformers and ONNX Runtime.

Each figure is measured here, in this process, and asserted against the issue's bound; the bundle
fixture's manifest must carry the same figures.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from atento.export.checkpoint import load_encoder, open_checkpoint
from atento.export.parity import ParityRun
from atento.export.sentence_transformers import read_sentence_spec
from atento.export.sentences import parity_sentences
from atento.export.sources import minilm_directory
from atento.export.tolerances import TOLERANCES, ParityError, check_tolerances


@pytest.fixture(scope="module")
def run() -> ParityRun:
    checkpoint = open_checkpoint(minilm_directory())
    return ParityRun(checkpoint, load_encoder(checkpoint), parity_sentences())


def test_sentences_cover_every_length_in_padded_batches(run: ParityRun) -> None:
    assert len(run.texts) >= 50
    assert len(set(run.texts)) == len(run.texts)
    assert run.min_tokens == 3  # [CLS] one-word [SEP]
    assert run.max_tokens == 512  # the model's maximum (longer paragraphs are cut there)
    assert sorted({len(batch.indices) for batch in run.batches}) == [1, 3, 16]
    assert sorted(i for batch in run.batches for i in batch.indices) == list(range(len(run.texts)))
    padded = [batch for batch in run.batches if not batch.real.all()]
    assert len(padded) == len([b for b in run.batches if len(b.indices) > 1])  # every multi-text batch pads


def test_torch_matches_transformers_bert(run: ParityRun) -> None:
    figures = run.against_transformers()
    assert figures["hidden_max_abs"] <= 1e-4
    assert figures["attention_max_abs"] <= 1e-5


def test_embeddings_match_sentence_transformers_with_the_directory_pipeline(run: ParityRun) -> None:
    config = run.checkpoint.config
    spec = read_sentence_spec(run.checkpoint.directory, config.hidden_size, config.max_positions)
    assert (spec.max_seq_length, spec.pooling, spec.normalize, spec.dense) == (256, "mean", True, ())
    figures = run.against_sentence_transformers(spec, run.checkpoint.tokenizer_file)
    assert figures["min_cosine"] >= 0.99999


def test_onnx_graphs_match_torch(run: ParityRun, minilm_bundle: Path) -> None:
    fast = run.onnx_against_torch(minilm_bundle / "encoder.onnx")
    assert fast["hidden_max_abs"] <= 1e-4
    assert "attention_max_abs" not in fast
    full = run.onnx_against_torch(minilm_bundle / "encoder_attn.onnx")
    assert full["hidden_max_abs"] <= 1e-4
    assert full["attention_max_abs"] <= 1e-5


def test_manifest_records_every_parity_figure(minilm_bundle: Path) -> None:
    parity = json.loads((minilm_bundle / "manifest.json").read_text())["parity"]
    assert parity["sentences"] >= 50 and parity["batch_sizes"] == [1, 3, 16]
    assert parity["tolerances"] == TOLERANCES
    check_tolerances(parity)  # raises on any figure outside its bound
    for other in ("int8_vs_fp32", "fp16_vs_fp32"):  # an fp32 bundle: those figures belong to other bundles
        assert other not in parity
    for key in (k for k in TOLERANCES if not k.startswith(("int8_vs_fp32", "fp16_vs_fp32"))):
        section, *rest = key.split(".")
        value = parity[section]
        for part in rest:
            value = value[part]
        assert isinstance(value, float), key


def test_a_wrong_weight_fails_parity(run: ParityRun) -> None:
    """The comparison can fail: nudge one weight and the transformers check must object."""
    broken = load_encoder(run.checkpoint)
    with torch.no_grad():
        broken.layers[3].feed_forward.output.bias[0] += 1e-2
    tampered = ParityRun(run.checkpoint, broken, run.texts[:20])
    figures = {"torch_vs_transformers": tampered.against_transformers()}
    assert figures["torch_vs_transformers"]["hidden_max_abs"] > 1e-4
    with pytest.raises(ParityError, match="torch_vs_transformers.hidden_max_abs"):
        check_tolerances(figures)
