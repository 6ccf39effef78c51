"""Parity: our encoder against the reference implementations, and ONNX Runtime against our encoder.

Measured on real sentences of every length from one token to the model's maximum, in right-padded
batches of 16, 3 and 1. Differences are taken over real tokens only: the hidden state of a padding
position, and the attention row of a padding query, are never used and have no defined value.
"""

from __future__ import annotations

import logging
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from atento.service.pooling import l2_normalize, pool
from atento.service.tokenizer import Encoded, TextTokenizer, pad_batch

from .checkpoint import Checkpoint
from .model import Encoder


def quiet_references() -> None:
    """Offline, and without load reports or progress bars from the reference libraries."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    logging.getLogger("sentence_transformers").setLevel(logging.ERROR)


def parity_sentences() -> list[str]:
    """66 lines of Pride and Prejudice (public domain), from one word to past 512 tokens."""
    text = resources.files("atento.export").joinpath("data/parity_sentences.txt").read_text(encoding="utf-8")
    return [line for line in text.splitlines() if line.strip()]


def parity_batches(encoded: Sequence[Encoded], seed: int = 0) -> list[list[int]]:
    """Indices grouped in padded batches: the longest alone, the next in threes, the rest in sixteens.

    Short and long texts are shuffled together inside each size class so every batch is padded;
    the longest texts sit in small batches to bound the (B, layers, heads, S, S) attention tensor.
    """
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]), reverse=True)
    singles, rest = order[:3], order[3:]
    threes, sixteens = rest[:15], rest[15:]
    rng = random.Random(seed)
    rng.shuffle(threes)
    rng.shuffle(sixteens)
    batches = [[i] for i in singles]
    batches += [threes[i : i + 3] for i in range(0, len(threes), 3)]
    batches += [sixteens[i : i + 16] for i in range(0, len(sixteens), 16)]
    return batches


@dataclass(frozen=True)
class Batch:
    indices: list[int]
    inputs: dict[str, np.ndarray]  # (B, S) int64 each

    @property
    def real(self) -> np.ndarray:  # (B, S) bool: the positions that hold real tokens
        return self.inputs["attention_mask"].astype(bool)

    def torch_inputs(self, names: Sequence[str]) -> list[torch.Tensor]:
        return [torch.from_numpy(self.inputs[name]) for name in names]


def hidden_delta(a: np.ndarray, b: np.ndarray, real: np.ndarray) -> float:
    """max |a - b| over real tokens; a, b: (B, S, D)."""
    return float(np.abs(a - b)[real].max())


def attention_delta(a: np.ndarray, b: np.ndarray, real: np.ndarray) -> float:
    """max |a - b| over real query rows (all key columns); a, b: (B, L, H, S, S)."""
    rows = real[:, None, None, :]  # (B, 1, 1, S): broadcast over layers and heads
    return float(np.abs(a - b).max(axis=-1)[np.broadcast_to(rows, a.shape[:-1])].max())


class ParityRun:
    """Tokenises once, then measures each comparison over the same batches."""

    def __init__(self, checkpoint: Checkpoint, encoder: Encoder, texts: Sequence[str]) -> None:
        self.checkpoint, self.encoder, self.texts = checkpoint, encoder, list(texts)
        config = checkpoint.config
        tokenizer = TextTokenizer(checkpoint.tokenizer_file, config.max_positions)
        encoded = tokenizer.encode_batch(self.texts)
        self.min_tokens = min(len(item) for item in encoded)
        self.max_tokens = max(len(item) for item in encoded)
        self.names = ["input_ids", "attention_mask"] + (["token_type_ids"] if config.has_token_types else [])
        self.batches = [
            Batch(indices, {k: v for k, v in pad_batch([encoded[i] for i in indices]).items() if k in self.names})
            for indices in parity_batches(encoded)
        ]
        self._ours = [self._run_ours(batch) for batch in self.batches]

    def _run_ours(self, batch: Batch) -> tuple[np.ndarray, np.ndarray]:
        with torch.no_grad():
            hidden, attentions = self.encoder(*batch.torch_inputs(self.names))
        assert attentions is not None
        return hidden.numpy(), attentions.numpy()

    def against_transformers(self) -> dict[str, float]:
        quiet_references()
        from transformers import BertModel

        reference = BertModel.from_pretrained(str(self.checkpoint.directory), attn_implementation="eager").eval()
        hidden, attention = 0.0, 0.0
        for batch, (our_hidden, our_attention) in zip(self.batches, self._ours, strict=True):
            with torch.no_grad():
                out = reference(**{k: torch.from_numpy(v) for k, v in batch.inputs.items()}, output_attentions=True)
            hidden = max(hidden, hidden_delta(out.last_hidden_state.numpy(), our_hidden, batch.real))
            theirs = torch.stack(out.attentions, dim=1).numpy()  # (B, L, H, S, S)
            attention = max(attention, attention_delta(theirs, our_attention, batch.real))
        return {"hidden_max_abs": hidden, "attention_max_abs": attention}

    def against_sentence_transformers(self) -> dict[str, float]:
        quiet_references()
        from sentence_transformers import SentenceTransformer

        reference = SentenceTransformer(str(self.checkpoint.directory), device="cpu")
        reference.max_seq_length = self.checkpoint.config.max_positions  # compare at the model's maximum
        theirs = reference.encode(self.texts, batch_size=16, normalize_embeddings=True, convert_to_numpy=True)
        ours = np.zeros_like(theirs)
        for batch, (our_hidden, _) in zip(self.batches, self._ours, strict=True):
            ours[batch.indices] = l2_normalize(pool(our_hidden, batch.inputs["attention_mask"], "mean"))
        cosines = np.sum(ours * l2_normalize(theirs), axis=1)
        return {"min_cosine": float(cosines.min()), "mean_cosine": float(cosines.mean())}

    def onnx_outputs(self, graph: Path) -> Iterator[tuple[Batch, list[np.ndarray], tuple[np.ndarray, np.ndarray]]]:
        options = ort.SessionOptions()
        options.log_severity_level = 3  # see service.runtime: the attention graph's shape warning
        session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        for batch, ours in zip(self.batches, self._ours, strict=True):
            yield batch, session.run(None, batch.inputs), ours

    def onnx_embeddings(self, graph: Path) -> np.ndarray:
        """Mean-pooled, normalised embeddings of every text from an ONNX graph, in text order."""
        embeddings = np.zeros((len(self.texts), self.checkpoint.config.hidden_size), dtype=np.float32)
        for batch, outputs, _ in self.onnx_outputs(graph):
            embeddings[batch.indices] = l2_normalize(pool(outputs[0], batch.inputs["attention_mask"], "mean"))
        return embeddings

    def quantized_against_full(self, full: Path, quantized: Path) -> dict[str, float]:
        """Cosine of the int8 graph's embeddings to the fp32 graph's, text by text."""
        cosines = np.sum(self.onnx_embeddings(full) * self.onnx_embeddings(quantized), axis=1)
        return {"min_cosine": float(cosines.min()), "mean_cosine": float(cosines.mean())}

    def onnx_against_torch(self, graph: Path) -> dict[str, float]:
        figures: dict[str, float] = {}
        for batch, outputs, (our_hidden, our_attention) in self.onnx_outputs(graph):
            delta = hidden_delta(outputs[0], our_hidden, batch.real)
            figures["hidden_max_abs"] = max(figures.get("hidden_max_abs", 0.0), delta)
            if len(outputs) > 1:
                delta = attention_delta(outputs[1], our_attention, batch.real)
                figures["attention_max_abs"] = max(figures.get("attention_max_abs", 0.0), delta)
        return figures
