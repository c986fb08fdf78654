"""Property tests: codes computed through SoftHSM2 agree with oathtool and pyotp, for random seeds
of 10 to 128 bytes (longer than the hash block too) and all three hashes."""

from __future__ import annotations

import base64
import functools
import hashlib
import subprocess
from collections.abc import Iterator

import pyotp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.requirements import require_tool

from otphsm.core.otp import HashAlgorithm, hotp, totp
from otphsm.hsm import HsmSeedVault, open_vault

pytestmark = [pytest.mark.softhsm, pytest.mark.slow]

seeds = st.binary(min_size=10, max_size=128)  # import accepts up to 128 bytes
algorithms = st.sampled_from(list(HashAlgorithm))
digit_counts = st.integers(min_value=6, max_value=8)
counters = st.integers(min_value=0, max_value=2**48)
times = st.integers(min_value=0, max_value=2**34)
periods = st.sampled_from([30, 60, 15])
_settings = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@pytest.fixture(scope="module")
def module_vault(softhsm) -> Iterator[HsmSeedVault]:  # type: ignore[no-untyped-def]
    engine = open_vault(softhsm.hsm_config(handle_cache_size=16))
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def oathtool() -> str:
    return require_tool("oathtool", "oathtool")


class _HOTP(pyotp.HOTP):
    min_secret_length_bits = 80  # pyotp's own floor is 112 bits; the issue asks from 10 bytes


class _TOTP(pyotp.TOTP):
    min_secret_length_bits = 80


def _pyotp_secret(seed: bytes) -> str:
    return base64.b32encode(seed).decode().rstrip("=")


def _hsm_fn(vault: HsmSeedVault, seed: bytes, algorithm: HashAlgorithm):  # type: ignore[no-untyped-def]
    ref = vault.import_seed(bytearray(seed), algorithm)
    return functools.partial(vault.hmac, ref, algorithm)


@_settings
@given(seed=seeds, algorithm=algorithms, digits=digit_counts, counter=counters)
def test_hotp_matches_pyotp(module_vault, seed, algorithm, digits, counter) -> None:  # type: ignore[no-untyped-def]
    ours = hotp(_hsm_fn(module_vault, seed, algorithm), counter, digits)
    digest = getattr(hashlib, algorithm.hashlib_name)
    theirs = _HOTP(_pyotp_secret(seed), digits=digits, digest=digest).at(counter)
    assert ours == theirs


@_settings
@given(seed=seeds, algorithm=algorithms, digits=digit_counts, unix_time=times, period=periods)
def test_totp_matches_pyotp(module_vault, seed, algorithm, digits, unix_time, period) -> None:  # type: ignore[no-untyped-def]
    ours = totp(_hsm_fn(module_vault, seed, algorithm), unix_time, period, digits)
    digest = getattr(hashlib, algorithm.hashlib_name)
    theirs = _TOTP(_pyotp_secret(seed), digits=digits, digest=digest, interval=period).at(unix_time)
    assert ours == theirs


@_settings
@given(seed=seeds, digits=digit_counts, counter=counters)
def test_hotp_matches_oathtool(module_vault, oathtool, seed, digits, counter) -> None:  # type: ignore[no-untyped-def]
    ours = hotp(_hsm_fn(module_vault, seed, HashAlgorithm.SHA1), counter, digits)
    theirs = subprocess.run(
        [oathtool, "--hotp", "-d", str(digits), "-c", str(counter), seed.hex()],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert ours == theirs


@_settings
@given(seed=seeds, algorithm=algorithms, digits=digit_counts, unix_time=times, period=periods)
def test_totp_matches_oathtool(
    module_vault, oathtool, seed, algorithm, digits, unix_time, period
) -> None:  # type: ignore[no-untyped-def]
    ours = totp(_hsm_fn(module_vault, seed, algorithm), unix_time, period, digits)
    mode = algorithm.hashlib_name
    theirs = subprocess.run(
        [
            oathtool,
            f"--totp={mode}",
            "-d",
            str(digits),
            "-s",
            f"{period}s",
            "--now",
            f"@{unix_time}",
            seed.hex(),
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert ours == theirs
