"""Export the encoder to ONNX: one fused ``Attention`` node per layer, dynamic batch and sequence.

Two graphs, because ONNX Runtime computes every output whether or not it is fetched:
- the fast graph, ``encoder.onnx``: last_hidden_state only, one fused ``Attention`` node per layer
  (no Softmax node at all), which CUDA runs with its flash or memory-efficient kernels;
- the attention-maps graph, ``encoder_attn.onnx``: last_hidden_state and the attention maps
  (output ``attentions``, (B, layers, heads, S, S)), computed from the equations (MatMul, scale,
  mask, Softmax, MatMul per layer), ops every provider runs: the fused node's probabilities output
  (``qk_matmul_output_mode`` 1-3) is not implemented on CUDA (see provider_capabilities.py).

``dtype="fp16"`` exports the same graphs with fp16 weights and activations (LayerNormalization
keeps its fp32 accumulation, ONNX's default ``stash_type``); inputs stay int64 and outputs float32,
so the service handles both alike.
"""

from __future__ import annotations

import logging
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import onnx
import torch
from atento.service.bundle import GraphRole
from torch import Tensor, nn

from .config import EncoderConfig
from .model import Encoder, FusedSelfAttention, MultiHeadSelfAttention

OPSET = 23  # the first opset with the standard fused Attention op
ATTENTION_OP = "Attention"


@dataclass(frozen=True)
class ExportedGraph:
    role: GraphRole
    path: Path
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    opset: int
    ir_version: int
    op_counts: dict[str, int]


class _HiddenOnly(nn.Module):
    """The fast graph's signature: token_type_ids only when the model has token types."""

    def __init__(self, encoder: Encoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        hidden, _ = self.encoder(input_ids, attention_mask, token_type_ids)
        return hidden.float()  # an fp16 graph answers in float32 like any other


class _WithAttentionMaps(_HiddenOnly):
    def forward(  # type: ignore[override]
        self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        hidden, maps = self.encoder(input_ids, attention_mask, token_type_ids)
        assert maps is not None, "this attention path always returns the attention maps"
        return hidden.float(), maps.float()


def input_names(config: EncoderConfig) -> tuple[str, ...]:
    names = ("input_ids", "attention_mask")
    return (*names, "token_type_ids") if config.has_token_types else names


DTYPES = {"fp32": torch.float32, "fp16": torch.float16}


def _with_attention(encoder: Encoder, attention: type[MultiHeadSelfAttention], dtype: str) -> Encoder:
    """The same weights behind another attention path, in ``dtype``."""
    variant = Encoder(encoder.config, attention=attention)
    variant.load_state_dict(encoder.state_dict())
    return variant.to(DTYPES[dtype]).eval()


def export_graph(encoder: Encoder, path: Path, role: GraphRole, dtype: str = "fp32") -> ExportedGraph:
    config = encoder.config
    with_maps = role is GraphRole.ATTENTION_MAPS
    if with_maps:  # the equations: MatMul/Softmax per layer, which every provider runs
        module: nn.Module = _WithAttentionMaps(_with_attention(encoder, MultiHeadSelfAttention, dtype))
        outputs: tuple[str, ...] = ("last_hidden_state", "attentions")
    else:
        module = _HiddenOnly(_with_attention(encoder, FusedSelfAttention, dtype))
        outputs = ("last_hidden_state",)
    inputs = input_names(config)
    # One distinct tensor per input: torch.export merges inputs that are the same tensor object.
    examples = {
        "input_ids": torch.full((2, 8), config.pad_token_id + 1, dtype=torch.int64),  # (B, S)
        "attention_mask": torch.ones((2, 8), dtype=torch.int64),
        "token_type_ids": torch.zeros((2, 8), dtype=torch.int64),
    }
    args = tuple(examples[name] for name in inputs)
    batch = torch.export.Dim("batch", max=1 << 16)
    sequence = torch.export.Dim("sequence", max=config.max_positions)
    dynamic = {name: {0: batch, 1: sequence} for name in inputs}
    # The exporter warns about internals we do not use (torchvision ops, deprecated shims).
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        program = torch.onnx.export(
            module,
            args,
            dynamo=True,
            opset_version=OPSET,
            input_names=list(inputs),
            output_names=list(outputs),
            dynamic_shapes=dynamic,
            optimize=True,
            verbose=False,
        )
    assert program is not None
    model = program.model_proto
    if with_maps:
        # ONNX shape inference writes the probabilities' key axis as 0 when the sequence is
        # symbolic; no axis of this model is really empty, so name every such axis instead.
        for value in (*model.graph.value_info, *model.graph.output):
            for dim in value.type.tensor_type.shape.dim:
                if dim.HasField("dim_value") and dim.dim_value == 0:
                    dim.dim_param = "sequence"
    # onnx 1.23 stamps new models with IR version 14, which onnxruntime 1.31 refuses: ask for the
    # lowest IR version that can carry our opset instead.
    model.ir_version = onnx.helper.find_min_ir_version_for(list(model.opset_import))
    model.doc_string = f"atento {config.name}: " + (
        "hidden states and attention maps" if with_maps else "hidden states"
    )
    onnx.checker.check_model(model, full_check=True)
    onnx.save_model(model, str(path))
    return ExportedGraph(
        role=role,
        path=path,
        inputs=inputs,
        outputs=outputs,
        opset=OPSET,
        ir_version=model.ir_version,
        op_counts=dict(Counter(node.op_type for node in model.graph.node)),
    )
