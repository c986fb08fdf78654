"""A fleet of HOTP tokens for the benchmark, provisioned fast.

Every token's seed is a real blob wrapped by the HSM under its KEK. The tokens the load
generator verifies ("known" tokens) each have their own seed, imported into the HSM from a
secret the benchmark keeps so it can compute their codes (as a key-fob vendor's PSKC file
would). The rest of the fleet ("filler" tokens, never verified) reuse a small set of seeds
generated inside the HSM: wrapping a million seeds one by one would take minutes and tell
nothing more. Rows go straight into the database (one executemany / COPY), built from the
store's own row mapping so the schema is exactly the service's.
"""

from __future__ import annotations

import contextlib
import os
import random
import sqlite3
from dataclasses import dataclass, field

import psycopg
from load import BenchToken

from otphsm.core.otp import HashAlgorithm
from otphsm.core.seeds import SeedRef, SeedStorage
from otphsm.core.tokens import OtpMode, OtpParameters, Token, TokenKind, TokenState
from otphsm.hsm import HsmSeedVault
from otphsm.store import open_store, sqlite_path
from otphsm.store import sql as store_sql

FILLER_SEEDS = 256
_SERIAL_INDEX = 0
_CF_INDEX = 1
_SEED_INDEX = 8
_SCRAMBLE = 0x9E3779B97F4A7C15


def serial_for(index: int) -> str:
    """Serials spread over the key space (not in insertion order), as real ones would be."""
    return f"BN{(index * _SCRAMBLE) % (1 << 48):012X}"


@dataclass
class Fleet:
    """The tokens in both databases; `known` are the ones the load generator may verify.

    Each database keeps its own HOTP counters (a run against SQLite does not move
    PostgreSQL's), so the benchmark follows them per database."""

    size: int = 0
    known: list[tuple[str, bytes]] = field(default_factory=list)
    filler: list[bytes] = field(default_factory=list)
    known_indexes: set[int] = field(default_factory=set)
    counters: dict[str, dict[str, int]] = field(default_factory=dict)
    rng: random.Random = field(default_factory=lambda: random.Random(20261123))

    def tokens_for(self, database: str) -> list[BenchToken]:
        """The known tokens with `database`'s next counters, starting at a random one, so
        that successive runs do not verify only the same few (hot, cached) tokens."""
        counters = self.counters.get(database, {})
        tokens = [(serial, secret, counters.get(serial, 0)) for serial, secret in self.known]
        start = self.rng.randrange(len(tokens)) if tokens else 0
        return tokens[start:] + tokens[:start]

    def update_counters(self, database: str, counters: dict[str, int]) -> None:
        self.counters.setdefault(database, {}).update(counters)


def _template(now: int) -> Token:
    return Token(
        serial="BN000000000000",
        codice_fiscale="BNCHMK00A01H501X",
        kind=TokenKind.PHYSICAL,
        params=OtpParameters(mode=OtpMode.HOTP, algorithm=HashAlgorithm.SHA1, digits=6),
        seed=SeedRef(SeedStorage.WRAPPED, b"replaced per token"),
        state=TokenState.ACTIVE,
        created_at=now,
        activated_at=now,
    )


def grow(
    fleet: Fleet,
    vault: HsmSeedVault,
    urls: list[str],
    size: int,
    known: int,
    now: int,
) -> None:
    """Add tokens up to `size`, of which `known` in all (spread at random over the fleet)."""
    if not fleet.filler:
        fleet.filler = [vault.generate_seed(HashAlgorithm.SHA1).data for _ in range(FILLER_SEEDS)]
    new_indexes = range(fleet.size, size)
    wanted = max(0, known - len(fleet.known))
    chosen = set(fleet.rng.sample(new_indexes, min(wanted, len(new_indexes))))
    template = list(store_sql.TOKENS.to_row(_template(now)))
    rows: list[tuple[object, ...]] = []
    for index in new_indexes:
        row = list(template)
        serial = serial_for(index)
        row[_SERIAL_INDEX] = serial
        row[_CF_INDEX] = f"BNCH{index:012d}"
        if index in chosen:
            secret = os.urandom(20)
            blob = vault.import_seed(secret, HashAlgorithm.SHA1)
            row[_SEED_INDEX] = _seed_column(blob)
            fleet.known.append((serial, secret))
            fleet.known_indexes.add(index)
        else:
            row[_SEED_INDEX] = fleet.filler[index % len(fleet.filler)]
        rows.append(tuple(row))
    for url in urls:
        _insert(url, rows)
    fleet.size = size


def _seed_column(seed: SeedRef) -> bytes:
    return seed.data


def _insert(url: str, rows: list[tuple[object, ...]]) -> None:
    store = open_store(url)
    store.migrate()
    store.close()
    if url.startswith("sqlite"):
        connection = sqlite3.connect(sqlite_path(url), isolation_level=None, timeout=30)
        try:
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(store_sql.TOKENS.insert, rows)
            connection.execute("COMMIT")
            connection.execute("ANALYZE")
            # Write the bulk load back now, so its checkpoint does not stall the first runs.
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            connection.close()
        return
    columns = ", ".join(store_sql.TOKENS.columns)
    with psycopg.connect(url) as connection:
        with (
            connection.cursor() as cursor,
            cursor.copy(f"COPY tokens ({columns}) FROM STDIN") as copy,
        ):
            for row in rows:
                copy.write_row(row)
        connection.commit()
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE tokens")
        with contextlib.suppress(psycopg.errors.InsufficientPrivilege):
            connection.execute("CHECKPOINT")  # the bulk load written back before measuring
