"""Everything a simulated CNS card is made of: what `cardfile` stores and `CnsCard` runs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from cryptography.hazmat.primitives.asymmetric import rsa

from otphsm.simulators.card.filesystem import FileSystem
from otphsm.smartcard.cns_files import PIN_MAX_LENGTH

PIN_TRIES = 3
PUK_TRIES = 10
PIN_MIN_LENGTH = 5


def check_pin_format(pin: str, what: str = "PIN") -> None:
    """CNS PINs and PUKs as OpenSC handles them: 5..8 ASCII digits."""
    if not (PIN_MIN_LENGTH <= len(pin) <= PIN_MAX_LENGTH and pin.isascii() and pin.isdigit()):
        raise ValueError(f"a {what} is {PIN_MIN_LENGTH}..{PIN_MAX_LENGTH} digits")


@dataclass(frozen=True)
class CardSpec:
    """A card: ATR, files by absolute path (from `3F00`), secrets and retry counters.

    Directories are implied by the EF paths; `files` maps each EF path to its content
    (checked to form a valid tree).
    """

    atr: bytes
    files: Mapping[bytes, bytes]
    pin: str
    puk: str
    private_key: rsa.RSAPrivateKey
    pin_tries_left: int = PIN_TRIES
    puk_tries_left: int = PUK_TRIES
    label: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_pin_format(self.pin)
        check_pin_format(self.puk, "PUK")
        if not 0 <= self.pin_tries_left <= PIN_TRIES:
            raise ValueError(f"PIN tries left must be 0..{PIN_TRIES}")
        if not 0 <= self.puk_tries_left <= PUK_TRIES:
            raise ValueError(f"PUK tries left must be 0..{PUK_TRIES}")
        FileSystem(self.files)
        object.__setattr__(self, "files", MappingProxyType(dict(self.files)))
        object.__setattr__(self, "extra", MappingProxyType(dict(self.extra)))

    @property
    def key_size(self) -> int:
        return self.private_key.key_size
