"""Prometheus metrics, prefixed `atento_`, in base units, served on their own HTTP port (http_metrics.py)."""

from __future__ import annotations

from atento.v1 import encoder_pb2 as pb
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)

from .bundle import GraphRole
from .rpc import method_names

# Latency buckets from 0.5 ms to ~30 s, roughly geometric, so p99 is readable at every scale.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.004, 0.006, 0.008, 0.012, 0.016, 0.024, 0.032, 0.048, 0.064,
    0.096, 0.128, 0.192, 0.256, 0.384, 0.512, 0.768, 1.024, 1.536, 2.048, 4.096, 8.192, 16.384, 32.768,
)  # fmt: skip
DEFAULT_MAX_BATCH_SIZE = 1024
DEFAULT_MAX_BATCH_TOKENS = 131072
# Every reason is exported at 0 from the start, so rate() and alert rules see a series before the
# first refusal (tests/service/test_metric_names.py checks that each reason counted is listed).
REJECTION_REASONS = (
    "queue_full",
    "response_budget",
    "too_many_calls",
    "too_many_streams",
    "unauthenticated_missing",
    "unauthenticated_wrong",
)
DROP_REASONS = ("deadline", "cancelled")
# The HTTP door's calls count beside the gRPC methods, named by protocol and path.
HTTP_EMBEDDINGS = "http:/v1/embeddings"
HTTP_MODELS = "http:/v1/models"
METHODS = (*method_names(pb.DESCRIPTOR.services_by_name["Encoder"]), HTTP_EMBEDDINGS, HTTP_MODELS)


def powers_of_two_up_to(maximum: int, start: int = 1) -> tuple[float, ...]:
    """Histogram buckets start, 2*start, 4*start ... up to ``maximum``, which is always the last one: the
    configured bound is a value batches really reach, and no bucket lies past it (only +Inf)."""
    bounds = [float(1 << i) for i in range(start.bit_length() - 1, maximum.bit_length()) if (1 << i) < maximum]
    return (*bounds, float(maximum))


class Metrics:
    """Every metric the service exports; one instance per server, in its own registry. Batch-size and
    token buckets end at the configured ``max_batch_size`` and ``max_batch_tokens``."""

    def __init__(
        self, max_batch_size: int = DEFAULT_MAX_BATCH_SIZE, max_batch_tokens: int = DEFAULT_MAX_BATCH_TOKENS
    ) -> None:
        # A `_created` series per counter and histogram doubles the series count and carries nothing a
        # dashboard uses (Prometheus tracks resets itself): off, process-wide, before any metric exists.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        size_buckets = powers_of_two_up_to(max_batch_size)
        token_buckets = powers_of_two_up_to(max_batch_tokens, start=4)
        self.registry = registry = CollectorRegistry()
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        self.requests = Counter(
            "atento_requests", "RPCs finished, by method and status code", ["method", "code"], registry=registry
        )
        self.request_duration = Histogram(
            "atento_request_duration_seconds",
            "RPC latency from receipt to response, by method and status code",
            ["method", "code"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.tokenize_duration = Histogram(
            "atento_tokenize_duration_seconds",
            "Tokenisation time per request",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.queue_duration = Histogram(
            "atento_queue_duration_seconds",
            "Time a text waited for its batch",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.inference_duration = Histogram(
            "atento_inference_duration_seconds",
            "ONNX Runtime time per batch, by graph",
            ["graph"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.serialize_duration = Histogram(
            "atento_serialize_duration_seconds",
            "Time to build a response message",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            "atento_batch_size", "Texts per batch, by graph", ["graph"], buckets=size_buckets, registry=registry
        )
        self.batch_tokens = Histogram(
            "atento_batch_tokens",
            "Tokens per batch, padding included (rows x width)",
            buckets=token_buckets,
            registry=registry,
        )
        self.batch_padding_ratio = Histogram(
            "atento_batch_padding_ratio",
            "Share of a batch's padded tokens that are padding",
            buckets=(0.0, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0),
            registry=registry,
        )
        self.input_tokens = Histogram(
            "atento_input_tokens", "Tokens per text (special tokens included)", buckets=token_buckets, registry=registry
        )
        self.texts = Counter("atento_texts", "Texts embedded", registry=registry)
        self.tokens = Counter("atento_tokens", "Tokens computed, padding excluded", registry=registry)
        self.queue_depth = Gauge("atento_queue_depth", "Texts waiting for a batch", registry=registry)
        self.queue_capacity = Gauge("atento_queue_capacity", "The queue bound, in texts", registry=registry)
        self.queue_tokens = Gauge(
            "atento_queue_tokens",
            "Tokens admitted and not yet in a batch: an upper bound while tokenising, then the real count",
            registry=registry,
        )
        self.queue_capacity_tokens = Gauge(
            "atento_queue_capacity_tokens", "The queue bound, in tokens (the one the HPA scales on)", registry=registry
        )
        self.in_flight = Gauge("atento_in_flight_requests", "RPCs being worked on", ["method"], registry=registry)
        self.stream_tasks = Gauge(
            "atento_stream_tasks", "Tasks EmbedStream calls have running (readers and requests)", registry=registry
        )
        self.rejected = Counter(
            "atento_rejected_requests", "Requests refused before any work, by reason", ["reason"], registry=registry
        )
        self.dropped = Counter(
            "atento_dropped_texts",
            "Queued texts never computed: their deadline passed or their call was cancelled",
            ["reason"],
            registry=registry,
        )
        self.ready = Gauge("atento_ready", "1 when serving, 0 while loading or draining", registry=registry)
        self.model = Info("atento_model", "The model being served", registry=registry)
        # Every known label value exists from the start, at zero: rate() and alerts see a 0, not a gap.
        for reason in REJECTION_REASONS:
            self.rejected.labels(reason)
        for reason in DROP_REASONS:
            self.dropped.labels(reason)
        for graph in GraphRole:
            self.inference_duration.labels(graph)
            self.batch_size.labels(graph)
        for method in METHODS:
            self.in_flight.labels(method)
