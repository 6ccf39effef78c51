"""Provider selection (unit), and the CUDA execution provider where a GPU is present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from atento.service.bundle import GraphRole, read_bundle
from atento.service.config import Settings
from atento.service.placement import PlacementError, check_placement
from atento.service.runtime import CPU, CUDA, ProviderError, Runtime, choose_provider, confirm_provider


@pytest.mark.parametrize(
    ("requested", "available", "expected"),
    [
        ("cpu", [CUDA, CPU], CPU),
        ("cpu", [CPU], CPU),
        ("auto", [CUDA, CPU], CUDA),
        ("auto", [CPU], CPU),
        ("cuda", [CUDA, CPU], CUDA),
    ],
)
def test_choose_provider(requested: str, available: list[str], expected: str) -> None:
    assert choose_provider(requested, available) == expected


def test_cuda_without_cuda_fails_loudly() -> None:
    with pytest.raises(
        ProviderError,
        match=r"provider 'cuda' was requested but this onnxruntime offers only \['CPUExecutionProvider'\]",
    ):
        choose_provider("cuda", [CPU])
    with pytest.raises(ProviderError, match="unknown provider 'tpu'"):
        choose_provider("tpu", [CPU])


def test_a_silent_fallback_to_cpu_is_caught() -> None:
    """onnxruntime-gpu lists CUDA without a usable device and falls back: cuda refuses, auto logs."""
    with pytest.raises(ProviderError, match="fell back to CPUExecutionProvider"):
        confirm_provider("cuda", CUDA, [CPU])
    assert confirm_provider("auto", CUDA, [CPU]) == CPU
    assert confirm_provider("auto", CUDA, [CUDA, CPU]) == CUDA


def test_cpu_runtime_runs_both_graphs(tiny_bundle: Path) -> None:
    runtime = Runtime(read_bundle(tiny_bundle), Settings(bundle=tiny_bundle, provider="cpu"))
    assert runtime.provider == CPU and runtime.has_attention_maps
    ids = np.full((2, 5), 2000, dtype=np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    assert runtime.run(feeds).hidden.shape == (2, 5, 32)
    out = runtime.run(feeds, GraphRole.ATTENTION_MAPS)
    assert out.attention_maps is not None and out.attention_maps.shape == (2, 2, 4, 5, 5)


def test_cuda_provider_when_a_gpu_is_present(tiny_bundle: Path) -> None:
    if CUDA not in ort.get_available_providers():
        pytest.skip("no CUDA: onnxruntime here has no CUDAExecutionProvider (install atento[gpu] on a GPU machine)")
    runtime = Runtime(read_bundle(tiny_bundle), Settings(bundle=tiny_bundle, provider="cuda"))
    assert runtime.provider == CUDA
    cpu = Runtime(read_bundle(tiny_bundle), Settings(bundle=tiny_bundle, provider="cpu"))
    ids = np.full((3, 9), 2000, dtype=np.int64)
    feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    np.testing.assert_allclose(runtime.run(feeds).hidden, cpu.run(feeds).hidden, atol=1e-3)


def test_placement_is_read_from_onnx_runtimes_profile(tiny_bundle: Path) -> None:
    """Where ORT runs each node, from its own profiler; CUDA would be refused with these CPU nodes."""
    runtime = Runtime(read_bundle(tiny_bundle), Settings(bundle=tiny_bundle, provider="cpu"))
    for graph in (GraphRole.FAST, GraphRole.ATTENTION_MAPS):
        placements = runtime.placement(graph)
        ops = {p.op_type for p in placements}
        assert "MatMul" in ops and ops & {"LayerNormalization", "SkipLayerNormalization"}
        assert {p.provider for p in placements} == {CPU}
        check_placement(placements, CPU, graph.value)
        with pytest.raises(PlacementError, match=f"the {graph.value} graph has compute nodes off {CUDA}"):
            check_placement(placements, CUDA, graph.value)
    assert "Attention" in {p.op_type for p in runtime.placement(GraphRole.FAST)}
    assert "Softmax" in {p.op_type for p in runtime.placement(GraphRole.ATTENTION_MAPS)}
