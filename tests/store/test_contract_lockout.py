"""The lockout state in the store (migration 4), on SQLite and PostgreSQL: an origin's counter
written only over the version read, the unknown origins' budget never holding more than its
limit (also under racing writers on two stores), known origins remembered and forgotten, old
rows deleted as the same subject is written again."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable

from support.store_fixtures import race
from support.store_records import NOW

from otphsm.core.lockout import OriginAttempts, Standing
from otphsm.core.records import RateLimit
from otphsm.core.verification import Attempts
from otphsm.store import SqlStore

OpenStore = Callable[[str], SqlStore]
SUBJECT = "token:TOK-0001"
ORIGIN = "203.0.113.7"
DAY = 86400


def counter(
    failures: int, version: int = 0, *, origin: str = ORIGIN, at: int = NOW
) -> OriginAttempts:
    return OriginAttempts(SUBJECT, origin, Attempts(failures, 0, 0), at, version)


def budget(limit: int = 3, window: int = DAY) -> RateLimit:
    return RateLimit(SUBJECT, limit, window)


def test_an_unseen_origin_stands_clean(store: SqlStore) -> None:
    assert store.origin_standing(SUBJECT, ORIGIN) == Standing(OriginAttempts(SUBJECT, ORIGIN))
    assert store.origin_standing(SUBJECT, "") == Standing(OriginAttempts(SUBJECT, ""))


def test_a_counter_is_written_only_over_the_version_read(store: SqlStore) -> None:
    assert store.record_origin_failure(SUBJECT, counter(1), None, NOW)
    stored = store.origin_standing(SUBJECT, ORIGIN).attempts
    assert stored == counter(1, version=1)
    before = store.snapshot()
    assert not store.record_origin_failure(SUBJECT, counter(1), budget(), NOW)  # a stale insert
    assert not store.record_origin_failure(SUBJECT, counter(2, version=5), budget(), NOW)
    assert store.snapshot() == before  # refused: not even the budget was charged
    locked = OriginAttempts(SUBJECT, ORIGIN, Attempts(0, 1, NOW + 60), NOW + 1, 1)
    assert store.record_origin_failure(SUBJECT, locked, None, NOW + 1)
    assert store.origin_standing(SUBJECT, ORIGIN).attempts == OriginAttempts(
        SUBJECT, ORIGIN, Attempts(0, 1, NOW + 60), NOW + 1, 2
    )
    assert store.origin_standing(SUBJECT, "other").attempts.version == 0  # per origin
    assert store.origin_standing("token:TOK-0002", ORIGIN).attempts.version == 0  # per subject


def test_the_budget_keeps_at_most_its_limit_within_the_window(store: SqlStore) -> None:
    for t in range(5):
        assert store.record_origin_failure(SUBJECT, None, budget(3, 600), NOW + t)
    assert store.origin_standing(SUBJECT, ORIGIN).budget_events == (NOW, NOW + 1, NOW + 2)
    assert store.record_origin_failure(SUBJECT, None, budget(3, 600), NOW + 600)
    assert store.origin_standing(SUBJECT, "").budget_events == (NOW + 1, NOW + 2, NOW + 600)
    assert store.origin_standing("token:TOK-0002", "").budget_events == ()


def test_a_success_makes_the_origin_known_and_clears_its_counter_only(store: SqlStore) -> None:
    store.record_origin_failure(SUBJECT, counter(2), budget(), NOW)
    store.record_origin_failure(SUBJECT, counter(1, origin="other"), budget(), NOW)
    store.origin_succeeded(SUBJECT, ORIGIN, NOW + 5, forget_before=0)
    known = store.origin_standing(SUBJECT, ORIGIN)
    assert known.last_success_at == NOW + 5 and known.attempts.version == 0
    assert known.budget_events == (NOW, NOW)  # a success refills nothing
    assert store.origin_standing(SUBJECT, "other").attempts.attempts.failures == 1
    assert store.origin_standing(SUBJECT, "other").last_success_at is None
    assert store.origin_standing("token:TOK-0002", ORIGIN).last_success_at is None
    store.origin_succeeded(SUBJECT, ORIGIN, NOW + 9, forget_before=0)
    assert store.origin_standing(SUBJECT, ORIGIN).last_success_at == NOW + 9


def test_old_rows_go_when_the_subject_is_written_again(store: SqlStore) -> None:
    store.origin_succeeded(SUBJECT, "old-device", NOW, forget_before=0)
    store.record_origin_failure(SUBJECT, counter(1, origin="idle"), budget(), NOW)
    locked = OriginAttempts(SUBJECT, "locked", Attempts(0, 5, NOW + 2 * DAY), NOW, 0)
    store.record_origin_failure(SUBJECT, locked, budget(), NOW)
    later = NOW + DAY + 1
    store.record_origin_failure(SUBJECT, counter(1, origin="new", at=later), budget(), later)
    origins = {row[1] for row in store.snapshot()["origin_attempts"]}
    assert origins == {"locked", "new"}  # the idle one went; a running lock stays
    store.origin_succeeded(SUBJECT, ORIGIN, NOW + 91 * DAY, forget_before=NOW + DAY)
    assert [row[1] for row in store.snapshot()["known_origins"]] == [ORIGIN]


def test_racing_failures_over_two_stores_count_each_once(
    shared_store_url: str, open_test_store: OpenStore
) -> None:
    """Ten threads over two stores (two replicas) each add one failure to one origin's counter,
    re-reading on a refusal as the use cases do; the budget of 6 takes exactly 6."""
    stores = itertools.cycle([open_test_store(shared_store_url), open_test_store(shared_store_url)])
    lock = threading.Lock()

    def fail_once() -> bool:
        with lock:
            store = next(stores)
        for _ in range(50):
            current = store.origin_standing(SUBJECT, ORIGIN).attempts
            bumped = OriginAttempts(
                SUBJECT,
                ORIGIN,
                Attempts(current.attempts.failures + 1),
                NOW,
                current.version,
            )
            if store.record_origin_failure(SUBJECT, bumped, budget(6), NOW):
                return True
        return False

    assert race(10, fail_once) == [True] * 10
    standing = next(stores).origin_standing(SUBJECT, ORIGIN)
    assert standing.attempts.attempts.failures == 10 and standing.attempts.version == 10
    assert standing.budget_events == (NOW,) * 6


def test_an_unlock_clears_counters_and_budgets_of_the_subjects_given(store: SqlStore) -> None:
    other = "citizen:RSSMRA80A01L378S"
    for subject in (SUBJECT, other, "token:TOK-0002"):
        store.record_origin_failure(
            subject, OriginAttempts(subject, ORIGIN, Attempts(1), NOW), budget(), NOW
        )
    store.origin_succeeded(SUBJECT, "home", NOW, forget_before=0)
    store.clear_origin_lockout([SUBJECT, other])
    for subject in (SUBJECT, other):
        assert store.origin_standing(subject, ORIGIN) == Standing(OriginAttempts(subject, ORIGIN))
    assert store.origin_standing(SUBJECT, "home").last_success_at == NOW  # still known
    kept = store.origin_standing("token:TOK-0002", ORIGIN)
    assert kept.attempts.version == 1 and kept.budget_events == (NOW,)
