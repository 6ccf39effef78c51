"""The encoder's hyper-parameters: one frozen object, read from a transformers ``config.json``.

Every architecture we load is the same post-norm Transformer encoder; what differs is named here
(``Architecture``) and in ``from_hf_config``, so the model file only reads flags.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

# The feed-forward activations a BERT-family checkpoint may name, all GELU variants.
# "gelu" is the exact erf form; the others are the tanh approximation.
GELU_VARIANTS = {"gelu": "none", "gelu_new": "tanh", "gelu_pytorch_tanh": "tanh"}


class CheckpointError(ValueError):
    """A checkpoint we cannot load; the message names the key or value at fault."""


class Architecture(StrEnum):
    """The encoder equations we implement (``model.py``), one per family of checkpoints."""

    BERT = "bert"
    ROBERTA = "roberta"  # positions offset past the padding index
    DISTILBERT = "distilbert"  # no token types, its own module names
    ELECTRA = "electra"  # embeddings of their own width, projected to the hidden size
    MPNET = "mpnet"  # positions as RoBERTa, plus a relative position bias on the attention scores


# config.json's model_type -> the architecture it is; several are one of ours in disguise.
MODEL_TYPES = {
    "bert": Architecture.BERT,
    "roberta": Architecture.ROBERTA,
    "xlm-roberta": Architecture.ROBERTA,
    "camembert": Architecture.ROBERTA,
    "distilbert": Architecture.DISTILBERT,
    "electra": Architecture.ELECTRA,
    "mpnet": Architecture.MPNET,
}

# Where each architecture's config.json keeps what ours calls by one name (transformers' defaults
# for the optional ones). DistilBERT spells the sizes differently and fixes LayerNorm's eps.
_SIZES = {
    "vocab_size": "vocab_size",
    "hidden_size": "hidden_size",
    "num_hidden_layers": "num_layers",
    "num_attention_heads": "num_heads",
    "intermediate_size": "intermediate_size",
    "max_position_embeddings": "max_positions",
}
_DISTILBERT_SIZES = {
    "vocab_size": "vocab_size",
    "dim": "hidden_size",
    "n_layers": "num_layers",
    "n_heads": "num_heads",
    "hidden_dim": "intermediate_size",
    "max_position_embeddings": "max_positions",
}


def supported_model_types() -> str:
    return ", ".join(sorted(MODEL_TYPES))


@dataclass(frozen=True)
class EncoderConfig:
    name: str
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_positions: int  # the longest text, in tokens, the position table can place
    type_vocab_size: int
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    pad_token_id: int = 0
    architecture: Architecture = Architecture.BERT
    model_type: str = "bert"  # config.json's own name for it (camembert, xlm-roberta, ...)
    embedding_size: int = 0  # the embeddings' width when it differs from hidden_size (ELECTRA); 0: the same
    position_offset: int = 0  # the first text position's row in the position table (RoBERTa: padding_idx + 1)
    relative_buckets: int = 0  # MPNet's relative position bias: number of buckets (0: none)
    relative_max_distance: int = 128

    def __post_init__(self) -> None:
        for field in ("vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size", "max_positions"):
            if getattr(self, field) <= 0:
                raise CheckpointError(f"{field} must be positive, got {getattr(self, field)}")
        if self.type_vocab_size < 0:
            raise CheckpointError(f"type_vocab_size must be >= 0, got {self.type_vocab_size}")
        if self.hidden_size % self.num_heads:
            raise CheckpointError(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads {self.num_heads}"
            )
        if self.hidden_act not in GELU_VARIANTS:
            raise CheckpointError(
                f"hidden_act {self.hidden_act!r} is not supported (expected one of {sorted(GELU_VARIANTS)})"
            )

    @property
    def head_size(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def has_token_types(self) -> bool:
        """Whether token types are an input. A single type (RoBERTa) is a constant row, not an input."""
        return self.type_vocab_size > 1

    @property
    def embedding_width(self) -> int:
        return self.embedding_size or self.hidden_size

    @property
    def position_table_size(self) -> int:
        """Rows of the position table: the usable positions plus the ones skipped before them."""
        return self.max_positions + self.position_offset

    @property
    def padding_position(self) -> int:
        """The position table row padding gets: RoBERTa's padding_idx, BERT's 0 (never used either way)."""
        return max(self.position_offset - 1, 0)

    @classmethod
    def tiny(cls) -> EncoderConfig:
        """A small random-weight model for fast tests: 2 layers, 4 heads, hidden 32."""
        return cls(
            name="tiny",
            vocab_size=30522,  # MiniLM's tokenizer, so the tiny model runs on real text
            hidden_size=32,
            num_layers=2,
            num_heads=4,
            intermediate_size=64,
            max_positions=128,
            type_vocab_size=2,
        )

    @classmethod
    def from_hf_config(cls, hf: dict[str, Any], name: str) -> EncoderConfig:
        """Map a transformers config dict onto ours, refusing what we do not implement."""
        model_type = hf.get("model_type", "bert")
        if model_type not in MODEL_TYPES:
            raise CheckpointError(f"model_type {model_type!r} is not supported (supported: {supported_model_types()})")
        architecture = MODEL_TYPES[model_type]
        position_type = hf.get("position_embedding_type", "absolute")
        if position_type != "absolute":
            raise CheckpointError(f"position_embedding_type {position_type!r} is not supported (expected 'absolute')")
        if hf.get("sinusoidal_pos_embds"):
            raise CheckpointError("sinusoidal_pos_embds true is not supported (expected learned position embeddings)")
        sizes = _DISTILBERT_SIZES if architecture is Architecture.DISTILBERT else _SIZES
        missing = [key for key in sizes if key not in hf]
        if missing:
            raise CheckpointError(f"config.json is missing {', '.join(missing)}")
        values: dict[str, Any] = {ours: hf[theirs] for theirs, ours in sizes.items()}
        offset_positions = architecture in (Architecture.ROBERTA, Architecture.MPNET)
        pad_token_id = hf.get("pad_token_id")
        pad_token_id = (1 if offset_positions else 0) if pad_token_id is None else pad_token_id
        if offset_positions:
            # Positions start past the padding index, so fewer than the table's rows are usable.
            values["position_offset"] = pad_token_id + 1
            values["max_positions"] -= pad_token_id + 1
        if architecture is Architecture.MPNET:
            values["relative_buckets"] = hf.get("relative_attention_num_buckets", 32)
        if (
            architecture is Architecture.ELECTRA
            and hf.get("embedding_size", values["hidden_size"]) != values["hidden_size"]
        ):
            values["embedding_size"] = hf["embedding_size"]
        if architecture is Architecture.DISTILBERT:  # no token types; LayerNorm's eps fixed in its code
            values.update(type_vocab_size=0, layer_norm_eps=1e-12, hidden_act=hf.get("activation", "gelu"))
        else:
            has_types = architecture is not Architecture.MPNET
            values.update(
                type_vocab_size=hf.get("type_vocab_size", 2) if has_types else 0,
                layer_norm_eps=hf.get("layer_norm_eps", 1e-12),
                hidden_act=hf.get("hidden_act", "gelu"),
            )
        return cls(
            name=name,
            pad_token_id=pad_token_id,
            architecture=architecture,
            model_type=model_type,
            **values,
        )


def read_checkpoint_config(directory: Path, name: str | None = None) -> EncoderConfig:
    """The files a checkpoint directory needs, and its config.json read into ours (no torch needed,
    so the command line refuses an unsupported model before loading anything)."""
    for required in ("config.json", "model.safetensors", "tokenizer.json"):
        if not (directory / required).is_file():
            raise CheckpointError(f"{directory} has no {required}")
    try:
        hf_config = json.loads((directory / "config.json").read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{directory / 'config.json'} is not valid JSON: {error}") from error
    return EncoderConfig.from_hf_config(hf_config, name or directory.name)
