"""The lockout's writers on PostgreSQL take a subject's budget row lock before its origins'
counters, so an operator's unlock racing a failure being counted waits instead of
deadlocking (each would otherwise hold a counter row the other needs)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from support.lockout_store import fail, reserve
from support.store_records import NOW

from otphsm.core.lockout import Failure, OriginAttempts, Standing
from otphsm.core.records import RateLimit
from otphsm.core.verification import Attempts
from otphsm.store import SqlStore

pytestmark = pytest.mark.postgres

SUBJECT = "token:MOB-0001"
DAY = 86400
PAUSE_SECONDS = 0.5


class _PausedAfterFirstStatement:
    """A transaction whose first statement is followed by a pause, if `pause` (another
    writer starts meanwhile); the errors its statements raised are kept."""

    def __init__(
        self, tx: Any, started: threading.Event, errors: list[BaseException], pause: bool
    ) -> None:
        self._tx, self._started, self._errors, self._pause = tx, started, errors, pause

    def execute(self, statement: str, params: Sequence[object] = ()) -> int:
        try:
            done = self._tx.execute(statement, params)
        except BaseException as exc:
            self._errors.append(exc)
            raise
        if self._pause and not self._started.is_set():
            self._started.set()
            time.sleep(PAUSE_SECONDS)
        return int(done)

    def queue(self, statement: str, params: Sequence[object] = ()) -> None:
        # Run at once (not sent later with the next read): the pause comes with the lock held.
        self.execute(statement, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._tx, name)


class _PausingEngine:
    """Counts the transactions run (a deadlock's victim is run again) and their errors."""

    def __init__(self, engine: Any, *, pause: bool) -> None:
        self._engine, self._pause = engine, pause
        self.started = threading.Event()
        self.errors: list[BaseException] = []
        self.runs = 0

    def run(self, work: Callable[[Any], Any], *, write: bool) -> Any:
        def paused(tx: Any) -> Any:
            self.runs += 1
            return work(_PausedAfterFirstStatement(tx, self.started, self.errors, self._pause))

        return self._engine.run(paused, write=write)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)


def test_an_unlock_racing_a_counted_failure_waits_instead_of_deadlocking(
    postgres_store_url: str, open_test_store: Callable[[str], SqlStore]
) -> None:
    operator, counting = open_test_store(postgres_store_url), open_test_store(postgres_store_url)
    budget = RateLimit(SUBJECT, 100, DAY)
    fail(operator, SUBJECT, "idle", Attempts(1), budget, 0)
    fail(operator, SUBJECT, "o", Attempts(1), None, NOW)
    reservation = reserve(counting, SUBJECT, "o", NOW)
    paused = _PausingEngine(counting._engine, pause=True)
    counting._engine = paused  # type: ignore[assignment]
    watched = _PausingEngine(operator._engine, pause=False)
    operator._engine = watched  # type: ignore[assignment]
    counted: list[bool] = []

    def count(standing: Standing) -> Failure:
        second = OriginAttempts(SUBJECT, "o", Attempts(2), NOW, standing.attempts.version)
        return Failure(second, True, NOW)

    def settle() -> None:
        failure = counting.settle_origin_attempt(SUBJECT, "o", reservation, budget, count)
        counted.append(failure is not None)

    failure = threading.Thread(target=settle)
    failure.start()
    assert paused.started.wait(timeout=10)
    unlock = threading.Thread(target=lambda: operator.clear_origin_lockout([SUBJECT]))
    unlock.start()
    failure.join(timeout=30)
    unlock.join(timeout=30)
    errors = paused.errors + watched.errors
    assert not [e for e in errors if "deadlock" in repr(e.__cause__ or e)], errors
    assert (paused.runs, watched.runs, counted) == (1, 1, [True])  # none run again
    standing = operator.origin_standing(SUBJECT, "o")
    assert standing.attempts.version == 0 and standing.budget_events == ()  # the unlock last


class _PausedAfterReading(_PausedAfterFirstStatement):
    """A transaction paused once it has read the standing (its last read: the reservations)."""

    def execute(self, statement: str, params: Sequence[object] = ()) -> int:
        return int(self._tx.execute(statement, params))

    def fetch_all(self, statement: str, params: Sequence[object] = ()) -> Any:
        rows = self._tx.fetch_all(statement, params)
        if "origin_reservations" in statement and not self._started.is_set():
            self._started.set()
            time.sleep(PAUSE_SECONDS)
        return rows


def test_an_unlock_racing_a_failure_on_a_subject_without_budget_row_waits_for_it(
    postgres_store_url: str, open_test_store: Callable[[str], SqlStore]
) -> None:
    """The subject has no budget row (no unknown origin failed lately: a known origin's
    failures charge none), so an unlock that only deletes finds no row to wait on: it must
    still wait for a failure being counted instead of deleting the counter under it (the
    failure would be lost, its reservation left, and the caller answered with an error)."""
    operator, counting = open_test_store(postgres_store_url), open_test_store(postgres_store_url)
    budget = RateLimit(SUBJECT, 100, DAY)
    fail(operator, SUBJECT, "o", Attempts(1), None, NOW)
    assert operator.origin_standing(SUBJECT, "o").budget_events == ()
    reservation = reserve(counting, SUBJECT, "o", NOW)
    engine = counting._engine
    started = threading.Event()
    errors: list[BaseException] = []

    class _Paused:
        def run(self, work: Callable[[Any], Any], *, write: bool) -> Any:
            return engine.run(
                lambda tx: work(_PausedAfterReading(tx, started, errors, True)), write=write
            )

        def __getattr__(self, name: str) -> Any:
            return getattr(engine, name)

    counting._engine = _Paused()  # type: ignore[assignment]
    counted: list[bool] = []

    def count(standing: Standing) -> Failure:
        seen = standing.attempts
        return Failure(
            OriginAttempts(SUBJECT, "o", Attempts(seen.attempts.failures + 1), NOW, seen.version),
            False,
            NOW,
        )

    def settle() -> None:
        try:
            failure = counting.settle_origin_attempt(SUBJECT, "o", reservation, budget, count)
        except BaseException as exc:
            errors.append(exc)
            raise
        counted.append(failure is not None)

    failure = threading.Thread(target=settle)
    failure.start()
    assert started.wait(timeout=10)
    unlock = threading.Thread(target=lambda: operator.clear_origin_lockout([SUBJECT]))
    unlock.start()
    failure.join(timeout=30)
    unlock.join(timeout=30)
    assert (errors, counted) == ([], [True])
    standing = operator.origin_standing(SUBJECT, "o", NOW - 60)
    assert standing.attempts.version == 0 and standing.in_flight == 0  # the unlock last
