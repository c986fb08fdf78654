"""Processes sharing one SQLite file take their write turn on a lock file beside it, held for
each write transaction (so a writer waits in a queue of its own, not in SQLite's busy handler),
and still bounded by the busy timeout: a writer whose turn does not come gets StoreUnavailable
and writes nothing. Two engines on one file stand for two processes (each its own open file,
so their locks exclude each other as two processes' would). Closing the engine lets the
write in progress finish and be answered before its connection is closed. The lock file
belongs to the database's owner and group, writable by its group if the database is."""

from __future__ import annotations

import fcntl
import os
import stat
import threading
import time
from pathlib import Path

import pytest

from otphsm.store.errors import StoreUnavailable
from otphsm.store.sql import Transaction
from otphsm.store.sqlite import SqliteEngine
from otphsm.store.sqlite_turn import ProcessTurn


def turn_is_free(engine_path: Path) -> bool:
    fd = os.open(f"{engine_path}-writer.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    finally:
        os.close(fd)
    return True


def test_a_write_transaction_holds_the_files_turn_until_it_ends(tmp_path: Path) -> None:
    path = tmp_path / "turn.db"
    engine = SqliteEngine(str(path))
    engine.run(lambda tx: tx.execute("CREATE TABLE t (k TEXT)"), write=True)
    assert turn_is_free(path)
    with engine.transaction() as tx:
        tx.execute("INSERT INTO t VALUES ('a')")
        assert not turn_is_free(path)
    assert turn_is_free(path)
    engine.close()


def test_another_process_waits_its_turn_then_writes(tmp_path: Path) -> None:
    path = tmp_path / "turn.db"
    first, second = SqliteEngine(str(path)), SqliteEngine(str(path))
    first.run(lambda tx: tx.execute("CREATE TABLE t (k TEXT)"), write=True)
    wrote = threading.Event()

    def write_from_second() -> None:
        second.run(lambda tx: tx.execute("INSERT INTO t VALUES ('second')"), write=True)
        wrote.set()

    with first.transaction() as tx:
        tx.execute("INSERT INTO t VALUES ('first')")
        writer = threading.Thread(target=write_from_second)
        writer.start()
        assert not wrote.wait(0.3)  # waiting for the turn, nothing written
    writer.join(10)
    assert wrote.is_set()
    rows = first.run(lambda tx: tx.fetch_all("SELECT k FROM t ORDER BY k"), write=False)
    assert rows == [("first",), ("second",)]
    first.close()
    second.close()


def test_a_turn_that_never_comes_is_refused_within_the_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "turn.db"
    engine = SqliteEngine(str(path), busy_timeout=0.2)
    engine.run(lambda tx: tx.execute("CREATE TABLE t (k TEXT)"), write=True)
    holder = ProcessTurn(str(path))  # another process holding the turn
    assert holder.acquire(0)
    try:
        with pytest.raises(StoreUnavailable):
            engine.run(lambda tx: tx.execute("INSERT INTO t VALUES ('late')"), write=True)
        with pytest.raises(StoreUnavailable), engine.transaction() as tx:
            tx.execute("INSERT INTO t VALUES ('late')")
    finally:
        holder.release()
        holder.close()
    assert engine.run(lambda tx: tx.fetch_all("SELECT k FROM t"), write=False) == []
    engine.close()


def test_closing_lets_the_write_in_progress_finish_then_refuses_the_next(tmp_path: Path) -> None:
    path = tmp_path / "turn.db"
    engine = SqliteEngine(str(path))
    engine.run(lambda tx: tx.execute("CREATE TABLE t (k TEXT)"), write=True)
    outcomes: list[object] = []
    inside = threading.Event()

    def slow_write(tx: Transaction) -> int:
        tx.execute("INSERT INTO t VALUES ('in progress')")
        inside.set()
        time.sleep(0.3)  # close() is called meanwhile
        return tx.execute("INSERT INTO t VALUES ('finished')")

    def write() -> None:
        try:
            outcomes.append(engine.run(slow_write, write=True))
        except Exception as exc:
            outcomes.append(exc)

    writer = threading.Thread(target=write)
    writer.start()
    assert inside.wait(10)
    engine.close()
    writer.join(10)
    assert outcomes == [1]  # committed, and told so: not the driver's "closed database"
    with pytest.raises(StoreUnavailable):
        engine.run(lambda tx: tx.execute("INSERT INTO t VALUES ('after')"), write=True)
    again = SqliteEngine(str(path))
    rows = again.run(lambda tx: tx.fetch_all("SELECT k FROM t ORDER BY k"), write=False)
    assert rows == [("finished",), ("in progress",)]
    again.close()


def test_the_lock_file_is_usable_by_whoever_may_write_the_database(tmp_path: Path) -> None:
    path = tmp_path / "turn.db"
    SqliteEngine(str(path)).close()
    lock = Path(f"{path}-writer.lock")
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600
    lock.unlink()
    os.chmod(path, 0o660)  # a group of writers
    if os.geteuid() == 0:  # the service's database, opened first by root (an admin command)
        os.chown(path, 65534, 65534)
    engine = SqliteEngine(str(path))
    engine.run(lambda tx: tx.execute("CREATE TABLE t (k TEXT)"), write=True)
    engine.close()
    made, database = lock.stat(), path.stat()
    assert stat.S_IMODE(made.st_mode) == 0o660  # the group may take the turn; others never
    assert (made.st_uid, made.st_gid) == (database.st_uid, database.st_gid)
