"""The `Store` port on any SQL engine: every method is one transaction of shared statements,
or a statement of the caller's unit of work (`transaction()`).

An `Engine` owns connections and the dialect; this class owns the semantics. The two engines
therefore differ only in how they connect, begin, lock and translate driver errors.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol, TypeVar

from otphsm.core.lockout import (
    Failure,
    Refusal,
    Reservation,
    Standing,
    Success,
)
from otphsm.core.ports import Conflict
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
from otphsm.core.seeds import SeedHolder, SeedRef, SeedStorage, StoredSeed
from otphsm.core.tokens import PageAfter, Token, TokenQuery
from otphsm.store import sql, sql_listing, sql_lockout, sql_radius, sql_rewrap
from otphsm.store.errors import StoreUnavailable
from otphsm.store.rows import Row
from otphsm.store.rows_grid import rate_events, rate_events_text
from otphsm.store.schema import APPLIED_MIGRATIONS, LATEST_VERSION, apply_migrations
from otphsm.store.sql import Dialect, Table, Transaction

T = TypeVar("T")
R = TypeVar("R")

AUDIT_PAGE_SIZE = 500


class Engine(Protocol):
    dialect: Dialect

    def run(self, work: Callable[[Transaction], T], *, write: bool, durable: bool = True) -> T:
        """Run `work` in one transaction and commit it. Writers are serialised by the engine's
        write lock or row locks; a unique-key violation becomes `Conflict`, a lost or busy
        database `StoreUnavailable`. `durable=False`: the transaction may be lost in a crash
        of the database (its commit need not reach the disk before it returns); what other
        sessions see of it is unchanged."""
        ...

    def transaction(self) -> AbstractContextManager[Transaction]:
        """A writing transaction held open across the caller's statements: committed when the
        block ends, rolled back if it raises; never retried."""
        ...

    def fetch_one(self, statement: str, params: Row) -> Row | None:
        """One read-only statement, which is atomic on its own: no explicit transaction."""
        ...

    def write_one(self, statement: str, params: Row) -> int:
        """One writing statement, committed (durably) before it returns; the rows changed."""
        ...

    def ping(self) -> int:
        """The schema version; `StoreUnavailable` on any failure at all."""
        ...

    def close(self) -> None: ...


class SqlStore:
    """The `Store` port (see `otphsm.core.ports.Store` for the contract) over one `Engine`."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._in_unit_of_work = threading.local()

    @property
    def dialect(self) -> Dialect:
        return self._engine.dialect

    def migrate(self) -> list[int]:
        """Apply pending migrations (their versions returned); a no-op when the schema is
        current."""
        return self._outside_unit_of_work().run(
            lambda tx: apply_migrations(tx, self.dialect), write=True
        )

    def applied_migrations(self) -> list[tuple[int, str]]:
        """(version, description) of every migration applied, oldest first."""
        found = self._outside_unit_of_work().run(
            lambda tx: tx.fetch_all(APPLIED_MIGRATIONS), write=False
        )
        return [(int(version), str(description)) for version, description in found]

    def ping(self) -> None:
        version = self._engine.ping()
        if version < LATEST_VERSION:
            raise StoreUnavailable(
                f"the database schema is at version {version}, this otphsm needs "
                f"{LATEST_VERSION}: run the migrations"
            )

    def close(self) -> None:
        self._engine.close()

    @contextmanager
    def transaction(self) -> Iterator[SqlStore]:
        """A unit of work: the store yielded runs every method in one transaction, committed
        once when the block ends (nothing of it if the block raises). Inside it, nested
        `transaction()` calls join it."""
        with self._outside_unit_of_work().transaction() as tx:
            self._in_unit_of_work.open = True
            try:
                yield _JoinedStore(_JoinedEngine(tx, self.dialect))
            finally:
                self._in_unit_of_work.open = False

    def _outside_unit_of_work(self) -> Engine:
        """The engine, unless this thread has a unit of work open: a write through this store
        then would wait for the unit of work's own lock (a programming error: use the store
        the unit of work yielded)."""
        if getattr(self._in_unit_of_work, "open", False):
            raise RuntimeError("a unit of work is open in this thread: use the store it yielded")
        return self._engine

    # citizens
    def upsert_citizen(self, citizen: Citizen) -> None:
        """Insert, or refresh every field but `enrolled_at`, which keeps the first enrolment."""
        self._write(sql.UPSERT_CITIZEN, sql.CITIZENS.to_row(citizen))

    def get_citizen(self, codice_fiscale: str) -> Citizen | None:
        return self._get(sql.CITIZENS, codice_fiscale)

    # tokens
    def insert_token(self, token: Token) -> None:
        self._insert(sql.TOKENS, token, f"a token with serial {token.serial} already exists")

    def get_token(self, serial: str) -> Token | None:
        return self._get(sql.TOKENS, serial)

    def tokens_of(self, codice_fiscale: str) -> list[Token]:
        return self._list(sql.TOKENS, sql.TOKENS_OF, codice_fiscale)

    def update_token(self, token: Token) -> bool:
        return self._versioned_update(sql.TOKENS, token)

    def update_token_succeeded(self, token: Token, success: Success) -> bool:
        # The token's row is locked before the subject's lockout lock, as an unlock does
        # (`lifecycle`: the token, then `clear_origin_lockout`): no deadlock between them.
        def write(tx: Transaction) -> bool:
            params = sql.TOKENS.versioned_update_params(token)
            if tx.execute(sql.TOKENS.versioned_update, params) != 1:
                return False  # nothing written: the transaction commits nothing
            sql_lockout.succeeded(tx, self.dialect, success)
            return True

        return self._outside_unit_of_work().run(write, write=True)

    def list_tokens(self, query: TokenQuery, after: PageAfter | None, limit: int) -> list[Token]:
        statement, params = sql_listing.tokens(query, after, limit)
        found = self._outside_unit_of_work().run(
            lambda tx: tx.fetch_all(statement, params), write=False
        )
        return [sql.TOKENS.from_row(row) for row in found]

    def update_tokens(self, tokens: Sequence[Token]) -> bool:
        def write_all(tx: Transaction) -> None:
            for token in tokens:
                params = sql.TOKENS.versioned_update_params(token)
                if tx.execute(sql.TOKENS.versioned_update, params) != 1:
                    raise _Refused(0)

        try:
            self._outside_unit_of_work().run(write_all, write=True)
        except _Refused:
            return False
        return True

    def resident_seed_ids(self) -> set[bytes]:
        found = self._outside_unit_of_work().run(
            lambda tx: tx.fetch_all(sql.RESIDENT_SEED_IDS), write=False
        )
        return {bytes(row[0]) for row in found}

    # single-use records
    def insert_challenge(self, challenge: Challenge) -> None:
        self._insert(sql.CHALLENGES, challenge, f"challenge {challenge.challenge_id} exists")

    def consume_challenge(self, challenge_id: str, now: int) -> Challenge | None:
        return self._consume(sql.CHALLENGES, sql.CONSUME_CHALLENGE, challenge_id, now)

    def get_challenge(self, challenge_id: str) -> Challenge | None:
        return self._get(sql.CHALLENGES, challenge_id)

    def insert_authorisation(self, authorisation: Authorisation) -> None:
        self._insert(
            sql.AUTHORISATIONS,
            authorisation,
            f"authorisation {authorisation.authorisation_id} exists",
        )

    def consume_authorisation(self, authorisation_id: str, now: int) -> Authorisation | None:
        return self._consume(sql.AUTHORISATIONS, sql.CONSUME_AUTHORISATION, authorisation_id, now)

    def get_authorisation(self, authorisation_id: str) -> Authorisation | None:
        return self._get(sql.AUTHORISATIONS, authorisation_id)

    def insert_activation(self, activation: Activation) -> None:
        self._insert(sql.ACTIVATIONS, activation, f"activation {activation.activation_id} exists")

    def find_activation_by_mac(self, secret_mac: bytes) -> Activation | None:
        """The newest activation with this MAC; an empty MAC (no secret) never matches."""
        if not secret_mac:
            return None
        row = self._outside_unit_of_work().run(
            lambda tx: tx.fetch_one(sql.ACTIVATION_BY_MAC, (secret_mac,)), write=False
        )
        return sql.ACTIVATIONS.from_row(row) if row else None

    def activations_of(self, codice_fiscale: str) -> list[Activation]:
        return self._list(sql.ACTIVATIONS, sql.ACTIVATIONS_OF, codice_fiscale)

    def get_activation(self, activation_id: str) -> Activation | None:
        return self._get(sql.ACTIVATIONS, activation_id)

    def update_activation(self, activation: Activation) -> bool:
        return self._versioned_update(sql.ACTIVATIONS, activation)

    def insert_oob_code(self, code: OobCode) -> None:
        def supersede_and_insert(tx: Transaction) -> None:
            tx.execute(sql.SUPERSEDE_OOB_CODES, (code.codice_fiscale, code.purpose.value))
            tx.execute(sql.OOB_CODES.insert, sql.OOB_CODES.to_row(code))

        try:
            self._outside_unit_of_work().run(supersede_and_insert, write=True)
        except Conflict as exc:
            raise Conflict(f"out-of-band code {code.oob_id} exists") from exc

    def current_oob_code(self, codice_fiscale: str, purpose: OobPurpose) -> OobCode | None:
        row = self._outside_unit_of_work().run(
            lambda tx: tx.fetch_one(sql.CURRENT_OOB_CODE, (codice_fiscale, purpose.value)),
            write=False,
        )
        return sql.OOB_CODES.from_row(row) if row else None

    def update_oob_code(self, code: OobCode) -> bool:
        return self._versioned_update(sql.OOB_CODES, code)

    # quotas
    def take_rate_slots(self, limits: Sequence[RateLimit], now: int) -> int:
        """Buckets are locked in name order (no deadlock between two multi-bucket takers); a
        refusal rolls the transaction back, so it leaves no trace."""

        def take(tx: Transaction) -> None:
            updates: list[tuple[str, str]] = []
            waits: list[int] = []
            for limit in sorted((lim for lim in limits if lim.limit > 0), key=_bucket):
                tx.execute(sql.LOCK_RATE_BUCKET, (limit.bucket,))
                row = tx.fetch_one(sql.RATE_BUCKET_EVENTS, (limit.bucket,))
                since = now - limit.window_seconds
                recent = sorted(t for t in rate_events(row[0] if row else "") if t > since)
                if len(recent) >= limit.limit:
                    waits.append(max(1, recent[-limit.limit] + limit.window_seconds - now))
                else:
                    updates.append((rate_events_text([*recent, now]), limit.bucket))
            if waits:
                raise _Refused(max(waits))
            for update in updates:
                tx.execute(sql.SET_RATE_BUCKET_EVENTS, update)

        try:
            self._outside_unit_of_work().run(take, write=True)
        except _Refused as refused:
            return refused.retry_after
        return 0

    def failure_bucket_full_at(self, caller: str) -> int:
        row = self._engine.fetch_one(sql.FAILURE_BUCKET_FULL_AT, (caller,))
        return int(row[0]) if row else 0

    def drain_failure_bucket(self, caller: str, now_ms: int, cost_ms: int, max_debt_ms: int) -> int:
        cap = now_ms + max_debt_ms
        params = (caller, now_ms + cost_ms, now_ms, cost_ms, cap, cap, cost_ms)
        row = self._outside_unit_of_work().run(
            lambda tx: tx.fetch_one(sql.DRAIN_FAILURE_BUCKET, params), write=True
        )
        if row is None:
            raise RuntimeError("the failed-check bucket upsert returned no row")
        return int(row[0])

    # lockout per origin
    def origin_standing(self, subject: str, origin: str, reserved_since: int = 0) -> Standing:
        return self._outside_unit_of_work().run(
            lambda tx: sql_lockout.standing(tx, subject, origin, reserved_since), write=False
        )

    def reserve_origin_attempt(
        self,
        subject: str,
        origin: str,
        reserved_since: int,
        now: int,
        admit: Callable[[Standing], Reservation | Refusal],
    ) -> Reservation | Refusal:
        def reserve(tx: Transaction) -> Reservation | Refusal:
            return sql_lockout.reserve(
                tx, self.dialect, subject, origin, reserved_since, now, admit
            )

        # An attempt in flight, ignored after RESERVATION_SECONDS anyway: lost in a crash of
        # the database, it only lets one more attempt through. The outcome's commit is durable.
        return self._outside_unit_of_work().run(reserve, write=True, durable=False)

    def settle_origin_attempt(
        self,
        subject: str,
        origin: str,
        reservation_id: str,
        budget: RateLimit,
        count: Callable[[Standing], Failure] | None,
    ) -> Failure | None:
        def settle(tx: Transaction) -> Failure | None:
            return sql_lockout.settle(
                tx, self.dialect, subject, origin, reservation_id, budget, count
            )

        return self._outside_unit_of_work().run(settle, write=True)

    def origin_succeeded(
        self,
        subject: str,
        origin: str,
        now: int,
        forget_before: int,
        reservation_id: str | None = None,
    ) -> None:
        success = Success(subject, origin, reservation_id, now, forget_before)
        self._outside_unit_of_work().run(
            lambda tx: sql_lockout.succeeded(tx, self.dialect, success), write=True
        )

    def clear_origin_lockout(self, subjects: Sequence[str]) -> None:
        self._outside_unit_of_work().run(
            lambda tx: sql_lockout.clear(tx, self.dialect, subjects), write=True
        )

    # Security Cards
    def insert_grid_card(self, card: GridCard) -> list[GridCard]:
        def revoke_and_insert(tx: Transaction) -> list[GridCard]:
            found = tx.fetch_all(sql.ACTIVE_GRID_CARDS_OF, (card.codice_fiscale,))
            tx.execute(sql.REVOKE_ACTIVE_GRID_CARDS, (card.created_at, card.codice_fiscale))
            tx.execute(sql.GRID_CARDS.insert, sql.GRID_CARDS.to_row(card))
            return [sql.GRID_CARDS.from_row(row) for row in found]

        try:
            return self._outside_unit_of_work().run(revoke_and_insert, write=True)
        except Conflict as exc:
            raise Conflict(f"a Security Card with serial {card.serial} already exists") from exc

    def get_grid_card(self, serial: str) -> GridCard | None:
        return self._get(sql.GRID_CARDS, serial)

    def grid_cards_of(self, codice_fiscale: str) -> list[GridCard]:
        return self._list(sql.GRID_CARDS, sql.GRID_CARDS_OF, codice_fiscale)

    def update_grid_card(self, card: GridCard) -> bool:
        return self._versioned_update(sql.GRID_CARDS, card)

    # RADIUS (see `otphsm.store.sql_radius`)
    def insert_radius_state(self, state: RadiusState) -> None:
        sql_radius.insert_state(self._outside_unit_of_work(), state)

    def take_radius_state(self, state: bytes, client: str, now: int) -> RadiusState | None:
        return sql_radius.take_state(self._outside_unit_of_work(), state, client, now)

    def claim_radius_answer(
        self, request_key: str, now: int, expires_at: int
    ) -> tuple[bool, bytes | None]:
        engine = self._outside_unit_of_work()
        return sql_radius.claim_answer(engine, request_key, now, expires_at)

    def save_radius_answer(self, request_key: str, answer: bytes) -> None:
        sql_radius.save_answer(self._outside_unit_of_work(), request_key, answer)

    def drop_radius_answer(self, request_key: str) -> None:
        sql_radius.drop_answer(self._outside_unit_of_work(), request_key)

    def purge_radius(self, now: int) -> int:
        return sql_radius.purge(self._outside_unit_of_work(), now)

    # KEK rotation
    def seeds_wrapped_under(
        self, holder: SeedHolder, kek: str, *, unlabelled: bool, after: str, limit: int
    ) -> list[StoredSeed]:
        params = (kek, int(unlabelled), after, limit)
        found = self._outside_unit_of_work().run(
            lambda tx: tx.fetch_all(sql_rewrap.wrapped_under(holder), params), write=False
        )
        return [
            StoredSeed(holder, serial, SeedRef(SeedStorage.WRAPPED, bytes(data), label))
            for serial, data, label in found
        ]

    def rewrap_seed(self, stored: StoredSeed, new: SeedRef) -> bool:
        old = stored.seed
        params = (new.data, new.kek, stored.serial, old.data, old.kek or "", int(old.kek is None))
        return self._write(sql_rewrap.rewrap(stored.holder), params) == 1

    # audit
    def append_audit(self, build: Callable[[AuditEntry | None], AuditEntry]) -> AuditEntry:
        """`build` runs inside the locked transaction and may run again if the engine retries
        it (a deadlock or a connection lost before commit), so it must not have side effects
        beyond computing the entry. The entry it returns must carry seq = last.seq + 1."""

        def append(tx: Transaction) -> AuditEntry:
            if self.dialect.audit_lock:
                tx.execute(self.dialect.audit_lock)
            row = tx.fetch_one(sql.LAST_AUDIT_ENTRY)
            last = sql.AUDIT_LOG.from_row(row) if row else None
            entry = build(last)
            expected_seq = last.seq + 1 if last else 1
            if entry.seq != expected_seq:
                raise ValueError(
                    f"the audit entry built after seq {expected_seq - 1} must have seq "
                    f"{expected_seq}, not {entry.seq}"
                )
            tx.execute(sql.AUDIT_LOG.insert, sql.AUDIT_LOG.to_row(entry))
            return entry

        return self._outside_unit_of_work().run(append, write=True)

    def audit_entries(self) -> Iterator[AuditEntry]:
        """Every entry in seq order, read in pages (the log is append-only)."""
        after = 0
        while True:
            page = self._audit_page(after)
            for row in page:
                entry = sql.AUDIT_LOG.from_row(row)
                after = entry.seq
                yield entry
            if len(page) < AUDIT_PAGE_SIZE:
                return

    def audit_page(self, from_seq: int, since: int, limit: int) -> list[AuditEntry]:
        found = self._outside_unit_of_work().run(
            lambda tx: tx.fetch_all(sql_listing.AUDIT_FROM, (from_seq, since, limit)), write=False
        )
        return [sql.AUDIT_LOG.from_row(row) for row in found]

    def _audit_page(self, after_seq: int) -> list[Row]:
        return self._outside_unit_of_work().run(
            lambda tx: tx.fetch_all(sql.AUDIT_PAGE, (after_seq, AUDIT_PAGE_SIZE)), write=False
        )

    def snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        def read_all(tx: Transaction) -> dict[str, list[tuple[Any, ...]]]:
            if self.dialect.consistent_read:
                tx.execute(self.dialect.consistent_read)
            return {
                table.name: [_plain(row) for row in tx.fetch_all(table.snapshot)]
                for table in sql.DATA_TABLES
            }

        return self._outside_unit_of_work().run(read_all, write=False)

    # shared shapes
    def _write(self, statement: str, params: Row) -> int:
        return self._outside_unit_of_work().write_one(statement, params)

    def _insert(self, table: Table[R], record: R, duplicate_message: str) -> None:
        try:
            self._write(table.insert, table.to_row(record))
        except Conflict as exc:
            raise Conflict(duplicate_message) from exc

    def _get(self, table: Table[R], key: str) -> R | None:
        row = self._outside_unit_of_work().fetch_one(table.select_by_key, (key,))
        return table.from_row(row) if row else None

    def _list(self, table: Table[R], statement: str, codice_fiscale: str) -> list[R]:
        found = self._outside_unit_of_work().run(
            lambda tx: tx.fetch_all(statement, (codice_fiscale,)), write=False
        )
        return [table.from_row(row) for row in found]

    def _versioned_update(self, table: Table[R], record: R) -> bool:
        params = table.versioned_update_params(record)
        return self._write(table.versioned_update, params) == 1

    def _consume(self, table: Table[R], statement: str, key: str, now: int) -> R | None:
        row = self._outside_unit_of_work().run(
            lambda tx: tx.fetch_one(statement, (now, key, now)), write=True
        )
        return table.from_row(row) if row else None


class _JoinedEngine:
    """An engine whose every call is a statement of one open transaction."""

    def __init__(self, tx: Transaction, dialect: Dialect) -> None:
        self._tx = tx
        self.dialect = dialect

    def run(self, work: Callable[[Transaction], T], *, write: bool, durable: bool = True) -> T:
        """A method that writes several statements does so all or nothing within the unit of
        work too: under a savepoint, rolled back to if it raises. The unit of work's commit is
        durable, whatever `durable` says."""
        if not write:
            return work(self._tx)
        self._tx.execute("SAVEPOINT store_method")
        try:
            result = work(self._tx)
        except BaseException:
            with contextlib.suppress(Exception):  # the original error says more
                self._tx.execute("ROLLBACK TO SAVEPOINT store_method")
                self._tx.execute("RELEASE SAVEPOINT store_method")
            raise
        self._tx.execute("RELEASE SAVEPOINT store_method")
        return result

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        yield self._tx

    def fetch_one(self, statement: str, params: Row) -> Row | None:
        return self._tx.fetch_one(statement, params)

    def write_one(self, statement: str, params: Row) -> int:
        """Under a savepoint too: a refused statement (`Conflict`) leaves the unit of work
        usable (PostgreSQL would otherwise abort it), for a caller that decides again."""
        return self.run(lambda tx: tx.execute(statement, params), write=True)

    def ping(self) -> int:
        raise TypeError("ping() is not part of a unit of work")

    def close(self) -> None:
        raise TypeError("close() is not part of a unit of work: end the transaction's block")


class _JoinedStore(SqlStore):
    """The store a unit of work yields. A conditional write that matches nothing (False), a
    refused rate slot or a `Conflict` caught by the caller does not end the transaction: the
    caller decides. An error it lets through does."""

    @contextmanager
    def transaction(self) -> Iterator[SqlStore]:
        yield self


class _Refused(Exception):
    """Ends a transaction without writing (the engine rolls back)."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"retry after {retry_after} s")
        self.retry_after = retry_after


def _bucket(limit: RateLimit) -> str:
    return limit.bucket


def _plain(row: Row) -> tuple[Any, ...]:
    return tuple(bytes(value) if isinstance(value, memoryview) else value for value in row)
