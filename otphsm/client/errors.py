"""One typed error per failed call to the service.

A failed call raises `ServiceRefused` (the service answered no: its message, its reason, the
wait before trying again, and the request field at fault, read from the standard
`google.rpc.Status` details where the service sent them, else from the `otphsm-reason` and
`retry-after-seconds` metadata), `AuthorisationRefused` (a refused
authorisation, e.g. a wrong SMS code: a `ServiceRefused` the caller may answer by asking
again), or `ServiceUnavailable` (it could not be reached, TLS failed, or it did not answer in
time). No message carries anything the caller sent, so no PIN, code or secret can leak
through them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# googleapis-common-protos ships .pyi files, but types-protobuf's google-stubs hide them
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]

from otphsm.client import wire
from otphsm.core import errors as core_errors
from otphsm.core.errors import DeviceUnavailable, OtpHsmError

_UNREACHABLE = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "CANCELLED"})


class ServiceError(OtpHsmError):
    """A call to the service failed; `code` is the gRPC status name."""

    def __init__(
        self, message: str, *, code: str, reason: str = "", retry_after: int = 0, field: str = ""
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.retry_after = retry_after
        self.field = field
        """The request field the service named as malformed ("" when none)."""


class ServiceRefused(ServiceError):
    """The service answered, and refused (invalid input, not found, a precondition, a role)."""


class AuthorisationRefused(ServiceRefused, core_errors.AuthorisationRefused):
    """The service refused an authorisation (reason `AUTHORISATION_REFUSED`): the core error
    of the same name, as the client receives it."""


class ServiceUnavailable(ServiceError, DeviceUnavailable):
    """The service could not be reached, the TLS handshake failed, or it timed out."""


def service_error(exc: Any, server: str) -> ServiceError:
    """The typed error for a failed call (`exc` is a `grpc.RpcError` that is also a `Call`)."""
    code = exc.code().name if callable(getattr(exc, "code", None)) else "UNKNOWN"
    details = str(exc.details() or "") if callable(getattr(exc, "details", None)) else ""
    metadata: Mapping[str, str | bytes] = {}
    trailing = getattr(exc, "trailing_metadata", None)
    if callable(trailing):
        metadata = {key: value for key, value in trailing() or ()}
    reason, retry_after, field = _rich_details(metadata.get(wire.STATUS_DETAILS_KEY))
    reason_text = metadata.get(wire.REASON_KEY)
    reason = reason or (reason_text if isinstance(reason_text, str) else "")
    retry_text = metadata.get(wire.RETRY_AFTER_KEY)
    if not retry_after and isinstance(retry_text, str) and retry_text.isdigit():
        retry_after = int(retry_text)
    if code in _UNREACHABLE:
        what = "did not answer in time" if code == "DEADLINE_EXCEEDED" else "cannot be reached"
        return ServiceUnavailable(
            f"the service at {server} {what} ({code}): {_first_line(details)}", code=code
        )
    message = f"the service refused: {details or code.lower()}"
    if retry_after:
        message += f" (try again in {retry_after} s)"
    refused = AuthorisationRefused if reason == wire.AUTHORISATION_REFUSED else ServiceRefused
    return refused(message, code=code, reason=reason, retry_after=retry_after, field=field)


def _rich_details(data: str | bytes | None) -> tuple[str, int, str]:
    """Reason, seconds to wait and the field at fault from a `google.rpc.Status`."""
    reason, retry_after, field = "", 0, ""
    if not isinstance(data, bytes):
        return reason, retry_after, field
    status = status_pb2.Status()
    try:
        status.ParseFromString(data)
    except Exception:  # a malformed trailer: fall back on the metadata keys
        return reason, retry_after, field
    for detail in status.details:
        info = error_details_pb2.ErrorInfo()
        wait = error_details_pb2.RetryInfo()
        bad = error_details_pb2.BadRequest()
        if detail.Unpack(info) and info.domain == wire.ERROR_DOMAIN:
            reason = info.reason
        elif detail.Unpack(wait):
            retry_after = wait.retry_delay.seconds
        elif detail.Unpack(bad) and bad.field_violations:
            field = bad.field_violations[0].field
    return reason, retry_after, field


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else "no details"
    return line[:300]
