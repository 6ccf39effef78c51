"""Where ONNX Runtime runs each node (its own profiler, service/placement.py), against the static
capability list the exporter and the service trust (export/provider_capabilities.py).

On CUDA: every compute node of both graphs of both bundles must be on CUDA, and the static list must
agree (it found no node CUDA cannot run exactly when ORT placed every compute node on CUDA). On every
machine: the static list for CUDA is empty, and the CPU provider places every compute node.
"""

from __future__ import annotations

from pathlib import Path

import onnx
from atento.export.provider_capabilities import problems
from atento.service.bundle import GraphRole, read_bundle
from atento.service.config import Settings
from atento.service.placement import astray, summary
from atento.service.runtime import CPU, CUDA, Runtime

from .report import Row


def placement_rows(bundles: dict[str, Path], cuda: bool) -> list[Row]:
    rows: list[Row] = []
    for dtype, path in bundles.items():
        bundle = read_bundle(path)
        runtimes = {"cpu": Runtime(bundle, Settings(bundle=path, provider="cpu"))}
        if cuda:
            runtimes["cuda"] = Runtime(bundle, Settings(bundle=path, provider="cuda"))
        for graph in (GraphRole.FAST, GraphRole.ATTENTION_MAPS):
            static = problems(onnx.load(str(bundle.graph_path(graph))), [CUDA])
            rows.append(
                Row("capabilities", f"{graph.value}: nodes the static list says CUDA cannot run", "cuda", dtype,
                    float(len(static)), "== 0", not static, {"nodes": [str(p) for p in static]})
            )  # fmt: skip
            for name, runtime in runtimes.items():
                provider = CUDA if name == "cuda" else CPU
                placements = runtime.placement(graph)
                off = [f"{p.node} ({p.op_type} on {p.provider})" for p in astray(placements, provider)]
                rows.append(
                    Row("placement", f"{graph.value}: compute nodes off {name.upper()} ({summary(placements)})", name,
                        dtype, float(len(off)), "== 0", not off, {"astray": off})
                )  # fmt: skip
                if name == "cuda":
                    agree = (not static) == (not off)
                    rows.append(
                        Row("capabilities", f"{graph.value}: static list agrees with ORT's CUDA placement", "cuda",
                            dtype, "yes" if agree else "no", "agree", agree)
                    )  # fmt: skip
            if not cuda:
                rows.append(
                    Row("placement", f"{graph.value}: compute nodes off CUDA", "cuda", dtype, "not run: no CUDA GPU")
                )
    return rows
