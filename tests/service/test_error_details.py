"""The error table in-process: every status it builds carries a google.rpc.Status that decodes,
and the SDK reads the same bytes back (both ends of the grpc-status-details-bin trailer)."""

from __future__ import annotations

import grpc
import pytest
from atento.client.errors import FieldViolation, OverloadedError, QuotaViolation, from_rpc_error
from atento.service import errors
from google.rpc import error_details_pb2

KNOWN = [
    errors.InvalidArgument("requests[3].texts[17]", "must not be empty", reason="EMPTY_TEXT"),
    errors.FailedPrecondition("attention maps are off", reason="ATTENTION_MAPS_OFF"),
    errors.Overloaded("queue full", 0.25, quota=errors.Quota("max_queued_texts", "at most 4")),
    errors.NotReady("loading", reason="MODEL_LOADING"),
    errors.DeadlineExceeded("the deadline passed"),
    errors.Unauthenticated("missing bearer token", metadata={"token": "missing"}),
    RuntimeError("a bug"),
]


class Refused(grpc.RpcError):
    """What grpc raises on the client, built from what ``abort`` would send."""

    def __init__(self, status: errors.Status) -> None:
        self._status = status

    def code(self) -> grpc.StatusCode:
        return self._status.code

    def details(self) -> str:
        return self._status.message

    def trailing_metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        bin_key = (errors.STATUS_DETAILS_KEY, self._status.rpc_status().SerializeToString())
        return (*self._status.trailing_metadata, bin_key)


@pytest.mark.fast
@pytest.mark.parametrize("error", KNOWN, ids=[type(e).__name__ for e in KNOWN])
def test_every_status_has_error_info_and_the_sdk_reads_it(error: Exception) -> None:
    status = errors.status_for(error)
    rich = status.rpc_status()
    assert rich.code == status.code.value[0] and rich.message == status.message
    info = error_details_pb2.ErrorInfo()
    assert rich.details[0].Unpack(info) and info.domain == errors.DOMAIN and info.reason == status.reason
    decoded = from_rpc_error(Refused(status))
    assert decoded.reason == status.reason and decoded.details.domain == "atento.v1"


@pytest.mark.fast
def test_a_status_built_elsewhere_without_details_still_gets_error_info() -> None:
    bare = errors.Status(grpc.StatusCode.UNAVAILABLE, "not yet")
    info = error_details_pb2.ErrorInfo()
    assert bare.rpc_status().details[0].Unpack(info) and info.reason == "UNAVAILABLE"


@pytest.mark.fast
def test_the_sdk_decodes_field_retry_and_quota() -> None:
    bad = from_rpc_error(Refused(errors.status_for(KNOWN[0])))
    assert bad.field_violations == (FieldViolation("requests[3].texts[17]", "must not be empty", "EMPTY_TEXT"),)
    busy = from_rpc_error(Refused(errors.status_for(KNOWN[2])))
    assert isinstance(busy, OverloadedError) and busy.retry_after == 0.25 and busy.reason == "QUEUE_FULL"
    assert busy.quota_violations == (QuotaViolation("max_queued_texts", "at most 4"),)
    assert busy.resource is not None and busy.resource.resource_name == "batcher"
    internal = from_rpc_error(Refused(errors.status_for(KNOWN[-1])))
    assert internal.reason == "INTERNAL" and internal.field_violations == ()
