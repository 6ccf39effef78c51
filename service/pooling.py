"""Per-token hidden states -> one vector per text, as the model's sentence-transformers modules make it.

After the ONNX graph, per text and with numpy only: Pooling (every mode sentence-transformers has,
``include_prompt`` honoured), the Dense modules with their activation, Normalize when declared,
then the request's Matryoshka truncation (``dimensions``), renormalised when the vector is normalised,
as ``SentenceTransformer.encode(truncate_dim=..., normalize_embeddings=...)`` does.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .bundle import POOLINGS, Bundle, BundleError, DenseSpec

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _gelu(x: np.ndarray) -> np.ndarray:
    """torch.nn.GELU(): the exact erf form."""
    result: np.ndarray = (0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))).astype(np.float32)
    return result


# torch.nn's activation modules a Dense may name, in numpy (float32 in, float32 out).
ACTIVATION_FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "identity": lambda x: x,
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, np.float32(0)),
    "sigmoid": lambda x: (1.0 / (1.0 + np.exp(-x))).astype(np.float32),
    "silu": lambda x: (x / (1.0 + np.exp(-x))).astype(np.float32),
    "gelu": _gelu,
}


def pool(hidden: np.ndarray, mask: np.ndarray, method: str) -> np.ndarray:
    """Batched mean or cls: hidden (B, S, D), mask (B, S) of 0/1 -> (B, D) float32 (padding excluded)."""
    if method == "cls":
        first: np.ndarray = np.ascontiguousarray(hidden[:, 0, :], dtype=np.float32)
        return first
    if method != "mean":
        raise ValueError(f"unknown pooling {method!r} (the batched path knows 'mean' and 'cls')")
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


def pool_tokens(hidden: np.ndarray, method: str, skip: int = 0) -> np.ndarray:
    """One text's (tokens, D) states, padding already cut away -> (D,) float32.

    ``skip``: leading tokens left out (the prompt, when the model's Pooling has include_prompt
    false); weightedmean keeps the remaining tokens' original 1-based position weights, as
    sentence-transformers does. A text whose tokens are all skipped pools like theirs: to zeros.
    """
    count = len(hidden)
    kept = hidden[skip:]  # (tokens - skip, D)
    if method == "cls":
        vector = hidden[skip] if skip < count else hidden[0]
    elif method == "lasttoken":
        vector = hidden[count - 1] if skip < count else np.zeros_like(hidden[0])
    elif not len(kept):
        vector = np.zeros_like(hidden[0])
    elif method == "mean":
        vector = kept.mean(axis=0, dtype=np.float32)
    elif method == "mean_sqrt_len_tokens":
        vector = kept.sum(axis=0, dtype=np.float32) / np.float32(math.sqrt(len(kept)))
    elif method == "max":
        vector = kept.max(axis=0)
    elif method == "weightedmean":
        weights = np.arange(skip + 1, count + 1, dtype=np.float32)  # (tokens - skip,)
        vector = (weights @ kept) / weights.sum()
    else:
        raise ValueError(f"unknown pooling {method!r} (expected one of {POOLINGS})")
    result: np.ndarray = np.asarray(vector, dtype=np.float32)
    return result


def normalize_vector(vector: np.ndarray) -> np.ndarray:
    unit: np.ndarray = (vector / max(float(np.sqrt(vector @ vector)), 1e-12)).astype(np.float32, copy=False)
    return unit


def pool_text(hidden: np.ndarray, method: str, normalize: bool) -> np.ndarray:
    """One text's pooled vector without Dense modules or prompt: the plain per-text path."""
    vector = pool_tokens(hidden, method)
    return normalize_vector(vector) if normalize else vector


def _array(directory: Path, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """A float32 .npy file of the bundle with the shape the manifest says, or BundleError naming it."""
    try:
        array = np.load(directory / name, allow_pickle=False)
    except (OSError, ValueError) as error:
        raise BundleError(f"bundle file {name} is not a readable .npy array: {error}") from error
    if array.shape != shape or array.dtype != np.float32:
        raise BundleError(f"bundle file {name} holds {array.dtype} {array.shape}, expected float32 {shape}")
    result: np.ndarray = array
    return result


@dataclass(frozen=True)
class DenseLayer:
    weight: np.ndarray  # (out, in) float32
    bias: np.ndarray | None  # (out,) float32
    activation: str

    @classmethod
    def load(cls, directory: Path, spec: DenseSpec) -> DenseLayer:
        weight = _array(directory, spec.weight_file, (spec.out_features, spec.in_features))
        bias = None if spec.bias_file is None else _array(directory, spec.bias_file, (spec.out_features,))
        return cls(weight, bias, spec.activation)

    def __call__(self, vector: np.ndarray) -> np.ndarray:
        out = self.weight @ vector  # (out,)
        if self.bias is not None:
            out = out + self.bias
        result: np.ndarray = ACTIVATION_FUNCTIONS[self.activation](out.astype(np.float32, copy=False))
        return result


@dataclass(frozen=True)
class SentenceHead:
    """The modules after the Transformer: Pooling, Dense..., the model's Normalize."""

    pooling: str
    include_prompt: bool
    dense: Sequence[DenseLayer] = ()

    @classmethod
    def from_bundle(cls, bundle: Bundle) -> SentenceHead:
        model = bundle.model
        layers = tuple(DenseLayer.load(bundle.directory, spec) for spec in model.dense)
        return cls(model.pooling, model.include_prompt, layers)

    def embed(
        self,
        hidden: np.ndarray,
        *,
        pooling: str | None = None,
        prompt_tokens: int = 0,
        normalize: bool = False,
        dimensions: int | None = None,
    ) -> np.ndarray:
        """(tokens, D) -> the sentence embedding; ``pooling`` None is the model's own."""
        vector = pool_tokens(hidden, pooling or self.pooling, 0 if self.include_prompt else prompt_tokens)
        for layer in self.dense:
            vector = layer(vector)
        if normalize:
            vector = normalize_vector(vector)
        if dimensions is not None and dimensions < len(vector):
            vector = vector[:dimensions]  # Matryoshka: the leading dimensions carry the most
            if normalize:
                vector = normalize_vector(vector)
        return vector
