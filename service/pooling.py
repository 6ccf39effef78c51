"""Per-token hidden states -> one vector per text."""

from __future__ import annotations

import numpy as np

POOLINGS = ("mean", "cls")


def pool(hidden: np.ndarray, mask: np.ndarray, method: str) -> np.ndarray:
    """hidden (B, S, D), mask (B, S) of 0/1 -> (B, D) float32.

    mean: the average over real tokens (padding excluded), as sentence-transformers does;
    cls: the first token's state.
    """
    if method == "cls":
        first: np.ndarray = np.ascontiguousarray(hidden[:, 0, :], dtype=np.float32)
        return first
    if method != "mean":
        raise ValueError(f"unknown pooling {method!r} (expected one of {POOLINGS})")
    weights = mask.astype(np.float32)[:, :, None]  # (B, S, 1)
    summed = np.einsum("bsd,bso->bd", hidden, weights)  # (B, D)
    counts = np.maximum(weights.sum(axis=1), 1e-9)  # (B, 1)
    mean: np.ndarray = (summed / counts).astype(np.float32, copy=False)
    return mean


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    """Unit length along the last axis; a zero vector stays zero."""
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    unit: np.ndarray = (vectors / np.maximum(norms, 1e-12)).astype(np.float32, copy=False)
    return unit


def pool_text(hidden: np.ndarray, method: str, normalize: bool) -> np.ndarray:
    """One text's (tokens, D) states, padding already cut away -> (D,) float32.

    The per-request path: a few microseconds, where the batched ``pool`` costs a hundred.
    """
    vector = hidden.mean(axis=0, dtype=np.float32) if method == "mean" else hidden[0]
    if normalize:
        vector = vector / max(float(np.sqrt(vector @ vector)), 1e-12)
    result: np.ndarray = vector.astype(np.float32, copy=False)
    return result
