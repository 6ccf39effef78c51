"""What the blocking and the asyncio client share: one constructor, the channel and the stubs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
from atento.v1 import encoder_pb2_grpc as pb_grpc

from . import health
from .connection import DEFAULT_TARGET, Connection, Retry

DEFAULT = object()  # "use the connection's default timeout"


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
        self.connection = conn = Connection.build(
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
        self._channel = self._open(conn)
        self._stub = pb_grpc.EncoderStub(self._channel)  # type: ignore[no-untyped-call]
        # Calls only go to replicas whose health says SERVING; `health()` must reach the others too,
        # so it has a channel of its own that does not watch health.
        self._probe_channel = self._open(replace(conn, health_check=False)) if health_check else self._channel
        self._health = self._probe_channel.unary_unary(
            health.CHECK_METHOD, request_serializer=health.serialize_request, response_deserializer=None
        )

    def _open(self, conn: Connection) -> Any:
        credentials = conn.credentials()
        if credentials is None:
            return self.channels.insecure_channel(conn.target, options=conn.options())
        return self.channels.secure_channel(conn.target, credentials, options=conn.options())

    def _channels(self) -> list[Any]:
        return [self._channel] if self._probe_channel is self._channel else [self._channel, self._probe_channel]

    def _seconds(self, timeout: Any) -> float | None:
        seconds: float | None = self.connection.timeout if timeout is DEFAULT else timeout
        return seconds
