"""OpenTelemetry for the service: a span per call (opentelemetry-instrumentation-grpc's aio server
interceptor) with the stages as children, exported by OTLP; trace ids for the log lines.

Imported only when tracing is on (tracing.py): the one service module that imports opentelemetry.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.instrumentation.grpc import aio_server_interceptor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter

from .tracing import CallTracer, Run

SERVICE_NAME = "atento"


def in_a_call() -> bool:
    """Whether a traced call is current: stages outside one (the HTTP door has no call span) are not
    recorded, rather than each becoming a trace of its own."""
    return trace.get_current_span().is_recording()


class OtelCallTracer(CallTracer):
    records = True

    def __init__(self, provider: TracerProvider) -> None:
        self.tracer = provider.get_tracer("atento.service")

    @contextmanager
    def span(self, name: str, **attributes: Any) -> Iterator[None]:
        if not in_a_call():
            yield
            return
        with self.tracer.start_as_current_span(name, attributes=attributes):
            yield

    def batches(self, submitted: float, runs: Sequence[Run], done: float) -> None:
        if not runs or not in_a_call():
            return
        offset = time.time_ns() - time.perf_counter_ns()  # perf_counter seconds -> epoch nanoseconds

        def ns(seconds: float) -> int:
            return int(seconds * 1e9) + offset

        first = min(start for start, _ in runs)
        self.tracer.start_span("queue wait", start_time=ns(submitted)).end(end_time=ns(first))
        batch = self.tracer.start_span("batch", start_time=ns(first), attributes={"atento.batches": len(runs)})
        inside = trace.set_span_in_context(batch)
        for start, seconds in runs:
            self.tracer.start_span("ORT run", context=inside, start_time=ns(start)).end(end_time=ns(start + seconds))
        batch.end(end_time=ns(done))


class OtelTracing:
    """The tracer provider, the gRPC server interceptor and the call tracer, as one (tracing.Tracing)."""

    def __init__(self, processor: SpanProcessor) -> None:
        self.provider = TracerProvider(resource=Resource.create({"service.name": SERVICE_NAME}))
        self.provider.add_span_processor(processor)
        self.interceptor = aio_server_interceptor(tracer_provider=self.provider)  # type: ignore[no-untyped-call]
        self.tracer = OtelCallTracer(self.provider)

    @classmethod
    def with_otlp(cls, endpoint: str | None) -> OtelTracing:
        """OTLP over gRPC to ``endpoint``; None: the exporter reads OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT."""
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        return cls(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))

    @classmethod
    def with_exporter(cls, exporter: SpanExporter) -> OtelTracing:
        """Every span handed to ``exporter`` as it ends (tests: an in-memory exporter)."""
        return cls(SimpleSpanProcessor(exporter))

    @staticmethod
    def current_ids() -> tuple[str, str] | None:
        """The current trace and span ids as hex, for the log lines; None outside a span."""
        context = trace.get_current_span().get_span_context()
        if not context.is_valid:
            return None
        return format(context.trace_id, "032x"), format(context.span_id, "016x")

    def shutdown(self) -> None:
        self.provider.shutdown()  # exports what is still buffered
