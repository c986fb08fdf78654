"""The SQL both engines run, written once with `?` placeholders, and what differs by dialect.

Statements are built from the column tuples in `rows`, so a column is named in one place.
Engines render `?` to their placeholder and run everything through a `Transaction`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from otphsm.store import rows, rows_grid, rows_lockout
from otphsm.store.rows import Row

R = TypeVar("R")


@dataclass(frozen=True)
class Dialect:
    name: str
    placeholder: str
    column_types: Mapping[str, str]
    """Logical column type (`blob`, `bigint`, …) → this engine's type."""
    migration_lock: str | None
    """Taken first in the migration transaction, so concurrent `migrate()` calls queue."""
    audit_lock: str | None
    """Taken before reading the chain head, so appends from any process queue."""
    consistent_read: str | None
    """Makes a multi-statement read see one snapshot (SQLite's read transactions already do)."""
    table_exists: str
    """One row if the table named by the parameter exists where unqualified names resolve."""
    relaxed_commit: str | None = None
    """Taken first in a transaction whose loss in a database crash is harmless (a cache, an
    attempt in flight): its commit does not wait for the disk."""
    writing_ctes: bool = False
    """INSERT, UPDATE and DELETE inside WITH: writes queued together can go as one statement
    (each statement costs a message to the server and back on PostgreSQL)."""
    lockout_lock: str | None = None
    """Taken first by every lockout writer, the subject as parameter, until the commit: a
    subject's writers go in turn across processes. None where every writing transaction holds
    the database's one write lock from its start (SQLite's BEGIN IMMEDIATE)."""

    def render(self, statement: str) -> str:
        if self.placeholder == "?":
            return statement
        return statement.replace("?", self.placeholder)


# Writers on SQLite begin with BEGIN IMMEDIATE, which already serialises them: no locks.
SQLITE = Dialect(
    name="sqlite",
    placeholder="?",
    column_types={
        "text": "TEXT",
        "int": "INTEGER",
        "bigint": "INTEGER",
        "blob": "BLOB",
        "bool": "INTEGER",
        "json": "TEXT",
    },
    migration_lock=None,
    audit_lock=None,
    consistent_read=None,
    table_exists="SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
)

MIGRATION_LOCK_KEY = int.from_bytes(b"otphsm\x00\x01", "big")
"""The advisory lock `migrate()` holds on PostgreSQL ("otphsm", lock number 1)."""
LOCKOUT_LOCK_CLASS = int.from_bytes(b"otpl", "big")
"""The first key of a subject's lockout lock on PostgreSQL, the second the subject's hash: a
pair of int4 keys, a lock space apart from `MIGRATION_LOCK_KEY`'s one bigint. Two subjects
whose hashes collide only have their writers go in turn together."""

POSTGRES = Dialect(
    name="postgresql",
    placeholder="%s",
    column_types={
        "text": "TEXT",
        "int": "INTEGER",
        "bigint": "BIGINT",
        "blob": "BYTEA",
        "bool": "BOOLEAN",
        "json": "TEXT",
    },
    migration_lock=f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})",
    audit_lock="LOCK TABLE audit_log IN EXCLUSIVE MODE",
    consistent_read="SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY",
    table_exists="SELECT 1 WHERE to_regclass(?) IS NOT NULL",
    relaxed_commit="SET LOCAL synchronous_commit = off",
    writing_ctes=True,
    lockout_lock=f"SELECT pg_advisory_xact_lock({LOCKOUT_LOCK_CLASS}, hashtext(?))",
)


class Transaction(Protocol):
    """One open transaction on one connection; statements use `?` placeholders."""

    def execute(self, statement: str, params: Sequence[object] = ()) -> int:
        """Run a statement; return the number of rows it changed."""
        ...

    def queue(self, statement: str, params: Sequence[object] = ()) -> None:
        """Run a statement whose result is not read. PostgreSQL sends it with the next
        statement whose result is read, or with the COMMIT (one round trip for them all): its
        error, if any, surfaces there. In order with the others either way."""
        ...

    def fetch_one(self, statement: str, params: Sequence[object] = ()) -> Row | None: ...

    def fetch_all(self, statement: str, params: Sequence[object] = ()) -> list[Row]: ...


@dataclass(frozen=True)
class Table(Generic[R]):
    name: str
    columns: tuple[str, ...]
    order_by: str
    """The columns that order this table in `snapshot()`: a unique key, so the order is total."""
    to_row: Callable[[R], Row]
    from_row: Callable[[Sequence[Any]], R]

    @functools.cached_property
    def key(self) -> str:
        return self.columns[0]

    @functools.cached_property
    def select(self) -> str:
        return f"SELECT {', '.join(self.columns)} FROM {self.name}"  # noqa: S608

    @functools.cached_property
    def insert(self) -> str:
        marks = ", ".join("?" for _ in self.columns)
        return f"INSERT INTO {self.name} ({', '.join(self.columns)}) VALUES ({marks})"  # noqa: S608

    @functools.cached_property
    def select_by_key(self) -> str:
        return f"{self.select} WHERE {self.key} = ?"

    @functools.cached_property
    def snapshot(self) -> str:
        return f"{self.select} ORDER BY {self.order_by}"

    @functools.cached_property
    def versioned_update(self) -> str:
        """Write every column but the key, only if `version` is unchanged, and bump it."""
        assignments = ", ".join(f"{column} = ?" for column in self._updatable)
        return (
            f"UPDATE {self.name} SET {assignments}, version = version + 1 "  # noqa: S608
            f"WHERE {self.key} = ? AND version = ?"
        )

    def versioned_update_params(self, record: R) -> Row:
        row = self.to_row(record)
        return tuple(row[index] for index in self._update_param_indexes)

    @functools.cached_property
    def _update_param_indexes(self) -> tuple[int, ...]:
        """Where `versioned_update`'s parameters sit in a row: the updatable columns, then
        the key and the version."""
        order = (*self._updatable, self.key, "version")
        return tuple(self.columns.index(column) for column in order)

    @functools.cached_property
    def _updatable(self) -> tuple[str, ...]:
        return tuple(c for c in self.columns if c not in (self.key, "version"))


CITIZENS = Table(
    "citizens",
    rows.CITIZEN_COLUMNS,
    "codice_fiscale",
    rows.citizen_row,
    rows.citizen_from_row,
)
TOKENS = Table("tokens", rows.TOKEN_COLUMNS, "serial", rows.token_row, rows.token_from_row)
CHALLENGES = Table(
    "challenges",
    rows.CHALLENGE_COLUMNS,
    "challenge_id",
    rows.challenge_row,
    rows.challenge_from_row,
)
AUTHORISATIONS = Table(
    "authorisations",
    rows.AUTHORISATION_COLUMNS,
    "authorisation_id",
    rows.authorisation_row,
    rows.authorisation_from_row,
)
ACTIVATIONS = Table(
    "activations",
    rows.ACTIVATION_COLUMNS,
    "activation_id",
    rows.activation_row,
    rows.activation_from_row,
)
OOB_CODES = Table(
    "oob_codes",
    rows.OOB_CODE_COLUMNS,
    "oob_id",
    rows.oob_code_row,
    rows.oob_code_from_row,
)
AUDIT_LOG = Table("audit_log", rows.AUDIT_COLUMNS, "seq", rows.audit_row, rows.audit_from_row)
GRID_CARDS = Table(
    "grid_cards",
    rows_grid.GRID_CARD_COLUMNS,
    "serial",
    rows_grid.grid_card_row,
    rows_grid.grid_card_from_row,
)
RATE_LIMITS: Table[tuple[str, str]] = Table(
    "rate_limits", ("bucket", "events"), "bucket", lambda pair: pair, lambda row: (row[0], row[1])
)
ORIGIN_ATTEMPTS = Table(
    "origin_attempts",
    rows_lockout.ORIGIN_ATTEMPTS_COLUMNS,
    "subject, origin",
    rows_lockout.origin_attempts_row,
    rows_lockout.origin_attempts_from_row,
)
KNOWN_ORIGINS: Table[tuple[str, str, int]] = Table(
    "known_origins",
    ("subject", "origin", "last_success_at"),
    "subject, origin",
    lambda known: known,
    lambda row: (row[0], row[1], row[2]),
)
ORIGIN_BUDGETS: Table[tuple[str, str]] = Table(
    "origin_budgets", ("subject", "events"), "subject", lambda pair: pair, lambda r: (r[0], r[1])
)
ORIGIN_RESERVATIONS: Table[tuple[str, str, str, int, int]] = Table(
    "origin_reservations",
    ("subject", "id", "origin", "charges_budget", "created_at"),
    "subject, id",
    lambda reservation: reservation,
    lambda r: (r[0], r[1], r[2], r[3], r[4]),
)

DATA_TABLES: tuple[Table[Any], ...] = (
    CITIZENS,
    TOKENS,
    CHALLENGES,
    AUTHORISATIONS,
    ACTIVATIONS,
    OOB_CODES,
    AUDIT_LOG,
    GRID_CARDS,
    RATE_LIMITS,
    ORIGIN_ATTEMPTS,
    KNOWN_ORIGINS,
    ORIGIN_BUDGETS,
    ORIGIN_RESERVATIONS,
)

_CITIZEN_FIELDS_REFRESHED = [
    c for c in rows.CITIZEN_COLUMNS if c not in ("codice_fiscale", "enrolled_at")
]
UPSERT_CITIZEN = f"{CITIZENS.insert} ON CONFLICT (codice_fiscale) DO UPDATE SET " + ", ".join(
    f"{column} = excluded.{column}" for column in _CITIZEN_FIELDS_REFRESHED
)

TOKENS_OF = f"{TOKENS.select} WHERE codice_fiscale = ? ORDER BY created_at, serial"
RESIDENT_SEED_IDS = (
    "SELECT seed_data FROM tokens WHERE seed_storage = 'resident' "
    "UNION SELECT key_data FROM grid_cards WHERE key_storage = 'resident'"
)


def consume(table: Table[Any]) -> str:
    """Mark a single-use record used, only if it is unused and unexpired, returning it."""
    return (
        f"UPDATE {table.name} SET used_at = ? "  # noqa: S608
        f"WHERE {table.key} = ? AND used_at IS NULL AND expires_at > ? "
        f"RETURNING {', '.join(table.columns)}"
    )


CONSUME_CHALLENGE = consume(CHALLENGES)
CONSUME_AUTHORISATION = consume(AUTHORISATIONS)

ACTIVATION_BY_MAC = (
    f"{ACTIVATIONS.select} WHERE secret_mac = ? "
    "ORDER BY created_at DESC, activation_id DESC LIMIT 1"
)
ACTIVATIONS_OF = f"{ACTIVATIONS.select} WHERE codice_fiscale = ? ORDER BY created_at, activation_id"

SUPERSEDE_OOB_CODES = (
    "UPDATE oob_codes SET superseded = TRUE, version = version + 1 "
    "WHERE codice_fiscale = ? AND purpose = ? AND used_at IS NULL AND NOT superseded"
)
# Inserting a code supersedes every other unused one, so among the codes not superseded at
# most one is unused and it is the newest: it wins a tie on created_at.
CURRENT_OOB_CODE = (
    f"{OOB_CODES.select} WHERE codice_fiscale = ? AND purpose = ? AND NOT superseded "
    "ORDER BY created_at DESC, CASE WHEN used_at IS NULL THEN 0 ELSE 1 END, oob_id DESC LIMIT 1"
)

# Creates the bucket if it is new and, on PostgreSQL, locks its row (ON CONFLICT DO UPDATE
# always does) until the transaction ends, so writers of one bucket queue; SQLite writers are
# serialised already.
LOCK_RATE_BUCKET = (
    "INSERT INTO rate_limits (bucket, events) VALUES (?, '') "
    "ON CONFLICT (bucket) DO UPDATE SET events = rate_limits.events"
)
RATE_BUCKET_EVENTS = "SELECT events FROM rate_limits WHERE bucket = ?"
SET_RATE_BUCKET_EVENTS = "UPDATE rate_limits SET events = ? WHERE bucket = ?"

# A failed-check bucket is the instant it is full again (GCRA): one failure pushes it
# `cost` later, from now at the earliest, and never more than `max debt` past now. Params:
# caller, now + cost, now, cost, now + max debt, now + max debt, cost.
FAILURE_BUCKET_FULL_AT = "SELECT full_at_ms FROM failure_buckets WHERE caller = ?"
DRAIN_FAILURE_BUCKET = (
    "INSERT INTO failure_buckets (caller, full_at_ms) VALUES (?, ?) "
    "ON CONFLICT (caller) DO UPDATE SET full_at_ms = CASE "
    "WHEN failure_buckets.full_at_ms <= ? THEN excluded.full_at_ms "
    "WHEN failure_buckets.full_at_ms + ? >= ? THEN ? "
    "ELSE failure_buckets.full_at_ms + ? END "
    "RETURNING full_at_ms"
)

GRID_CARDS_OF = f"{GRID_CARDS.select} WHERE codice_fiscale = ? ORDER BY created_at, serial"
REVOKE_ACTIVE_GRID_CARDS = (
    "UPDATE grid_cards SET state = 'revoked', revoked_at = ?, challenge_first = NULL, "
    "challenge_second = NULL, challenge_expires_at = 0, version = version + 1 "
    "WHERE codice_fiscale = ? AND state = 'active'"
)
ACTIVE_GRID_CARDS_OF = f"{GRID_CARDS.select} WHERE codice_fiscale = ? AND state = 'active'"

LAST_AUDIT_ENTRY = f"{AUDIT_LOG.select} ORDER BY seq DESC LIMIT 1"
AUDIT_PAGE = f"{AUDIT_LOG.select} WHERE seq > ? ORDER BY seq LIMIT ?"

INSERT_ORIGIN_ATTEMPTS = f"{ORIGIN_ATTEMPTS.insert} ON CONFLICT (subject, origin) DO NOTHING"
UPDATE_ORIGIN_ATTEMPTS = (
    "UPDATE origin_attempts SET failures = ?, lock_level = ?, locked_until = ?, updated_at = ?, "
    "version = version + 1 WHERE subject = ? AND origin = ? AND version = ?"
)
PURGE_IDLE_ORIGIN_ATTEMPTS = (
    "DELETE FROM origin_attempts WHERE subject = ? AND updated_at < ? AND locked_until <= ?"
)
DELETE_ORIGIN_ATTEMPTS = "DELETE FROM origin_attempts WHERE subject = ? AND origin = ?"
REMEMBER_ORIGIN = (
    "INSERT INTO known_origins (subject, origin, last_success_at) VALUES (?, ?, ?) "
    "ON CONFLICT (subject, origin) DO UPDATE SET last_success_at = excluded.last_success_at"
)
FORGET_KNOWN_ORIGINS = "DELETE FROM known_origins WHERE subject = ? AND last_success_at < ?"
SET_ORIGIN_BUDGET_EVENTS = (
    "INSERT INTO origin_budgets (subject, events) VALUES (?, ?) "
    "ON CONFLICT (subject) DO UPDATE SET events = excluded.events"
)
# A subject's standing for an origin in one statement: one row per reservation in flight
# (at least one), each with the origin's counter (NULLs if none), its last login, the budget's
# events, when the subject's oldest reservation was made (stale or not). Params: subject,
# origin, subject, subject, subject, origin, subject, reserved since.
STANDING = (
    f"SELECT {', '.join(f'a.{column}' for column in ORIGIN_ATTEMPTS.columns)}, "  # noqa: S608
    "(SELECT last_success_at FROM known_origins k WHERE k.subject = ? AND k.origin = ?), "
    "(SELECT events FROM origin_budgets b WHERE b.subject = ?), "
    "(SELECT MIN(created_at) FROM origin_reservations o WHERE o.subject = ?), "
    "r.id, r.origin, r.charges_budget FROM (SELECT 1 AS one) AS standing "
    "LEFT JOIN origin_attempts a ON a.subject = ? AND a.origin = ? "
    "LEFT JOIN origin_reservations r ON r.subject = ? AND r.created_at >= ?"
)
INSERT_RESERVATION = ORIGIN_RESERVATIONS.insert
DELETE_RESERVATION = "DELETE FROM origin_reservations WHERE subject = ? AND id = ?"
PURGE_STALE_RESERVATIONS = "DELETE FROM origin_reservations WHERE subject = ? AND created_at < ?"
# A success's writes for an origin as one statement where the engine has writing CTEs
# (`Dialect.writing_ctes`): its reservation deleted, the origin's counter deleted, the other
# origins last seen before the cut forgotten (the origin's own row is the upsert's: one
# statement writes a row once), the origin remembered. Params: subject, reservation id,
# subject, origin, subject, forget before, origin, subject, origin, now.
SUCCEEDED = (
    f"WITH reservation AS ({DELETE_RESERVATION}), counter AS ({DELETE_ORIGIN_ATTEMPTS}), "
    f"forgotten AS ({FORGET_KNOWN_ORIGINS} AND origin <> ?) {REMEMBER_ORIGIN}"
)
CLEAR_ORIGIN_ATTEMPTS = "DELETE FROM origin_attempts WHERE subject = ?"
CLEAR_ORIGIN_BUDGET = "DELETE FROM origin_budgets WHERE subject = ?"

# RADIUS (migration 8): challenge states and recent answers, shared by replicas.
INSERT_RADIUS_STATE = (
    "INSERT INTO radius_states (state, client, codice_fiscale, kind, created_at, expires_at) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
TAKE_RADIUS_STATE = (
    "DELETE FROM radius_states WHERE state = ? AND client = ? "
    "RETURNING state, client, codice_fiscale, kind, created_at, expires_at"
)
DROP_EXPIRED_RADIUS_ANSWER = "DELETE FROM radius_answers WHERE request_key = ? AND expires_at <= ?"
CLAIM_RADIUS_ANSWER = (
    "INSERT INTO radius_answers (request_key, answer, expires_at) VALUES (?, NULL, ?) "
    "ON CONFLICT (request_key) DO NOTHING"
)
RADIUS_ANSWER = "SELECT answer FROM radius_answers WHERE request_key = ?"
SAVE_RADIUS_ANSWER = "UPDATE radius_answers SET answer = ? WHERE request_key = ?"
DROP_RADIUS_ANSWER = "DELETE FROM radius_answers WHERE request_key = ?"
PURGE_RADIUS_ANSWERS = "DELETE FROM radius_answers WHERE expires_at <= ?"
PURGE_RADIUS_STATES = "DELETE FROM radius_states WHERE expires_at <= ?"
