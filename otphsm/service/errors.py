"""The one table from error categories to gRPC status codes.

Every exception a use case, adapter or servicer raises passes through `status_for`. Known
categories keep their message (it was written for the caller: it names the field that was
wrong, never the value, and no secret), except the errors of adapters whose text comes from
their driver (`DRIVER_WORDS`: a database error quotes psycopg or sqlite3), which get our own
words; anything else becomes INTERNAL with a generic message. A library's text reaches only
the log: the interceptor logs each error's message and the exception it was raised from.

Trailing metadata the caller can rely on:
- `retry-after-seconds`: a wait is running (FailedPrecondition with retry_after), or a quota
  is used up (RateLimited, RESOURCE_EXHAUSTED).
- `otphsm-reason`: a machine-readable reason (the card check that failed, or the category).
- `grpc-status-details-bin`: the standard `google.rpc.Status` with the same facts as details,
  for callers in any language (grpcio-status, Go's `status.FromError`, Java's
  `StatusProto.fromThrowable`): `ErrorInfo` (reason, domain `otphsm`), `RetryInfo` when a wait
  is running, `BadRequest` naming the field at fault (never its value) for malformed input.

The HTTP/JSON front end (`service/http`) answers the same `MappedStatus` as JSON.
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from google.protobuf import any_pb2, duration_pb2

# googleapis-common-protos ships .pyi files, but types-protobuf's google-stubs hide them
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]

from otphsm.client.wire import (
    AUTHORISATION_REFUSED,
    ERROR_DOMAIN,
    REASON_KEY,
    RETRY_AFTER_KEY,
    STATUS_DETAILS_KEY,
)
from otphsm.core.certificates import CardCheckFailed
from otphsm.core.errors import (
    AuthorisationRefused,
    ConfigurationError,
    DeviceRefused,
    DeviceUnavailable,
    FailedPrecondition,
    InvalidInput,
    NotFound,
    RateLimited,
)
from otphsm.core.ports import Conflict
from otphsm.pskc import PskcRefused
from otphsm.service.auth import CallerRefused
from otphsm.store.errors import StoreError

INTERNAL_MESSAGE = "internal error; the server log has the details"

DRIVER_WORDS: tuple[tuple[type[BaseException], str], ...] = (
    (StoreError, "the database is unavailable; try again"),
)
"""Errors whose message carries a driver's text → what the caller is told instead."""

# First match wins: subclasses that need another code come before their bases.
STATUS_TABLE: tuple[tuple[type[BaseException], grpc.StatusCode, str], ...] = (
    (InvalidInput, grpc.StatusCode.INVALID_ARGUMENT, "INVALID_INPUT"),
    (NotFound, grpc.StatusCode.NOT_FOUND, "NOT_FOUND"),
    (FailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION, "FAILED_PRECONDITION"),
    (AuthorisationRefused, grpc.StatusCode.FAILED_PRECONDITION, AUTHORISATION_REFUSED),
    (ConfigurationError, grpc.StatusCode.UNAVAILABLE, "CONFIGURATION"),
    (DeviceUnavailable, grpc.StatusCode.UNAVAILABLE, "DEVICE_UNAVAILABLE"),
    (DeviceRefused, grpc.StatusCode.FAILED_PRECONDITION, "DEVICE_REFUSED"),
    (Conflict, grpc.StatusCode.ABORTED, "CONFLICT"),
    (RateLimited, grpc.StatusCode.RESOURCE_EXHAUSTED, "RATE_LIMITED"),
)


class CallAborted(Exception):
    """What `abort` raises in a context otphsm makes for a call served outside grpc's own
    (the HTTP/JSON front end's, a code check on the event loop): the call ends with this status."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


@dataclass(frozen=True, slots=True)
class MappedStatus:
    code: grpc.StatusCode
    message: str
    expected: bool
    """False when the error fell through to INTERNAL (a bug or an unclassified failure)."""
    reason: str = ""
    retry_after: int = 0
    field: str = ""
    """The request field at fault (malformed input), "" when none is named."""

    @property
    def metadata(self) -> tuple[tuple[str, str | bytes], ...]:
        """The trailing metadata of the refusal: our keys and the `google.rpc.Status`."""
        if not self.reason:
            return ()
        ours: list[tuple[str, str | bytes]] = [(REASON_KEY, self.reason)]
        if self.retry_after > 0:
            ours.append((RETRY_AFTER_KEY, str(self.retry_after)))
        ours.append((STATUS_DETAILS_KEY, self.rich_status().SerializeToString()))
        return tuple(ours)

    def details(self) -> list[object]:
        """The `google.rpc` detail messages: ErrorInfo, then RetryInfo and BadRequest if any."""
        if not self.reason:
            return []
        info = error_details_pb2.ErrorInfo(reason=self.reason, domain=ERROR_DOMAIN)
        if self.retry_after > 0:
            info.metadata["retry_after_seconds"] = str(self.retry_after)
        details: list[object] = [info]
        if self.retry_after > 0:
            delay = duration_pb2.Duration(seconds=self.retry_after)
            details.append(error_details_pb2.RetryInfo(retry_delay=delay))
        if self.field:
            violation = error_details_pb2.BadRequest.FieldViolation(
                field=self.field, description=self.message
            )
            details.append(error_details_pb2.BadRequest(field_violations=[violation]))
        return details

    def rich_status(self) -> status_pb2.Status:
        packed = []
        for detail in self.details():
            container = any_pb2.Any()
            container.Pack(detail)  # type: ignore[arg-type]
            packed.append(container)
        return status_pb2.Status(code=self.code.value[0], message=self.message, details=packed)


def status_for(exc: BaseException) -> MappedStatus:
    if isinstance(exc, CallerRefused):
        return MappedStatus(exc.code, exc.message, expected=True, reason=exc.code.name)
    for category, code, reason in STATUS_TABLE:
        if isinstance(exc, category):
            retry_after = getattr(exc, "retry_after", 0)
            field = getattr(exc, "field", "")
            return MappedStatus(
                code,
                _message(exc, reason),
                expected=True,
                reason=_reason(exc, reason),
                retry_after=retry_after if isinstance(retry_after, int) else 0,
                field=field if isinstance(field, str) else "",
            )
    return MappedStatus(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE, expected=False)


def _reason(exc: BaseException, default: str) -> str:
    if isinstance(exc, CardCheckFailed):
        return exc.reason.name
    if isinstance(exc, PskcRefused):
        return exc.problem.name
    return default


def _message(exc: BaseException, reason: str) -> str:
    for category, words in DRIVER_WORDS:
        if isinstance(exc, category):
            return words
    text = str(exc) or reason.replace("_", " ").lower()
    return text[:1000]
