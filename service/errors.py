"""Domain errors and the one table that maps them to gRPC status codes.

Every refusal the service makes raises one of these and reaches the client through ``status_for``
and ``abort``: the servicer's methods and the bearer-token check alike. Anything not in the table
is a bug: it becomes INTERNAL with a generic message, and the traceback goes to the log, never to
the client.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NoReturn

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


class NotFound(AtentoError):
    """A named thing the server does not have (a model name or version the Open Inference Protocol asks for)."""


class Unimplemented(AtentoError):
    """A method of a protocol's service that atento does not serve (Triton's extensions of the protocol)."""


class DeadlineExceeded(AtentoError):
    pass


class Unauthenticated(AtentoError):
    pass


STATUS_BY_ERROR: dict[type[AtentoError], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    NotReady: grpc.StatusCode.UNAVAILABLE,
    NotFound: grpc.StatusCode.NOT_FOUND,
    Unimplemented: grpc.StatusCode.UNIMPLEMENTED,
    DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
}


@dataclass(frozen=True)
class Status:
    """What a refused call is answered with."""

    code: grpc.StatusCode
    message: str
    trailing_metadata: Sequence[tuple[str, str]] = ()


def status_for(error: BaseException) -> Status:
    """The status to answer ``error`` with; anything unknown is INTERNAL, logged with its traceback."""
    for kind, code in STATUS_BY_ERROR.items():
        if isinstance(error, kind):
            metadata = error.trailing_metadata() if isinstance(error, Overloaded) else ()
            return Status(code, str(error), metadata)
    log.error("internal error", exc_info=error)
    return Status(grpc.StatusCode.INTERNAL, "internal error (the server logged the details)")


async def abort(context: grpc.aio.ServicerContext, status: Status) -> NoReturn:
    """End the call with ``status`` (``context.abort`` raises)."""
    if status.trailing_metadata:
        context.set_trailing_metadata(status.trailing_metadata)
    await context.abort(status.code, status.message)
    raise AssertionError("unreachable: context.abort raises")  # pragma: no cover
