"""The exported graphs: fused attention nodes, IR version, dynamic axes and padding patterns in ORT."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from atento.export.checkpoint import load_encoder, open_checkpoint
from atento.export.sources import minilm_directory

from tests.export.conftest import ArchitectureBundle
from tests.export.random_checkpoints import LAYERS as RANDOM_LAYERS
from tests.export.random_checkpoints import VOCAB_SIZE

LAYERS = 6  # all-MiniLM-L6-v2


def op_counts(path: Path) -> Counter[str]:
    return Counter(node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node)


def test_the_fast_graph_has_one_fused_attention_node_per_layer(minilm_bundle: Path) -> None:
    counts = op_counts(minilm_bundle / "encoder.onnx")
    assert counts["Attention"] == LAYERS
    assert counts["Softmax"] == 0  # the softmax lives inside the fused node
    assert counts["MatMul"] == LAYERS * 6  # q, k, v, output, two feed-forward: no attention matmuls outside


def test_the_attention_maps_graph_computes_them_from_the_equations(minilm_bundle: Path) -> None:
    """MatMul -> scale -> mask -> Softmax -> MatMul per layer: ops every provider runs (the fused
    node's probabilities output is not implemented on CUDA, see provider_capabilities.py)."""
    counts = op_counts(minilm_bundle / "encoder_attn.onnx")
    assert counts["Attention"] == 0
    assert counts["Softmax"] == LAYERS
    assert counts["MatMul"] == LAYERS * 8  # q, k, v, output, two feed-forward, QKᵀ and AV


def test_every_architecture_keeps_one_fused_attention_node_per_layer(architecture: ArchitectureBundle) -> None:
    """MPNet's relative position bias goes into the fused node as its float mask, not beside it; the
    attention-maps graph computes the maps from the equations for every architecture."""
    counts = op_counts(architecture.bundle / "encoder.onnx")
    assert counts["Attention"] == RANDOM_LAYERS
    assert counts["Softmax"] == 0
    projection = 1 if architecture.case.model_type == "electra" else 0  # its embeddings' projection
    assert counts["MatMul"] == RANDOM_LAYERS * 6 + projection
    maps = op_counts(architecture.bundle / "encoder_attn.onnx")
    assert maps["Attention"] == 0 and maps["Softmax"] == RANDOM_LAYERS
    assert maps["MatMul"] == RANDOM_LAYERS * 8 + projection


def test_fast_graph_io_and_version(minilm_bundle: Path) -> None:
    model = onnx.load(str(minilm_bundle / "encoder.onnx"), load_external_data=False)
    assert model.ir_version <= 13  # onnxruntime 1.31 reads IR versions up to 13
    assert {op.domain: op.version for op in model.opset_import}[""] >= 23
    assert [i.name for i in model.graph.input] == ["input_ids", "attention_mask", "token_type_ids"]
    assert [o.name for o in model.graph.output] == ["last_hidden_state"]
    for tensor in model.graph.input:
        assert tensor.type.tensor_type.elem_type == onnx.TensorProto.INT64
        dims = tensor.type.tensor_type.shape.dim
        assert [d.dim_param for d in dims] == ["batch", "sequence"]


def test_attention_graph_outputs(minilm_bundle: Path) -> None:
    session = ort.InferenceSession(str(minilm_bundle / "encoder_attn.onnx"), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["last_hidden_state", "attentions"]
    ids = np.full((2, 7), 2000, dtype=np.int64)
    hidden, attentions = session.run(
        None, {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    )
    assert hidden.shape == (2, 7, 384)
    assert attentions.shape == (2, LAYERS, 12, 7, 7)
    np.testing.assert_allclose(attentions.sum(-1), 1.0, atol=1e-5)


@pytest.fixture(scope="module")
def reference() -> torch.nn.Module:
    return load_encoder(open_checkpoint(minilm_directory()))


@pytest.mark.parametrize(("batch", "seq"), [(1, 1), (1, 512), (5, 33), (17, 64)])
def test_dynamic_batch_and_sequence(minilm_bundle: Path, reference: torch.nn.Module, batch: int, seq: int) -> None:
    session = ort.InferenceSession(str(minilm_bundle / "encoder.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(seq)
    ids = rng.integers(1000, 30000, (batch, seq), dtype=np.int64)
    mask, types = np.ones_like(ids), np.zeros_like(ids)
    (hidden,) = session.run(None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": types})
    with torch.no_grad():
        expected, _ = reference(torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(types))
    np.testing.assert_allclose(hidden, expected.numpy(), atol=1e-4, rtol=0)


def test_arbitrary_padding_patterns_in_both_graphs(minilm_bundle: Path, reference: torch.nn.Module) -> None:
    """Right, left and holed masks: real tokens match the PyTorch encoder given the same mask."""
    rng = np.random.default_rng(7)
    ids = rng.integers(1000, 30000, (4, 20), dtype=np.int64)
    mask = np.ones_like(ids)
    mask[0, 12:] = 0  # right padding
    mask[1, :5] = 0  # left padding
    mask[2, rng.choice(20, 8, replace=False)] = 0  # holes anywhere
    types = np.zeros_like(ids)
    types[3, 10:] = 1  # a second segment
    with torch.no_grad():
        expected, expected_attn = reference(torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(types))
    real = mask.astype(bool)
    feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    (hidden,) = ort.InferenceSession(str(minilm_bundle / "encoder.onnx")).run(None, feeds)
    np.testing.assert_allclose(hidden[real], expected.numpy()[real], atol=1e-4, rtol=0)
    hidden, attentions = ort.InferenceSession(str(minilm_bundle / "encoder_attn.onnx")).run(None, feeds)
    np.testing.assert_allclose(hidden[real], expected.numpy()[real], atol=1e-4, rtol=0)
    assert expected_attn is not None
    rows = np.broadcast_to(real[:, None, None, :], attentions.shape[:-1])
    np.testing.assert_allclose(attentions[rows], expected_attn.numpy()[rows], atol=1e-5, rtol=0)
    real_query_pad_key = real[:, None, None, :, None] & ~real[:, None, None, None, :]  # (B, 1, 1, S, S)
    assert np.all(attentions[np.broadcast_to(real_query_pad_key, attentions.shape)] == 0)


def test_packed_rows_in_onnx_runtime(minilm_bundle: Path) -> None:
    """Three texts packed in one row come out of both graphs as they do alone."""
    check_packed_rows(minilm_bundle, vocab=(1000, 30000))


def test_packed_rows_in_onnx_runtime_every_architecture(architecture: ArchitectureBundle) -> None:
    """Positions (and MPNet's relative positions) count within each text, so packing changes nothing."""
    check_packed_rows(architecture.bundle, vocab=(10, VOCAB_SIZE))


def check_packed_rows(bundle: Path, vocab: tuple[int, int]) -> None:
    rng = np.random.default_rng(3)
    texts = [rng.integers(*vocab, (1, n), dtype=np.int64) for n in (9, 4, 13)]
    row = np.concatenate([*texts, np.zeros((1, 3), dtype=np.int64)], axis=1)
    mask = np.concatenate(
        [np.full((1, t.shape[1]), k + 1) for k, t in enumerate(texts)] + [np.zeros((1, 3), np.int64)], axis=1
    )
    for graph in ("encoder.onnx", "encoder_attn.onnx"):
        session = ort.InferenceSession(str(bundle / graph))
        names = {i.name for i in session.get_inputs()}

        def feeds(ids: np.ndarray, attention_mask: np.ndarray, names: set[str] = names) -> dict[str, np.ndarray]:
            given = {"input_ids": ids, "attention_mask": attention_mask, "token_type_ids": np.zeros_like(ids)}
            return {name: value for name, value in given.items() if name in names}

        packed = session.run(None, feeds(row, mask))
        start = 0
        for text in texts:
            n = text.shape[1]
            alone = session.run(None, feeds(text, np.ones_like(text)))
            np.testing.assert_allclose(packed[0][0, start : start + n], alone[0][0], atol=1e-4, rtol=0)
            if len(packed) > 1:
                block = packed[1][0, :, :, start : start + n, start : start + n]
                np.testing.assert_allclose(block, alone[1][0], atol=1e-5, rtol=0)
            start += n
