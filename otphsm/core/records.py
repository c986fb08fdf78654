"""The persisted records besides tokens: citizens, challenges, authorisations, activations,
out-of-band codes, rate limits, Security Cards, RADIUS challenge states and audit entries.
Plain data; secrets appear only as HSM-keyed MACs (or, for a card's key, wrapped by the HSM)."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from otphsm.core.seeds import SeedRef


@dataclass(frozen=True, slots=True)
class Citizen:
    codice_fiscale: str
    given_name: str
    surname: str
    birth_date: str
    """ISO 8601 date (YYYY-MM-DD)."""
    sex: str
    birth_place: str
    """Belfiore code of the birth municipality (or foreign state, Z…)."""
    card_id: str
    """The EF_IDCarta of the card that last authorised an enrolment."""
    certificate_serial: str
    certificate_issuer: str
    enrolled_at: int
    updated_at: int
    phone_number: str | None = None
    """Where out-of-band codes go (SMS)."""
    code_prefix_mac: bytes | None = None
    """HSM-keyed MAC of the 4-character part the citizen chose to type before each login code
    (Cl@ve PIN); None when the citizen chose none. The part itself is never stored."""


@dataclass(frozen=True, slots=True)
class Challenge:
    """A server nonce a card signs to authorise an enrolment: single use, short-lived."""

    challenge_id: str
    nonce: bytes
    created_at: int
    expires_at: int
    used_at: int | None = None


@dataclass(frozen=True, slots=True)
class Authorisation:
    """Proof that a citizen's card authorised an enrolment; a token may be created with it."""

    authorisation_id: str
    codice_fiscale: str
    card_id: str
    created_at: int
    expires_at: int
    used_at: int | None = None


class ActivationMethod(enum.StrEnum):
    CODE = "code"
    """18-digit activation code (also as QR), with secure ECDH activation."""
    TEMPORARY_SECRET = "temporary_secret"  # noqa: S105 (a method name, not a secret)
    """5-digit secret the citizen chose at the counter, with the codice fiscale."""
    OTPAUTH = "otpauth"
    """Compatibility: an otpauth:// URI for any authenticator app; shows the seed once."""


@dataclass(frozen=True, slots=True)
class Activation:
    activation_id: str
    token_serial: str
    codice_fiscale: str
    method: ActivationMethod
    secret_mac: bytes
    """HSM-keyed MAC of the activation code or temporary secret (empty for OTPAUTH)."""
    created_at: int
    expires_at: int
    failures: int = 0
    locked_until: int = 0
    used_at: int | None = None
    version: int = 0


class OobPurpose(enum.StrEnum):
    DEVICE_REPLACEMENT = "device_replacement"
    LOGIN = "login"


@dataclass(frozen=True, slots=True)
class OobCode:
    """A server-made single-use code sent out of band (SMS); only its MAC is kept."""

    oob_id: str
    codice_fiscale: str
    purpose: OobPurpose
    code_mac: bytes
    created_at: int
    expires_at: int
    failures: int = 0
    locked_until: int = 0
    used_at: int | None = None
    superseded: bool = False
    version: int = 0


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most `limit` events in any `window_seconds` (a sliding window) for `bucket`."""

    bucket: str
    limit: int
    window_seconds: int


class GridCardState(enum.StrEnum):
    ACTIVE = "active"
    REVOKED = "revoked"


@dataclass(frozen=True, slots=True)
class GridCard:
    """A Security Card (OTP PAT): numbered cells whose values the HSM derives from `key` and the
    cell number. The values are printed once and never stored; only the key, wrapped."""

    serial: str
    codice_fiscale: str
    key: SeedRef
    cells: int
    cell_digits: int
    state: GridCardState
    created_at: int
    revoked_at: int | None = None
    challenge: tuple[int, int] | None = None
    """The two cells of the pending login, if any."""
    challenge_expires_at: int = 0
    last_pair: tuple[int, int] | None = None
    """The pair asked last: the next challenge never asks it again."""
    failures: int = 0
    lock_level: int = 0
    locked_until: int = 0
    version: int = 0


class RadiusChallengeKind(enum.StrEnum):
    GRID = "grid"
    """Two cells of the citizen's Security Card were asked."""
    LOGIN_CODE = "login_code"
    """An out-of-band login code was sent (SMS or push)."""


@dataclass(frozen=True, slots=True)
class RadiusState:
    """A RADIUS Access-Challenge waiting for its answer: kept in the store, so the answer may
    reach any replica. `state` is the State attribute's value (HSM randomness), single use."""

    state: bytes
    client: str
    """The name of the NAS that was challenged: only it may answer."""
    codice_fiscale: str
    kind: RadiusChallengeKind
    created_at: int
    expires_at: int


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One link of the audit chain: entry_hash = SHA-256(prev_hash ‖ canonical body),
    mac = HSM keyed digest of entry_hash."""

    seq: int
    at: int
    actor: str
    action: str
    subject: str
    details: dict[str, Any] = field(default_factory=dict)
    prev_hash: bytes = b""
    entry_hash: bytes = b""
    mac: bytes = b""
