"""The store's part in KEK rotation, on every engine: wrapped seeds listed by the KEK that
wraps them (page by page, NULL counting as the first KEK's when asked), and a re-wrap written
only over the same blob under the same KEK, bumping the version."""

from __future__ import annotations

from dataclasses import replace

from support.store_records import MARIO, token

from otphsm.core.seeds import SeedHolder, SeedRef, SeedStorage, StoredSeed
from otphsm.core.tokens import TokenKind
from otphsm.store import SqlStore
from tests.store.test_contract_factors import grid_card

OLD = "otphsm-kek"
NEW = "otphsm-kek-2"


def _wrapped(blob: bytes, kek: str | None) -> SeedRef:
    return SeedRef(SeedStorage.WRAPPED, blob, kek)


def _serials(found: list[StoredSeed]) -> list[str]:
    return [stored.serial for stored in found]


def test_seeds_are_listed_by_their_kek_in_pages(store: SqlStore) -> None:
    store.insert_token(token("T-1", seed=_wrapped(b"a", None)))
    store.insert_token(token("T-2", "BNCLGU80A01H501X", seed=_wrapped(b"b", OLD)))
    store.insert_token(
        token("T-3", "VRDGPP80A01H501Y", kind=TokenKind.PHYSICAL, seed=_wrapped(b"c", NEW))
    )
    store.insert_token(
        token(
            "T-4",
            "VRDGPP80A01H501Y",
            seed=SeedRef(SeedStorage.RESIDENT, b"id"),
            kind=TokenKind.PHYSICAL,
        )
    )
    store.insert_token(token("T-5", "NRIMRA80A01H501Z", seed=None))
    list_old = store.seeds_wrapped_under
    assert _serials(list_old(SeedHolder.TOKEN, OLD, unlabelled=True, after="", limit=10)) == [
        "T-1",
        "T-2",
    ]
    assert _serials(list_old(SeedHolder.TOKEN, OLD, unlabelled=False, after="", limit=10)) == [
        "T-2"
    ]
    first = list_old(SeedHolder.TOKEN, OLD, unlabelled=True, after="", limit=1)
    assert first == [StoredSeed(SeedHolder.TOKEN, "T-1", _wrapped(b"a", None))]
    assert _serials(list_old(SeedHolder.TOKEN, OLD, unlabelled=True, after="T-1", limit=1)) == [
        "T-2"
    ]
    assert _serials(list_old(SeedHolder.TOKEN, NEW, unlabelled=False, after="", limit=10)) == [
        "T-3"
    ]


def test_a_rewrap_is_written_only_over_the_same_blob_under_the_same_kek(
    store: SqlStore,
) -> None:
    store.insert_token(token("T-1", seed=_wrapped(b"a", None)))
    [stored] = store.seeds_wrapped_under(SeedHolder.TOKEN, OLD, unlabelled=True, after="", limit=5)
    before = store.get_token("T-1")
    assert before is not None
    assert store.rewrap_seed(stored, _wrapped(b"A", NEW))
    after = store.get_token("T-1")
    assert after is not None
    assert after.seed == _wrapped(b"A", NEW) and after.version == before.version + 1
    # again (a rerun after a crash that came after the write): nothing to do, refused
    assert not store.rewrap_seed(stored, _wrapped(b"A2", NEW))
    assert (
        store.seeds_wrapped_under(SeedHolder.TOKEN, OLD, unlabelled=True, after="", limit=5) == []
    )
    # a writer holding the version read before the rewrap can no longer put the old blob back
    assert not store.update_token(replace(before, failures=1))
    found = store.get_token("T-1")
    assert found is not None and found.seed == _wrapped(b"A", NEW)


def test_grid_card_keys_rotate_too(store: SqlStore) -> None:
    store.insert_grid_card(grid_card(key=_wrapped(b"k", OLD)))
    [stored] = store.seeds_wrapped_under(
        SeedHolder.GRID_CARD, OLD, unlabelled=False, after="", limit=5
    )
    assert stored.serial == "GRID-0001"
    assert store.rewrap_seed(stored, _wrapped(b"K", NEW))
    card = store.get_grid_card("GRID-0001")
    assert card is not None and card.key == _wrapped(b"K", NEW)
    assert (
        store.seeds_wrapped_under(SeedHolder.GRID_CARD, OLD, unlabelled=True, after="", limit=5)
        == []
    )
    assert card.codice_fiscale == MARIO
