"""Clients that cancel, stop reading, or vanish: their work is freed and nobody else waits."""

from __future__ import annotations

import statistics
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from atento.v1 import encoder_pb2 as pb

from tests.servers import ServerProcess, running_server

LONG = "It is a truth universally acknowledged that a single man in possession of a good fortune " * 40


def wait_for(condition: Callable[[], bool], seconds: float = 20) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def slow_work(server: ServerProcess, texts: int = 16) -> threading.Thread:
    request = pb.EmbedRequest(texts=[f"{i} {LONG}" for i in range(texts)], truncation=pb.TRUNCATION_CUT)
    worker = threading.Thread(target=lambda: server.stub().Embed(request, timeout=120))
    worker.start()
    assert wait_for(lambda: server.metric("atento_queue_depth") > 0)
    return worker


def test_cancelled_calls_free_their_queued_work(minilm_bundle: Path, record: Callable[..., None]) -> None:
    with running_server(minilm_bundle, "--max-batch-tokens", "512") as server:
        worker = slow_work(server)
        stub = server.stub()
        calls = [stub.Embed.future(pb.EmbedRequest(texts=[f"never mind {i}"] * 4), timeout=60) for i in range(10)]
        assert wait_for(lambda: server.metric("atento_queue_depth") >= 40)
        for call in calls:
            call.cancel()
        worker.join()
        assert wait_for(lambda: server.metric("atento_dropped_texts_total", reason="cancelled") == 40)
        assert server.metric("atento_texts_total") == 16  # the slow call's texts only
        assert wait_for(lambda: server.metric("atento_in_flight_requests") == 0)
        assert server.metric("atento_queue_depth") == 0
        assert all(call.cancelled() for call in calls)
    record(cancelled_calls=10, texts_dropped=40, texts_computed_for_them=0)


def test_a_stream_that_is_not_read_stalls_nobody_else(minilm_bundle: Path, record: Callable[..., None]) -> None:
    with running_server(minilm_bundle) as server:
        sent = 0

        def flood() -> Iterator[pb.EmbedRequest]:  # large responses, never read: flow control must hold them
            nonlocal sent
            while sent < 400:
                sent += 1
                yield pb.EmbedRequest(texts=[LONG[:800]] * 8, token_embeddings=True, truncation=pb.TRUNCATION_CUT)

        with server.channel() as channel:
            stalled = channel.stream_stream(
                "/atento.v1.Encoder/EmbedStream",
                request_serializer=pb.EmbedRequest.SerializeToString,
                response_deserializer=pb.EmbedResponse.FromString,
            )(flood(), timeout=120)
            assert wait_for(lambda: server.metric("atento_in_flight_requests", method="EmbedStream") == 1)
            # The unread responses fill every window, then computing for it stops: the count holds
            # still for a whole second (how soon depends on the machine's speed, so poll for it).
            computed = -1.0

            def held_still() -> bool:
                nonlocal computed
                before = server.metric("atento_texts_total")
                time.sleep(1)
                computed = server.metric("atento_texts_total")
                return computed == before

            assert wait_for(held_still, seconds=60), "computing for the unread stream never stopped"
            assert computed < 400 * 8 / 4  # it stopped long before its 400 requests
            stub = server.stub()
            latencies = []
            for i in range(20):
                began = time.perf_counter()
                stub.Embed(pb.EmbedRequest(texts=[f"meanwhile, call {i}"]), timeout=30)
                latencies.append(time.perf_counter() - began)
            assert statistics.median(latencies) < 0.5, latencies
            assert wait_for(lambda: server.metric("atento_queue_depth") == 0)
            stalled.cancel()
        assert wait_for(lambda: server.metric("atento_in_flight_requests", method="EmbedStream") == 0)
        assert wait_for(lambda: server.metric("atento_stream_tasks") == 0)
    record(stalled_stream_texts_computed=computed, other_calls_p50_s=statistics.median(latencies))


VANISHING_CLIENT = textwrap.dedent(
    """
    import os, signal, sys, time
    import grpc
    from atento.v1 import encoder_pb2 as pb, encoder_pb2_grpc as pbg

    def requests():
        for i in range(10_000):
            yield pb.EmbedRequest(texts=[f"request {i}"] * 4)
            time.sleep(0.01)

    stub = pbg.EncoderStub(grpc.insecure_channel(sys.argv[1]))
    for k, _ in enumerate(stub.EmbedStream(requests())):
        if k == 5:
            os.kill(os.getpid(), signal.SIGKILL)  # gone mid-stream, without a goodbye
    """
)


def test_a_client_that_vanishes_mid_stream_leaves_no_task(tiny_bundle: Path, record: Callable[..., None]) -> None:
    with running_server(tiny_bundle) as server:
        client = subprocess.run(
            [sys.executable, "-c", VANISHING_CLIENT, server.target], capture_output=True, timeout=60, check=False
        )
        assert client.returncode == -9
        assert wait_for(lambda: server.metric("atento_in_flight_requests", method="EmbedStream") == 0)
        assert wait_for(lambda: server.metric("atento_stream_tasks") == 0)
        # Counted once and never as our error: CANCELLED when gRPC cancels the handler first, OK
        # (about half the time here) when the dropped connection reaches the handler as the end of
        # the requests and it finishes its window into the void. grpc.aio tells the two apart
        # nowhere: even a done callback's context.cancelled() is False in both.
        codes = ("CANCELLED", "OK")
        assert wait_for(
            lambda: sum(server.metric("atento_requests_total", method="EmbedStream", code=c) for c in codes) == 1
        )
        assert server.metric("atento_requests_total", method="EmbedStream", code="INTERNAL") == 0
        assert server.stub().Embed(pb.EmbedRequest(texts=["still serving"]), timeout=10).results
    record(vanished_clients=1, tasks_left=0)
