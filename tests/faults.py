"""Bundles that break on purpose, for the paths a healthy model never takes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import onnx
from atento.service.bundle import read_bundle, sha256_file, write_manifest
from onnx import TensorProto, helper

FAILING_BATCH = 20  # texts in one request: short ones are packed several to a row, which fails below


def failing_attention_graph(path: Path, hidden: int) -> None:
    """Valid ONNX that runs while every row holds one text (warm-up, single texts) and fails in ONNX
    Runtime as soon as a row holds two: a Gather indexed by the mask's largest text number."""
    inputs = [
        helper.make_tensor_value_info(n, TensorProto.INT64, ["batch", "sequence"])
        for n in ("input_ids", "attention_mask", "token_type_ids")
    ]
    nodes = [
        helper.make_node("ReduceMax", ["attention_mask"], ["texts_in_a_row"], keepdims=0),
        helper.make_node(
            "Constant", [], ["table"], value=helper.make_tensor("table", TensorProto.FLOAT, [2], [0.0, 0.0])
        ),
        helper.make_node("Gather", ["table", "texts_in_a_row"], ["picked"]),  # out of range from 2 texts a row
        helper.make_node("Cast", ["input_ids"], ["ids"], to=TensorProto.FLOAT),
        helper.make_node("Constant", [], ["axes2"], value=helper.make_tensor("axes2", TensorProto.INT64, [1], [2])),
        helper.make_node("Unsqueeze", ["ids", "axes2"], ["ids3"]),
        helper.make_node(
            "Constant", [], ["width"], value=helper.make_tensor("width", TensorProto.FLOAT, [hidden], [0.0] * hidden)
        ),
        helper.make_node("Add", ["ids3", "width"], ["wide"]),
        helper.make_node("Add", ["wide", "picked"], ["last_hidden_state"]),
        helper.make_node(
            "Constant", [], ["axes12"], value=helper.make_tensor("axes12", TensorProto.INT64, [2], [1, 2])
        ),
        helper.make_node("Unsqueeze", ["last_hidden_state", "axes12"], ["attentions"]),
    ]
    outputs = [
        helper.make_tensor_value_info("last_hidden_state", TensorProto.FLOAT, ["batch", "sequence", hidden]),
        helper.make_tensor_value_info("attentions", TensorProto.FLOAT, ["batch", 1, 1, "sequence", hidden]),
    ]
    model = helper.make_model(
        helper.make_graph(nodes, "failing", inputs, outputs), opset_imports=[helper.make_opsetid("", 23)]
    )
    model.ir_version = 10
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def faulty_bundle(source: Path, out: Path) -> Path:
    """A copy of ``source`` whose attention graph fails at run time for big batches; hashes kept valid."""
    shutil.copytree(source, out)
    manifest = json.loads((out / "manifest.json").read_text())
    failing_attention_graph(out / "encoder_attn.onnx", read_bundle(source).model.hidden_size)
    manifest["graphs"]["encoder_attn"]["sha256"] = sha256_file(out / "encoder_attn.onnx")
    manifest.pop("format_version")
    write_manifest(out, manifest)
    return out
