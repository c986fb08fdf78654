"""Failures counted in the store the way the lockout gate does it: a reservation, then its
settlement as a failure (for the store's lockout tests)."""

from __future__ import annotations

import itertools

from otphsm.core.lockout import Failure, OriginAttempts, Reservation, Standing
from otphsm.core.records import RateLimit
from otphsm.core.verification import Attempts
from otphsm.store import SqlStore

_ids = itertools.count()


def reserve(store: SqlStore, subject: str, origin: str, now: int, *, charges: bool = True) -> str:
    """An attempt let through; returns its reservation id."""
    reservation = Reservation(f"r-{next(_ids)}", charges)
    assert store.reserve_origin_attempt(subject, origin, 0, now, lambda _: reservation)
    return reservation.id


def fail(
    store: SqlStore,
    subject: str,
    origin: str,
    counter: Attempts | None,
    budget: RateLimit | None,
    now: int,
) -> Standing:
    """One failure of `origin`: its counter set to `counter` (None: left alone), `now` in the
    budget if one is given. Returns the standing the settlement read."""
    reservation = reserve(store, subject, origin, now)
    seen: list[Standing] = []

    def count(standing: Standing) -> Failure:
        seen.append(standing)
        current = standing.attempts
        attempts = None
        if counter is not None:
            attempts = OriginAttempts(subject, origin, counter, now, current.version)
        return Failure(attempts, budget is not None, now)

    limit = budget or RateLimit(subject, 1, 1)
    store.settle_origin_attempt(subject, origin, reservation, limit, count)
    return seen[0]
