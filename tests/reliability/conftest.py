"""Reliability runs come in two sizes: the CI variant (default) and the full one (`make soak`,
ATENTO_SOAK=1). Each test records its figures; the session prints them as one table, and the full
run writes that table into BENCHMARKS.md between the reliability markers."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

SOAK = bool(os.environ.get("ATENTO_SOAK"))
START, END = "<!-- reliability:start -->", "<!-- reliability:end -->"
RESULTS: list[tuple[str, dict[str, Any]]] = []


def scale(ci: Any, soak: Any) -> Any:
    """The CI value, or the full one under `make soak`."""
    return soak if SOAK else ci


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Callable[..., None]:
    """record(key=value, ...): figures for this test's row of the summary table."""

    def add(**figures: Any) -> None:
        RESULTS.append((request.node.name, figures))

    return add


def _row(name: str, figures: dict[str, Any]) -> str:
    text = ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in figures.items())
    return f"| {name} | {text} |"


def _table(earlier: str = "") -> str:
    """This run's rows; rows of checks this run did not include stay as ``earlier`` had them."""
    rows = {line.split(" | ", 1)[0][2:]: line for line in earlier.splitlines() if line.startswith("| test_")}
    rows.update((name, _row(name, figures)) for name, figures in RESULTS)
    return "\n".join(["| check | figures |", "|---|---|", *rows.values()])


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not RESULTS:
        return
    terminalreporter.write_sep("=", f"reliability summary ({'full: make soak' if SOAK else 'CI variant'})")
    terminalreporter.write_line(_table())
    if SOAK:
        path = ROOT / "BENCHMARKS.md"
        text = path.read_text()
        if START in text:
            before, rest = text.split(START, 1)
            earlier, after = rest.split(END, 1)
            heading = (
                f"Full variants (`make soak`; last written {date.today()}; re-running one file with"
                " `ATENTO_SOAK=1` rewrites only its rows). Calls lost in every check: 0 unless its row says otherwise."
            )
            path.write_text(f"{before}{START}\n{heading}\n\n{_table(earlier)}\n{END}{after}")


def proc_status(pid: int) -> dict[str, int]:
    """RSS (KiB), threads and open file descriptors of a process, from /proc."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "Threads"):
            fields[key] = int(value.split()[0])
    fields["fds"] = len(list(Path(f"/proc/{pid}/fd").iterdir()))
    return fields
