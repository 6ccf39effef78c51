"""Connection options, in-process: one definition (Connection's fields) gives the clients' keywords
and the command line's flags, and both reach the same connection."""

from __future__ import annotations

import json
from dataclasses import fields
from pathlib import Path

import pytest
from atento.client import Client, Retry
from atento.client.cli import parser
from atento.client.connection import Connection
from atento.client.options import connection_options

pytestmark = pytest.mark.fast

PEM = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"


def test_every_flag_maps_to_the_option_of_its_field(tmp_path: Path) -> None:
    ca, cert, key = (tmp_path / name for name in ("ca.pem", "client.pem", "client.key"))
    for path in (ca, cert, key):
        path.write_bytes(PEM)
    argv = ["health", "--target", "127.0.0.1:1, 127.0.0.2:1", "--root-cert", str(ca), "--client-cert", str(cert)]
    argv += ["--client-key", str(key), "--server-name", "atento.test", "--token", "t0k", "--timeout", "2.5"]
    argv += ["--keepalive", "7", "--no-health-check"]
    options = connection_options(parser().parse_args(argv))
    assert options == {
        "target": ("127.0.0.1:1", "127.0.0.2:1"),
        "tls": False,
        "root_certificates": str(ca),
        "client_certificate": str(cert),
        "client_key": str(key),
        "server_name": "atento.test",
        "token": "t0k",
        "timeout": 2.5,
        "keepalive_s": 7.0,
        "health_check": False,
    }
    connection = Connection(**options)
    assert connection.tls and connection.root_certificates == PEM and connection.client_key == PEM  # paths read
    assert connection.channel_target == "ipv4:127.0.0.1:1,127.0.0.2:1"
    flagged = {f.name for f in fields(Connection) if "flag" in f.metadata}
    assert flagged == set(options)  # no flag without an option, no option left out but retry


def test_defaults_come_from_the_fields_and_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = connection_options(parser().parse_args(["info"]))
    assert Connection(**defaults) == Connection()
    monkeypatch.setenv("ATENTO_TARGET", "dns:///atento-headless:50051")
    monkeypatch.setenv("ATENTO_TOKEN", "from-env")
    options = connection_options(parser().parse_args(["embed", "x"]))
    assert options["target"] == ("dns:///atento-headless:50051",) and options["token"] == "from-env"


def test_the_clients_take_the_fields_as_keywords() -> None:
    with Client("127.0.0.1:1", tls=True, token="x", timeout=5, retry=None, health_check=False) as client:
        assert client.connection == Connection(
            "127.0.0.1:1", tls=True, token="x", timeout=5, retry=None, health_check=False
        )
        assert client._probe_channel is client._channel  # without health watching, one channel serves both
    with pytest.raises(TypeError, match="tls_on"):
        Client("127.0.0.1:1", tls_on=True)  # type: ignore[call-arg]


def test_connection_checks_and_secrets() -> None:
    with pytest.raises(ValueError, match="at least one target"):
        Connection([])
    with pytest.raises(ValueError, match="go together"):
        Connection(client_key=PEM)
    assert Connection(root_certificates=PEM.decode()).tls  # PEM text works as well as a path or bytes
    shown = repr(Connection(token="secret-token", client_certificate=PEM, client_key=b"-----BEGIN KEY-----"))
    assert "secret-token" not in shown and "BEGIN KEY" not in shown


def test_service_config_keeps_retries_balancing_and_health_checking() -> None:
    config = json.loads(Connection(retry=Retry(attempts=3)).service_config())
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    assert config["healthCheckConfig"] == {"serviceName": "atento.v1.Encoder"}
    (method,) = config["methodConfig"]
    assert method["waitForReady"] and method["retryPolicy"]["maxAttempts"] == 3
    plain = json.loads(Connection(retry=None, health_check=False).service_config())
    assert "healthCheckConfig" not in plain and "retryPolicy" not in plain["methodConfig"][0]
