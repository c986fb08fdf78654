"""`otphsm demo`: the flow on the embedded defaults, narrated for a person, checked as it goes.

Exits non-zero if any step does not behave as shown.
"""

from __future__ import annotations

import argparse
import functools
import hmac
import tempfile
from pathlib import Path

import pkcs11.exceptions as p11e
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from pkcs11 import Attribute

from otphsm.cli.commands import CommandTree
from otphsm.core.otp import HashAlgorithm, hotp, totp
from otphsm.hsm import HsmSeedVault, SessionContext, open_vault
from otphsm.simulators.hsm.softhsm import create_softhsm, provision_softhsm

RFC4226_SEED = b"12345678901234567890"
RFC4226_FIRST_CODES = ["755224", "287082", "359152", "969429", "338314"]


class DemoFailure(AssertionError):
    pass


def register(tree: CommandTree) -> None:
    parser = tree.command("demo", handler=_run, help="play the whole flow on simulated devices")
    parser.add_argument("--keep", type=Path, help="keep the simulated devices in this directory")


def _step(title: str) -> None:
    print(f"\n== {title}")


def _expect(condition: bool, what: str) -> None:
    print(f"   {'ok  ' if condition else 'FAIL'} {what}")
    if not condition:
        raise DemoFailure(what)


def _run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="otphsm-demo-") as tmp:
        directory = args.keep or Path(tmp)
        try:
            _story(directory)
        except DemoFailure as failure:
            print(f"\ndemo FAILED at: {failure}")
            return 1
    print("\ndemo: every step behaved as shown")
    return 0


def _story(directory: Path) -> None:
    _step("Provision a private SoftHSM2 token (Security Officer makes the trusted KEK)")
    softhsm = create_softhsm(directory / "hsm")
    softhsm.activate()
    report = provision_softhsm(softhsm)
    print(f"   token {softhsm.token_label!r} in {softhsm.directory}")
    _expect(report.kek_created and report.pepper_created, "KEK and pepper key created")
    vault = open_vault(softhsm.hsm_config())
    try:
        _hsm_story(vault)
    finally:
        vault.close()


def _hsm_story(vault: HsmSeedVault) -> None:
    _step("RFC 4226 test seed imported; codes computed inside the HSM")
    seed = vault.import_seed(bytearray(RFC4226_SEED), HashAlgorithm.SHA1)
    print(f"   stored blob ({len(seed.data)} bytes, AES key wrap under the KEK): {seed.data.hex()}")
    fn = functools.partial(vault.hmac, seed, HashAlgorithm.SHA1)
    codes = [hotp(fn, c) for c in range(5)]
    print(f"   HOTP counters 0-4: {' '.join(codes)}")
    _expect(codes == RFC4226_FIRST_CODES, "match RFC 4226 Appendix D")

    _step("A seed generated inside the HSM cannot be read out")
    generated = vault.generate_seed(HashAlgorithm.SHA1)
    vault.hmac(generated, HashAlgorithm.SHA1, b"warm")

    def read_value(ctx: SessionContext) -> bool:
        key = vault.cache.get((generated.storage, generated.data), ctx.generation)
        if key is None:
            return False
        try:
            key[Attribute.VALUE]
        except p11e.AttributeSensitive:
            return True
        return False

    _expect(vault.owner.run("demo", read_value), "reading CKA_VALUE is refused (sensitive)")

    _step("Secure activation: phone and HSM derive the same seed by ECDH; it never travels")
    phone_key = ec.generate_private_key(ec.SECP256R1())
    phone_point = phone_key.public_key().public_bytes(
        serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
    )
    derived = vault.derive_seed_ecdh(phone_point, HashAlgorithm.SHA1)
    server_key = ec.EllipticCurvePublicKey.from_encoded_point(
        ec.SECP256R1(), derived.server_public_point
    )
    phone_seed = phone_key.exchange(ec.ECDH(), server_key)
    now = 1_800_000_000
    phone_code = totp(lambda m: hmac.new(phone_seed, m, "sha1").digest(), now)
    hsm_code = totp(functools.partial(vault.hmac, derived.seed, HashAlgorithm.SHA1), now)
    print(f"   phone shows {phone_code}; the HSM computes {hsm_code}")
    _expect(phone_code == hsm_code, "the phone's TOTP equals the HSM's")
