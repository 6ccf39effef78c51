"""The packed attention mask, read in torch: which tokens see each other, and where each one sits.

The convention is ``atento.service.packed_mask``: the service writes it when it packs several texts
into a row, and the exported graphs read it here, as the first thing the encoder does.
"""

from __future__ import annotations

import torch
from atento.service.packed_mask import PADDING
from torch import Tensor


def texts_in_rows(attention_mask: Tensor, first: int = 0, padding: int = 0) -> tuple[Tensor, Tensor]:
    """(B, S) packed mask -> (keep (B, 1, S, S) bool, positions (B, S) int64).

    ``keep[b, 0, q, k]``: query ``q`` may attend to key ``k``, i.e. both carry the same mask value,
    so each text attends only to itself (and padding only to padding, which keeps its unused states
    finite). ``positions``: each token's index within its own text plus ``first`` (RoBERTa counts
    from padding_idx + 1), so a text gets the same position embeddings wherever it sits in the row;
    padding gets ``padding``.
    """
    same_text = attention_mask[:, :, None] == attention_mask[:, None, :]  # (B, S, S)
    seq = attention_mask.shape[1]
    earlier = torch.ones(seq, seq, dtype=torch.bool, device=attention_mask.device).tril(-1)  # (S, S): key < query
    positions = (same_text & earlier).sum(dim=-1) + first  # (B, S): tokens of the same text before this one
    positions = positions.masked_fill(attention_mask == PADDING, padding)
    return same_text[:, None], positions  # (B, 1, S, S) for every head, (B, S)
