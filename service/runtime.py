"""ONNX Runtime sessions for a bundle's graphs, on the CPU or the CUDA execution provider."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from .bundle import Bundle, GraphRole
from .config import Settings
from .placement import NodePlacement, PlacementError, check_placement, read_profile, summary

log = logging.getLogger("atento.runtime")

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
OPTIMIZATION = {
    "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}


class ProviderError(RuntimeError):
    """The requested execution provider cannot run here."""


def choose_provider(requested: str, available: Sequence[str]) -> str:
    """The execution provider to ask for: ``cuda`` must have it, ``auto`` prefers it, ``cpu`` never uses it."""
    if requested == "cpu":
        return CPU
    if requested == "cuda":
        if CUDA not in available:
            raise ProviderError(
                f"provider 'cuda' was requested but this onnxruntime offers only {list(available)}: "
                "install 'atento[gpu]' (onnxruntime-gpu) on a machine with CUDA, or use --provider cpu"
            )
        return CUDA
    if requested == "auto":
        return CUDA if CUDA in available else CPU
    raise ProviderError(f"unknown provider {requested!r} (expected auto, cpu or cuda)")


def check_capabilities(bundle: Bundle, requested: str, wanted: str) -> str:
    """The provider to ask for, given what the exporter found each graph can run on.

    A node without a kernel on the provider would fail or silently run on the CPU (copies across
    PCIe every layer): ``cuda`` refuses such a bundle naming the node; ``auto`` falls back to the CPU.
    """
    for role, graph in bundle.graphs.items():
        if graph.providers is None or wanted in graph.providers:
            continue
        why = "; ".join((graph.provider_problems or {}).get(wanted, ["not in the graph's providers"]))
        if requested == "cuda":
            raise ProviderError(f"provider 'cuda' cannot run the {role.value} graph of this bundle: {why}")
        log.warning("provider auto: %s cannot run the %s graph (%s); running on %s", wanted, role.value, why, CPU)
        return CPU
    return wanted


def confirm_provider(requested: str, wanted: str, got: Sequence[str]) -> str:
    """onnxruntime-gpu lists CUDA even without a usable GPU and then quietly runs on the CPU: catch it."""
    actual = got[0] if got else CPU
    if wanted == CUDA and actual != CUDA:
        if requested == "cuda":
            raise ProviderError(
                f"provider 'cuda' was requested but the session fell back to {actual}: no usable CUDA device"
            )
        log.warning("provider auto: CUDA is installed but unusable here; running on %s", actual)
    return actual


@dataclass(frozen=True)
class Outputs:
    hidden: np.ndarray  # (B, S, D) float32
    attention_maps: np.ndarray | None  # (B, layers, heads, S, S) float32: the attention-maps graph only


class Runtime:
    """The fast graph always; the attention-maps graph when enabled. Sessions are safe to run from threads."""

    def __init__(self, bundle: Bundle, settings: Settings) -> None:
        self.bundle, self.settings = bundle, settings
        requested = settings.provider
        wanted = check_capabilities(bundle, requested, choose_provider(requested, ort.get_available_providers()))
        fast = self._session(bundle, GraphRole.FAST, wanted, settings)
        self.provider = confirm_provider(requested, wanted, fast.get_providers())
        self._sessions = {GraphRole.FAST: fast}
        if settings.attention_maps and bundle.has_attention_maps_graph:
            maps = self._session(bundle, GraphRole.ATTENTION_MAPS, self.provider, settings)
            self._sessions[GraphRole.ATTENTION_MAPS] = maps
        self.input_names = tuple(i.name for i in fast.get_inputs())
        log.info(
            "runtime ready: provider %s (asked for %s), attention-maps graph %s",
            self.provider,
            requested,
            "loaded" if self.has_attention_maps else "off",
        )

    @staticmethod
    def _session(
        bundle: Bundle, role: GraphRole, provider: str, settings: Settings, profile: bool = False
    ) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.intra_op_num_threads = settings.intra_op_threads
        options.inter_op_num_threads = settings.inter_op_threads
        options.graph_optimization_level = OPTIMIZATION[settings.graph_optimization]
        if not settings.spin:  # measured: sleeping threads double small-batch latency, so spin by default
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        # ONNX's shape inference declares the attention maps with an empty key axis and ORT warns
        # about it on every run; the values are right (parity checks them).
        options.log_severity_level = 3 if role is GraphRole.ATTENTION_MAPS else 2
        if profile:  # ONNX Runtime's own word on where each node runs (see placement.py)
            options.enable_profiling = True
            options.profile_file_prefix = str(Path(tempfile.gettempdir()) / f"atento-placement-{role.value}")
        providers = [provider, CPU] if provider != CPU else [CPU]
        return ort.InferenceSession(str(bundle.graph_path(role)), options, providers=providers)

    @property
    def row_align(self) -> int:
        """Packed rows are a multiple of this wide: 8 on CUDA (see packing.pack_rows), 1 elsewhere."""
        return 8 if self.provider == CUDA else 1

    @property
    def has_attention_maps(self) -> bool:
        return GraphRole.ATTENTION_MAPS in self._sessions

    def run(self, inputs: Mapping[str, np.ndarray], graph: GraphRole = GraphRole.FAST) -> Outputs:
        """inputs: (B, S) int64 arrays by name, run through ``graph`` (which must be loaded)."""
        session = self._sessions[graph]
        feeds = {name: inputs[name] for name in self.input_names}
        if self.provider == CUDA:
            outputs = self._run_bound(session, feeds)
        else:
            outputs = session.run(None, feeds)
        return Outputs(hidden=outputs[0], attention_maps=outputs[1] if graph is GraphRole.ATTENTION_MAPS else None)

    @staticmethod
    def _run_bound(session: ort.InferenceSession, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        """IOBinding on CUDA: inputs copied to the device once, outputs allocated by ORT and copied back once."""
        binding = session.io_binding()
        for name, array in feeds.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(array))
        for output in session.get_outputs():
            binding.bind_output(output.name, "cpu")
        session.run_with_iobinding(binding)
        outputs: list[np.ndarray] = binding.copy_outputs_to_cpu()
        return outputs

    def warm_up(self) -> None:
        """A few shapes through every loaded graph, so the first real request pays no set-up cost."""
        for batch, seq in ((1, 8), (4, 32), (8, 128)):
            seq = min(seq, self.bundle.model.max_positions)
            ids = np.full((batch, seq), 1000, dtype=np.int64)
            feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
            for graph in self._sessions:
                self.run(feeds, graph)
        if self.provider == CUDA:  # a node quietly left on the CPU costs copies every layer: refuse it
            for graph in self._sessions:
                placements = self.placement(graph)
                log.info("placement of the %s graph: %s", graph.value, summary(placements))
                try:
                    check_placement(placements, CUDA, graph.value)
                except PlacementError as error:
                    raise ProviderError(f"provider cuda: {error}") from error

    def placement(self, graph: GraphRole) -> list[NodePlacement]:
        """Where ONNX Runtime puts each node of ``graph``: one run of a profiled twin of its session."""
        session = self._session(self.bundle, graph, self.provider, self.settings, profile=True)
        ids = np.full((2, 16), 1000, dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        session.run(None, {name: feeds[name] for name in self.input_names})
        profile = Path(session.end_profiling())
        try:
            return read_profile(profile)
        finally:
            profile.unlink(missing_ok=True)
