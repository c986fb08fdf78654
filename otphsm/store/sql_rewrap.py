"""The statements KEK rotation runs: the wrapped seeds under one KEK, page by page, and the
re-wrapped blob written only if the row still holds the old blob under the old KEK."""

from __future__ import annotations

from typing import NamedTuple

from otphsm.core.seeds import SeedHolder


class _SeedColumns(NamedTuple):
    table: str
    storage: str
    data: str
    kek: str


_COLUMNS = {
    SeedHolder.TOKEN: _SeedColumns("tokens", "seed_storage", "seed_data", "seed_kek"),
    SeedHolder.GRID_CARD: _SeedColumns("grid_cards", "key_storage", "key_data", "key_kek"),
}

# `? = 1`: NULL (a seed stored before rotation existed) counts as the first KEK's.
_UNDER_KEK = "({kek} = ? OR ({kek} IS NULL AND ? = 1))"


def wrapped_under(holder: SeedHolder) -> str:
    """Parameters: KEK label, whether NULL counts, the serial to start after, the page size."""
    c = _COLUMNS[holder]
    under = _UNDER_KEK.format(kek=c.kek)
    return (
        f"SELECT serial, {c.data}, {c.kek} FROM {c.table} "  # noqa: S608
        f"WHERE {c.storage} = 'wrapped' AND {under} AND serial > ? ORDER BY serial LIMIT ?"
    )


def rewrap(holder: SeedHolder) -> str:
    """Parameters: new blob, new KEK label, serial, old blob, old KEK label, whether NULL."""
    c = _COLUMNS[holder]
    under = _UNDER_KEK.format(kek=c.kek)
    return (
        f"UPDATE {c.table} SET {c.data} = ?, {c.kek} = ?, version = version + 1 "  # noqa: S608
        f"WHERE serial = ? AND {c.storage} = 'wrapped' AND {c.data} = ? AND {under}"
    )
