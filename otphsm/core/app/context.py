"""What every use case needs: the ports, the policy, and who is asking."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from otphsm.core.audit import seal
from otphsm.core.certificates import TrustStore
from otphsm.core.clock import Clock
from otphsm.core.grid_card import MAX_CELL_DIGITS
from otphsm.core.ports import OtpHsm, PushGateway, SmsGateway, Store
from otphsm.core.records import AuditEntry
from otphsm.core.verification import VerificationPolicy


class Role(enum.StrEnum):
    VERIFIER = "verifier"
    """A relying party: verifies codes, asks for out-of-band codes."""
    ENROLLER = "enroller"
    """A technician's station: card authorisation, token creation, replacement."""
    DEVICE = "device"
    """The token app's gateway: activation and proof of possession."""
    ADMIN = "admin"
    """An operator: lifecycle, audit, imports."""


@dataclass(frozen=True, slots=True)
class Actor:
    name: str
    """The caller's certificate subject (or 'cli:<user>'); recorded in the audit chain."""
    role: Role


@dataclass(frozen=True, slots=True)
class AppPolicy:
    issuer: str = "otphsm"
    """The issuer shown in authenticator apps (otpauth:// label)."""
    challenge_seconds: int = 60
    authorisation_seconds: int = 600
    activation_code_seconds: int = 1800
    temporary_secret_seconds: int = 300
    secret_failures_before_wait: int = 3
    secret_wait_seconds: int = 60
    sms_code_seconds: int = 600
    sms_code_digits: int = 6
    write_attempts: int = 8
    """Conditional writes retried (re-read, re-decide) this many times under contention."""
    login_codes_per_citizen: int = 3
    """Out-of-band login codes sent to one citizen per `login_code_citizen_window_seconds`
    (0: no limit)."""
    login_code_citizen_window_seconds: int = 600
    login_codes_per_caller: int = 30
    """Out-of-band login codes one relying party may have sent per
    `login_code_caller_window_seconds` (0: no limit)."""
    login_code_caller_window_seconds: int = 60
    grid_cells: int = 50
    """Cells on a new Security Card (10..100)."""
    grid_cell_digits: int = 3
    """Digits per cell (2..`MAX_CELL_DIGITS`)."""
    grid_challenge_seconds: int = 300
    """How long a Security Card challenge (two cells) may be answered."""
    verification: VerificationPolicy = field(default_factory=VerificationPolicy)

    def __post_init__(self) -> None:
        if not 10 <= self.grid_cells <= 100:
            raise ValueError(f"grid_cells must be 10..100, got {self.grid_cells}")
        if not 2 <= self.grid_cell_digits <= MAX_CELL_DIGITS:
            raise ValueError(
                f"grid_cell_digits must be 2..{MAX_CELL_DIGITS}, got {self.grid_cell_digits}"
            )


@dataclass
class App:
    store: Store
    hsm: OtpHsm
    clock: Clock
    trust: TrustStore
    sms: SmsGateway
    policy: AppPolicy = field(default_factory=AppPolicy)
    push: PushGateway | None = None
    """Notifications to the token app (out-of-band codes by push); None: not offered."""

    def now(self) -> int:
        return int(self.clock.now())

    def new_id(self, prefix: str) -> str:
        return f"{prefix}-{self.hsm.random_bytes(12).hex()}"

    def audit(self, actor: Actor | str, action: str, subject: str, **details: object) -> None:
        """Append to the chain. Callers pass identifiers and outcomes, never secrets."""
        name = actor.name if isinstance(actor, Actor) else actor
        entry = AuditEntry(0, self.now(), name, action, subject, dict(details))
        self.store.append_audit(lambda last: seal(entry, last, self.hsm.keyed_digest))
