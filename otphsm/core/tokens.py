"""The token model: data plus a moving-factor strategy (counter or time). No behaviour here
beyond derived values; the policy lives in `verification`."""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

from otphsm.core.errors import InvalidInput
from otphsm.core.otp import MAX_DIGITS, MIN_DIGITS, HashAlgorithm
from otphsm.core.seeds import SeedRef

SERIAL_PATTERN = re.compile(r"^[A-Z0-9][A-Z0-9-]{3,31}$")


class TokenKind(enum.StrEnum):
    MOBILE = "mobile"
    PHYSICAL = "physical"


class OtpMode(enum.StrEnum):
    TOTP = "totp"
    HOTP = "hotp"


class TokenState(enum.StrEnum):
    PENDING = "pending"
    """Created; waits for the device to prove possession with a first valid code."""
    ACTIVE = "active"
    SUSPENDED = "suspended"
    REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class OtpParameters:
    mode: OtpMode = OtpMode.TOTP
    algorithm: HashAlgorithm = HashAlgorithm.SHA1
    digits: int = 6
    period: int = 30
    """Seconds per TOTP step (ignored for HOTP)."""

    def __post_init__(self) -> None:
        if not MIN_DIGITS <= self.digits <= MAX_DIGITS:
            raise InvalidInput(f"digits must be {MIN_DIGITS}..{MAX_DIGITS}, got {self.digits}")
        if self.mode is OtpMode.TOTP and not 10 <= self.period <= 300:
            raise InvalidInput(f"period must be 10..300 seconds, got {self.period}")


@dataclass(frozen=True, slots=True)
class Token:
    serial: str
    codice_fiscale: str
    kind: TokenKind
    params: OtpParameters
    seed: SeedRef | None
    """None until a secure activation derives the seed inside the HSM."""
    state: TokenState
    created_at: int
    moving_factor: int = 0
    """HOTP: the next counter the device may use. TOTP: the first time step not yet used
    (one past the last accepted step), so no step is ever accepted twice."""
    drift_steps: int = 0
    """TOTP: learned device clock offset, in steps (device step - server step)."""
    failures: int = 0
    """Consecutive failed verifications since the last success or lock."""
    lock_level: int = 0
    """How many locks in a row (the lock time doubles with each), reset by a success."""
    locked_until: int = 0
    activated_at: int | None = None
    last_used_at: int | None = None
    replaces_serial: str | None = None
    """For a replacement device: the token revoked when this one proves possession."""
    version: int = 0
    """Optimistic-concurrency version; the store bumps it on every accepted write."""

    @property
    def is_usable_state(self) -> bool:
        return self.state in (TokenState.ACTIVE, TokenState.PENDING)


def check_serial(serial: str) -> str:
    if not SERIAL_PATTERN.match(serial):
        raise InvalidInput("a serial is 4..32 characters of A-Z, 0-9 and '-'", field="serial")
    return serial


@dataclass(frozen=True, slots=True)
class TokenQuery:
    """Which tokens an operator lists: every filter set must match (None: any)."""

    codice_fiscale: str | None = None
    """A citizen's tokens; "" is the fob inventory (fobs assigned to nobody)."""
    state: TokenState | None = None
    kind: TokenKind | None = None
    assigned: bool | None = None
    """True: tokens of some citizen; False: the unassigned fobs."""


PageAfter = tuple[int, str]
"""Where a listing of tokens goes on: the (created_at, serial) of the last token shown."""
