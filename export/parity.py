"""Parity: our encoder against the reference implementations, and ONNX Runtime against our encoder.

Measured on real sentences of every length from one token to the model's maximum, in right-padded
batches of 16, 3 and 1. Differences are taken over real tokens only: the hidden state of a padding
position, and the attention row of a padding query, are never used and have no defined value.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from atento.service.packing import pad_batch
from atento.service.pooling import DenseLayer, SentenceHead, l2_normalize, pool
from atento.service.tokenizer import Encoded, TextTokenizer

from .checkpoint import Checkpoint
from .model import Encoder
from .sentence_transformers import SentenceSpec
from .sentences import parity_batches


def quiet_references() -> None:
    """Offline, and without load reports or progress bars from the reference libraries."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    logging.getLogger("sentence_transformers").setLevel(logging.ERROR)


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
        from transformers import AutoModel

        # The checkpoint's own class (BertModel, RobertaModel, MPNetModel, ...), from its model_type;
        # eager attention, the only implementation that returns the attention maps.
        reference = AutoModel.from_pretrained(str(self.checkpoint.directory), attn_implementation="eager").eval()
        hidden, attention = 0.0, 0.0
        for batch, (our_hidden, our_attention) in zip(self.batches, self._ours, strict=True):
            with torch.no_grad():
                out = reference(**{k: torch.from_numpy(v) for k, v in batch.inputs.items()}, output_attentions=True)
            hidden = max(hidden, hidden_delta(out.last_hidden_state.numpy(), our_hidden, batch.real))
            theirs = torch.stack(out.attentions, dim=1).numpy()  # (B, L, H, S, S)
            attention = max(attention, attention_delta(theirs, our_attention, batch.real))
        return {"hidden_max_abs": hidden, "attention_max_abs": attention}

    def against_sentence_transformers(self, spec: SentenceSpec, tokenizer_file: Path) -> dict[str, float]:
        """The directory's whole pipeline on both sides, at its own max_seq_length, default prompt included.

        Ours: the bundle's tokenizer.json, our encoder, then the service's own numpy modules
        (service.pooling), so the figure covers what the server computes after the graph.
        """
        quiet_references()
        from sentence_transformers import SentenceTransformer

        reference = SentenceTransformer(str(self.checkpoint.directory), device="cpu")
        theirs = reference.encode(self.texts, batch_size=16, convert_to_numpy=True)
        prompt = spec.prompts.get(spec.default_prompt_name or "", "")
        ours = self.sentence_embeddings(
            spec, TextTokenizer(tokenizer_file, spec.max_seq_length).encode_batch(self.texts, prompt)
        )
        cosines = np.sum(l2_normalize(ours) * l2_normalize(theirs), axis=1)
        return {"min_cosine": float(cosines.min()), "mean_cosine": float(cosines.mean())}

    def sentence_embeddings(self, spec: SentenceSpec, encoded: Sequence[Encoded]) -> np.ndarray:
        """Our encoder + the service's pooling, Dense and Normalize: (texts, output size) float32."""
        head = SentenceHead(
            spec.pooling, spec.include_prompt, tuple(DenseLayer(d.weight, d.bias, d.activation) for d in spec.dense)
        )
        vectors: list[np.ndarray] = [np.empty(0)] * len(encoded)
        for indices in parity_batches(encoded):
            inputs = pad_batch([encoded[i] for i in indices])
            with torch.no_grad():
                hidden, _ = self.encoder(*[torch.from_numpy(inputs[name]) for name in self.names])
            for row, i in enumerate(indices):
                states = hidden[row, : len(encoded[i])].numpy()  # (tokens, D): the text's real tokens
                vectors[i] = head.embed(states, prompt_tokens=encoded[i].prompt_tokens, normalize=spec.normalize)
        return np.stack(vectors)

    def onnx_outputs(self, graph: Path) -> Iterator[tuple[Batch, list[np.ndarray], tuple[np.ndarray, np.ndarray]]]:
        options = ort.SessionOptions()
        options.log_severity_level = 3  # see service.runtime: the attention graph's shape warning
        session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        for batch, ours in zip(self.batches, self._ours, strict=True):
            yield batch, session.run(None, batch.inputs), ours

    def fp16_against_fp32(self, graph: Path) -> dict[str, float]:
        """An fp16 graph against the fp32 encoder: hidden-state and attention-map deltas, and the
        cosines of their mean-pooled, normalised vectors (what the fp16 bounds are about)."""
        figures: dict[str, float] = {"hidden_max_abs": 0.0}
        cosines: list[np.ndarray] = []
        for batch, outputs, (our_hidden, our_maps) in self.onnx_outputs(graph):
            figures["hidden_max_abs"] = max(figures["hidden_max_abs"], hidden_delta(outputs[0], our_hidden, batch.real))
            if len(outputs) > 1:
                delta = attention_delta(outputs[1], our_maps, batch.real)
                figures["attention_max_abs"] = max(figures.get("attention_max_abs", 0.0), delta)
            mask = batch.inputs["attention_mask"]
            ours, theirs = (l2_normalize(pool(hidden, mask, "mean")) for hidden in (our_hidden, outputs[0]))
            cosines.append(np.sum(ours * theirs, axis=1))
        every = np.concatenate(cosines)
        return {**figures, "min_cosine": float(every.min()), "mean_cosine": float(every.mean())}

    def onnx_against_torch(self, graph: Path) -> dict[str, float]:
        figures: dict[str, float] = {}
        for batch, outputs, (our_hidden, our_attention) in self.onnx_outputs(graph):
            delta = hidden_delta(outputs[0], our_hidden, batch.real)
            figures["hidden_max_abs"] = max(figures.get("hidden_max_abs", 0.0), delta)
            if len(outputs) > 1:
                delta = attention_delta(outputs[1], our_attention, batch.real)
                figures["attention_max_abs"] = max(figures.get("attention_max_abs", 0.0), delta)
        return figures
