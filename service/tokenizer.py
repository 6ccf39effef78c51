"""Text -> token ids with character offsets, from the bundle's ``tokenizer.json``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Encoding, Tokenizer


@dataclass(frozen=True)
class Encoded:
    """One tokenised text. Offsets are character positions into the text; (0, 0) for special tokens."""

    ids: np.ndarray  # (tokens,) int64
    type_ids: np.ndarray  # (tokens,) int64
    tokens: list[str]
    offsets: list[tuple[int, int]]
    special: list[int]  # 1 where the tokenizer added the token ([CLS], [SEP])
    truncated: bool

    def __len__(self) -> int:
        return len(self.ids)


class TextTokenizer:
    """Tokenises without padding and cuts at ``max_tokens``, reporting whether it cut."""

    def __init__(self, path: Path, max_tokens: int) -> None:
        self.max_tokens = max_tokens
        self._tokenizer = Tokenizer.from_file(str(path))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_tokens)

    def encode_batch(self, texts: Sequence[str]) -> list[Encoded]:
        """Many texts on the library's own thread pool (worth it for long inputs)."""
        return [_encoded(encoding) for encoding in self._tokenizer.encode_batch(list(texts))]

    def encode_each(self, texts: Sequence[str]) -> list[Encoded]:
        """Text by text on the calling thread: for short inputs, where waking a pool costs more."""
        return [_encoded(self._tokenizer.encode(text)) for text in texts]


def _encoded(encoding: Encoding) -> Encoded:
    return Encoded(
        ids=np.asarray(encoding.ids, dtype=np.int64),
        type_ids=np.asarray(encoding.type_ids, dtype=np.int64),
        tokens=encoding.tokens,
        offsets=encoding.offsets,
        special=encoding.special_tokens_mask,
        truncated=bool(encoding.overflowing),
    )


def pad_batch(encoded: Sequence[Encoded]) -> dict[str, np.ndarray]:
    """Right-pad to the longest text: input_ids, attention_mask, token_type_ids, each (B, S) int64."""
    seq = max(len(item) for item in encoded)
    ids = np.zeros((len(encoded), seq), dtype=np.int64)
    mask = np.zeros_like(ids)
    types = np.zeros_like(ids)
    for row, item in enumerate(encoded):
        ids[row, : len(item)] = item.ids
        mask[row, : len(item)] = 1
        types[row, : len(item)] = item.type_ids
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


@dataclass(frozen=True)
class Placement:
    """Where a text sits in a packed batch: row, first column, token count."""

    row: int
    start: int
    length: int


def pack_rows(encoded: Sequence[Encoded], row_tokens: int) -> tuple[dict[str, np.ndarray], list[Placement]]:
    """Pack texts into as few rows as fit, instead of one padded row each.

    Rows are ``max(longest text, min(row_tokens, all tokens))`` wide; texts go in longest first, each
    into the first row with room. In ``attention_mask`` each text of a row gets its own number
    (1, 2, ...), which the graph turns into a block-diagonal mask and per-text positions, so every
    text comes out exactly as if it ran alone, and padding shrinks to what the packing leaves over.
    """
    lengths = [len(item) for item in encoded]
    width = max(max(lengths), min(row_tokens, sum(lengths)))
    used: list[int] = []  # tokens already in each row
    placements: list[Placement | None] = [None] * len(encoded)
    for i in sorted(range(len(encoded)), key=lambda i: -lengths[i]):
        row = next((r for r, taken in enumerate(used) if taken + lengths[i] <= width), len(used))
        if row == len(used):
            used.append(0)
        placements[i] = Placement(row, used[row], lengths[i])
        used[row] += lengths[i]
    ids = np.zeros((len(used), width), dtype=np.int64)
    mask = np.zeros_like(ids)
    types = np.zeros_like(ids)
    texts_in_row = [0] * len(used)
    for item, place in zip(encoded, placements, strict=True):
        assert place is not None
        texts_in_row[place.row] += 1
        columns = slice(place.start, place.start + place.length)
        ids[place.row, columns] = item.ids
        mask[place.row, columns] = texts_in_row[place.row]
        types[place.row, columns] = item.type_ids
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}, [p for p in placements if p is not None]


def pack_by_width(
    encoded: Sequence[Encoded], row_tokens: int
) -> list[tuple[dict[str, np.ndarray], list[int], list[Placement]]]:
    """Texts up to ``row_tokens`` packed into rows of that width; longer ones apart, in rows as wide
    as the longest of them. Returns one (inputs, text indices, placements) per ONNX Runtime run.

    One long text would otherwise widen every row of the batch, and attention's cost grows with
    the row width (ONNX Runtime's attention kernel: 19% of the encoder's time at width 128).
    """
    runs = []
    for short in (True, False):
        indices = [i for i, item in enumerate(encoded) if (len(item) <= row_tokens) == short]
        if indices:
            inputs, places = pack_rows([encoded[i] for i in indices], row_tokens)
            runs.append((inputs, indices, places))
    return runs
