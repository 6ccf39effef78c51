"""Golden vectors: what the default bundle answers for a few fixed texts, committed under tests/data/golden.

Users index these vectors; a change that moves any value beyond 1e-6 (int8: 1e-4) fails
tests/service/test_golden.py. To change them on purpose (a new model version, a deliberate numeric
change), regenerate them through a real server and commit the new files with the reason:

    python -m tests.golden --bundle bundles/minilm --int8-bundle bundles/minilm-int8
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from atento.v1 import encoder_pb2 as pb

from tests.servers import running_server

GOLDEN = Path(__file__).resolve().parent / "data" / "golden"
TEXTS = [
    "A man is eating food.",
    "Sentei no banco da praça para esperar o banco abrir.",
    "The quick brown fox jumps over the lazy dog.",
    "query: how many tokens does a sentence need?",
    "Ünïcödé, emoji 🙂 and CJK 漢字 in one line.",
    "long " * 300,  # past max_seq_length (256): cut, as sentence-transformers cuts it
]
TOLERANCE = {"fp32": 1e-6, "int8": 1e-4}


def golden_file(precision: str) -> Path:
    return GOLDEN / f"minilm-{precision}.npy"


def embed(bundle: Path) -> np.ndarray:
    """The pooled vectors of TEXTS, through a real server on ``bundle``: (texts, 384) float32."""
    with running_server(bundle) as server:
        request = pb.EmbedRequest(texts=TEXTS, truncation=pb.TRUNCATION_CUT)
        response = server.stub().Embed(request, timeout=60)
    return np.stack([np.frombuffer(r.embedding.data, "<f4") for r in response.results])


def quantize(bundle: Path, out: Path) -> Path:
    """`atento export --from-bundle BUNDLE --quantize int8`: the int8 variant, as users make it."""
    command = [sys.executable, "-m", "atento.export", "--from-bundle", str(bundle), "--quantize", "int8"]
    result = subprocess.run(
        [*command, "--out", str(out), "--force"], capture_output=True, text=True, check=False, env=dict(os.environ)
    )
    if result.returncode:
        raise RuntimeError(f"int8 export failed:\n{result.stderr}")
    return out


def main(argv: Sequence[str] | None = None) -> int:
    cli = argparse.ArgumentParser(prog="python -m tests.golden", description="Regenerate the golden vectors.")
    cli.add_argument("--bundle", type=Path, required=True, help="an fp32 bundle of the default model")
    cli.add_argument("--int8-bundle", type=Path, help="its int8 variant (default: derived from --bundle)")
    args = cli.parse_args(argv)
    int8 = args.int8_bundle or quantize(args.bundle, args.bundle.parent / f"{args.bundle.name}-int8")
    GOLDEN.mkdir(parents=True, exist_ok=True)
    for precision, bundle in (("fp32", args.bundle), ("int8", int8)):
        np.save(golden_file(precision), embed(bundle), allow_pickle=False)
        print(f"wrote {golden_file(precision)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
