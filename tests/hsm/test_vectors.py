"""RFC 4226 / RFC 6238 vectors with the HMAC computed inside SoftHSM2, both storage modes."""

from __future__ import annotations

import functools

import pytest
from unit.test_otp_core import RFC4226_CODES, RFC4226_SEED, RFC6238_SEEDS, RFC6238_VECTORS

from otphsm.core.otp import HashAlgorithm, hotp, totp
from otphsm.core.seeds import SeedStorage

pytestmark = pytest.mark.softhsm


@pytest.fixture(params=[SeedStorage.WRAPPED, SeedStorage.RESIDENT])
def any_vault(request, vault, resident_vault):  # type: ignore[no-untyped-def]
    return vault if request.param is SeedStorage.WRAPPED else resident_vault


def test_rfc4226_appendix_d_through_the_hsm(any_vault) -> None:  # type: ignore[no-untyped-def]
    seed = any_vault.import_seed(bytearray(RFC4226_SEED), HashAlgorithm.SHA1)
    fn = functools.partial(any_vault.hmac, seed, HashAlgorithm.SHA1)
    assert [hotp(fn, c) for c in range(10)] == RFC4226_CODES


def test_rfc6238_appendix_b_through_the_hsm(any_vault) -> None:  # type: ignore[no-untyped-def]
    seeds = {
        alg: any_vault.import_seed(bytearray(value), alg) for alg, value in RFC6238_SEEDS.items()
    }
    for unix_time, alg, code in RFC6238_VECTORS:
        fn = functools.partial(any_vault.hmac, seeds[alg], alg)
        assert totp(fn, unix_time, digits=8) == code, (unix_time, alg)


def test_imported_bytearray_is_wiped(vault) -> None:  # type: ignore[no-untyped-def]
    secret = bytearray(RFC4226_SEED)
    vault.import_seed(secret, HashAlgorithm.SHA1)
    assert secret == bytearray(len(RFC4226_SEED))


def test_short_seed_is_zero_padded_to_the_same_hmac(vault) -> None:  # type: ignore[no-untyped-def]
    import hmac

    short = b"0123456789"  # 10 bytes: below SoftHSM's 20-byte HMAC-SHA1 minimum
    for alg in HashAlgorithm:
        seed = vault.import_seed(short, alg)
        assert vault.hmac(seed, alg, b"msg") == hmac.new(short, b"msg", alg.hashlib_name).digest()


@pytest.mark.parametrize("length", [65, 70, 100, 127, 128])
@pytest.mark.parametrize("algorithm", list(HashAlgorithm))
def test_seed_longer_than_the_hash_block_gives_the_rfc_2104_hmac(
    any_vault, algorithm: HashAlgorithm, length: int
) -> None:  # type: ignore[no-untyped-def]
    """RFC 2104 hashes a key longer than the block; the HSM must give the same MAC whatever the
    key wrap does with a length that is not a multiple of 8 (SoftHSM keeps RFC 5649's padding)."""
    import hmac
    import os

    secret = os.urandom(length)
    seed = any_vault.import_seed(bytearray(secret), algorithm)
    for message in (b"\0" * 8, b"msg"):
        expected = hmac.new(secret, message, algorithm.hashlib_name).digest()
        assert any_vault.hmac(seed, algorithm, message) == expected
