"""What only the SQLite engine promises: WAL (readers never wait for a writer), a bounded wait
for the write lock, and typed errors for a file that cannot be used."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.store_records import token

from otphsm.store import SqliteStore, StoreUnavailable


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "otphsm.db"


@pytest.fixture
def store(path: Path) -> Iterator[SqliteStore]:
    opened = SqliteStore(str(path), busy_timeout=0.3)
    opened.migrate()
    opened.insert_token(token())
    yield opened
    opened.close()


@pytest.fixture
def writer_holding_the_lock(path: Path, store: SqliteStore) -> Iterator[sqlite3.Connection]:
    """Another process's writer, mid-transaction with an uncommitted change."""
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    other.execute("UPDATE tokens SET failures = 99")
    yield other
    other.execute("ROLLBACK")
    other.close()


def test_the_file_is_in_wal_mode_with_foreign_keys_enforced(path: Path, store: SqliteStore) -> None:
    with sqlite3.connect(path) as other:
        assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    enforced = store._engine.run(lambda tx: tx.fetch_one("PRAGMA foreign_keys"), write=False)
    assert enforced == (1,)


def test_readers_do_not_wait_for_a_writer(
    store: SqliteStore, writer_holding_the_lock: sqlite3.Connection
) -> None:
    started = time.monotonic()
    current = store.get_token("TOK-0001")
    assert current is not None and current.failures == 0
    assert time.monotonic() - started < 0.1


def test_a_writer_waits_for_the_lock_only_up_to_the_busy_timeout(
    store: SqliteStore, writer_holding_the_lock: sqlite3.Connection
) -> None:
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as raised:
        store.update_token(token(failures=1))
    waited = time.monotonic() - started
    assert raised.value.code == "SQLITE_BUSY"
    assert 0.25 < waited < 2
    writer_holding_the_lock.execute("ROLLBACK")
    writer_holding_the_lock.execute("BEGIN")
    assert store.update_token(token(failures=1)) is True


def test_a_file_that_cannot_be_opened_is_unavailable(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable) as raised:
        SqliteStore(str(tmp_path / "missing-directory" / "otphsm.db"))
    assert raised.value.code == "SQLITE_CANTOPEN"


def test_a_file_that_is_not_a_database_is_unavailable(path: Path) -> None:
    path.write_bytes(b"this is not a SQLite database, not even its header" * 100)
    with pytest.raises(StoreUnavailable) as raised:
        SqliteStore(str(path))
    assert raised.value.code == "SQLITE_NOTADB"
