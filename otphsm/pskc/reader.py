"""Reading a vendor's PSKC file (RFC 6030) of key fobs: the adapter between python-pskc and the
fob use cases.

python-pskc does the format: XML, the PBKDF2 key derivation, AES-CBC and AES key wrap, the
per-value MACs. This module decides what it accepts, and refuses the whole file, with a typed
reason, on the first problem:

- the XML is parsed first with defusedxml (no DTD, entities or external references) whatever
  parser python-pskc would pick, and must be a PSKC 1.0 KeyContainer of KeyPackages;
- every secret is encrypted (AES-CBC with a MAC on the value, or AES key wrap), never plain;
  encryption by DES or without integrity is refused;
- a wrong pre-shared key or password is told apart from an altered file: the file's MAC key is
  decrypted first (a wrong key fails there), then each value's MAC is checked;
- each package names one HOTP or TOTP key of a device with a serial, unique in the file, a
  16..64-byte secret, decimal codes of 6..8 digits, and nothing this service would ignore.

What PSKC itself leaves unprotected: serials, algorithms and plain counters are not covered by
the MACs (only an XML signature would cover them, and python-pskc checks those only with
signxml). Swapping two serials in transit makes the fobs fail, it leaks nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from pskc import PSKC
from pskc.exceptions import DecryptionError, KeyDerivationError

from otphsm.core.app.fobs import (
    MAX_COUNTER,
    MAX_SECRET_BYTES,
    MIN_SECRET_BYTES,
    FobPackage,
    import_fobs,
)
from otphsm.core.errors import InvalidInput
from otphsm.core.otp import HashAlgorithm
from otphsm.core.tokens import OtpMode, OtpParameters, check_serial
from otphsm.pskc.checks import (
    CBC_ALGORITHMS,
    PSKC_NS,
    PskcProblem,
    PskcRefused,
    Shape,
    check_structure,
)

if TYPE_CHECKING:
    from pskc.key import Key

    from otphsm.core.app.context import Actor, App
    from otphsm.core.tokens import Token

T = TypeVar("T")

MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_PBKDF2_ITERATIONS = 5_000_000
MAC_ALGORITHMS = frozenset(
    {
        "http://www.w3.org/2000/09/xmldsig#hmac-sha1",
        *(f"http://www.w3.org/2001/04/xmldsig-more#hmac-sha{n}" for n in (224, 256, 384, 512)),
    }
)
_PLAUSIBLE_MAC_KEY_LENGTHS = frozenset({16, 20, 24, 28, 32, 48, 64})
_MODES = {"hotp": OtpMode.HOTP, "totp": OtpMode.TOTP}
_SUITES = {
    "SHA1": HashAlgorithm.SHA1,
    "SHA256": HashAlgorithm.SHA256,
    "SHA512": HashAlgorithm.SHA512,
}


def import_pskc(
    app: App,
    actor: Actor,
    data: bytes,
    *,
    psk: bytes | None = None,
    password: str | None = None,
) -> list[Token]:
    """What the operator's import (CLI or gRPC) calls: read the file, import every fob as
    unassigned inventory, all or nothing. The audit subject names the file by its digest."""
    packages = read_pskc(data, psk=psk, password=password, now=app.clock.now())
    source = "pskc:" + hashlib.sha256(data).hexdigest()[:16]
    return import_fobs(app, actor, packages, source=source)


def read_pskc_file(
    path: Path, *, psk: bytes | None = None, password: str | None = None, now: float | None = None
) -> list[FobPackage]:
    if path.stat().st_size > MAX_FILE_BYTES:
        raise PskcRefused(PskcProblem.TOO_LARGE, f"a PSKC file is at most {MAX_FILE_BYTES} bytes")
    return read_pskc(path.read_bytes(), psk=psk, password=password, now=now)


def read_pskc(
    data: bytes, *, psk: bytes | None = None, password: str | None = None, now: float | None = None
) -> list[FobPackage]:
    """Decrypt and check every key package; refuse the whole file on the first problem.

    Exactly one of `psk` and `password` is given. `now` (Unix time) refuses expired keys.
    """
    if (psk is None) == (password is None):
        raise InvalidInput("give either the pre-shared key or the password of the PSKC file")
    if len(data) > MAX_FILE_BYTES:
        raise PskcRefused(PskcProblem.TOO_LARGE, f"a PSKC file is at most {MAX_FILE_BYTES} bytes")
    shape = check_structure(data)
    container = _parse(data)
    key_verified = _unlock(container, psk, password, shape)
    decrypt = _Decrypt(key_known_right=key_verified)
    packages: list[FobPackage] = []
    try:
        seen: set[str] = set()
        for index, key in enumerate(container.keys, 1):
            package = _package(index, key, decrypt, now)
            if package.serial in seen:
                package.wipe()
                raise PskcRefused(
                    PskcProblem.DUPLICATE_SERIAL,
                    "the serial appears twice in the file",
                    package=index,
                    serial=package.serial,
                )
            seen.add(package.serial)
            packages.append(package)
    except BaseException:
        for package in packages:
            package.wipe()
        raise
    return packages


# --- python-pskc: parse, unlock, decrypt ------------------------------------------------


def _parse(data: bytes) -> PSKC:
    try:
        return PSKC(io.BytesIO(data))
    except Exception as exc:  # python-pskc lets ValueError, binascii.Error… through
        raise PskcRefused(PskcProblem.MALFORMED, "cannot read it as PSKC") from exc


def _unlock(container: PSKC, psk: bytes | None, password: str | None, shape: Shape) -> bool:
    """Give python-pskc the file key; True if the key is shown right (the MAC key opened)."""
    encryption = container.encryption
    derivation = encryption.derivation
    if derivation.algorithm is not None:
        if password is None:
            raise PskcRefused(
                PskcProblem.PROTECTION, "the file is protected by a password, not a key"
            )
        iterations = derivation.pbkdf2_iterations or 0
        if iterations > MAX_PBKDF2_ITERATIONS:
            raise PskcRefused(
                PskcProblem.UNSUPPORTED, f"more than {MAX_PBKDF2_ITERATIONS} PBKDF2 iterations"
            )
        try:
            encryption.derive_key(password)
        except KeyDerivationError as exc:
            raise PskcRefused(
                PskcProblem.UNSUPPORTED, "the key derivation is not supported"
            ) from exc
        key_length = len(encryption.key or b"")
    else:
        if psk is None:
            raise PskcRefused(
                PskcProblem.PROTECTION,
                "the file is encrypted with a pre-shared key, not a password",
            )
        encryption.key = bytes(psk)
        key_length = len(psk)
    if encryption.algorithm is None:
        raise PskcRefused(PskcProblem.PROTECTION, "the file holds no encrypted value")
    lengths = encryption.algorithm_key_lengths
    if key_length not in lengths:
        name = encryption.algorithm.rsplit("#", 1)[-1]
        raise PskcRefused(
            PskcProblem.WRONG_KEY, f"{name} needs a key of {lengths[0]} bytes, got {key_length}"
        )
    if encryption.algorithm not in CBC_ALGORITHMS:
        return False
    return _check_mac(container, shape)


def _check_mac(container: PSKC, shape: Shape) -> bool:
    """A wrong key shows here: the MAC key, encrypted under the file key, fails to decrypt
    (bad padding) or decrypts to an implausible length (a chance of about 2^-90)."""
    if container.mac.algorithm not in MAC_ALGORITHMS:
        raise PskcRefused(
            PskcProblem.UNSUPPORTED if container.mac.algorithm else PskcProblem.PROTECTION,
            f"MAC algorithm {container.mac.algorithm or 'missing'}: HMAC-SHA1/SHA2 required",
        )
    if not shape.has_mac_key:
        return False
    try:
        mac_key = container.mac.key
    except DecryptionError:
        mac_key = None
    if mac_key is None or len(mac_key) not in _PLAUSIBLE_MAC_KEY_LENGTHS:
        raise PskcRefused(
            PskcProblem.WRONG_KEY,
            "the pre-shared key or password is wrong (the file's MAC key does not decrypt)",
        )
    return True


class _Decrypt:
    """Reads encrypted values; tells a wrong key from an altered file. The key is known right
    once the file's MAC key opened (AES-CBC), or once a secret opened (key wrap, or a file
    that MACs with its encryption key); a failure before that is taken for a wrong key."""

    def __init__(self, *, key_known_right: bool) -> None:
        self._key_known_right = key_known_right

    def secret(self, index: int, key: Key) -> bytes | None:
        value: bytes | None = self(index, lambda: key.secret)
        self._key_known_right = True
        return value

    def __call__(self, index: int, read: Callable[[], T]) -> T:
        try:
            return read()
        except DecryptionError:
            if self._key_known_right:
                raise PskcRefused(
                    PskcProblem.BAD_MAC,
                    "integrity check failed: the file was altered or damaged",
                    package=index,
                ) from None
            raise PskcRefused(
                PskcProblem.WRONG_KEY,
                "cannot decrypt: the pre-shared key or password is wrong",
                package=index,
            ) from None


def _package(index: int, key: Key, decrypt: _Decrypt, now: float | None) -> FobPackage:
    serial = (key.serial or "").strip()
    if not serial:
        raise PskcRefused(PskcProblem.MISSING_SERIAL, "no DeviceInfo/SerialNo", package=index)
    try:
        check_serial(serial)
    except InvalidInput as exc:
        raise PskcRefused(PskcProblem.BAD_SERIAL, str(exc), package=index, serial=serial) from None
    params = _params(index, serial, key, decrypt)
    counter = decrypt(index, lambda: key.counter) or 0
    if params.mode is OtpMode.TOTP:
        counter = 0
    if not 0 <= counter <= MAX_COUNTER:
        raise PskcRefused(
            PskcProblem.BAD_PARAMETERS,
            f"the counter must be 0..{MAX_COUNTER}",
            package=index,
            serial=serial,
        )
    _check_policy(index, serial, key, now)
    secret = decrypt.secret(index, key)
    if secret is None:
        raise PskcRefused(PskcProblem.BAD_SECRET, "no secret", package=index, serial=serial)
    if not MIN_SECRET_BYTES <= len(secret) <= MAX_SECRET_BYTES:
        raise PskcRefused(
            PskcProblem.BAD_SECRET,
            f"a secret must be {MIN_SECRET_BYTES}..{MAX_SECRET_BYTES} bytes, got {len(secret)}",
            package=index,
            serial=serial,
        )
    return FobPackage(serial, bytearray(secret), params, counter)


def _params(index: int, serial: str, key: Key, decrypt: _Decrypt) -> OtpParameters:
    def refuse(problem: PskcProblem, message: str) -> PskcRefused:
        return PskcRefused(problem, message, package=index, serial=serial)

    algorithm = key.algorithm or ""
    mode = _mode(algorithm)
    if mode is None:
        raise refuse(PskcProblem.UNSUPPORTED, f"key algorithm {algorithm or 'missing'}")
    suite = (key.algorithm_suite or "SHA1").upper().replace("HMAC", "").replace("-", "")
    hash_algorithm = _SUITES.get(suite.strip())
    if hash_algorithm is None:
        raise refuse(PskcProblem.UNSUPPORTED, f"algorithm suite {key.algorithm_suite}")
    if key.response_length is None:
        raise refuse(PskcProblem.BAD_PARAMETERS, "no ResponseFormat Length")
    if (key.response_encoding or "DECIMAL").upper() != "DECIMAL" or key.response_check:
        raise refuse(PskcProblem.UNSUPPORTED, "only plain decimal codes are supported")
    period = 30
    if mode is OtpMode.TOTP:
        period = decrypt(index, lambda: key.time_interval) or 30
        if decrypt(index, lambda: key.time_offset) or decrypt(index, lambda: key.time_drift):
            raise refuse(PskcProblem.UNSUPPORTED, "a TOTP time origin or drift other than 0")
    try:
        return OtpParameters(mode, hash_algorithm, key.response_length, period)
    except InvalidInput as exc:
        raise refuse(PskcProblem.BAD_PARAMETERS, str(exc)) from None


def _mode(algorithm: str) -> OtpMode | None:
    """`urn:ietf:params:xml:ns:keyprov:pskc:hotp` (RFC 6030), or `…pskc#totp` as some write."""
    for separator in (":", "#"):
        prefix = PSKC_NS + separator
        if algorithm.startswith(prefix):
            return _MODES.get(algorithm[len(prefix) :])
    return None


def _check_policy(index: int, serial: str, key: Key, now: float | None) -> None:
    policy = key.policy
    if policy.unknown_policy_elements:
        raise PskcRefused(
            PskcProblem.UNSUPPORTED,
            "a key policy this service does not know",
            package=index,
            serial=serial,
        )
    if policy.key_usage and "OTP" not in policy.key_usage:
        raise PskcRefused(
            PskcProblem.UNSUPPORTED,
            "the key's policy does not allow OTP",
            package=index,
            serial=serial,
        )
    if now is None:
        return
    moment = dt.datetime.fromtimestamp(now, dt.UTC)
    for expiry in (policy.expiry_date, key.device.expiry_date):
        if expiry is not None and _aware(expiry) < moment:
            raise PskcRefused(
                PskcProblem.BAD_PARAMETERS,
                f"expired on {expiry.date().isoformat()}",
                package=index,
                serial=serial,
            )


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


__all__ = [
    "MAX_FILE_BYTES",
    "PskcProblem",
    "PskcRefused",
    "check_structure",
    "import_pskc",
    "read_pskc",
    "read_pskc_file",
]
