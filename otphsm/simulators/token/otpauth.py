"""Reading an `otpauth://` key URI, as an authenticator app does when it scans the QR.

`otpauth://totp/Issuer:account?secret=BASE32&issuer=Issuer&algorithm=SHA1&digits=6&period=30`
(`hotp` needs `counter`). Absent parameters take the usual defaults: SHA-1, 6 digits, 30 s.
Error messages name the parameter at fault, never the URI (it carries the seed).
"""

from __future__ import annotations

import base64
import binascii
import urllib.parse
from dataclasses import dataclass, field

from otphsm.core.errors import InvalidInput
from otphsm.core.otp import HashAlgorithm
from otphsm.core.tokens import OtpMode, OtpParameters

MIN_SECRET_BYTES = 10
"""80 bits: what the shortest secrets in circulation have (RFC 4226 asks for 128 or more)."""


@dataclass(frozen=True, slots=True)
class KeyUri:
    issuer: str
    account: str
    secret: bytes = field(repr=False)
    params: OtpParameters
    counter: int = 0


def parse_otpauth(uri: str) -> KeyUri:
    parts = urllib.parse.urlsplit(uri.strip())
    if parts.scheme.lower() != "otpauth":
        raise InvalidInput("not an otpauth:// URI")
    try:
        mode = OtpMode(parts.netloc.lower())
    except ValueError:
        raise InvalidInput("an otpauth:// URI is of type totp or hotp") from None
    query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
    label = urllib.parse.unquote(parts.path.lstrip("/"))
    label_issuer, _sep, account = label.rpartition(":")
    issuer = query.get("issuer", label_issuer).strip()
    account = account.strip()
    if not account:
        raise InvalidInput("the otpauth:// URI names no account")
    secret = _secret(query.get("secret", ""))
    try:
        algorithm = HashAlgorithm(query.get("algorithm", "SHA1").upper())
    except ValueError:
        raise InvalidInput("algorithm: SHA1, SHA256 or SHA512") from None
    digits = _number(query, "digits", 6)
    period = _number(query, "period", 30)
    counter = 0
    if mode is OtpMode.HOTP:
        if "counter" not in query:
            raise InvalidInput("a hotp URI needs a counter")
        counter = _number(query, "counter", 0)
    return KeyUri(issuer, account, secret, OtpParameters(mode, algorithm, digits, period), counter)


def _secret(text: str) -> bytes:
    cleaned = text.replace(" ", "").upper()
    if not cleaned:
        raise InvalidInput("the otpauth:// URI has no secret")
    try:
        secret = base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))
    except (binascii.Error, ValueError):
        raise InvalidInput("the secret is not base32") from None
    if len(secret) < MIN_SECRET_BYTES:
        raise InvalidInput(f"the secret is shorter than {MIN_SECRET_BYTES} bytes")
    return secret


def _number(query: dict[str, str], name: str, default: int) -> int:
    text = query.get(name, str(default))
    if not text.isascii() or not text.isdigit():
        raise InvalidInput(f"{name} must be a number")
    return int(text)
