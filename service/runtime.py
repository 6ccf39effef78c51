"""ONNX Runtime sessions for a bundle's graphs, on the CPU or the CUDA execution provider."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
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


# The CUDA provider's options, chosen for an encoder served with varying batch shapes (README, "CUDA"):
# - arena_extend_strategy kSameAsRequested: every new batch shape would otherwise grow the memory
#   arena to the next power of two; exact growth keeps device memory near what the batches need,
#   so several workers' sessions fit on one GPU.
# - cudnn_conv_algo_search DEFAULT: an encoder has no convolutions; EXHAUSTIVE would only add
#   start-up time for nothing.
# - use_tf32 0: TF32 matmuls keep 10 mantissa bits, ~1e-3 relative error, which would break the fp32
#   bundle's parity with PyTorch (hidden max |delta| bound 1e-4); the fp16 bundle, the GPU default,
#   uses fp16 tensor cores whatever this says.
# - do_copy_in_default_stream 1: copies run on the compute stream, ordered with the kernels with no
#   extra synchronisation (ONNX Runtime's default, written out so that nobody flips it unknowingly).
CUDA_OPTIONS = {
    "arena_extend_strategy": "kSameAsRequested",
    "cudnn_conv_algo_search": "DEFAULT",
    "use_tf32": "0",
    "do_copy_in_default_stream": "1",
}


def session_providers(provider: str) -> list[str | tuple[str, dict[str, str]]]:
    """What ``InferenceSession(providers=...)`` gets: CUDA with its options, then the CPU for shape ops."""
    if provider == CUDA:
        return [(CUDA, dict(CUDA_OPTIONS)), CPU]
    return [provider, CPU] if provider != CPU else [CPU]


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
    run_s: float = 0.0  # ONNX Runtime's run alone (on CUDA: inputs to the device and kernels, not the copy back)


def replicas_for(provider: str, workers: int) -> int:
    """Sessions per graph: one per inference worker on CUDA, since each CUDA session has its own
    stream and workers then overlap on the GPU; one on the CPU, where a session is thread-safe and
    each extra one would bring its own thread pool to fight over the same cores."""
    return max(1, workers) if provider == CUDA else 1


class Runtime:
    """The fast graph always; the attention-maps graph when enabled. Sessions are safe to run from
    threads; on CUDA each inference worker has sessions (and so a CUDA stream) of its own."""

    def __init__(self, bundle: Bundle, settings: Settings, replicas: int | None = None) -> None:
        self.bundle, self.settings = bundle, settings
        requested = settings.provider
        wanted = check_capabilities(bundle, requested, choose_provider(requested, ort.get_available_providers()))
        fast = self._session(bundle, GraphRole.FAST, wanted, settings)
        self.provider = confirm_provider(requested, wanted, fast.get_providers())
        count = replicas if replicas is not None else replicas_for(self.provider, settings.inference_workers)
        maps_wanted = settings.attention_maps and bundle.has_attention_maps_graph
        self._replicas: list[dict[GraphRole, ort.InferenceSession]] = []  # [worker][graph]
        for i in range(count):
            sessions = {
                GraphRole.FAST: fast if i == 0 else self._session(bundle, GraphRole.FAST, self.provider, settings)
            }
            if maps_wanted:
                sessions[GraphRole.ATTENTION_MAPS] = self._session(
                    bundle, GraphRole.ATTENTION_MAPS, self.provider, settings
                )
            self._replicas.append(sessions)
        self._sessions = self._replicas[0]
        self.on_run: Callable[[GraphRole, float], None] | None = None  # GPU metrics' hook (gpu_metrics.py)
        self.input_names = tuple(i.name for i in fast.get_inputs())
        log.info(
            "runtime ready: provider %s (asked for %s), %d session(s) per graph, attention-maps graph %s%s",
            self.provider,
            requested,
            count,
            "loaded" if self.has_attention_maps else "off",
            f", CUDA options {CUDA_OPTIONS}" if self.provider == CUDA else "",
        )

    @property
    def replicas(self) -> int:
        """How many sessions each graph has: inference workers use them round robin (``run(worker=)``)."""
        return len(self._replicas)

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
        return ort.InferenceSession(str(bundle.graph_path(role)), options, providers=session_providers(provider))

    @property
    def row_align(self) -> int:
        """Packed rows are a multiple of this wide: 8 on CUDA (see packing.pack_rows), 1 elsewhere."""
        return 8 if self.provider == CUDA else 1

    @property
    def has_attention_maps(self) -> bool:
        return GraphRole.ATTENTION_MAPS in self._sessions

    def run(self, inputs: Mapping[str, np.ndarray], graph: GraphRole = GraphRole.FAST, worker: int = 0) -> Outputs:
        """inputs: (B, S) int64 arrays by name, run through ``graph`` (which must be loaded) on
        ``worker``'s sessions (any int: taken modulo the replicas)."""
        session = self._replicas[worker % len(self._replicas)][graph]
        feeds = {name: inputs[name] for name in self.input_names}
        if self.provider == CUDA:
            outputs, run_s = self._run_bound(session, feeds)
            if self.on_run is not None:
                self.on_run(graph, run_s)
        else:
            start = time.perf_counter()
            outputs = session.run(None, feeds)
            run_s = time.perf_counter() - start
        maps = outputs[1] if graph is GraphRole.ATTENTION_MAPS else None
        return Outputs(hidden=outputs[0], attention_maps=maps, run_s=run_s)

    @staticmethod
    def _run_bound(session: ort.InferenceSession, feeds: Mapping[str, np.ndarray]) -> tuple[list[np.ndarray], float]:
        """IOBinding on CUDA: inputs copied to the device once; outputs allocated by ORT in device
        memory (no host staging inside the run) and copied back once, each, after it."""
        binding = session.io_binding()
        for name, array in feeds.items():
            binding.bind_cpu_input(name, np.ascontiguousarray(array))
        for output in session.get_outputs():
            binding.bind_output(output.name, "cuda")
        start = time.perf_counter()
        session.run_with_iobinding(binding)  # returns once the session's stream has finished
        run_s = time.perf_counter() - start
        outputs: list[np.ndarray] = binding.copy_outputs_to_cpu()
        return outputs, run_s

    def filler_inputs(self, batch: int, seq: int) -> dict[str, np.ndarray]:
        """(batch, seq) inputs of one ordinary token, for warm-up and checks: a token id every
        vocabulary has (a tokenizer trained on a small corpus may have fewer than 1000)."""
        ids = np.full((batch, seq), min(1000, self.bundle.model.vocab_size - 1), dtype=np.int64)  # (B, S)
        feeds = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        return {name: feeds[name] for name in self.input_names}

    def warm_up(self) -> None:
        """A few shapes through every loaded graph, so the first real request pays no set-up cost."""
        for batch, seq in ((1, 8), (4, 32), (8, 128)):
            seq = min(seq, self.bundle.model.max_positions)
            feeds = self.filler_inputs(batch, seq)
            for worker, sessions in enumerate(self._replicas):  # every replica: each has its own arena
                for graph in sessions:
                    self.run(feeds, graph, worker)
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
        session.run(None, self.filler_inputs(2, 16))
        profile = Path(session.end_profiling())
        try:
            return read_profile(profile)
        finally:
            profile.unlink(missing_ok=True)
