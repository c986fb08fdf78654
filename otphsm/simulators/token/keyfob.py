"""An emulated key fob: a HOTP fob shows the next code at each button press, a TOTP fob shows
the code of the current time step on its display. Built from a PSKC key package (via the
import adapter) or from parameters; its memory (secret, counter, clock error) saved as JSON.

The fob is the device, so it holds its secret and computes HMACs itself, as a real one does.
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from otphsm.core.app.fobs import FobPackage
from otphsm.core.errors import InvalidInput, NotFound
from otphsm.core.otp import HashAlgorithm, hotp, totp
from otphsm.core.tokens import OtpMode, OtpParameters, check_serial

STATE_FORMAT = "otphsm-keyfobs/1"


@dataclass
class KeyFob:
    serial: str
    secret: bytes = field(repr=False)
    params: OtpParameters = field(default_factory=OtpParameters)
    counter: int = 0
    """HOTP: the counter the next press uses."""
    clock_skew: float = 0.0
    """TOTP: seconds the fob's clock is ahead (negative: behind)."""

    def __post_init__(self) -> None:
        check_serial(self.serial)
        if not self.secret:
            raise InvalidInput("a key fob needs a secret")
        if self.counter < 0:
            raise InvalidInput("the counter cannot be negative")

    @classmethod
    def from_package(cls, package: FobPackage) -> KeyFob:
        """The fob a vendor's key package describes (copies the secret; the package keeps it)."""
        return cls(package.serial, bytes(package.secret), package.params, package.counter)

    def press(self) -> str:
        """HOTP: the button shows the code for the current counter, then the counter moves."""
        if self.params.mode is not OtpMode.HOTP:
            raise InvalidInput(f"{self.serial} is a TOTP fob: read its display with code(now)")
        code = hotp(self._hmac, self.counter, self.params.digits)
        self.counter += 1
        return code

    def code(self, now: float) -> str:
        """TOTP: what the display shows at Unix time `now` (by the fob's own clock)."""
        if self.params.mode is not OtpMode.TOTP:
            raise InvalidInput(f"{self.serial} is a HOTP fob: press its button")
        return totp(self._hmac, now + self.clock_skew, self.params.period, self.params.digits)

    def show(self, now: float) -> str:
        """Whatever the fob shows when the user looks: a press (HOTP) or the display (TOTP)."""
        return self.press() if self.params.mode is OtpMode.HOTP else self.code(now)

    def _hmac(self, message: bytes) -> bytes:
        return hmac.new(self.secret, message, self.params.algorithm.hashlib_name).digest()

    def to_json(self) -> dict[str, Any]:
        return {
            "serial": self.serial,
            "secret": self.secret.hex(),
            "mode": self.params.mode.value,
            "algorithm": self.params.algorithm.value,
            "digits": self.params.digits,
            "period": self.params.period,
            "counter": self.counter,
            "clock_skew": self.clock_skew,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> KeyFob:
        try:
            params = OtpParameters(
                OtpMode(data["mode"]),
                HashAlgorithm(data["algorithm"]),
                int(data["digits"]),
                int(data["period"]),
            )
            return cls(
                str(data["serial"]),
                bytes.fromhex(data["secret"]),
                params,
                int(data["counter"]),
                float(data.get("clock_skew", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"not a key fob record: {exc}") from None


def save_fobs(path: Path, fobs: Iterable[KeyFob]) -> None:
    """Write the fobs' memory (secrets included: owner-only file) atomically."""
    document = {"format": STATE_FORMAT, "fobs": [fob.to_json() for fob in fobs]}
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
        json.dump(document, stream, indent=1)
        stream.write("\n")
    temporary.replace(path)


def load_fobs(path: Path) -> dict[str, KeyFob]:
    """The fobs in a state file, by serial."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotFound(f"no key fob state file {path}") from None
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read key fob state file {path}: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != STATE_FORMAT:
        raise InvalidInput(f"{path} is not a key fob state file ({STATE_FORMAT})")
    fobs = [KeyFob.from_json(record) for record in document.get("fobs", [])]
    return {fob.serial: fob for fob in fobs}


def fob_from(path: Path, serial: str) -> tuple[dict[str, KeyFob], KeyFob]:
    """All the fobs of a state file, and the one with `serial`."""
    fobs = load_fobs(path)
    fob = fobs.get(serial)
    if fob is None:
        raise NotFound(f"no key fob {serial} in {path}")
    return fobs, fob
