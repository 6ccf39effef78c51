"""Domain errors and the one table that maps them to gRPC status codes.

Every refusal the service makes raises one of these and reaches the client through ``status_for``
and ``abort``: the servicer's methods and the bearer-token check alike. Anything not in the table
is a bug: it becomes INTERNAL with a generic message, and the traceback goes to the log, never to
the client.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
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


# --- HTTP (the OpenAI-compatible door): the same domain errors, as HTTP statuses -----------------


class TooLarge(InvalidArgument):
    """A request past a size limit (texts, characters, bytes): INVALID_ARGUMENT on gRPC, 413 over HTTP."""


class NotFound(AtentoError):
    """An unknown model or path (HTTP only: gRPC answers unknown methods itself)."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code  # OpenAI's error code, e.g. "model_not_found"


STATUS_BY_ERROR[NotFound] = grpc.StatusCode.NOT_FOUND

# HTTP status and OpenAI error type per domain error. Order matters: a subclass before its base.
HTTP_STATUS_BY_ERROR: dict[type[AtentoError], tuple[int, str]] = {
    TooLarge: (413, "invalid_request_error"),
    InvalidArgument: (400, "invalid_request_error"),
    FailedPrecondition: (400, "invalid_request_error"),
    NotFound: (404, "invalid_request_error"),
    Unauthenticated: (401, "authentication_error"),
    Overloaded: (429, "rate_limit_error"),
    NotReady: (503, "service_unavailable"),
    DeadlineExceeded: (504, "timeout"),
}


@dataclass(frozen=True)
class HttpError:
    """What a refused HTTP request is answered with: OpenAI's error body, status and headers."""

    status: int
    type: str
    message: str
    grpc_code: grpc.StatusCode  # the same outcome's gRPC code: one `code` label in the metrics
    param: str | None = None
    code: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, dict[str, str | None]]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def http_error_for(error: BaseException) -> HttpError:
    """The HTTP answer to ``error``; anything unknown is 500, logged with its traceback, never sent."""
    for kind, (status, error_type) in HTTP_STATUS_BY_ERROR.items():
        if isinstance(error, kind):
            grpc_code = next(c for k, c in STATUS_BY_ERROR.items() if isinstance(error, k))
            message, param, code, headers = str(error), None, None, {}
            if isinstance(error, InvalidArgument):
                param = message.partition(": ")[0]  # InvalidArgument's message starts with its field
            if isinstance(error, NotFound):
                code = error.code
            if isinstance(error, Overloaded):  # Retry-After is whole seconds; the ms header is exact
                millis = dict(error.trailing_metadata())[RETRY_AFTER_KEY]
                headers = {"Retry-After": str(max(1, math.ceil(error.retry_after_s))), RETRY_AFTER_KEY: millis}
                code = "queue_full"
            return HttpError(status, error_type, message, grpc_code, param, code, headers)
    log.error("internal error", exc_info=error)
    return HttpError(500, "server_error", "internal error (the server logged the details)", grpc.StatusCode.INTERNAL)
