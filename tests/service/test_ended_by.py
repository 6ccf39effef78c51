"""A call cut short is counted by what ended it: its deadline, or the client leaving; one that returns
after its deadline passed (a stream whose requests gRPC ended at the deadline) counts as the deadline."""

from __future__ import annotations

from typing import Any, cast

import grpc
import pytest
from atento.service.calls import ended_by, past_deadline


class Remaining:
    """The one thing ended_by reads of a servicer context: the time left of the call's deadline."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds

    def time_remaining(self) -> float | None:
        return self.seconds


@pytest.mark.fast
@pytest.mark.parametrize(
    ("allowed", "remaining", "code"),
    [
        (0.2, 0.0, grpc.StatusCode.DEADLINE_EXCEEDED),
        (0.2, 0.007, grpc.StatusCode.DEADLINE_EXCEEDED),  # the header's trip: measured up to ~7 ms
        (0.2, 0.1, grpc.StatusCode.CANCELLED),  # half its time left: the client left
        (60.0, 2.0, grpc.StatusCode.DEADLINE_EXCEEDED),  # 3 % of a long deadline: still the deadline
        (60.0, 10.0, grpc.StatusCode.CANCELLED),
        (None, None, grpc.StatusCode.CANCELLED),  # no deadline: only the client can end it
    ],
)
def test_a_cut_call_is_counted_by_what_ended_it(
    allowed: float | None, remaining: float | None, code: grpc.StatusCode
) -> None:
    assert ended_by(cast(Any, Remaining(remaining)), allowed) == code


@pytest.mark.fast
@pytest.mark.parametrize(
    ("allowed", "remaining", "passed"),
    [
        (1.0, 0.0, True),  # gRPC's time_remaining() stops at zero
        (1.0, 0.001, False),  # returned in time, however narrowly
        (None, None, False),  # no deadline: it cannot pass
    ],
)
def test_a_call_that_returns_after_its_deadline_counts_as_the_deadline(
    allowed: float | None, remaining: float | None, passed: bool
) -> None:
    assert past_deadline(cast(Any, Remaining(remaining)), allowed) is passed
