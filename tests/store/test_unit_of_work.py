"""`Store.transaction()`, the unit of work, on SQLite and PostgreSQL: what a block writes is
committed once when it ends, or not at all if it raises; a nested block joins; a store method
that writes several rows stays all or nothing inside it; audit appends in concurrent units of
work still form one chain. Also the resident seed references the orphan sweep compares with
the HSM (`core/app/seeds.py`)."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
from support.store_fixtures import chained_entry, race
from support.store_records import LAURA, NOW, activation, authorisation, token

from otphsm.core.ports import Conflict
from otphsm.core.seeds import SeedRef, SeedStorage
from otphsm.core.tokens import TokenState
from otphsm.store import SqlStore


class Abandon(Exception):
    pass


def test_a_unit_of_work_commits_every_write_at_once(store: SqlStore) -> None:
    store.insert_authorisation(authorisation())
    with store.transaction() as work:
        assert work.consume_authorisation("au-1", NOW) is not None
        work.insert_token(token())
        work.insert_activation(activation())
        work.append_audit(chained_entry)
        assert work.get_token("TOK-0001") is not None  # the block reads its own writes
    found = store.get_authorisation("au-1")
    assert found is not None and found.used_at == NOW
    assert store.get_token("TOK-0001") is not None
    assert store.get_activation("ac-1") is not None
    assert [e.seq for e in store.audit_entries()] == [1]


def test_a_unit_of_work_that_raises_writes_nothing(store: SqlStore) -> None:
    store.insert_authorisation(authorisation())
    before = store.snapshot()
    with pytest.raises(Abandon), store.transaction() as work:
        work.consume_authorisation("au-1", NOW)
        work.insert_token(token())
        work.append_audit(chained_entry)
        raise Abandon
    assert store.snapshot() == before


def test_a_conflict_inside_ends_the_unit_of_work_with_its_message(store: SqlStore) -> None:
    store.insert_token(token())
    before = store.snapshot()
    with pytest.raises(Conflict, match="TOK-0001 already exists"), store.transaction() as work:
        work.insert_activation(activation())
        work.insert_token(token())
    assert store.snapshot() == before


def test_a_nested_unit_of_work_joins_the_outer_one(store: SqlStore) -> None:
    before = store.snapshot()
    with pytest.raises(Abandon), store.transaction() as work:
        with work.transaction() as inner:
            inner.insert_token(token())
        assert work.get_token("TOK-0001") is not None
        raise Abandon
    assert store.snapshot() == before


def test_update_tokens_inside_a_unit_of_work_is_still_all_or_nothing(store: SqlStore) -> None:
    first, second = token("TOK-A"), token("TOK-B", LAURA)
    store.insert_token(first)
    store.insert_token(second)
    store.update_token(replace(second, failures=1))
    with store.transaction() as work:
        stale_pair = [replace(first, failures=5), replace(second, failures=5)]
        assert work.update_tokens(stale_pair) is False
        work.insert_activation(activation())  # the block goes on after a lost race
    written = store.get_token("TOK-A")
    assert written is not None and written.failures == 0
    assert store.get_activation("ac-1") is not None


def test_audit_appends_in_concurrent_units_of_work_form_one_chain(store: SqlStore) -> None:
    for index in range(8):
        store.insert_token(token(f"TOK-{index}"))
    numbers = itertools.count()  # next() on it is atomic

    def work() -> bool:
        serial = f"TOK-{next(numbers)}"
        with store.transaction() as tx:
            current = tx.get_token(serial)
            assert current is not None
            written = tx.update_token(replace(current, failures=1))
            tx.append_audit(chained_entry)
        return written

    assert race(8, work) == [True] * 8
    entries = list(store.audit_entries())
    assert [e.seq for e in entries] == list(range(1, 9))
    assert all(e.details["built_after"] == e.seq - 1 for e in entries)


def test_resident_seed_ids_name_every_resident_reference_of_tokens_and_cards(
    store: SqlStore,
) -> None:
    resident = SeedRef(SeedStorage.RESIDENT, b"\x01" * 16)
    store.insert_token(token("TOK-R", seed=resident, state=TokenState.REVOKED))
    store.insert_token(token("TOK-W", LAURA, seed=SeedRef(SeedStorage.WRAPPED, b"blob")))
    assert store.resident_seed_ids() == {b"\x01" * 16}


def test_the_outer_store_refuses_work_while_this_thread_has_a_unit_of_work_open(
    store: SqlStore,
) -> None:
    """It would wait for the unit of work's own lock: a programming error, said at once."""
    before = store.snapshot()
    with pytest.raises(RuntimeError, match="use the store it yielded"), store.transaction():
        store.insert_token(token())
    assert store.snapshot() == before
    store.insert_token(token())  # closed again


def test_a_conflict_the_block_catches_leaves_the_unit_of_work_usable(store: SqlStore) -> None:
    store.insert_token(token())
    with store.transaction() as work:
        with pytest.raises(Conflict):
            work.insert_token(token())
        work.insert_activation(activation())  # PostgreSQL has not aborted the transaction
    assert store.get_activation("ac-1") is not None
