"""The `atento` command line against a real server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.servers import ServerProcess

ATENTO = str(Path(sys.executable).parent / "atento")
COMMANDS = ["serve", "export", "embed", "similarity", "tokenize", "info", "health", "attention", "bench"]
SENTENCE = "Evan's dog Riley is so hyperactive, she never stops moving"


def atento(*args: str, target: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {"PATH": str(Path(sys.executable).parent)} | ({"ATENTO_TARGET": target} if target else {})
    result = subprocess.run([ATENTO, *args], capture_output=True, text=True, timeout=300, env=env, check=False)
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    result = atento(command, "--help")
    assert result.stdout.startswith(f"usage: atento {command}")


def test_top_level_help_lists_every_command() -> None:
    result = atento("--help")
    for command in COMMANDS:
        assert command in result.stdout


def test_embed_prints_json_and_writes_npy(minilm_server: ServerProcess, tmp_path: Path) -> None:
    printed = json.loads(atento("embed", "first text", "second text", target=minilm_server.target).stdout)
    assert printed["model"] == "all-MiniLM-L6-v2" and printed["shape"] == [2, 384]
    vectors = np.array(printed["embeddings"])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)

    lines = tmp_path / "texts.txt"
    lines.write_text("first text\n\nsecond text\nthird text\n")
    out = tmp_path / "vectors.npy"
    result = atento("embed", "-f", str(lines), "-o", str(out), "--batch", "2", "--target", minilm_server.target)
    assert "3 x 384" in result.stdout
    saved = np.load(out)
    np.testing.assert_allclose(saved[:2], vectors, atol=1e-6)


def test_embed_takes_a_prompt_and_dimensions(minilm_server: ServerProcess) -> None:
    target = minilm_server.target
    full = np.array(json.loads(atento("embed", SENTENCE, target=target).stdout)["embeddings"])
    cut = json.loads(atento("embed", SENTENCE, "--dimensions", "64", target=target).stdout)
    assert cut["shape"] == [1, 64]
    np.testing.assert_allclose(np.array(cut["embeddings"]), full[:, :64] / np.linalg.norm(full[:, :64]), atol=1e-5)
    prompted = np.array(
        json.loads(atento("embed", SENTENCE, "--prompt", "query: ", target=target).stdout)["embeddings"]
    )
    assert float((prompted @ full.T)[0, 0]) < 0.9999  # the prompt reached the model
    refused = atento("embed", SENTENCE, "--prompt-name", "query", target=target, check=False)
    assert refused.returncode != 0 and "prompt_name" in refused.stderr and "none" in refused.stderr


def test_similarity_prints_the_matrix(minilm_server: ServerProcess) -> None:
    out = atento("similarity", "A dog runs.", "A puppy runs.", "Markets fell.", target=minilm_server.target).stdout
    rows = [line for line in out.splitlines() if line.rstrip().endswith("]")]
    assert len(rows) == 3 and "1.000" in rows[0]
    values = [float(v) for v in rows[0].split()[-4:-1]]
    assert values[1] > values[2]


def test_tokenize_info_health(minilm_server: ServerProcess) -> None:
    out = atento("tokenize", "Mr. Darcy", target=minilm_server.target).stdout
    assert "darcy" in out and "[CLS]" in out and "Darcy" in out
    info = json.loads(atento("info", "--json", target=minilm_server.target).stdout)
    assert info["name"] == "all-MiniLM-L6-v2" and info["num_layers"] == 6
    assert "limits.max_texts_per_request" in atento("info", target=minilm_server.target).stdout
    assert atento("health", target=minilm_server.target).stdout.strip() == "SERVING"


def test_errors_are_one_line_with_the_status(minilm_server: ServerProcess) -> None:
    result = atento("embed", "", target=minilm_server.target, check=False)
    assert result.returncode == 1
    assert result.stderr.strip() == "atento embed: INVALID_ARGUMENT [EMPTY_TEXT] texts[0]: must not be empty"


def test_attention_table_and_png(minilm_server: ServerProcess, tmp_path: Path) -> None:
    table = atento("attention", SENTENCE, "--layer", "2", "--head", "3", target=minilm_server.target).stdout
    she = next(line for line in table.splitlines() if " she " in line)
    assert len(she.split(",")) == 3  # the row ends with the three tokens "she" attends to most
    png = tmp_path / "attention.png"
    out = atento("attention", SENTENCE, "--layer", "2", "--png", str(png), target=minilm_server.target).stdout
    assert "mean of all heads" in out and "16 tokens" in out
    with Image.open(png) as image:
        width, height = image.size
        assert image.format == "PNG" and width >= 700 and height >= 600  # sized to hold 16 labelled tokens


def test_attention_heatmap_labels_every_token() -> None:
    from atento.client.heatmap import heatmap

    tokens = ["[CLS]", "she", "never", "stops", "[SEP]"]
    axes = heatmap(np.eye(5) * 0.9 + 0.02, tokens, "layer 0, head 0").axes[0]
    assert [t.get_text() for t in axes.get_xticklabels()] == tokens
    assert [t.get_text() for t in axes.get_yticklabels()] == tokens
    assert axes.get_title() == "attention map, layer 0, head 0"


def test_bench_prints_the_figures(minilm_server: ServerProcess) -> None:
    out = atento("bench", "--concurrency", "4", "--requests", "40", "--batch", "2", target=minilm_server.target).stdout
    assert "texts/s" in out and "tokens/s" in out and "p99" in out and "errors       none" in out
    figures = json.loads(atento("bench", "--duration", "1", "--json", target=minilm_server.target).stdout)
    assert figures["requests"] > 0 and figures["texts_per_s"] > 0 and figures["p50_ms"] <= figures["p99_ms"]
