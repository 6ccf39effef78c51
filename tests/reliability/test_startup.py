"""Start-up faults: the server exits non-zero with one clear line saying what and where."""

from __future__ import annotations

import json
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from atento.service.bundle import sha256_file
from atento.v1 import encoder_pb2 as pb
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.certs import Authority
from tests.servers import ServerProcess


def broken_copy(tiny_bundle: Path, tmp_path: Path, fault: str) -> list[str]:
    bundle = Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))
    manifest = json.loads((bundle / "manifest.json").read_text())
    if fault == "missing bundle":
        shutil.rmtree(bundle)
    elif fault == "hash mismatch":
        data = bytearray((bundle / "encoder.onnx").read_bytes())
        data[-10] ^= 0xFF
        (bundle / "encoder.onnx").write_bytes(bytes(data))
    elif fault == "corrupted graph":  # garbage whose hash the manifest agrees with: onnxruntime must refuse it
        (bundle / "encoder.onnx").write_bytes(b"\x08\x07garbage" * 1000)
        manifest["graphs"]["encoder"]["sha256"] = sha256_file(bundle / "encoder.onnx")
        (bundle / "manifest.json").write_text(json.dumps(manifest))
    elif fault == "unknown manifest version":
        manifest["format_version"] = 7
        (bundle / "manifest.json").write_text(json.dumps(manifest))
    elif fault == "garbage tokenizer":  # garbage whose hash the manifest agrees with
        (bundle / "tokenizer.json").write_text('{"version": "1.0", "model": "not a model"}')
        manifest["tokenizer"]["sha256"] = sha256_file(bundle / "tokenizer.json")
        (bundle / "manifest.json").write_text(json.dumps(manifest))
    elif fault == "more positions than the graph":  # the graph's position table holds 128
        manifest["model"]["max_positions"] = 700
        (bundle / "manifest.json").write_text(json.dumps(manifest))
    return ["--bundle", str(bundle)]


CASES = {
    "missing bundle": "manifest.json is missing",
    "hash mismatch": "encoder.onnx does not match its sha256",
    "corrupted graph": "onnxruntime cannot run it",
    "unknown manifest version": "unknown manifest format_version 7",
    "garbage tokenizer": "tokenizer.json is not a tokenizer the tokenizers library can read",
    "more positions than the graph": "the manifest's model.max_positions (700) is more than the graph can run",
}


def one_error_line(server: ServerProcess) -> str:
    assert server.process.wait(60) == 2
    server.terminate()
    errors = [line for line in server.lines if " ERROR " in line]
    assert len(errors) == 1, server.log
    assert "Traceback" not in server.log
    return errors[0]


@pytest.mark.parametrize("fault", list(CASES))
def test_bundle_faults(fault: str, tiny_bundle: Path, tmp_path: Path, record: Callable[..., None]) -> None:
    args = broken_copy(tiny_bundle, tmp_path, fault)
    line = one_error_line(ServerProcess([*args, "--port", "0", "--metrics-port", "0"]))
    assert CASES[fault] in line and str(tmp_path / "bundle") in line
    record(fault=fault, exit="non-zero", one_line=True)


def test_port_in_use(tiny_bundle: Path, record: Callable[..., None]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = one_error_line(ServerProcess(["--bundle", str(tiny_bundle), "--port", str(port), "--metrics-port", "0"]))
    assert f"cannot listen on 127.0.0.1:{port}" in line
    record(fault="port in use", exit="non-zero")


@pytest.mark.parametrize("which", ["tls_cert", "tls_key", "tls_client_ca"])
def test_unreadable_tls_files(which: str, tiny_bundle: Path, tmp_path: Path, record: Callable[..., None]) -> None:
    (tmp_path / "real.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    files = {
        "tls_cert": tmp_path / "real.pem",
        "tls_key": tmp_path / "real.pem",
        "tls_client_ca": tmp_path / "real.pem",
    }
    files[which] = tmp_path / "nowhere" / f"{which}.pem"
    flags = [arg for name, path in files.items() for arg in (f"--{name.replace('_', '-')}", str(path))]
    line = one_error_line(ServerProcess(["--bundle", str(tiny_bundle), "--port", "0", "--metrics-port", "0", *flags]))
    assert str(files[which]) in line and "cannot read TLS" in line
    record(fault=f"unreadable {which}", exit="non-zero")


@pytest.mark.parametrize(("flag", "what"), [("--metrics-port", "metrics"), ("--http-port", "the HTTP API")])
def test_http_ports_in_use(flag: str, what: str, tiny_bundle: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        ports = {"--metrics-port": "0", "--http-port": "0", flag: str(port)}
        args = [arg for pair in ports.items() for arg in pair]
        line = one_error_line(ServerProcess(["--bundle", str(tiny_bundle), "--port", "0", *args]))
    assert f"cannot serve {what} on 127.0.0.1:{port}" in line


def test_tls_key_that_does_not_match_its_certificate(tiny_bundle: Path, tmp_path: Path) -> None:
    authority = Authority(tmp_path, "ca")
    one, other = authority.issue("one", server=True), authority.issue("other", server=True)
    flags = ["--tls-cert", str(one.cert), "--tls-key", str(other.key)]
    line = one_error_line(ServerProcess(["--bundle", str(tiny_bundle), "--port", "0", "--metrics-port", "0", *flags]))
    assert f"TLS key {other.key} does not match the certificate {one.cert}" in line
    assert "in use" not in line


def test_address_that_is_not_local(tiny_bundle: Path) -> None:
    server = ServerProcess(["--bundle", str(tiny_bundle), "--port", "0", "--metrics-port", "0"], host="192.0.2.1")
    line = one_error_line(server)  # TEST-NET-1: never one of this machine's addresses
    assert "cannot listen on 192.0.2.1:0: the address is not one of this machine's" in line


def test_ipv6_loopback_serves(tiny_bundle: Path, record: Callable[..., None]) -> None:
    server = ServerProcess(["--bundle", str(tiny_bundle), "--port", "0", "--metrics-port", "0"], host="::1")
    try:
        server.wait_listening()
        with grpc.insecure_channel(f"[::1]:{server.port}") as channel:
            grpc.channel_ready_future(channel).result(timeout=60)
            health = health_pb2_grpc.HealthStub(channel)
            for _ in range(600):
                status = health.Check(health_pb2.HealthCheckRequest(), timeout=5).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    break
                time.sleep(0.1)
            stub = channel.unary_unary(
                "/atento.v1.Encoder/Embed",
                request_serializer=pb.EmbedRequest.SerializeToString,
                response_deserializer=pb.EmbedResponse.FromString,
            )
            assert stub(pb.EmbedRequest(texts=["over IPv6"]), timeout=30).results
    finally:
        server.terminate()
    record(host="::1", served=True)


def test_queue_smaller_than_one_request_is_refused(tiny_bundle: Path) -> None:
    args = ["--bundle", str(tiny_bundle), "--port", "0", "--max-queued-texts", "100", "--max-texts-per-request", "256"]
    server = ServerProcess(args)
    assert server.process.wait(60) == 2
    server.terminate()
    assert "max_queued_texts (100) is smaller than max_texts_per_request (256)" in server.log
    assert "Traceback" not in server.log
