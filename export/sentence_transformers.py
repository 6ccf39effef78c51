"""A sentence-transformers directory, read as the specification of what the bundle serves.

``modules.json`` names the modules: the Transformer (this directory: the encoder atento exports),
one Pooling, any Dense modules, an optional Normalize. Their configuration files say the token
limit (``max_seq_length``), ``do_lower_case``, the pooling mode and ``include_prompt``, each
Dense's size, bias and activation; ``config_sentence_transformers.json`` holds the prompts. What
this reader does not know how to honour is refused with one line naming the file and the field:
never silently ignored, since a vector computed without it would not be the model's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from atento.service.bundle import ACTIVATIONS, POOLINGS
from safetensors.torch import load_file

from .config import CheckpointError

MODULE_KINDS = ("Transformer", "Pooling", "Dense", "Normalize")
# The legacy boolean keys of 1_Pooling/config.json, in sentence-transformers' own order.
LEGACY_POOLING_KEYS = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens": "weightedmean",
    "pooling_mode_lasttoken": "lasttoken",
}
# torch.nn activation classes a Dense may name -> ours (service.pooling computes them with numpy).
TORCH_ACTIVATIONS = {
    "Identity": "identity",
    "Tanh": "tanh",
    "ReLU": "relu",
    "Sigmoid": "sigmoid",
    "SiLU": "silu",
    "GELU": "gelu",
}
# sentence_bert_config.json keys that only restate what atento does anyway: key -> the value it must have.
TRANSFORMER_DEFAULTS: dict[str, Any] = {
    "transformer_task": "feature-extraction",
    "modality_config": {"text": {"method": "forward", "method_output_name": "last_hidden_state"}},
    "module_output_name": "token_embeddings",
    "model_args": {},
    "tokenizer_args": {},
    "config_args": {},
    "processing_kwargs": {},
    "query_length": None,
    "document_length": None,
    "query_expansion": None,
}
SENTENCE_KEYS = {"sentence_embedding"}  # Dense/Normalize read and write the sentence embedding, nothing else


@dataclass(frozen=True)
class DenseModule:
    in_features: int
    out_features: int
    activation: str  # one of service.bundle.ACTIVATIONS
    weight: np.ndarray  # (out_features, in_features) float32
    bias: np.ndarray | None  # (out_features,) float32


@dataclass(frozen=True)
class SentenceSpec:
    """Everything after the encoder that shapes the vector, as the directory declares it."""

    max_seq_length: int
    do_lower_case: bool = False
    pooling: str = "mean"
    include_prompt: bool = True
    dense: tuple[DenseModule, ...] = ()
    normalize: bool = False
    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None


def _json(path: Path, required: bool = True) -> Any:
    if not path.is_file():
        if required:
            raise CheckpointError(f"{path} is missing")
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path} is not valid JSON: {error}") from error


def _refuse(path: Path, key: str, why: str) -> CheckpointError:
    return CheckpointError(f"{path}: {key} {why}")


def _typed(config: dict[str, Any], key: str, kind: type, path: Path, default: Any) -> Any:
    value = config.get(key, default)
    if value is not default and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
        raise _refuse(path, key, f"has the wrong type: {value!r}")
    return value


def _only_known(config: dict[str, Any], known: set[str], path: Path) -> None:
    for key in config:
        if key not in known:
            raise _refuse(
                path, key, f"is not a setting atento knows how to honour (it knows: {', '.join(sorted(known))})"
            )


def module_kind(entry: Any, index: int, path: Path) -> tuple[str, str]:
    """A modules.json entry -> (kind, its folder), refusing any module atento cannot compute."""
    if not isinstance(entry, dict) or not isinstance(entry.get("type"), str):
        raise _refuse(path, f"[{index}].type", "is missing")
    kind = entry["type"].rsplit(".", 1)[-1]
    if not entry["type"].startswith("sentence_transformers.") or kind not in MODULE_KINDS:
        raise _refuse(
            path, f"[{index}].type", f"{entry['type']!r} is not a module atento supports ({', '.join(MODULE_KINDS)})"
        )
    return kind, str(entry.get("path", ""))


def transformer_settings(directory: Path, max_positions: int) -> tuple[int, bool]:
    """(max_seq_length, do_lower_case): sentence_bert_config.json first, then tokenizer_config.json."""
    path = directory / "sentence_bert_config.json"
    config = _json(path, required=False)
    # unpad_inputs only changes how the batch is laid out for flash attention, not the vectors
    _only_known(config, {"max_seq_length", "do_lower_case", "unpad_inputs", *TRANSFORMER_DEFAULTS}, path)
    for key, expected in TRANSFORMER_DEFAULTS.items():
        if key in config and config[key] != expected and not (expected == {} and not config[key]):
            raise _refuse(path, key, f"{config[key]!r} is not supported (atento honours {expected!r})")
    limit = _typed(config, "max_seq_length", int, path, None)
    if limit is None:  # as sentence-transformers: the tokenizer's model_max_length, capped by the positions
        tokenizer_config = _json(directory / "tokenizer_config.json", required=False)
        declared = tokenizer_config.get("model_max_length")
        limit = int(declared) if isinstance(declared, int | float) and declared >= 1 else max_positions
    if limit < 1:
        raise _refuse(path, "max_seq_length", f"must be positive, got {limit}")
    do_lower_case = _typed(config, "do_lower_case", bool, path, False)
    return min(limit, max_positions), do_lower_case


def pooling_settings(path: Path) -> tuple[str, bool]:
    """(mode, include_prompt) from a Pooling module's config.json, legacy or current keys."""
    config = _json(path)
    known = {"embedding_dimension", "word_embedding_dimension", "pooling_mode", "include_prompt", *LEGACY_POOLING_KEYS}
    _only_known(config, known, path)
    if "pooling_mode" in config:
        mode = config["pooling_mode"]
        modes = [mode] if isinstance(mode, str) else list(mode) if isinstance(mode, list) else [repr(mode)]
        key = "pooling_mode"
    else:
        modes = [name for flag, name in LEGACY_POOLING_KEYS.items() if config.get(flag)] or ["mean"]
        key = next((flag for flag, name in LEGACY_POOLING_KEYS.items() if config.get(flag)), "pooling_mode")
    if len(modes) != 1:
        raise _refuse(path, key, f"combines several pooling modes {modes}: atento serves one (one of {POOLINGS})")
    if modes[0] not in POOLINGS:
        raise _refuse(path, key, f"{modes[0]!r} is not a pooling mode atento knows ({', '.join(POOLINGS)})")
    return modes[0], _typed(config, "include_prompt", bool, path, True)


def activation_name(value: Any, path: Path) -> str:
    """torch.nn.modules.activation.Tanh (as sentence-transformers saves it) -> "tanh"."""
    if value is None:
        return "identity"
    if (
        not isinstance(value, str)
        or not value.startswith("torch.")
        or value.rsplit(".", 1)[-1] not in TORCH_ACTIVATIONS
    ):
        known = ", ".join(f"torch.nn.{name}" for name in TORCH_ACTIVATIONS)
        raise _refuse(path, "activation_function", f"{value!r} is not an activation atento knows ({known})")
    return TORCH_ACTIVATIONS[value.rsplit(".", 1)[-1]]


def dense_module(folder: Path, in_features: int) -> DenseModule:
    path = folder / "config.json"
    config = _json(path)
    _only_known(
        config,
        {
            "in_features",
            "out_features",
            "bias",
            "activation_function",
            "module_input_name",
            "module_output_name",
            "use_residual",
        },
        path,
    )
    for key in ("module_input_name", "module_output_name"):
        if config.get(key) is not None and config[key] not in SENTENCE_KEYS:
            raise _refuse(path, key, f"{config[key]!r} is not supported (atento honours 'sentence_embedding')")
    if config.get("use_residual"):
        raise _refuse(path, "use_residual", "true is not supported")
    declared_in = _typed(config, "in_features", int, path, None)
    out_features = _typed(config, "out_features", int, path, None)
    if declared_in != in_features or out_features is None or out_features < 1:
        raise _refuse(path, "in_features", f"{declared_in} does not follow the size {in_features} before it")
    activation = activation_name(config.get("activation_function", "torch.nn.modules.activation.Tanh"), path)
    if activation not in ACTIVATIONS:  # the two tables must agree
        raise _refuse(path, "activation_function", f"{activation!r} has no numpy form")
    weights = _dense_weights(folder)
    weight = weights.get("linear.weight")
    if weight is None or tuple(weight.shape) != (out_features, in_features):
        raise _refuse(folder, "linear.weight", f"is missing or not ({out_features}, {in_features})")
    bias = weights.get("linear.bias") if _typed(config, "bias", bool, path, True) else None
    if bias is not None and tuple(bias.shape) != (out_features,):
        raise _refuse(folder, "linear.bias", f"is not ({out_features},)")
    return DenseModule(
        in_features, out_features, activation, weight.float().numpy(), None if bias is None else bias.float().numpy()
    )


def _dense_weights(folder: Path) -> dict[str, torch.Tensor]:
    if (folder / "model.safetensors").is_file():
        return load_file(folder / "model.safetensors")
    if (folder / "pytorch_model.bin").is_file():
        loaded: dict[str, torch.Tensor] = torch.load(
            folder / "pytorch_model.bin", map_location="cpu", weights_only=True
        )
        return loaded
    raise CheckpointError(f"{folder} holds neither model.safetensors nor pytorch_model.bin")


def prompt_settings(directory: Path) -> tuple[dict[str, str], str | None]:
    path = directory / "config_sentence_transformers.json"
    config = _json(path, required=False)
    prompts = config.get("prompts") or {}
    if not isinstance(prompts, dict) or not all(isinstance(v, str) for v in prompts.values()):
        raise _refuse(path, "prompts", "must map prompt names to strings")
    default = config.get("default_prompt_name")
    if default is not None and default not in prompts:
        raise _refuse(path, "default_prompt_name", f"{default!r} is not one of the prompts {sorted(prompts)}")
    return prompts, default


def read_sentence_spec(directory: Path, hidden_size: int, max_positions: int) -> SentenceSpec:
    """The directory's modules, or sentence-transformers' own default for a plain checkpoint (mean pooling)."""
    max_seq_length, do_lower_case = transformer_settings(directory, max_positions)
    prompts, default_prompt = prompt_settings(directory)
    path = directory / "modules.json"
    entries = _json(path, required=False) or [{"type": "sentence_transformers.models.Transformer", "path": ""}]
    if not isinstance(entries, list):
        raise _refuse(path, "modules", "must be a list")
    kinds = [module_kind(entry, i, path) for i, entry in enumerate(entries)]
    if kinds[0] != ("Transformer", ""):
        raise _refuse(path, "[0]", "must be the Transformer in this directory itself (path '')")
    pooling, include_prompt, normalize = "mean", True, False
    dense: list[DenseModule] = []
    seen = ["Transformer"]
    for i, (kind, folder) in enumerate(kinds[1:], start=1):
        order_ok = {"Pooling": seen == ["Transformer"], "Dense": "Pooling" in seen, "Normalize": "Pooling" in seen}
        if kind == "Transformer" or not order_ok[kind] or "Normalize" in seen:
            raise _refuse(
                path,
                f"[{i}].type",
                f"{kind} in this place is not supported (Transformer, Pooling, Dense..., Normalize)",
            )
        if kind == "Pooling":
            pooling, include_prompt = pooling_settings(directory / folder / "config.json")
        elif kind == "Dense":
            dense.append(dense_module(directory / folder, dense[-1].out_features if dense else hidden_size))
        else:
            normalize = True
        seen.append(kind)
    if "Pooling" not in seen and path.is_file():
        raise _refuse(path, "modules", "names no Pooling module: atento serves sentence embeddings")
    return SentenceSpec(
        max_seq_length=max_seq_length,
        do_lower_case=do_lower_case,
        pooling=pooling,
        include_prompt=include_prompt,
        dense=tuple(dense),
        normalize=normalize,
        prompts=prompts,
        default_prompt_name=default_prompt,
    )
