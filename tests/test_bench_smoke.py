"""`python -m tests.bench --quick`: the benchmark runs end to end and writes every row (no timing asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.bench.report import END, LABELS, START
from tests.conftest import ROOT


def test_quick_bench_writes_every_row(minilm_bundle: Path, tmp_path: Path) -> None:
    bundles = tmp_path / "bundles"
    bundles.mkdir()
    (bundles / "minilm").symlink_to(minilm_bundle)
    out = tmp_path / "BENCHMARKS.md"
    out.write_text(f"# kept above\n\n{START}\nold\n{END}\n\nkept below\n")
    result = subprocess.run(
        [sys.executable, "-m", "tests.bench", "--quick", "--bundles", str(bundles), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    text = out.read_text()
    assert text.startswith("# kept above") and text.rstrip().endswith("kept below") and "\nold\n" not in text
    for label in LABELS.values():
        assert f"| {label} |" in text, label
    for target in ("serving efficiency", "vs sentence-transformers", "single-text p50", "attention graph loaded",
                   "all-layer attention", "int8 cosine", "int8 throughput", "share of matmul peak"):  # fmt: skip
        assert target in text, target
    assert "Padding waste" in text and "Peak RSS" in text and "matmul peak" in text


def test_front_doors_bench_prints_the_three_doors(tiny_bundle: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "tests.bench.front_doors",
        "--bundle",
        str(tiny_bundle),
        "--calls",
        "64",
        "--max-chars",
        "200",
    ]
    result = subprocess.run(
        [*command, "--rounds", "1"], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    for door in ("| gRPC `Embed` |", "| KServe v2 `ModelInfer` |", "| OpenAI HTTP `/v1/embeddings` |"):
        assert door in result.stdout
