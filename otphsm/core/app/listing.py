"""What an operator lists: tokens by filters, the fob inventory, the audit log; a page at a
time in the style of AIP-158 (`page_size`, an opaque `page_token`, `next_page_token` empty on
the last page).

A page token names the last row shown and the filters it was made for: a token replayed with
other filters is refused (as AIP-158 asks), and rows written between two pages never shift one
(keyset paging, not offsets). Nothing listed carries a seed or a PIN: tokens and audit entries
as stored, whose details never hold a secret (`App.audit`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from otphsm.core.app.context import App
from otphsm.core.errors import InvalidInput
from otphsm.core.records import AuditEntry
from otphsm.core.tokens import Token, TokenKind, TokenQuery, TokenState

T = TypeVar("T")

TOKENS_PAGE = 50
TOKENS_PAGE_MAX = 500
AUDIT_PAGE = 200
AUDIT_PAGE_MAX = 1000
MAX_PAGE_TOKEN_LENGTH = 200


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: list[T]
    next_page_token: str = ""
    """Empty on the last page."""


def list_tokens(
    app: App, query: TokenQuery, page_size: int = 0, page_token: str = ""
) -> Page[Token]:
    """A page of the tokens `query` matches, oldest first (by creation, then serial)."""
    size = _page_size(page_size, TOKENS_PAGE, TOKENS_PAGE_MAX)
    filters = _fingerprint("tokens", query.codice_fiscale, query.state, query.kind, query.assigned)
    after = _read_token(page_token, filters)
    position = None if after is None else (int(after[0]), str(after[1]))
    found = app.store.list_tokens(query, position, size + 1)
    return _page(found, size, filters, lambda last: [last.created_at, last.serial])


def list_fobs(
    app: App,
    *,
    unassigned_only: bool = False,
    state: TokenState | None = None,
    page_size: int = 0,
    page_token: str = "",
) -> Page[Token]:
    """A page of key fobs: all of them, or only the inventory (assigned to nobody)."""
    query = TokenQuery(
        kind=TokenKind.PHYSICAL, state=state, assigned=False if unassigned_only else None
    )
    return list_tokens(app, query, page_size, page_token)


def audit_entries(
    app: App, *, from_seq: int = 0, since: int = 0, page_size: int = 0, page_token: str = ""
) -> Page[AuditEntry]:
    """A page of the audit log in seq order: entries from `from_seq` on, written at or after
    `since` (Unix seconds). The last page's token is empty; entries appended later are read
    by asking again from the seq after the last one read."""
    if from_seq < 0 or since < 0:
        raise InvalidInput("from_seq and since are not negative")
    size = _page_size(page_size, AUDIT_PAGE, AUDIT_PAGE_MAX)
    filters = _fingerprint("audit", from_seq, since)
    after = _read_token(page_token, filters)
    start = from_seq if after is None else int(after[0]) + 1
    found = app.store.audit_page(start, since, size + 1)
    return _page(found, size, filters, lambda last: [last.seq])


def _page_size(requested: int, default: int, maximum: int) -> int:
    if requested < 0:
        raise InvalidInput("page_size is not negative", field="page_size")
    return min(requested or default, maximum)


def _page(found: Sequence[T], size: int, filters: str, position: Any) -> Page[T]:
    items = list(found[:size])
    if len(found) <= size:
        return Page(items)
    return Page(items, _write_token(filters, position(items[-1])))


def _fingerprint(*filters: object) -> str:
    return hashlib.sha256(repr(filters).encode()).hexdigest()[:16]


def _write_token(filters: str, after: list[Any]) -> str:
    data = json.dumps({"f": filters, "a": after}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _read_token(page_token: str, filters: str) -> list[Any] | None:
    if not page_token:
        return None
    if len(page_token) > MAX_PAGE_TOKEN_LENGTH:
        raise InvalidInput("page_token: not a token this service made", field="page_token")
    try:
        padded = page_token + "=" * (-len(page_token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        made_for, after = data["f"], data["a"]
    except (ValueError, TypeError, KeyError, binascii.Error):
        raise InvalidInput(
            "page_token: not a token this service made", field="page_token"
        ) from None
    if made_for != filters or not isinstance(after, list) or not after:
        raise InvalidInput(
            "page_token: made for other filters: keep the filters of page one", field="page_token"
        )
    if not isinstance(after[0], int) or not all(isinstance(v, int | str) for v in after):
        raise InvalidInput("page_token: not a token this service made", field="page_token")
    return after
