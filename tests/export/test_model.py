"""The PyTorch encoder on its own: shapes, masking, padding, and the attention paths agreeing."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from atento.export.config import Architecture, CheckpointError, EncoderConfig
from atento.export.model import (
    Encoder,
    FusedSelfAttention,
    RelativePositionBias,
)
from atento.export.packed_rows import texts_in_rows


@pytest.fixture(scope="module")
def tiny() -> Encoder:
    torch.manual_seed(0)
    return Encoder(EncoderConfig.tiny()).eval()


def random_inputs(batch: int, seq: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(1000, 20000, (batch, seq), generator=generator)
    return ids, torch.ones_like(ids), torch.zeros_like(ids)


def test_shapes_and_probabilities(tiny: Encoder) -> None:
    config = tiny.config
    ids, mask, types = random_inputs(3, 11)
    with torch.no_grad():
        hidden, attentions = tiny(ids, mask, types)
    assert hidden.shape == (3, 11, config.hidden_size)
    assert attentions is not None
    assert attentions.shape == (3, config.num_layers, config.num_heads, 11, 11)
    torch.testing.assert_close(attentions.sum(-1), torch.ones(3, config.num_layers, config.num_heads, 11))


def test_masked_keys_get_no_attention(tiny: Encoder) -> None:
    ids, mask, types = random_inputs(2, 9)
    mask[0, 6:] = 0
    with torch.no_grad():
        hidden, attentions = tiny(ids, mask, types)
    assert attentions is not None
    assert torch.all(attentions[0, :, :, :6, 6:] == 0)  # real tokens never look at padding
    assert torch.all(attentions[0, :, :, 6:, :6] == 0)  # padding looks at padding only: finite
    assert torch.isfinite(hidden).all()
    assert torch.all(attentions[1] > 0)


def test_packed_texts_come_out_as_if_alone(tiny: Encoder) -> None:
    """Several texts in one row (mask 1, 2, ... per text): each attends to itself, positions from 0."""
    a, b, c = (random_inputs(1, n, seed=n)[0] for n in (5, 7, 3))
    row = torch.cat([a, b, c, torch.zeros(1, 2, dtype=torch.int64)], dim=1)  # (1, 17)
    mask = torch.tensor([[1] * 5 + [2] * 7 + [3] * 3 + [0] * 2])
    with torch.no_grad():
        packed, packed_attn = tiny(row, mask)
        for text, start in ((a, 0), (b, 5), (c, 12)):
            alone, alone_attn = tiny(text, torch.ones_like(text))
            n = text.shape[1]
            torch.testing.assert_close(packed[0, start : start + n], alone[0], atol=1e-6, rtol=0)
            assert packed_attn is not None and alone_attn is not None
            block = packed_attn[0, :, :, start : start + n, start : start + n]
            torch.testing.assert_close(block, alone_attn[0], atol=1e-6, rtol=0)


def test_left_padding_gives_the_unpadded_result(tiny: Encoder) -> None:
    ids, mask, types = random_inputs(1, 6)
    padded = torch.cat([torch.zeros(1, 4, dtype=torch.int64), ids], dim=1)
    padded_mask = torch.cat([torch.zeros(1, 4, dtype=torch.int64), mask], dim=1)
    with torch.no_grad():
        alone, _ = tiny(ids, mask, types)
        left, _ = tiny(padded, padded_mask, torch.zeros_like(padded))
    torch.testing.assert_close(left[:, 4:], alone, atol=1e-6, rtol=0)


def test_right_padding_does_not_change_real_tokens(tiny: Encoder) -> None:
    ids, mask, types = random_inputs(1, 7)
    padded_ids = torch.cat([ids, torch.zeros(1, 5, dtype=torch.int64)], dim=1)
    padded_mask = torch.cat([mask, torch.zeros(1, 5, dtype=torch.int64)], dim=1)
    with torch.no_grad():
        alone, _ = tiny(ids, mask, types)
        padded, _ = tiny(padded_ids, padded_mask, torch.zeros_like(padded_ids))
    torch.testing.assert_close(padded[:, :7], alone, atol=1e-6, rtol=0)


def test_masked_token_content_is_ignored(tiny: Encoder) -> None:
    """Any padding pattern: what sits under a zero of the mask never reaches the other tokens."""
    ids, _, types = random_inputs(4, 12)
    mask = torch.tensor([[1] * 12, [0, 0, 0] + [1] * 9, [1, 0, 1, 1, 0, 0, 1, 1, 1, 0, 1, 1], [1] * 5 + [0] * 7])
    other = ids.clone()
    other[mask == 0] = 4242  # different content in every masked position
    with torch.no_grad():
        first, _ = tiny(ids, mask, types)
        second, _ = tiny(other, mask, types)
    real = mask.bool()
    torch.testing.assert_close(first[real], second[real], atol=1e-6, rtol=0)


def test_fused_path_matches_the_equations(tiny: Encoder) -> None:
    fused = Encoder(tiny.config, attention=FusedSelfAttention)
    fused.load_state_dict(tiny.state_dict())
    ids, mask, types = random_inputs(2, 10)
    mask[1, 7:] = 0
    with torch.no_grad():
        expected, expected_probs = tiny(ids, mask, types)
        got, got_probs = fused.eval()(ids, mask, types)
    real = mask.bool()
    torch.testing.assert_close(got[real], expected[real], atol=1e-5, rtol=0)
    assert got_probs is None and expected_probs is not None


def test_config_is_frozen_and_validated() -> None:
    config = EncoderConfig.tiny()
    with pytest.raises(AttributeError):
        config.hidden_size = 64  # type: ignore[misc]
    with pytest.raises(CheckpointError, match="hidden_act 'swish'"):
        dataclasses.replace(config, hidden_act="swish")
    with pytest.raises(CheckpointError, match="not divisible"):
        dataclasses.replace(config, num_heads=5)


# RoBERTa-like (positions past padding_idx 1, one token type row) and MPNet-like (plus the relative
# position bias) variants of the tiny model, to check what differs from BERT in process.
ROBERTA_LIKE = dataclasses.replace(
    EncoderConfig.tiny(), architecture=Architecture.ROBERTA, position_offset=2, type_vocab_size=1, pad_token_id=1
)
MPNET_LIKE = dataclasses.replace(
    EncoderConfig.tiny(), architecture=Architecture.MPNET, position_offset=2, type_vocab_size=0, relative_buckets=32
)


def variant(config: EncoderConfig) -> Encoder:
    torch.manual_seed(0)
    encoder = Encoder(config).eval()
    with torch.no_grad():
        for parameter in encoder.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.2)  # a bias large enough to move the maps
    return encoder


@pytest.mark.fast
@pytest.mark.parametrize("config", [ROBERTA_LIKE, MPNET_LIKE], ids=["roberta", "mpnet"])
def test_packed_texts_come_out_as_if_alone_in_every_variant(config: EncoderConfig) -> None:
    """Positions and MPNet's relative positions count within each text: packed equals alone."""
    encoder = variant(config)
    a, b = (random_inputs(1, n, seed=n)[0] for n in (6, 9))
    row = torch.cat([a, b, torch.zeros(1, 3, dtype=torch.int64)], dim=1)  # (1, 18)
    mask = torch.tensor([[1] * 6 + [2] * 9 + [0] * 3])
    with torch.no_grad():
        packed, packed_attn = encoder(row, mask)
        for text, start in ((a, 0), (b, 6)):
            alone, alone_attn = encoder(text, torch.ones_like(text))
            n = text.shape[1]
            torch.testing.assert_close(packed[0, start : start + n], alone[0], atol=1e-5, rtol=0)
            assert packed_attn is not None and alone_attn is not None
            block = packed_attn[0, :, :, start : start + n, start : start + n]
            torch.testing.assert_close(block, alone_attn[0], atol=1e-5, rtol=0)


@pytest.mark.fast
def test_relative_buckets_are_transformers_own() -> None:
    from transformers.models.mpnet.modeling_mpnet import MPNetEncoder

    bias = RelativePositionBias(MPNET_LIKE)
    relative = torch.arange(-600, 601)[None, :]  # (1, 1201): every distance a 512-token text has, and more
    assert torch.equal(bias.bucket(relative), MPNetEncoder.relative_position_bucket(relative))


@pytest.mark.fast
def test_relative_position_bias_moves_the_attention() -> None:
    """The bias is really applied: zeroing the table changes the maps; the fused path applies it too."""
    encoder = variant(MPNET_LIKE)
    ids, mask, _ = random_inputs(2, 12)
    fused = Encoder(MPNET_LIKE, attention=FusedSelfAttention).eval()
    fused.load_state_dict(encoder.state_dict())
    with torch.no_grad():
        hidden, maps = encoder(ids, mask)
        fused_hidden, _ = fused(ids, mask)
        torch.testing.assert_close(fused_hidden, hidden, atol=1e-5, rtol=0)
        encoder.attention_mask.relative_attention_bias.weight.zero_()
        unbiased_hidden, unbiased = encoder(ids, mask)
    assert maps is not None and unbiased is not None and (unbiased - maps).abs().max() > 1e-2
    assert (unbiased_hidden - fused_hidden).abs().max() > 1e-3


@pytest.mark.fast
def test_positions_start_past_the_padding_index() -> None:
    """RoBERTa: position = padding_idx + 1 + index within the text; padding gets padding_idx."""
    _, positions = texts_in_rows(torch.tensor([[1, 1, 1, 2, 2, 0]]), first=2, padding=1)
    assert positions.tolist() == [[2, 3, 4, 2, 3, 1]]
    assert ROBERTA_LIKE.position_table_size == ROBERTA_LIKE.max_positions + 2
