"""The `Store` contract for the second factors (migration 2): login-code prefixes on citizens,
rate-limit buckets and Security Cards, on SQLite (file and :memory:) and PostgreSQL."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from support.store_fixtures import race
from support.store_records import LAURA, MARIO, NOW, citizen

from otphsm.core.ports import Conflict
from otphsm.core.records import GridCard, GridCardState, RateLimit
from otphsm.core.seeds import SeedRef, SeedStorage
from otphsm.store import SqlStore, open_store
from otphsm.store import schema as schema_module
from otphsm.store.schema import MIGRATIONS

OpenStore = Callable[[str], SqlStore]


def grid_card(serial: str = "GRID-0001", codice_fiscale: str = MARIO, **changes: Any) -> GridCard:
    base = GridCard(
        serial=serial,
        codice_fiscale=codice_fiscale,
        key=SeedRef(SeedStorage.WRAPPED, b"\x00wrapped\xffcard key"),
        cells=50,
        cell_digits=3,
        state=GridCardState.ACTIVE,
        created_at=NOW,
    )
    return replace(base, **changes)


# citizens


def test_a_code_prefix_mac_round_trips_and_survives_an_upsert(store: SqlStore) -> None:
    with_prefix = citizen(code_prefix_mac=b"\x00mac\xff" * 8)
    store.upsert_citizen(with_prefix)
    assert store.get_citizen(MARIO) == with_prefix
    store.upsert_citizen(replace(with_prefix, code_prefix_mac=None, updated_at=NOW + 1))
    found = store.get_citizen(MARIO)
    assert found is not None and found.code_prefix_mac is None


def test_a_version_1_database_is_upgraded_in_place(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = open_store(store_url)
    assert isinstance(old, SqlStore)
    try:
        with monkeypatch.context() as patched:
            patched.setattr(schema_module, "MIGRATIONS", schema_module.MIGRATIONS[:1])
            old.migrate()
        old._engine.run(
            lambda tx: tx.execute(
                "INSERT INTO citizens VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    MARIO,
                    "Mario",
                    "Rossi",
                    "1980-01-01",
                    "M",
                    "L378",
                    "7430010024925855",
                    "0a1b2c",
                    "CN=Test CNS CA",
                    NOW,
                    NOW,
                    "+393331234567",
                ),
            ),
            write=True,
        )
        old.migrate()
        assert [version for version, _ in old.applied_migrations()] == [
            migration.version for migration in MIGRATIONS
        ]
        assert old.get_citizen(MARIO) == citizen()
        old.ping()
    finally:
        old.close()


# rate limits


def test_a_bucket_grants_its_limit_per_sliding_window(store: SqlStore) -> None:
    three = [RateLimit("citizen:X", 3, 600)]
    assert [store.take_rate_slots(three, NOW + t) for t in (0, 100, 200)] == [0, 0, 0]
    before = store.snapshot()
    assert store.take_rate_slots(three, NOW + 300) == 300  # the first leaves at NOW + 600
    assert store.snapshot() == before
    assert store.take_rate_slots(three, NOW + 599) == 1
    assert store.take_rate_slots(three, NOW + 600) == 0
    assert store.take_rate_slots(three, NOW + 601) == 99  # now the second is oldest
    assert store.take_rate_slots([RateLimit("citizen:Y", 3, 600)], NOW + 601) == 0


def test_several_buckets_are_taken_all_or_nothing(store: SqlStore) -> None:
    citizen_x = RateLimit("citizen:X", 3, 600)
    caller = RateLimit("caller:portal", 2, 60)
    assert store.take_rate_slots([citizen_x, caller], NOW) == 0
    assert store.take_rate_slots([citizen_x, caller], NOW + 1) == 0
    before = store.snapshot()
    assert store.take_rate_slots([citizen_x, caller], NOW + 2) == 58
    assert store.snapshot() == before  # the citizen's bucket was not charged either
    assert store.take_rate_slots([citizen_x, caller], NOW + 60) == 0
    assert store.take_rate_slots([citizen_x], NOW + 61) == 539


def test_a_limit_of_zero_is_no_limit(store: SqlStore) -> None:
    unlimited = [RateLimit("caller:batch", 0, 60)]
    assert all(store.take_rate_slots(unlimited, NOW) == 0 for _ in range(20))
    assert store.snapshot()["rate_limits"] == []


def test_racing_takers_on_two_stores_share_exactly_the_limit(
    shared_store_url: str, open_test_store: OpenStore
) -> None:
    """Twelve threads over two stores on one database (two replicas) race for 5 slots."""
    stores = itertools.cycle([open_test_store(shared_store_url), open_test_store(shared_store_url)])
    lock = threading.Lock()
    limits = [RateLimit("caller:portal", 5, 60), RateLimit("citizen:X", 7, 600)]

    def take() -> bool:
        with lock:
            store = next(stores)
        return store.take_rate_slots(limits, NOW) == 0

    assert race(12, take).count(True) == 5


# failed-check buckets (GCRA: a bucket is the instant it is full again)

MS = 1000 * NOW


def test_a_failure_bucket_moves_by_its_cost_from_now_and_stops_at_its_cap(store: SqlStore) -> None:
    assert store.failure_bucket_full_at("CN=portal") == 0  # never drained
    assert store.drain_failure_bucket("CN=portal", MS, 100, 250) == MS + 100
    assert store.drain_failure_bucket("CN=portal", MS, 100, 250) == MS + 200
    assert store.drain_failure_bucket("CN=portal", MS, 100, 250) == MS + 250  # capped
    assert store.drain_failure_bucket("CN=portal", MS + 10, 100, 250) == MS + 260
    assert store.failure_bucket_full_at("CN=portal") == MS + 260
    # once full again, a failure counts from now, not from the stale instant
    assert store.drain_failure_bucket("CN=portal", MS + 5000, 100, 250) == MS + 5100
    assert store.failure_bucket_full_at("CN=other") == 0


def test_failure_buckets_stay_out_of_the_snapshot(store: SqlStore) -> None:
    before = store.snapshot()
    store.drain_failure_bucket("CN=portal", MS, 100, 1000)
    assert store.snapshot() == before


def test_racing_failures_on_two_stores_all_count(
    shared_store_url: str, open_test_store: OpenStore
) -> None:
    """Twelve threads over two stores on one database (two replicas) charge one bucket."""
    first, second = open_test_store(shared_store_url), open_test_store(shared_store_url)
    stores = itertools.cycle([first, second])
    lock = threading.Lock()

    def drain() -> bool:
        with lock:
            store = next(stores)
        return store.drain_failure_bucket("CN=portal", MS, 100, 10**6) > MS

    assert all(race(12, drain))
    assert second.failure_bucket_full_at("CN=portal") == MS + 1200


# Security Cards


def test_grid_card_round_trip_keeps_every_field(store: SqlStore) -> None:
    full = grid_card(
        key=SeedRef(SeedStorage.RESIDENT, b"\x01cka-id"),
        cells=100,
        cell_digits=6,
        challenge=(3, 41),
        challenge_expires_at=NOW + 300,
        last_pair=(3, 41),
        failures=2,
        lock_level=1,
        locked_until=NOW + 60,
        version=4,
    )
    assert store.insert_grid_card(full) == []
    assert store.get_grid_card(full.serial) == full
    assert store.get_grid_card("GRID-FFFF") is None
    with pytest.raises(Conflict, match="GRID-0001"):
        store.insert_grid_card(replace(full, codice_fiscale=LAURA))


def test_a_new_card_revokes_the_active_one_in_the_same_write(store: SqlStore) -> None:
    first = grid_card("GRID-0001", challenge=(1, 2), challenge_expires_at=NOW + 300)
    store.insert_grid_card(first)
    store.insert_grid_card(grid_card("GRID-LAURA", LAURA))
    second = grid_card("GRID-0002", created_at=NOW + 50)
    assert store.insert_grid_card(second) == [first]
    assert store.get_grid_card("GRID-0001") == replace(
        first,
        state=GridCardState.REVOKED,
        revoked_at=NOW + 50,
        challenge=None,
        challenge_expires_at=0,
        version=1,
    )
    assert [(c.serial, c.state) for c in store.grid_cards_of(MARIO)] == [
        ("GRID-0001", GridCardState.REVOKED),
        ("GRID-0002", GridCardState.ACTIVE),
    ]
    assert [c.serial for c in store.grid_cards_of(LAURA)] == ["GRID-LAURA"]
    assert store.grid_cards_of("NOBODY") == []


def test_the_database_refuses_a_second_active_card(store: SqlStore) -> None:
    store.insert_grid_card(grid_card("GRID-0002", state=GridCardState.REVOKED))
    store.insert_grid_card(grid_card("GRID-0001"))
    before = store.snapshot()
    with pytest.raises(Conflict):
        store._engine.run(
            lambda tx: tx.execute(
                "INSERT INTO grid_cards SELECT 'GRID-0003', codice_fiscale, key_storage, "
                "key_data, cells, cell_digits, state, created_at, revoked_at, challenge_first, "
                "challenge_second, challenge_expires_at, last_first, last_second, failures, "
                "lock_level, locked_until, version, key_kek "
                "FROM grid_cards WHERE serial = 'GRID-0001'"
            ),
            write=True,
        )
    assert store.snapshot() == before


def test_update_grid_card_is_conditional_on_the_version(store: SqlStore) -> None:
    original = grid_card()
    store.insert_grid_card(original)
    asked = replace(original, challenge=(7, 9), challenge_expires_at=NOW + 300, last_pair=(7, 9))
    assert store.update_grid_card(asked) is True
    assert store.update_grid_card(replace(original, failures=1)) is False
    assert store.update_grid_card(grid_card("GRID-MISSING")) is False
    assert store.get_grid_card(original.serial) == replace(asked, version=1)
    outcomes = race(8, lambda: store.update_grid_card(replace(asked, version=1, failures=1)))
    assert outcomes.count(True) == 1
