"""The lockout per origin in SQL (`Store`'s lockout methods, one transaction each): the
standing read, a reservation made and settled, a success, an operator's unlock. Every writer
takes the subject's lock first (`lock_subject`: an advisory lock on PostgreSQL, which writes
nothing), so a subject's writers go in turn across replicas; on SQLite its one write lock
already orders them."""

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
    lock_subject(tx, dialect, subject)  # the subject's writers in turn
    read, oldest_reservation = _standing(tx, subject, origin, reserved_since)
    decision = admit(read)
    if oldest_reservation is not None and oldest_reservation < reserved_since:
        tx.queue(sql.PURGE_STALE_RESERVATIONS, (subject, reserved_since))  # rarely: crashes
    if isinstance(decision, Reservation):
        row = (subject, decision.id, origin, int(decision.charges_budget), now)
        tx.queue(sql.INSERT_RESERVATION, row)
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
    lock_subject(tx, dialect, subject)  # first, as every lockout writer
    tx.queue(sql.DELETE_RESERVATION, (subject, reservation_id))
    if count is None:
        return None
    read = standing(tx, subject, origin, 0)
    counted = count(read)
    if counted.attempts is not None and not write_attempts(tx, counted.attempts):
        raise RuntimeError("an origin's counter moved under the subject's lock")
    if counted.charge_budget:
        charge_budget(tx, subject, read.budget_events, budget, counted.at)
    return counted


def clear(tx: Transaction, dialect: Dialect, subjects: Sequence[str]) -> None:
    # The subject's lock first, as every lockout writer takes it: a failure being counted on
    # the subject (its rows written, not committed yet) is waited for, not deleted under it.
    # Subjects in one order.
    for subject in sorted(set(subjects)):
        lock_subject(tx, dialect, subject)
        tx.queue(sql.CLEAR_ORIGIN_BUDGET, (subject,))
        tx.queue(sql.CLEAR_ORIGIN_ATTEMPTS, (subject,))


def standing(tx: Transaction, subject: str, origin: str, reserved_since: int) -> Standing:
    """The subject's counters, read in one statement (`sql.STANDING`)."""
    return _standing(tx, subject, origin, reserved_since)[0]


def _standing(
    tx: Transaction, subject: str, origin: str, reserved_since: int
) -> tuple[Standing, int | None]:
    """The standing, and when the subject's oldest reservation was made (None: it has none)."""
    params = (subject, origin, subject, subject, subject, origin, subject, reserved_since)
    found = tx.fetch_all(sql.STANDING, params)
    first, width = found[0], len(sql.ORIGIN_ATTEMPTS.columns)
    counter = first[:width]
    stored = counter[0] is not None
    attempts = sql.ORIGIN_ATTEMPTS.from_row(counter) if stored else OriginAttempts(subject, origin)
    seen = first[width] if origin else None
    budget = first[width + 1]
    oldest = first[width + 2]
    events = tuple(rate_events(budget)) if budget else ()
    reserved = [row[width + 3 :] for row in found if row[width + 3] is not None]
    mine = sum(1 for _id, other, _charges in reserved if other == origin)
    charging = sum(1 for _id, _other, charges in reserved if charges)
    ids = frozenset(str(row[0]) for row in reserved)
    read = Standing(attempts, int(seen) if seen is not None else None, events, mine, charging, ids)
    return read, int(oldest) if oldest is not None else None


def succeeded(tx: Transaction, dialect: Dialect, success: Success) -> None:
    subject, origin = success.subject, success.origin
    lock_subject(tx, dialect, subject)  # first, as every lockout writer
    if origin and dialect.writing_ctes:
        reservation, forget = success.reservation_id, success.forget_before
        params = (subject, reservation, subject, origin, subject, forget, origin)
        tx.queue(sql.SUCCEEDED, (*params, subject, origin, success.now))
        return
    if success.reservation_id is not None:
        tx.queue(sql.DELETE_RESERVATION, (subject, success.reservation_id))
    if origin:
        tx.queue(sql.REMEMBER_ORIGIN, (subject, origin, success.now))
        tx.queue(sql.DELETE_ORIGIN_ATTEMPTS, (subject, origin))
        tx.queue(sql.FORGET_KNOWN_ORIGINS, (subject, success.forget_before))


def lock_subject(tx: Transaction, dialect: Dialect, subject: str) -> None:
    """The subject's lockout writers in turn, until the commit, where writers are not
    serialised already (`Dialect.lockout_lock`)."""
    if dialect.lockout_lock:
        tx.queue(dialect.lockout_lock, (subject,))


def charge_budget(
    tx: Transaction, subject: str, events: Sequence[int], budget: RateLimit, now: int
) -> None:
    """`now` among the subject's unknown-origin failures (`events`, as read under the
    subject's lock) if it has room; the subject's counters idle for the window and not locked
    are deleted."""
    since = now - budget.window_seconds
    recent = sorted(t for t in events if t > since)
    if len(recent) < budget.limit:
        recent.append(now)
    if recent:
        tx.queue(sql.SET_ORIGIN_BUDGET_EVENTS, (subject, rate_events_text(recent)))
    else:  # a budget of 0: no row left behind
        tx.queue(sql.CLEAR_ORIGIN_BUDGET, (subject,))
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
