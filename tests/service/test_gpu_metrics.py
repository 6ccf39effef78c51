"""GPU series: absent from a CPU server's /metrics; the collector's logic with NVML stood in for.

NVML needs an NVIDIA driver and device, which CI has not: ``FakeNvml`` below replaces only the four
NVML calls the collector makes (init, handle by index or UUID, memory info, utilisation). Everything
else (prometheus_client's registry and exposition, the histogram, the runtime hook) is real. On a
GPU, `make gpu-check` scrapes the real series from a CUDA server.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from atento.service.bundle import GraphRole
from atento.service.gpu_metrics import GpuMetrics, gpu_metrics, load_nvml
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.servers import running_server

GIB = 1 << 30


class NVMLError(Exception):
    pass


class FakeNvml:
    """pynvml's calls the collector makes, answering like an 80 GiB device with 3 GiB in use."""

    def __init__(self, fail_reads: bool = False) -> None:
        self.fail_reads, self.handles_asked = fail_reads, []

    def nvmlDeviceGetHandleByIndex(self, index: int) -> str:  # noqa: N802 (NVML's own names)
        self.handles_asked.append(index)
        return f"handle-{index}"

    def nvmlDeviceGetHandleByUUID(self, uuid: str) -> str:  # noqa: N802
        self.handles_asked.append(uuid)
        return f"handle-{uuid}"

    def nvmlDeviceGetMemoryInfo(self, handle: str) -> SimpleNamespace:  # noqa: N802
        if self.fail_reads:
            raise NVMLError("GPU is lost")
        return SimpleNamespace(used=3 * GIB, total=80 * GIB, free=77 * GIB)

    def nvmlDeviceGetUtilizationRates(self, handle: str) -> SimpleNamespace:  # noqa: N802
        return SimpleNamespace(gpu=37, memory=12)


def exposition(registry: CollectorRegistry) -> str:
    return generate_latest(registry).decode()


def samples(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    """(sample name, graph label or "") -> value, parsed back from the exposition text."""
    parsed = text_string_to_metric_families(exposition(registry))
    return {(s.name, s.labels.get("graph", "")): s.value for family in parsed for s in family.samples}


@pytest.mark.fast
def test_nvml_series_and_the_run_histogram() -> None:
    registry, nvml = CollectorRegistry(), FakeNvml()
    metrics = GpuMetrics(registry, nvml, visible="2,3")
    metrics.observe_run(GraphRole.FAST, 0.004)
    values = samples(registry)
    assert nvml.handles_asked[0] == 2  # the first visible device is CUDA's device 0
    assert values[("atento_gpu_memory_used_bytes", "")] == 3 * GIB
    assert values[("atento_gpu_memory_total_bytes", "")] == 80 * GIB
    assert values[("atento_gpu_utilization_ratio", "")] == pytest.approx(0.37)
    assert values[("atento_gpu_run_duration_seconds_count", GraphRole.FAST.value)] == 1
    assert values[("atento_gpu_run_duration_seconds_sum", GraphRole.FAST.value)] == pytest.approx(0.004)
    assert values[("atento_gpu_run_duration_seconds_count", GraphRole.ATTENTION_MAPS.value)] == 0


@pytest.mark.fast
def test_a_uuid_in_cuda_visible_devices_is_looked_up_by_uuid() -> None:
    nvml = FakeNvml()
    GpuMetrics(CollectorRegistry(), nvml, visible="GPU-8f3c1a2b")
    assert nvml.handles_asked[0] == "GPU-8f3c1a2b"


@pytest.mark.fast
def test_a_failed_nvml_read_leaves_the_memory_series_out_not_the_scrape() -> None:
    registry = CollectorRegistry()
    GpuMetrics(registry, FakeNvml(fail_reads=True), visible=None)
    text = exposition(registry)
    assert "atento_gpu_memory_used_bytes" not in text
    assert "atento_gpu_run_duration_seconds_bucket" in text  # the rest of the registry still scrapes


@pytest.mark.fast
def test_without_nvidia_ml_py_only_the_run_histogram_is_registered() -> None:
    """Real: nvidia-ml-py is not installed in the CPU development environment."""
    assert load_nvml() is None
    registry = CollectorRegistry()
    hook = gpu_metrics(registry)
    hook(GraphRole.ATTENTION_MAPS, 0.01)
    assert samples(registry)[("atento_gpu_run_duration_seconds_count", GraphRole.ATTENTION_MAPS.value)] == 1
    assert "atento_gpu_memory" not in exposition(registry)


def test_a_cpu_server_exports_no_gpu_series(tiny_bundle: Path) -> None:
    with running_server(tiny_bundle, "--provider", "cpu") as server:
        text = server.metrics()
    assert "atento_inference_duration_seconds" in text  # the scrape is real and complete
    assert "atento_gpu_" not in text
