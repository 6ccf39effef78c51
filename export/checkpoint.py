"""Load a BERT-family checkpoint directory (config.json + model.safetensors + tokenizer.json)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from safetensors.torch import load_file

from .config import CheckpointError, EncoderConfig
from .model import Encoder

# BERT checkpoint module -> our module; "{i}" stands for the layer index. Loading is this key map.
KEY_MAP = {
    "embeddings.word_embeddings": "embeddings.word_embeddings",
    "embeddings.position_embeddings": "embeddings.position_embeddings",
    "embeddings.token_type_embeddings": "embeddings.token_type_embeddings",
    "embeddings.LayerNorm": "embeddings.LayerNorm",
    "encoder.layer.{i}.attention.self.query": "layers.{i}.attention.query",
    "encoder.layer.{i}.attention.self.key": "layers.{i}.attention.key",
    "encoder.layer.{i}.attention.self.value": "layers.{i}.attention.value",
    "encoder.layer.{i}.attention.output.dense": "layers.{i}.attention.output",
    "encoder.layer.{i}.attention.output.LayerNorm": "layers.{i}.attention_norm",
    "encoder.layer.{i}.intermediate.dense": "layers.{i}.feed_forward.intermediate",
    "encoder.layer.{i}.output.dense": "layers.{i}.feed_forward.output",
    "encoder.layer.{i}.output.LayerNorm": "layers.{i}.output_norm",
}
# Present in BERT checkpoints, unused by an encoder that returns hidden states.
IGNORED = re.compile(r"^(embeddings\.position_ids|pooler\..*|cls\..*)$")


@dataclass(frozen=True)
class Checkpoint:
    directory: Path
    config: EncoderConfig
    tokenizer_file: Path
    weights_file: Path


def open_checkpoint(directory: Path, name: str | None = None) -> Checkpoint:
    """Check that ``directory`` holds a BERT-family checkpoint and read its config."""
    directory = Path(directory)
    for required in ("config.json", "model.safetensors", "tokenizer.json"):
        if not (directory / required).is_file():
            raise CheckpointError(f"{directory} has no {required}")
    try:
        hf_config = json.loads((directory / "config.json").read_text())
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{directory / 'config.json'} is not valid JSON: {error}") from error
    config = EncoderConfig.from_hf_config(hf_config, name or directory.name)
    return Checkpoint(directory, config, directory / "tokenizer.json", directory / "model.safetensors")


def key_table(model: Encoder) -> dict[str, str]:
    """Every parameter of ``model`` as {checkpoint key: our key}, expanded over the layers."""
    table = {}
    for theirs, ours in KEY_MAP.items():
        for i in range(model.config.num_layers) if "{i}" in theirs else [0]:
            for suffix in ("weight", "bias"):
                table[f"{theirs.format(i=i)}.{suffix}"] = f"{ours.format(i=i)}.{suffix}"
    present = set(model.state_dict())
    return {theirs: ours for theirs, ours in table.items() if ours in present}


def load_encoder(checkpoint: Checkpoint) -> Encoder:
    """Build the encoder and fill it from the safetensors file, refusing any mismatch by name."""
    model = Encoder(checkpoint.config)
    expected = model.state_dict()
    table = key_table(model)
    tensors = {key.removeprefix("bert."): value for key, value in load_file(str(checkpoint.weights_file)).items()}
    for key in tensors:
        if key not in table and not IGNORED.match(key):
            raise CheckpointError(f"unexpected checkpoint key {key!r}: not part of a {checkpoint.config.name} encoder")
    missing = [key for key in table if key not in tensors]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise CheckpointError(f"checkpoint is missing key {missing[0]!r}{more}")
    loaded = {}
    for theirs, ours in table.items():
        tensor, shape = tensors[theirs], tuple(expected[ours].shape)
        if tuple(tensor.shape) != shape:
            raise CheckpointError(f"checkpoint key {theirs!r} has shape {tuple(tensor.shape)}, expected {shape}")
        loaded[ours] = tensor.float()
    model.load_state_dict(loaded)
    return model.eval()
