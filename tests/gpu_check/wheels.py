"""`python -m tests.gpu_check.wheels`: the exact wheels `make gpu-wheels` downloads to carry to a GPU
machine, one `name==version` a line, at the versions this venv runs (so the stubs' grpcio and
protobuf, and the service's pins, are the ones tested here).

The GPU machine has python3.12 with torch, transformers, sentence-transformers, onnx, tokenizers
and numpy (and their own dependencies: typing-extensions, packaging, sympy, ...). Carried: what
the service, the exporter (onnxscript) and the check import beyond that.
"""

from __future__ import annotations

from importlib import metadata

CARRIED = (
    # ONNX Runtime's CUDA build replaces the CPU one (same module name): same version as tested here
    "flatbuffers",
    # the gRPC stubs (proto/atento) and the standard services
    "protobuf", "grpcio", "grpcio-health-checking", "grpcio-reflection", "grpcio-status", "googleapis-common-protos",
    # settings
    "pydantic", "pydantic-core", "pydantic-settings", "annotated-types", "typing-inspection", "python-dotenv",
    # metrics and the HTTP doors
    "prometheus-client", "aiohttp", "aiohappyeyeballs", "aiosignal", "attrs", "frozenlist", "multidict", "propcache",
    "yarl", "idna",
    # the exporter: torch.onnx's dynamo path writes through onnxscript
    "onnxscript", "onnx-ir", "ml-dtypes",
)  # fmt: skip
NVIDIA_ML_PY = "13.615.71"  # NVML's Python bindings (the gpu extra): GPU memory series


def requirements() -> list[str]:
    pins = [f"onnxruntime-gpu=={metadata.version('onnxruntime')}", f"nvidia-ml-py=={NVIDIA_ML_PY}"]
    return pins + [f"{name}=={metadata.version(name)}" for name in CARRIED]


if __name__ == "__main__":
    print("\n".join(requirements()))
