"""Every resource bound holds, refusing before any work: concurrency, message size, request size, queue.

(The queue bound is also shown under load in test_load and with its retry hint in
tests/service/test_overload.py; texts per request and characters per text in
tests/service/test_validation.py.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from atento.v1 import encoder_pb2 as pb

from tests.servers import running_server


def test_concurrent_rpc_bound(tiny_bundle: Path, record: Callable[..., None]) -> None:
    with running_server(tiny_bundle, "--max-concurrent-rpcs", "2") as server:
        release = threading.Event()

        def hold() -> Iterator[pb.EmbedRequest]:
            yield pb.EmbedRequest(texts=["holding a slot"])
            release.wait(30)

        stub = server.stub()
        held = [stub.EmbedStream(hold(), timeout=60) for _ in range(2)]
        for stream in held:
            next(stream)  # both streams are open and answered
        with pytest.raises(grpc.RpcError) as raised:
            stub.Embed(pb.EmbedRequest(texts=["a third call"]), timeout=10)
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        release.set()
        for stream in held:
            list(stream)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                assert stub.Embed(pb.EmbedRequest(texts=["room again"]), timeout=10).results
                break
            except grpc.RpcError:
                time.sleep(0.1)
        else:
            pytest.fail("the slots were not freed")
    record(max_concurrent_rpcs=2, third_call="RESOURCE_EXHAUSTED")


def test_message_size_bound_refuses_before_any_work(tiny_bundle: Path, record: Callable[..., None]) -> None:
    with running_server(tiny_bundle, "--max-receive-message-mib", "1", "--max-chars-per-text", "100000") as server:
        stub = server.stub()
        with pytest.raises(grpc.RpcError) as raised:
            stub.Embed(pb.EmbedRequest(texts=["x" * 60_000] * 20, truncation=pb.TRUNCATION_CUT), timeout=30)  # 1.2 MB
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert server.metric("atento_texts_total") == 0 and server.metric("atento_tokenize_duration_seconds_count") == 0
        assert stub.Embed(pb.EmbedRequest(texts=["x" * 60_000] * 10, truncation=pb.TRUNCATION_CUT), timeout=30).results
    record(max_receive_message_mib=1, oversized="RESOURCE_EXHAUSTED", work_done=0)


def test_request_size_bounds_refuse_before_any_work(tiny_bundle: Path, record: Callable[..., None]) -> None:
    with running_server(tiny_bundle, "--max-texts-per-request", "4", "--max-chars-per-text", "50") as server:
        stub = server.stub()
        for request in (pb.EmbedRequest(texts=["a"] * 5), pb.EmbedRequest(texts=["b" * 51])):
            with pytest.raises(grpc.RpcError) as raised:
                stub.Embed(request, timeout=10)
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert server.metric("atento_tokenize_duration_seconds_count") == 0  # refused before tokenising
    record(max_texts_per_request=4, max_chars_per_text=50, tokenised_before_refusal=0)
