"""What the blocking and the asyncio client share: one constructor, the channels and the RPC table."""

from __future__ import annotations

import enum
import inspect
from collections.abc import Callable
from dataclasses import replace
from types import ModuleType
from typing import Any, Concatenate, Final, ParamSpec, TypeVar

import grpc
from atento.v1 import encoder_pb2_grpc as pb_grpc

from . import health
from .calls import ENCODER_METHODS, HEALTH_CHECK
from .connection import Connection

P = ParamSpec("P")
Self = TypeVar("Self")


class _Default(enum.Enum):
    TIMEOUT = "the connection's timeout"


DEFAULT: Final = _Default.TIMEOUT
Timeout = float | None | _Default  # seconds; None for no deadline; DEFAULT for the connection's timeout


def takes_options_of(
    options: Callable[P, object],
) -> Callable[[Callable[Concatenate[Self, ...], None]], Callable[Concatenate[Self, P], None]]:
    """Give an ``__init__(self, *args, **kwargs)`` the parameters of ``options``, for type checkers
    and for help(): the clients take Connection's fields as keywords without writing them again."""

    def typed(init: Callable[Concatenate[Self, ...], None]) -> Callable[Concatenate[Self, P], None]:
        self = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
        signature = inspect.signature(options)
        init.__signature__ = signature.replace(parameters=[self, *signature.parameters.values()])  # type: ignore[attr-defined]
        return init

    return typed


class ClientBase:
    """A client's connection: its options are Connection's fields (see there), e.g.
    ``Client("host:50051", tls=True, token="...", timeout=10)``."""

    channels: ModuleType = grpc  # grpc or grpc.aio: both open channels the same way

    @takes_options_of(Connection)
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.connection = connection = Connection(*args, **kwargs)
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
        target, options = connection.channel_target, connection.options()
        if credentials is None:
            return self.channels.insecure_channel(target, options=options)
        return self.channels.secure_channel(target, credentials, options=options)

    def _channels(self) -> list[Any]:
        return [self._channel] if self._probe_channel is self._channel else [self._channel, self._probe_channel]

    def _call_options(self, timeout: Timeout) -> dict[str, Any]:
        """The deadline and the token every call carries."""
        seconds = self.connection.timeout if timeout is DEFAULT else timeout
        return {"timeout": seconds, "metadata": self.connection.metadata()}
