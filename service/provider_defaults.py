"""Batching defaults per execution provider, for the settings a user left at their default.

The CPU defaults (config.py) are sized for a few cores. A GPU computes a 32k-token batch in about
the time two CPU cores take for a few hundred tokens, and only large batches fill it, so on CUDA the
batcher may take more tokens and more texts per batch. What a user set (flag or ATENTO_* variable)
always wins; the values chosen are logged and reported by GetModelInfo's limits.
"""

from __future__ import annotations

import logging
from typing import Any

import onnxruntime as ort

from .config import Settings
from .runtime import CUDA

log = logging.getLogger("atento.provider_defaults")

# TEI's default token budget is 16384 per batch on a GPU; MiniLM-sized encoders keep an H100/H200
# busy only past that, and the queue bound follows (16 batches, config.queued_tokens_bound).
PROVIDER_DEFAULTS: dict[str, dict[str, Any]] = {
    CUDA: {"max_batch_tokens": 32768, "max_batch_size": 256},
}


def for_provider(settings: Settings, provider: str) -> Settings:
    """``settings`` with ``provider``'s batching defaults in place of the fields the user did not set."""
    chosen = _with_defaults(settings, provider)
    if chosen == settings:
        return settings
    changed = {name: getattr(chosen, name) for name in PROVIDER_DEFAULTS[provider]}
    log.info("batching defaults for %s: %s (set them to choose otherwise)", provider, changed)
    return chosen


def batch_ceiling(settings: Settings) -> tuple[int, int]:
    """The largest (texts, tokens) a batch may hold on whichever provider ``settings`` may end on.

    Histogram buckets are made before the model loads (the metrics port listens meanwhile), so they
    end at the largest maximum of the providers this onnxruntime offers and the settings allow."""
    cuda_possible = settings.provider != "cpu" and CUDA in ort.get_available_providers()
    candidates = [settings, _with_defaults(settings, CUDA)] if cuda_possible else [settings]
    return max(s.max_batch_size for s in candidates), max(s.max_batch_tokens for s in candidates)


def _with_defaults(settings: Settings, provider: str) -> Settings:
    defaults = PROVIDER_DEFAULTS.get(provider, {})
    return settings.model_copy(update={k: v for k, v in defaults.items() if k not in settings.model_fields_set})
