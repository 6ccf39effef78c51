"""Admission: a request enters the queue by an upper bound on its tokens, known before tokenising.

The queue is measured in tokens (``--max-queued-tokens``) and in texts (``--max-queued-texts``),
both counted from the moment a request is admitted (before tokenising) until its texts leave for a
batch, so a refused request costs no tokenisation. The bound per text is
``min(model's max tokens, UTF-8 bytes + special tokens + 1)``: WordPiece, byte-level BPE and
SentencePiece never make more tokens than bytes (the 1 is SentencePiece's leading "▁"); a
normaliser that expands text (NFKC) could exceed it, and the reservation then grows to the real
count. After tokenising, the reservation shrinks to the real count.

At least one caller always makes progress: a request whose bound exceeds the whole budget is
admitted alone, when nothing else is queued (its bound over-estimates: its real tokens may fit).

Bulk requests (``bulk`` in the request, or metadata ``atento-priority: bulk``) may hold at most
``--bulk-queue-share`` of either bound, so interactive requests always find room.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import NoReturn

from .errors import InvalidArgument, Overloaded, Quota
from .logs import RateLimitedLog
from .metrics import Metrics

log = logging.getLogger("atento.admission")
QUEUE_FULL = RateLimitedLog(log)  # one line per interval however many calls are refused

PRIORITY_KEY = "atento-priority"
PRIORITIES = ("interactive", "bulk")


def token_bound(text: str, max_tokens: int, added_tokens: int) -> int:
    """At most how many tokens ``text`` becomes, from its UTF-8 length, without tokenising it."""
    size = len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))
    return min(max_tokens, size + added_tokens + 1)


def bulk_requested(flag: bool, metadata: Sequence[tuple[str, str | bytes]] | None) -> bool:
    """Whether a call is bulk: the request's ``bulk`` field, or its ``atento-priority`` header."""
    if flag:
        return True
    for key, value in metadata or ():
        if key == PRIORITY_KEY:
            if value not in PRIORITIES:
                raise InvalidArgument(PRIORITY_KEY, f"{value!r} is not one of {', '.join(PRIORITIES)}")
            return value == "bulk"
    return False


class Reservation:
    """One request's share of the queue: its texts and (an upper bound on) its tokens."""

    def __init__(self, admission: Admission, texts: int, tokens: int, bulk: bool) -> None:
        self.admission, self.texts, self.tokens, self.bulk = admission, texts, tokens, bulk

    def settle(self, tokens: int) -> None:
        """Tokenised: hold the real count instead of the bound."""
        self.admission.adjust(self, tokens - self.tokens, 0)
        self.tokens = tokens

    def release(self, texts: int, tokens: int) -> None:
        """Part of the request left the queue (taken into a batch, or dropped)."""
        texts, tokens = min(texts, self.texts), min(tokens, self.tokens)
        self.admission.adjust(self, -tokens, -texts)
        self.texts -= texts
        self.tokens -= tokens

    def close(self) -> None:
        """The request is over: whatever it still holds is free again."""
        self.release(self.texts, self.tokens)


class Admission:
    """The queue's two budgets, with the share bulk requests may hold."""

    def __init__(
        self,
        max_texts: int,
        max_tokens: int,
        bulk_share: float,
        metrics: Metrics,
        retry_after: Callable[[int], float],
    ) -> None:
        self.max_texts, self.max_tokens, self.bulk_share = max_texts, max_tokens, bulk_share
        self.metrics, self.retry_after = metrics, retry_after
        self.texts = self.tokens = 0  # admitted, not yet in a batch
        self.bulk_texts = self.bulk_tokens = 0
        metrics.queue_capacity.set(max_texts)
        metrics.queue_capacity_tokens.set(max_tokens)

    def reserve(self, texts: int, tokens: int, *, bulk: bool = False) -> Reservation:
        """Admit a request of ``texts`` texts and at most ``tokens`` tokens, or raise Overloaded."""
        share = self.bulk_share if bulk else 1.0
        held_texts = self.bulk_texts if bulk else self.texts
        held_tokens = self.bulk_tokens if bulk else self.tokens
        if self.texts or self.tokens:  # an empty queue admits anything: someone always progresses
            if held_texts + texts > self.max_texts * share or self.texts + texts > self.max_texts:
                self._refuse(f"{self.texts} texts queued, bound {self.max_texts}", texts, bulk, "max_queued_texts")
            if held_tokens + tokens > self.max_tokens * share or self.tokens + tokens > self.max_tokens:
                self._refuse(f"{self.tokens} tokens queued, bound {self.max_tokens}", texts, bulk, "max_queued_tokens")
        reservation = Reservation(self, 0, 0, bulk)
        self.adjust(reservation, tokens, texts)
        reservation.texts, reservation.tokens = texts, tokens
        return reservation

    def _refuse(self, why: str, texts: int, bulk: bool, limit: str) -> NoReturn:
        self.metrics.rejected.labels("queue_full").inc()
        retry_after = self.retry_after(self.tokens)
        kind = "bulk " if bulk else ""
        QUEUE_FULL.log("queue full: refused %d %stexts, retry after %.0f ms", texts, kind, retry_after * 1000)
        if bulk:
            why += f"; bulk requests may hold {self.bulk_share:.0%} of it"
        quota = Quota(limit, f"the queue holds at most {why.rsplit('bound ', 1)[-1]} {limit.rsplit('_', 1)[-1]}")
        raise Overloaded(f"queue full: {why}", retry_after, quota=quota)

    def adjust(self, reservation: Reservation, tokens: int, texts: int) -> None:
        self.tokens += tokens
        self.texts += texts
        if reservation.bulk:
            self.bulk_tokens += tokens
            self.bulk_texts += texts
        self.metrics.queue_tokens.set(self.tokens)
