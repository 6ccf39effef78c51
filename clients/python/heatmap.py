"""An attention map for people: a shaded table in the terminal, or a heatmap PNG with token labels.

An attention map is one layer's (and one head's, or the heads' mean) softmax probabilities: row i
says how much token i draws on each token of the text. Reading it as a grid of token labels is what
makes it useful, so both renderings label every token.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

SHADES = " ░▒▓█"


def _cell(level: float, color: bool) -> str:
    """Two characters shaded by ``level`` in [0, 1]."""
    if color:  # 24 grey levels of the 256-colour palette, black to white
        return f"\x1b[48;5;{232 + round(level * 23)}m  \x1b[0m"
    return SHADES[round(level * (len(SHADES) - 1))] * 2


def render_table(matrix: np.ndarray, tokens: Sequence[str], title: str, *, color: bool = False, top: int = 3) -> str:
    """Rows are the attending tokens (queries), columns the attended ones (keys).

    Each row is shaded relative to its own largest weight (every row sums to 1) and ends with the
    tokens it attends to most, with their weights.
    """
    width = max(len(t) for t in tokens)
    lines = [f"attention map, {title}: row = query, column = key; shade relative to the row's largest weight"]
    for i, (token, row) in enumerate(zip(tokens, matrix, strict=True)):
        peak = float(row.max()) or 1.0
        cells = "".join(_cell(float(v) / peak, color) for v in row)
        best = ", ".join(f"{tokens[j]} {row[j]:.2f}" for j in np.argsort(row)[::-1][:top])
        lines.append(f"{i:>3} {token:<{width}} {cells}  {best}")
    margin = " " * (width + 5)
    lines.append(margin + "".join(f"{j // 10 or ' '} " for j in range(len(tokens))))  # column numbers, tens
    lines.append(margin + "".join(f"{j % 10} " for j in range(len(tokens))))  # and units
    return "\n".join(lines)


def heatmap(matrix: np.ndarray, tokens: Sequence[str], title: str) -> Any:
    """A matplotlib Figure: the matrix as a heatmap, every token labelled on both axes."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.figure import Figure
    except ImportError as error:
        raise OSError(f"--png needs matplotlib: pip install 'atento[plot]' ({error})") from error
    size = max(4.0, 0.35 * len(tokens) + 2)
    figure = Figure(figsize=(size + 1.5, size))
    axes = figure.add_subplot()
    image = axes.imshow(matrix, cmap="viridis", vmin=0.0)
    axes.set_xticks(range(len(tokens)), labels=tokens, rotation=90)
    axes.set_yticks(range(len(tokens)), labels=tokens)
    axes.set_xlabel("attended token (key)")
    axes.set_ylabel("attending token (query)")
    axes.set_title(f"attention map, {title}")
    figure.colorbar(image, ax=axes, fraction=0.046, pad=0.04)
    figure.tight_layout()
    return figure


def render_png(matrix: np.ndarray, tokens: Sequence[str], title: str, path: str) -> None:
    heatmap(matrix, tokens, title).savefig(path, dpi=100)
