"""The `atento` command line: one console script for the client, the server and the exporter.

`serve` and `export` import the server and the exporter only when run, so a client-only install
(`pip install atento[client]`) has every client command.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    command, rest = (args[0], args[1:]) if args else ("--help", [])
    if command == "serve":
        from atento.service.cli import main as serve

        return serve(rest)
    if command == "export":
        from atento.export.cli import main as export

        return export(rest)
    print("usage: atento {serve,export} ...", file=sys.stderr)
    return 0 if command in ("-h", "--help") else 2
