"""SQLite, the embedded default: WAL, one connection per thread, BEGIN IMMEDIATE for writers.

Every writer takes SQLite's single write lock when it begins, so conditional updates, consumes
and audit appends are serialised across threads and processes sharing the file; readers run
beside them on WAL snapshots. A writer that waits longer than `busy_timeout` gets
`StoreUnavailable`. `:memory:` keeps one connection behind a lock (each connection would be
its own empty database).
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import TypeVar

from otphsm.core.ports import Conflict
from otphsm.store.errors import StoreUnavailable
from otphsm.store.rows import Row
from otphsm.store.schema import current_version
from otphsm.store.sql import SQLITE, Transaction
from otphsm.store.sql_store import SqlStore
from otphsm.store.urls import MEMORY

T = TypeVar("T")

SQLITE_BUSY = 5
_DUPLICATE_KEY = frozenset({"SQLITE_CONSTRAINT_PRIMARYKEY", "SQLITE_CONSTRAINT_UNIQUE"})
# Primary result codes meaning "the database cannot be used right now", not "a bug".
_UNAVAILABLE = {
    3: "SQLITE_PERM",
    SQLITE_BUSY: "SQLITE_BUSY",
    6: "SQLITE_LOCKED",
    7: "SQLITE_NOMEM",
    8: "SQLITE_READONLY",
    10: "SQLITE_IOERR",
    11: "SQLITE_CORRUPT",
    13: "SQLITE_FULL",
    14: "SQLITE_CANTOPEN",
    15: "SQLITE_PROTOCOL",
    26: "SQLITE_NOTADB",
}


class _Connection(sqlite3.Connection):
    """A connection that can be weakly referenced: when its thread ends, it is closed."""


class _SqliteTransaction:
    def __init__(
        self,
        connection: sqlite3.Connection,
        translated: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
    ) -> None:
        self._connection = connection
        self._translated = translated

    def execute(self, statement: str, params: Sequence[object] = ()) -> int:
        with self._translated():
            return self._connection.execute(statement, params).rowcount

    def queue(self, statement: str, params: Sequence[object] = ()) -> None:
        self.execute(statement, params)

    def fetch_one(self, statement: str, params: Sequence[object] = ()) -> Row | None:
        found = self.fetch_all(statement, params)
        return found[0] if found else None

    def fetch_all(self, statement: str, params: Sequence[object] = ()) -> list[Row]:
        with self._translated():
            found = self._connection.execute(statement, params).fetchall()
        return [tuple(row) for row in found]


class SqliteEngine:
    dialect = SQLITE

    def __init__(self, path: str, *, busy_timeout: float = 5.0) -> None:
        self._path = path
        self._busy_timeout = busy_timeout
        self._local = threading.local()
        self._opened: weakref.WeakSet[sqlite3.Connection] = weakref.WeakSet()
        self._opened_lock = threading.Lock()
        self._closed = False
        self._shared: sqlite3.Connection | None = None
        self._shared_lock = threading.RLock()
        self._write_lock = threading.Lock()
        with self._translated():
            first = self._connect()
            if path == MEMORY:
                self._shared = first
            else:
                self._local.connection = first
                self._enable_wal(first)

    def run(self, work: Callable[[Transaction], T], *, write: bool, durable: bool = True) -> T:
        with self._writer_turn(write), self._translated(), self._exclusive() as connection:
            connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                result = work(_SqliteTransaction(connection))
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise
            return result

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        """A writing transaction held open across the caller's statements (BEGIN IMMEDIATE:
        SQLite's write lock from the start), committed when the block ends, rolled back if it
        raises. Each statement's driver error is translated where it happens."""
        with self._writer_turn(True), self._translated(), self._exclusive() as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield _SqliteTransaction(connection, self._translated)
                connection.execute("COMMIT")
            except BaseException:
                if connection.in_transaction:
                    connection.execute("ROLLBACK")
                raise

    def fetch_one(self, statement: str, params: Row) -> Row | None:
        with self._translated(), self._exclusive() as connection:
            found = connection.execute(statement, params).fetchone()
            return tuple(found) if found is not None else None

    def write_one(self, statement: str, params: Row) -> int:
        # In autocommit mode one statement is one transaction, committed as BEGIN IMMEDIATE
        # … COMMIT would be, with two calls fewer.
        with self._writer_turn(True), self._translated(), self._exclusive() as connection:
            return connection.execute(statement, params).rowcount

    def ping(self) -> int:
        try:
            return self.run(lambda tx: current_version(tx, self.dialect), write=False)
        except sqlite3.Error as exc:
            raise StoreUnavailable(
                f"the SQLite database {self._path} is unusable: {exc}",
                code=getattr(exc, "sqlite_errorname", None),
            ) from exc

    def close(self) -> None:
        with self._opened_lock, self._shared_lock:
            self._closed = True
            for connection in list(self._opened):
                connection.close()
            self._opened.clear()

    def _enable_wal(self, connection: sqlite3.Connection) -> None:
        """Switch the file to WAL (a no-op once it is). SQLite answers BUSY at once, without
        waiting, when processes open a new file together, so wait here instead."""
        deadline = time.monotonic() + self._busy_timeout
        while True:
            try:
                mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                break
            except sqlite3.OperationalError as exc:
                busy = getattr(exc, "sqlite_errorcode", 0) & 0xFF == SQLITE_BUSY
                if not busy or time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)
        if str(mode).lower() != "wal":
            raise StoreUnavailable(f"SQLite refused WAL mode for {self._path} (got {mode})")

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(
            self._path,
            timeout=self._busy_timeout,
            isolation_level=None,
            check_same_thread=False,
            factory=_Connection,
        )
        connection.execute("PRAGMA foreign_keys = ON")
        with self._opened_lock:
            self._opened.add(connection)
        return connection

    @contextmanager
    def _writer_turn(self, write: bool) -> Iterator[None]:
        """Writers of this process queue here, in order, rather than in SQLite's busy handler,
        which polls with sleeps of up to 100 ms (the lock itself is still SQLite's, for other
        processes). Waiting is bounded by the same busy timeout."""
        if not write or self._shared is not None:
            yield
            return
        if not self._write_lock.acquire(timeout=self._busy_timeout):
            raise StoreUnavailable(
                f"the SQLite database {self._path} is unusable: no write turn within "
                f"{self._busy_timeout:g} s",
                code="SQLITE_BUSY",
            )
        try:
            yield
        finally:
            self._write_lock.release()

    @contextmanager
    def _exclusive(self) -> Iterator[sqlite3.Connection]:
        if self._closed:
            raise StoreUnavailable(f"the store for {self._path} is closed")
        if self._shared is not None:
            with self._shared_lock:
                yield self._shared
            return
        connection: sqlite3.Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._connect()
            self._local.connection = connection
        yield connection

    @contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            mapped = self._translate(exc)
            if mapped is None:
                raise
            raise mapped from exc

    def _translate(self, exc: sqlite3.Error) -> Exception | None:
        name: str | None = getattr(exc, "sqlite_errorname", None)
        code: int | None = getattr(exc, "sqlite_errorcode", None)
        if isinstance(exc, sqlite3.IntegrityError) and name in _DUPLICATE_KEY:
            return Conflict(str(exc))
        if code is not None and code & 0xFF in _UNAVAILABLE:
            return StoreUnavailable(
                f"the SQLite database {self._path} is unusable: {exc}", code=name
            )
        return None


class SqliteStore(SqlStore):
    """The `Store` on one SQLite file (or `:memory:`), shared safely by threads and processes."""

    def __init__(self, path: str, *, busy_timeout: float = 5.0) -> None:
        super().__init__(SqliteEngine(path, busy_timeout=busy_timeout))
