"""The pure OTP maths, with stdlib HMAC injected (the HSM tier checks the same vectors)."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from otphsm.core.clock import ManualClock
from otphsm.core.otp import HashAlgorithm, hotp, totp, totp_counter, truncate

RFC4226_SEED = b"12345678901234567890"
RFC4226_CODES = [
    "755224",
    "287082",
    "359152",
    "969429",
    "338314",
    "254676",
    "287922",
    "162583",
    "399871",
    "520489",
]

RFC6238_SEEDS = {
    HashAlgorithm.SHA1: b"12345678901234567890",
    HashAlgorithm.SHA256: b"12345678901234567890123456789012",
    HashAlgorithm.SHA512: b"1234567890123456789012345678901234567890123456789012345678901234",
}
RFC6238_VECTORS = [
    (59, HashAlgorithm.SHA1, "94287082"),
    (59, HashAlgorithm.SHA256, "46119246"),
    (59, HashAlgorithm.SHA512, "90693936"),
    (1111111109, HashAlgorithm.SHA1, "07081804"),
    (1111111109, HashAlgorithm.SHA256, "68084774"),
    (1111111109, HashAlgorithm.SHA512, "25091201"),
    (1111111111, HashAlgorithm.SHA1, "14050471"),
    (1111111111, HashAlgorithm.SHA256, "67062674"),
    (1111111111, HashAlgorithm.SHA512, "99943326"),
    (1234567890, HashAlgorithm.SHA1, "89005924"),
    (1234567890, HashAlgorithm.SHA256, "91819424"),
    (1234567890, HashAlgorithm.SHA512, "93441116"),
    (2000000000, HashAlgorithm.SHA1, "69279037"),
    (2000000000, HashAlgorithm.SHA256, "90698825"),
    (2000000000, HashAlgorithm.SHA512, "38618901"),
    (20000000000, HashAlgorithm.SHA1, "65353130"),
    (20000000000, HashAlgorithm.SHA256, "77737706"),
    (20000000000, HashAlgorithm.SHA512, "47863826"),
]


def stdlib_hmac(seed: bytes, algorithm: HashAlgorithm = HashAlgorithm.SHA1):  # type: ignore[no-untyped-def]
    return lambda message: hmac.new(seed, message, algorithm.hashlib_name).digest()


@pytest.mark.parametrize("counter", range(10))
def test_rfc4226_appendix_d(counter: int) -> None:
    assert hotp(stdlib_hmac(RFC4226_SEED), counter) == RFC4226_CODES[counter]


@pytest.mark.parametrize(("unix_time", "algorithm", "code"), RFC6238_VECTORS)
def test_rfc6238_appendix_b(unix_time: int, algorithm: HashAlgorithm, code: str) -> None:
    fn = stdlib_hmac(RFC6238_SEEDS[algorithm], algorithm)
    assert totp(fn, unix_time, period=30, digits=8) == code


def test_truncation_follows_rfc4226_section_5_4_example() -> None:
    mac = bytes.fromhex("1f8698690e02ca16618550ef7f19da8e945b555a")
    assert truncate(mac, 6) == "872921"


def test_codes_keep_leading_zeros() -> None:
    # Counter 1 of the RFC 6238 SHA-1 vector at t=1111111109 starts with a zero.
    fn = stdlib_hmac(RFC6238_SEEDS[HashAlgorithm.SHA1])
    assert totp(fn, 1111111109, digits=8) == "07081804"


def test_time_step_uses_floor_and_t0() -> None:
    assert totp_counter(59, 30) == 1
    assert totp_counter(60, 30) == 2
    assert totp_counter(100, 30, t0=40) == 2
    assert totp_counter(1_700_000_000.9, 60) == 28_333_333


def test_clock_is_injected_not_read() -> None:
    clock = ManualClock(59)
    fn = stdlib_hmac(RFC6238_SEEDS[HashAlgorithm.SHA1])
    assert totp(fn, clock.now(), digits=8) == "94287082"
    clock.advance(1111111109 - 59)
    assert totp(fn, clock.now(), digits=8) == "07081804"


@pytest.mark.parametrize("digits", [5, 9, 0])
def test_digits_out_of_range_are_refused(digits: int) -> None:
    with pytest.raises(ValueError, match="digits"):
        hotp(stdlib_hmac(RFC4226_SEED), 0, digits)


def test_bad_counter_and_period_are_refused() -> None:
    with pytest.raises(ValueError, match="counter"):
        hotp(stdlib_hmac(RFC4226_SEED), -1)
    with pytest.raises(ValueError, match="counter"):
        hotp(stdlib_hmac(RFC4226_SEED), 1 << 64)
    with pytest.raises(ValueError, match="period"):
        totp_counter(100, 0)
    with pytest.raises(ValueError, match="T0"):
        totp_counter(10, 30, t0=20)


def test_short_mac_is_refused() -> None:
    with pytest.raises(ValueError, match="20 bytes"):
        truncate(hashlib.md5(b"x").digest(), 6)
