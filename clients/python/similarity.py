"""Cosine similarity: the normalised inner product says how alike two meanings are."""

from __future__ import annotations

import numpy as np


def similarity(a: np.ndarray, b: np.ndarray | None = None) -> np.ndarray:
    """(n, d) and (m, d) embeddings -> (n, m) cosine similarities in [-1, 1]; b defaults to a.
    For texts, use Client.similarity, which embeds them first."""
    a = np.atleast_2d(np.asarray(a, dtype=np.float32))
    b = a if b is None else np.atleast_2d(np.asarray(b, dtype=np.float32))
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"embeddings of different sizes: {a.shape[1]} and {b.shape[1]}")
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    matrix: np.ndarray = a @ b.T
    return matrix
