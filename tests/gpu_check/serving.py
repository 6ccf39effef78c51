"""The real gRPC service on each provider and bundle: GetModelInfo, attention requests (every layer
and head) checked against ONNX Runtime's CPU provider, the GPU series on /metrics (absent on the
CPU), the placement line of the start-up log, and the speed of the three loads through it."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np
from atento.client import Client

from tests.servers import ServerProcess

from .bootstrap import child_env
from .parity import BOUNDS, ort_outputs, pooled
from .report import Row, check, guarded
from .speed import measure

PROVIDER_NAMES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


def start(
    bundle: Path, provider: str, workers: int, extra: Sequence[str] = (),
    command: Sequence[str] = (sys.executable, "-m", "atento.service"),
) -> ServerProcess:  # fmt: skip
    """The service on ``bundle``; ``extra``: more flags; ``command``: how to launch it (pinned: pinned.py)."""
    args = ["--bundle", str(bundle), "--provider", provider, "--port", "0", "--metrics-port", "0",
            "--inference-workers", str(workers), *extra]  # fmt: skip
    server = ServerProcess(args, env=child_env(), command=command)
    server.wait_serving(timeout=300)
    return server


def attention_rows(client: Client, bundle: Path, provider: str, dtype: str, texts: list[str]) -> list[Row]:
    result = client.embed(texts, attention=True, tokens=True, truncate=True)
    shapes_ok, row_sum_error = True, 0.0
    for encoding in result.results:
        maps = encoding.attention_maps
        tokens = len(encoding.tokens) if encoding.tokens else None
        if maps is None or maps.ndim != 4 or (tokens is not None and maps.shape[-1] != tokens):
            shapes_ok = False
            continue
        row_sum_error = max(row_sum_error, float(np.abs(maps.astype(np.float64).sum(axis=-1) - 1).max()))
    reference = ort_outputs(bundle, "cpu", texts)
    expected = np.concatenate([pooled(hidden, real) for hidden, _, real in reference])
    assert result.embeddings is not None
    cosine = float((result.embeddings.astype(np.float64) * expected).sum(axis=1).min())
    bound = BOUNDS[dtype]["min_cosine"]
    return [
        Row("service", "Embed with attention maps: every text has (layers, heads, T, T) maps", provider, dtype,
            "yes" if shapes_ok else "no", "yes", shapes_ok),
        check("service", "attention maps: max |row sum - 1|", provider, dtype, row_sum_error, 1e-2, False),
        check("service", "served embedding vs ORT CPU in process: min cosine", provider, dtype, cosine, bound, True),
    ]  # fmt: skip


def metrics_rows(server: ServerProcess, provider: str, dtype: str) -> list[Row]:
    text = server.metrics()
    if provider == "cpu":
        absent = "atento_gpu_" not in text
        return [
            Row(
                "service",
                "/metrics has no atento_gpu_ series on the CPU",
                provider,
                dtype,
                "yes" if absent else "no",
                "yes",
                absent,
            )
        ]
    runs = server.metric("atento_gpu_run_duration_seconds_count")
    memory = server.metric("atento_gpu_memory_used_bytes")
    placement = any("placement of the encoder graph" in line for line in server.lines)
    return [
        check("service", "atento_gpu_run_duration_seconds_count after the calls", provider, dtype, runs, 1, True),
        Row("service", "atento_gpu_memory_used_bytes (NVML; 0: nvidia-ml-py not carried)", provider, dtype, memory,
            "> 0", memory > 0),
        Row("service", "start-up log names the node placement", provider, dtype, "yes" if placement else "no", "yes",
            placement),
    ]  # fmt: skip


def one_server(
    bundle: Path, provider: str, dtype: str, texts: list[str], tokens: float, rounds: int, workers: int
) -> list[Row]:
    rows: list[Row] = []
    server = start(bundle, provider, workers)
    try:
        with Client(server.target, timeout=120) as client:
            info = client.info()
            limits = info.limits
            name = (f"GetModelInfo: provider {info.provider}, max_batch_tokens {limits.max_batch_tokens}, "
                    f"max_batch_size {limits.max_batch_size}")  # fmt: skip
            expected = PROVIDER_NAMES[provider]
            rows.append(Row("service", name, provider, dtype, info.provider, expected, info.provider == expected))
            rows += attention_rows(client, bundle, provider, dtype, texts[:8])

            def call(batch: Sequence[str], caller: int) -> object:
                return client.embed(list(batch), truncate=True)

            rows += measure("service (gRPC Embed)", provider, dtype, call, texts, tokens, rounds)
        rows += metrics_rows(server, provider, dtype)
    finally:
        server.terminate()
    return rows


def service_rows(
    bundles: dict[str, Path], providers: Sequence[str], texts: list[str], tokens: float, rounds: dict[str, int],
    workers: int,
) -> list[Row]:  # fmt: skip
    rows: list[Row] = []
    for provider in providers:
        for dtype, bundle in bundles.items():
            work = partial(one_server, bundle, provider, dtype, texts, tokens, rounds[provider], workers)
            rows += guarded("service", "service", provider, dtype, work)
    return rows
