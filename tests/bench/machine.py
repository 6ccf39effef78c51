"""What the benchmark ran on: CPU, versions, and the machine's measured fp32 matmul peak."""

from __future__ import annotations

import os
import platform
import time
from importlib import metadata
from pathlib import Path


def matmul_peak_gflops(size: int = 2048, rounds: int = 5) -> float:
    """The best fp32 GFLOP/s of a square matmul on every core (PyTorch's oneDNN/MKL kernels)."""
    import torch

    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.matmul(a, b)  # warm-up
    best = 0.0
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(4):
            torch.matmul(a, b)
        best = max(best, 4 * 2 * size**3 / (time.perf_counter() - start) / 1e9)
    return best


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
