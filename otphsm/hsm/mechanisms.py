"""Algorithm -> PKCS#11 mechanism tables. Data only."""

from __future__ import annotations

import enum

from pkcs11 import Mechanism

from otphsm.core.otp import HashAlgorithm
from otphsm.hsm.errors import HsmError

HMAC_MECHANISMS: dict[HashAlgorithm, Mechanism] = {
    HashAlgorithm.SHA1: Mechanism.SHA_1_HMAC,
    HashAlgorithm.SHA256: Mechanism.SHA256_HMAC,
    HashAlgorithm.SHA512: Mechanism.SHA512_HMAC,
}


class WrapMechanism(enum.StrEnum):
    """How seeds are wrapped under the KEK (`hsm.wrap_mechanism`)."""

    AES_KEY_WRAP_PAD = "AES_KEY_WRAP_PAD"
    """SoftHSM 2.6 wraps only with this one."""
    AES_CBC_PAD = "AES_CBC_PAD"
    """opencryptoki wraps only with this one."""


WRAP_MECHANISMS: dict[str, Mechanism] = {
    WrapMechanism.AES_KEY_WRAP_PAD: Mechanism.AES_KEY_WRAP_PAD,
    WrapMechanism.AES_CBC_PAD: Mechanism.AES_CBC_PAD,
}

# Wrapping with AES_CBC_PAD needs an IV; a fixed zero IV is acceptable because each wrapped
# value is a distinct random key (no plaintext repeats under the KEK).
WRAP_MECHANISM_PARAMS: dict[str, bytes | None] = {
    WrapMechanism.AES_KEY_WRAP_PAD: None,
    WrapMechanism.AES_CBC_PAD: bytes(16),
}


def wrap_mechanism(name: str) -> tuple[Mechanism, bytes | None]:
    try:
        return WRAP_MECHANISMS[name], WRAP_MECHANISM_PARAMS[name]
    except KeyError:
        known = ", ".join(sorted(WRAP_MECHANISMS))
        raise HsmError(f"unknown hsm.wrap_mechanism {name!r}; use one of: {known}") from None
