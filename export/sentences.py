"""The parity sentences and how they are batched: shared by every parity check, torch or not."""

from __future__ import annotations

import random
from collections.abc import Sequence
from importlib import resources

from atento.service.tokenizer import Encoded


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
