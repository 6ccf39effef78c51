"""Tracing hooks the service calls on every request; no-ops unless tracing is on.

This module never imports opentelemetry: with no OTLP endpoint configured (``--otlp-endpoint`` or
OTEL_EXPORTER_OTLP_ENDPOINT) the server runs ``CallTracer``'s no-ops and opentelemetry is never
loaded (the `tracing` extra may be absent). With one, the server loads ``otel.py``, which implements
``Tracing``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from .config import Settings

OTLP_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")

# One batch a request's texts ran in: (start, seconds in ONNX Runtime), time.perf_counter() values.
Run = tuple[float, float]


class CallTracer:
    """The spans of one call's stages: tokenise and respond (``span``), and queue wait, batch and
    ONNX Runtime run (``batches``, recorded once the batch's timings are known). Here: nothing.

    ``records``: False for this no-op one, so callers skip gathering what only a real tracer reads."""

    records = False

    @contextmanager
    def span(self, name: str, **attributes: Any) -> Iterator[None]:
        yield

    def batches(self, submitted: float, runs: Sequence[Run], done: float) -> None:
        """``submitted``: when the texts entered the queue; ``runs``: the batches they ran in;
        ``done``: when the last output reached the call (all time.perf_counter() values)."""


def tracing_wanted(settings: Settings) -> bool:
    return settings.otlp_endpoint is not None or any(os.environ.get(name) for name in OTLP_VARIABLES)


class Tracing(Protocol):
    """What the server uses of OpenTelemetry (otel.py)."""

    @property
    def interceptor(self) -> Any:
        """A grpc.aio.ServerInterceptor that opens each call's span."""

    @property
    def tracer(self) -> CallTracer: ...

    def current_ids(self) -> tuple[str, str] | None: ...

    def shutdown(self) -> None: ...
