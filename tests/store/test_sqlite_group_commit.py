"""SQLite's group commit: durable writes that queue while another transaction holds the write
lock share the next commit. Each is written, or, if it fails, rolled back alone while the
others are written; each caller returns only once the commit holding its write is done; a
caller whose turn does not come within the busy timeout, or who is interrupted while waiting
for it, withdraws its write, and nothing of it is ever written. A write SQLite ends the
transaction of (a full disk) fails as `StoreUnavailable`, not as the driver's error. (That
the group costs one sync: `test_commit_durability.py`.)"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from otphsm.core.ports import Conflict
from otphsm.store.errors import StoreUnavailable
from otphsm.store.sql import Transaction
from otphsm.store.sqlite import SqliteEngine


def new_engine(tmp_path: Path, busy_timeout: float = 5.0) -> SqliteEngine:
    engine = SqliteEngine(str(tmp_path / "group.db"), busy_timeout=busy_timeout)
    engine.run(lambda tx: tx.execute("CREATE TABLE t (k TEXT PRIMARY KEY)"), write=True)
    return engine


def insert(key: str) -> Callable[[Transaction], int]:
    return lambda tx: tx.execute("INSERT INTO t (k) VALUES (?)", (key,))


def keys(engine: SqliteEngine) -> list[str]:
    rows = engine.run(lambda tx: tx.fetch_all("SELECT k FROM t ORDER BY k"), write=False)
    return [str(row[0]) for row in rows]


def wait_for(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "the writes never queued"
        time.sleep(0.005)


def queue_behind_a_holder(
    engine: SqliteEngine, works: dict[str, Callable[[Transaction], int]], hold: float = 0.0
) -> dict[str, object]:
    """Hold the write lock in a transaction, queue `works` from threads, then commit."""
    outcomes: dict[str, object] = {}

    def call(name: str, work: Callable[[Transaction], int]) -> None:
        try:
            outcomes[name] = engine.run(work, write=True)
        except Exception as exc:
            outcomes[name] = exc

    threads = [threading.Thread(target=call, args=item) for item in works.items()]
    with engine.transaction() as tx:
        tx.execute("INSERT INTO t (k) VALUES ('holder')")
        for thread in threads:
            thread.start()
        if hold:
            time.sleep(hold)
        else:
            wait_for(lambda: engine.waiting_writes() == len(works))
            assert not outcomes  # nobody answered before a commit holding their write
    for thread in threads:
        thread.join(10)
    return outcomes


def test_queued_writes_share_a_commit_and_a_failing_one_is_rolled_back_alone(
    tmp_path: Path,
) -> None:
    engine = new_engine(tmp_path)
    engine.run(insert("taken"), write=True)
    outcomes = queue_behind_a_holder(
        engine, {"a": insert("a"), "dup": insert("taken"), "b": insert("b")}
    )
    assert outcomes["a"] == 1 and outcomes["b"] == 1
    assert isinstance(outcomes["dup"], Conflict)
    assert keys(engine) == ["a", "b", "holder", "taken"]
    assert engine.waiting_writes() == 0
    engine.close()


def test_a_write_that_raises_in_a_group_leaves_nothing_of_itself(tmp_path: Path) -> None:
    engine = new_engine(tmp_path)

    def half_then_fail(tx: Transaction) -> int:
        tx.execute("INSERT INTO t (k) VALUES ('half')")
        raise ValueError("the caller's own error")

    outcomes = queue_behind_a_holder(engine, {"a": insert("a"), "bad": half_then_fail})
    assert outcomes["a"] == 1
    assert isinstance(outcomes["bad"], ValueError)
    assert keys(engine) == ["a", "holder"]
    engine.close()


def test_a_write_whose_turn_never_comes_is_withdrawn(tmp_path: Path) -> None:
    engine = new_engine(tmp_path, busy_timeout=0.2)
    outcomes = queue_behind_a_holder(engine, {"late": insert("late")}, hold=0.6)
    assert isinstance(outcomes["late"], StoreUnavailable)
    assert engine.waiting_writes() == 0
    engine.run(lambda tx: 0, write=True)  # a later commit does not carry it either
    assert keys(engine) == ["holder"]
    engine.close()


def test_many_writers_each_written_once(tmp_path: Path) -> None:
    engine = new_engine(tmp_path)
    writers = 8
    done: list[int] = []

    def write_many(n: int) -> None:
        for i in range(25):
            done.append(engine.run(insert(f"{n}-{i:02d}"), write=True))

    threads = [threading.Thread(target=write_many, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert done == [1] * writers * 25
    assert len(keys(engine)) == writers * 25
    engine.close()


def fill_the_disk(engine: SqliteEngine) -> None:
    """This thread's connection may grow the file by no page more (SQLITE_FULL, as a full
    disk gives, which SQLite answers by ending the transaction)."""
    pages = engine.run(lambda tx: tx.fetch_one("PRAGMA page_count"), write=False)
    assert pages is not None
    engine.run(lambda tx: tx.fetch_all(f"PRAGMA max_page_count = {pages[0]}"), write=False)


def big(key: str) -> Callable[[Transaction], int]:
    return lambda tx: tx.execute("INSERT INTO t (k) VALUES (? || hex(randomblob(50000)))", (key,))


def test_a_full_disk_fails_a_lone_write_as_unavailable(tmp_path: Path) -> None:
    engine = new_engine(tmp_path)
    fill_the_disk(engine)
    try:
        engine.run(big("big"), write=True)
        raise AssertionError("the write fitted")
    except StoreUnavailable as exc:
        assert exc.code == "SQLITE_FULL"
    assert keys(engine) == []
    engine.run(insert("small"), write=True)  # the connection still usable
    assert keys(engine) == ["small"]
    engine.close()


class Interrupted(BaseException):
    """What a signal handler raises in the thread waiting (Ctrl-C's KeyboardInterrupt, say)."""


def test_a_write_interrupted_while_waiting_for_its_turn_is_withdrawn(tmp_path: Path) -> None:
    engine = new_engine(tmp_path)
    main = threading.get_ident()
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with engine.transaction() as tx:
            tx.execute("INSERT INTO t (k) VALUES ('holder')")
            holding.set()
            release.wait(10)

    def interrupt_once_queued() -> None:
        wait_for(lambda: engine.waiting_writes() == 1)
        signal.pthread_kill(main, signal.SIGUSR1)

    def raise_interrupted(_signum: int, _frame: object) -> None:
        raise Interrupted

    previous = signal.signal(signal.SIGUSR1, raise_interrupted)
    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert holding.wait(10)
        threading.Thread(target=interrupt_once_queued).start()
        with pytest.raises(Interrupted):
            engine.run(insert("interrupted"), write=True)
    finally:
        signal.signal(signal.SIGUSR1, previous)
        release.set()
        holder.join(10)
    assert engine.waiting_writes() == 0
    engine.run(insert("later"), write=True)  # the next commit does not carry it
    assert keys(engine) == ["holder", "later"]
    engine.close()
