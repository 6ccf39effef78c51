"""A BERT-family Transformer encoder, written from the equations.

Per layer:  Q = XW_q, K = XW_k, V = XW_v                      (per head: d = hidden / heads)
            A = softmax(QKᵀ/√d + mask)                          the attention map, (S, S) per head
            heads = A V ;  X = LayerNorm(X + concat(heads) W_o)
            X = LayerNorm(X + GELU(X W_1) W_2)

Module names mirror BERT's checkpoint keys (see ``checkpoint.KEY_MAP``) so loading is a key map.
``MultiHeadSelfAttention`` computes attention from the equations, step by step, and returns the
attention maps; ``FusedSelfAttention`` computes the same thing as one fused ONNX ``Attention``
node per layer (``torch.onnx.ops.attention``), which is what the fast graph serves. Which one an
encoder uses is chosen once, when it is built: ``Encoder(config, attention=FusedSelfAttention)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import GELU_VARIANTS, EncoderConfig
from .packed_rows import texts_in_rows


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

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.num_heads, self.head_size = config.num_heads, config.head_size
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.output = nn.Linear(config.hidden_size, config.hidden_size)

    def split_heads(self, x: Tensor) -> Tensor:
        batch, seq, _ = x.shape
        return x.view(batch, seq, self.num_heads, self.head_size).transpose(1, 2)  # (B, H, S, d)

    def forward(self, x: Tensor, keep: Tensor) -> tuple[Tensor, Tensor | None]:
        q = self.split_heads(self.query(x))  # (B, H, S, d)
        k = self.split_heads(self.key(x))
        v = self.split_heads(self.value(x))
        context, maps = self.attend(q, k, v, keep)  # (B, H, S, d), (B, H, S, S) or None
        batch, _, seq, _ = context.shape
        heads = context.transpose(1, 2).reshape(batch, seq, -1)  # (B, S, H·d): heads concatenated
        return self.output(heads), maps

    def attend(self, q: Tensor, k: Tensor, v: Tensor, keep: Tensor) -> tuple[Tensor, Tensor | None]:
        """softmax(QKᵀ/√d + mask) V, step by step; returns the attention maps too."""
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_size)  # (B, H, S, S)
        scores = scores.masked_fill(~keep, float("-inf"))  # keep: (B, 1, S, S), the same for every head
        maps = scores.softmax(dim=-1)  # (B, H, S, S): each query's weights over the keys, summing to 1
        return maps @ v, maps  # (B, H, S, d)


class FusedSelfAttention(MultiHeadSelfAttention):
    """The same attention as one ONNX ``Attention`` node per layer: the fast graph's path."""

    def attend(self, q: Tensor, k: Tensor, v: Tensor, keep: Tensor) -> tuple[Tensor, Tensor | None]:
        context, _, _, _ = torch.onnx.ops.attention(q, k, v, keep)
        return context, None


class FusedSelfAttentionWithMaps(MultiHeadSelfAttention):
    """One ONNX ``Attention`` node whose 4th output (``qk_matmul_output_mode=3``) is the attention map."""

    def attend(self, q: Tensor, k: Tensor, v: Tensor, keep: Tensor) -> tuple[Tensor, Tensor | None]:
        context, _, _, maps = torch.onnx.ops.attention(q, k, v, keep, qk_matmul_output_mode=3)
        return context, maps


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

    def __init__(self, config: EncoderConfig, attention: type[MultiHeadSelfAttention]) -> None:
        super().__init__()
        self.attention = attention(config)
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = FeedForward(config)
        self.output_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: Tensor, keep: Tensor) -> tuple[Tensor, Tensor | None]:
        attended, maps = self.attention(x, keep)
        x = self.attention_norm(x + attended)
        x = self.output_norm(x + self.feed_forward(x))
        return x, maps


class Encoder(nn.Module):
    """Embeddings followed by ``num_layers`` encoder layers.

    ``forward`` returns the last hidden state (B, S, D) and, when the attention path yields them,
    the attention maps of every layer stacked as (B, layers, heads, S, S). ``attention_mask`` may
    pack several texts per row (see ``atento.service.packed_mask``).
    """

    def __init__(self, config: EncoderConfig, attention: type[MultiHeadSelfAttention] = MultiHeadSelfAttention):
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config)
        self.layers = nn.ModuleList(EncoderLayer(config, attention) for _ in range(config.num_layers))

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        # A full (B, 1, S, S) mask, not a (B, 1, 1, S) key mask: ONNX Runtime's CPU Attention kernel
        # rejects the latter, and packed rows need query-dependent masks anyway.
        keep, positions = texts_in_rows(attention_mask)
        x = self.embeddings(input_ids, token_type_ids, positions)
        all_maps: list[Tensor] = []
        for layer in self.layers:
            x, maps = layer(x, keep)
            if maps is not None:
                all_maps.append(maps)
        attention_maps = torch.stack(all_maps, dim=1) if all_maps else None  # (B, L, H, S, S)
        return x, attention_maps
