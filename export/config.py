"""The encoder's hyper-parameters: one frozen object, read from a BERT ``config.json``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The feed-forward activations a BERT-family checkpoint may name, all GELU variants.
# "gelu" is the exact erf form; the others are the tanh approximation.
GELU_VARIANTS = {"gelu": "none", "gelu_new": "tanh", "gelu_pytorch_tanh": "tanh"}


class CheckpointError(ValueError):
    """A checkpoint that is not BERT-shaped; the message names the key or value at fault."""


@dataclass(frozen=True)
class EncoderConfig:
    name: str
    vocab_size: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    pad_token_id: int = 0

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
        return self.type_vocab_size > 0

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
        """Map a transformers ``BertConfig`` dict onto ours, refusing what we do not implement."""
        model_type = hf.get("model_type", "bert")
        if model_type != "bert":
            raise CheckpointError(f"model_type {model_type!r} is not supported (expected 'bert')")
        position_type = hf.get("position_embedding_type", "absolute")
        if position_type != "absolute":
            raise CheckpointError(f"position_embedding_type {position_type!r} is not supported (expected 'absolute')")
        required = {
            "vocab_size": "vocab_size",
            "hidden_size": "hidden_size",
            "num_hidden_layers": "num_layers",
            "num_attention_heads": "num_heads",
            "intermediate_size": "intermediate_size",
            "max_position_embeddings": "max_positions",
        }
        missing = [key for key in required if key not in hf]
        if missing:
            raise CheckpointError(f"config.json is missing {', '.join(missing)}")
        values: dict[str, Any] = {ours: hf[theirs] for theirs, ours in required.items()}
        return cls(
            name=name,
            type_vocab_size=hf.get("type_vocab_size", 2),
            layer_norm_eps=hf.get("layer_norm_eps", 1e-12),
            hidden_act=hf.get("hidden_act", "gelu"),
            pad_token_id=hf.get("pad_token_id", 0),
            **values,
        )
