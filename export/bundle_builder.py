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

import numpy as np
import onnx
from atento.service.bundle import Bundle, GraphRole, Precision, read_bundle, sha256_file, write_manifest

from .checkpoint import Checkpoint, load_encoder
from .onnx_export import ATTENTION_OP, ExportedGraph, export_graph
from .parity import ParityRun
from .provider_capabilities import runs_on
from .quantize import int8_agreement, quantize_file
from .sentence_transformers import SentenceSpec, read_sentence_spec
from .sentences import parity_sentences
from .sources import resolve_model
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


def write_tokenizer(checkpoint: Checkpoint, path: Path, lowercase: bool = False) -> None:
    """Copy tokenizer.json without its padding and truncation settings: the service applies its own.

    ``lowercase`` (the directory's do_lower_case) puts a Lowercase normaliser first, unless one is
    there already: what sentence-transformers does to the tokenizer, so offsets stay exact.
    """
    spec = json.loads(checkpoint.tokenizer_file.read_text(encoding="utf-8"))
    spec["padding"] = None
    spec["truncation"] = None
    normalizer = spec.get("normalizer")
    present = normalizer is not None and (
        normalizer.get("type") == "Lowercase"
        or any(n.get("type") == "Lowercase" for n in normalizer.get("normalizers") or [])
    )
    if lowercase and not present:
        rest = (
            []
            if normalizer is None
            else normalizer["normalizers"]
            if normalizer.get("type") == "Sequence"
            else [normalizer]
        )
        spec["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "Lowercase"}, *rest]}
    path.write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")


def providers_entry(path: Path) -> dict[str, Any]:
    """Which execution providers can run the graph at ``path`` (provider_capabilities.py), and why not."""
    problems = runs_on(onnx.load(str(path)))
    return {
        "providers": [provider for provider, found in problems.items() if not found],
        "provider_problems": {provider: found for provider, found in problems.items() if found},
    }


def model_section(checkpoint: Checkpoint, spec: SentenceSpec, staging: Path) -> dict[str, Any]:
    """The manifest's model section; each Dense module's weights go beside it as .npy files."""
    config = checkpoint.config
    dense = []
    for i, module in enumerate(spec.dense):
        entry: dict[str, Any] = {
            "in_features": module.in_features,
            "out_features": module.out_features,
            "activation": module.activation,
        }
        for part, array in (("weight", module.weight), ("bias", module.bias)):
            entry[part] = None
            if array is not None:
                np.save(staging / f"dense_{i}_{part}.npy", array.astype(np.float32), allow_pickle=False)
                entry[part] = {
                    "file": f"dense_{i}_{part}.npy",
                    "sha256": sha256_file(staging / f"dense_{i}_{part}.npy"),
                }
        dense.append(entry)
    return {
        "name": config.name,
        "architecture": config.architecture.value,
        "model_type": config.model_type,
        "hidden_size": config.hidden_size,
        "num_layers": config.num_layers,
        "num_heads": config.num_heads,
        "intermediate_size": config.intermediate_size,
        "max_positions": config.max_positions,
        "max_seq_length": spec.max_seq_length,
        "vocab_size": config.vocab_size,
        "type_vocab_size": config.type_vocab_size,
        "pooling": spec.pooling,
        "include_prompt": spec.include_prompt,
        "dense": dense,
        "normalize": spec.normalize,
        "prompts": spec.prompts,
        "default_prompt_name": spec.default_prompt_name,
        "do_lower_case": spec.do_lower_case,
    }


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
        **providers_entry(graph.path),
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
                path = staging / graph["file"]
                graph.update(sha256=sha256_file(path), precision=Precision.INT8.value, **providers_entry(path))
            manifest["provenance"]["derived_from"] = {"bundle": str(source.resolve()), "sha256": original.sha256}
            manifest.pop("format_version")
            write_manifest(staging, manifest)
            if out.exists():
                shutil.rmtree(out)
            staging.rename(out)
    return read_bundle(out)


def build_bundle(
    model: str,
    out: Path,
    *,
    report: Reporter = print,
    force: bool = False,
    quantize: str | None = None,
    dtype: str = "fp32",
) -> Bundle:
    """Export ``model`` to a bundle at ``out``: fp32, or fp16 (``dtype``, for GPUs), or with
    ``quantize="int8"`` int8 feed-forward matmuls (see quantize.py, for CPUs)."""
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not force:
        raise FileExistsError(f"{out} exists and is not empty (pass --force to replace it)")
    out.parent.mkdir(parents=True, exist_ok=True)
    if quantize not in (None, Precision.INT8.value):
        raise ValueError(f"unknown quantisation {quantize!r} (expected int8)")
    if dtype not in (Precision.FP32.value, Precision.FP16.value):
        raise ValueError(f"unknown dtype {dtype!r} (expected fp32 or fp16)")
    if quantize and dtype != Precision.FP32.value:
        raise ValueError("int8 quantisation starts from fp32 graphs: leave --dtype at fp32")
    precision = Precision(quantize or dtype)
    progress = Progress(report, 7 if quantize else 6)
    with tempfile.TemporaryDirectory(prefix=".atento-export-", dir=out.parent) as scratch_name:
        scratch = Path(scratch_name)
        staging = scratch / "bundle"
        staging.mkdir()
        with progress.step(f"loading checkpoint {model}"):
            checkpoint, source = resolve_model(model, scratch)
            spec = read_sentence_spec(
                checkpoint.directory, checkpoint.config.hidden_size, checkpoint.config.max_positions
            )
            encoder = load_encoder(checkpoint)
        with progress.step("exporting the fast graph, encoder.onnx (fused Attention, no attention maps)"):
            fast = export_graph(encoder, staging / "encoder.onnx", GraphRole.FAST, dtype)
        with progress.step("exporting the attention-maps graph, encoder_attn.onnx"):
            maps = export_graph(encoder, staging / "encoder_attn.onnx", GraphRole.ATTENTION_MAPS, dtype)
        with progress.step("writing tokenizer.json"):
            write_tokenizer(checkpoint, staging / "tokenizer.json", spec.do_lower_case)
        with progress.step("measuring parity against transformers, sentence-transformers and ONNX Runtime"):
            texts = parity_sentences()
            run = ParityRun(checkpoint, encoder, texts)
            parity: dict[str, Any] = {
                "sentences": len(texts),
                "batch_sizes": sorted({len(batch.indices) for batch in run.batches}),
                "min_tokens_seen": run.min_tokens,
                "max_tokens_seen": run.max_tokens,
                "torch_vs_transformers": run.against_transformers(),
                "torch_vs_sentence_transformers": run.against_sentence_transformers(spec, staging / "tokenizer.json"),
            }
            against = run.fp16_against_fp32 if precision is Precision.FP16 else run.onnx_against_torch
            parity["fp16_vs_fp32" if precision is Precision.FP16 else "onnx_vs_torch"] = {
                graph.role.value: against(graph.path) for graph in (fast, maps)
            }
            check_tolerances(parity)
        if quantize:
            with progress.step("quantising the feed-forward matmuls to int8, per token"):
                parity["int8_vs_fp32"] = quantize_graphs(staging, scratch, checkpoint.config.max_positions)
                check_tolerances(parity)
        parity["tolerances"] = TOLERANCES
        with progress.step(f"writing manifest and moving the bundle to {out}"):
            manifest = {
                "model": model_section(checkpoint, spec, staging),
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
