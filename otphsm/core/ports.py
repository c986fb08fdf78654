"""The ports (Protocols) adapters implement. The domain talks only to these."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import Any, Protocol

from otphsm.core.certificates import TrustStore
from otphsm.core.clock import Clock
from otphsm.core.lockout import Failure, Refusal, Reservation, Standing, Success
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
    RadiusState,
    RateLimit,
)
from otphsm.core.seeds import EcdhSeed, SeedHolder, SeedRef, StoredSeed
from otphsm.core.tokens import PageAfter, Token, TokenQuery

__all__ = ["Clock", "Conflict", "OtpHsm", "PushGateway", "SmsGateway", "Store", "TrustSource"]


class TrustSource(Protocol):
    """Where card checks get the trusted CAs and CRLs: a fixed `TrustStore`, or the server's
    holder that keeps its CRLs current (`otphsm.service.crls.CrlHolder`)."""

    def for_certificate(self, certificate_der: bytes) -> TrustStore:
        """The trust store to check this card certificate against now (a holder that fetches
        CRLs may first learn the certificate's distribution points)."""
        ...


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

    def keyed_digests(self, data: bytes) -> list[bytes]:
        """`data`'s keyed digest under every pepper key generation, newest first: a stored
        digest made before a pepper rotation is among them."""
        ...

    def keyed_digest_matches(self, data: bytes, digest: bytes) -> bool:
        """Whether `digest` is `data`'s keyed digest under the pepper generation it was made
        with (before or after a rotation)."""
        ...


class KeyRing(Protocol):
    """The HSM's KEK generations, for KEK rotation (Security Officer operations)."""

    @property
    def first(self) -> str:
        """The first KEK's label: a seed stored without a KEK label is wrapped under it."""
        ...

    def labels(self) -> list[str]:
        """The KEKs on the token, oldest first; the last wraps new seeds."""
        ...

    def create_next(self) -> str:
        """Make the next KEK (checked like at start-up); its label."""
        ...

    def rewrap(self, seed: SeedRef, to_kek: str) -> SeedRef:
        """`seed` wrapped under `to_kek`, inside the HSM; DeviceRefused if its KEK forbids it."""
        ...

    def destroy(self, label: str) -> None: ...


class PepperRing(Protocol):
    """The HSM's pepper key generations, for pepper rotation."""

    def labels(self) -> list[str]:
        """Oldest first; the last MACs everything new."""
        ...

    def create_next(self) -> str:
        """Make the next pepper key; its label. Older ones stay, so their MACs stay checkable."""
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

    def migrate(self) -> Sequence[int]:
        """Apply the pending migrations; return their versions (all of them: a new database)."""
        ...

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

    def update_token_succeeded(self, token: Token, success: Success) -> bool:
        """`update_token` and, in the same transaction, only if the token was written, the
        lockout's `success` (as `origin_succeeded` writes it for an origin; for none, the
        reservation deleted as `settle_origin_attempt` without a failure does): a code
        accepted and its lockout settled in one commit."""
        ...

    def list_tokens(self, query: TokenQuery, after: PageAfter | None, limit: int) -> list[Token]:
        """Up to `limit` tokens matching `query`, ordered by (created_at, serial), each after
        `after` in that order (None: from the first)."""
        ...

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

    def failure_bucket_full_at(self, caller: str) -> int:
        """When `caller`'s failed-check bucket is full again, in milliseconds since the epoch
        (0: it never lost a token). One read, no write."""
        ...

    def drain_failure_bucket(self, caller: str, now_ms: int, cost_ms: int, max_debt_ms: int) -> int:
        """Charge `caller` one failed check: the bucket is full again at
        min(max(full_at, now_ms) + cost_ms, now_ms + max_debt_ms). One statement on one row, so
        the charges of concurrent writers (replicas) all add up. Returns the new full_at."""
        ...

    # lockout per origin (see `otphsm.core.lockout`)
    def origin_standing(self, subject: str, origin: str, reserved_since: int = 0) -> Standing:
        """The origin's failure counter on `subject` (version 0 if none is stored), when the
        origin last logged in there (only for a non-empty origin), the times of the subject's
        unknown-origin failures, and the reservations made at or after `reserved_since` (this
        origin's, and those charging the budget); one consistent read."""
        ...

    def reserve_origin_attempt(
        self,
        subject: str,
        origin: str,
        reserved_since: int,
        now: int,
        admit: Callable[[Standing], Reservation | Refusal],
    ) -> Reservation | Refusal:
        """One transaction, serialised per subject across writers: the subject's reservations
        made before `reserved_since` are deleted, the origin's standing is read and handed to
        `admit`; a `Reservation` is stored (made at `now`), a `Refusal` writes nothing else.
        `admit` may run again if the engine retries the transaction: no side effects."""
        ...

    def settle_origin_attempt(
        self,
        subject: str,
        origin: str,
        reservation_id: str,
        budget: RateLimit,
        count: Callable[[Standing], Failure] | None,
    ) -> Failure | None:
        """One transaction, serialised per subject: the reservation is deleted (if still
        there) and, for a failure (`count`), the failure is counted over the standing read
        then: the origin's counter written, and the failure's time added to the subject's
        budget if it charges it and fewer than `limit` fall within `window_seconds` (older ones
        are dropped; the subject's counters idle for that window and not locked are deleted).
        Returns what `count` decided."""
        ...

    def origin_succeeded(
        self,
        subject: str,
        origin: str,
        now: int,
        forget_before: int,
        reservation_id: str | None = None,
    ) -> None:
        """One transaction: the origin is known on `subject` as of `now`, its failure counter
        there is deleted, the subject's origins last seen before `forget_before` are
        forgotten, and the success's own reservation is deleted."""
        ...

    def clear_origin_lockout(self, subjects: Sequence[str]) -> None:
        """One transaction: every origin's failure counter and the budget of each subject go
        (an operator's unlock); known origins and attempts in flight stay. Serialised per
        subject with the other lockout writers: a failure being counted is waited for."""
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

    # RADIUS front end (shared by replicas)
    def insert_radius_state(self, state: RadiusState) -> None:
        """Keep a challenge's State until it is answered or expires."""
        ...

    def take_radius_state(self, state: bytes, client: str, now: int) -> RadiusState | None:
        """Remove and return the state `client` was given, unless unknown or expired (None):
        an answer uses it up, whatever the answer was."""
        ...

    def claim_radius_answer(
        self, request_key: str, now: int, expires_at: int
    ) -> tuple[bool, bytes | None]:
        """(True, None): the request is new and now claimed until `expires_at`; (False, answer):
        it was seen before, with its answer, or None while the first copy is being handled.
        One transaction, so of two replicas receiving copies at once one claims it."""
        ...

    def save_radius_answer(self, request_key: str, answer: bytes) -> None: ...

    def drop_radius_answer(self, request_key: str) -> None:
        """Forget a claim whose handling failed, so a retransmission is handled afresh."""
        ...

    def purge_radius(self, now: int) -> int:
        """Delete expired states and answers; how many rows."""
        ...

    # audit
    def seeds_wrapped_under(
        self, holder: SeedHolder, kek: str, *, unlabelled: bool, after: str, limit: int
    ) -> list[StoredSeed]:
        """Up to `limit` wrapped seeds under KEK `kek` (and, if `unlabelled`, those stored
        with no KEK label), with serials after `after`, in serial order."""
        ...

    def rewrap_seed(self, stored: StoredSeed, new: SeedRef) -> bool:
        """Store `new` (bumping the version) only if the row still holds `stored.seed` under
        the same KEK; False otherwise."""
        ...

    def append_audit(self, build: Callable[[AuditEntry | None], AuditEntry]) -> AuditEntry:
        """Serialised across writers: `build(last_entry)` makes the next entry, which is stored
        with seq = last.seq + 1 (1 for the first) in the same transaction."""
        ...

    def audit_entries(self) -> Iterator[AuditEntry]: ...

    def audit_page(self, from_seq: int, since: int, limit: int) -> list[AuditEntry]:
        """Up to `limit` entries with seq >= `from_seq` and at >= `since`, in seq order."""
        ...

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of every table but the failed-check buckets (which every failed check
        drains), ordered: tests compare it to show nothing changed."""
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
