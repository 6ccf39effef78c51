"""Checkpoint loading: the key map, and refusals that name the key or value at fault."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from atento.export.checkpoint import key_table, load_encoder, open_checkpoint
from atento.export.config import CheckpointError
from atento.export.sources import minilm_directory, write_tiny_checkpoint
from safetensors.torch import load_file, save_file


@pytest.fixture
def tiny_dir(tmp_path: Path) -> Path:
    write_tiny_checkpoint(tmp_path / "tiny")
    return tmp_path / "tiny"


def test_minilm_loads_every_tensor_by_the_key_map() -> None:
    checkpoint = open_checkpoint(minilm_directory())
    assert (checkpoint.config.num_layers, checkpoint.config.num_heads, checkpoint.config.hidden_size) == (6, 12, 384)
    model = load_encoder(checkpoint)
    tensors = load_file(str(checkpoint.weights_file))
    table = key_table(model)
    assert len(table) == len(model.state_dict()) == 101  # 5 embedding tensors + 16 per layer
    ours = model.state_dict()
    for theirs, key in table.items():
        assert torch.equal(ours[key], tensors[theirs]), theirs


def test_bert_prefix_is_accepted(tiny_dir: Path) -> None:
    tensors = load_file(str(tiny_dir / "model.safetensors"))
    save_file({f"bert.{k}": v for k, v in tensors.items()}, tiny_dir / "model.safetensors")
    load_encoder(open_checkpoint(tiny_dir))


def test_missing_key_is_named(tiny_dir: Path) -> None:
    tensors = load_file(str(tiny_dir / "model.safetensors"))
    del tensors["encoder.layer.1.attention.self.key.weight"]
    save_file(tensors, tiny_dir / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"missing key 'encoder\.layer\.1\.attention\.self\.key\.weight'"):
        load_encoder(open_checkpoint(tiny_dir))


def test_wrong_shape_is_named(tiny_dir: Path) -> None:
    tensors = load_file(str(tiny_dir / "model.safetensors"))
    tensors["encoder.layer.0.intermediate.dense.weight"] = torch.zeros(65, 32)
    save_file(tensors, tiny_dir / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"'encoder\.layer\.0\.intermediate\.dense\.weight' has shape \(65, 32\)"):
        load_encoder(open_checkpoint(tiny_dir))


def test_unexpected_key_is_named(tiny_dir: Path) -> None:
    tensors = load_file(str(tiny_dir / "model.safetensors"))
    tensors["encoder.layer.0.attention.self.rotary.weight"] = torch.zeros(4)
    save_file(tensors, tiny_dir / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"unexpected checkpoint key 'encoder\.layer\.0\.attention\.self\.rotary"):
        load_encoder(open_checkpoint(tiny_dir))


def test_extra_layer_is_refused(tiny_dir: Path) -> None:
    tensors = load_file(str(tiny_dir / "model.safetensors"))
    tensors["encoder.layer.2.output.dense.weight"] = tensors["encoder.layer.1.output.dense.weight"].clone()
    save_file(tensors, tiny_dir / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"encoder\.layer\.2\.output\.dense\.weight"):
        load_encoder(open_checkpoint(tiny_dir))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"hidden_act": "swish"}, "hidden_act 'swish'"),
        ({"model_type": "gpt2"}, "model_type 'gpt2' is not supported \\(supported: bert, camembert"),
        ({"model_type": "distilbert", "sinusoidal_pos_embds": True}, "sinusoidal_pos_embds"),
        ({"position_embedding_type": "relative_key"}, "position_embedding_type 'relative_key'"),
        ({"num_attention_heads": 5}, "not divisible"),
        ({"hidden_size": None}, "missing hidden_size"),
    ],
)
def test_config_refusals_name_the_value(tiny_dir: Path, change: dict[str, object], message: str) -> None:
    config = json.loads((tiny_dir / "config.json").read_text())
    for key, value in change.items():
        if value is None:
            del config[key]
        else:
            config[key] = value
    (tiny_dir / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=message):
        open_checkpoint(tiny_dir)


def test_missing_files_are_named(tiny_dir: Path) -> None:
    (tiny_dir / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match="no tokenizer.json"):
        open_checkpoint(tiny_dir)
