"""How a client reaches its servers: targets, TLS, token, deadline, retries, keepalive, balancing.

``Connection`` is the one definition of every connection option: the clients take its fields as
their keywords, and the command line's connection flags are generated from the same fields (each
carries its flag and help text), so an option is added or documented in one place.

Retries go through gRPC's own service config: UNAVAILABLE and RESOURCE_EXHAUSTED are retried with
exponential backoff, and gRPC waits the server's `grpc-retry-pushback-ms` hint before retrying an
overloaded call. Calls wait for a ready connection (so a call made while a server restarts goes
through once it is back, within its deadline), and several targets or `dns:///name:port` are
balanced round-robin per call: how a client spreads load over a headless Kubernetes Service.
Balancing skips replicas whose readiness health is not SERVING (gRPC client-side health checking),
so a draining replica stops getting calls before it closes its connections.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Sequence
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path
from typing import Any

import grpc

DEFAULT_TARGET = "127.0.0.1:50051"
HEALTH_SERVICE = "atento.v1.Encoder"  # the server's readiness: SERVING once warm, NOT_SERVING while draining
MAX_MESSAGE_BYTES = 256 << 20  # attention maps of long texts are large

Pem = bytes | str | Path  # PEM content, or the path of a PEM file


@dataclass(frozen=True)
class Retry:
    """gRPC retry policy; gRPC caps attempts at 5."""

    attempts: int = 5
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 5.0
    multiplier: float = 2.0


@dataclass(frozen=True)
class Flag:
    """How a connection option is spelt on the command line. A bool option that defaults to True is
    turned off by its flag (``--no-...``); ``env`` names a variable that gives the default; ``parse``
    turns the flag's text into the option's value (default: the type of the option's default)."""

    name: str
    help: str
    env: str | None = None
    parse: Callable[[str], Any] | None = None


def flag(name: str, help: str, *, env: str | None = None, parse: Callable[[str], Any] | None = None) -> dict[str, Flag]:
    """A Connection field's metadata: its command-line flag, declared where the option is."""
    return {"flag": Flag(name, help, env, parse)}


def split_targets(text: str) -> tuple[str, ...]:
    """``--target a:1,b:2``: several targets on the command line, separated by commas."""
    return tuple(t.strip() for t in text.split(",") if t.strip())


def read_pem(value: Pem | None) -> bytes | None:
    """PEM content, or the path of a PEM file."""
    if value is None or isinstance(value, bytes):
        return value
    text = str(value)
    if text.lstrip().startswith("-----BEGIN"):
        return text.encode()
    return Path(text).read_bytes()


@dataclass(frozen=True)
class Connection:
    """``target`` is one `host:port`, a `dns:///name:port` (round-robin over every address the name
    has, e.g. a headless Kubernetes Service), or several IP `host:port` targets. Certificates and
    keys are PEM bytes or file paths, read when the connection is made; ``retry=None`` turns retries
    off. With ``health_check`` (the default) calls go only to replicas whose readiness is SERVING,
    and wait while none is: a draining or loading replica gets no new calls. Turn it off when the
    server requires the token for health (``--no-auth-exempt-health``), since gRPC's health watch
    cannot carry it."""

    target: str | Sequence[str] = field(
        default=DEFAULT_TARGET,
        metadata=flag(
            "--target",
            "host:port, dns:///name:port, or several IP host:port separated by commas",
            env="ATENTO_TARGET",
            parse=split_targets,
        ),
    )
    _: KW_ONLY
    tls: bool = field(default=False, metadata=flag("--tls", "use TLS with the system's root certificates"))
    root_certificates: Pem | None = field(
        default=None,
        metadata=flag("--root-cert", "PEM file of the CA that signed the server's certificate (implies --tls)"),
    )
    client_certificate: Pem | None = field(
        default=None, metadata=flag("--client-cert", "PEM client certificate, for mutual TLS")
    )
    # Secrets (the client key, the token) stay out of the repr, so that they never reach a log.
    client_key: Pem | None = field(
        default=None, repr=False, metadata=flag("--client-key", "PEM client key, for mutual TLS")
    )
    server_name: str | None = field(
        default=None, metadata=flag("--server-name", "TLS name to check when it differs from the target's host")
    )
    token: str | None = field(default=None, repr=False, metadata=flag("--token", "bearer token", env="ATENTO_TOKEN"))
    timeout: float | None = field(default=30.0, metadata=flag("--timeout", "deadline per call, in seconds"))
    retry: Retry | None = field(default_factory=Retry)  # a policy object: no flag, the CLI keeps the default
    keepalive_s: float = field(
        default=30.0, metadata=flag("--keepalive", "seconds between keepalive pings on an idle connection")
    )
    health_check: bool = field(
        default=True,
        metadata=flag(
            "--no-health-check",
            "send calls without watching the servers' readiness (for servers that require the token for health)",
        ),
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "target", self.targets)  # one form, so that equal connections compare equal
        if not self.targets:
            raise ValueError("at least one target is needed")
        if (self.client_certificate is None) != (self.client_key is None):
            raise ValueError("client_certificate and client_key go together (mutual TLS)")
        # Files are read now, so that a wrong path fails here rather than at the first call.
        for name in ("root_certificates", "client_certificate", "client_key"):
            object.__setattr__(self, name, read_pem(getattr(self, name)))
        if self.root_certificates is not None or self.client_certificate is not None:
            object.__setattr__(self, "tls", True)

    @property
    def targets(self) -> tuple[str, ...]:
        return (self.target,) if isinstance(self.target, str) else tuple(self.target)

    @property
    def channel_target(self) -> str:
        """One gRPC target: as given, or several IP addresses as one `ipv4:`/`ipv6:` address list."""
        if len(self.targets) == 1:
            return self.targets[0]
        hosts = [_split_host(t) for t in self.targets]
        versions = {ipaddress.ip_address(host).version for host, _ in hosts}
        if len(versions) != 1:
            raise ValueError("several targets must all be IPv4 or all IPv6 addresses (or use one dns:///name:port)")
        scheme = f"ipv{versions.pop()}"
        return f"{scheme}:" + ",".join(f"[{h}]:{p}" if ":" in h else f"{h}:{p}" for h, p in hosts)

    def service_config(self) -> str:
        method: dict[str, Any] = {"name": [{"service": "atento.v1.Encoder"}], "waitForReady": True}
        if self.retry is not None:
            method["retryPolicy"] = {
                "maxAttempts": self.retry.attempts,
                "initialBackoff": f"{self.retry.initial_backoff_s}s",
                "maxBackoff": f"{self.retry.max_backoff_s}s",
                "backoffMultiplier": self.retry.multiplier,
                "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED"],
            }
        config: dict[str, Any] = {"loadBalancingConfig": [{"round_robin": {}}], "methodConfig": [method]}
        if self.health_check:
            config["healthCheckConfig"] = {"serviceName": HEALTH_SERVICE}
        return json.dumps(config)

    def options(self) -> list[tuple[str, Any]]:
        options: list[tuple[str, Any]] = [
            ("grpc.service_config", self.service_config()),
            ("grpc.enable_retries", 1 if self.retry else 0),
            ("grpc.per_rpc_retry_buffer_size", 16 << 20),  # requests up to this size stay retryable
            ("grpc.retry_buffer_size", 64 << 20),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.keepalive_time_ms", int(self.keepalive_s * 1000)),
            ("grpc.keepalive_timeout_ms", 10_000),
            ("grpc.initial_reconnect_backoff_ms", 100),  # a restarted server is found within ~2 s
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 2_000),
        ]
        if self.server_name:
            options.append(("grpc.ssl_target_name_override", self.server_name))
        return options

    def credentials(self) -> grpc.ChannelCredentials | None:
        if not self.tls:
            return None
        return grpc.ssl_channel_credentials(
            root_certificates=self.root_certificates,
            private_key=self.client_key,
            certificate_chain=self.client_certificate,
        )

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),) if self.token else ()


def _split_host(target: str) -> tuple[str, str]:
    host, _, port = target.rpartition(":")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            f"target {target!r}: several targets must be IP:port; for names use one dns:///name:port"
        ) from None
    return host, port
