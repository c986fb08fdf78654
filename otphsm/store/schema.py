"""Versioned migrations as data: one logical schema, its column types mapped per dialect.

A migration is never edited once released; a change is a new version appended to
`MIGRATIONS`. `apply_migrations` runs inside one transaction that the engine has already
serialised (BEGIN IMMEDIATE on SQLite, an advisory lock on PostgreSQL), so two processes
migrating at once apply each version exactly once.

No foreign keys: each port method is its own transaction and the service decides their order
(and checks references); the port has no error for a dangling reference to map one to.
"""

from __future__ import annotations

from dataclasses import dataclass

from otphsm.core.errors import ConfigurationError
from otphsm.store.sql import POSTGRES, Dialect, Transaction


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]
    """DDL with logical types in braces ({text}, {int}, {bigint}, {blob}, {bool}, {json})."""
    only_on: str | None = None
    """A dialect's name: the statements run on that engine alone (a storage setting the other
    lacks); the version is recorded on every engine, so versions mean the same everywhere."""

    def statements_for(self, dialect: Dialect) -> tuple[str, ...]:
        if self.only_on is not None and self.only_on != dialect.name:
            return ()
        return tuple(ddl(statement, dialect) for statement in self.statements)


SCHEMA_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS schema_version (
    version {int} PRIMARY KEY,
    description {text} NOT NULL
)"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "citizens, tokens, single-use records, audit chain",
        (
            """
            CREATE TABLE citizens (
                codice_fiscale {text} PRIMARY KEY,
                given_name {text} NOT NULL,
                surname {text} NOT NULL,
                birth_date {text} NOT NULL,
                sex {text} NOT NULL,
                birth_place {text} NOT NULL,
                card_id {text} NOT NULL,
                certificate_serial {text} NOT NULL,
                certificate_issuer {text} NOT NULL,
                enrolled_at {bigint} NOT NULL,
                updated_at {bigint} NOT NULL,
                phone_number {text}
            )""",
            """
            CREATE TABLE tokens (
                serial {text} PRIMARY KEY,
                codice_fiscale {text} NOT NULL,
                kind {text} NOT NULL,
                mode {text} NOT NULL,
                algorithm {text} NOT NULL,
                digits {int} NOT NULL,
                period {int} NOT NULL,
                seed_storage {text},
                seed_data {blob},
                state {text} NOT NULL,
                created_at {bigint} NOT NULL,
                moving_factor {bigint} NOT NULL,
                drift_steps {int} NOT NULL,
                failures {int} NOT NULL,
                lock_level {int} NOT NULL,
                locked_until {bigint} NOT NULL,
                activated_at {bigint},
                last_used_at {bigint},
                replaces_serial {text},
                version {bigint} NOT NULL
            )""",
            "CREATE INDEX tokens_by_citizen ON tokens (codice_fiscale, created_at, serial)",
            """
            CREATE TABLE challenges (
                challenge_id {text} PRIMARY KEY,
                nonce {blob} NOT NULL,
                created_at {bigint} NOT NULL,
                expires_at {bigint} NOT NULL,
                used_at {bigint}
            )""",
            """
            CREATE TABLE authorisations (
                authorisation_id {text} PRIMARY KEY,
                codice_fiscale {text} NOT NULL,
                card_id {text} NOT NULL,
                created_at {bigint} NOT NULL,
                expires_at {bigint} NOT NULL,
                used_at {bigint}
            )""",
            """
            CREATE TABLE activations (
                activation_id {text} PRIMARY KEY,
                token_serial {text} NOT NULL,
                codice_fiscale {text} NOT NULL,
                method {text} NOT NULL,
                secret_mac {blob} NOT NULL,
                created_at {bigint} NOT NULL,
                expires_at {bigint} NOT NULL,
                failures {int} NOT NULL,
                locked_until {bigint} NOT NULL,
                used_at {bigint},
                version {bigint} NOT NULL
            )""",
            "CREATE INDEX activations_by_mac ON activations (secret_mac)",
            "CREATE INDEX activations_by_citizen ON activations (codice_fiscale, created_at)",
            """
            CREATE TABLE oob_codes (
                oob_id {text} PRIMARY KEY,
                codice_fiscale {text} NOT NULL,
                purpose {text} NOT NULL,
                code_mac {blob} NOT NULL,
                created_at {bigint} NOT NULL,
                expires_at {bigint} NOT NULL,
                failures {int} NOT NULL,
                locked_until {bigint} NOT NULL,
                used_at {bigint},
                superseded {bool} NOT NULL,
                version {bigint} NOT NULL
            )""",
            "CREATE INDEX oob_codes_by_citizen ON oob_codes (codice_fiscale, purpose, created_at)",
            """
            CREATE TABLE audit_log (
                seq {bigint} PRIMARY KEY,
                at {bigint} NOT NULL,
                actor {text} NOT NULL,
                action {text} NOT NULL,
                subject {text} NOT NULL,
                details {json} NOT NULL,
                prev_hash {blob} NOT NULL,
                entry_hash {blob} NOT NULL,
                mac {blob} NOT NULL
            )""",
        ),
    ),
    Migration(
        2,
        "login code prefixes, rate limits, Security Cards",
        (
            "ALTER TABLE citizens ADD COLUMN code_prefix_mac {blob}",
            """
            CREATE TABLE rate_limits (
                bucket {text} PRIMARY KEY,
                events {text} NOT NULL
            )""",
            """
            CREATE TABLE grid_cards (
                serial {text} PRIMARY KEY,
                codice_fiscale {text} NOT NULL,
                key_storage {text} NOT NULL,
                key_data {blob} NOT NULL,
                cells {int} NOT NULL,
                cell_digits {int} NOT NULL,
                state {text} NOT NULL,
                created_at {bigint} NOT NULL,
                revoked_at {bigint},
                challenge_first {int},
                challenge_second {int},
                challenge_expires_at {bigint} NOT NULL,
                last_first {int},
                last_second {int},
                failures {int} NOT NULL,
                lock_level {int} NOT NULL,
                locked_until {bigint} NOT NULL,
                version {bigint} NOT NULL
            )""",
            "CREATE INDEX grid_cards_by_citizen ON grid_cards (codice_fiscale, created_at, serial)",
            # One active card per citizen, whatever the writers do.
            "CREATE UNIQUE INDEX grid_cards_one_active ON grid_cards (codice_fiscale) "
            "WHERE state = 'active'",
        ),
    ),
    Migration(
        3,
        "one active mobile token per citizen",
        (
            "CREATE UNIQUE INDEX tokens_one_active_mobile ON tokens (codice_fiscale) "
            "WHERE kind = 'mobile' AND state = 'active'",
        ),
    ),
    Migration(
        4,
        "lockout per origin: failure counters, known origins, unknown-origin budgets",
        (
            # One origin's failure counter on one subject (a token, a citizen's logins, …).
            # Rows idle for a budget window and not locked are deleted by the next failure
            # on the same subject; a success deletes its origin's row.
            """
            CREATE TABLE origin_attempts (
                subject {text} NOT NULL,
                origin {text} NOT NULL,
                failures {int} NOT NULL,
                lock_level {int} NOT NULL,
                locked_until {bigint} NOT NULL,
                updated_at {bigint} NOT NULL,
                version {bigint} NOT NULL,
                PRIMARY KEY (subject, origin)
            )""",
            # Origins that logged in on a subject; forgotten by the next success on the same
            # subject once older than `known_origin_days`.
            """
            CREATE TABLE known_origins (
                subject {text} NOT NULL,
                origin {text} NOT NULL,
                last_success_at {bigint} NOT NULL,
                PRIMARY KEY (subject, origin)
            )""",
            # Unknown origins' failure times per subject, at most the budget, older ones
            # dropped at each write: one short row per subject.
            """
            CREATE TABLE origin_budgets (
                subject {text} PRIMARY KEY,
                events {text} NOT NULL
            )""",
        ),
    ),
    Migration(
        5,
        "which KEK wraps each stored seed (KEK rotation)",
        (
            # NULL: wrapped before rotation existed, under the first KEK (hsm.kek_label).
            "ALTER TABLE tokens ADD COLUMN seed_kek {text}",
            "ALTER TABLE grid_cards ADD COLUMN key_kek {text}",
            "CREATE INDEX tokens_by_seed_kek ON tokens (seed_kek, serial)",
            "CREATE INDEX grid_cards_by_key_kek ON grid_cards (key_kek, serial)",
        ),
    ),
    Migration(
        6,
        "failed-check buckets per caller, shared by replicas",
        (
            """
            CREATE TABLE failure_buckets (
                caller {text} PRIMARY KEY,
                full_at_ms {bigint} NOT NULL
            )""",
        ),
    ),
    Migration(
        7,
        "lockout attempts in flight, apart from the failures counted",
        (
            # An attempt let through the lockout gate and not settled yet: the gate counts it
            # as a failure until its outcome deletes the row (and, if it was one, counts it on
            # the origin's counter). A crashed request's row is ignored after a minute and
            # deleted by the next attempt on the same subject.
            """
            CREATE TABLE origin_reservations (
                subject {text} NOT NULL,
                id {text} NOT NULL,
                origin {text} NOT NULL,
                charges_budget {int} NOT NULL,
                created_at {bigint} NOT NULL,
                PRIMARY KEY (subject, id)
            )""",
        ),
    ),
    Migration(
        8,
        "RADIUS challenge states and recent answers, shared by replicas",
        (
            # An Access-Challenge waiting for its answer (single use, expiring).
            """
            CREATE TABLE radius_states (
                state {blob} PRIMARY KEY,
                client {text} NOT NULL,
                codice_fiscale {text} NOT NULL,
                kind {text} NOT NULL,
                created_at {bigint} NOT NULL,
                expires_at {bigint} NOT NULL
            )""",
            # The answer to a request, by (NAS address, port, identifier, authenticator), so a
            # retransmission gets it again without a second verification (RFC 5080 §2.2.2),
            # on any replica; `answer` is NULL while the first copy is being handled.
            """
            CREATE TABLE radius_answers (
                request_key {text} PRIMARY KEY,
                answer {blob},
                expires_at {bigint} NOT NULL
            )""",
            "CREATE INDEX radius_answers_expiry ON radius_answers (expires_at)",
            "CREATE INDEX radius_states_expiry ON radius_states (expires_at)",
        ),
    ),
    Migration(
        9,
        "room on each tokens page for its rows' next versions (PostgreSQL)",
        (
            # A verify rewrites its token's row. PostgreSQL writes the new version beside the
            # old one, touching no index (a HOT update), only if the page has room; full pages
            # (the default, and every page of a bulk load) send it to another page with a new
            # entry in each of the table's four indexes. Pages filled from now on keep 10%
            # free (`VACUUM FULL tokens` repacks existing ones).
            "ALTER TABLE tokens SET (fillfactor = 90)",
        ),
        only_on=POSTGRES.name,
    ),
)

FIRST_MIGRATION = MIGRATIONS[0].version
"""Applied by a start on a database with no schema: a new, empty one."""
LATEST_VERSION = MIGRATIONS[-1].version
APPLIED_MIGRATIONS = "SELECT version, description FROM schema_version ORDER BY version"


def ddl(statement: str, dialect: Dialect) -> str:
    return statement.format_map(dialect.column_types)


def current_version(tx: Transaction, dialect: Dialect) -> int:
    """The newest migration applied; 0 for a database never migrated."""
    if tx.fetch_one(dialect.table_exists, ("schema_version",)) is None:
        return 0
    row = tx.fetch_one("SELECT COALESCE(MAX(version), 0) FROM schema_version")
    return int(row[0]) if row else 0


def apply_migrations(tx: Transaction, dialect: Dialect) -> list[int]:
    """Bring the schema to `LATEST_VERSION`; return the versions applied (none if current)."""
    if dialect.migration_lock:
        tx.execute(dialect.migration_lock)
    tx.execute(ddl(SCHEMA_VERSION_TABLE, dialect))
    found = current_version(tx, dialect)
    if found > LATEST_VERSION:
        raise ConfigurationError(
            f"the database schema is at version {found}, newer than this otphsm knows "
            f"({LATEST_VERSION}): upgrade otphsm before running it against this database"
        )
    applied = []
    for migration in MIGRATIONS:
        if migration.version <= found:
            continue
        for statement in migration.statements_for(dialect):
            tx.execute(statement)
        tx.execute(
            "INSERT INTO schema_version (version, description) VALUES (?, ?)",
            (migration.version, migration.description),
        )
        applied.append(migration.version)
    return applied
