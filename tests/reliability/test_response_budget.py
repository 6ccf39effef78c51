"""Response bytes computed but not yet sent are bounded by one server-wide budget (issue 15, finding 1).

Clients that ask for full attention maps and never read hold at most the budget; the rest of their
work waits or is refused before it is computed, and clients that read are served meanwhile.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from atento.v1 import encoder_pb2 as pb

from tests.reliability.conftest import proc_status, scale
from tests.reliability.http2 import NonReadingCall
from tests.servers import ServerProcess, running_server

EMBED = "/atento.v1.Encoder/Embed"
MIB = 1 << 20
# tiny: 2 layers x 4 heads x 128 x 128 float32 = 512 KiB of attention maps per text
ATTENTION_TEXTS = 96
ATTENTION_REQUEST = pb.EmbedRequest(
    texts=["a long text for full attention maps " * 40] * ATTENTION_TEXTS,
    attention=pb.AttentionSpec(),
    truncation=pb.TRUNCATION_CUT,
)
BUDGET_MIB = 128
FREED_HEAP_KEPT = 1 << 30  # service/memory.py: glibc keeps up to 1 GiB of freed heap mapped


def wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def unsent(server: ServerProcess) -> float:
    return server.metric("atento_unsent_response_bytes")


def rss_mib(server: ServerProcess) -> float:
    return proc_status(server.process.pid)["VmRSS"] / 1024


def test_unary_response_bytes_are_held_until_the_client_takes_them(
    tiny_bundle: Path, record: Callable[..., None]
) -> None:
    """The handler returning is not "sent": the bytes stay reserved until the client's window takes them."""
    with running_server(tiny_bundle, "--max-unsent-response-mib", str(BUDGET_MIB)) as server:
        call = NonReadingCall(server.host, server.port, EMBED, ATTENTION_REQUEST)
        try:
            assert wait_for(lambda: server.metric("atento_requests_total", method="Embed", code="OK") == 1, 30)
            held = unsent(server)
            assert held > ATTENTION_TEXTS * 512 * 1024  # computed and returned, not taken: still reserved
            time.sleep(1.0)
            assert unsent(server) == held
            received = call.read_all()
        finally:
            call.close()
        assert received > ATTENTION_TEXTS * 512 * 1024
        assert wait_for(lambda: unsent(server) == 0, 10)  # released once the client took the message
    record(reserved_mib=round(held / MIB, 1), held_while_unread_s=1.0, released_after_read=True)


def test_non_reading_clients_hold_at_most_the_budget(tiny_bundle: Path, record: Callable[..., None]) -> None:
    non_readers = scale(40, 80)
    readers = scale(4, 8)
    reads_each = scale(10, 50)
    args = ("--max-unsent-response-mib", str(BUDGET_MIB), "--max-concurrent-rpcs", "0")
    with running_server(tiny_bundle, *args) as server:
        stub = server.stub()
        for _ in range(3):  # the baseline: warm, with one response of each kind built and sent
            stub.Embed(ATTENTION_REQUEST, timeout=60)
            stub.Embed(pb.EmbedRequest(texts=["a warm-up text"] * 32), timeout=60)
        baseline = rss_mib(server)
        peak = baseline
        calls: list[NonReadingCall] = []
        served = refused_readers = 0
        stop = threading.Event()

        def read_embeddings() -> tuple[int, int]:
            ok = failed = 0
            for _ in range(reads_each):
                try:
                    response = stub.Embed(pb.EmbedRequest(texts=["someone who reads"] * 16), timeout=30)
                    ok += len(response.results) == 16
                except grpc.RpcError:
                    failed += 1
            return ok, failed

        try:
            for _ in range(non_readers):
                calls.append(NonReadingCall(server.host, server.port, EMBED, ATTENTION_REQUEST, timeout_s=120))
            with ThreadPoolExecutor(readers) as pool:
                outcomes = [pool.submit(read_embeddings) for _ in range(readers)]
                while not all(o.done() for o in outcomes):
                    peak = max(peak, rss_mib(server))
                    time.sleep(0.05)
                for outcome in outcomes:
                    ok, failed = outcome.result()
                    served += ok
                    refused_readers += failed
            end = time.monotonic() + 5  # the non-readers' work settles: reserved, waiting or refused
            while time.monotonic() < end:
                peak = max(peak, rss_mib(server))
                time.sleep(0.05)
            held = unsent(server)
        finally:
            stop.set()
            for call in calls:
                call.close()
        assert held <= BUDGET_MIB * MIB
        assert served == readers * reads_each and refused_readers == 0
        growth = peak - baseline
        assert growth < BUDGET_MIB + FREED_HEAP_KEPT / MIB, (
            f"RSS grew {growth:.0f} MiB over a {baseline:.0f} MiB baseline"
        )
        assert wait_for(lambda: unsent(server) == 0, 30)  # connections gone: everything released
        time.sleep(1.0)
        kept = rss_mib(server) - baseline  # freed heap the allocator keeps mapped (service/memory.py)
    record(
        non_readers=non_readers,
        response_mib=round(ATTENTION_TEXTS * 0.5, 1),
        budget_mib=BUDGET_MIB,
        baseline_rss_mib=round(baseline),
        peak_growth_mib=round(growth),
        rss_after_release_vs_baseline_mib=round(kept),
        allowed_growth_mib=f"budget {BUDGET_MIB} + freed heap kept <= 1024",
        held_mib=round(held / MIB),
        readers_served=f"{served}/{readers * reads_each}",
    )


@pytest.mark.parametrize("requests_sent", [scale(12, 40)])
def test_a_non_reading_stream_stops_at_its_share(
    tiny_bundle: Path, requests_sent: int, record: Callable[..., None]
) -> None:
    """A stream whose client reads nothing takes no further request once its share is unsent."""
    with running_server(tiny_bundle, "--max-unsent-response-mib", str(BUDGET_MIB), "--stream-window", "8") as server:
        started = threading.Event()

        def requests() -> object:
            for _ in range(requests_sent):
                yield ATTENTION_REQUEST
                started.set()
            time.sleep(30)

        channel = server.channel()
        stream = channel.stream_stream(
            "/atento.v1.Encoder/EmbedStream",
            request_serializer=pb.EmbedRequest.SerializeToString,
            response_deserializer=lambda data: len(data),
        )(requests(), timeout=60)
        try:
            try:
                first = next(stream)  # the client reads one response, then stops reading
                assert first > 0
            except grpc.RpcError as error:
                # On a slow machine a later request's wait for room in the budget (at most 10 s) can
                # run out before the first response is read: refused before computing, as it should be.
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, error  # type: ignore[attr-defined]
            time.sleep(5)
            held = unsent(server)
            computed = server.metric("atento_texts_total") / ATTENTION_TEXTS
        finally:
            stream.cancel()
            channel.close()
        share = BUDGET_MIB * MIB / 8
        assert held <= share + ATTENTION_TEXTS * 600 * 1024  # at most one response beyond the share
        assert computed < requests_sent
        assert wait_for(lambda: unsent(server) == 0, 10)
    record(stream_share_mib=share / MIB, held_mib=round(held / MIB), responses_computed=int(computed))
