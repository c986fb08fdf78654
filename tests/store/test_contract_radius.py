"""The `Store` contract for the RADIUS front end (migration 8), on SQLite (file and :memory:)
and PostgreSQL: a challenge's State is used up by its answer, only by the NAS it was given to,
and not after it expires; a request is claimed once, its answer then found by every copy
(also by two writers at once), and forgotten once expired or dropped."""

from __future__ import annotations

from support.store_fixtures import race
from support.store_records import MARIO, NOW

from otphsm.core.records import RadiusChallengeKind, RadiusState
from otphsm.store import SqlStore


def radius_state(state: bytes = b"\x00state\xff" * 2, expires_at: int = NOW + 60) -> RadiusState:
    return RadiusState(state, "vpn", MARIO, RadiusChallengeKind.GRID, NOW, expires_at)


def test_a_state_is_taken_once_by_the_nas_it_was_given_to(store: SqlStore) -> None:
    kept = radius_state()
    store.insert_radius_state(kept)
    assert store.take_radius_state(kept.state, "wifi", NOW) is None  # another NAS
    assert store.take_radius_state(kept.state, "vpn", NOW + 1) == kept
    assert store.take_radius_state(kept.state, "vpn", NOW + 2) is None  # used up


def test_an_expired_state_is_not_taken_and_is_purged(store: SqlStore) -> None:
    store.insert_radius_state(radius_state(b"a" * 16, expires_at=NOW + 10))
    store.insert_radius_state(radius_state(b"b" * 16, expires_at=NOW + 100))
    assert store.take_radius_state(b"a" * 16, "vpn", NOW + 10) is None
    assert store.purge_radius(NOW + 10) == 0  # the taken one is gone already
    assert store.purge_radius(NOW + 100) == 1
    assert store.take_radius_state(b"b" * 16, "vpn", NOW) is None


def test_a_request_is_claimed_once_and_its_answer_found_by_its_copies(store: SqlStore) -> None:
    key = "192.0.2.1|1812|7|00ff"
    assert store.claim_radius_answer(key, NOW, NOW + 30) == (True, None)
    assert store.claim_radius_answer(key, NOW + 1, NOW + 31) == (False, None)  # in progress
    store.save_radius_answer(key, b"\x02\x07answer\x00")
    assert store.claim_radius_answer(key, NOW + 2, NOW + 32) == (False, b"\x02\x07answer\x00")
    # once expired, the same request is new again
    assert store.claim_radius_answer(key, NOW + 30, NOW + 60) == (True, None)


def test_a_dropped_claim_is_handled_afresh(store: SqlStore) -> None:
    key = "192.0.2.1|1812|8|00ff"
    assert store.claim_radius_answer(key, NOW, NOW + 30) == (True, None)
    store.drop_radius_answer(key)
    assert store.claim_radius_answer(key, NOW, NOW + 30) == (True, None)


def test_of_two_writers_claiming_one_request_exactly_one_wins(store: SqlStore) -> None:
    wins = race(8, lambda: store.claim_radius_answer("k|1|1|aa", NOW, NOW + 30)[0])
    assert sorted(wins) == [False] * 7 + [True]


def test_answers_are_purged_once_expired_and_stay_out_of_the_snapshot(store: SqlStore) -> None:
    before = store.snapshot()
    store.claim_radius_answer("old", NOW, NOW + 30)
    store.claim_radius_answer("new", NOW, NOW + 90)
    store.insert_radius_state(radius_state())
    assert store.snapshot() == before
    assert store.purge_radius(NOW + 30) == 1
    assert store.claim_radius_answer("new", NOW + 31, NOW + 61) == (False, None)
