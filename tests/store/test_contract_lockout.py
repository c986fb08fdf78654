"""The lockout state in the store (migrations 4 and 7), on SQLite and PostgreSQL: a failure
counted over the counter as it stands, reservations in flight seen until settled, the
unknown origins' budget never holding more than its limit (also under racing writers on two
stores), known origins remembered and forgotten, old rows deleted as the same subject is
written again, a code accepted written with its success or not at all."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import replace

from support.lockout_store import fail, reserve
from support.store_fixtures import race
from support.store_records import NOW, citizen, token

from otphsm.core.lockout import Failure, OriginAttempts, Refusal, Standing, Success
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


def test_a_failure_is_counted_over_the_counter_as_it_stands(store: SqlStore) -> None:
    read = fail(store, SUBJECT, ORIGIN, Attempts(1), None, NOW)
    assert read == Standing(OriginAttempts(SUBJECT, ORIGIN))  # its own reservation is gone
    assert store.origin_standing(SUBJECT, ORIGIN).attempts == counter(1, version=1)
    locked = Attempts(0, 1, NOW + 60)
    assert fail(store, SUBJECT, ORIGIN, locked, None, NOW + 1).attempts == counter(1, version=1)
    assert store.origin_standing(SUBJECT, ORIGIN).attempts == OriginAttempts(
        SUBJECT, ORIGIN, locked, NOW + 1, 2
    )
    assert store.origin_standing(SUBJECT, "other").attempts.version == 0  # per origin
    assert store.origin_standing("token:TOK-0002", ORIGIN).attempts.version == 0  # per subject


def test_reservations_are_seen_until_settled_and_stale_ones_go(store: SqlStore) -> None:
    mine = reserve(store, SUBJECT, ORIGIN, NOW)
    reserve(store, SUBJECT, "other", NOW)
    reserve(store, SUBJECT, ORIGIN, NOW, charges=False)  # a known origin's
    standing = store.origin_standing(SUBJECT, ORIGIN)
    assert (standing.in_flight, standing.budget_in_flight) == (2, 2)
    assert store.origin_standing(SUBJECT, "other").in_flight == 1
    assert store.origin_standing("token:TOK-0002", ORIGIN).in_flight == 0  # per subject
    before = store.snapshot()
    assert store.settle_origin_attempt(SUBJECT, ORIGIN, mine, budget(), None) is None
    after = store.snapshot()
    assert len(after["origin_reservations"]) == 2 and after["origin_attempts"] == []
    assert {k: v for k, v in after.items() if k != "origin_reservations"} == {
        k: v for k, v in before.items() if k != "origin_reservations"
    }  # a settlement that is no failure counts nowhere
    assert store.origin_standing(SUBJECT, ORIGIN, reserved_since=NOW + 1).in_flight == 0
    reserve(store, SUBJECT, "late", NOW + 100)
    assert store.reserve_origin_attempt(SUBJECT, ORIGIN, NOW + 50, NOW + 100, lambda _: Refusal(1))
    assert [row[2] for row in store.snapshot()["origin_reservations"]] == ["late"]


def test_the_budget_keeps_at_most_its_limit_within_the_window(store: SqlStore) -> None:
    for t in range(5):
        fail(store, SUBJECT, ORIGIN, None, budget(3, 600), NOW + t)
    assert store.origin_standing(SUBJECT, ORIGIN).budget_events == (NOW, NOW + 1, NOW + 2)
    fail(store, SUBJECT, ORIGIN, None, budget(3, 600), NOW + 600)
    assert store.origin_standing(SUBJECT, "").budget_events == (NOW + 1, NOW + 2, NOW + 600)
    assert store.origin_standing("token:TOK-0002", "").budget_events == ()


def test_a_success_makes_the_origin_known_and_clears_its_counter_only(store: SqlStore) -> None:
    fail(store, SUBJECT, ORIGIN, Attempts(2), budget(), NOW)
    fail(store, SUBJECT, "other", Attempts(1), budget(), NOW)
    own = reserve(store, SUBJECT, ORIGIN, NOW + 5)
    store.origin_succeeded(SUBJECT, ORIGIN, NOW + 5, forget_before=0, reservation_id=own)
    known = store.origin_standing(SUBJECT, ORIGIN)
    assert known.last_success_at == NOW + 5 and known.attempts.version == 0
    assert known.in_flight == 0  # its own reservation went with it
    assert known.budget_events == (NOW, NOW)  # a success refills nothing
    assert store.origin_standing(SUBJECT, "other").attempts.attempts.failures == 1
    assert store.origin_standing(SUBJECT, "other").last_success_at is None
    assert store.origin_standing("token:TOK-0002", ORIGIN).last_success_at is None
    store.origin_succeeded(SUBJECT, ORIGIN, NOW + 9, forget_before=0)
    assert store.origin_standing(SUBJECT, ORIGIN).last_success_at == NOW + 9


def test_a_token_written_with_its_success_writes_both_or_neither(store: SqlStore) -> None:
    """A code accepted: the token's conditional write and the lockout's success in one
    transaction; a token another request wrote first writes neither."""
    store.upsert_citizen(citizen())
    store.insert_token(token())
    stored = store.get_token("TOK-0001")
    assert stored is not None
    fail(store, SUBJECT, ORIGIN, Attempts(2), budget(), NOW)
    own, bare = reserve(store, SUBJECT, ORIGIN, NOW + 5), reserve(store, SUBJECT, "", NOW + 5)
    stale = replace(stored, moving_factor=7, version=stored.version + 1)
    success = Success(SUBJECT, ORIGIN, own, NOW + 5, 0)
    assert not store.update_token_succeeded(stale, success)
    before = store.origin_standing(SUBJECT, ORIGIN)
    assert (before.last_success_at, before.attempts.attempts.failures) == (None, 2)
    assert before.in_flight == 1 and before.budget_in_flight == 2  # both reservations stay

    assert store.update_token_succeeded(replace(stored, moving_factor=7), success)
    written = store.get_token("TOK-0001")
    assert written is not None and written.moving_factor == 7
    known = store.origin_standing(SUBJECT, ORIGIN)
    assert known.last_success_at == NOW + 5 and known.attempts.version == 0
    assert known.in_flight_ids == frozenset({bare})  # its own reservation went with it
    assert known.budget_events == (NOW,)  # a success refills nothing

    assert store.update_token_succeeded(
        replace(written, moving_factor=8), Success(SUBJECT, "", bare, NOW + 6, 0)
    )
    assert store.origin_standing(SUBJECT, "").in_flight_ids == frozenset()  # no origin: only
    assert store.origin_standing(SUBJECT, "").last_success_at is None  # the reservation goes


def test_old_rows_go_when_the_subject_is_written_again(store: SqlStore) -> None:
    store.origin_succeeded(SUBJECT, "old-device", NOW, forget_before=0)
    fail(store, SUBJECT, "idle", Attempts(1), budget(), NOW)
    fail(store, SUBJECT, "locked", Attempts(0, 5, NOW + 2 * DAY), budget(), NOW)
    later = NOW + DAY + 1
    fail(store, SUBJECT, "new", Attempts(1), budget(), later)
    origins = {row[1] for row in store.snapshot()["origin_attempts"]}
    assert origins == {"locked", "new"}  # the idle one went; a running lock stays
    store.origin_succeeded(SUBJECT, ORIGIN, NOW + 91 * DAY, forget_before=NOW + DAY)
    assert [row[1] for row in store.snapshot()["known_origins"]] == [ORIGIN]


def test_a_success_remembers_its_origin_anew_when_its_own_row_had_gone_stale(
    store: SqlStore,
) -> None:
    store.origin_succeeded(SUBJECT, ORIGIN, NOW, forget_before=0)
    store.origin_succeeded(SUBJECT, "old-device", NOW, forget_before=0)
    store.origin_succeeded(SUBJECT, "recent", NOW + 90 * DAY, forget_before=0)
    fail(store, SUBJECT, ORIGIN, Attempts(2), budget(), NOW + 90 * DAY)
    own = reserve(store, SUBJECT, ORIGIN, NOW + 91 * DAY)
    later = NOW + 91 * DAY
    store.origin_succeeded(SUBJECT, ORIGIN, later, forget_before=NOW + DAY, reservation_id=own)
    known = {row[1]: row[2] for row in store.snapshot()["known_origins"]}
    assert known == {ORIGIN: later, "recent": NOW + 90 * DAY}
    standing = store.origin_standing(SUBJECT, ORIGIN)
    assert standing.attempts.version == 0 and standing.in_flight == 0


def test_racing_failures_over_two_stores_count_each_once(
    shared_store_url: str, open_test_store: OpenStore
) -> None:
    """Ten threads over two stores (two replicas) each reserve an attempt and settle it as one
    more failure of one origin, as the gate does; the budget of 6 takes exactly 6."""
    stores = itertools.cycle([open_test_store(shared_store_url), open_test_store(shared_store_url)])
    lock = threading.Lock()

    def fail_once() -> bool:
        with lock:
            store = next(stores)
        reservation = reserve(store, SUBJECT, ORIGIN, NOW)

        def count(standing: Standing) -> Failure:
            current = standing.attempts
            bumped = Attempts(current.attempts.failures + 1)
            return Failure(OriginAttempts(SUBJECT, ORIGIN, bumped, NOW, current.version), True, NOW)

        return (
            store.settle_origin_attempt(SUBJECT, ORIGIN, reservation, budget(6), count) is not None
        )

    assert race(10, fail_once) == [True] * 10
    standing = next(stores).origin_standing(SUBJECT, ORIGIN)
    assert standing.attempts.attempts.failures == 10 and standing.attempts.version == 10
    assert standing.budget_events == (NOW,) * 6
    assert standing.in_flight == 0


def test_an_unlock_clears_counters_and_budgets_of_the_subjects_given(store: SqlStore) -> None:
    other = "citizen:RSSMRA80A01L378S"
    for subject in (SUBJECT, other, "token:TOK-0002"):
        fail(store, subject, ORIGIN, Attempts(1), RateLimit(subject, 3, DAY), NOW)
    store.origin_succeeded(SUBJECT, "home", NOW, forget_before=0)
    store.clear_origin_lockout([SUBJECT, other])
    for subject in (SUBJECT, other):
        assert store.origin_standing(subject, ORIGIN) == Standing(OriginAttempts(subject, ORIGIN))
    assert store.origin_standing(SUBJECT, "home").last_success_at == NOW  # still known
    kept = store.origin_standing("token:TOK-0002", ORIGIN)
    assert kept.attempts.version == 1 and kept.budget_events == (NOW,)
