"""`atento bench`: a bounded load generator against a running server.

N workers keep one request each in flight; each request takes the next `--batch` texts. Prints
throughput (texts/s, tokens/s) and latency percentiles, or JSON with `--json`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from collections import Counter
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from .aio import AsyncClient
from .errors import AtentoError
from .options import connection_options
from .progress import progress_bar


@dataclass
class Figures:
    requests: int
    texts: int
    tokens: int
    errors: dict[str, int]
    seconds: float
    texts_per_s: float
    tokens_per_s: float
    requests_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    concurrency: int
    batch: int


def sample_texts(path: str | None) -> list[str]:
    if path:
        text = Path(path).read_text(encoding="utf-8")
    else:
        text = resources.files("atento.client").joinpath("data/sample_texts.txt").read_text(encoding="utf-8")
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError(f"no texts in {path}")
    return lines


async def drive(args: argparse.Namespace, client: AsyncClient, texts: list[str]) -> Figures:
    chunks = itertools.cycle([texts[i : i + args.batch] for i in range(0, len(texts) - args.batch + 1, args.batch)])
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    counts = {"texts": 0, "tokens": 0, "sent": 0}
    deadline: float | None = time.monotonic() + args.duration if args.duration else None
    # On a terminal, a bar of requests done (--requests) or of seconds elapsed (--duration).
    progress = progress_bar(args.duration or args.requests, "s" if deadline else "request", "bench")
    start = shown = time.monotonic()

    def more() -> bool:
        if deadline is not None:
            return time.monotonic() < deadline
        return counts["sent"] < int(args.requests)

    async def worker() -> None:
        while more():
            counts["sent"] += 1
            chunk = next(chunks)
            began = time.perf_counter()
            try:
                result = await client.embed(chunk, truncate=True)
                counts["texts"] += len(chunk)
                counts["tokens"] += result.usage.tokens
            except AtentoError as error:
                errors[error.code.name if error.code else "ERROR"] += 1
            latencies.append(time.perf_counter() - began)
            advance(time.monotonic())

    def advance(now: float) -> None:
        nonlocal shown
        if deadline is None:
            progress.update(1)
            return
        reached = min(now, deadline)
        progress.update(max(0.0, reached - shown))
        shown = max(shown, reached)

    try:
        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    finally:
        progress.close()
    seconds = time.monotonic() - start
    p50, p90, p99 = (float(np.percentile(latencies, q) * 1000) if latencies else 0.0 for q in (50, 90, 99))
    return Figures(
        requests=len(latencies),
        texts=counts["texts"],
        tokens=counts["tokens"],
        errors=dict(errors),
        seconds=seconds,
        texts_per_s=counts["texts"] / seconds,
        tokens_per_s=counts["tokens"] / seconds,
        requests_per_s=len(latencies) / seconds,
        p50_ms=p50,
        p90_ms=p90,
        p99_ms=p99,
        concurrency=args.concurrency,
        batch=args.batch,
    )


def report(figures: Figures) -> str:
    errors = ", ".join(f"{k} {v}" for k, v in figures.errors.items()) or "none"
    return "\n".join(
        [
            f"requests     {figures.requests} in {figures.seconds:.2f} s ({figures.requests_per_s:.1f}/s)",
            f"errors       {errors}",
            f"throughput   {figures.texts_per_s:.1f} texts/s, {figures.tokens_per_s:.0f} tokens/s",
            f"latency      p50 {figures.p50_ms:.2f} ms, p90 {figures.p90_ms:.2f} ms, p99 {figures.p99_ms:.2f} ms",
            f"load         {figures.concurrency} concurrent, {figures.batch} texts per request",
        ]
    )


def run_bench(args: argparse.Namespace) -> int:
    if args.concurrency < 1 or args.batch < 1 or (args.requests is not None and args.requests < 1):
        raise ValueError("--concurrency, --batch and --requests must be at least 1")
    texts = sample_texts(args.texts)
    if len(texts) < args.batch:
        raise ValueError(f"--batch {args.batch} is more than the {len(texts)} texts available")

    async def main() -> Figures:
        async with AsyncClient(**connection_options(args)) as client:
            await client.embed(texts[: args.batch], truncate=True)  # one warm-up call, not counted
            return await drive(args, client, texts)

    figures = asyncio.run(main())
    print(json.dumps(asdict(figures)) if args.json else report(figures))
    return 0 if not figures.errors else 1
