"""Health, reflection, graceful drain on SIGTERM, and start-up refusals."""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from atento.v1 import encoder_pb2 as pb
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from tests.servers import ServerProcess, running_server

SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING


def test_health_serving_after_start_and_reflection_lists_the_service(tiny_bundle: Path) -> None:
    with running_server(tiny_bundle) as server:
        assert server.health("") == SERVING
        assert server.health("atento.v1.Encoder") == SERVING
        assert server.health("liveness") == SERVING
        with server.channel() as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            request = reflection_pb2.ServerReflectionRequest(list_services="")
            (response,) = list(stub.ServerReflectionInfo(iter([request]), timeout=5))
            names = {s.name for s in response.list_services_response.service}
        assert {"atento.v1.Encoder", "inference.GRPCInferenceService", "grpc.health.v1.Health"} <= names
        info = server.stub().GetModelInfo(pb.GetModelInfoRequest(), timeout=5)
        assert info.provider == "CPUExecutionProvider" and len(info.bundle_sha256) == 64
        assert "provider CPUExecutionProvider (asked for auto)" in server.log


def test_sigterm_drains_in_flight_calls_and_exits_zero(minilm_bundle: Path) -> None:
    with running_server(minilm_bundle, "--max-batch-tokens", "2048", "--drain-seconds", "60") as server:
        channel = server.channel()
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=""), timeout=120)
        statuses: list[int] = []

        def follow() -> None:
            with contextlib.suppress(grpc.RpcError):  # the watch ends when the server stops
                statuses.extend(r.status for r in watch)

        watcher = threading.Thread(target=follow, daemon=True)
        watcher.start()
        stub = server.stub()
        text = "She is tolerable; but not handsome enough to tempt me. " * 8
        with ThreadPoolExecutor(60) as pool:
            calls = [
                pool.submit(stub.Embed, pb.EmbedRequest(texts=[f"{i} {text}"] * 4), timeout=120) for i in range(60)
            ]
            end = time.monotonic() + 20
            while server.metric("atento_in_flight_requests", method="Embed") < 50 and time.monotonic() < end:
                time.sleep(0.01)
            in_flight = server.metric("atento_in_flight_requests", method="Embed")
            assert in_flight >= 50, f"only {in_flight} calls in flight"
            server.process.send_signal(signal.SIGTERM)
            end = time.monotonic() + 10
            while NOT_SERVING not in statuses and time.monotonic() < end:
                time.sleep(0.01)
            assert NOT_SERVING in statuses, statuses  # health turns NOT_SERVING once SIGTERM arrives
            assert server.health("liveness") == SERVING  # alive while it drains
            errors = [call.exception() for call in calls]
        # What the design promises: every call accepted before the signal completes; a call that
        # reaches the server only after it (a loaded machine may be slow to send the last ones) is
        # refused with a retryable UNAVAILABLE, and the server's log counts exactly those.
        refused = [e for e in errors if e is not None]
        assert all(e.code() == grpc.StatusCode.UNAVAILABLE and "shutting down" in e.details() for e in refused)
        assert 60 - len(refused) >= in_flight
        assert all(len(call.result().results) == 4 for call, e in zip(calls, errors, strict=True) if e is None)
        assert server.process.wait(60) == 0
        assert f"drained: {len(refused)} calls refused while draining" in server.log
        assert "stopped" in server.log
        channel.close()


def test_new_calls_are_refused_while_draining(tiny_bundle: Path) -> None:
    with running_server(tiny_bundle, "--drain-seconds", "30") as server:
        stub = server.stub()
        release = threading.Event()

        def requests() -> Iterator[pb.EmbedRequest]:
            yield pb.EmbedRequest(texts=["an open stream is a call in flight"])
            release.wait(30)

        stream = stub.EmbedStream(requests(), timeout=60)
        assert next(stream).results  # the stream is open and working
        server.process.send_signal(signal.SIGTERM)
        end = time.monotonic() + 10
        while server.health("") != NOT_SERVING and time.monotonic() < end:
            time.sleep(0.01)
        with pytest.raises(grpc.RpcError) as raised:
            stub.Embed(pb.EmbedRequest(texts=["a"]), timeout=5)
        assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "shutting down" in raised.value.details()
        assert server.health("liveness") == SERVING and server.process.poll() is None
        with pytest.raises(grpc.RpcError) as ended:  # an open stream takes no new request: ended retryably
            list(stream)
        assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
        release.set()  # nothing is in flight: the server exits
        assert server.process.wait(60) == 0


def test_start_up_refusals_are_one_line(tmp_path: Path, tiny_bundle: Path) -> None:
    missing = ServerProcess(["--bundle", str(tmp_path / "nowhere"), "--port", "0", "--metrics-port", "0"])
    assert missing.process.wait(60) == 2  # a start-up fault the server can name: exit 2
    errors = [line for line in missing.lines if "ERROR" in line]
    assert len(errors) == 1 and "manifest.json is missing" in errors[0] and str(tmp_path / "nowhere") in errors[0]

    bad_flag = ServerProcess(["--bundle", str(tiny_bundle), "--port", "70000"])
    assert bad_flag.process.wait(60) == 2
    assert "port: Input should be less than or equal to 65535" in bad_flag.log
