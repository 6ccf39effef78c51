"""What the blocking and the asyncio client share: one constructor, the channel and the stubs."""

from __future__ import annotations

from collections.abc import Sequence
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
    keys are PEM bytes or file paths; ``retry=None`` turns retries off."""

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
        )
        credentials = conn.credentials()
        if credentials is None:
            self._channel: Any = self.channels.insecure_channel(conn.target, options=conn.options())
        else:
            self._channel = self.channels.secure_channel(conn.target, credentials, options=conn.options())
        self._stub = pb_grpc.EncoderStub(self._channel)  # type: ignore[no-untyped-call]
        self._health = self._channel.unary_unary(
            health.CHECK_METHOD, request_serializer=health.serialize_request, response_deserializer=None
        )

    def _seconds(self, timeout: Any) -> float | None:
        seconds: float | None = self.connection.timeout if timeout is DEFAULT else timeout
        return seconds
