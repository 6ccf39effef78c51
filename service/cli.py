"""`atento serve` / `python -m atento.service`: start the gRPC server."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None, prog: str = "atento serve") -> int:
    try:
        from pydantic import ValidationError

        from .config import add_flags, settings_from
        from .logs import configure as configure_logs
        from .memory import keep_freed_memory
        from .server import serve
    except ImportError as error:  # a client-only install
        print(
            f"{prog}: the server needs its extra: pip install 'atento[serve]' (or 'atento[gpu]'): {error}",
            file=sys.stderr,
        )
        return 2
    cli = argparse.ArgumentParser(
        prog=prog,
        description="Serve a bundle over gRPC. Every flag also reads from its ATENTO_* environment variable.",
    )
    add_flags(cli)
    args = cli.parse_args(argv)
    try:
        settings = settings_from(args)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in error.errors())
        print(f"{prog}: error: {problems}", file=sys.stderr)
        return 2
    try:
        configure_logs(settings.log_level, settings.log_format, settings.log_interval_s)
    except ImportError as error:
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 2
    keep_freed_memory()
    return asyncio.run(serve(settings))
