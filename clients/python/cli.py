"""The `atento` command line: one console script for the client, the server and the exporter.

`serve` and `export` import the server and the exporter only when run, so a client-only install
(`pip install atento[client]`) has every client command.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib import metadata
from typing import NoReturn

from . import commands
from .errors import AtentoError
from .options import add_connection_flags

DELEGATED = {"serve": "start the gRPC server (atento serve --help)", "export": "build a bundle (atento export --help)"}


def version() -> str:
    try:
        return metadata.version("atento")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


class OneLineParser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def parser() -> argparse.ArgumentParser:
    cli = OneLineParser(prog="atento", description="Embeddings, tokens and attention maps from an atento server.")
    cli.add_argument("--version", action="version", version=f"atento {version()}")
    sub = cli.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for name, text in DELEGATED.items():
        sub.add_parser(name, help=text, add_help=False)

    embed = sub.add_parser("embed", help="print embeddings as JSON, or save them as .npy")
    embed.add_argument("texts", nargs="*", metavar="TEXT")
    embed.add_argument(
        "-f",
        "--file",
        help="read one text per line from FILE ('-' for stdin); without -o, print one JSON line per text as its "
        'result comes, {"line": N, "embedding": [...]}; blank lines are not sent: their line numbers are '
        "reported on stderr; a progress bar on stderr when it is a terminal",
    )
    embed.add_argument("-o", "--output", help="write the (texts, hidden) array to this .npy file")
    embed.add_argument(
        "--pooling",
        choices=["mean", "cls", "max", "mean_sqrt_len", "weighted_mean", "last_token"],
        help="default: the model's own",
    )
    embed.add_argument(
        "--normalize", action=argparse.BooleanOptionalAction, default=None, help="default: the model's own"
    )
    embed.add_argument("--dtype", choices=["float32", "float16"], default="float32")
    embed.add_argument("--prompt-name", help="one of the model's prompts (atento info); default: the model's default")
    embed.add_argument("--prompt", help="a prompt's text, put in front of every text ('' for none)")
    embed.add_argument("--dimensions", type=int, help="keep the first N dimensions (Matryoshka); default: all")
    embed.add_argument("--truncate", action="store_true", help="cut texts over the model's maximum instead of failing")
    embed.add_argument("--batch", type=int, default=32, help="texts per request when reading a file (default 32)")

    similar = sub.add_parser("similarity", help="print the cosine similarity matrix of texts as a table")
    similar.add_argument("texts", nargs="+", metavar="TEXT")

    tokenize = sub.add_parser("tokenize", help="print the tokens of a text with their ids and character offsets")
    tokenize.add_argument("text", metavar="TEXT")
    tokenize.add_argument("--truncate", action="store_true")

    info = sub.add_parser("info", help="print what the server serves")
    info.add_argument("--json", action="store_true", help="machine-readable output")

    health = sub.add_parser("health", help="print the health status; exit 0 only when SERVING")
    health.add_argument("--service", default="", help="health service name ('' = the whole server, 'liveness')")

    attention = sub.add_parser(
        "attention", help="show a text's attention map (what each token attends to), as a table or a PNG heatmap"
    )
    attention.add_argument("text", metavar="TEXT")
    attention.add_argument("--layer", type=int, required=True, help="0-based layer")
    attention.add_argument("--head", type=int, help="0-based head (default: the mean over all heads)")
    attention.add_argument("--png", help="write a heatmap with the tokens on both axes (needs atento[plot])")

    bench = sub.add_parser("bench", help="load-test a server: throughput and latency percentiles")
    amount = bench.add_mutually_exclusive_group(required=True)
    amount.add_argument("--requests", type=int, help="send this many requests")
    amount.add_argument("--duration", type=float, help="send requests for this many seconds")
    bench.add_argument("--concurrency", type=int, default=8, help="requests in flight at once (default 8)")
    bench.add_argument("--batch", type=int, default=1, help="texts per request (default 1)")
    bench.add_argument("--texts", help="one text per line (default: sentences of Pride and Prejudice)")
    bench.add_argument("--json", action="store_true", help="print the figures as JSON")

    for name, child in sub.choices.items():
        if name not in DELEGATED:
            add_connection_flags(child)
    return cli


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "serve":
        from atento.service.cli import main as serve

        return serve(args[1:])
    if args and args[0] == "export":
        from atento.export.cli import main as export

        return export(args[1:])
    cli = parser()
    parsed = cli.parse_args(args)
    if parsed.command is None:
        cli.print_help()
        return 2
    try:
        return commands.run(parsed)
    except AtentoError as error:
        code = error.code.name if error.code is not None else "ERROR"
        hint = (
            f" (is a server running at {','.join(parsed.target)}?)"
            if code in ("UNAVAILABLE", "DEADLINE_EXCEEDED")
            else ""
        )
        said = f"{code} [{error.reason}]" if error.reason else f"{code}:"  # the reason, when the server sent one
        print(f"atento {parsed.command}: {said} {error.message}{hint}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as error:
        print(f"atento {parsed.command}: error: {error}", file=sys.stderr)
        return 1
