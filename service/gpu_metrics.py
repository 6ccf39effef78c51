"""GPU series for /metrics, registered only when the runtime runs on CUDA (absent on the CPU).

- ``atento_gpu_run_duration_seconds{graph}``: ONNX Runtime's run of one packed run on the GPU, from
  the runtime's IOBinding path (inputs to the device and the kernels, until the session's stream is
  done; the copy back excluded): the device's share of ``atento_inference_duration_seconds``.
- ``atento_gpu_memory_used_bytes`` / ``atento_gpu_memory_total_bytes`` and
  ``atento_gpu_utilization_ratio``: read from NVML (``nvidia-ml-py``, in the ``gpu`` extra) at each
  scrape, for the first device in CUDA_VISIBLE_DEVICES (the one ONNX Runtime's device 0 is).
Without NVML (the package missing, or no driver) the memory series are left out, with one warning.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .bundle import GraphRole
from .metrics import LATENCY_BUCKETS

log = logging.getLogger("atento.gpu_metrics")


def load_nvml() -> Any | None:
    """The ``pynvml`` module, initialised, or None (with the reason logged) where NVML cannot run."""
    try:
        nvml = importlib.import_module("pynvml")
    except ImportError:
        log.warning("GPU memory series off: nvidia-ml-py is not installed (pip install 'atento[gpu]')")
        return None
    try:
        nvml.nvmlInit()
    except Exception as error:  # pynvml.NVMLError and its subclasses: no driver, no device
        log.warning("GPU memory series off: NVML cannot start: %s", error)
        return None
    return nvml


def device_handle(nvml: Any, visible: str | None) -> Any:
    """NVML's handle of the device CUDA numbers 0: the first of CUDA_VISIBLE_DEVICES (an index, or a
    GPU-/MIG- UUID), since NVML itself ignores that variable."""
    first = (visible or "0").split(",")[0].strip() or "0"
    if first.isdigit():
        return nvml.nvmlDeviceGetHandleByIndex(int(first))
    return nvml.nvmlDeviceGetHandleByUUID(first)


class NvmlCollector(Collector):
    """Device memory and utilisation, read at every scrape; a failed read leaves the series out."""

    def __init__(self, nvml: Any, handle: Any) -> None:
        self.nvml, self.handle = nvml, handle
        self._warned = False

    def collect(self) -> Iterator[Metric]:
        try:
            memory = self.nvml.nvmlDeviceGetMemoryInfo(self.handle)
            utilization = self.nvml.nvmlDeviceGetUtilizationRates(self.handle)
        except Exception as error:  # a device lost mid-run must not break the scrape of everything else
            if not self._warned:
                log.warning("NVML read failed, GPU memory series left out: %s", error)
                self._warned = True
            return
        series = (
            ("atento_gpu_memory_used_bytes", "Device memory in use on the GPU, every process's (NVML)", memory.used),
            ("atento_gpu_memory_total_bytes", "Device memory of the GPU (NVML)", memory.total),
            (
                "atento_gpu_utilization_ratio",
                "Share of the last sample period a kernel ran (NVML)",
                utilization.gpu / 100,
            ),
        )
        for name, documentation, value in series:
            yield GaugeMetricFamily(name, documentation, value=float(value))


class GpuMetrics:
    """The GPU series of one server's registry; ``observe_run`` is the runtime's ``on_run`` hook."""

    def __init__(self, registry: CollectorRegistry, nvml: Any | None, visible: str | None = None) -> None:
        self.run_duration = Histogram(
            "atento_gpu_run_duration_seconds",
            "ONNX Runtime's run on the GPU per packed run, by graph (inputs to the device and kernels)",
            ["graph"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        for graph in GraphRole:
            self.run_duration.labels(graph)
        self.nvml = None if nvml is None else NvmlCollector(nvml, device_handle(nvml, visible))
        if self.nvml is not None:
            registry.register(self.nvml)

    def observe_run(self, graph: GraphRole, seconds: float) -> None:
        self.run_duration.labels(graph).observe(seconds)


def gpu_metrics(registry: CollectorRegistry) -> Callable[[GraphRole, float], None]:
    """Register the GPU series in ``registry`` (NVML's where it runs) and return the run-time hook."""
    return GpuMetrics(registry, load_nvml(), os.environ.get("CUDA_VISIBLE_DEVICES")).observe_run
