"""The error categories every layer's typed errors belong to.

Adapters raise their own subclasses carrying the device code (CKR_*, SW1SW2, PC/SC hresult);
the service maps these categories to gRPC status codes in one place. A wrong OTP is a
result, never one of these.
"""

from __future__ import annotations


class OtpHsmError(Exception):
    """Base of every error otphsm raises on purpose."""


class InvalidInput(OtpHsmError):
    """The caller sent something malformed; nothing was changed. `field` names the request
    field at fault where one is (sent as a `google.rpc.BadRequest` field violation)."""

    def __init__(self, message: str, *, field: str = "") -> None:
        super().__init__(message)
        self.field = field


class NotFound(OtpHsmError):
    """The caller named something that does not exist."""


class ConfigurationError(OtpHsmError):
    """The deployment is wrong (missing library, token, key, bad PIN): an operator must act."""


class DeviceUnavailable(OtpHsmError):
    """A device is unreachable or lost its session; retrying later may succeed."""


class DeviceRefused(OtpHsmError):
    """A device refused an operation on policy or capability grounds."""


class AuthorisationRefused(OtpHsmError):
    """The caller's credentials (a card, a certificate, a signature) were checked and refused;
    nothing was changed."""


class FailedPrecondition(OtpHsmError):
    """Well-formed, but the state does not allow it now (used, expired, wrong lifecycle state,
    a wait still running); nothing was changed."""

    def __init__(self, message: str, *, retry_after: int = 0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(OtpHsmError):
    """Well-formed, but the caller or the subject has used up its quota for now; `retry_after`
    says when one more will be accepted. Nothing was changed (nothing was sent)."""

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
