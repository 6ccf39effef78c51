"""What each client command of `atento` does."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np

from .bench import run_bench
from .client import Client
from .heatmap import render_png, render_table
from .messages import AttentionSelection
from .options import connection_options


def connect(args: argparse.Namespace) -> Client:
    return Client(**connection_options(args))


def read_lines(path: str) -> Iterator[str]:
    handle = sys.stdin if path == "-" else Path(path).open(encoding="utf-8")  # noqa: SIM115 (closed below)
    try:
        for line in handle:
            if line.strip():
                yield line.rstrip("\n")
    finally:
        if handle is not sys.stdin:
            handle.close()


def label(text: str, width: int = 24) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def embed(args: argparse.Namespace) -> int:
    if not args.texts and not args.file:
        raise ValueError("give texts, or -f FILE")
    options = {"normalize": args.normalize, "pooling": args.pooling, "dtype": args.dtype, "truncate": args.truncate}
    options |= {"prompt_name": args.prompt_name, "prompt": args.prompt, "dimensions": args.dimensions}
    with connect(args) as client:
        if args.file:  # any number of lines, over one stream, never all in memory at once but the result
            rows = [r.embedding for r in client.embed_stream(read_lines(args.file), batch_size=args.batch, **options)]
            model = client.info().name
        else:
            result = client.embed(args.texts, **options)
            rows, model = [r.embedding for r in result.results], result.model
    matrix = np.stack([r for r in rows if r is not None])
    if args.output:
        np.save(args.output, matrix)
        print(f"wrote {args.output}: {matrix.shape[0]} x {matrix.shape[1]} {matrix.dtype} ({model})")
    else:
        print(json.dumps({"model": model, "shape": list(matrix.shape), "embeddings": matrix.astype(float).tolist()}))
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
    return COMMANDS[args.command](args)
