"""Typed storage errors carrying the driver's code (SQLSTATE or SQLite result code).

Messages never contain a password: the DSN's password is removed before a message is built.
A duplicate key is `otphsm.core.ports.Conflict`, which the service treats as a domain outcome.
"""

from __future__ import annotations

from otphsm.core.errors import DeviceUnavailable, OtpHsmError


class StoreError(OtpHsmError):
    """A database failure. `code` is the SQLSTATE (PostgreSQL) or result-code name (SQLite)."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        self.code = code
        suffix = f" [{code}]" if code else ""
        super().__init__(message + suffix)


class StoreUnavailable(StoreError, DeviceUnavailable):
    """The database is unreachable, locked past the timeout, or not usable yet; retry later."""


def redact(message: str, secrets: tuple[str, ...]) -> str:
    for secret in secrets:
        if secret:
            message = message.replace(secret, "***")
    return message
