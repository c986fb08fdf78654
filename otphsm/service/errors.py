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
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from otphsm.client.wire import AUTHORISATION_REFUSED, REASON_KEY, RETRY_AFTER_KEY
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


@dataclass(frozen=True, slots=True)
class MappedStatus:
    code: grpc.StatusCode
    message: str
    metadata: tuple[tuple[str, str], ...]
    expected: bool
    """False when the error fell through to INTERNAL (a bug or an unclassified failure)."""


def status_for(exc: BaseException) -> MappedStatus:
    for category, code, reason in STATUS_TABLE:
        if isinstance(exc, category):
            metadata: list[tuple[str, str]] = [(REASON_KEY, _reason(exc, reason))]
            retry_after = getattr(exc, "retry_after", 0)
            if isinstance(retry_after, int) and retry_after > 0:
                metadata.append((RETRY_AFTER_KEY, str(retry_after)))
            return MappedStatus(code, _message(exc, reason), tuple(metadata), expected=True)
    return MappedStatus(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE, (), expected=False)


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
