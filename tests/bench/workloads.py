"""What the benchmark runs: each workload embeds the same texts and returns what it measured.

In process: PyTorch eager (our encoder and sentence-transformers), ONNX Runtime on the bundle.
Through the service: load shapes from many single-text clients to one client, over real gRPC.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnxruntime as ort
from atento.client import AsyncClient, AttentionSelection, Client
from atento.service.config import Settings
from atento.service.packing import pack_by_width, pad_batch
from atento.service.pooling import l2_normalize, pool, pool_text
from atento.service.tokenizer import TextTokenizer

ROW_TOKENS = Settings().row_tokens  # the service's default packing


@dataclass
class Measurement:
    seconds: float
    texts: int
    tokens: int
    latencies: list[float] = field(default_factory=list)  # per call, seconds

    @property
    def texts_per_s(self) -> float:
        return self.texts / self.seconds

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) if self.latencies else float("nan")


Workload = Callable[[], Measurement]


class Texts:
    """The benchmark's texts, tokenised once (token counts are the same for every workload)."""

    def __init__(self, lines: Sequence[str], tokenizer_file: Path, max_tokens: int) -> None:
        self.lines = list(lines)
        self.tokenizer = TextTokenizer(tokenizer_file, max_tokens)
        self.encoded = self.tokenizer.encode_batch(self.lines)
        self.tokens = sum(len(e) for e in self.encoded)

    def batches(self, size: int, *, by_length: bool = False) -> list[list[int]]:
        order = (
            sorted(range(len(self.lines)), key=lambda i: len(self.encoded[i]))
            if by_length
            else list(range(len(self.lines)))
        )
        return [order[i : i + size] for i in range(0, len(order), size)]


def ort_session(graph: Path, threads: int = 0) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    # Spin inside a run (its speed), not after it: an idle benchmark session must not keep a core
    # busy while the server is being measured on the same two cores.
    options.add_session_config_entry("session.force_spinning_stop", "1")
    return ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])


def ort_in_process(
    session: ort.InferenceSession, texts: Texts, *, by_length: bool = False, packed: int = 0, batch: int = 32
) -> Workload:
    """Tokenise, run ONNX Runtime, pool and normalise, batch by batch, in this process.

    Padded, in arrival order or sorted by length (what sentence-transformers does); or ``packed``
    into rows of that many tokens exactly as the service packs: the service's own ceiling.
    """
    names = [i.name for i in session.get_inputs()]

    def run() -> Measurement:
        start = time.perf_counter()
        for indices in texts.batches(batch, by_length=by_length):
            encoded = texts.tokenizer.encode_batch([texts.lines[i] for i in indices])
            if packed:
                for run in pack_by_width(encoded, packed):
                    (hidden,) = session.run(None, {n: run.inputs[n] for n in names})
                    for p in run.placements:
                        pool_text(hidden[p.row, p.columns], "mean", True)
            else:
                inputs = pad_batch(encoded)
                (hidden,) = session.run(None, {n: inputs[n] for n in names})
                l2_normalize(pool(hidden, inputs["attention_mask"], "mean"))
        return Measurement(time.perf_counter() - start, len(texts.lines), texts.tokens)

    return run


def ort_single_latency(session: ort.InferenceSession, texts: Texts, calls: int) -> Workload:
    names = [i.name for i in session.get_inputs()]

    def run() -> Measurement:
        latencies = []
        for i in range(calls):
            start = time.perf_counter()
            encoded = texts.tokenizer.encode_batch([texts.lines[i % len(texts.lines)]])
            inputs = pad_batch(encoded)
            (hidden,) = session.run(None, {n: inputs[n] for n in names})
            l2_normalize(pool(hidden, inputs["attention_mask"], "mean"))
            latencies.append(time.perf_counter() - start)
        tokens = sum(len(texts.encoded[i % len(texts.lines)]) for i in range(calls))
        return Measurement(sum(latencies), calls, tokens, latencies)

    return run


def torch_eager(texts: Texts, checkpoint_dir: Path, batch: int = 32) -> Workload:
    import torch
    from atento.export.checkpoint import load_encoder, open_checkpoint
    from atento.export.model import Encoder, FusedSelfAttention

    loaded = load_encoder(open_checkpoint(checkpoint_dir))
    model = Encoder(loaded.config, attention=FusedSelfAttention)  # scaled_dot_product_attention: eager's fastest
    model.load_state_dict(loaded.state_dict())
    model.eval()

    def run() -> Measurement:
        start = time.perf_counter()
        with torch.inference_mode():
            for indices in texts.batches(batch):
                encoded = texts.tokenizer.encode_batch([texts.lines[i] for i in indices])
                inputs = {k: torch.from_numpy(v) for k, v in pad_batch(encoded).items()}
                hidden, _ = model(inputs["input_ids"], inputs["attention_mask"], inputs["token_type_ids"])
                l2_normalize(pool(hidden.numpy(), inputs["attention_mask"].numpy(), "mean"))
        return Measurement(time.perf_counter() - start, len(texts.lines), texts.tokens)

    return run


def sentence_transformers(texts: Texts, checkpoint_dir: Path, batch: int = 32) -> Workload:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(checkpoint_dir), device="cpu")
    model.max_seq_length = texts.tokenizer.max_tokens

    def run() -> Measurement:
        start = time.perf_counter()
        model.encode(texts.lines, batch_size=batch, normalize_embeddings=True, convert_to_numpy=True)
        return Measurement(time.perf_counter() - start, len(texts.lines), texts.tokens)

    return run


def service_load(
    target: str, texts: Texts, *, clients: int, per_call: int, attention: AttentionSelection | None = None
) -> Workload:
    """``clients`` concurrent callers, each sending ``per_call`` texts per call until all are embedded."""
    chunks = [texts.lines[i : i + per_call] for i in range(0, len(texts.lines), per_call)]

    async def drive() -> Measurement:
        # Retries off: the load generator shares the machine's two cores with the server, so it
        # should cost as little as a client can (gRPC's retry buffering costs ~0.3 ms a call).
        async with AsyncClient(target, timeout=300, retry=None) as client:
            queue = list(reversed(chunks))
            latencies: list[float] = []
            tokens = 0

            async def caller() -> None:
                nonlocal tokens
                while queue:
                    chunk = queue.pop()
                    began = time.perf_counter()
                    result = await client.embed(chunk, truncate=True, attention=attention)
                    latencies.append(time.perf_counter() - began)
                    tokens += result.usage.tokens

            start = time.perf_counter()
            await asyncio.gather(*(caller() for _ in range(clients)))
            return Measurement(time.perf_counter() - start, len(texts.lines), tokens, latencies)

    return lambda: asyncio.run(drive())


def service_latency(target: str, texts: Texts, attention: AttentionSelection | None = None) -> Workload:
    """One caller, one text per call, with the blocking client: latency as a single user sees it."""

    def run() -> Measurement:
        latencies, tokens = [], 0
        with Client(target, timeout=60, retry=None) as client:
            for line in texts.lines:
                began = time.perf_counter()
                result = client.embed(line, truncate=True, attention=attention)
                latencies.append(time.perf_counter() - began)
                tokens += result.usage.tokens
        return Measurement(sum(latencies), len(texts.lines), tokens, latencies)

    return run


def median_of(measurements: Sequence[Measurement], key: Callable[[Measurement], float]) -> float:
    return statistics.median(key(m) for m in measurements)
