"""The model the check runs: a random checkpoint of MiniLM's shape (or a tiny one, for CI), exported
to an fp32 and an fp16 bundle by the real `atento export` command, both at once.

Throughput does not depend on weight values, so no weights travel to the GPU machine: transformers
builds all-MiniLM-L6-v2's architecture from its config values (below, from its config.json) with
random weights, and the tokenizer is a WordPiece one trained on the committed corpus
(tests/export/random_checkpoints.py), so everything is built offline from this checkout.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.export.random_checkpoints import CASES, WORDPIECE, ArchitectureCase, write_checkpoint

# sentence-transformers/all-MiniLM-L6-v2's config.json and sentence_bert_config.json (max_seq_length)
MINILM = ArchitectureCase(
    "bert",
    WORDPIECE,
    {
        "hidden_size": 384,
        "num_hidden_layers": 6,
        "num_attention_heads": 12,
        "intermediate_size": 1536,
        "max_position_embeddings": 512,
        "hidden_act": "gelu",
        "layer_norm_eps": 1e-12,
        "type_vocab_size": 2,
    },
)
SHAPES = {"minilm": (MINILM, 256), "tiny": (CASES["bert"], 64)}  # case, max_seq_length
DTYPES = ("fp32", "fp16")
EXPORT_TIMEOUT_S = 600


@dataclass(frozen=True)
class Models:
    checkpoint: Path  # the sentence-transformers directory (transformers + tokenizer + ST modules)
    bundles: dict[str, Path]  # dtype -> bundle directory


def build(shape: str, work: Path, env: dict[str, str], reuse: bool = False) -> Models:
    """The checkpoint and both bundles under ``work``: rebuilt (a few seconds to a minute), or with
    ``reuse`` kept from an earlier run when all three are there (a rerun on a lent GPU saves the export)."""
    case, max_tokens = SHAPES[shape]
    checkpoint = work / f"{shape}-checkpoint"
    bundles = {dtype: work / f"{shape}-{dtype}" for dtype in DTYPES}
    built = [checkpoint / "model.safetensors", *(bundle / "manifest.json" for bundle in bundles.values())]
    if reuse and all(path.is_file() for path in built):
        return Models(checkpoint, bundles)
    write_checkpoint(case, checkpoint, seed=14, max_tokens=max_tokens)
    exports = {
        dtype: subprocess.Popen(
            [
                sys.executable,
                "-m",
                "atento.export",
                "--model",
                str(checkpoint),
                "--out",
                str(out),
                "--force",
                "--dtype",
                dtype,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        for dtype, out in bundles.items()
    }  # both at once: dynamo's tracing is mostly one Python thread each
    failures = []
    for dtype, process in exports.items():
        try:
            output, _ = process.communicate(timeout=EXPORT_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            for other in exports.values():
                other.kill()
            raise RuntimeError(f"atento export --dtype {dtype} took over {EXPORT_TIMEOUT_S} s") from None
        if process.returncode != 0:
            failures.append(f"atento export --dtype {dtype} failed ({process.returncode}):\n{output[-3000:]}")
    if failures:
        raise RuntimeError("\n".join(failures))
    return Models(checkpoint, bundles)
