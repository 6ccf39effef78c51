"""Every refusal or drop reason the service counts is exported at 0 from the start: a reason missing
from the pre-registered list has no series until its first event, and alert rules on rate() miss it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from atento.service.metrics import DROP_REASONS, REJECTION_REASONS

SERVICE = Path(__file__).resolve().parents[2] / "service"
COUNTED = re.compile(r"\.(rejected|dropped)\.labels\((f?)\"([^\"]+)\"\)")


def counted_reasons() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {"rejected": set(), "dropped": set()}
    for source in SERVICE.glob("*.py"):
        for counter, formatted, label in COUNTED.findall(source.read_text()):
            # f"unauthenticated_{reason}": the two values auth.py computes.
            labels = [label.replace("{reason}", r) for r in ("missing", "wrong")] if formatted else [label]
            found[counter].update(labels)
    return found


@pytest.mark.fast
def test_every_counted_reason_is_exported_from_the_start() -> None:
    found = counted_reasons()
    assert found["rejected"], "no rejected.labels(...) call found: the pattern no longer matches the code"
    assert found["rejected"] <= set(REJECTION_REASONS), found["rejected"] - set(REJECTION_REASONS)
    assert found["dropped"] <= set(DROP_REASONS), found["dropped"] - set(DROP_REASONS)
