"""The Transformer encoder of BERT, RoBERTa, XLM-R, DistilBERT, ELECTRA and MPNet, from the equations.

Per layer:  Q = XW_q, K = XW_k, V = XW_v                      (per head: d = hidden / heads)
            A = softmax(QKᵀ/√d + M)                             the attention map, (S, S) per head
            heads = A V ;  X = LayerNorm(X + concat(heads) W_o)
            X = LayerNorm(X + GELU(X W_1) W_2)
Embeddings: X = LayerNorm(E_token + E_position (+ E_type)), then (ELECTRA) projected to the hidden size.

What the architectures do differently is chosen once, in ``__init__``, from ``EncoderConfig``:
- positions: text index + ``position_offset`` (RoBERTa, MPNet: past the padding index);
- token types: a table when the checkpoint has one (RoBERTa's single row is a constant);
- ELECTRA: ``Embeddings.project`` maps the embeddings' own width to the hidden size;
- the mask M: BERT-like models only mask (a boolean ``keep``); MPNet adds a bucketed relative
  position bias, one table shared by every layer, so M is a float (B, H, S, S) (bias, -inf where masked).

Module names are ours; ``checkpoint.KEY_MAPS`` maps each architecture's checkpoint keys onto them.
``MultiHeadSelfAttention`` computes attention from the equations, step by step, and returns the
attention maps; ``FusedSelfAttention`` computes the same thing as one fused ONNX ``Attention``
node per layer (``torch.onnx.ops.attention``, which takes a boolean or an additive float mask),
which is what the fast graph serves. Which one an encoder uses is chosen once, when it is built:
``Encoder(config, attention=FusedSelfAttention)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import GELU_VARIANTS, EncoderConfig
from .packed_rows import texts_in_rows


class Embeddings(nn.Module):
    """token + position (+ token type) embeddings, then LayerNorm (then ELECTRA's projection)."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        width = config.embedding_width
        self.word_embeddings = nn.Embedding(config.vocab_size, width)
        self.position_embeddings = nn.Embedding(config.position_table_size, width)
        self.token_type_embeddings = nn.Embedding(config.type_vocab_size, width) if config.type_vocab_size else None
        self.LayerNorm = nn.LayerNorm(width, eps=config.layer_norm_eps)
        self.project: nn.Module = nn.Linear(width, config.hidden_size) if width != config.hidden_size else nn.Identity()

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None, positions: Tensor) -> Tensor:
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions)  # (B, S, E)
        if self.token_type_embeddings is not None:
            types = token_type_ids if token_type_ids is not None else torch.zeros_like(input_ids)
            x = x + self.token_type_embeddings(types)
        return self.project(self.LayerNorm(x))  # (B, S, D)


class PaddingMask(nn.Module):
    """BERT-like models: the mask only says which keys each query may see; (B, 1, S, S) bool."""

    def forward(self, keep: Tensor, positions: Tensor) -> Tensor:
        return keep


class RelativePositionBias(nn.Module):
    """MPNet: a learned bias per head and bucket of (key position - query position), shared by every
    layer, added to the attention scores; masked pairs get -inf. Returns (B, H, S, S) float.

    Positions are each token's index within its own text, so a packed text gets the bias it gets alone.
    Buckets as transformers' ``MPNetEncoder.relative_position_bucket``: half for each direction, the
    first half of those exact distances, the rest logarithmic up to ``max_distance``.
    """

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.num_buckets, self.max_distance = config.relative_buckets, config.relative_max_distance
        self.relative_attention_bias = nn.Embedding(config.relative_buckets, config.num_heads)

    def bucket(self, relative: Tensor) -> Tensor:
        n = -relative  # query position - key position
        half = self.num_buckets // 2
        direction = (n < 0).to(torch.long) * half  # keys after the query use the upper half
        n = n.abs()
        max_exact = half // 2
        # clamp: log(0) would be cast to an integer before torch.where drops it; results are unchanged
        scaled = torch.log(n.clamp(min=max_exact).float() / max_exact) / math.log(self.max_distance / max_exact)
        large = (max_exact + (scaled * (half - max_exact)).to(torch.long)).clamp(max=half - 1)
        return direction + torch.where(n < max_exact, n, large)

    def forward(self, keep: Tensor, positions: Tensor) -> Tensor:
        relative = positions[:, None, :] - positions[:, :, None]  # (B, S, S): key - query
        bias = self.relative_attention_bias(self.bucket(relative))  # (B, S, S, H)
        bias = bias.permute(0, 3, 1, 2)  # (B, H, S, S)
        return bias.masked_fill(~keep, float("-inf"))


def keep_only(scores: Tensor, keep: Tensor) -> Tensor:
    """scores where the boolean mask keeps the key, -inf elsewhere; keep: (B, 1, S, S)."""
    return scores.masked_fill(~keep, float("-inf"))


def add_bias(scores: Tensor, bias: Tensor) -> Tensor:
    """scores plus an additive float mask; bias: (B, H, S, S), -inf where masked."""
    return scores + bias


class MultiHeadSelfAttention(nn.Module):
    """Q/K/V projections, per-head scaled dot-product attention, heads concatenated and projected."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.num_heads, self.head_size = config.num_heads, config.head_size
        self.apply_mask = add_bias if config.relative_buckets else keep_only
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.output = nn.Linear(config.hidden_size, config.hidden_size)

    def split_heads(self, x: Tensor) -> Tensor:
        batch, seq, _ = x.shape
        return x.view(batch, seq, self.num_heads, self.head_size).transpose(1, 2)  # (B, H, S, d)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor | None]:
        q = self.split_heads(self.query(x))  # (B, H, S, d)
        k = self.split_heads(self.key(x))
        v = self.split_heads(self.value(x))
        context, maps = self.attend(q, k, v, mask)  # (B, H, S, d), (B, H, S, S) or None
        batch, _, seq, _ = context.shape
        heads = context.transpose(1, 2).reshape(batch, seq, -1)  # (B, S, H·d): heads concatenated
        return self.output(heads), maps

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> tuple[Tensor, Tensor | None]:
        """softmax(QKᵀ/√d + M) V, step by step; returns the attention maps too."""
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_size)  # (B, H, S, S)
        scores = self.apply_mask(scores, mask)  # mask: (B, 1, S, S) bool or (B, H, S, S) float
        maps = scores.softmax(dim=-1)  # (B, H, S, S): each query's weights over the keys, summing to 1
        return maps @ v, maps  # (B, H, S, d)


class FusedSelfAttention(MultiHeadSelfAttention):
    """The same attention as one ONNX ``Attention`` node per layer: the fast graph's path."""

    def attend(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor) -> tuple[Tensor, Tensor | None]:
        context, _, _, _ = torch.onnx.ops.attention(q, k, v, mask)
        return context, None


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
    """Post-norm Transformer block, as in BERT (and every architecture here)."""

    def __init__(self, config: EncoderConfig, attention: type[MultiHeadSelfAttention]) -> None:
        super().__init__()
        self.attention = attention(config)
        self.attention_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.feed_forward = FeedForward(config)
        self.output_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor | None]:
        attended, maps = self.attention(x, mask)
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
        self.attention_mask: nn.Module = RelativePositionBias(config) if config.relative_buckets else PaddingMask()
        self.layers = nn.ModuleList(EncoderLayer(config, attention) for _ in range(config.num_layers))

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        # A full (B, 1, S, S) mask, not a (B, 1, 1, S) key mask: ONNX Runtime's CPU Attention kernel
        # rejects the latter, and packed rows need query-dependent masks anyway.
        config = self.config
        keep, positions = texts_in_rows(attention_mask, config.position_offset, config.padding_position)
        x = self.embeddings(input_ids, token_type_ids, positions)
        mask = self.attention_mask(keep, positions)  # the same for every layer
        all_maps: list[Tensor] = []
        for layer in self.layers:
            x, maps = layer(x, mask)
            if maps is not None:
                all_maps.append(maps)
        attention_maps = torch.stack(all_maps, dim=1) if all_maps else None  # (B, L, H, S, S)
        return x, attention_maps
