"""Dynamic int8 quantisation of the feed-forward matmuls, token by token.

The feed-forward network is two thirds of the encoder's FLOPs. Each of its MatMuls becomes
    scale = max|x| / 127 per token (row)          # dynamic: computed on every call
    x_q   = QuantizeLinear(x, scale, 128)         # uint8, one block per row
    y     = MatMulInteger(x_q, W_q) * scale * w_scale    # W_q int8, one scale per output column
which runs on the CPU's int8 dot-product units (VNNI, AMX) through ONNX Runtime's u8s8 kernels.

Why per token and why only the feed-forward, from measurements on this model (see BENCHMARKS.md):
onnxruntime's `quantize_dynamic` takes one activation scale per tensor, so a handful of outlier
tokens and channels set the scale for the whole batch; it is 2x faster but the cosine to fp32
falls to 0.95, and a text's embedding then depends on the batch it shares. Per-token scales make
every text independent of its batch, and leaving the attention projections in fp32 (softmax
amplifies the error of Q and K) keeps the cosine above 0.99.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
from atento.service.packing import pad_batch
from atento.service.pooling import l2_normalize, pool
from atento.service.tokenizer import TextTokenizer
from onnx import TensorProto, helper, numpy_helper

from .sentences import parity_batches

NodeFilter = Callable[[onnx.NodeProto], bool]


def scopes(node: onnx.NodeProto) -> str:
    """The PyTorch module path torch.onnx recorded for the node."""
    return next((p.value for p in node.metadata_props if p.key == "pkg.torch.onnx.name_scopes"), "")


def is_feed_forward(node: onnx.NodeProto) -> bool:
    return ".feed_forward.intermediate'" in scopes(node) or ".feed_forward.output'" in scopes(node)


class _Builder:
    """Collects the new nodes and initialisers of one graph rewrite."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        self.nodes: list[onnx.NodeProto] = []

    def constant(self, name: str, value: np.ndarray) -> str:
        self.model.graph.initializer.append(numpy_helper.from_array(value, name))
        return name

    def node(self, op: str, inputs: list[str], output: str, **attributes: Any) -> str:
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attributes))
        return output


def _quantize_rows(b: _Builder, x: str, width: int, constants: dict[str, str]) -> tuple[str, str]:
    """x (B, S, width) float -> (uint8 with zero point 128, per-row scale (B, S, 1))."""
    peak = b.node("ReduceMax", [b.node("Abs", [x], f"{x}/q/abs"), constants["last_axis"]], f"{x}/q/max", keepdims=1)
    scale = b.node("Max", [b.node("Div", [peak, constants["127"]], f"{x}/q/s"), constants["eps"]], f"{x}/q/scale")
    # QuantizeLinear needs the zero point in the scale's (dynamic) shape: 0 * scale + 128, as uint8
    zero = b.node("Add", [b.node("Mul", [scale, constants["0"]], f"{x}/q/z0"), constants["128"]], f"{x}/q/z")
    zero_point = b.node("Cast", [zero], f"{x}/q/zp", to=TensorProto.UINT8)
    quantized = b.node("QuantizeLinear", [x, scale, zero_point], f"{x}/q/x", axis=-1, block_size=width)
    return quantized, scale


def quantize_model(model: onnx.ModelProto, select: NodeFilter = is_feed_forward) -> tuple[onnx.ModelProto, int]:
    """Rewrite every selected MatMul with a constant weight; returns the model and how many."""
    weights = {init.name: init for init in model.graph.initializer}
    b = _Builder(model)
    constants = {
        "127": b.constant("int8/127", np.array(127.0, np.float32)),
        "0": b.constant("int8/0", np.array(0.0, np.float32)),
        "128": b.constant("int8/128", np.array(128.0, np.float32)),
        "eps": b.constant("int8/eps", np.array(1e-12, np.float32)),
        "zp": b.constant("int8/zp", np.array(128, np.uint8)),
        "last_axis": b.constant("int8/last_axis", np.array([-1], np.int64)),
    }
    rows: dict[str, tuple[str, str]] = {}  # an activation quantised once for all its consumers
    count = 0
    for node in model.graph.node:
        if node.op_type != "MatMul" or node.input[1] not in weights or not select(node):
            b.nodes.append(node)
            continue
        x, y = node.input[0], node.output[0]
        w = numpy_helper.to_array(weights[node.input[1]]).astype(np.float32)  # (in, out)
        if x not in rows:
            rows[x] = _quantize_rows(b, x, w.shape[0], constants)
        x_q, x_scale = rows[x]
        w_scale = np.maximum(np.abs(w).max(axis=0), 1e-12) / 127  # one per output column
        w_q = b.constant(f"{node.input[1]}/int8", np.clip(np.round(w / w_scale), -127, 127).astype(np.int8))
        acc = b.node("MatMulInteger", [x_q, w_q, constants["zp"]], f"{y}/acc")
        scaled = b.node("Mul", [b.node("Cast", [acc], f"{y}/accf", to=TensorProto.FLOAT), x_scale], f"{y}/rows")
        b.node("Mul", [scaled, b.constant(f"{node.input[1]}/scale", w_scale.astype(np.float32))], y)
        count += 1
    del model.graph.node[:]
    model.graph.node.extend(b.nodes)  # still in order: each rewrite sits where its MatMul was
    used = {name for node in model.graph.node for name in node.input}
    kept = [init for init in model.graph.initializer if init.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)
    del model.graph.value_info[:]  # stale shapes of the rewritten tensors
    return model, count


def quantize_file(source: Path, target: Path) -> int:
    """Quantise one graph file; the IR version and opset stay those of the source."""
    model, count = quantize_model(onnx.load(str(source)))
    onnx.checker.check_model(model, full_check=True)
    onnx.save_model(model, str(target))
    return count


def int8_agreement(
    full: Path, quantized: Path, tokenizer_file: Path, max_tokens: int, texts: Sequence[str]
) -> dict[str, float]:
    """Cosine of the quantised graph's mean-pooled embeddings to the fp32 graph's, text by text."""
    tokenizer = TextTokenizer(tokenizer_file, max_tokens)
    encoded = tokenizer.encode_batch(texts)
    sessions = [ort.InferenceSession(str(graph), providers=["CPUExecutionProvider"]) for graph in (full, quantized)]
    names = [i.name for i in sessions[0].get_inputs()]
    embeddings = [np.zeros((len(texts), 0), np.float32) for _ in sessions]
    for indices in parity_batches(encoded):
        inputs = pad_batch([encoded[i] for i in indices])
        for k, session in enumerate(sessions):
            (hidden,) = session.run(["last_hidden_state"], {n: inputs[n] for n in names})
            vectors = l2_normalize(pool(hidden, inputs["attention_mask"], "mean"))
            if embeddings[k].shape[1] == 0:
                embeddings[k] = np.zeros((len(texts), vectors.shape[1]), np.float32)
            embeddings[k][indices] = vectors
    cosines = np.sum(embeddings[0] * embeddings[1], axis=1)
    return {"min_cosine": float(cosines.min()), "mean_cosine": float(cosines.mean())}
