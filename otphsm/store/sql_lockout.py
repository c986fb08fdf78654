"""The lockout per origin in SQL (`Store`'s lockout methods, one transaction each): the
standing read, a reservation made and settled, a success, an operator's unlock. Every writer
takes the subject's budget row lock first (`lock_budget`), so a subject's writers go in turn
across replicas; on SQLite its one write lock already orders them."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from otphsm.core.lockout import (
    Failure,
    OriginAttempts,
    Refusal,
    Reservation,
    Standing,
    Success,
)
from otphsm.core.records import RateLimit
from otphsm.store import sql
from otphsm.store.rows_grid import rate_events, rate_events_text
from otphsm.store.sql import Dialect, Transaction


def reserve(
    tx: Transaction,
    dialect: Dialect,
    subject: str,
    origin: str,
    reserved_since: int,
    now: int,
    admit: Callable[[Standing], Reservation | Refusal],
) -> Reservation | Refusal:
    lock_budget(tx, dialect, subject)  # the subject's writers in turn
    tx.queue(sql.PURGE_STALE_RESERVATIONS, (subject, reserved_since))
    decision = admit(standing(tx, subject, origin, reserved_since))
    if isinstance(decision, Reservation):
        row = (subject, decision.id, origin, int(decision.charges_budget), now)
        tx.queue(sql.INSERT_RESERVATION, row)
    tx.queue(sql.DROP_EMPTY_ORIGIN_BUDGET, (subject,))
    return decision


def settle(
    tx: Transaction,
    dialect: Dialect,
    subject: str,
    origin: str,
    reservation_id: str,
    budget: RateLimit,
    count: Callable[[Standing], Failure] | None,
) -> Failure | None:
    lock_budget(tx, dialect, subject)  # first, as every lockout writer
    tx.queue(sql.DELETE_RESERVATION, (subject, reservation_id))
    counted = count(standing(tx, subject, origin, 0)) if count is not None else None
    if counted is not None:
        if counted.attempts is not None and not write_attempts(tx, counted.attempts):
            raise RuntimeError("an origin's counter moved under the subject's lock")
        if counted.charge_budget:
            charge_budget(tx, subject, budget, counted.at)
    tx.queue(sql.DROP_EMPTY_ORIGIN_BUDGET, (subject,))
    return counted


def clear(tx: Transaction, dialect: Dialect, subjects: Sequence[str]) -> None:
    # The budget row locked first, as every lockout writer does: locked, not only deleted, so
    # that a failure being counted on a subject without a budget row (its row inserted, not
    # committed yet) is waited for. Subjects in one order.
    for subject in sorted(set(subjects)):
        lock_budget(tx, dialect, subject)
        tx.queue(sql.CLEAR_ORIGIN_BUDGET, (subject,))
        tx.queue(sql.CLEAR_ORIGIN_ATTEMPTS, (subject,))


def standing(tx: Transaction, subject: str, origin: str, reserved_since: int) -> Standing:
    """The subject's counters, read together (one round trip on PostgreSQL)."""
    found = tx.fetch_each(
        [
            (sql.ORIGIN_ATTEMPTS_OF, (subject, origin)),
            (sql.KNOWN_ORIGIN_SEEN, (subject, origin)),
            (sql.ORIGIN_BUDGET_EVENTS, (subject,)),
            (sql.RESERVATIONS_IN_FLIGHT, (subject, reserved_since)),
        ]
    )
    counter, seen_rows, budget_rows, reserved = found
    row = counter[0] if counter else None
    attempts = sql.ORIGIN_ATTEMPTS.from_row(row) if row else OriginAttempts(subject, origin)
    seen = seen_rows[0] if origin and seen_rows else None
    budget = budget_rows[0] if budget_rows else None
    events = tuple(rate_events(budget[0])) if budget else ()
    mine = sum(1 for _id, other, _charges in reserved if other == origin)
    charging = sum(1 for _id, _other, charges in reserved if charges)
    ids = frozenset(str(row[0]) for row in reserved)
    return Standing(attempts, int(seen[0]) if seen else None, events, mine, charging, ids)


def succeeded(tx: Transaction, dialect: Dialect, success: Success) -> None:
    subject, origin = success.subject, success.origin
    lock_budget(tx, dialect, subject)  # first, as every lockout writer
    if success.reservation_id is not None:
        tx.queue(sql.DELETE_RESERVATION, (subject, success.reservation_id))
    tx.queue(sql.DROP_EMPTY_ORIGIN_BUDGET, (subject,))
    if origin:
        tx.queue(sql.REMEMBER_ORIGIN, (subject, origin, success.now))
        tx.queue(sql.DELETE_ORIGIN_ATTEMPTS, (subject, origin))
        tx.queue(sql.FORGET_KNOWN_ORIGINS, (subject, success.forget_before))


def lock_budget(tx: Transaction, dialect: Dialect, subject: str) -> None:
    """The subject's lockout writers in turn: its budget row locked (created if need be) until
    the commit, where writers are not serialised already."""
    if not dialect.serialised_writers:
        tx.queue(sql.LOCK_ORIGIN_BUDGET, (subject,))


def charge_budget(tx: Transaction, subject: str, budget: RateLimit, now: int) -> None:
    """`now` among the subject's unknown-origin failures if it has room (the budget row is
    locked); the subject's counters idle for the window and not locked are deleted."""
    row = tx.fetch_one(sql.ORIGIN_BUDGET_EVENTS, (subject,))
    since = now - budget.window_seconds
    recent = sorted(t for t in rate_events(row[0] if row else "") if t > since)
    if len(recent) < budget.limit:
        recent.append(now)
    tx.queue(sql.SET_ORIGIN_BUDGET_EVENTS, (subject, rate_events_text(recent)))
    tx.queue(sql.PURGE_IDLE_ORIGIN_ATTEMPTS, (subject, since, now))


def write_attempts(tx: Transaction, attempts: OriginAttempts) -> bool:
    """Insert a new counter (version 0) or update the stored one if its version is unchanged;
    either way it is stored with the next version."""
    counter = attempts.attempts
    if attempts.version == 0:
        row = sql.ORIGIN_ATTEMPTS.to_row(attempts)
        return tx.execute(sql.INSERT_ORIGIN_ATTEMPTS, (*row[:-1], 1)) == 1
    params = (
        counter.failures,
        counter.lock_level,
        counter.locked_until,
        attempts.updated_at,
        attempts.subject,
        attempts.origin,
        attempts.version,
    )
    return tx.execute(sql.UPDATE_ORIGIN_ATTEMPTS, params) == 1
