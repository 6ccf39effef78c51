"""The OpenAI-compatible door (--http-port), called by the official `openai` client and by LangChain's
`OpenAIEmbeddings` as their users call them, against a real server: the same vectors as the gRPC SDK,
OpenAI's error shape with the right HTTP status, and the same limits, auth and drain as gRPC."""

from __future__ import annotations

import base64
import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
from atento.client import Client
from atento.v1 import encoder_pb2 as pb
from langchain_openai import OpenAIEmbeddings

from tests.certs import Authority
from tests.servers import ServerProcess, running_server
from tests.test_readme import fenced_after

TOKEN = "http-door-secret"
MODEL = "all-MiniLM-L6-v2"
TEXTS = ["It is a truth universally acknowledged.", "Mr. Darcy danced only once.", "Lizzy laughed."]
LONG = "It is a truth universally acknowledged that a single man in possession of a good fortune " * 40


@pytest.fixture(scope="module")
def server(minilm_bundle: Path) -> Iterator[ServerProcess]:
    args = ("--http-port", "0", "--max-receive-message-mib", "1")
    with running_server(minilm_bundle, *args, env={"ATENTO_AUTH_TOKEN": TOKEN}) as process:
        yield process


def openai_client(server: ServerProcess, token: str = TOKEN) -> openai.OpenAI:
    # max_retries=0: the tests see each answer, not the client's retries of 429 and 503.
    return openai.OpenAI(base_url=f"{server.http_url}/v1", api_key=token, max_retries=0)


def sdk_vectors(server: ServerProcess, texts: list[str]) -> np.ndarray:
    with Client(server.target, token=TOKEN, timeout=30) as client:
        vectors = client.embed(texts).embeddings
    assert vectors is not None
    return vectors


def decoded(embedding: list[float] | str) -> np.ndarray:
    if isinstance(embedding, str):  # base64 of little-endian float32
        return np.frombuffer(base64.b64decode(embedding), dtype="<f4")
    return np.array(embedding)


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def post(server: ServerProcess, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any], Any]:
    """A raw POST /v1/embeddings: status, headers and the parsed JSON body."""
    headers = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json", **(headers or {})}
    request = urllib.request.Request(f"{server.http_url}/v1/embeddings", data=body, headers=headers)
    return call(request)


def call(request: urllib.request.Request | str) -> tuple[int, dict[str, Any], Any]:
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.loads(error.read())


def test_openai_client_gets_the_sdks_vectors_in_float_and_base64(server: ServerProcess) -> None:
    expected = sdk_vectors(server, TEXTS)
    client = openai_client(server)
    # Left out, the client asks for base64 and decodes it itself; asked for, it hands base64 over.
    for encoding in ("float", "base64", None):
        if encoding is None:
            response = client.embeddings.create(model=MODEL, input=TEXTS)
        else:
            response = client.embeddings.create(model=MODEL, input=TEXTS, encoding_format=encoding)
        got = np.array([decoded(item.embedding) for item in response.data])
        assert got.shape == expected.shape
        assert cosines(got, expected).min() >= 0.99999, encoding
        assert [item.index for item in response.data] == [0, 1, 2] and response.model == MODEL
        assert response.usage.prompt_tokens == response.usage.total_tokens > len(TEXTS) * 2
    single = client.embeddings.create(model=MODEL, input=TEXTS[0])
    assert cosines(np.array([single.data[0].embedding]), expected[:1])[0] >= 0.99999


def test_base64_is_little_endian_float32_on_the_wire(server: ServerProcess) -> None:
    status, _, body = post(server, json.dumps({"model": MODEL, "input": TEXTS, "encoding_format": "base64"}).encode())
    assert status == 200
    got = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in body["data"]])
    assert cosines(got, sdk_vectors(server, TEXTS)).min() >= 0.99999
    with Client(server.target, token=TOKEN) as client:  # what produced the vectors, as the native door says it
        native = client.embed(TEXTS).identity
        assert native is not None and body["atento_identity"]["bundle_sha256"] == client.info().bundle_sha256
    assert body["atento_identity"] == {
        "model": native.model,
        "bundle_sha256": native.bundle_sha256,
        "precision": native.precision,
        "dimensions": native.dimensions,
        "pooling": native.pooling,
        "normalized": native.normalized,
        "prompt": native.prompt,
    }


def test_dimensions_keep_the_leading_dimensions_renormalised(server: ServerProcess) -> None:
    full = sdk_vectors(server, TEXTS)
    response = openai_client(server).embeddings.create(model=MODEL, input=TEXTS, dimensions=64)
    got = np.array([item.embedding for item in response.data])
    assert got.shape == (3, 64)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)  # MiniLM normalises: so do its cuts
    assert cosines(got, full[:, :64]).min() >= 0.99999
    with pytest.raises(openai.BadRequestError) as error:
        openai_client(server).embeddings.create(model=MODEL, input=TEXTS, dimensions=385)
    assert error.value.body["param"] == "dimensions"  # type: ignore[index]


def test_langchain_openai_embeddings_get_the_same_vectors(server: ServerProcess) -> None:
    embeddings = OpenAIEmbeddings(
        model=MODEL, base_url=f"{server.http_url}/v1", api_key=TOKEN, check_embedding_ctx_length=False
    )
    documents = np.array(embeddings.embed_documents(TEXTS))
    query = np.array([embeddings.embed_query(TEXTS[1])])
    expected = sdk_vectors(server, TEXTS)
    assert cosines(documents, expected).min() >= 0.99999 and cosines(query, expected[1:2])[0] >= 0.99999


def test_token_id_input_is_a_clear_400(server: ServerProcess) -> None:
    for ids in ([101, 2023, 102], [[101, 2023, 102], [101, 102]]):
        with pytest.raises(openai.BadRequestError) as error:
            openai_client(server).embeddings.create(model=MODEL, input=ids)
        assert "token-id arrays are not supported" in error.value.message
        assert error.value.body["type"] == "invalid_request_error"  # type: ignore[index]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (b"not json", "request"),
        (b'["a list"]', "request"),
        (b'{"model": "all-MiniLM-L6-v2"}', "input"),
        (b'{"input": ["ok", ""]}', "texts[1]"),
        (b'{"input": ["ok", 3.5]}', "input[1]"),
        (b'{"input": "ok", "encoding_format": "int8"}', "encoding_format"),
        (b'{"input": "ok", "dimensions": true}', "dimensions"),
        (b'{"input": ["' + b"word " * 600 + b'"]}', "texts[0]"),  # over the model's 512 tokens
    ],
)
def test_bad_input_is_400_in_openais_error_shape(server: ServerProcess, body: bytes, param: str) -> None:
    status, _, answer = post(server, body)
    assert status == 400, answer
    assert set(answer["error"]) == {"message", "type", "param", "code"}
    assert answer["error"]["param"] == param and answer["error"]["type"] == "invalid_request_error"


def test_unknown_model_is_404_model_not_found(server: ServerProcess) -> None:
    with pytest.raises(openai.NotFoundError) as error:
        openai_client(server).embeddings.create(model="text-embedding-3-small", input=TEXTS)
    assert error.value.code == "model_not_found"
    models = openai_client(server).models.list()
    assert [m.id for m in models.data] == [MODEL]
    assert openai_client(server).models.retrieve(MODEL).id == MODEL


def test_missing_or_wrong_token_is_401_and_health_stays_open(server: ServerProcess) -> None:
    rejected_before = server.metric("atento_rejected_requests_total", reason="unauthenticated_wrong")
    with pytest.raises(openai.AuthenticationError) as error:
        openai_client(server, "wrong").embeddings.create(model=MODEL, input=TEXTS)
    assert error.value.status_code == 401 and "wrong bearer token" in error.value.message
    assert server.metric("atento_rejected_requests_total", reason="unauthenticated_wrong") == rejected_before + 1
    status, _, answer = post(server, b'{"input": "no token"}', {"Authorization": ""})
    assert status == 401 and answer["error"]["type"] == "authentication_error"
    assert "missing bearer token" in answer["error"]["message"]
    assert call(f"{server.http_url}/healthz")[0] == 200  # probes need no token (--auth-exempt-health)
    status, _, body = call(f"{server.http_url}/readyz")
    assert status == 200 and body == {"status": "ok"}


def test_oversized_requests_are_413(server: ServerProcess) -> None:
    client = openai_client(server)
    with pytest.raises(openai.APIStatusError) as error:  # 257 texts: over --max-texts-per-request
        client.embeddings.create(model=MODEL, input=["short"] * 257)
    assert error.value.status_code == 413 and error.value.body["param"] == "texts"  # type: ignore[index]
    with pytest.raises(openai.APIStatusError) as error:  # 60 x 20 000 characters: over 1 MiB of body
        client.embeddings.create(model=MODEL, input=["x" * 20_000] * 60)
    assert error.value.status_code == 413 and "max-receive-message-mib" in error.value.message
    assert len(client.embeddings.create(model=MODEL, input=TEXTS).data) == 3  # and it serves on


def test_unknown_paths_are_404_in_the_same_shape(server: ServerProcess) -> None:
    status, _, answer = call(f"{server.http_url}/v1/completions")
    assert status == 404 and answer["error"]["code"] == "unknown_url"


def test_http_calls_count_in_the_same_metrics(server: ServerProcess) -> None:
    labels = {"method": "http:/v1/embeddings", "code": "OK"}
    before = server.metric("atento_requests_total", **labels)
    openai_client(server).embeddings.create(model=MODEL, input=TEXTS)
    assert server.metric("atento_requests_total", **labels) == before + 1
    assert post(server, b'{"input": "no token"}', {"Authorization": "Bearer wrong"})[0] == 401
    assert server.metric("atento_requests_total", method="http:/v1/embeddings", code="UNAUTHENTICATED") >= 1
    assert server.metric("atento_request_duration_seconds_count", **labels) >= 1


@pytest.fixture(scope="module")
def busy_server(minilm_bundle: Path) -> Iterator[ServerProcess]:
    """16 texts fill the queue; batches of two long texts keep it full for seconds."""
    args = ("--http-port", "0", "--max-queued-texts", "16", "--max-texts-per-request", "16")
    args += ("--max-batch-tokens", "1024", "--drain-seconds", "60")
    with running_server(minilm_bundle, *args) as process:
        yield process


def fill_the_queue(server: ServerProcess, texts: int = 16) -> threading.Thread:
    request = pb.EmbedRequest(texts=[f"{i} {LONG}" for i in range(texts)], truncation=pb.TRUNCATION_CUT)
    worker = threading.Thread(target=lambda: server.stub().Embed(request, timeout=120), daemon=True)
    worker.start()
    end = time.monotonic() + 10
    while server.metric("atento_queue_depth") == 0 and time.monotonic() < end:
        time.sleep(0.01)
    assert server.metric("atento_queue_depth") > 0
    return worker


def test_overload_is_429_with_retry_after(busy_server: ServerProcess) -> None:
    worker = fill_the_queue(busy_server)
    with pytest.raises(openai.RateLimitError) as error:
        openai_client(busy_server, "no token needed").embeddings.create(model=MODEL, input=["one more"] * 8)
    headers = error.value.response.headers
    assert int(headers["retry-after"]) >= 1 and int(headers["retry-after-ms"]) >= 100
    assert "queue full" in error.value.message
    worker.join()
    assert busy_server.metric("atento_requests_total", method="http:/v1/embeddings", code="RESOURCE_EXHAUSTED") >= 1


def test_loading_is_503_on_readyz(minilm_bundle: Path) -> None:
    server = ServerProcess(["--bundle", str(minilm_bundle), "--port", "0", "--metrics-port", "0", "--http-port", "0"])
    try:
        server.wait_listening()
        first = call(f"{server.http_url}/readyz")[0]
        embed = post(server, json.dumps({"input": "too early"}).encode())
        server.wait_serving()
        assert first == 503 and call(f"{server.http_url}/readyz")[0] == 200
        assert embed[0] in (503, 200) and (embed[0] == 200 or embed[2]["error"]["type"] == "service_unavailable")
    finally:
        server.terminate()


def test_draining_refuses_new_calls_with_503_and_finishes_those_in_flight(busy_server: ServerProcess) -> None:
    worker = fill_the_queue(busy_server, 8)  # room left in the queue for the call accepted below
    in_flight: list[tuple[int, dict[str, Any], Any]] = []
    accepted = threading.Thread(target=lambda: in_flight.append(post(busy_server, b'{"input": "accepted"}')))
    accepted.start()
    end = time.monotonic() + 10
    while busy_server.metric("atento_in_flight_requests", method="http:/v1/embeddings") < 1 and time.monotonic() < end:
        time.sleep(0.01)
    busy_server.process.send_signal(signal.SIGTERM)
    end = time.monotonic() + 10
    while call(f"{busy_server.http_url}/readyz")[0] != 503 and time.monotonic() < end:
        time.sleep(0.01)
    assert call(f"{busy_server.http_url}/readyz")[0] == 503
    assert call(f"{busy_server.http_url}/healthz")[0] == 200  # alive while it drains
    status, _, answer = post(busy_server, b'{"input": "too late"}')
    assert status == 503 and "shutting down" in answer["error"]["message"], answer
    accepted.join(60)
    worker.join(60)
    assert in_flight and in_flight[0][0] == 200 and len(in_flight[0][2]["data"]) == 1
    assert busy_server.process.wait(60) == 0


def test_readme_examples_run(server: ServerProcess) -> None:
    address = server.http_url.removeprefix("http://")
    python = fenced_after("openai-example").replace("127.0.0.1:8080", address)
    python = python.replace('"the --auth-token, or anything without one"', repr(TOKEN))
    result = subprocess.run([sys.executable, "-c", python], capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    count, dimensions, tokens = result.stdout.split("#")[0].split()
    assert (int(count), int(dimensions)) == (2, 384) and int(tokens) > 4
    shell = fenced_after("curl-example").replace("127.0.0.1:8080", address)
    env = {**os.environ, "ATENTO_AUTH_TOKEN": TOKEN}
    result = subprocess.run(shell, shell=True, env=env, capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["object"] == "list" and len(answer["data"]) == 2 and len(answer["data"][0]["embedding"]) == 384


def test_with_tls_the_http_door_speaks_https_with_the_same_certificate(tiny_bundle: Path, tmp_path: Path) -> None:
    authority = Authority(tmp_path, "ca")
    issued = authority.issue("server", server=True)
    flags = ("--http-port", "0", "--tls-cert", str(issued.cert), "--tls-key", str(issued.key))
    with running_server(tiny_bundle, *flags, wait=False) as server:
        server.wait_listening()
        trusted = httpx.Client(verify=ssl.create_default_context(cafile=authority.issued.cert))
        https = f"https://{server.host}:{server.http_port}"
        client = openai.OpenAI(base_url=f"{https}/v1", api_key="unused", http_client=trusted, max_retries=0)
        end = time.monotonic() + 60
        while trusted.get(f"{https}/readyz").status_code != 200:
            assert time.monotonic() < end
            time.sleep(0.1)
        assert len(client.embeddings.create(model="tiny", input=["over TLS"]).data[0].embedding) > 0
        with pytest.raises(OSError):  # plaintext HTTP gets no answer (the connection is closed)
            urllib.request.urlopen(f"{server.http_url}/healthz", timeout=5)
