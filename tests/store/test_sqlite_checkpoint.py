"""The SQLite WAL checkpointer (`otphsm.store.sqlite_checkpoint`): it writes the WAL back into
the database file off the request path and restarts it, so the WAL stays bounded while writers
commit without running a checkpoint themselves; it gives way to a reader that still needs the
WAL; every committed write is in the database file afterwards; and the SQLite engine runs one
for a file (not for `:memory:`) and stops it when closed."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.store_records import token

from otphsm.store import SqliteStore
from otphsm.store.sqlite import AUTOCHECKPOINT_FRAMES
from otphsm.store.sqlite_checkpoint import Checkpointer

PAGE = 4096
WAL_HEADER = 32
FRAME = 24 + PAGE


def _connect(path: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    connection.execute("PRAGMA journal_mode = WAL")
    return connection


@pytest.fixture
def path(tmp_path: Path) -> Path:
    database = tmp_path / "wal.db"
    setup = _connect(database)
    setup.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)")
    setup.close()
    return database


@pytest.fixture
def writer(path: Path) -> Iterator[sqlite3.Connection]:
    """A request connection with SQLite's own automatic checkpoint off: only the checkpointer
    can bound its WAL."""
    connection = _connect(path)
    connection.execute("PRAGMA wal_autocheckpoint = 0")
    yield connection
    connection.close()


def _commit(writer: sqlite3.Connection, turn: threading.Lock, key: int) -> None:
    with turn:  # the engine's writer turn
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("INSERT OR REPLACE INTO t VALUES (?, randomblob(3000))", (key % 500,))
        writer.execute("COMMIT")


def _wal_frames(path: Path) -> int:
    """Frames the WAL file has room for: the most it ever held since it was created."""
    wal = path.with_name(path.name + "-wal")
    return max(0, wal.stat().st_size - WAL_HEADER) // FRAME if wal.exists() else 0


def test_the_wal_stays_bounded_while_writers_commit(path: Path, writer: sqlite3.Connection) -> None:
    turn = threading.Lock()
    checkpointer = Checkpointer(
        lambda: _connect(path), lambda: turn, interval=0.005, restart_frames=40
    )
    checkpointer.start()
    try:
        for key in range(1500):
            _commit(writer, turn, key)
            if key % 50 == 0:
                time.sleep(0.02)  # room for a pass, as between requests
    finally:
        checkpointer.stop()
    assert checkpointer.stats.restarts >= 5
    assert _wal_frames(path) < 600  # without it: one frame or more per commit, 1,500+
    assert not checkpointer.stats.longest_hold > 5.0
    reader = _connect(path)
    assert reader.execute("SELECT count(*) FROM t").fetchone() == (500,)
    reader.close()


def test_without_it_the_same_writes_grow_the_wal(path: Path, writer: sqlite3.Connection) -> None:
    """The control for the test above: the bound is the checkpointer's doing."""
    turn = threading.Lock()
    for key in range(1500):
        _commit(writer, turn, key)
    assert _wal_frames(path) >= 1500


def test_a_reader_still_using_the_wal_is_not_cut_short(
    path: Path, writer: sqlite3.Connection
) -> None:
    turn = threading.Lock()
    for key in range(100):
        _commit(writer, turn, key)
    reader = _connect(path)
    reader.execute("BEGIN")
    before = reader.execute("SELECT count(*), sum(length(v)) FROM t").fetchone()
    for key in range(100, 200):
        _commit(writer, turn, key)
    checkpointer = Checkpointer(lambda: _connect(path), lambda: turn, interval=60, restart_frames=1)
    try:
        checkpointer.checkpoint()  # by hand: the thread is not started
        assert checkpointer.stats.restarts == 0  # frames the reader needs stay in the WAL
        assert reader.execute("SELECT count(*), sum(length(v)) FROM t").fetchone() == before
        reader.execute("COMMIT")
        checkpointer.checkpoint()
        assert checkpointer.stats.restarts == 1
    finally:
        reader.close()
        checkpointer.stop()


def test_committed_writes_are_in_the_database_file_when_the_wal_restarts(
    path: Path, writer: sqlite3.Connection
) -> None:
    turn = threading.Lock()
    checkpointer = Checkpointer(lambda: _connect(path), lambda: turn, interval=60, restart_frames=1)
    for key in range(300):
        _commit(writer, turn, key)
    checkpointer.checkpoint()
    checkpointer.stop()
    _commit(writer, turn, 1000)  # restarts the WAL from its beginning
    copy = path.with_name("copy.db")
    copy.write_bytes(path.read_bytes())  # the database file alone, without the WAL
    alone = sqlite3.connect(copy)
    assert alone.execute("SELECT count(*) FROM t").fetchone() == (300,)
    alone.close()


def test_the_engine_runs_one_for_a_file_and_stops_it_when_closed(tmp_path: Path) -> None:
    store = SqliteStore(str(tmp_path / "otphsm.db"))
    store.migrate()
    store.insert_token(token())
    checkpointer = store._engine.checkpointer  # type: ignore[attr-defined]
    assert checkpointer is not None
    assert checkpointer._thread.is_alive()
    deadline = time.monotonic() + 5
    while checkpointer.stats.passes == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert checkpointer.stats.passes > 0
    autocheckpoint = store._engine.fetch_one("PRAGMA wal_autocheckpoint", ())  # type: ignore[attr-defined]
    assert autocheckpoint == (AUTOCHECKPOINT_FRAMES,)
    store.close()
    assert not checkpointer._thread.is_alive()


def test_an_in_memory_store_has_none() -> None:
    store = SqliteStore(":memory:")
    assert store._engine.checkpointer is None  # type: ignore[attr-defined]
    store.close()
