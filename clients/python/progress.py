"""Progress bars for long commands (`embed -f`, `bench`): tqdm on stderr, and only on a terminal.

Piped or redirected output gets no bar at all, so logs and files never fill with carriage returns.
tqdm comes with the client extra (`pip install 'atento[client]'`); without it a command runs with no bar.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any, Protocol


class Bar(Protocol):
    def update(self, n: float = 1) -> Any: ...

    def close(self) -> None: ...


class NoBar:
    """What a command gets when stderr is not a terminal: the same methods, doing nothing."""

    def update(self, n: float = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: float | Callable[[], float | None] | None, unit: str, description: str = "") -> Bar:
    """A bar counting ``unit``s up to ``total`` (None: a running count and rate) when stderr is a TTY.

    ``total`` may be a function, called only when a bar is shown (counting a file's lines reads it)."""
    if not sys.stderr.isatty():
        return NoBar()
    try:
        from tqdm import tqdm
    except ImportError:  # a bare `pip install atento`: the bar is a nicety, the command still runs
        return NoBar()
    count = total() if callable(total) else total
    bar: Bar = tqdm(total=count, unit=unit, desc=description or None, file=sys.stderr, dynamic_ncols=True)
    return bar
