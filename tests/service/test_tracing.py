"""OpenTelemetry: the span tree of one Embed call through a real server (in-process, on a loopback
port, an in-memory span exporter), trace ids in log lines, and no opentelemetry at all when off."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path

import grpc
import pytest
from atento.service.config import Settings
from atento.service.logs import TRACE_FILTER, configure
from atento.service.otel import OtelTracing
from atento.service.server import AtentoServer
from atento.v1 import encoder_pb2 as pb
from atento.v1 import encoder_pb2_grpc
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

TEXTS = ["The dog runs.", "A puppy is running.", "Stocks fell."]


async def embed_once(bundle: Path, exporter: InMemorySpanExporter) -> pb.EmbedResponse:
    settings = Settings(bundle=bundle, port=0, metrics_port=0, drain_seconds=5, drain_notice_seconds=0)
    server = AtentoServer(settings, tracing=OtelTracing.with_exporter(exporter))
    try:
        await server.start()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = encoder_pb2_grpc.EncoderStub(channel)  # type: ignore[no-untyped-call]
            response: pb.EmbedResponse = await stub.Embed(pb.EmbedRequest(texts=TEXTS), timeout=30)
    finally:
        await server.drain()
    return response


def children(spans: Sequence[ReadableSpan], parent: ReadableSpan) -> dict[str, ReadableSpan]:
    assert parent.context is not None
    found = [s for s in spans if s.parent is not None and s.parent.span_id == parent.context.span_id]
    return {s.name: s for s in found}


def test_one_embed_call_is_one_span_tree(tiny_bundle: Path) -> None:
    exporter = InMemorySpanExporter()
    response = asyncio.run(embed_once(tiny_bundle, exporter))
    assert len(response.results) == len(TEXTS)
    spans = exporter.get_finished_spans()
    (call,) = [s for s in spans if s.name == "/atento.v1.Encoder/Embed"]
    assert call.kind is SpanKind.SERVER and call.parent is None
    assert call.attributes is not None and call.attributes["rpc.grpc.status_code"] == grpc.StatusCode.OK.value[0]
    stages = children(spans, call)
    assert set(stages) == {"tokenize", "queue wait", "batch", "respond"}
    (run,) = children(spans, stages["batch"]).values()  # three short texts: one batch, one run
    assert run.name == "ORT run"
    assert {s.context.trace_id for s in spans if s.context is not None} == {call.context.trace_id}  # type: ignore[union-attr]
    order = [call, stages["tokenize"], stages["queue wait"], stages["batch"], stages["respond"]]
    starts = [s.start_time or 0 for s in order]
    assert starts == sorted(starts), [s.name for s in order]  # the stages follow one another
    assert stages["tokenize"].end_time <= stages["queue wait"].start_time  # type: ignore[operator]
    assert stages["queue wait"].end_time == stages["batch"].start_time == run.start_time
    assert run.end_time <= stages["batch"].end_time <= stages["respond"].start_time  # type: ignore[operator]
    assert stages["respond"].end_time <= call.end_time  # type: ignore[operator]
    assert stages["tokenize"].attributes == {"atento.texts": len(TEXTS)}


def test_log_lines_carry_the_trace_id(tiny_bundle: Path) -> None:
    exporter = InMemorySpanExporter()
    tracing = OtelTracing.with_exporter(exporter)
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    configure("info", "json", stream=stream)
    TRACE_FILTER.current = tracing.current_ids
    try:
        log = logging.getLogger("atento.test")
        with tracing.provider.get_tracer("test").start_as_current_span("a call"):
            log.warning("inside a call")
        log.warning("outside any call")
        with tracing.tracer.span("tokenize"):  # a stage outside any call (the HTTP door's): not a trace
            pass
    finally:
        TRACE_FILTER.current = None
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    inside, outside = (json.loads(line) for line in stream.getvalue().splitlines())
    (span,) = exporter.get_finished_spans()  # the call's span only
    assert span.context is not None
    assert inside["trace_id"] == format(span.context.trace_id, "032x")
    assert inside["span_id"] == format(span.context.span_id, "016x")
    assert "trace_id" not in outside and outside["message"] == "outside any call"


SERVE_WITHOUT_TRACING = """
import asyncio, sys
import grpc
from atento.service.config import Settings
from atento.service.server import AtentoServer
from atento.v1 import encoder_pb2 as pb, encoder_pb2_grpc

async def main():
    server = AtentoServer(Settings(bundle=sys.argv[1], port=0, metrics_port=0, drain_notice_seconds=0))
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        await encoder_pb2_grpc.EncoderStub(channel).Embed(pb.EmbedRequest(texts=["a text"]), timeout=30)
    await server.drain()

asyncio.run(main())
import atento.client.cli
print(sorted(name for name in sys.modules if name.startswith("opentelemetry")))
"""


@pytest.mark.parametrize("variable", ["OTEL_EXPORTER_OTLP_ENDPOINT", "ATENTO_OTLP_ENDPOINT"])
def test_without_an_endpoint_opentelemetry_is_never_imported(tiny_bundle: Path, variable: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "ATENTO_OTLP"))}
    script = textwrap.dedent(SERVE_WITHOUT_TRACING)
    result = subprocess.run(
        [sys.executable, "-c", script, str(tiny_bundle)], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
    # and with the endpoint set, the same server loads it (and exports to nowhere, quietly)
    env |= {variable: "http://127.0.0.1:1", "OTEL_EXPORTER_OTLP_TIMEOUT": "1"}
    traced = subprocess.run(
        [sys.executable, "-c", script, str(tiny_bundle)], capture_output=True, text=True, env=env, timeout=120
    )
    assert traced.returncode == 0, traced.stderr
    assert "opentelemetry.sdk.trace" in traced.stdout
