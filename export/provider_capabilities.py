"""What ONNX Runtime's execution providers cannot run in our graphs, written down once with its
source, and the walk that checks an exported graph against it.

A node a provider has no kernel for either fails at run time (NOT_IMPLEMENTED) or silently runs on
the CPU, with copies across PCIe around it every layer (ONNX Runtime issue 28025). The exporter
checks every graph it writes against every provider here, records in the manifest which providers
can run it, and the service refuses to start a graph on a provider the check ruled out, naming the
node. `make gpu-check` compares this list with the placement ONNX Runtime itself reports on a GPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import onnx

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
PROVIDERS = (CPU, CUDA)


@dataclass(frozen=True)
class Unsupported:
    """``op_type`` cannot run on the provider when ``applies`` says so of the node."""

    op_type: str
    why: str
    source: str
    attribute: str | None = None  # only nodes whose attribute has one of ``values``
    values: tuple[int, ...] = ()
    input_type: tuple[int, int] | None = None  # only nodes whose input (index, onnx elem type) is this


UNSUPPORTED: dict[str, tuple[Unsupported, ...]] = {
    CPU: (),
    CUDA: (
        Unsupported(
            "Attention",
            "qk_matmul_output_mode 1-3 (the probabilities output) is NOT_IMPLEMENTED on CUDA",
            "ONNX Runtime issue 28351 (2026); the CUDA Attention kernel implements mode 0 only",
            attribute="qk_matmul_output_mode",
            values=(1, 2, 3),
        ),
        Unsupported(
            "MatMulInteger",
            "CUDA registers MatMulInteger for int8 x int8 only; uint8 activations fall back to the CPU",
            "onnxruntime/core/providers/cuda/math/matmul_integer.cc (ONNX_OPERATOR_TYPED_KERNEL_EX int8_t)",
            input_type=(0, onnx.TensorProto.UINT8),
        ),
    ),
}


@dataclass(frozen=True)
class Problem:
    provider: str
    node: str
    op_type: str
    why: str
    source: str

    def __str__(self) -> str:
        return f"{self.provider} cannot run node {self.node!r} ({self.op_type}): {self.why} [{self.source}]"


def _element_types(model: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(model)
    values = (*inferred.graph.input, *inferred.graph.value_info, *inferred.graph.output)
    types = {value.name: value.type.tensor_type.elem_type for value in values}
    types.update({init.name: init.data_type for init in model.graph.initializer})
    return types


def _applies(rule: Unsupported, node: onnx.NodeProto, types: dict[str, int]) -> bool:
    if node.op_type != rule.op_type:
        return False
    if rule.attribute is not None:
        value = next((onnx.helper.get_attribute_value(a) for a in node.attribute if a.name == rule.attribute), 0)
        if value not in rule.values:
            return False
    if rule.input_type is not None:
        index, elem_type = rule.input_type
        if len(node.input) <= index or types.get(node.input[index]) != elem_type:
            return False
    return True


def problems(model: onnx.ModelProto, providers: Sequence[str] = PROVIDERS) -> list[Problem]:
    """Every node of ``model`` that one of ``providers`` cannot run, with why and the source."""
    types = _element_types(model)
    found = []
    for provider in providers:
        for node in model.graph.node:
            for rule in UNSUPPORTED[provider]:
                if _applies(rule, node, types):
                    found.append(Problem(provider, node.name, node.op_type, rule.why, rule.source))
    return found


def runs_on(model: onnx.ModelProto) -> dict[str, list[str]]:
    """{provider: []} for the providers that can run every node; the problems as text for the others."""
    return {provider: [str(p) for p in problems(model, [provider])] for provider in PROVIDERS}
