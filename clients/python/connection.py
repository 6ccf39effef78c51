"""How a client reaches its servers: targets, TLS, token, deadline, retries, keepalive, balancing.

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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

DEFAULT_TARGET = "127.0.0.1:50051"
HEALTH_SERVICE = "atento.v1.Encoder"  # the server's readiness: SERVING once warm, NOT_SERVING while draining
MAX_MESSAGE_BYTES = 256 << 20  # attention maps of long texts are large


@dataclass(frozen=True)
class Retry:
    """gRPC retry policy; gRPC caps attempts at 5."""

    attempts: int = 5
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 5.0
    multiplier: float = 2.0


def _pem(value: bytes | str | Path | None) -> bytes | None:
    """PEM content, or the path of a PEM file."""
    if value is None or isinstance(value, bytes):
        return value
    text = str(value)
    if text.lstrip().startswith("-----BEGIN"):
        return text.encode()
    return Path(text).read_bytes()


@dataclass(frozen=True)
class Connection:
    targets: tuple[str, ...] = (DEFAULT_TARGET,)
    tls: bool = False
    root_certificates: bytes | None = None
    client_certificate: bytes | None = None
    client_key: bytes | None = None
    server_name: str | None = None  # TLS name to check when it differs from the target's host
    token: str | None = None
    timeout: float | None = 30.0
    retry: Retry | None = field(default_factory=Retry)
    keepalive_s: float = 30.0
    health_check: bool = True

    @classmethod
    def build(
        cls,
        target: str | Sequence[str] = DEFAULT_TARGET,
        *,
        tls: bool = False,
        root_certificates: bytes | str | Path | None = None,
        client_certificate: bytes | str | Path | None = None,
        client_key: bytes | str | Path | None = None,
        server_name: str | None = None,
        token: str | None = None,
        timeout: float | None = 30.0,
        retry: Retry | None = Retry(),
        keepalive_s: float = 30.0,
        health_check: bool = True,
    ) -> Connection:
        targets = (target,) if isinstance(target, str) else tuple(target)
        if not targets:
            raise ValueError("at least one target is needed")
        if (client_certificate is None) != (client_key is None):
            raise ValueError("client_certificate and client_key go together (mutual TLS)")
        root, cert, key = _pem(root_certificates), _pem(client_certificate), _pem(client_key)
        return cls(
            targets=targets,
            tls=tls or any(v is not None for v in (root, cert)),
            root_certificates=root,
            client_certificate=cert,
            client_key=key,
            server_name=server_name,
            token=token,
            timeout=timeout,
            retry=retry,
            keepalive_s=keepalive_s,
            health_check=health_check,
        )

    @property
    def target(self) -> str:
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
