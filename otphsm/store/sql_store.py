"""The `Store` port on any SQL engine: every method is one transaction of shared statements,
or a statement of the caller's unit of work (`transaction()`).

An `Engine` owns connections and the dialect; this class owns the semantics. The two engines
therefore differ only in how they connect, begin, lock and translate driver errors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, TypeVar

from otphsm.core.lockout import Success
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
)
from otphsm.core.seeds import SeedHolder, SeedRef, SeedStorage, StoredSeed
from otphsm.core.tokens import PageAfter, Token, TokenQuery
from otphsm.store import sql, sql_listing, sql_lockout, sql_radius, sql_rewrap
from otphsm.store.errors import StoreUnavailable
from otphsm.store.rows import Row
from otphsm.store.schema import APPLIED_MIGRATIONS, LATEST_VERSION, apply_migrations
from otphsm.store.sql import Table, Transaction
from otphsm.store.sql_engine import JoinedEngine, Refused
from otphsm.store.sql_guards import GuardRows

R = TypeVar("R")

AUDIT_PAGE_SIZE = 500


class SqlStore(GuardRows):
    """The `Store` port (see `otphsm.core.ports.Store` for the contract) over one `Engine`;
    the rows that guard code checks (quotas, failed-check buckets, the lockout per origin) are
    `GuardRows`'."""

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
                yield _JoinedStore(JoinedEngine(tx, self.dialect))
            finally:
                self._in_unit_of_work.open = False

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
                    raise Refused(0)

        try:
            self._outside_unit_of_work().run(write_all, write=True)
        except Refused:
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


class _JoinedStore(SqlStore):
    """The store a unit of work yields. A conditional write that matches nothing (False), a
    refused rate slot or a `Conflict` caught by the caller does not end the transaction: the
    caller decides. An error it lets through does."""

    @contextmanager
    def transaction(self) -> Iterator[SqlStore]:
        yield self


def _plain(row: Row) -> tuple[Any, ...]:
    return tuple(bytes(value) if isinstance(value, memoryview) else value for value in row)
