"""What the blocking and the asyncio client share: one constructor, the channels and the RPC table."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any, Final

import grpc
from atento.v1 import encoder_pb2_grpc as pb_grpc

from . import health
from .calls import ENCODER_METHODS, HEALTH_CHECK
from .connection import DEFAULT_TARGET, Connection, Retry


class _Default(enum.Enum):
    TIMEOUT = "the connection's timeout"


DEFAULT: Final = _Default.TIMEOUT
Timeout = float | None | _Default  # seconds; None for no deadline; DEFAULT for the connection's timeout


class ClientBase:
    """``target`` is one `host:port`, a `dns:///name:port` (round-robin over every address the name
    has, e.g. a headless Kubernetes Service), or several IP `host:port` targets. Certificates and
    keys are PEM bytes or file paths; ``retry=None`` turns retries off. With ``health_check`` (the
    default) calls go only to replicas whose readiness is SERVING, and wait while none is: a draining
    or loading replica gets no new calls. Turn it off when the server requires the token for health
    (``--no-auth-exempt-health``), since gRPC's health watch cannot carry it."""

    channels: ModuleType = grpc  # grpc or grpc.aio: both open channels the same way

    def __init__(
        self,
        target: str | Sequence[str] = DEFAULT_TARGET,
        *,
        tls: bool = False,
        root_certificates: bytes | str | Path | None = None,
        client_certificate: bytes | str | Path | None = None,
        client_key: bytes | str | Path | None = None,
        server_name: str | None = None,
        token: str | None = None,
        timeout: float | None = 30.0,
        retry: Retry | None = Retry(),  # noqa: B008 (frozen, shared safely)
        keepalive_s: float = 30.0,
        health_check: bool = True,
    ) -> None:
        self.connection = connection = Connection.build(
            target,
            tls=tls,
            root_certificates=root_certificates,
            client_certificate=client_certificate,
            client_key=client_key,
            server_name=server_name,
            token=token,
            timeout=timeout,
            retry=retry,
            keepalive_s=keepalive_s,
            health_check=health_check,
        )
        self._channel = self._open(connection)
        stub = pb_grpc.EncoderStub(self._channel)  # type: ignore[no-untyped-call]
        self._stream = stub.EmbedStream
        # Calls only go to replicas whose health says SERVING; a health check must reach the others
        # too, so it has a channel of its own that does not watch health.
        self._probe_channel = (
            self._open(replace(connection, health_check=False)) if connection.health_check else self._channel
        )
        check = self._probe_channel.unary_unary(
            HEALTH_CHECK,
            request_serializer=health.HealthCheckRequest.SerializeToString,
            response_deserializer=health.HealthCheckResponse.FromString,
        )
        self._unary: dict[str, Any] = {name: getattr(stub, name) for name in ENCODER_METHODS} | {HEALTH_CHECK: check}

    def _open(self, connection: Connection) -> Any:
        credentials = connection.credentials()
        target, options = connection.target, connection.options()
        if credentials is None:
            return self.channels.insecure_channel(target, options=options)
        return self.channels.secure_channel(target, credentials, options=options)

    def _channels(self) -> list[Any]:
        return [self._channel] if self._probe_channel is self._channel else [self._channel, self._probe_channel]

    def _call_options(self, timeout: Timeout) -> dict[str, Any]:
        """The deadline and the token every call carries."""
        seconds = self.connection.timeout if timeout is DEFAULT else timeout
        return {"timeout": seconds, "metadata": self.connection.metadata()}
