"""Packing texts into rows: the packed-mask convention, first-fit rows, long texts apart."""

from __future__ import annotations

import numpy as np
import pytest
from atento.service.packed_mask import FIRST_TEXT, PADDING
from atento.service.packing import pack_by_width, pack_rows, pad_batch
from atento.service.tokenizer import Encoded

pytestmark = pytest.mark.fast


def text(length: int, token: int = 2000) -> Encoded:
    ids = np.arange(token, token + length, dtype=np.int64)
    return Encoded(ids, np.zeros_like(ids), ["x"] * length, [(0, 0)] * length, [0] * length, False)


def test_packing_puts_several_texts_in_a_row() -> None:
    encoded = [text(n) for n in (30, 5, 40, 12, 3)]
    inputs, places = pack_rows(encoded, row_tokens=48)
    assert inputs["input_ids"].shape == (2, 48)  # 90 tokens in 2 rows of 48, not 5 rows of 40
    for place, item in zip(places, encoded, strict=True):
        assert place.length == len(item)
        np.testing.assert_array_equal(inputs["input_ids"][place.row, place.columns], item.ids)
        row_mask = inputs["attention_mask"][place.row, place.columns]
        assert len(set(row_mask)) == 1 and row_mask[0] >= FIRST_TEXT  # one text, one number
    assert sum(p.length for p in places) == (inputs["attention_mask"] != PADDING).sum()


def test_texts_sharing_a_row_get_distinct_numbers() -> None:
    encoded = [text(n) for n in (4, 4, 4)]
    inputs, places = pack_rows(encoded, row_tokens=12)
    assert inputs["input_ids"].shape == (1, 12)
    numbers = [int(inputs["attention_mask"][p.row, p.start]) for p in places]
    assert sorted(numbers) == [FIRST_TEXT, FIRST_TEXT + 1, FIRST_TEXT + 2]


def test_one_text_per_row_is_the_plain_mask() -> None:
    inputs = pad_batch([text(3), text(5)])
    np.testing.assert_array_equal(inputs["attention_mask"], [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    assert inputs["input_ids"][0, 3:].tolist() == [0, 0]


def test_long_texts_run_apart_from_the_packed_short_ones() -> None:
    encoded = [text(n) for n in (10, 200, 20, 90, 30)]
    short, long = pack_by_width(encoded, row_tokens=64)
    assert short.texts == [0, 2, 4] and short.inputs["input_ids"].shape == (1, 60)  # 60 tokens: one row
    assert long.texts == [1, 3] and long.inputs["input_ids"].shape == (2, 200)  # as wide as the longest


def test_rows_can_be_aligned_to_a_multiple_of_eight() -> None:
    """CUDA's memory-efficient attention wants key lengths divisible by 4; fp16 tensor cores like 8."""
    inputs, places = pack_rows([text(5), text(9)], row_tokens=12, align=8)
    assert inputs["input_ids"].shape == (1, 16)  # rows of 12 rounded up to 16, where both texts fit
    assert all(p.start + p.length <= 16 for p in places)
    (short,) = pack_by_width([text(3)], row_tokens=64, align=8)
    assert short.inputs["input_ids"].shape == (1, 8)
