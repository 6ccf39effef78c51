"""Typed exceptions, one per gRPC status a caller can act on, each with the server's message and
the google.rpc error details the server attached (the ``grpc-status-details-bin`` trailer): the
stable ``reason``, the ``field_violations``, ``retry_after``, ``quota_violations`` and ``resource``."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2, status_pb2

STATUS_DETAILS_KEY = "grpc-status-details-bin"
M = TypeVar("M", bound=Message)


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of the request: ``field`` as ``requests[3].texts[17]``, and what is wrong."""

    field: str
    description: str
    reason: str = ""


@dataclass(frozen=True)
class QuotaViolation:
    """A limit the request ran into: ``subject`` names the server setting (``max_texts_per_request``)."""

    subject: str
    description: str


@dataclass(frozen=True)
class ResourceInfo:
    """The server resource a refusal is about (the batcher's queue, for instance)."""

    resource_type: str
    resource_name: str
    description: str


@dataclass(frozen=True)
class ErrorDetails:
    """What a google.rpc.Status says beyond code and message; empty when the server sent none
    (refusals made inside gRPC itself, such as an oversized message, carry none)."""

    reason: str | None = None
    domain: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    field_violations: Sequence[FieldViolation] = ()
    retry_after: float | None = None
    quota_violations: Sequence[QuotaViolation] = ()
    resource: ResourceInfo | None = None


def _as(holder: any_pb2.Any, kind: type[M]) -> M | None:
    """The detail in ``holder`` when it is a ``kind``, else None."""
    if holder.TypeName() != kind.DESCRIPTOR.full_name:
        return None
    message = kind()
    holder.Unpack(message)
    return message


def _unpack(status: status_pb2.Status) -> ErrorDetails:
    found: dict[str, object] = {}
    for holder in status.details:
        if info := _as(holder, error_details_pb2.ErrorInfo):
            found.update(reason=info.reason, domain=info.domain, metadata=dict(info.metadata))
        elif bad := _as(holder, error_details_pb2.BadRequest):
            violations = bad.field_violations
            found["field_violations"] = tuple(FieldViolation(v.field, v.description, v.reason) for v in violations)
        elif retry := _as(holder, error_details_pb2.RetryInfo):
            found["retry_after"] = retry.retry_delay.ToMilliseconds() / 1000
        elif quota := _as(holder, error_details_pb2.QuotaFailure):
            found["quota_violations"] = tuple(QuotaViolation(v.subject, v.description) for v in quota.violations)
        elif resource := _as(holder, error_details_pb2.ResourceInfo):
            found["resource"] = ResourceInfo(resource.resource_type, resource.resource_name, resource.description)
    return ErrorDetails(**found)  # type: ignore[arg-type]


def error_details(error: grpc.RpcError) -> ErrorDetails:
    """The google.rpc details of a gRPC error (empty when it carries none, or none that parse)."""
    trailers = getattr(error, "trailing_metadata", lambda: None)() or ()
    for key, value in trailers:
        if key == STATUS_DETAILS_KEY:
            try:
                return _unpack(status_pb2.Status.FromString(value))
            except DecodeError:
                break
    return ErrorDetails()


class AtentoError(Exception):
    """Base of every error the SDK raises; ``code`` is the gRPC status, ``message`` the server's words,
    ``details`` the google.rpc details (also as the attributes below)."""

    def __init__(self, message: str, code: grpc.StatusCode | None = None, details: ErrorDetails | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.details = details or ErrorDetails()

    @property
    def reason(self) -> str | None:
        """The server's stable reason (``TEXT_TOO_LONG``, ``QUEUE_FULL``...): README lists them."""
        return self.details.reason

    @property
    def field_violations(self) -> Sequence[FieldViolation]:
        return self.details.field_violations

    @property
    def quota_violations(self) -> Sequence[QuotaViolation]:
        return self.details.quota_violations

    @property
    def resource(self) -> ResourceInfo | None:
        return self.details.resource

    @property
    def retry_after(self) -> float | None:
        """Seconds to wait before retrying, when the server said (RetryInfo)."""
        return self.details.retry_after


class InvalidInputError(AtentoError):
    """INVALID_ARGUMENT (or FAILED_PRECONDITION): the request itself is wrong; do not retry it as is."""


class OverloadedError(AtentoError):
    """RESOURCE_EXHAUSTED: the server's queue is full; ``retry_after`` says when to come back."""

    def __init__(
        self,
        message: str,
        code: grpc.StatusCode | None = None,
        retry_after: float | None = None,
        details: ErrorDetails | None = None,
    ) -> None:
        super().__init__(message, code, details)
        self._retry_after = retry_after

    @property
    def retry_after(self) -> float | None:
        """RetryInfo's delay, or the ``retry-after-ms`` trailer's when the server sent no details."""
        return self.details.retry_after if self.details.retry_after is not None else self._retry_after


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


class IdentityChangedError(AtentoError):
    """The vectors came from another bundle (or precision, pooling, prompt) than the ones pinned:
    raised by ``IdentityPin``, never by the server."""


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
    """The typed exception for a gRPC error, carrying its message, details (and retry hint)."""
    code = error.code() if hasattr(error, "code") else None
    message = (error.details() if hasattr(error, "details") else None) or str(code)
    kind = ERROR_BY_STATUS.get(code, AtentoError) if code is not None else AtentoError
    details = error_details(error)
    if kind is OverloadedError:
        return OverloadedError(message, code, _retry_after(error), details)
    return kind(message, code, details)


@contextmanager
def rpc_errors() -> Iterator[None]:
    """Around a call, blocking or awaited: a gRPC error leaves as its typed exception, without the
    gRPC one chained (its message is already the exception's)."""
    try:
        yield
    except grpc.RpcError as error:
        raise from_rpc_error(error) from None
