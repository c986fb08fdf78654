"""A token vendor's factory: makes a batch of key fobs with random seeds and ships the seeds
as a PSKC file (RFC 6030), encrypted with a pre-shared AES key or a password (PBKDF2), every
encrypted value MACed. Returns the fobs themselves for the emulator side.

python-pskc writes the file. Two of its writer's choices are pinned here on purpose: the
PBKDF2 PRF is left at its default (HMAC-SHA1: python-pskc 1.4 writes any other PRF in a form
its own reader, and RFC 6030 readers, do not take), and the MAC is HMAC-SHA256 over the
ciphertext with its own random key, encrypted under the file key.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pskc import PSKC

from otphsm.core.errors import InvalidInput
from otphsm.core.otp import HashAlgorithm
from otphsm.core.tokens import OtpMode, OtpParameters
from otphsm.simulators.token.keyfob import KeyFob

PSKC_ALGORITHMS = {
    OtpMode.HOTP: "urn:ietf:params:xml:ns:keyprov:pskc:hotp",
    OtpMode.TOTP: "urn:ietf:params:xml:ns:keyprov:pskc:totp",
}
SEED_BYTES = {HashAlgorithm.SHA1: 20, HashAlgorithm.SHA256: 32, HashAlgorithm.SHA512: 64}
PSK_ALGORITHMS = {16: "aes128-cbc", 24: "aes192-cbc", 32: "aes256-cbc"}
DEFAULT_PBKDF2_ITERATIONS = 100_000
MANUFACTURER = "otphsm simulated fobs"


@dataclass(frozen=True, slots=True)
class BatchSpec:
    count: int
    first_number: int
    """Serial of the first fob: FOB-<8 digits>, then +1 for each."""
    params: OtpParameters = field(default_factory=lambda: OtpParameters(mode=OtpMode.HOTP))
    prefix: str = "FOB-"
    start_counter: int = 0
    model: str = "OTP-FOB-1"

    def __post_init__(self) -> None:
        if not 1 <= self.count <= 100_000:
            raise InvalidInput("a batch holds 1..100000 fobs")
        if self.first_number < 0 or self.first_number + self.count > 10**8:
            raise InvalidInput("fob numbers are 0..99999999")
        if self.start_counter < 0:
            raise InvalidInput("the start counter cannot be negative")

    def serial(self, offset: int) -> str:
        return f"{self.prefix}{self.first_number + offset:08d}"


def make_fobs(spec: BatchSpec, random_bytes: Callable[[int], bytes] = os.urandom) -> list[KeyFob]:
    """New fobs, each with a fresh random seed of the hash's size (RFC 6238 section 5.1)."""
    counter = spec.start_counter if spec.params.mode is OtpMode.HOTP else 0
    return [
        KeyFob(
            spec.serial(i), random_bytes(SEED_BYTES[spec.params.algorithm]), spec.params, counter
        )
        for i in range(spec.count)
    ]


def pskc_document(
    fobs: list[KeyFob],
    *,
    psk: bytes | None = None,
    password: str | None = None,
    pbkdf2_iterations: int = DEFAULT_PBKDF2_ITERATIONS,
    model: str = "OTP-FOB-1",
) -> bytes:
    """The PSKC file for `fobs`: one KeyPackage per fob; secrets (and HOTP counters)
    and TOTP periods
    encrypted, so the MACs cover them; exactly one of `psk` (16, 24 or 32 bytes) or `password`."""
    if (psk is None) == (password is None):
        raise InvalidInput("give either a pre-shared key or a password")
    if not fobs:
        raise InvalidInput("no fobs to write")
    container = PSKC()
    for fob in fobs:
        key = container.add_key(
            id=fob.serial,
            serial=fob.serial,
            manufacturer=MANUFACTURER,
            model=model,
            algorithm=PSKC_ALGORITHMS[fob.params.mode],
            algorithm_suite=f"HMAC-{fob.params.algorithm.value}",
            response_encoding="DECIMAL",
            response_length=fob.params.digits,
            secret=fob.secret,
        )
        if fob.params.mode is OtpMode.HOTP:
            key.counter = fob.counter
        else:
            key.time_interval = fob.params.period
    container.mac.setup(key=os.urandom(32), algorithm="hmac-sha256")
    fields = ["secret", "counter", "time_interval"]
    if psk is not None:
        algorithm = PSK_ALGORITHMS.get(len(psk))
        if algorithm is None:
            raise InvalidInput("a pre-shared key is 16, 24 or 32 bytes (AES-128/192/256)")
        container.encryption.setup_preshared_key(
            key=bytes(psk), algorithm=algorithm, key_name="Pre-shared-key", fields=fields
        )
    else:
        assert password is not None
        if not password:
            raise InvalidInput("the password cannot be empty")
        container.encryption.setup_pbkdf2(
            password, algorithm="aes128-cbc", iterations=pbkdf2_iterations, fields=fields
        )
    out = io.BytesIO()
    container.write(out)
    return out.getvalue()


def make_batch_file(
    out: Path,
    spec: BatchSpec,
    *,
    psk: bytes | None = None,
    password: str | None = None,
    pbkdf2_iterations: int = DEFAULT_PBKDF2_ITERATIONS,
    random_bytes: Callable[[int], bytes] = os.urandom,
) -> list[KeyFob]:
    """Make a batch, write its PSKC file to `out`, return the fobs (with their seeds)."""
    fobs = make_fobs(spec, random_bytes)
    document = pskc_document(
        fobs, psk=psk, password=password, pbkdf2_iterations=pbkdf2_iterations, model=spec.model
    )
    out.write_bytes(document)
    return fobs
