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
        self.added_tokens = len(self._tokenizer.encode("").ids)  # special tokens every text gets ([CLS], [SEP])

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
