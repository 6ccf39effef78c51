"""Pooling in process: the batched and the per-text paths agree; padding never counts."""

from __future__ import annotations

import numpy as np
import pytest
from atento.service.pooling import l2_normalize, pool, pool_text

pytestmark = pytest.mark.fast


def test_mean_pooling_ignores_padding_and_agrees_with_the_per_text_path() -> None:
    hidden = np.random.default_rng(1).standard_normal((2, 5, 3), dtype=np.float32)
    mask = np.array([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    pooled = pool(hidden, mask, "mean")
    np.testing.assert_allclose(pooled[0], hidden[0, :3].mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(pooled[1], pool_text(hidden[1], "mean", normalize=False), rtol=1e-6)
    np.testing.assert_allclose(pool(hidden, mask, "cls"), hidden[:, 0])


def test_normalising_gives_unit_vectors_and_keeps_zero_at_zero() -> None:
    vectors = l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]], dtype=np.float32))
    np.testing.assert_allclose(vectors, [[0.6, 0.8], [0.0, 0.0]])
    np.testing.assert_allclose(pool_text(np.array([[3.0, 4.0]], dtype=np.float32), "cls", normalize=True), [0.6, 0.8])


def test_an_unknown_pooling_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown pooling 'max'"):
        pool(np.zeros((1, 1, 1), dtype=np.float32), np.ones((1, 1)), "max")
