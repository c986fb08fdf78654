"""The statements an operator's listings run: tokens by optional filters and the audit log
from a seq or a time, both a page at a time in a total order (keyset paging: a page goes on
from the last row shown, so rows written meanwhile never shift a page)."""

from __future__ import annotations

from otphsm.core.tokens import PageAfter, TokenQuery
from otphsm.store.sql import AUDIT_LOG, TOKENS

Statement = tuple[str, tuple[object, ...]]


def tokens(query: TokenQuery, after: PageAfter | None, limit: int) -> Statement:
    """`query`'s tokens after `after` in (created_at, serial) order, at most `limit`."""
    where: list[str] = []
    params: list[object] = []
    if query.codice_fiscale is not None:
        where.append("codice_fiscale = ?")
        params.append(query.codice_fiscale)
    if query.state is not None:
        where.append("state = ?")
        params.append(query.state.value)
    if query.kind is not None:
        where.append("kind = ?")
        params.append(query.kind.value)
    if query.assigned is not None:
        where.append("codice_fiscale <> ''" if query.assigned else "codice_fiscale = ''")
    if after is not None:
        where.append("(created_at > ? OR (created_at = ? AND serial > ?))")
        params.extend((after[0], after[0], after[1]))
    condition = f" WHERE {' AND '.join(where)}" if where else ""
    statement = f"{TOKENS.select}{condition} ORDER BY created_at, serial LIMIT ?"
    return statement, (*params, limit)


AUDIT_FROM = f"{AUDIT_LOG.select} WHERE seq >= ? AND at >= ? ORDER BY seq LIMIT ?"
