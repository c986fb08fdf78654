"""Lockout records ↔ rows: one origin's failure counter on one subject."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from otphsm.core.lockout import OriginAttempts
from otphsm.core.verification import Attempts
from otphsm.store.rows import Row

ORIGIN_ATTEMPTS_COLUMNS = (
    "subject",
    "origin",
    "failures",
    "lock_level",
    "locked_until",
    "updated_at",
    "version",
)


def origin_attempts_row(record: OriginAttempts) -> Row:
    counter = record.attempts
    return (
        record.subject,
        record.origin,
        counter.failures,
        counter.lock_level,
        counter.locked_until,
        record.updated_at,
        record.version,
    )


def origin_attempts_from_row(row: Sequence[Any]) -> OriginAttempts:
    subject, origin, failures, lock_level, locked_until, updated_at, version = row
    return OriginAttempts(
        subject, origin, Attempts(failures, lock_level, locked_until), updated_at, version
    )
