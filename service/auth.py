"""Bearer-token authentication, as a server interceptor that runs before any handler."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from .errors import Unauthenticated, abort, status_for
from .metrics import Metrics
from .rpc import handler_kind

# Probes and tooling must reach these without the token (when the server is configured so).
OPEN_SERVICES = (
    "/grpc.health.v1.Health/",
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)


def _denied(handler: grpc.RpcMethodHandler, error: Unauthenticated) -> grpc.RpcMethodHandler:
    """A handler of the same kind as ``handler`` that refuses the call through the error table."""

    async def deny(request_or_iterator: Any, context: grpc.aio.ServicerContext) -> None:
        await abort(context, status_for(error))

    kind = handler_kind(handler.request_streaming, handler.response_streaming)
    factory: Callable[..., grpc.RpcMethodHandler] = getattr(grpc, f"{kind}_rpc_method_handler")
    return factory(
        deny,
        request_deserializer=handler.request_deserializer,
        response_serializer=handler.response_serializer,
    )


class BearerTokenInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Every call carries `authorization: Bearer <token>`, compared in constant time."""

    def __init__(self, token: str, metrics: Metrics, exempt_health: bool) -> None:
        self._expected = f"Bearer {token}".encode()
        self._metrics = metrics
        self._exempt_health = exempt_health

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        if handler is None or (self._exempt_health and details.method.startswith(OPEN_SERVICES)):
            return handler
        sent = dict(details.invocation_metadata or ()).get("authorization", "")
        if hmac.compare_digest(str(sent).encode(), self._expected):
            return handler
        reason = "missing" if not sent else "wrong"
        self._metrics.rejected.labels(f"unauthenticated_{reason}").inc()
        method = details.method.rsplit("/", 1)[-1]
        self._metrics.requests.labels(method, grpc.StatusCode.UNAUTHENTICATED.name).inc()
        refusal = Unauthenticated(
            f"{reason} bearer token: send metadata 'authorization: Bearer <token>'", metadata={"token": reason}
        )
        return _denied(handler, refusal)
