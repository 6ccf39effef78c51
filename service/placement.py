"""Where ONNX Runtime placed each node of a graph, read from its own profiler, and the check that
every compute node runs on the provider that was asked for.

A node without a kernel on CUDA silently runs on the CPU, with copies across PCIe around it every
layer (ONNX Runtime issue 28025). The runtime profiles each session's warm-up run once, logs the
placement, and refuses CUDA when a compute node landed elsewhere. Shape arithmetic (Shape, Gather
on shapes, int64 Cast, Unsqueeze, ...) may stay on the CPU: ONNX Runtime puts it there on purpose.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

# The nodes that do the model's arithmetic: each must run on the provider asked for.
COMPUTE_OPS = frozenset(
    {
        "Attention", "MultiHeadAttention", "MatMul", "Gemm", "FusedMatMul", "MatMulInteger", "Softmax",
        "LayerNormalization", "SkipLayerNormalization", "Gelu", "FastGelu", "BiasGelu", "Erf", "Tanh",
        "Add", "Sub", "Mul", "Div", "Sqrt", "Pow", "Where", "Gather",
    }
)  # fmt: skip


class PlacementError(RuntimeError):
    """Compute nodes run on another provider than the one asked for."""


FLOAT_TYPES = frozenset({"float", "float16", "bfloat16", "double"})


@dataclass(frozen=True)
class NodePlacement:
    node: str
    op_type: str
    provider: str
    floats: bool = True  # some input or output is a float tensor: model data, not int64 shape or mask arithmetic


def read_profile(path: Path | str) -> list[NodePlacement]:
    """The nodes an ONNX Runtime profile (``session.end_profiling()``) saw run, with their provider."""
    events = json.loads(Path(path).read_text())
    seen: dict[str, NodePlacement] = {}
    for event in events:
        args = event.get("args", {})
        if event.get("cat") != "Node" or "provider" not in args or not event.get("name", "").endswith("_kernel_time"):
            continue
        name = event["name"].removesuffix("_kernel_time")
        tensors = [*args.get("input_type_shape", []), *args.get("output_type_shape", [])]  # [{"float": [2, 16]}]
        floats = any(kind in FLOAT_TYPES for tensor in tensors for kind in tensor) if tensors else True
        seen[name] = NodePlacement(name, args.get("op_name", "?"), args["provider"], floats)
    return list(seen.values())


def summary(placements: list[NodePlacement]) -> str:
    """`12 nodes: 10 on CUDAExecutionProvider, 2 on CPUExecutionProvider (Shape, Gather)`, for the log."""
    by_provider = Counter(p.provider for p in placements)
    parts = []
    for provider, count in by_provider.most_common():
        ops = sorted({p.op_type for p in placements if p.provider == provider})
        parts.append(f"{count} on {provider}" + (f" ({', '.join(ops)})" if len(by_provider) > 1 else ""))
    return f"{len(placements)} nodes: " + ", ".join(parts)


def astray(placements: list[NodePlacement], provider: str) -> list[NodePlacement]:
    """The compute nodes not on ``provider``. An op of COMPUTE_OPS that touches no float tensor (the
    int64 Where/Add/Gather of positions and the packed mask, bool And) is index arithmetic done once
    per batch, which ONNX Runtime may keep on the CPU; one on model data (float) must follow the provider."""
    return [p for p in placements if p.op_type in COMPUTE_OPS and p.floats and p.provider != provider]


def check_placement(placements: list[NodePlacement], provider: str, graph: str) -> None:
    """Raise naming every compute node of ``graph`` that ONNX Runtime did not place on ``provider``."""
    astray_nodes = astray(placements, provider)
    if astray_nodes:
        named = ", ".join(f"{p.node} ({p.op_type} on {p.provider})" for p in astray_nodes[:5])
        more = f" and {len(astray_nodes) - 5} more" if len(astray_nodes) > 5 else ""
        raise PlacementError(f"the {graph} graph has compute nodes off {provider}: {named}{more}")
