"""Security Card records ↔ rows (the rest of the tables are in `rows`).

A pair of cells is stored as two nullable integer columns; the card's key as its storage kind
and its reference (a wrapped blob or a CKA_ID), exactly as a token's seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from otphsm.core.records import GridCard, GridCardState
from otphsm.core.seeds import SeedRef, SeedStorage
from otphsm.store.rows import Row

GRID_CARD_COLUMNS = (
    "serial",
    "codice_fiscale",
    "key_storage",
    "key_data",
    "key_kek",
    "cells",
    "cell_digits",
    "state",
    "created_at",
    "revoked_at",
    "challenge_first",
    "challenge_second",
    "challenge_expires_at",
    "last_first",
    "last_second",
    "failures",
    "lock_level",
    "locked_until",
    "version",
)


def grid_card_row(card: GridCard) -> Row:
    challenge = card.challenge or (None, None)
    last = card.last_pair or (None, None)
    return (
        card.serial,
        card.codice_fiscale,
        card.key.storage.value,
        card.key.data,
        card.key.kek,
        card.cells,
        card.cell_digits,
        card.state.value,
        card.created_at,
        card.revoked_at,
        *challenge,
        card.challenge_expires_at,
        *last,
        card.failures,
        card.lock_level,
        card.locked_until,
        card.version,
    )


def grid_card_from_row(row: Sequence[Any]) -> GridCard:
    (
        serial,
        codice_fiscale,
        key_storage,
        key_data,
        key_kek,
        cells,
        cell_digits,
        state,
        created_at,
        revoked_at,
        challenge_first,
        challenge_second,
        challenge_expires_at,
        last_first,
        last_second,
        failures,
        lock_level,
        locked_until,
        version,
    ) = row
    return GridCard(
        serial=serial,
        codice_fiscale=codice_fiscale,
        key=SeedRef(SeedStorage(key_storage), bytes(key_data), key_kek),
        cells=cells,
        cell_digits=cell_digits,
        state=GridCardState(state),
        created_at=created_at,
        revoked_at=revoked_at,
        challenge=_pair(challenge_first, challenge_second),
        challenge_expires_at=challenge_expires_at,
        last_pair=_pair(last_first, last_second),
        failures=failures,
        lock_level=lock_level,
        locked_until=locked_until,
        version=version,
    )


def _pair(first: int | None, second: int | None) -> tuple[int, int] | None:
    if first is None or second is None:
        return None
    return int(first), int(second)


def rate_events(text: str) -> list[int]:
    """The event times of a rate-limit bucket, stored as comma-separated Unix seconds."""
    return [int(item) for item in text.split(",") if item]


def rate_events_text(events: Sequence[int]) -> str:
    return ",".join(str(event) for event in events)
