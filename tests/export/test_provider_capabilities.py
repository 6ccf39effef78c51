"""The provider capability check: every exported graph runs on CPU and CUDA, and a planted node
that CUDA cannot run is caught, by the exporter and by the runtime's provider choice."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from atento.export.checkpoint import load_encoder
from atento.export.model import MultiHeadSelfAttention
from atento.export.onnx_export import export_graph
from atento.export.provider_capabilities import CPU, CUDA, problems, runs_on
from atento.export.sources import write_tiny_checkpoint
from atento.service.bundle import GraphRole, read_bundle, sha256_file
from atento.service.runtime import ProviderError, check_capabilities
from torch import Tensor


@pytest.mark.parametrize("graph", ["encoder", "encoder_attn"])
def test_every_graph_of_a_bundle_runs_on_both_providers(tiny_bundle: Path, graph: str) -> None:
    spec = read_bundle(tiny_bundle).graphs[GraphRole(graph)]
    assert spec.providers == (CPU, CUDA) and not spec.provider_problems
    assert runs_on(onnx.load(str(tiny_bundle / spec.file))) == {CPU: [], CUDA: []}


def test_a_planted_probabilities_output_is_caught_for_cuda_only(tiny_bundle: Path) -> None:
    model = onnx.load(str(tiny_bundle / "encoder.onnx"))
    node = next(n for n in model.graph.node if n.op_type == "Attention")
    node.attribute.append(onnx.helper.make_attribute("qk_matmul_output_mode", 3))
    (found,) = problems(model)
    assert found.provider == CUDA and found.node == node.name and "28351" in found.source
    assert problems(model, [CPU]) == []


def test_uint8_integer_matmuls_are_cpu_only(tmp_path: Path, tiny_bundle: Path) -> None:
    from atento.export.quantize import quantize_file

    quantize_file(tiny_bundle / "encoder.onnx", tmp_path / "int8.onnx")
    found = problems(onnx.load(str(tmp_path / "int8.onnx")), [CUDA])
    assert found and {p.op_type for p in found} == {"MatMulInteger"}


def test_cuda_refuses_a_bundle_with_a_node_it_cannot_run_and_auto_falls_back(tiny_bundle: Path, tmp_path: Path) -> None:
    bundle = Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["graphs"]["encoder"].update(providers=[CPU], provider_problems={CUDA: ["node 'attn_0' (Attention): x"]})
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    planted = read_bundle(bundle)
    with pytest.raises(ProviderError, match="cannot run the encoder graph of this bundle: node 'attn_0'"):
        check_capabilities(planted, "cuda", CUDA)
    assert check_capabilities(planted, "auto", CUDA) == CPU
    assert check_capabilities(read_bundle(tiny_bundle), "cuda", CUDA) == CUDA


class _FusedWithProbabilities(MultiHeadSelfAttention):
    """How the attention-maps graph used to compute them: the fused node's 4th output (mode 3)."""

    def attend(self, q: Tensor, k: Tensor, v: Tensor, keep: Tensor) -> tuple[Tensor, Tensor | None]:
        context, _, _, maps = torch.onnx.ops.attention(q, k, v, keep, qk_matmul_output_mode=3)
        return context, maps


def test_the_maps_equal_the_fused_nodes_probabilities(
    tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    encoder = load_encoder(write_tiny_checkpoint(tmp_path / "tiny"))  # the weights the tiny bundle holds (seed 0)
    monkeypatch.setattr("atento.export.onnx_export.MultiHeadSelfAttention", _FusedWithProbabilities)
    export_graph(encoder, tmp_path / "fused.onnx", GraphRole.ATTENTION_MAPS)  # the graph as it was exported before
    assert {n.op_type for n in onnx.load(str(tmp_path / "fused.onnx")).graph.node} >= {"Attention"}
    assert sha256_file(tmp_path / "fused.onnx") != sha256_file(tiny_bundle / "encoder_attn.onnx")
    ids = np.random.default_rng(0).integers(1000, 2000, size=(3, 17), dtype=np.int64)
    mask = np.ones_like(ids)
    mask[1, 10:], mask[2, :6], mask[2, 6:] = 0, 1, 2  # padding, and two texts packed in one row
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
    old = ort.InferenceSession(str(tmp_path / "fused.onnx"), providers=[CPU]).run(None, feeds)
    new = ort.InferenceSession(str(tiny_bundle / "encoder_attn.onnx"), providers=[CPU]).run(None, feeds)
    real = mask.astype(bool)
    assert np.abs(old[1] - new[1]).max(axis=-1)[np.broadcast_to(real[:, None, None], old[1].shape[:-1])].max() <= 1e-6
    assert np.abs(old[0] - new[0])[real].max() <= 1e-5
