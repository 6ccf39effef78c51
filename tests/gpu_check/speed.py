"""Throughput and latency, the same loads on every path: in process (the service's own tokenizer,
packing and Runtime, no gRPC), through the real service, and sentence-transformers' ``encode`` (the
anchor: fp16 on the same GPU; fp32 on the CPU when there is none).

A load ``C x T`` is C concurrent calls of T texts each, repeated for ``rounds`` after one warm-up
round: 1 x 1 (one text alone: latency), 32 x 1 (many single-text callers: batching across calls),
4 x 64 (a few bulk callers: throughput). Medians and p99 of the calls' latencies; texts/s and
tokens/s over the rounds' wall time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from atento.service.bundle import GraphRole, read_bundle
from atento.service.config import Settings
from atento.service.packing import pack_by_width
from atento.service.provider_defaults import for_provider
from atento.service.runtime import Runtime
from atento.service.tokenizer import TextTokenizer

from .report import Row

LOADS = ((1, 1), (32, 1), (4, 64))  # (concurrent calls, texts per call)
Call = Callable[[Sequence[str], int], object]  # (texts, caller index) -> anything


def measure(
    path: str, provider: str, dtype: str, call: Call, texts: list[str], tokens: float, rounds: int,
    loads: Sequence[tuple[int, int]] = LOADS,
) -> list[Row]:  # fmt: skip
    """Each load through ``call``; ``tokens``: the mean tokens per text, for tokens/s."""
    rows = []
    for calls, per_call in loads:
        work = [texts[(i * per_call) % len(texts) :][:per_call] or texts[:per_call] for i in range(calls)]
        latencies: list[float] = []

        def one(i: int, latencies: list[float] = latencies, work: list[list[str]] = work) -> None:
            start = time.perf_counter()
            call(work[i], i)
            latencies.append(time.perf_counter() - start)

        with ThreadPoolExecutor(max_workers=calls) as pool:
            list(pool.map(one, range(calls)))  # warm-up round, not counted
            latencies.clear()
            walls = []  # each round's wall time, for the median round
            for _ in range(rounds):
                start = time.perf_counter()
                list(pool.map(one, range(calls)))
                walls.append(time.perf_counter() - start)
            wall = sum(walls)
        done = calls * per_call * rounds
        detail = {
            "load": f"{calls} x {per_call}",
            "rounds": rounds,
            "texts_per_s": done / wall,
            "median_round_texts_per_s": calls * per_call / float(np.median(walls)),
            "tokens_per_s": done * tokens / wall,
            "p50_ms": float(np.percentile(latencies, 50) * 1000),
            "p99_ms": float(np.percentile(latencies, 99) * 1000),
        }
        rows.append(Row("speed", path, provider, dtype, detail["texts_per_s"], detail=detail))
    return rows


def in_process(bundle: Path, provider: str, workers: int, intra_op_threads: int = 0) -> Call:
    """The service's path without gRPC or the batcher: tokenise, pack as the batcher does, run."""
    chosen = Settings(bundle=bundle, provider=provider, inference_workers=workers, intra_op_threads=intra_op_threads)
    settings = for_provider(chosen, provider)
    runtime = Runtime(read_bundle(bundle), settings)
    runtime.warm_up()
    tokenizer = TextTokenizer(bundle / "tokenizer.json", runtime.bundle.model.max_tokens)

    def call(texts: Sequence[str], caller: int) -> object:
        encoded = tokenizer.encode_batch(texts)
        return [runtime.run(run.inputs, GraphRole.FAST, caller).hidden for run in
                pack_by_width(encoded, settings.row_tokens, runtime.row_align)]  # fmt: skip

    return call


def sentence_transformers(checkpoint: Path, device: str, dtype: str) -> Call:
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(checkpoint), device=device)
    if dtype == "fp16":
        model = model.half()

    def call(texts: Sequence[str], caller: int) -> object:
        with torch.inference_mode():
            return model.encode(list(texts), batch_size=len(texts), convert_to_numpy=True)

    return call


def mean_tokens(bundle: Path, texts: list[str]) -> float:
    tokenizer = TextTokenizer(bundle / "tokenizer.json", read_bundle(bundle, verify=False).model.max_tokens)
    return float(np.mean([len(e) for e in tokenizer.encode_batch(texts)]))


def with_anchor(rows: list[Row], anchor: list[Row]) -> list[Row]:
    """Each row's texts/s as a multiple of the anchor's at the same load."""
    by_load = {r.detail["load"]: r.detail["texts_per_s"] for r in anchor if r.detail}  # none if the anchor failed
    for row in rows:
        if row.detail.get("load") in by_load:
            row.detail["vs_anchor"] = row.detail["texts_per_s"] / by_load[row.detail["load"]]
    return rows
