"""Texts -> ONNX Runtime inputs: packed several to a row, or one per row.

Packing puts as many texts into a row as fit, numbering them in ``attention_mask`` as
``packed_mask`` defines, so that a batch of short and long texts wastes little on padding and each
text still comes out exactly as it would alone. The batcher packs every batch it runs
(``pack_by_width``); the exporter's parity checks and the benchmarks use the one-text-per-row form
(``pad_batch``), which is the same convention with one text per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .packed_mask import PADDING, text_number
from .tokenizer import Encoded

Inputs = dict[str, np.ndarray]  # input_ids, attention_mask, token_type_ids: (B, S) int64 each


@dataclass(frozen=True)
class Placement:
    """Where a text sits in a packed batch: row, first column, token count."""

    row: int
    start: int
    length: int

    @property
    def columns(self) -> slice:
        return slice(self.start, self.start + self.length)


@dataclass(frozen=True)
class PackedRun:
    """One ONNX Runtime run: its inputs, which of the batch's texts it holds, and where each sits."""

    inputs: Inputs
    texts: list[int]  # indices into the batch
    placements: list[Placement]  # one per entry of ``texts``


def _fill(encoded: Sequence[Encoded], placements: Sequence[Placement], rows: int, width: int) -> Inputs:
    ids = np.zeros((rows, width), dtype=np.int64)
    mask = np.full_like(ids, PADDING)
    types = np.zeros_like(ids)
    texts_in_row = [0] * rows
    for item, place in zip(encoded, placements, strict=True):
        ids[place.row, place.columns] = item.ids
        mask[place.row, place.columns] = text_number(texts_in_row[place.row])
        types[place.row, place.columns] = item.type_ids
        texts_in_row[place.row] += 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def pad_batch(encoded: Sequence[Encoded]) -> Inputs:
    """One text per row, right-padded to the longest: the plain 0/1 mask."""
    width = max(len(item) for item in encoded)
    return _fill(encoded, [Placement(row, 0, len(item)) for row, item in enumerate(encoded)], len(encoded), width)


def aligned(width: int, align: int) -> int:
    """``width`` rounded up to a multiple of ``align``."""
    return -(-width // align) * align


def pack_rows(encoded: Sequence[Encoded], row_tokens: int, align: int = 1) -> tuple[Inputs, list[Placement]]:
    """Pack texts into as few rows as fit, instead of one padded row each.

    Rows are ``max(longest text, min(row_tokens, all tokens))`` wide, rounded up to a multiple of
    ``align`` (8 on CUDA: its memory-efficient attention kernel needs key lengths divisible by 4, and
    fp16 tensor cores like multiples of 8); texts go in longest first, each into the first row with
    room (first-fit decreasing).
    """
    lengths = [len(item) for item in encoded]
    width = aligned(max(max(lengths), min(row_tokens, sum(lengths))), align)
    used: list[int] = []  # tokens already in each row
    placements: dict[int, Placement] = {}
    for i in sorted(range(len(encoded)), key=lambda i: -lengths[i]):
        row = next((r for r, taken in enumerate(used) if taken + lengths[i] <= width), len(used))
        if row == len(used):
            used.append(0)
        placements[i] = Placement(row, used[row], lengths[i])
        used[row] += lengths[i]
    ordered = [placements[i] for i in range(len(encoded))]
    return _fill(encoded, ordered, len(used), width), ordered


def pack_by_width(encoded: Sequence[Encoded], row_tokens: int, align: int = 1) -> list[PackedRun]:
    """Texts up to ``row_tokens`` packed into rows of that width; longer ones apart, in rows as wide
    as the longest of them: one ``PackedRun`` per ONNX Runtime run.

    One long text would otherwise widen every row of the batch, and attention's cost grows with
    the row width (ONNX Runtime's attention kernel: 19% of the encoder's time at width 128).
    """
    runs = []
    for short in (True, False):
        indices = [i for i, item in enumerate(encoded) if (len(item) <= row_tokens) == short]
        if indices:
            inputs, places = pack_rows([encoded[i] for i in indices], row_tokens, align)
            runs.append(PackedRun(inputs, indices, places))
    return runs
