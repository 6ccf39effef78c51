"""A BERT-family Transformer encoder, written from the equations.

Per layer:  Q = XW_q, K = XW_k, V = XW_v
            A = softmax(QKᵀ/√d_k + mask) ,  heads = A V
            X = LayerNorm(X + concat(heads) W_o)
            X = LayerNorm(X + GELU(X W_1) W_2)

Module names mirror BERT's checkpoint keys (see ``checkpoint.KEY_MAP``) so loading is a key map.
How attention is computed is chosen once, in ``__init__``: the plain equations (eager reference),
or ``torch.onnx.ops.attention``, which exports as ONE fused ONNX ``Attention`` node per layer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import GELU_VARIANTS, EncoderConfig

# (q, k, v, keep) -> (context, probabilities or None); q, k, v: (B, H, S, d), keep: (B, 1, S, S) bool
AttentionKernel = Callable[[Tensor, Tensor, Tensor, Tensor], tuple[Tensor, Tensor | None]]
KernelName = Literal["equations", "fused", "fused_with_probs"]


def attention_equations(q: Tensor, k: Tensor, v: Tensor, keep: Tensor) -> tuple[Tensor, Tensor | None]:
    """softmax(QKᵀ/√d + mask) V, step by step; returns the probabilities too."""
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])  # (B, H, S, S)
    scores = scores.masked_fill(~keep, float("-inf"))
    probs = scores.softmax(dim=-1)  # (B, H, S, S), rows sum to 1 over keys
    return probs @ v, probs  # (B, H, S, d)


def attention_fused(q: Tensor, k: Tensor, v: Tensor, keep: Tensor) -> tuple[Tensor, Tensor | None]:
    """One ONNX ``Attention`` node without the probabilities output (the fast serving path)."""
    context, _, _, _ = torch.onnx.ops.attention(q, k, v, keep)
    return context, None


def attention_fused_with_probs(q: Tensor, k: Tensor, v: Tensor, keep: Tensor) -> tuple[Tensor, Tensor | None]:
    """One ONNX ``Attention`` node whose 4th output (mode 3) is the softmax probabilities."""
    context, _, _, probs = torch.onnx.ops.attention(q, k, v, keep, qk_matmul_output_mode=3)
    return context, probs


KERNELS: dict[str, AttentionKernel] = {
    "equations": attention_equations,
    "fused": attention_fused,
    "fused_with_probs": attention_fused_with_probs,
}


class Embeddings(nn.Module):
    """token + position (+ token type) embeddings, then LayerNorm."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(config.vocab_size, config.hidden_size)
        self.position_embeddings = nn.Embedding(config.max_positions, config.hidden_size)
        self.token_type_embeddings = (
            nn.Embedding(config.type_vocab_size, config.hidden_size) if config.has_token_types else None
        )
        self.LayerNorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None, positions: Tensor) -> Tensor:
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions)  # (B, S, D)
        if self.token_type_embeddings is not None:
            types = token_type_ids if token_type_ids is not None else torch.zeros_like(input_ids)
            x = x + self.token_type_embeddings(types)
        return self.LayerNorm(x)


class MultiHeadSelfAttention(nn.Module):
    """Q/K/V projections, per-head scaled dot-product attention, heads concatenated and projected."""

    def __init__(self, config: EncoderConfig, kernel: AttentionKernel) -> None:
        super().__init__()
        self.num_heads, self.head_size = config.num_heads, config.head_size
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.output = nn.Linear(config.hidden_size, config.hidden_size)
        self.kernel = kernel

    def split_heads(self, x: Tensor) -> Tensor:
        batch, seq, _ = x.shape
        return x.view(batch, seq, self.num_heads, self.head_size).transpose(1, 2)  # (B, H, S, d)

    def forward(self, x: Tensor, keep: Tensor) -> tuple[Tensor, Tensor | None]:
        q, k, v = self.split_heads(self.query(x)), self.split_heads(self.key(x)), self.split_heads(self.value(x))
        context, probs = self.kernel(q, k, v, keep)  # (B, H, S, d), (B, H, S, S)
        batch, _, seq, _ = context.shape
        heads = context.transpose(1, 2).reshape(batch, seq, -1)  # (B, S, H·d): heads concatenated
        return self.output(heads), probs


class FeedForward(nn.Module):
    """Position-wise GELU(X W_1) W_2."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.intermediate = nn.Linear(config.hidden_size, config.intermediate_size)
        self.output = nn.Linear(config.intermediate_size, config.hidden_size)
        self.approximate = GELU_VARIANTS[config.hidden_act]

    def forward(self, x: Tensor) -> Tensor:
        return self.output(F.gelu(self.intermediate(x), approximate=self.approximate))


class EncoderLayer(nn.Module):
    """Post-norm Transformer block, as in BERT."""

    def __init__(self, config: EncoderConfig, kernel: AttentionKernel) -> None:
        super().__init__()
        self.attention = MultiHeadSelfAttention(config, kernel)
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = FeedForward(config)
        self.output_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: Tensor, keep: Tensor) -> tuple[Tensor, Tensor | None]:
        attended, probs = self.attention(x, keep)
        x = self.attention_norm(x + attended)
        x = self.output_norm(x + self.feed_forward(x))
        return x, probs


def texts_in_rows(attention_mask: Tensor) -> tuple[Tensor, Tensor]:
    """Which tokens see each other, and each token's position within its own text.

    ``attention_mask`` (B, S): 0 marks padding; tokens that share a positive value are one text.
    A plain 0/1 mask is one text per row. Larger values pack several texts into one row (the
    service does, to cut padding): each text then attends only to itself and counts its positions
    from 0, so it gets exactly the states it would get alone, wherever it sits and whatever pads it.
    Padding attends to padding only, which keeps its (unused) states finite.
    """
    same = attention_mask[:, :, None] == attention_mask[:, None, :]  # (B, S, S): same text
    seq = attention_mask.shape[1]
    earlier = torch.ones(seq, seq, dtype=torch.bool, device=attention_mask.device).tril(-1)  # (S, S): key < query
    positions = (same & earlier).sum(dim=-1)  # (B, S): tokens of the same text before this one
    return same[:, None], positions  # (B, 1, S, S) for every head, (B, S)


class Encoder(nn.Module):
    """Embeddings followed by ``num_layers`` encoder layers.

    ``forward`` returns the last hidden state (B, S, D) and, when the kernel yields them, the
    attention probabilities of every layer stacked as (B, layers, heads, S, S).
    """

    def __init__(self, config: EncoderConfig, kernel: KernelName = "equations") -> None:
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList(EncoderLayer(config, KERNELS[kernel]) for _ in range(config.num_layers))

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        # A full (B, 1, S, S) mask, not a (B, 1, 1, S) key mask: ONNX Runtime's CPU Attention kernel
        # rejects the latter, and packed rows need query-dependent masks anyway.
        keep, positions = texts_in_rows(attention_mask)
        x = self.embeddings(input_ids, token_type_ids, positions)
        all_probs: list[Tensor] = []
        for layer in self.layers:
            x, probs = layer(x, keep)
            if probs is not None:
                all_probs.append(probs)
        attentions = torch.stack(all_probs, dim=1) if all_probs else None  # (B, L, H, S, S)
        return x, attentions
