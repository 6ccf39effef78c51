"""Transport security (TLS, mutual TLS) and bearer-token authentication, with real certificates."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from atento.client import Client, DeadlineExceededError, Retry, UnauthenticatedError, UnavailableError

from tests.certs import Authority, Issued
from tests.servers import running_server

TOKEN = "s3cret-0f-the-test-7f1d"


@dataclass(frozen=True)
class Pki:
    ca: Path
    server: Issued
    client: Issued
    stranger: Issued  # a client certificate from another CA
    stranger_ca: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    ours, theirs = Authority(directory, "ours-ca"), Authority(directory, "theirs-ca")
    return Pki(
        ca=ours.issued.cert,
        server=ours.issue("server", server=True),
        client=ours.issue("client", server=False),
        stranger=theirs.issue("stranger", server=False),
        stranger_ca=theirs.issued.cert,
    )


REFUSED = (UnavailableError, DeadlineExceededError)  # no secure channel: it never becomes ready


def refused(client: Client) -> bool:
    with client, pytest.raises(REFUSED):
        client.embed("should not get through")
    return True


def test_tls(tiny_bundle: Path, pki: Pki, record: Callable[..., None]) -> None:
    flags = ("--tls-cert", str(pki.server.cert), "--tls-key", str(pki.server.key))
    with running_server(tiny_bundle, *flags, wait=False) as server:
        server.wait_serving(credentials=grpc.ssl_channel_credentials(pki.ca.read_bytes()))
        assert "(tls)" in server.log
        with Client(server.target, root_certificates=pki.ca, server_name="localhost", timeout=20) as good:
            assert good.embed("over TLS").embeddings is not None
        assert refused(Client(server.target, timeout=3, retry=None))  # plaintext
        assert refused(
            Client(server.target, root_certificates=pki.stranger_ca, server_name="localhost", timeout=3, retry=None)
        )
        assert server.metric("atento_requests_total", method="Embed") == 1  # only the good client got through
    record(plaintext_refused=True, untrusted_server_refused=True, good_client_served=True)


def test_mutual_tls(tiny_bundle: Path, pki: Pki, record: Callable[..., None]) -> None:
    flags = ("--tls-cert", str(pki.server.cert), "--tls-key", str(pki.server.key), "--tls-client-ca", str(pki.ca))
    with running_server(tiny_bundle, *flags, wait=False) as server:
        own = (pki.ca.read_bytes(), pki.client.key.read_bytes(), pki.client.cert.read_bytes())
        server.wait_serving(credentials=grpc.ssl_channel_credentials(*own))

        def client(certificate: Issued | None = None, timeout: float = 20) -> Client:
            pair = {"client_certificate": certificate.cert, "client_key": certificate.key} if certificate else {}
            retry = None if timeout < 20 else Retry()
            return Client(
                server.target, root_certificates=pki.ca, server_name="localhost", timeout=timeout, retry=retry, **pair
            )

        with client(pki.client) as good:
            assert good.embed("mutual TLS").embeddings is not None
        assert refused(client(timeout=3))  # no client certificate
        assert refused(client(pki.stranger, timeout=3))  # a certificate from another CA
        assert refused(Client(server.target, timeout=3, retry=None))  # no TLS at all
        assert server.metric("atento_requests_total", method="Embed") == 1  # the good client's call, nobody else's
    record(no_certificate_refused=True, other_ca_refused=True, plaintext_refused=True, good_client_served=True)


def test_bearer_token(tiny_bundle: Path, record: Callable[..., None]) -> None:
    with running_server(tiny_bundle, env={"ATENTO_AUTH_TOKEN": TOKEN}) as server:
        for token, reason in ((None, "missing"), ("wrong-token", "wrong")):
            with Client(server.target, token=token, retry=None) as client:
                with pytest.raises(UnauthenticatedError, match=f"{reason} bearer token"):
                    client.embed(["no work for you"] * 3)
                with pytest.raises(UnauthenticatedError):
                    client.tokenize("nor this")
        assert server.metric("atento_texts_total") == 0  # no work was done
        assert server.metric("atento_tokenize_duration_seconds_count") == 0
        assert server.metric("atento_rejected_requests_total", reason="unauthenticated_missing") == 2
        assert server.metric("atento_rejected_requests_total", reason="unauthenticated_wrong") == 2
        with Client(server.target) as anonymous:
            assert anonymous.health() == "SERVING"  # probes stay open
        with server.channel() as channel:
            from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

            reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
            request = reflection_pb2.ServerReflectionRequest(list_services="")
            assert list(reflection.ServerReflectionInfo(iter([request]), timeout=5))  # and reflection
        with Client(server.target, token=TOKEN) as client:
            assert client.embed("with the token").embeddings is not None
        assert TOKEN not in server.log
        assert '"auth_token": "<set>"' in server.log
    record(missing_token="UNAUTHENTICATED", wrong_token="UNAUTHENTICATED", work_done_for_them=0, token_in_logs=False)


def test_health_can_be_closed_too(tiny_bundle: Path) -> None:
    with running_server(tiny_bundle, "--no-auth-exempt-health", env={"ATENTO_AUTH_TOKEN": TOKEN}, wait=False) as server:
        server.wait_listening()
        with Client(server.target, timeout=5, retry=None) as anonymous, pytest.raises(UnauthenticatedError):
            anonymous.health()
        with Client(server.target, token=TOKEN, timeout=30) as client:
            assert client.health() in ("SERVING", "NOT_SERVING")
        # gRPC's own health watch cannot carry the token, so such a server's clients turn it off.
        with Client(server.target, token=TOKEN, timeout=30, health_check=False) as client:
            assert client.embed("health is closed, calls still work").embeddings is not None
