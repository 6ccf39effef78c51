"""Checkpoint -> bundle: load, export both graphs, measure parity, write the manifest.

The bundle is built in a scratch directory beside ``out`` and moved into place only when parity
holds, so an interrupted or failed export never leaves something that looks like a bundle.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from atento.service.bundle import Bundle, GraphRole, Precision, read_bundle, sha256_file, write_manifest

from .checkpoint import Checkpoint, load_encoder
from .onnx_export import ATTENTION_OP, ExportedGraph, export_graph
from .parity import ParityRun
from .quantize import int8_agreement, quantize_file
from .sentences import parity_sentences
from .sources import model_pooling, resolve_model
from .tolerances import TOLERANCES, check_tolerances

Reporter = Callable[[str], None]


class Progress:
    """Numbered stage lines with their duration: `[2/6] exporting encoder.onnx ... 8.1 s`."""

    def __init__(self, report: Reporter, stages: int) -> None:
        self.report, self.stage, self.stages = report, 0, stages

    @contextmanager
    def step(self, what: str) -> Iterator[None]:
        self.stage += 1
        start = time.perf_counter()
        self.report(f"[{self.stage}/{self.stages}] {what} ...")
        yield
        self.report(f"[{self.stage}/{self.stages}] {what}: done in {time.perf_counter() - start:.1f} s")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def write_tokenizer(checkpoint: Checkpoint, path: Path) -> None:
    """Copy tokenizer.json without its padding and truncation settings: the service applies its own."""
    spec = json.loads(checkpoint.tokenizer_file.read_text(encoding="utf-8"))
    spec["padding"] = None
    spec["truncation"] = None
    path.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")


def graph_entry(graph: ExportedGraph, precision: Precision) -> dict[str, Any]:
    return {
        "file": graph.path.name,
        "sha256": sha256_file(graph.path),
        "inputs": list(graph.inputs),
        "outputs": list(graph.outputs),
        "opset": graph.opset,
        "ir_version": graph.ir_version,
        "attention_op": ATTENTION_OP,
        "attention_nodes": graph.op_counts.get(ATTENTION_OP, 0),
        "softmax_nodes": graph.op_counts.get("Softmax", 0),
        "precision": precision.value,
    }


def quantize_graphs(bundle: Path, scratch: Path, max_tokens: int) -> dict[str, float]:
    """Quantise both graphs of ``bundle`` in place; returns the int8 embeddings' cosines to fp32."""
    for name in ("encoder.onnx", "encoder_attn.onnx"):
        (bundle / name).rename(scratch / f"fp32-{name}")
        quantize_file(scratch / f"fp32-{name}", bundle / name)
    texts = parity_sentences()
    return int8_agreement(
        scratch / "fp32-encoder.onnx", bundle / "encoder.onnx", bundle / "tokenizer.json", max_tokens, texts
    )


def quantize_bundle(source: Path, out: Path, *, report: Reporter = print, force: bool = False) -> Bundle:
    """An int8 variant of an fp32 bundle, without torch: the graphs are rewritten, the manifest kept
    (with the int8-vs-fp32 cosines added and the source bundle named in its provenance)."""
    original = read_bundle(source)
    if any(graph.precision is not Precision.FP32 for graph in original.graphs.values()):
        raise ValueError(f"{source} is not an fp32 bundle")
    if out.exists() and any(out.iterdir()) and not force:
        raise FileExistsError(f"{out} exists and is not empty (pass --force to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    progress = Progress(report, 2)
    with tempfile.TemporaryDirectory(prefix=".atento-export-", dir=out.parent) as scratch_name:
        scratch = Path(scratch_name)
        staging = Path(shutil.copytree(source, scratch / "bundle"))
        manifest = json.loads((staging / "manifest.json").read_text())
        with progress.step(f"quantising {source} to int8, per token"):
            manifest["parity"]["int8_vs_fp32"] = quantize_graphs(staging, scratch, original.model.max_positions)
            check_tolerances(manifest["parity"])
        with progress.step(f"writing manifest and moving the bundle to {out}"):
            for graph in manifest["graphs"].values():
                graph.update(sha256=sha256_file(staging / graph["file"]), precision=Precision.INT8.value)
            manifest["provenance"]["derived_from"] = {"bundle": str(source.resolve()), "sha256": original.sha256}
            manifest.pop("format_version")
            write_manifest(staging, manifest)
            if out.exists():
                shutil.rmtree(out)
            staging.rename(out)
    return read_bundle(out)


def build_bundle(
    model: str, out: Path, *, report: Reporter = print, force: bool = False, quantize: str | None = None
) -> Bundle:
    """Export ``model`` to a bundle at ``out``; with ``quantize="int8"`` the graphs are int8 (see quantize.py)."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise FileExistsError(f"{out} exists and is not empty (pass --force to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    if quantize not in (None, Precision.INT8.value):
        raise ValueError(f"unknown quantisation {quantize!r} (expected int8)")
    precision = Precision(quantize or Precision.FP32.value)
    progress = Progress(report, 7 if quantize else 6)
    with tempfile.TemporaryDirectory(prefix=".atento-export-", dir=out.parent) as scratch_name:
        scratch = Path(scratch_name)
        staging = scratch / "bundle"
        staging.mkdir()
        with progress.step(f"loading checkpoint {model}"):
            checkpoint, source = resolve_model(model, scratch)
            encoder = load_encoder(checkpoint)
        with progress.step("exporting the fast graph, encoder.onnx (fused Attention, no attention maps)"):
            fast = export_graph(encoder, staging / "encoder.onnx", GraphRole.FAST)
        with progress.step("exporting the attention-maps graph, encoder_attn.onnx"):
            maps = export_graph(encoder, staging / "encoder_attn.onnx", GraphRole.ATTENTION_MAPS)
        with progress.step("writing tokenizer.json"):
            write_tokenizer(checkpoint, staging / "tokenizer.json")
        with progress.step("measuring parity against transformers, sentence-transformers and ONNX Runtime"):
            texts = parity_sentences()
            run = ParityRun(checkpoint, encoder, texts)
            parity: dict[str, Any] = {
                "sentences": len(texts),
                "batch_sizes": sorted({len(batch.indices) for batch in run.batches}),
                "min_tokens_seen": run.min_tokens,
                "max_tokens_seen": run.max_tokens,
                "torch_vs_transformers": run.against_transformers(),
                "torch_vs_sentence_transformers": run.against_sentence_transformers(),
                "onnx_vs_torch": {
                    GraphRole.FAST.value: run.onnx_against_torch(fast.path),
                    GraphRole.ATTENTION_MAPS.value: run.onnx_against_torch(maps.path),
                },
            }
            check_tolerances(parity)
        if quantize:
            with progress.step("quantising the feed-forward matmuls to int8, per token"):
                parity["int8_vs_fp32"] = quantize_graphs(staging, scratch, checkpoint.config.max_positions)
                check_tolerances(parity)
        parity["tolerances"] = TOLERANCES
        with progress.step(f"writing manifest and moving the bundle to {out}"):
            config = checkpoint.config
            pooling, normalize = model_pooling(checkpoint)
            manifest = {
                "model": {
                    "name": config.name,
                    "architecture": config.architecture.value,
                    "model_type": config.model_type,
                    "hidden_size": config.hidden_size,
                    "num_layers": config.num_layers,
                    "num_heads": config.num_heads,
                    "intermediate_size": config.intermediate_size,
                    "max_positions": config.max_positions,
                    "vocab_size": config.vocab_size,
                    "type_vocab_size": config.type_vocab_size,
                    "pooling": pooling,
                    "normalize": normalize,
                },
                "graphs": {graph.role.value: graph_entry(graph, precision) for graph in (fast, maps)},
                "tokenizer": {"file": "tokenizer.json", "sha256": sha256_file(staging / "tokenizer.json")},
                "parity": parity,
                "provenance": {
                    "source": source,
                    "source_sha256": sha256_file(checkpoint.weights_file),
                    "created": datetime.now(UTC).isoformat(timespec="seconds"),
                    "versions": {
                        package: _version(package)
                        for package in (
                            "atento",
                            "torch",
                            "onnx",
                            "onnxruntime",
                            "transformers",
                            "sentence-transformers",
                        )
                    },
                },
            }
            write_manifest(staging, manifest)
            if out.exists():
                shutil.rmtree(out)
            staging.rename(out)
    return read_bundle(out)
