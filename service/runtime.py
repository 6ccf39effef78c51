"""ONNX Runtime sessions for a bundle's graphs, on the CPU or the CUDA execution provider."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from .bundle import ATTENTION_GRAPH, FAST_GRAPH, Bundle
from .config import Settings

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
    attentions: np.ndarray | None  # (B, layers, heads, S, S) float32


class Runtime:
    """The fast graph always; the attention graph when enabled. Sessions are safe to run from threads."""

    def __init__(self, bundle: Bundle, settings: Settings) -> None:
        self.bundle = bundle
        requested = settings.provider
        wanted = choose_provider(requested, ort.get_available_providers())
        self._fast = self._session(bundle, FAST_GRAPH, wanted, settings)
        self.provider = confirm_provider(requested, wanted, self._fast.get_providers())
        self._attention = (
            self._session(bundle, ATTENTION_GRAPH, self.provider, settings)
            if settings.attention and bundle.has_attention_graph
            else None
        )
        self.input_names = tuple(i.name for i in self._fast.get_inputs())
        log.info(
            "runtime ready: provider %s (asked for %s), attention graph %s",
            self.provider,
            requested,
            "loaded" if self._attention else "off",
        )

    @staticmethod
    def _session(bundle: Bundle, role: str, provider: str, settings: Settings) -> ort.InferenceSession:
        options = ort.SessionOptions()
        options.intra_op_num_threads = settings.intra_op_threads
        options.inter_op_num_threads = settings.inter_op_threads
        options.graph_optimization_level = OPTIMIZATION[settings.graph_optimization]
        if not settings.spin:  # measured: sleeping threads double small-batch latency, so spin by default
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        # ONNX's shape inference declares the attention graph's probabilities with an empty key axis
        # and ORT warns about it on every run; the values are right (parity checks them).
        options.log_severity_level = 3 if role == ATTENTION_GRAPH else 2
        providers = [provider, CPU] if provider != CPU else [CPU]
        return ort.InferenceSession(str(bundle.graph_path(role)), options, providers=providers)

    @property
    def has_attention(self) -> bool:
        return self._attention is not None

    def run(self, inputs: Mapping[str, np.ndarray], *, attention: bool = False) -> Outputs:
        """inputs: (B, S) int64 arrays by name. With ``attention``, the attention graph runs instead."""
        session = self._attention if attention else self._fast
        if session is None:
            raise ProviderError("the attention graph is not loaded")
        feeds = {name: inputs[name] for name in self.input_names}
        if self.provider == CUDA:
            outputs = self._run_bound(session, feeds)
        else:
            outputs = session.run(None, feeds)
        return Outputs(hidden=outputs[0], attentions=outputs[1] if attention else None)

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
            self.run(feeds)
            if self._attention is not None:
                self.run(feeds, attention=True)
