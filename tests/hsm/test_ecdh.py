"""Secure activation: the seed is derived by ECDH inside the HSM; the device derives the same."""

from __future__ import annotations

import hmac

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from otphsm.core.errors import InvalidInput
from otphsm.core.otp import HashAlgorithm, hotp
from otphsm.hsm import HsmSeedVault

pytestmark = pytest.mark.softhsm


def _device_keypair() -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    point = key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    return key, point


@pytest.mark.parametrize("algorithm", [HashAlgorithm.SHA1, HashAlgorithm.SHA256])
@pytest.mark.parametrize("storage", ["wrapped", "resident"])
def test_device_and_hsm_derive_the_same_seed(algorithm, storage, vault, resident_vault) -> None:  # type: ignore[no-untyped-def]
    engine: HsmSeedVault = vault if storage == "wrapped" else resident_vault
    device_key, device_point = _device_keypair()
    derived = engine.derive_seed_ecdh(device_point, algorithm)
    server_public = ec.EllipticCurvePublicKey.from_encoded_point(
        ec.SECP256R1(), derived.server_public_point
    )
    device_seed = device_key.exchange(ec.ECDH(), server_public)
    assert len(device_seed) == 32
    device_fn = lambda m: hmac.new(device_seed, m, algorithm.hashlib_name).digest()  # noqa: E731
    hsm_fn = lambda m: engine.hmac(derived.seed, algorithm, m)  # noqa: E731
    assert [hotp(hsm_fn, c) for c in range(5)] == [hotp(device_fn, c) for c in range(5)]
    assert device_seed not in derived.seed.data


def test_each_activation_uses_a_fresh_server_key(vault: HsmSeedVault) -> None:
    _, device_point = _device_keypair()
    first = vault.derive_seed_ecdh(device_point, HashAlgorithm.SHA1)
    second = vault.derive_seed_ecdh(device_point, HashAlgorithm.SHA1)
    assert first.server_public_point != second.server_public_point
    assert vault.hmac(first.seed, HashAlgorithm.SHA1, b"m") != vault.hmac(
        second.seed, HashAlgorithm.SHA1, b"m"
    )


@pytest.mark.parametrize(
    "point",
    [b"", b"\x04" + b"\x00" * 64, b"\x02" + b"\x11" * 32, b"\x04" + b"\x01" * 63],
)
def test_a_bad_device_point_is_invalid_input(vault: HsmSeedVault, point: bytes) -> None:
    with pytest.raises(InvalidInput, match="P-256"):
        vault.derive_seed_ecdh(point, HashAlgorithm.SHA1)


def test_sha512_secure_activation_is_refused_clearly(vault: HsmSeedVault) -> None:
    _, device_point = _device_keypair()
    with pytest.raises(InvalidInput, match="SHA512"):
        vault.derive_seed_ecdh(device_point, HashAlgorithm.SHA512)
