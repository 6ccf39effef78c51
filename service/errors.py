"""Domain errors and the one table that maps them to gRPC status codes.

Anything not in the table is a bug: it becomes INTERNAL with a generic message, and the traceback
goes to the log, never to the client.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import grpc

log = logging.getLogger("atento.errors")

# Trailing metadata that tells a client when to come back. `grpc-retry-pushback-ms` is read by
# gRPC's own retry policy (service config); `retry-after-ms` is for everybody else.
RETRY_PUSHBACK_KEY = "grpc-retry-pushback-ms"
RETRY_AFTER_KEY = "retry-after-ms"


class AtentoError(Exception):
    """Base of the errors a client may see, with their message."""


class InvalidArgument(AtentoError):
    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


class FailedPrecondition(AtentoError):
    pass


class Overloaded(AtentoError):
    def __init__(self, message: str, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def trailing_metadata(self) -> Sequence[tuple[str, str]]:
        millis = str(max(1, round(self.retry_after_s * 1000)))
        return ((RETRY_PUSHBACK_KEY, millis), (RETRY_AFTER_KEY, millis))


class NotReady(AtentoError):
    pass


class DeadlineExceeded(AtentoError):
    pass


class Unauthenticated(AtentoError):
    pass


STATUS_BY_ERROR: dict[type[AtentoError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    NotReady: grpc.StatusCode.UNAVAILABLE,
    DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
}


def status_for(error: BaseException) -> tuple[grpc.StatusCode, str, Sequence[tuple[str, str]]]:
    """(code, message, trailing metadata) to answer ``error`` with."""
    for kind, code in STATUS_BY_ERROR.items():
        if isinstance(error, kind):
            metadata = error.trailing_metadata() if isinstance(error, Overloaded) else ()
            return code, str(error), metadata
    log.error("internal error", exc_info=error)
    return grpc.StatusCode.INTERNAL, "internal error (the server logged the details)", ()
