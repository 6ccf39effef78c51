"""What the benchmark ran on: CPU, versions, and the machine's measured fp32 matmul peak."""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path


def matmul_peak_gflops(sizes: tuple[int, ...] = (1024, 2048), rounds: int = 5) -> float:
    """The best fp32 GFLOP/s of a square matmul on every core: the best of ONNX Runtime's own GEMM
    (MLAS, the kernels the encoder runs on), numpy's BLAS and PyTorch's."""
    import numpy as np
    import onnxruntime as ort
    import torch
    from onnx import TensorProto, helper, numpy_helper

    def best(run: Callable[[], object], flops: float) -> float:
        run()  # warm-up
        fastest = float("inf")
        for _ in range(rounds):
            start = time.perf_counter()
            run()
            fastest = min(fastest, time.perf_counter() - start)
        return flops / fastest / 1e9

    peak = 0.0
    for size in sizes:
        a = np.random.default_rng(0).standard_normal((size, size), dtype=np.float32)
        b = np.random.default_rng(1).standard_normal((size, size), dtype=np.float32)
        graph = helper.make_graph(
            [helper.make_node("MatMul", ["A", "B"], ["C"])],
            "matmul",
            [helper.make_tensor_value_info("A", TensorProto.FLOAT, [size, size])],
            [helper.make_tensor_value_info("C", TensorProto.FLOAT, [size, size])],
            [numpy_helper.from_array(b, "B")],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
        model.ir_version = 8
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        flops = 2.0 * size**3
        peak = max(
            peak,
            best(lambda: session.run(None, {"A": a}), flops),  # noqa: B023 (used within the iteration)
            best(lambda: a @ b, flops),  # noqa: B023
            best(lambda: torch.matmul(ta, tb), flops),  # noqa: B023
        )
    return peak


def peak_rss_mib(pid: int) -> float:
    """The process's peak resident set (VmHWM), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def describe() -> str:
    versions = ", ".join(
        f"{name} {metadata.version(name)}"
        for name in ("onnxruntime", "torch", "sentence-transformers", "grpcio", "numpy", "tokenizers")
    )
    flags = Path("/proc/cpuinfo").read_text()
    isa = [f for f in ("avx512f", "avx512_vnni", "avx_vnni", "amx_int8") if f in flags]
    return (
        f"{cpu_model()}, {os.cpu_count()} cores ({', '.join(isa) or 'no AVX-512'}), "
        f"Linux {platform.release()}, Python {platform.python_version()}; {versions}"
    )
