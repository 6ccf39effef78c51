"""Reading a sentence-transformers directory: what is honoured, and what is refused naming file and field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from atento.export.config import CheckpointError
from atento.export.sentence_transformers import read_sentence_spec

from tests.conftest import export_bundle
from tests.st_directories import Layout, tiny_checkpoint, write_directory

TRANSFORMER = {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"}
POOLING = {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}


def directory(tmp_path: Path, files: dict[str, Any], modules: list[dict[str, Any]] | None = None) -> Path:
    (tmp_path / "modules.json").write_text(json.dumps(modules or [TRANSFORMER, POOLING]))
    files.setdefault("1_Pooling/config.json", {"word_embedding_dimension": 32, "pooling_mode_mean_tokens": True})
    for name, value in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(json.dumps(value))
    return tmp_path


@pytest.mark.fast
def test_settings_are_read_from_every_file(tmp_path: Path) -> None:
    spec = read_sentence_spec(
        directory(
            tmp_path,
            {
                "sentence_bert_config.json": {"max_seq_length": 64, "do_lower_case": True},
                "1_Pooling/config.json": {
                    "embedding_dimension": 32,
                    "pooling_mode": "lasttoken",
                    "include_prompt": False,
                },
                "config_sentence_transformers.json": {"prompts": {"q": "q: "}, "default_prompt_name": "q"},
            },
        ),
        hidden_size=32,
        max_positions=128,
    )
    assert (spec.max_seq_length, spec.do_lower_case, spec.pooling, spec.include_prompt) == (
        64,
        True,
        "lasttoken",
        False,
    )
    assert (spec.prompts, spec.default_prompt_name, spec.normalize, spec.dense) == ({"q": "q: "}, "q", False, ())


@pytest.mark.fast
def test_the_limit_falls_back_to_the_tokenizer_then_the_positions(tmp_path: Path) -> None:
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 100}))
    assert read_sentence_spec(directory(tmp_path, {}), 32, 128).max_seq_length == 100
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 1e30}))
    assert read_sentence_spec(tmp_path, 32, 128).max_seq_length == 128


@pytest.mark.fast
@pytest.mark.parametrize(
    ("files", "modules", "message"),
    [
        (
            {},
            [TRANSFORMER, POOLING, {"type": "sentence_transformers.models.LayerNorm", "path": "2"}],
            r"modules\.json: \[2\]\.type 'sentence_transformers\.models\.LayerNorm' is not a module atento supports "
            r"\(Transformer, Pooling, Dense, Normalize\)",
        ),
        (
            {"1_Pooling/config.json": {"pooling_mode_mean_tokens": True, "pooling_mode_attention": True}},
            None,
            r"1_Pooling/config\.json: pooling_mode_attention is not a setting atento knows how to honour",
        ),
        (
            {"1_Pooling/config.json": {"pooling_mode": ["cls", "mean"]}},
            None,
            r"1_Pooling/config\.json: pooling_mode combines several pooling modes",
        ),
        (
            {"1_Pooling/config.json": {"pooling_mode": "median"}},
            None,
            r"1_Pooling/config\.json: pooling_mode 'median' is not a pooling mode atento knows",
        ),
        (
            {"2_Dense/config.json": {"in_features": 32, "out_features": 8, "activation_function": "torch.nn.Mish"}},
            [TRANSFORMER, POOLING, {"type": "sentence_transformers.models.Dense", "path": "2_Dense"}],
            r"2_Dense/config\.json: activation_function 'torch\.nn\.Mish' is not an activation atento knows",
        ),
        (
            {"sentence_bert_config.json": {"max_seq_length": 64, "tokenizer_args": {"strip_accents": True}}},
            None,
            r"sentence_bert_config\.json: tokenizer_args .* is not supported",
        ),
        (
            {"sentence_bert_config.json": {"lowercase_everything": True}},
            None,
            r"sentence_bert_config\.json: lowercase_everything is not a setting atento knows how to honour",
        ),
        (
            {"config_sentence_transformers.json": {"prompts": {"q": "q: "}, "default_prompt_name": "d"}},
            None,
            r"config_sentence_transformers\.json: default_prompt_name 'd' is not one of the prompts",
        ),
        ({}, [TRANSFORMER], r"modules\.json: modules names no Pooling module"),
    ],
)
def test_what_cannot_be_honoured_is_refused(
    tmp_path: Path, files: dict[str, Any], modules: list[dict[str, Any]] | None, message: str
) -> None:
    with pytest.raises(CheckpointError, match=message):
        read_sentence_spec(directory(tmp_path, files, modules), hidden_size=32, max_positions=128)


def test_export_refuses_an_unknown_module_in_one_line(tmp_path: Path) -> None:
    source = write_directory(tmp_path / "model", tiny_checkpoint(tmp_path / "checkpoint"), Layout())
    modules = json.loads((source / "modules.json").read_text())
    modules.append({"idx": 2, "name": "2", "path": "2_CNN", "type": "sentence_transformers.models.CNN"})
    (source / "modules.json").write_text(json.dumps(modules))
    result = export_bundle(str(source), tmp_path / "out")
    assert result.returncode == 1
    (line,) = [line for line in result.stderr.splitlines() if "error" in line]
    assert "modules.json: [2].type 'sentence_transformers.models.CNN' is not a module atento supports" in line
    assert "(Transformer, Pooling, Dense, Normalize)" in line
    assert not (tmp_path / "out").exists()
