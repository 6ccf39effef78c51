"""Domain errors and the one table that maps them to gRPC status codes and google.rpc details.

Every refusal the service makes raises one of these and reaches the client through ``status_for``
and ``abort``: the servicer's methods and the bearer-token check alike. Anything not in the table
is a bug: it becomes INTERNAL with a generic message, and the traceback goes to the log, never to
the client.

Each refusal also carries a ``google.rpc.Status`` in the ``grpc-status-details-bin`` trailer (the
rich error model): always an ``ErrorInfo`` with a stable ``reason`` and the domain ``atento.v1``,
plus ``BadRequest`` (the field), ``RetryInfo`` (when to come back), ``QuotaFailure`` (which limit)
and ``ResourceInfo`` (which resource) where they fit. The reasons are part of the contract: README
lists them, and a client may branch on them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NoReturn

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

log = logging.getLogger("atento.errors")

DOMAIN = "atento.v1"
# Trailing metadata that tells a client when to come back. `grpc-retry-pushback-ms` is read by
# gRPC's own retry policy (service config); `retry-after-ms` is for everybody else.
RETRY_PUSHBACK_KEY = "grpc-retry-pushback-ms"
RETRY_AFTER_KEY = "retry-after-ms"
# Where gRPC carries the serialized google.rpc.Status (the same key grpcio-status writes).
STATUS_DETAILS_KEY = "grpc-status-details-bin"


@dataclass(frozen=True)
class Quota:
    """A limit the request ran into: ``subject`` names the limit, as the config table does."""

    subject: str
    description: str


@dataclass(frozen=True)
class Resource:
    """The resource a refusal is about (google.rpc.ResourceInfo)."""

    resource_type: str
    resource_name: str
    description: str


class AtentoError(Exception):
    """Base of the errors a client may see, with their message and a stable reason."""

    reason = "ERROR"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        quota: Quota | None = None,
        resource: Resource | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason
        self.quota, self.resource = quota, resource
        self.metadata = dict(metadata or {})


class InvalidArgument(AtentoError):
    reason = "INVALID_ARGUMENT"

    def __init__(self, field: str, problem: str, *, reason: str | None = None, quota: Quota | None = None) -> None:
        super().__init__(f"{field}: {problem}", reason=reason, quota=quota)
        self.field, self.problem = field, problem


class FailedPrecondition(AtentoError):
    reason = "FAILED_PRECONDITION"


class Overloaded(AtentoError):
    reason = "QUEUE_FULL"

    def __init__(
        self,
        message: str,
        retry_after_s: float,
        *,
        quota: Quota | None = None,
        reason: str | None = None,
        resource: Resource | None = None,
    ) -> None:
        queue = Resource("atento.v1.queue", "batcher", "the texts waiting for a batch, bounded by max_queued_texts")
        super().__init__(message, reason=reason, quota=quota, resource=resource or queue)
        self.retry_after_s = retry_after_s

    @property
    def retry_after_ms(self) -> int:
        return max(1, round(self.retry_after_s * 1000))

    def trailing_metadata(self) -> Sequence[tuple[str, str]]:
        millis = str(self.retry_after_ms)
        return ((RETRY_PUSHBACK_KEY, millis), (RETRY_AFTER_KEY, millis))


class NotReady(AtentoError):
    reason = "NOT_READY"


class NotFound(AtentoError):
    """A named thing the server does not have: a model name or version (the Open Inference Protocol,
    OpenAI's ``model``), or an HTTP path. ``code`` is OpenAI's error code, e.g. ``model_not_found``."""

    reason = "NOT_FOUND"

    def __init__(self, message: str, code: str = "not_found") -> None:
        super().__init__(message)
        self.code = code


class Unimplemented(AtentoError):
    """A method of a protocol's service that atento does not serve (Triton's extensions of the protocol)."""

    reason = "UNIMPLEMENTED"


class DeadlineExceeded(AtentoError):
    reason = "DEADLINE_EXCEEDED"


class Unauthenticated(AtentoError):
    reason = "UNAUTHENTICATED"


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
INTERNAL_REASON = "INTERNAL"


@dataclass(frozen=True)
class Status:
    """What a refused call is answered with: code, message, trailers and google.rpc detail messages."""

    code: grpc.StatusCode
    message: str
    trailing_metadata: Sequence[tuple[str, str]] = ()
    details: Sequence[Message] = ()

    @property
    def reason(self) -> str:
        """The ErrorInfo reason (every status ``abort`` sends has one; the code's name otherwise)."""
        for detail in self.details:
            if isinstance(detail, error_details_pb2.ErrorInfo):
                return str(detail.reason)
        return str(self.code.name)

    def rpc_status(self) -> status_pb2.Status:
        """The google.rpc.Status of this refusal, with an ErrorInfo even when none was built."""
        details = list(self.details)
        if not any(isinstance(d, error_details_pb2.ErrorInfo) for d in details):
            details.insert(0, error_details_pb2.ErrorInfo(reason=self.reason, domain=DOMAIN))
        packed = []
        for detail in details:
            holder = any_pb2.Any()
            holder.Pack(detail)
            packed.append(holder)
        return status_pb2.Status(code=self.code.value[0], message=self.message, details=packed)


def details_for(error: AtentoError) -> list[Message]:
    """The google.rpc detail messages that describe ``error``."""
    details: list[Message] = [error_details_pb2.ErrorInfo(reason=error.reason, domain=DOMAIN, metadata=error.metadata)]
    if isinstance(error, InvalidArgument):
        violation = error_details_pb2.BadRequest.FieldViolation(
            field=error.field, description=error.problem, reason=error.reason
        )
        details.append(error_details_pb2.BadRequest(field_violations=[violation]))
    if isinstance(error, Overloaded):
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(error.retry_after_ms)
        details.append(error_details_pb2.RetryInfo(retry_delay=delay))
    if (quota := error.quota) is not None:
        over = error_details_pb2.QuotaFailure.Violation(subject=quota.subject, description=quota.description)
        details.append(error_details_pb2.QuotaFailure(violations=[over]))
    if (r := error.resource) is not None:
        details.append(
            error_details_pb2.ResourceInfo(
                resource_type=r.resource_type, resource_name=r.resource_name, description=r.description
            )
        )
    return details


def status_for(error: BaseException) -> Status:
    """The status to answer ``error`` with; anything unknown is INTERNAL, logged with its traceback."""
    for kind, code in STATUS_BY_ERROR.items():
        if isinstance(error, kind):
            metadata = error.trailing_metadata() if isinstance(error, Overloaded) else ()
            return Status(code, str(error), metadata, details_for(error))
    log.error("internal error", exc_info=error)
    info = error_details_pb2.ErrorInfo(reason=INTERNAL_REASON, domain=DOMAIN)
    return Status(grpc.StatusCode.INTERNAL, "internal error (the server logged the details)", (), (info,))


async def abort(context: grpc.aio.ServicerContext, status: Status) -> NoReturn:
    """End the call with ``status`` (``context.abort`` raises), its google.rpc.Status in the trailers."""
    rich = rpc_status.to_status(status.rpc_status())  # the message and code, plus the details trailer
    await context.abort(rich.code, rich.details, trailing_metadata=(*status.trailing_metadata, *rich.trailing_metadata))
    raise AssertionError("unreachable: context.abort raises")  # pragma: no cover


# --- HTTP (the OpenAI-compatible door): the same domain errors, as HTTP statuses -----------------


class TooLarge(InvalidArgument):
    """A request past a size limit (texts, characters, bytes): INVALID_ARGUMENT on gRPC, 413 over HTTP."""


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
