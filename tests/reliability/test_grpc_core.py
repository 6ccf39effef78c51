"""What gRPC core answers on its own, before atento sees a call (issue 15, finding 9), sent as raw
HTTP/2 frames: a message with the compressed flag but no ``grpc-encoding``, an unknown or lying
encoding, a malformed ``grpc-timeout``. gRPC core answers these INTERNAL itself (it logs
``hpack_parser.cc`` errors); no interceptor, handler or server option of atento runs for them, so
atento cannot map them to INVALID_ARGUMENT or UNIMPLEMENTED: README documents them. These checks
pin what core answers (a gRPC upgrade that changes it shows here) and that atento never counts,
tokenises or computes such calls, and keeps serving."""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import pytest
from atento.v1 import encoder_pb2 as pb

from tests.servers import ServerProcess, running_server

REQUEST = pb.EmbedRequest(texts=["hello"]).SerializeToString()

# (extra headers, compressed flag) -> the grpc-status and grpc-message gRPC core answers
CASES: dict[str, tuple[Sequence[tuple[str, str]], int, str, str]] = {
    "compressed flag without grpc-encoding": ((), 1, "13", "Compression bit set but no encoding configured"),
    "gzip declared, bytes not gzip": ((("grpc-encoding", "gzip"),), 1, "13", "Decompression failed"),
    "unknown grpc-encoding": ((("grpc-encoding", "zstd-nope"),), 1, "13", "Error parsing 'grpc-encoding'"),
    "grpc-timeout not a number": ((("grpc-timeout", "abc"),), 0, "13", "Error parsing 'grpc-timeout'"),
    "grpc-timeout without unit": ((("grpc-timeout", "5"),), 0, "13", "Error parsing 'grpc-timeout'"),
    "grpc-timeout negative": ((("grpc-timeout", "-5S"),), 0, "13", "Error parsing 'grpc-timeout'"),
}


def raw_call(server: ServerProcess, headers: Sequence[tuple[str, str]], flag: int, payload: bytes) -> dict[str, str]:
    """One unary call as HTTP/2 frames over a socket; the response's headers and trailers."""
    connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    answer: dict[str, str] = {}
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        connection.initiate_connection()
        request_headers = [
            (":method", "POST"),
            (":scheme", "http"),
            (":path", "/atento.v1.Encoder/Embed"),
            (":authority", server.target),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
            *headers,
        ]
        connection.send_headers(1, request_headers)
        connection.send_data(1, struct.pack(">BI", flag, len(payload)) + payload, end_stream=True)  # gRPC framing
        sock.sendall(connection.data_to_send())
        while data := sock.recv(1 << 16):
            for event in connection.receive_data(data):
                if isinstance(event, h2.events.ResponseReceived | h2.events.TrailersReceived):
                    answer.update((str(k), str(v)) for k, v in event.headers)
                if isinstance(event, h2.events.StreamEnded | h2.events.StreamReset):
                    return answer
            sock.sendall(connection.data_to_send())
    return answer


@pytest.fixture(scope="module")
def server(tiny_bundle: Path) -> Iterator[ServerProcess]:
    with running_server(tiny_bundle) as running:
        yield running


def test_a_well_formed_raw_call_is_served(server: ServerProcess) -> None:
    assert raw_call(server, (), 0, REQUEST)["grpc-status"] == "0"


@pytest.mark.parametrize("case", list(CASES))
def test_what_grpc_core_answers_before_atento(server: ServerProcess, case: str, record: Callable[..., None]) -> None:
    headers, flag, status, message = CASES[case]
    before = server.metric("atento_requests_total"), server.metric("atento_tokenize_duration_seconds_count")
    answer = raw_call(server, headers, flag, REQUEST)
    assert answer.get("grpc-status") == status and message in answer.get("grpc-message", ""), answer
    after = server.metric("atento_requests_total"), server.metric("atento_tokenize_duration_seconds_count")
    assert after == before  # atento never saw the call: core answered it alone
    assert raw_call(server, (), 0, REQUEST)["grpc-status"] == "0"  # and the server serves on
    record(case=case, answered_by="gRPC core", status=status)
