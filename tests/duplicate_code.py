"""`make duplicates`: no run of six or more lines repeated inside the product code.

pylint's similarity checker (``Symilar``) does the comparison. Its own import filter parses every
file with astroid, which infers into torch and takes minutes, so import statements are blanked
here with the standard library's parser instead; comments and docstrings are ignored by Symilar.
Usage: ``python -m tests.duplicate_code FILE...``; exit status 1 when anything repeats.
"""

from __future__ import annotations

import ast
import io
import sys
from contextlib import redirect_stdout
from pathlib import Path

from pylint.checkers.symilar import Symilar

MIN_LINES = 6


def without_imports(source: str) -> str:
    """The source with every import statement's lines blanked (line numbers stay where they were)."""
    lines = source.splitlines(keepends=True)
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            for number in range(node.lineno, (node.end_lineno or node.lineno) + 1):
                lines[number - 1] = "\n"
    return "".join(lines)


def main(paths: list[str]) -> int:
    symilar = Symilar(min_lines=MIN_LINES, ignore_comments=True, ignore_docstrings=True)
    for path in paths:
        symilar.append_stream(path, io.StringIO(without_imports(Path(path).read_text(encoding="utf-8"))))
    report = io.StringIO()
    with redirect_stdout(report):
        symilar.run()
    repeated = [line for line in report.getvalue().splitlines() if line.startswith("==")]
    if repeated:
        print(report.getvalue())
        print(f"{len(repeated) // 2} runs of {MIN_LINES}+ repeated lines: say it once", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
