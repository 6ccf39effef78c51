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
    special: list[int]  # 1 where the tokenizer added the token ([CLS], [SEP]) or the prompt holds it
    truncated: bool
    prompt_tokens: int = 0  # leading tokens that are the prompt's, as sentence-transformers counts them

    def __len__(self) -> int:
        return len(self.ids)


class TextTokenizer:
    """Tokenises without padding and cuts at ``max_tokens``, reporting whether it cut.

    A prompt is put in front of each text, as sentence-transformers does (``prompt + text``), so it
    counts toward ``max_tokens``; the prompt's tokens come back marked special, with offsets (0, 0),
    and every other offset still points into the request's own text.
    """

    def __init__(self, path: Path, max_tokens: int) -> None:
        self.max_tokens = max_tokens
        self._tokenizer = Tokenizer.from_file(str(path))
        self._tokenizer.no_padding()
        self._tokenizer.enable_truncation(max_tokens)
        self._prompt_lengths: dict[str, int] = {}
        self.added_tokens = len(self._tokenizer.encode("").ids)  # special tokens every text gets ([CLS], [SEP])

    def prompt_length(self, prompt: str) -> int:
        """The prompt's tokens without a trailing special token: sentence-transformers' prompt_length."""
        if prompt not in self._prompt_lengths:  # a model's few prompts, or a request's own: bounded below
            encoding = self._tokenizer.encode(prompt)
            length = len(encoding.ids) - (1 if encoding.special_tokens_mask[-1:] == [1] else 0)
            if len(self._prompt_lengths) < 64:
                self._prompt_lengths[prompt] = length
            return length
        return self._prompt_lengths[prompt]

    def encode_batch(self, texts: Sequence[str], prompt: str = "") -> list[Encoded]:
        """Many texts on the library's own thread pool (worth it for long inputs)."""
        encodings = self._tokenizer.encode_batch([prompt + text for text in texts])
        return [self._encoded(encoding, prompt) for encoding in encodings]

    def encode_each(self, texts: Sequence[str], prompt: str = "") -> list[Encoded]:
        """Text by text on the calling thread: for short inputs, where waking a pool costs more."""
        return [self._encoded(self._tokenizer.encode(prompt + text), prompt) for text in texts]

    def _encoded(self, encoding: Encoding, prompt: str) -> Encoded:
        offsets, special = encoding.offsets, encoding.special_tokens_mask
        if prompt:
            shift = len(prompt)
            in_prompt = [start < shift and not flag for (start, _), flag in zip(offsets, special, strict=True)]
            offsets = [
                (0, 0) if inside or flag else (start - shift, end - shift)
                for (start, end), inside, flag in zip(offsets, in_prompt, special, strict=True)
            ]
            special = [int(flag or inside) for flag, inside in zip(special, in_prompt, strict=True)]
        return Encoded(
            ids=np.asarray(encoding.ids, dtype=np.int64),
            type_ids=np.asarray(encoding.type_ids, dtype=np.int64),
            tokens=encoding.tokens,
            offsets=offsets,
            special=special,
            truncated=bool(encoding.overflowing),
            prompt_tokens=self.prompt_length(prompt) if prompt else 0,
        )
