"""What each client command of `atento` does."""

from __future__ import annotations

import argparse
import json
import sys
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from .bench import run_bench
from .client import Client
from .connection import Connection
from .heatmap import render_png, render_table
from .messages import AttentionSelection
from .options import connection_options
from .progress import progress_bar
from .waiting import waiting_notice


def connect(args: argparse.Namespace) -> Client:
    return Client(**connection_options(args))


def numbered_lines(path: str, numbers: deque[int], blank: list[int]) -> Iterator[str]:
    """The texts of a file ('-': stdin), one per line. Each text's line number (from 1) goes on
    ``numbers`` as it is read; blank lines are not sent, their numbers go on ``blank``."""
    handle = sys.stdin if path == "-" else Path(path).open(encoding="utf-8")  # noqa: SIM115 (closed below)
    try:
        for number, line in enumerate(handle, start=1):
            text = line.rstrip("\r\n")
            if not text.strip():
                blank.append(number)
                continue
            numbers.append(number)
            yield text
    finally:
        if handle is not sys.stdin:
            handle.close()


def count_lines(path: str) -> int | None:
    """How many lines a file has (the progress bar's total); None for stdin or a pipe, read only once."""
    if path == "-" or not Path(path).is_file():
        return None
    with Path(path).open("rb") as handle:
        return sum(1 for _ in handle)


def label(text: str, width: int = 24) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def report_blank(path: str, blank: list[int], shown: int = 20) -> None:
    if blank:
        numbers = ", ".join(map(str, blank[:shown])) + (", …" if len(blank) > shown else "")
        lines = "line" if len(blank) == 1 else "lines"
        print(f"atento embed: {path}: skipped {len(blank)} blank {lines}: {numbers}", file=sys.stderr)


def embed_file(args: argparse.Namespace, client: Client, options: dict[str, Any]) -> int:
    """Any number of lines over one stream, results printed as they come (JSON Lines, one per text),
    or gathered into the .npy of ``-o``; a progress bar on stderr when it is a terminal."""
    numbers: deque[int] = deque()  # line numbers of the texts sent and not yet answered
    blank: list[int] = []
    rows: list[np.ndarray] = []
    bar, done = progress_bar(lambda: count_lines(args.file), "line", "embed"), 0  # counted for a bar only
    try:
        texts = numbered_lines(args.file, numbers, blank)
        for encoding in client.embed_stream(texts, batch_size=args.batch, **options):
            number = numbers.popleft()  # results come in input order
            bar.update(number - done)
            done = number
            if encoding.embedding is None:
                continue
            if args.output:
                rows.append(encoding.embedding)
            else:
                print(json.dumps({"line": number, "embedding": encoding.embedding.astype(float).tolist()}), flush=True)
    finally:
        bar.close()
    report_blank(args.file, blank)
    if not done:
        raise ValueError(f"no texts in {args.file}: every line is blank")
    if args.output:
        save(args.output, np.stack(rows), client.info().name)
    return 0


def save(path: str, matrix: np.ndarray, model: str) -> None:
    np.save(path, matrix)
    print(f"wrote {path}: {matrix.shape[0]} x {matrix.shape[1]} {matrix.dtype} ({model})")


def embed(args: argparse.Namespace) -> int:
    if not args.texts and not args.file:
        raise ValueError("give texts, or -f FILE")
    options = {"normalize": args.normalize, "pooling": args.pooling, "dtype": args.dtype, "truncate": args.truncate}
    options |= {"prompt_name": args.prompt_name, "prompt": args.prompt, "dimensions": args.dimensions}
    with connect(args) as client:
        if args.file:
            return embed_file(args, client, options)
        result = client.embed(args.texts, **options)
    matrix = np.stack([r.embedding for r in result.results if r.embedding is not None])
    if args.output:
        save(args.output, matrix, result.model)
    else:
        print(
            json.dumps(
                {"model": result.model, "shape": list(matrix.shape), "embeddings": matrix.astype(float).tolist()}
            )
        )
    return 0


def similarity(args: argparse.Namespace) -> int:
    with connect(args) as client:
        matrix = client.similarity(args.texts)
    labels = [label(t) for t in args.texts]
    width = max(len(x) for x in labels)
    print(" " * (width + 2) + "  ".join(f"{i:>6}" for i in range(len(labels))))
    for i, (name, row) in enumerate(zip(labels, matrix, strict=True)):
        print(f"{name:<{width}}  " + "  ".join(f"{v:6.3f}" for v in row) + f"   [{i}]")
    return 0


def tokenize(args: argparse.Namespace) -> int:
    with connect(args) as client:
        (tokenized,) = client.tokenize(args.text, truncate=args.truncate)
    print(f"{'#':>4}  {'id':>6}  {'token':<16} {'start':>5} {'end':>5}  text")
    for i, t in enumerate(tokenized.tokens):
        print(f"{i:>4}  {t.id:>6}  {t.text:<16} {t.start:>5} {t.end:>5}  {args.text[t.start : t.end]}")
    if tokenized.truncated:
        print("(truncated at the model's maximum)")
    return 0


def info(args: argparse.Namespace) -> int:
    with connect(args) as client:
        details = asdict(client.info())
    if args.json:
        print(json.dumps(details, indent=2))
        return 0
    limits = details.pop("limits")
    for key, value in {**details, **{f"limits.{k}": v for k, v in limits.items()}}.items():
        print(f"{key:<32} {value}")
    return 0


def health(args: argparse.Namespace) -> int:
    with connect(args) as client:
        status = client.health(args.service)
    print(status)
    return 0 if status == "SERVING" else 1


def attention(args: argparse.Namespace) -> int:
    heads = [] if args.head is None else [args.head]
    selection = AttentionSelection([args.layer], heads, average_heads=args.head is None)
    with connect(args) as client:
        (encoding,) = client.embed(args.text, attention=selection).results
    assert encoding.attention_maps is not None
    matrix = encoding.attention_maps[0, 0]  # (tokens, tokens): the one layer and head asked for
    tokens = [t.text for t in encoding.tokens]
    title = f"layer {args.layer}, " + ("mean of all heads" if args.head is None else f"head {args.head}")
    if args.png:
        render_png(matrix, tokens, title, args.png)
        print(f"wrote {args.png}: {title}, {len(tokens)} tokens")
    else:
        print(render_table(matrix, tokens, title, color=sys.stdout.isatty()))
    return 0


COMMANDS = {
    "embed": embed,
    "similarity": similarity,
    "tokenize": tokenize,
    "info": info,
    "health": health,
    "attention": attention,
    "bench": run_bench,
}


def run(args: argparse.Namespace) -> int:
    """Run one command; "waiting for TARGET…" on stderr if no server is ready within a second."""
    with waiting_notice(Connection(**connection_options(args))):
        return COMMANDS[args.command](args)
