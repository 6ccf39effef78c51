"""Admission by tokens before tokenising (issue 15, finding 2) and bulk work that never starves
interactive work (finding 11), against real servers on loopback."""

from __future__ import annotations

import os
import random
import statistics
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from atento.v1 import encoder_pb2 as pb

from tests.reliability.conftest import scale
from tests.servers import ServerProcess, running_server

WORDS = ("the", "quick", "brown", "fox", "jumps", "over", "lazy", "dogs", "while", "seven", "wizards", "judge")
BULK = (("atento-priority", "bulk"),)


def prose(characters: int, seed: int) -> str:
    rng = random.Random(seed)
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < characters:
        words.append(rng.choice(WORDS))
    return " ".join(words)[:characters]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def outcome(call: Callable[[], object]) -> tuple[grpc.StatusCode, float]:
    start = time.perf_counter()
    try:
        call()
        code = grpc.StatusCode.OK
    except grpc.RpcError as error:
        code = error.code()
    return code, time.perf_counter() - start


@pytest.mark.parametrize(
    "bound", [["--max-queued-tokens", str(256 * 128)], ["--max-queued-texts", "256"]], ids=["tokens", "texts"]
)
def test_a_full_queue_refuses_before_tokenising(
    tiny_bundle: Path, bound: list[str], record: Callable[..., None]
) -> None:
    """Many concurrent calls of 256 long texts: those past the queue's bound are refused before they
    are tokenised (tokenising 256 x 20 000 characters takes seconds of CPU), and at least one succeeds."""
    calls, characters = scale(8, 24), scale(5000, 20000)
    texts = [prose(characters, seed) for seed in range(256)]
    request = pb.EmbedRequest(texts=texts, truncation=pb.TRUNCATION_CUT)
    with running_server(tiny_bundle, *bound) as server:
        stub = server.stub()
        cpu = cpu_seconds(server.process.pid)
        start = time.perf_counter()
        with ThreadPoolExecutor(calls) as pool:
            results = list(pool.map(lambda _: outcome(lambda: stub.Embed(request, timeout=300)), range(calls)))
        wall = time.perf_counter() - start
        cpu = cpu_seconds(server.process.pid) - cpu
        ok = sum(code == grpc.StatusCode.OK for code, _ in results)
        refused = [s for code, s in results if code == grpc.StatusCode.RESOURCE_EXHAUSTED]
        tokenised = server.metric("atento_tokenize_duration_seconds_count")
        assert ok >= 1 and ok + len(refused) == calls, results
        assert tokenised == ok, f"{tokenised} requests tokenised, {ok} admitted: refused ones were tokenised"
        assert server.metric("atento_queue_tokens") == 0 and server.metric("atento_queue_depth") == 0
    record(
        bound=bound[0],
        calls=calls,
        chars=characters,
        ok=ok,
        refused=len(refused),
        tokenised=int(tokenised),
        refusal_median_ms=1000 * statistics.median(refused) if refused else 0.0,
        server_cpu_s=cpu,
        wall_s=wall,
    )


def test_interactive_texts_overtake_queued_bulk_work(tiny_bundle: Path, record: Callable[..., None]) -> None:
    """A backlog of bulk texts (field and header alike) does not delay an interactive call behind it."""
    args = ("--max-batch-tokens", "256", "--max-queued-tokens", "1000000")  # small batches: a long backlog
    with running_server(tiny_bundle, *args) as server:
        stub = server.stub()
        texts = [prose(300, seed) for seed in range(64)]
        backlog = [
            stub.Embed.future(pb.EmbedRequest(texts=texts, bulk=True), timeout=120)
            if i % 2
            else stub.Embed.future(pb.EmbedRequest(texts=texts), metadata=BULK, timeout=120)
            for i in range(12)
        ]
        end = time.monotonic() + 30
        while server.metric("atento_queue_depth") < 128 and time.monotonic() < end:
            time.sleep(0.01)
        queued = server.metric("atento_queue_depth")
        response = stub.Embed(pb.EmbedRequest(texts=["an interactive question"]), timeout=60)
        bulk_done = sum(f.done() for f in backlog)
        assert response.results
        assert all(f.result().results for f in backlog)  # the bulk work completes too
    assert queued >= 128, "the backlog never formed"
    assert bulk_done < len(backlog), "the interactive call waited for the whole bulk backlog"
    record(bulk_texts_queued=int(queued), bulk_calls_done_before_interactive=bulk_done, of=len(backlog))


def single_text_latencies(server: ServerProcess, count: int) -> list[float]:
    stub, latencies = server.stub(), []
    for i in range(count):
        start = time.perf_counter()
        stub.Embed(pb.EmbedRequest(texts=[f"a short interactive query number {i}"]), timeout=60)
        latencies.append(time.perf_counter() - start)
    return latencies


def beside_an_indexing_job(server: ServerProcess, texts: list[str], bulk: bool, samples: int) -> tuple[float, float]:
    """Median single-text latency while four callers index ``texts`` as fast as the server takes them
    (the queue is never empty), and the texts per second they indexed meanwhile."""
    stop, indexed = threading.Event(), [0]

    def index() -> None:
        stub = server.stub()
        while not stop.is_set():
            stub.Embed(pb.EmbedRequest(texts=texts, bulk=bulk), timeout=120)
            indexed[0] += len(texts)

    indexers = [threading.Thread(target=index) for _ in range(4)]
    for thread in indexers:
        thread.start()
    time.sleep(1)
    start, before = time.perf_counter(), indexed[0]
    median = statistics.median(single_text_latencies(server, samples))
    rate = (indexed[0] - before) / (time.perf_counter() - start)
    stop.set()
    for thread in indexers:
        thread.join()
    return median, rate


def test_interactive_latency_beside_an_indexing_job(minilm_bundle: Path, record: Callable[..., None]) -> None:
    """Side by side in one run, medians: single-text latency on an idle server, beside an indexing
    job sent as bulk, and beside the same job sent as interactive work (what bulk saves)."""
    samples = scale(40, 300)
    # Two workers of one thread each: bulk batches never take the second, which stays free for
    # interactive texts, and neither waits for the other inside ONNX Runtime's shared thread pool.
    args = ("--inference-workers", "2", "--intra-op-threads", "1")
    texts = [prose(400, seed) for seed in range(32)]
    with running_server(minilm_bundle, *args) as server:
        single_text_latencies(server, 10)  # warm
        idle = statistics.median(single_text_latencies(server, samples))
        medians, indexed = {}, {}
        for kind, count in (("bulk", samples), ("interactive", scale(5, 30))):  # the latter waits seconds a call
            medians[kind], indexed[kind] = beside_an_indexing_job(server, texts, kind == "bulk", count)
    ratio = medians["bulk"] / idle
    record(
        idle_p50_ms=idle * 1000,
        beside_bulk_p50_ms=medians["bulk"] * 1000,
        beside_interactive_job_p50_ms=medians["interactive"] * 1000,
        ratio_bulk=ratio,
        ratio_interactive_job=medians["interactive"] / idle,
        bulk_texts_per_s=indexed["bulk"],
    )
    assert ratio <= 2.0, f"single-text latency {ratio:.1f}x an idle server's beside a bulk indexing job"
