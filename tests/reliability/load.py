"""A mixed load generator: many concurrent callers, 1-64 texts per call, 1-512 tokens per text."""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from atento.client import AsyncClient, AtentoError

from tests.conftest import ROOT

WORDS = (ROOT / "tests" / "data" / "corpus" / "pride_and_prejudice.txt").read_text(encoding="utf-8").split()


def mixed_texts(rng: random.Random, count: int) -> list[str]:
    """``count`` real passages, their lengths log-uniform from one word to past 512 tokens."""
    texts = []
    for _ in range(count):
        words = max(1, round(math.exp(rng.uniform(0, math.log(420)))))  # ~1.25 tokens a word
        start = rng.randrange(len(WORDS) - words)
        texts.append(" ".join(WORDS[start : start + words]))
    return texts


@dataclass
class LoadResult:
    seconds: float = 0.0
    codes: Counter[str] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    texts: int = 0
    tokens: int = 0

    @property
    def calls(self) -> int:
        return sum(self.codes.values())

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies, q)) if self.latencies else float("nan")


async def drive(target: str, *, clients: int, seconds: float, max_texts: int = 64, seed: int = 0) -> LoadResult:
    rng = random.Random(seed)
    pool = mixed_texts(rng, 4000)
    result = LoadResult()
    stop = time.monotonic() + seconds

    async def caller(client: AsyncClient, own: random.Random) -> None:
        while time.monotonic() < stop:
            count = max(1, round(math.exp(own.uniform(0, math.log(max_texts)))))  # 1..64, log-uniform
            texts = own.sample(pool, count)
            began = time.perf_counter()
            try:
                response = await client.embed(texts, truncate=True)
                result.texts += len(texts)
                result.tokens += response.usage.tokens
                result.codes["OK"] += 1
            except AtentoError as error:
                result.codes[error.code.name if error.code else "ERROR"] += 1
            result.latencies.append(time.perf_counter() - began)

    started = time.monotonic()
    async with AsyncClient(target, timeout=600, retry=None) as client:
        await asyncio.gather(*(caller(client, random.Random(seed * 1000 + i)) for i in range(clients)))
    result.seconds = time.monotonic() - started
    return result
