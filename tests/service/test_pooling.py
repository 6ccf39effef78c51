"""Pooling in process: the batched and the per-text paths agree; padding never counts."""

from __future__ import annotations

import numpy as np
import pytest
from atento.service.pooling import DenseLayer, SentenceHead, l2_normalize, pool, pool_text, pool_tokens

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
    with pytest.raises(ValueError, match="unknown pooling 'median'"):
        pool_tokens(np.zeros((1, 1), dtype=np.float32), "median")


def test_every_mode_with_and_without_the_prompt() -> None:
    hidden = np.random.default_rng(2).standard_normal((5, 3), dtype=np.float32)
    kept = hidden[2:]  # the first two tokens are the prompt's
    weights = np.arange(3, 6, dtype=np.float32)  # the remaining tokens keep their 1-based positions
    expected = {
        "cls": hidden[2],
        "mean": kept.mean(axis=0),
        "max": kept.max(axis=0),
        "mean_sqrt_len_tokens": kept.sum(axis=0) / np.sqrt(3),
        "weightedmean": (weights[:, None] * kept).sum(axis=0) / weights.sum(),
        "lasttoken": hidden[4],
    }
    for mode, vector in expected.items():
        np.testing.assert_allclose(pool_tokens(hidden, mode, skip=2), vector, rtol=1e-5, err_msg=mode)
    np.testing.assert_allclose(pool_tokens(hidden, "weightedmean"), np.arange(1, 6) @ hidden / 15, rtol=1e-5)
    np.testing.assert_allclose(pool_tokens(hidden, "cls"), hidden[0])
    assert not pool_tokens(hidden, "mean", skip=5).any()  # all prompt: zeros, as sentence-transformers


def test_dense_modules_then_normalize_then_matryoshka() -> None:
    x = np.array([1.0, -2.0], dtype=np.float32)
    weight = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=np.float32)  # (3, 2)
    bias = np.array([0.5, 0.5, 0.5], dtype=np.float32)
    pre = weight @ x + bias  # [1.5, -1.5, -0.5]
    expected = {
        "identity": pre,
        "tanh": np.tanh(pre),
        "relu": np.maximum(pre, 0),
        "sigmoid": 1 / (1 + np.exp(-pre)),
        "silu": pre / (1 + np.exp(-pre)),
        "gelu": np.array([1.39978921, -0.10021080, -0.15426877]),  # torch.nn.GELU()(pre)
    }
    for name, vector in expected.items():
        np.testing.assert_allclose(DenseLayer(weight, bias, name)(x), vector, rtol=1e-5, err_msg=name)
    head = SentenceHead("cls", include_prompt=True, dense=(DenseLayer(weight, bias, "identity"),))
    hidden = x[None, :]  # (1 token, 2)
    full = head.embed(hidden, normalize=True)
    np.testing.assert_allclose(full, pre / np.linalg.norm(pre), rtol=1e-6)
    np.testing.assert_allclose(head.embed(hidden, normalize=True, dimensions=2), [0.70710677, -0.70710677], rtol=1e-6)
    np.testing.assert_allclose(head.embed(hidden, dimensions=2), pre[:2])  # not normalised: cut only
