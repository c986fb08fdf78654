"""The `Store` contract for an operator's listings, on SQLite (file and :memory:) and
PostgreSQL: tokens by any mix of filters in (created_at, serial) order, a page at a time from
where the last page ended, and the audit log from a seq or a time, in seq order."""

from __future__ import annotations

import functools

from support.store_fixtures import chained_entry
from support.store_records import LAURA, MARIO, NOW, token

from otphsm.core.tokens import Token, TokenKind, TokenQuery, TokenState
from otphsm.store import SqlStore

FOB = {"kind": TokenKind.PHYSICAL, "state": TokenState.SUSPENDED}


def fill(store: SqlStore) -> list[Token]:
    """Seven tokens of two citizens and the inventory, inserted out of order; two share a
    creation time so the serial breaks the tie."""
    tokens = [
        token("MOB-0003", MARIO, created_at=NOW + 30, state=TokenState.ACTIVE),
        token("MOB-0001", MARIO, created_at=NOW + 10, state=TokenState.REVOKED),
        token("MOB-0002", LAURA, created_at=NOW + 20, state=TokenState.ACTIVE),
        token("FOB-0002", "", created_at=NOW + 5, **FOB),
        token("FOB-0001", "", created_at=NOW + 5, **FOB),
        token("FOB-0003", LAURA, created_at=NOW + 40, kind=TokenKind.PHYSICAL),
        token("MOB-0004", LAURA, created_at=NOW + 50, state=TokenState.SUSPENDED),
    ]
    for each in tokens:
        store.insert_token(each)
    return tokens


def serials(found: list[Token]) -> list[str]:
    return [t.serial for t in found]


def test_every_token_is_listed_oldest_first_serial_breaking_ties(store: SqlStore) -> None:
    fill(store)
    listed = store.list_tokens(TokenQuery(), None, 100)
    assert serials(listed) == [
        "FOB-0001",
        "FOB-0002",
        "MOB-0001",
        "MOB-0002",
        "MOB-0003",
        "FOB-0003",
        "MOB-0004",
    ]
    assert listed[0] == store.get_token("FOB-0001")  # whole records, as stored


def test_filters_combine(store: SqlStore) -> None:
    fill(store)
    find = functools.partial(store.list_tokens, after=None, limit=100)
    assert serials(find(TokenQuery(codice_fiscale=MARIO))) == ["MOB-0001", "MOB-0003"]
    assert serials(find(TokenQuery(state=TokenState.ACTIVE))) == ["MOB-0002", "MOB-0003"]
    assert serials(find(TokenQuery(kind=TokenKind.PHYSICAL))) == [
        "FOB-0001",
        "FOB-0002",
        "FOB-0003",
    ]
    assert serials(find(TokenQuery(kind=TokenKind.PHYSICAL, assigned=False))) == [
        "FOB-0001",
        "FOB-0002",
    ]
    assert serials(find(TokenQuery(kind=TokenKind.PHYSICAL, assigned=True))) == ["FOB-0003"]
    assert serials(find(TokenQuery(codice_fiscale=""))) == ["FOB-0001", "FOB-0002"]
    laura_suspended = TokenQuery(codice_fiscale=LAURA, state=TokenState.SUSPENDED)
    assert serials(find(laura_suspended)) == ["MOB-0004"]
    assert find(TokenQuery(codice_fiscale=MARIO, kind=TokenKind.PHYSICAL)) == []


def test_pages_go_on_after_the_last_token_shown(store: SqlStore) -> None:
    fill(store)
    pages: list[list[str]] = []
    after = None
    while True:
        page = store.list_tokens(TokenQuery(), after, 3)
        if not page:
            break
        pages.append(serials(page))
        after = (page[-1].created_at, page[-1].serial)
    assert pages == [
        ["FOB-0001", "FOB-0002", "MOB-0001"],
        ["MOB-0002", "MOB-0003", "FOB-0003"],
        ["MOB-0004"],
    ]
    # A token inserted meanwhile before where a page ended does not shift the next page.
    store.insert_token(token("FOB-0000", "", created_at=NOW + 5, **FOB))
    again = store.list_tokens(TokenQuery(), (NOW + 5, "FOB-0002"), 2)
    assert serials(again) == ["MOB-0001", "MOB-0002"]


def test_audit_pages_from_a_seq_or_a_time(store: SqlStore) -> None:
    for at in (100, 200, 300, 400, 500):
        store.append_audit(functools.partial(chained_entry, at=at))
    every = list(store.audit_entries())
    assert store.audit_page(0, 0, 10) == every
    assert [e.seq for e in store.audit_page(3, 0, 10)] == [3, 4, 5]
    assert [e.seq for e in store.audit_page(0, 300, 10)] == [3, 4, 5]
    assert [e.seq for e in store.audit_page(0, 301, 10)] == [4, 5]
    assert [e.seq for e in store.audit_page(2, 0, 2)] == [2, 3]
    assert [e.seq for e in store.audit_page(5, 400, 10)] == [5]
    assert store.audit_page(6, 0, 10) == []
