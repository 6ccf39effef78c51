"""The packed attention mask: how one (B, S) int64 ``attention_mask`` says which tokens are one text.

The service packs several texts into each row of a batch to cut padding (``packing.pack_rows``);
the exported graphs unpack them (``atento.export.packed_rows.texts_in_rows``). Both follow this
one convention, and both import it from here (this module needs neither numpy nor torch):

- ``PADDING`` (0) marks a position that holds no token;
- each text in a row gets its own positive number, ``FIRST_TEXT`` (1) for the first placed there,
  then 2, 3, ...; tokens that share a number are one text (they need not be in number order);
- a plain right-padded 0/1 mask, one text per row, is the special case of one number per row, so
  any tool that feeds the graphs a transformers-style mask gets what it expects.

A text attends only to the tokens of its own number and counts its positions from 0, so it comes
out exactly as it would alone, wherever it sits in the row and whatever shares the row with it.
Padding attends only to padding, which keeps its (never used) states finite.
"""

from __future__ import annotations

PADDING = 0
FIRST_TEXT = 1


def text_number(index_in_row: int) -> int:
    """The mask value of the ``index_in_row``-th text (0-based) of a packed row."""
    return FIRST_TEXT + index_in_row
