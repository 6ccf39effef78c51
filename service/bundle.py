"""The bundle: the one thing that crosses from export to service.

A directory with ``manifest.json``, the graphs and ``tokenizer.json``. The exporter writes the
manifest through ``write_manifest``; the service reads it through ``read_bundle``, which refuses
a bundle whose manifest is malformed or whose files are missing or changed, naming the culprit.
Standard library only: importable without torch, onnx or onnxruntime.
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FORMAT_VERSION = 2  # 2: the model section records the sentence-transformers modules (v1 bundles: re-export)
MANIFEST = "manifest.json"


class GraphRole(enum.StrEnum):
    """What a graph of the bundle is for; the value is its key in the manifest and its metrics label."""

    FAST = "encoder"  # last_hidden_state only: the serving path, one fused Attention node per layer
    ATTENTION_MAPS = "encoder_attn"  # last_hidden_state + attention maps (B, layers, heads, S, S)


class Precision(enum.StrEnum):
    """The numbers a graph computes with."""

    FP32 = "fp32"
    FP16 = "fp16"  # weights and activations in half precision, for GPUs; inputs and outputs as fp32
    INT8 = "int8"  # dynamic per-token int8 feed-forward (export/quantize.py), for CPUs


class BundleError(ValueError):
    """A bundle that cannot be served; the message names the file or field at fault."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# The pooling modes of sentence-transformers' Pooling module, and the activations of its Dense module.
POOLINGS = ("cls", "mean", "max", "mean_sqrt_len_tokens", "weightedmean", "lasttoken")
ACTIVATIONS = ("identity", "tanh", "relu", "sigmoid", "silu", "gelu")


@dataclass(frozen=True)
class DenseSpec:
    """A sentence-transformers Dense module: activation(weight @ x + bias), weights as .npy files."""

    in_features: int
    out_features: int
    activation: str  # one of ACTIVATIONS
    weight_file: str  # (out_features, in_features) float32
    bias_file: str | None  # (out_features,) float32, or None for a Dense without bias


@dataclass(frozen=True)
class ModelSpec:
    name: str
    hidden_size: int
    num_layers: int
    num_heads: int
    max_positions: int  # the position table: an upper bound only
    vocab_size: int
    pooling: str  # the model's own pooling, one of POOLINGS
    normalize: bool  # whether the model ends in a Normalize module
    max_seq_length: int | None = None  # the directory's token limit; None: max_positions
    include_prompt: bool = True  # False: prompt tokens are left out of the pooling
    dense: tuple[DenseSpec, ...] = ()  # Dense modules after the pooling, in order
    prompts: tuple[tuple[str, str], ...] = ()  # (name, text) from config_sentence_transformers.json
    default_prompt_name: str | None = None
    do_lower_case: bool = False  # applied by the bundle's tokenizer.json (a Lowercase normaliser)

    @property
    def max_tokens(self) -> int:
        """The model's token limit, special tokens and prompt included."""
        return self.max_seq_length or self.max_positions

    @property
    def output_size(self) -> int:
        """The size of the pooled embedding: the last Dense module's, or the hidden size."""
        return self.dense[-1].out_features if self.dense else self.hidden_size

    @property
    def prompt_texts(self) -> dict[str, str]:
        return dict(self.prompts)


@dataclass(frozen=True)
class GraphSpec:
    file: str
    sha256: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    opset: int
    ir_version: int
    attention_op: str  # the fused node every layer's attention is, e.g. "Attention"
    precision: Precision
    # The execution providers the exporter's capability check found able to run every node, and
    # why the others cannot; None for bundles written before the check existed.
    providers: tuple[str, ...] | None = None
    provider_problems: dict[str, list[str]] | None = None


@dataclass(frozen=True)
class Bundle:
    directory: Path
    manifest: dict[str, Any]
    model: ModelSpec
    graphs: dict[GraphRole, GraphSpec]
    tokenizer_file: Path
    sha256: str  # the manifest's own hash: identifies the whole bundle

    def graph_path(self, role: GraphRole) -> Path:
        return self.directory / self.graphs[role].file

    @property
    def precision(self) -> Precision:
        """The serving graph's precision: what the bundle's vectors are computed in."""
        return self.graphs[GraphRole.FAST].precision

    @property
    def has_attention_maps_graph(self) -> bool:
        return GraphRole.ATTENTION_MAPS in self.graphs


def _choice(value: str, kind: type[enum.StrEnum], where: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        known = ", ".join(repr(member.value) for member in kind)
        raise BundleError(f"{where} {value!r} is not one this atento knows ({known})") from None


def _field(mapping: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in mapping:
        raise BundleError(f"{where} is missing {key!r}")
    value = mapping[key]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise BundleError(f"{where}.{key} has the wrong type: {value!r}")
    return value


def _check_file(directory: Path, name: str, expected_sha256: str, verify: bool) -> Path:
    path = directory / name
    if not path.is_file():
        raise BundleError(f"bundle file {name} is missing from {directory}")
    if verify and sha256_file(path) != expected_sha256:
        raise BundleError(f"bundle file {name} does not match its sha256 in {MANIFEST}: the file was changed")
    return path


def read_dense(raw: Any, where: str, directory: Path, verify: bool) -> DenseSpec:
    if not isinstance(raw, dict):
        raise BundleError(f"{where} must be an object")
    weight = _field(raw, "weight", dict, where)
    bias = raw.get("bias")
    if bias is not None and not isinstance(bias, dict):
        raise BundleError(f"{where}.bias must be an object or null")
    spec = DenseSpec(
        in_features=_field(raw, "in_features", int, where),
        out_features=_field(raw, "out_features", int, where),
        activation=_field(raw, "activation", str, where),
        weight_file=_field(weight, "file", str, f"{where}.weight"),
        bias_file=None if bias is None else _field(bias, "file", str, f"{where}.bias"),
    )
    if spec.activation not in ACTIVATIONS:
        raise BundleError(f"{where}.activation {spec.activation!r} is not one of {', '.join(ACTIVATIONS)}")
    _check_file(directory, spec.weight_file, _field(weight, "sha256", str, f"{where}.weight"), verify)
    if bias is not None and spec.bias_file is not None:
        _check_file(directory, spec.bias_file, _field(bias, "sha256", str, f"{where}.bias"), verify)
    return spec


def read_model(raw: dict[str, Any], directory: Path, verify: bool) -> ModelSpec:
    """The manifest's model section: the encoder's shape and the sentence-transformers modules around it."""
    prompts = _field(raw, "prompts", dict, "model")
    if not all(isinstance(text, str) for text in prompts.values()):
        raise BundleError("model.prompts must map names to strings")
    default_prompt = raw.get("default_prompt_name")
    if default_prompt is not None and default_prompt not in prompts:
        raise BundleError(f"model.default_prompt_name {default_prompt!r} is not one of model.prompts")
    model = ModelSpec(
        name=_field(raw, "name", str, "model"),
        hidden_size=_field(raw, "hidden_size", int, "model"),
        num_layers=_field(raw, "num_layers", int, "model"),
        num_heads=_field(raw, "num_heads", int, "model"),
        max_positions=_field(raw, "max_positions", int, "model"),
        vocab_size=_field(raw, "vocab_size", int, "model"),
        pooling=_field(raw, "pooling", str, "model"),
        normalize=_field(raw, "normalize", bool, "model"),
        max_seq_length=_field(raw, "max_seq_length", int, "model"),
        include_prompt=_field(raw, "include_prompt", bool, "model"),
        dense=tuple(
            read_dense(item, f"model.dense[{i}]", directory, verify)
            for i, item in enumerate(_field(raw, "dense", list, "model"))
        ),
        prompts=tuple(prompts.items()),
        default_prompt_name=default_prompt,
        do_lower_case=_field(raw, "do_lower_case", bool, "model"),
    )
    if model.pooling not in POOLINGS:
        raise BundleError(f"model.pooling {model.pooling!r} is not one of {', '.join(POOLINGS)}")
    if not 0 < model.max_tokens <= model.max_positions:
        raise BundleError(f"model.max_seq_length {model.max_seq_length} is not in [1, {model.max_positions}]")
    size = model.hidden_size
    for i, dense in enumerate(model.dense):
        if dense.in_features != size:
            raise BundleError(
                f"model.dense[{i}].in_features {dense.in_features} does not match the size {size} before it"
            )
        size = dense.out_features
    return model


def read_bundle(directory: Path | str, *, verify: bool = True) -> Bundle:
    """Read and validate a bundle; with ``verify`` every file's sha256 is checked too."""
    directory = Path(directory)
    manifest_path = directory / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"{directory} is not a bundle: {MANIFEST} is missing")
    raw = manifest_path.read_bytes()
    try:
        manifest = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BundleError(f"{manifest_path} is not valid JSON: {error}") from error
    if not isinstance(manifest, dict):
        raise BundleError(f"{manifest_path} must hold a JSON object")
    version = manifest.get("format_version")
    if version == 1:
        raise BundleError(
            f"{manifest_path}: format_version 1 bundles do not record the model's max_seq_length, pooling "
            "modules or prompts: re-export it with this atento (atento export --model ... --out ...)"
        )
    if version != FORMAT_VERSION:
        raise BundleError(
            f"{manifest_path}: unknown manifest format_version {version!r} (this atento reads {FORMAT_VERSION})"
        )

    model = read_model(_field(manifest, "model", dict, "manifest"), directory, verify)

    graphs: dict[GraphRole, GraphSpec] = {}
    for key, graph_raw in _field(manifest, "graphs", dict, "manifest").items():
        where = f"graphs.{key}"
        role = _choice(key, GraphRole, "graph")
        if not isinstance(graph_raw, dict):
            raise BundleError(f"{where} must be an object")
        graph = GraphSpec(
            file=_field(graph_raw, "file", str, where),
            sha256=_field(graph_raw, "sha256", str, where),
            inputs=tuple(_field(graph_raw, "inputs", list, where)),
            outputs=tuple(_field(graph_raw, "outputs", list, where)),
            opset=_field(graph_raw, "opset", int, where),
            ir_version=_field(graph_raw, "ir_version", int, where),
            attention_op=_field(graph_raw, "attention_op", str, where),
            precision=_choice(_field(graph_raw, "precision", str, where), Precision, f"{where}.precision"),
            providers=tuple(_field(graph_raw, "providers", list, where)) if "providers" in graph_raw else None,
            provider_problems=_field(graph_raw, "provider_problems", dict, where)
            if "provider_problems" in graph_raw
            else None,
        )
        _check_file(directory, graph.file, graph.sha256, verify)
        graphs[role] = graph
    if GraphRole.FAST not in graphs:
        raise BundleError(f"{manifest_path} names no {GraphRole.FAST.value!r} graph")

    tokenizer_raw = _field(manifest, "tokenizer", dict, "manifest")
    tokenizer_file = _check_file(
        directory,
        _field(tokenizer_raw, "file", str, "tokenizer"),
        _field(tokenizer_raw, "sha256", str, "tokenizer"),
        verify,
    )
    return Bundle(
        directory=directory,
        manifest=manifest,
        model=model,
        graphs=graphs,
        tokenizer_file=tokenizer_file,
        sha256=hashlib.sha256(raw).hexdigest(),
    )


def write_manifest(directory: Path, manifest: dict[str, Any]) -> Bundle:
    """Write ``manifest.json`` and read the bundle back, so an exporter cannot write what we refuse."""
    manifest = {"format_version": FORMAT_VERSION, **manifest}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return read_bundle(directory)
