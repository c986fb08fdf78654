"""Group commit on SQLite: the durable writes queued while another transaction held the write
turn, committed together by whichever of their callers gets the turn next (`SqliteEngine`):
one transaction, each write under its own savepoint when there are several (one that raises
is rolled back alone), one COMMIT and so one sync. A COMMIT that fails fails them all, and
nothing of any is written."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from otphsm.store.sql import Transaction

T = TypeVar("T")

Translate = Callable[[BaseException], BaseException]
"""A driver error as the store's own (`StoreUnavailable`, `Conflict`); any other as it is."""


class Queued(Generic[T]):
    """One durable write waiting for a commit: its work, then its outcome."""

    def __init__(self, work: Callable[[Transaction], T]) -> None:
        self.work = work
        self.finished = threading.Event()
        self.result: T | None = None
        self.error: BaseException | None = None

    def outcome(self) -> T:
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]  # set when no error


def transact(
    group: list[Queued[Any]],
    connection: sqlite3.Connection,
    tx: Transaction,
    translate: Translate,
) -> None:
    """BEGIN, each write of `group`, COMMIT; a lone write that raises is rolled back. Raises
    what ends the transaction for all (then the caller rolls back and fails every write)."""
    connection.execute("BEGIN IMMEDIATE")
    if len(group) == 1:
        _apply(group[0], tx, translate)
        if group[0].error is not None:
            if connection.in_transaction:  # else SQLite ended it (e.g. a full disk)
                connection.execute("ROLLBACK")
            return
    else:
        for queued in group:
            _apply_under_savepoint(queued, connection, tx, translate)
    connection.execute("COMMIT")


def _apply(queued: Queued[Any], tx: Transaction, translate: Translate) -> None:
    try:
        queued.result = queued.work(tx)
    except BaseException as exc:
        queued.error = translate(exc)


def _apply_under_savepoint(
    queued: Queued[Any], connection: sqlite3.Connection, tx: Transaction, translate: Translate
) -> None:
    connection.execute("SAVEPOINT grouped")
    _apply(queued, tx, translate)
    if queued.error is None:
        connection.execute("RELEASE grouped")
        return
    if not connection.in_transaction:  # SQLite ended it (e.g. a full disk): all fail
        raise queued.error
    connection.execute("ROLLBACK TO grouped")
    connection.execute("RELEASE grouped")
