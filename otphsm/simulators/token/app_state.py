"""What the emulated phone keeps: its accounts, the app PIN (as a salted scrypt hash), the
wrong-PIN count, the remembered-PIN window and the phone's settings, in one JSON file.

The file is the phone's own storage: it holds each account's seed, which on a real phone the
app keeps in the platform keystore. It is written atomically with mode 0600 and nothing here
ever prints a seed or a PIN (`Account` and `AppState` leave them out of their reprs).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from otphsm.core.errors import InvalidInput
from otphsm.core.otp import HashAlgorithm
from otphsm.core.tokens import OtpMode, OtpParameters

STATE_FORMAT = "otphsm-token-app/1"
PIN_LENGTH = 5
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


class Origin:
    """How an account came into the app."""

    ACTIVATION_CODE = "activation_code"
    TEMPORARY_SECRET = "temporary_secret"  # noqa: S105 (a name, not a secret)
    OTPAUTH = "otpauth"


@dataclass
class Account:
    issuer: str
    account: str
    """The label the app shows: the codice fiscale for accounts of this service."""
    secret: bytes = field(repr=False)
    params: OtpParameters
    origin: str
    serial: str = ""
    """The service's token serial (none for an account scanned from an otpauth:// URI)."""
    counter: int = 0
    """HOTP: the counter of the next code."""
    confirmed: bool = True
    """False while the service has not accepted the first code (proof of possession)."""
    added_at: int = 0

    @property
    def name(self) -> str:
        return f"{self.issuer}:{self.account}" if self.issuer else self.account

    def to_json(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "account": self.account,
            "secret": self.secret.hex(),
            "mode": self.params.mode.value,
            "algorithm": self.params.algorithm.value,
            "digits": self.params.digits,
            "period": self.params.period,
            "origin": self.origin,
            "serial": self.serial,
            "counter": self.counter,
            "confirmed": self.confirmed,
            "added_at": self.added_at,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Account:
        params = OtpParameters(
            OtpMode(data["mode"]),
            HashAlgorithm(data["algorithm"]),
            int(data["digits"]),
            int(data["period"]),
        )
        return cls(
            issuer=str(data["issuer"]),
            account=str(data["account"]),
            secret=bytes.fromhex(data["secret"]),
            params=params,
            origin=str(data["origin"]),
            serial=str(data.get("serial", "")),
            counter=int(data.get("counter", 0)),
            confirmed=bool(data.get("confirmed", True)),
            added_at=int(data.get("added_at", 0)),
        )


@dataclass
class AppState:
    accounts: list[Account] = field(default_factory=list)
    pin_hash: str = field(default="", repr=False)
    """"salt-hex$scrypt-hex", or "" before the first activation sets a PIN."""
    pin_failures: int = 0
    unlocked_until: float = 0.0
    """The PIN is not asked again before this time (elapsed time, not the phone's clock)."""
    remember_seconds: int = 300
    skew_seconds: float = 0.0
    """How far the phone's clock is ahead of the true time (negative: behind)."""

    @property
    def has_pin(self) -> bool:
        return bool(self.pin_hash)

    def set_pin(self, pin: str) -> None:
        check_app_pin(pin)
        salt = secrets.token_bytes(16)
        self.pin_hash = f"{salt.hex()}${_pin_digest(pin, salt).hex()}"

    def pin_matches(self, pin: str) -> bool:
        if not self.pin_hash:
            return False
        salt_hex, _sep, digest_hex = self.pin_hash.partition("$")
        expected = bytes.fromhex(digest_hex)
        return hmac.compare_digest(_pin_digest(pin, bytes.fromhex(salt_hex)), expected)

    def wipe(self) -> None:
        """Forget every account and the PIN (the phone's settings stay)."""
        for account in self.accounts:
            account.secret = b""
        self.accounts = []
        self.pin_hash = ""
        self.pin_failures = 0
        self.unlocked_until = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "format": STATE_FORMAT,
            "settings": {
                "remember_seconds": self.remember_seconds,
                "skew_seconds": self.skew_seconds,
            },
            "pin": self.pin_hash,
            "pin_failures": self.pin_failures,
            "unlocked_until": self.unlocked_until,
            "accounts": [account.to_json() for account in self.accounts],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AppState:
        settings = data.get("settings", {})
        return cls(
            accounts=[Account.from_json(item) for item in data.get("accounts", [])],
            pin_hash=str(data.get("pin", "")),
            pin_failures=int(data.get("pin_failures", 0)),
            unlocked_until=float(data.get("unlocked_until", 0.0)),
            remember_seconds=int(settings.get("remember_seconds", 300)),
            skew_seconds=float(settings.get("skew_seconds", 0.0)),
        )


def check_app_pin(pin: str) -> str:
    if len(pin) != PIN_LENGTH or not pin.isascii() or not pin.isdigit():
        raise InvalidInput(f"the app PIN is exactly {PIN_LENGTH} digits")
    return pin


def _pin_digest(pin: str, salt: bytes) -> bytes:
    return hashlib.scrypt(pin.encode(), salt=salt, **_SCRYPT)


def load_state(path: Path) -> AppState:
    """The app's state; a fresh app when the file does not exist yet."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return AppState()
    except (OSError, ValueError) as exc:
        raise InvalidInput(f"cannot read the token app state {path}: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != STATE_FORMAT:
        raise InvalidInput(f"{path} is not a token app state file ({STATE_FORMAT})")
    try:
        return AppState.from_json(document)
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput(f"the token app state {path} is damaged: {exc}") from None


def save_state(path: Path, state: AppState) -> None:
    """Write atomically, owner-only (the file holds the accounts' seeds)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
        json.dump(state.to_json(), stream, indent=1)
        stream.write("\n")
    os.chmod(temporary, 0o600)
    temporary.replace(path)
