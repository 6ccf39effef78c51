"""Admission by an upper bound on tokens, before tokenising: the bound holds for real tokenizers, the
queue's two budgets and the bulk share hold, and someone always makes progress."""

from __future__ import annotations

from pathlib import Path

import pytest
from atento.service.admission import Admission, bulk_requested, token_bound
from atento.service.errors import InvalidArgument, Overloaded
from atento.service.metrics import Metrics
from atento.service.tokenizer import TextTokenizer
from tokenizers import ByteLevelBPETokenizer

pytestmark = pytest.mark.fast

TEXTS = [
    "hello",
    "The quick brown fox jumps over the lazy dog.",
    "naïve café déjà vu, Ελληνικά, русский, עברית, العربية",
    "東京特許許可局 日本語のテキスト 中文文本 한국어",
    "emoji 😀🎉👩‍👩‍👧‍👦🏳️‍🌈 and combining e\u0301\u0302\u0303",
    "\U0001f600" * 50,
    "x" * 2000,
    "\u0000\u0001 control \t\n\r characters",
]


def gauge(metrics: Metrics, name: str) -> float:
    value = metrics.registry.get_sample_value(name)
    assert value is not None
    return value


def test_the_bound_holds_for_wordpiece(tiny_bundle: Path) -> None:
    tokenizer = TextTokenizer(tiny_bundle / "tokenizer.json", 128)
    assert tokenizer.added_tokens == 2  # [CLS] and [SEP]
    for text, encoded in zip(TEXTS, tokenizer.encode_each(TEXTS), strict=True):
        assert len(encoded) <= token_bound(text, tokenizer.max_tokens, tokenizer.added_tokens), text
    assert token_bound("x" * 2000, 128, 2) == 128  # capped at the model's maximum


def test_the_bound_holds_for_byte_level_bpe_where_characters_do_not() -> None:
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(["plain ascii words only, a few of them"] * 20, vocab_size=300, show_progress=False)
    for text in TEXTS:
        tokens = len(bpe.encode(text).ids)
        assert tokens <= token_bound(text, 1 << 20, 0), text
    emoji = "\U0001f600" * 50
    assert len(bpe.encode(emoji).ids) > len(emoji)  # 4 tokens a character: characters are no bound


def test_two_budgets_and_the_empty_queue() -> None:
    metrics = Metrics()
    admission = Admission(10, 1000, 0.5, metrics, retry_after=lambda waiting: waiting / 1000)
    huge = admission.reserve(1, 5000)  # over the whole budget, but the queue is empty: admitted alone
    with pytest.raises(Overloaded) as raised:
        admission.reserve(1, 1)
    assert "5000 tokens queued, bound 1000" in str(raised.value) and raised.value.retry_after_s == 5.0
    huge.close()
    first = admission.reserve(4, 600)
    with pytest.raises(Overloaded):
        admission.reserve(1, 401)  # tokens
    with pytest.raises(Overloaded):
        admission.reserve(7, 10)  # texts
    assert gauge(metrics, "atento_queue_tokens") == 600 and admission.texts == 4
    first.settle(150)  # tokenised: the real count replaces the bound
    second = admission.reserve(6, 850)
    assert gauge(metrics, "atento_queue_tokens") == 1000
    first.release(1, 50)  # one text went into a batch
    assert gauge(metrics, "atento_queue_tokens") == 950 and admission.texts == 9
    first.close()
    second.close()
    first.close()  # closing twice frees nothing twice
    assert admission.tokens == admission.texts == 0
    assert gauge(metrics, "atento_queue_capacity_tokens") == 1000 and gauge(metrics, "atento_queue_capacity") == 10
    assert metrics.registry.get_sample_value("atento_rejected_requests_total", {"reason": "queue_full"}) == 3


def test_bulk_holds_only_its_share_and_interactive_always_finds_room() -> None:
    admission = Admission(100, 1000, 0.5, Metrics(), retry_after=lambda waiting: 0.1)
    admission.reserve(1, 10)  # not empty: the share applies
    admission.reserve(10, 480, bulk=True)
    with pytest.raises(Overloaded) as raised:
        admission.reserve(1, 21, bulk=True)
    assert "bulk requests may hold 50%" in str(raised.value)
    interactive = admission.reserve(10, 500)  # the rest of the queue is interactive's
    assert admission.tokens == 990 and admission.bulk_tokens == 480
    interactive.close()


def test_the_priority_header() -> None:
    assert bulk_requested(True, None)
    assert bulk_requested(False, [("atento-priority", "bulk")])
    assert not bulk_requested(False, [("atento-priority", "interactive"), ("other", "x")])
    assert not bulk_requested(False, ())
    with pytest.raises(InvalidArgument, match="atento-priority: 'urgent' is not one of interactive, bulk"):
        bulk_requested(False, [("atento-priority", "urgent")])
