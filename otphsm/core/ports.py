"""The ports (Protocols) adapters implement. The domain talks only to these."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from otphsm.core.clock import Clock
from otphsm.core.otp import HashAlgorithm
from otphsm.core.records import (
    Activation,
    AuditEntry,
    Authorisation,
    Challenge,
    Citizen,
    GridCard,
    OobCode,
    OobPurpose,
    RateLimit,
)
from otphsm.core.seeds import EcdhSeed, SeedRef
from otphsm.core.tokens import Token

__all__ = ["Clock", "Conflict", "OtpHsm", "PushGateway", "SmsGateway", "Store"]


class OtpHsm(Protocol):
    """Everything the OTP domain needs from an HSM. Seeds go in; only MACs come out."""

    def generate_seed(self, algorithm: HashAlgorithm, length: int | None = None) -> SeedRef: ...

    def import_seed(self, secret: bytearray | bytes, algorithm: HashAlgorithm) -> SeedRef:
        """Store given bytes as a seed; a bytearray is wiped once it is inside the HSM."""
        ...

    def derive_seed_ecdh(
        self, device_public_point: bytes, algorithm: HashAlgorithm
    ) -> EcdhSeed: ...

    def hmac(self, seed: SeedRef, algorithm: HashAlgorithm, message: bytes) -> bytes: ...

    def destroy_seed(self, seed: SeedRef) -> None: ...

    def random_bytes(self, length: int) -> bytes: ...

    def resident_seed_ids(self) -> set[bytes]:
        """The references (CKA_ID) of every seed object kept on the token (resident mode)."""
        ...

    def keyed_digest(self, data: bytes) -> bytes:
        """HMAC-SHA256 under the HSM-resident pepper key (activation codes, audit chain)."""
        ...


class Conflict(Exception):
    """Raised by a store when an insert collides with an existing key."""


class Store(Protocol):
    """Persistence. Every method is one transaction, unless called on the store a unit of work
    (`transaction()`) yields. `update_*` are conditional writes: they succeed only if the
    stored `version` still equals the given record's `version`, then store it with
    `version + 1`; False means another writer (another replica) got there first."""

    def transaction(self) -> AbstractContextManager[Store]:
        """A unit of work: every method of the store yielded runs in one transaction, which
        commits once when the block ends and writes nothing if the block raises. Writers are
        serialised as in `append_audit` for the whole block (audit entries appended inside keep
        the chain's order); a nested `transaction()` joins it. Keep HSM and network calls
        outside the block where the use case allows: it holds the write lock."""
        ...

    def migrate(self) -> None: ...

    def ping(self) -> None:
        """Raise if the database is unusable (for health checks)."""
        ...

    def close(self) -> None: ...

    # citizens
    def upsert_citizen(self, citizen: Citizen) -> None: ...

    def get_citizen(self, codice_fiscale: str) -> Citizen | None: ...

    # tokens
    def insert_token(self, token: Token) -> None:
        """Raise `Conflict` if the serial exists."""
        ...

    def get_token(self, serial: str) -> Token | None: ...

    def tokens_of(self, codice_fiscale: str) -> list[Token]: ...

    def update_token(self, token: Token) -> bool: ...

    def update_tokens(self, tokens: Sequence[Token]) -> bool:
        """Conditional writes of several tokens, in the order given, in one transaction: all
        of them, or none (False) if any has changed since it was read. Raise `Conflict` if a
        write would give a citizen two active mobile tokens."""
        ...

    def resident_seed_ids(self) -> set[bytes]:
        """The references of every resident seed a token or a Security Card holds (any state)."""
        ...

    # single-use records
    def insert_challenge(self, challenge: Challenge) -> None: ...

    def consume_challenge(self, challenge_id: str, now: int) -> Challenge | None:
        """Atomically mark it used if it is unused and unexpired; None otherwise."""
        ...

    def get_challenge(self, challenge_id: str) -> Challenge | None: ...

    def insert_authorisation(self, authorisation: Authorisation) -> None: ...

    def consume_authorisation(self, authorisation_id: str, now: int) -> Authorisation | None: ...

    def get_authorisation(self, authorisation_id: str) -> Authorisation | None: ...

    def insert_activation(self, activation: Activation) -> None: ...

    def find_activation_by_mac(self, secret_mac: bytes) -> Activation | None: ...

    def activations_of(self, codice_fiscale: str) -> list[Activation]: ...

    def get_activation(self, activation_id: str) -> Activation | None: ...

    def update_activation(self, activation: Activation) -> bool: ...

    def insert_oob_code(self, code: OobCode) -> None:
        """Also marks every earlier unused code of the same citizen and purpose superseded."""
        ...

    def current_oob_code(self, codice_fiscale: str, purpose: OobPurpose) -> OobCode | None:
        """The newest code that is not superseded (used or not)."""
        ...

    def update_oob_code(self, code: OobCode) -> bool: ...

    # quotas
    def take_rate_slots(self, limits: Sequence[RateLimit], now: int) -> int:
        """All or nothing: if every bucket has had fewer than its `limit` events in the last
        `window_seconds`, record one event at `now` in each and return 0; otherwise record
        nothing and return the seconds until all of them would accept one (at least 1).
        Serialised per bucket across writers, so the limits hold across replicas."""
        ...

    # Security Cards
    def insert_grid_card(self, card: GridCard) -> list[GridCard]:
        """Insert `card` and, in the same transaction, revoke (at `card.created_at`) every other
        active card of the same citizen: there is one active card per citizen. Returns the
        cards it revoked, as they were. Raise `Conflict` if the serial exists."""
        ...

    def get_grid_card(self, serial: str) -> GridCard | None: ...

    def grid_cards_of(self, codice_fiscale: str) -> list[GridCard]:
        """Oldest first."""
        ...

    def update_grid_card(self, card: GridCard) -> bool: ...

    # audit
    def append_audit(self, build: Callable[[AuditEntry | None], AuditEntry]) -> AuditEntry:
        """Serialised across writers: `build(last_entry)` makes the next entry, which is stored
        with seq = last.seq + 1 (1 for the first) in the same transaction."""
        ...

    def audit_entries(self) -> Iterator[AuditEntry]: ...

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table, ordered: tests compare it to show nothing changed."""
        ...


class SmsGateway(Protocol):
    def send(self, phone_number: str, text: str) -> None:
        """Hand a message to the carrier; raise `DeviceUnavailable` if it cannot be sent."""
        ...


class PushGateway(Protocol):
    def push(self, device_serial: str, text: str) -> None:
        """Deliver a notification to the token app on the device with this serial; raise
        `DeviceUnavailable` if it cannot be delivered."""
        ...
