"""Small sentence-transformers directories around the tiny random BERT, for the fidelity tests.

Each is a full directory as sentence-transformers itself reads it: the tiny checkpoint
(``atento.export.sources.write_tiny_checkpoint``), ``modules.json``, ``1_Pooling/config.json``,
``2_Dense``... with random weights, a Normalize module when asked, ``sentence_bert_config.json``
and ``config_sentence_transformers.json`` with the prompts.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch
from atento.export.sources import write_tiny_checkpoint
from safetensors.torch import save_file

CHECKPOINT_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt")
CHECKPOINT_FILES += ("special_tokens_map.json",)


@dataclass(frozen=True)
class Dense:
    out_features: int
    activation: str | None = "torch.nn.modules.activation.Tanh"  # None: the key left out (their default, Tanh)
    bias: bool = True


@dataclass(frozen=True)
class Layout:
    """What a directory declares beyond the encoder."""

    pooling: str | list[str] | dict[str, bool] = "mean"  # a dict: the legacy pooling_mode_* flags
    include_prompt: bool = True
    dense: tuple[Dense, ...] = ()
    normalize: bool = False
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None
    do_lower_case: bool = False
    max_seq_length: int | None = None
    case_sensitive_tokenizer: bool = False  # drop the tokenizer's own lowercasing, so do_lower_case matters


def tiny_checkpoint(directory: Path) -> Path:
    if not (directory / "model.safetensors").is_file():
        write_tiny_checkpoint(directory)
    return directory


def write_directory(directory: Path, checkpoint: Path, layout: Layout, seed: int = 1) -> Path:
    """``directory``: the tiny checkpoint plus the modules ``layout`` declares."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in CHECKPOINT_FILES:
        shutil.copy(checkpoint / name, directory / name)
    hidden = json.loads((checkpoint / "config.json").read_text())["hidden_size"]
    if layout.case_sensitive_tokenizer:
        _drop_lowercasing(directory)
    modules = [{"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}]

    def module(kind: str, path: str) -> Path:
        modules.append({"idx": len(modules), "name": str(len(modules)), "path": path, "type": kind})
        (directory / path).mkdir(exist_ok=True)
        return directory / path

    pooling: dict[str, object] = {"word_embedding_dimension": hidden, "include_prompt": layout.include_prompt}
    if isinstance(layout.pooling, dict):
        pooling.update(layout.pooling)
    else:
        pooling["pooling_mode"] = layout.pooling
    _write(module("sentence_transformers.models.Pooling", "1_Pooling") / "config.json", pooling)
    generator = torch.Generator().manual_seed(seed)
    size = hidden
    for i, dense in enumerate(layout.dense):
        folder = module("sentence_transformers.models.Dense", f"{i + 2}_Dense")
        config: dict[str, object] = {"in_features": size, "out_features": dense.out_features, "bias": dense.bias}
        if dense.activation is not None:
            config["activation_function"] = dense.activation
        _write(folder / "config.json", config)
        weights = {"linear.weight": torch.randn(dense.out_features, size, generator=generator) / size**0.5}
        if dense.bias:
            weights["linear.bias"] = torch.randn(dense.out_features, generator=generator) * 0.1
        save_file(weights, folder / "model.safetensors")
        size = dense.out_features
    if layout.normalize:
        module("sentence_transformers.models.Normalize", f"{len(modules)}_Normalize")
    _write(directory / "modules.json", modules)
    transformer: dict[str, object] = {"do_lower_case": layout.do_lower_case}
    if layout.max_seq_length is not None:
        transformer["max_seq_length"] = layout.max_seq_length
    _write(directory / "sentence_bert_config.json", transformer)
    prompts = {"prompts": layout.prompts, "default_prompt_name": layout.default_prompt_name}
    _write(directory / "config_sentence_transformers.json", prompts)
    return directory


def _write(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, indent=2))


def _drop_lowercasing(directory: Path) -> None:
    """MiniLM's tokenizer lowercases in its BertNormalizer; a cased copy shows do_lower_case at work."""
    spec = json.loads((directory / "tokenizer.json").read_text())
    spec["normalizer"]["lowercase"] = False
    (directory / "tokenizer.json").write_text(json.dumps(spec))
    config = json.loads((directory / "tokenizer_config.json").read_text())
    config["do_lower_case"] = False
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
