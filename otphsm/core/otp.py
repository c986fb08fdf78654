"""HOTP (RFC 4226) and TOTP (RFC 6238) with an injected HMAC function.

The HMAC is computed by whoever holds the seed (the HSM in production); this module only
turns a MAC into digits. Dynamic truncation is not secret, so it runs on the host.
"""

from __future__ import annotations

import enum
from collections.abc import Callable

HmacFn = Callable[[bytes], bytes]
"""Computes HMAC(seed, message) for one fixed seed and algorithm."""

MIN_DIGITS = 6
MAX_DIGITS = 8


class HashAlgorithm(enum.StrEnum):
    SHA1 = "SHA1"
    SHA256 = "SHA256"
    SHA512 = "SHA512"

    @property
    def digest_size(self) -> int:
        return _DIGEST_SIZES[self]

    @property
    def block_size(self) -> int:
        """HMAC's block (RFC 2104's B): a longer key is hashed first."""
        return _BLOCK_SIZES[self]

    @property
    def hashlib_name(self) -> str:
        return self.value.lower()


_DIGEST_SIZES = {HashAlgorithm.SHA1: 20, HashAlgorithm.SHA256: 32, HashAlgorithm.SHA512: 64}
_BLOCK_SIZES = {HashAlgorithm.SHA1: 64, HashAlgorithm.SHA256: 64, HashAlgorithm.SHA512: 128}


def counter_bytes(counter: int) -> bytes:
    if not 0 <= counter < 1 << 64:
        raise ValueError(f"counter must fit in 8 unsigned bytes, got {counter}")
    return counter.to_bytes(8, "big")


def truncate(mac: bytes, digits: int) -> str:
    """RFC 4226 section 5.3 dynamic truncation of an HMAC to a zero-padded decimal code."""
    if not MIN_DIGITS <= digits <= MAX_DIGITS:
        raise ValueError(f"digits must be {MIN_DIGITS}..{MAX_DIGITS}, got {digits}")
    if len(mac) < 20:
        raise ValueError(f"an HMAC of at least 20 bytes is needed, got {len(mac)}")
    offset = mac[-1] & 0x0F
    binary = int.from_bytes(mac[offset : offset + 4], "big") & 0x7FFF_FFFF
    return str(binary % 10**digits).zfill(digits)


def hotp(hmac_fn: HmacFn, counter: int, digits: int = 6) -> str:
    return truncate(hmac_fn(counter_bytes(counter)), digits)


def totp_counter(unix_time: float, period: int = 30, t0: int = 0) -> int:
    """The RFC 6238 time step T = floor((unix_time - T0) / period)."""
    if period <= 0:
        raise ValueError(f"period must be positive, got {period}")
    if unix_time < t0:
        raise ValueError("time is before T0")
    return int((unix_time - t0) // period)


def totp(hmac_fn: HmacFn, unix_time: float, period: int = 30, digits: int = 6, t0: int = 0) -> str:
    return hotp(hmac_fn, totp_counter(unix_time, period, t0), digits)
