"""What the SQL store runs on: an `Engine` (connections, the dialect, transactions; SQLite's
and PostgreSQL's), the engine of an open unit of work (`JoinedEngine`), and the base every part
of the store shares (`OnEngine`)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol, TypeVar

from otphsm.store.rows import Row
from otphsm.store.sql import Dialect, Transaction

T = TypeVar("T")


class Engine(Protocol):
    dialect: Dialect

    def run(self, work: Callable[[Transaction], T], *, write: bool, durable: bool = True) -> T:
        """Run `work` in one transaction and commit it. Writers are serialised by the engine's
        write lock or row locks; a unique-key violation becomes `Conflict`, a lost or busy
        database `StoreUnavailable`. `durable=False`: the transaction may be lost in a crash
        of the database (its commit need not reach the disk before it returns); what other
        sessions see of it is unchanged."""
        ...

    def transaction(self) -> AbstractContextManager[Transaction]:
        """A writing transaction held open across the caller's statements: committed when the
        block ends, rolled back if it raises; never retried."""
        ...

    def fetch_one(self, statement: str, params: Row) -> Row | None:
        """One read-only statement, which is atomic on its own: no explicit transaction."""
        ...

    def write_one(self, statement: str, params: Row) -> int:
        """One writing statement, committed (durably) before it returns; the rows changed."""
        ...

    def ping(self) -> int:
        """The schema version; `StoreUnavailable` on any failure at all."""
        ...

    def close(self) -> None: ...


class JoinedEngine:
    """An engine whose every call is a statement of one open transaction."""

    def __init__(self, tx: Transaction, dialect: Dialect) -> None:
        self._tx = tx
        self.dialect = dialect

    def run(self, work: Callable[[Transaction], T], *, write: bool, durable: bool = True) -> T:
        """A method that writes several statements does so all or nothing within the unit of
        work too: under a savepoint, rolled back to if it raises. The unit of work's commit is
        durable, whatever `durable` says."""
        if not write:
            return work(self._tx)
        self._tx.execute("SAVEPOINT store_method")
        try:
            result = work(self._tx)
        except BaseException:
            with contextlib.suppress(Exception):  # the original error says more
                self._tx.execute("ROLLBACK TO SAVEPOINT store_method")
                self._tx.execute("RELEASE SAVEPOINT store_method")
            raise
        self._tx.execute("RELEASE SAVEPOINT store_method")
        return result

    @contextmanager
    def transaction(self) -> Iterator[Transaction]:
        yield self._tx

    def fetch_one(self, statement: str, params: Row) -> Row | None:
        return self._tx.fetch_one(statement, params)

    def write_one(self, statement: str, params: Row) -> int:
        """Under a savepoint too: a refused statement (`Conflict`) leaves the unit of work
        usable (PostgreSQL would otherwise abort it), for a caller that decides again."""
        return self.run(lambda tx: tx.execute(statement, params), write=True)

    def ping(self) -> int:
        raise TypeError("ping() is not part of a unit of work")

    def close(self) -> None:
        raise TypeError("close() is not part of a unit of work: end the transaction's block")


class OnEngine:
    """What every part of the SQL store shares: its engine, and the rule that a thread with a
    unit of work open goes through the store that unit of work yielded."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._in_unit_of_work = threading.local()

    @property
    def dialect(self) -> Dialect:
        return self._engine.dialect

    def _outside_unit_of_work(self) -> Engine:
        """The engine, unless this thread has a unit of work open: a write through this store
        then would wait for the unit of work's own lock (a programming error: use the store
        the unit of work yielded)."""
        if getattr(self._in_unit_of_work, "open", False):
            raise RuntimeError("a unit of work is open in this thread: use the store it yielded")
        return self._engine


class Refused(Exception):
    """Ends a transaction without writing (the engine rolls back)."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(f"retry after {retry_after} s")
        self.retry_after = retry_after
