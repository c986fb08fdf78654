"""PostgreSQL's pipelined transactions: statements queued without reading their result run in
order with the reads, a failure of any of them leaves nothing of the transaction written and
the connection usable, and a transaction run with `durable=False` alone commits without
waiting for the WAL flush."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import replace

import psycopg
import pytest
from support.store_records import token

from otphsm.store import PostgresStore, StoreUnavailable
from otphsm.store.postgres import PostgresEngine
from otphsm.store.sql import TOKENS, Transaction

pytestmark = pytest.mark.postgres

SERIAL = "TOK-0001"
SET_VERSION = "UPDATE tokens SET version = ? WHERE serial = ?"
VERSION = "SELECT version FROM tokens WHERE serial = ?"


@pytest.fixture
def store(postgres_store_url: str) -> Iterator[PostgresStore]:
    """One connection, so every transaction runs on the one before's connection."""
    opened = PostgresStore(postgres_store_url, pool_size=1)
    opened.migrate()
    opened.insert_token(token(SERIAL))
    yield opened
    opened.close()


def engine_of(store: PostgresStore) -> PostgresEngine:
    engine = store._engine
    assert isinstance(engine, PostgresEngine)
    return engine


def version(store: PostgresStore) -> int:
    found = store.get_token(SERIAL)
    assert found is not None
    return found.version


def test_only_a_transaction_run_not_durable_skips_the_wal_flush(store: PostgresStore) -> None:
    engine = engine_of(store)

    def setting(tx: Transaction) -> object:
        row = tx.fetch_one("SHOW synchronous_commit")
        return row[0] if row else None

    assert engine.run(setting, write=True, durable=False) == "off"
    assert engine.run(setting, write=True) == "on"  # SET LOCAL: that transaction alone


def test_queued_statements_run_in_order_with_the_reads(store: PostgresStore) -> None:
    def work(tx: Transaction) -> list[object]:
        tx.queue(SET_VERSION, (5, SERIAL))
        first = tx.fetch_all(VERSION, (SERIAL,))
        tx.queue(SET_VERSION, (6, SERIAL))
        return [first, tx.fetch_one(VERSION, (SERIAL,))]

    assert engine_of(store).run(work, write=True) == [[(5,)], (6,)]
    assert version(store) == 6


def test_a_queued_statement_that_fails_with_the_commit_writes_nothing(
    store: PostgresStore,
) -> None:
    duplicate = TOKENS.to_row(token(SERIAL))

    def work(tx: Transaction) -> None:
        tx.queue(SET_VERSION, (7, SERIAL))
        tx.queue(TOKENS.insert, duplicate)  # sent with the COMMIT, which it aborts

    with pytest.raises(StoreUnavailable, match="while committing"):
        engine_of(store).run(work, write=True)
    assert version(store) == 0
    store.update_token(replace(token(SERIAL), version=0))  # the connection serves again
    assert version(store) == 1


def test_a_queued_statements_failure_already_in_before_the_commit_is_the_commits_too(
    store: PostgresStore,
) -> None:
    """psycopg raises a queued statement's error at the next statement once its answer is in:
    here the COMMIT's queueing (the work waits for the answer), as under load it can."""
    duplicate = TOKENS.to_row(token(SERIAL))

    def work(tx: Transaction) -> None:
        tx.queue(SET_VERSION, (7, SERIAL))
        tx.queue(TOKENS.insert, duplicate)
        time.sleep(0.2)  # the INSERT's error comes back meanwhile

    with pytest.raises(StoreUnavailable, match="while committing"):
        engine_of(store).run(work, write=True)
    assert version(store) == 0


def test_a_read_that_fails_after_queued_writes_leaves_nothing_written(
    store: PostgresStore,
) -> None:
    def work(tx: Transaction) -> None:
        tx.queue(SET_VERSION, (7, SERIAL))
        tx.fetch_one("SELECT 1 / 0")

    with pytest.raises(psycopg.errors.DivisionByZero):
        engine_of(store).run(work, write=True)
    assert version(store) == 0
    with store.transaction() as work:  # a unit of work on the same connection still begins
        assert work.update_token(replace(token(SERIAL), version=0))
        work.get_token(SERIAL)
    assert version(store) == 1
