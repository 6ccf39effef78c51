"""Load a checkpoint directory (config.json + model.safetensors + tokenizer.json) of any ``Architecture``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from safetensors.torch import load_file

from .config import Architecture, CheckpointError, EncoderConfig, read_checkpoint_config
from .model import Encoder

# Each architecture's checkpoint module -> our module; "{i}" stands for the layer index. Loading is
# this key map. BERT's names are shared by RoBERTa and ELECTRA (ELECTRA adds its projection).
_EMBEDDINGS = {
    "embeddings.word_embeddings": "embeddings.word_embeddings",
    "embeddings.position_embeddings": "embeddings.position_embeddings",
    "embeddings.LayerNorm": "embeddings.LayerNorm",
}
_BERT = {
    **_EMBEDDINGS,
    "embeddings.token_type_embeddings": "embeddings.token_type_embeddings",
    "encoder.layer.{i}.attention.self.query": "layers.{i}.attention.query",
    "encoder.layer.{i}.attention.self.key": "layers.{i}.attention.key",
    "encoder.layer.{i}.attention.self.value": "layers.{i}.attention.value",
    "encoder.layer.{i}.attention.output.dense": "layers.{i}.attention.output",
    "encoder.layer.{i}.attention.output.LayerNorm": "layers.{i}.attention_norm",
    "encoder.layer.{i}.intermediate.dense": "layers.{i}.feed_forward.intermediate",
    "encoder.layer.{i}.output.dense": "layers.{i}.feed_forward.output",
    "encoder.layer.{i}.output.LayerNorm": "layers.{i}.output_norm",
}
KEY_MAPS = {
    Architecture.BERT: _BERT,
    Architecture.ROBERTA: _BERT,
    Architecture.ELECTRA: {**_BERT, "embeddings_project": "embeddings.project"},
    Architecture.DISTILBERT: {
        **_EMBEDDINGS,
        "transformer.layer.{i}.attention.q_lin": "layers.{i}.attention.query",
        "transformer.layer.{i}.attention.k_lin": "layers.{i}.attention.key",
        "transformer.layer.{i}.attention.v_lin": "layers.{i}.attention.value",
        "transformer.layer.{i}.attention.out_lin": "layers.{i}.attention.output",
        "transformer.layer.{i}.sa_layer_norm": "layers.{i}.attention_norm",
        "transformer.layer.{i}.ffn.lin1": "layers.{i}.feed_forward.intermediate",
        "transformer.layer.{i}.ffn.lin2": "layers.{i}.feed_forward.output",
        "transformer.layer.{i}.output_layer_norm": "layers.{i}.output_norm",
    },
    Architecture.MPNET: {
        **_EMBEDDINGS,
        "encoder.relative_attention_bias": "attention_mask.relative_attention_bias",
        "encoder.layer.{i}.attention.attn.q": "layers.{i}.attention.query",
        "encoder.layer.{i}.attention.attn.k": "layers.{i}.attention.key",
        "encoder.layer.{i}.attention.attn.v": "layers.{i}.attention.value",
        "encoder.layer.{i}.attention.attn.o": "layers.{i}.attention.output",
        "encoder.layer.{i}.attention.LayerNorm": "layers.{i}.attention_norm",
        "encoder.layer.{i}.intermediate.dense": "layers.{i}.feed_forward.intermediate",
        "encoder.layer.{i}.output.dense": "layers.{i}.feed_forward.output",
        "encoder.layer.{i}.output.LayerNorm": "layers.{i}.output_norm",
    },
}
# The base-model prefix a checkpoint saved from a task model carries (XLM-R and CamemBERT use "roberta").
PREFIX = re.compile(r"^(bert|roberta|distilbert|electra|mpnet)\.")
# Present in checkpoints, unused by an encoder that returns hidden states: position and token type
# buffers, poolers, and the heads of pre-training or task models.
IGNORED = re.compile(
    r"^(embeddings\.(position_ids|token_type_ids)|pooler\..*|cls\..*|lm_head\..*|"
    r"generator_.*|discriminator_predictions\..*|vocab_.*)$"
)


@dataclass(frozen=True)
class Checkpoint:
    directory: Path
    config: EncoderConfig
    tokenizer_file: Path
    weights_file: Path


def open_checkpoint(directory: Path, name: str | None = None) -> Checkpoint:
    """Check that ``directory`` holds a checkpoint of a supported architecture and read its config."""
    directory = Path(directory)
    config = read_checkpoint_config(directory, name)
    return Checkpoint(directory, config, directory / "tokenizer.json", directory / "model.safetensors")


def key_table(model: Encoder) -> dict[str, str]:
    """Every parameter of ``model`` as {checkpoint key: our key}, expanded over the layers."""
    table = {}
    for theirs, ours in KEY_MAPS[model.config.architecture].items():
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
    tensors = {PREFIX.sub("", key): value for key, value in load_file(str(checkpoint.weights_file)).items()}
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
