"""Typed exceptions, one per gRPC status a caller can act on, each with the server's message."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import grpc


class AtentoError(Exception):
    """Base of every error the SDK raises; ``code`` is the gRPC status, ``message`` the server's words."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class InvalidInputError(AtentoError):
    """INVALID_ARGUMENT (or FAILED_PRECONDITION): the request itself is wrong; do not retry it as is."""


class OverloadedError(AtentoError):
    """RESOURCE_EXHAUSTED: the server's queue is full; ``retry_after`` says when to come back."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None, retry_after: float | None = None) -> None:
        super().__init__(message, code)
        self.retry_after = retry_after


class UnavailableError(AtentoError):
    """UNAVAILABLE: no server could take the call (down, loading or draining)."""


class DeadlineExceededError(AtentoError):
    """DEADLINE_EXCEEDED: the call's deadline passed."""


class UnauthenticatedError(AtentoError):
    """UNAUTHENTICATED: missing or wrong bearer token, or the TLS handshake refused us."""


class InternalError(AtentoError):
    """INTERNAL or UNKNOWN: a fault on the server; its log has the details."""


class CancelledError(AtentoError):
    """CANCELLED: the call was cancelled."""


ERROR_BY_STATUS: dict[grpc.StatusCode, type[AtentoError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidInputError,
    grpc.StatusCode.FAILED_PRECONDITION: InvalidInputError,
    grpc.StatusCode.OUT_OF_RANGE: InvalidInputError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: OverloadedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: UnauthenticatedError,
    grpc.StatusCode.INTERNAL: InternalError,
    grpc.StatusCode.UNKNOWN: InternalError,
    grpc.StatusCode.DATA_LOSS: InternalError,
    grpc.StatusCode.CANCELLED: CancelledError,
}


def _retry_after(error: grpc.RpcError) -> float | None:
    trailers = getattr(error, "trailing_metadata", lambda: None)() or ()
    for key, value in trailers:
        if key in ("retry-after-ms", "grpc-retry-pushback-ms"):
            try:
                return int(value) / 1000
            except ValueError:
                return None
    return None


def from_rpc_error(error: grpc.RpcError) -> AtentoError:
    """The typed exception for a gRPC error, carrying its message (and retry hint)."""
    code = error.code() if hasattr(error, "code") else None
    message = (error.details() if hasattr(error, "details") else None) or str(code)
    kind = ERROR_BY_STATUS.get(code, AtentoError) if code is not None else AtentoError
    if kind is OverloadedError:
        return OverloadedError(message, code, _retry_after(error))
    return kind(message, code)


@contextmanager
def rpc_errors() -> Iterator[None]:
    """Around a call, blocking or awaited: a gRPC error leaves as its typed exception, without the
    gRPC one chained (its message is already the exception's)."""
    try:
        yield
    except grpc.RpcError as error:
        raise from_rpc_error(error) from None
