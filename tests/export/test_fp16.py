"""The fp16 bundle variant (`atento export --dtype fp16`), the GPU's default: half-precision weights
and activations, int64 in and float32 out like every bundle, its parity bounds in the manifest, and
served by ONNX Runtime on the CPU here (the CUDA run is `make gpu-check`'s)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from atento.export.checkpoint import load_encoder, open_checkpoint
from atento.export.onnx_export import export_graph
from atento.export.parity import ParityRun
from atento.export.provider_capabilities import CPU, CUDA, runs_on
from atento.export.sentences import parity_sentences
from atento.export.tolerances import TOLERANCES
from atento.service.bundle import GraphRole, Precision, read_bundle
from atento.service.config import Settings
from atento.service.packing import pad_batch
from atento.service.pooling import l2_normalize, pool
from atento.service.runtime import Runtime
from atento.service.tokenizer import TextTokenizer

from tests.conftest import export_bundle
from tests.export.conftest import ArchitectureBundle

TEXTS = ["A single man in possession of a good fortune.", "Lizzy laughed.", "Mr. Darcy danced only once. " * 6]


@pytest.fixture(scope="module")
def fp16_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fp16") / "tiny-fp16"
    result = export_bundle("tiny", out, "--dtype", "fp16")
    assert result.returncode == 0, result.stderr
    return out


def test_the_manifest_records_fp16_and_its_parity_within_bounds(fp16_bundle: Path) -> None:
    manifest = json.loads((fp16_bundle / "manifest.json").read_text())
    bounds = manifest["parity"]["tolerances"]
    for role in ("encoder", "encoder_attn"):
        assert manifest["graphs"][role]["precision"] == "fp16"
        figures = manifest["parity"]["fp16_vs_fp32"][role]
        assert figures["min_cosine"] >= bounds[f"fp16_vs_fp32.{role}.min_cosine"] == 0.9999
        assert figures["mean_cosine"] >= bounds[f"fp16_vs_fp32.{role}.mean_cosine"] == 0.99995
        assert 0 < figures["hidden_max_abs"] < 0.05  # really half precision, and still close
    assert "attention_max_abs" in manifest["parity"]["fp16_vs_fp32"]["encoder_attn"]


def test_weights_are_half_and_the_interface_is_unchanged(fp16_bundle: Path) -> None:
    model = onnx.load(str(fp16_bundle / "encoder.onnx"))
    big = [init for init in model.graph.initializer if np.prod(init.dims) > 1000]
    assert big and all(init.data_type == onnx.TensorProto.FLOAT16 for init in big)
    assert all(i.type.tensor_type.elem_type == onnx.TensorProto.INT64 for i in model.graph.input)
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert sum(node.op_type == "Attention" for node in model.graph.node) == 2  # still fused, one per layer


def test_served_by_the_runtime_close_to_the_fp32_bundle(fp16_bundle: Path, tiny_bundle: Path) -> None:
    bundles = {name: read_bundle(path) for name, path in (("fp16", fp16_bundle), ("fp32", tiny_bundle))}
    assert bundles["fp16"].precision is Precision.FP16
    tokenizer = TextTokenizer(bundles["fp32"].tokenizer_file, bundles["fp32"].model.max_positions)
    inputs = pad_batch(tokenizer.encode_batch(TEXTS))
    vectors = {}
    for name, bundle in bundles.items():
        runtime = Runtime(bundle, Settings(bundle=bundle.directory, provider="cpu"))
        outputs = runtime.run(inputs, GraphRole.ATTENTION_MAPS)
        assert outputs.hidden.dtype == np.float32 and outputs.attention_maps is not None
        vectors[name] = l2_normalize(pool(outputs.hidden, inputs["attention_mask"], "mean"))
    assert np.sum(vectors["fp16"] * vectors["fp32"], axis=1).min() >= 0.9999


def test_every_architecture_runs_on_both_providers_and_keeps_fp16_parity(
    architecture: ArchitectureBundle, tmp_path: Path
) -> None:
    """The capability check passes each exported graph, and the same checkpoint's fp16 graphs stay
    within the fp16 bounds against its fp32 encoder (the exporter's own parity run, in process)."""
    for role in ("encoder", "encoder_attn"):
        assert architecture.manifest["graphs"][role]["providers"] == [CPU, CUDA], role
    checkpoint = open_checkpoint(architecture.checkpoint)
    encoder = load_encoder(checkpoint)
    run = ParityRun(checkpoint, encoder, parity_sentences()[:24])
    for role in (GraphRole.FAST, GraphRole.ATTENTION_MAPS):
        graph = export_graph(encoder, tmp_path / f"{role.value}.onnx", role, "fp16")
        assert runs_on(onnx.load(str(graph.path))) == {CPU: [], CUDA: []}
        figures = run.fp16_against_fp32(graph.path)
        assert figures["min_cosine"] >= TOLERANCES[f"fp16_vs_fp32.{role.value}.min_cosine"], figures
        assert figures["mean_cosine"] >= TOLERANCES[f"fp16_vs_fp32.{role.value}.mean_cosine"], figures
