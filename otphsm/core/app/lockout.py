"""The lockout per origin in the use cases (rules in `core.lockout`): before a code is looked
at, the origin's standing on the subject may refuse it (LOCKED); if not, the attempt is
reserved: counted by the gate as a failure while it is in flight, so that requests arriving
together cannot all pass it. The outcome settles the reservation: a failure is counted then
(on the origin's counter, or on the record's own, and on the unknown origins' budget); a
success makes the origin known; a replay or a refusal by state counts nowhere.

A call refused only because of attempts in flight asks again every 20 ms while they keep
settling (up to 1 s without one settling, 10 s in all):
copies of a valid code arriving together get REPLAYED, not LOCKED, while a burst of guesses
still gets no more codes looked at than the counter and budget allow.

A use case opens a `Gate`, `check`s it at its decision point and reports the outcome to it
once (or `cancel`s it when it ends without checking the code).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from otphsm.core import lockout
from otphsm.core.app.context import Actor, App
from otphsm.core.lockout import Failure, Refusal, Reservation, Standing, Success
from otphsm.core.records import RateLimit
from otphsm.core.tokens import Token
from otphsm.core.verification import VerifyResult

IN_FLIGHT_PAUSE_SECONDS = 0.02
IN_FLIGHT_IDLE_PAUSES = 50
"""A call refused only by attempts in flight reads again every 20 ms while they keep settling,
and gives up after 50 reads (1 s) in which none settled ..."""
IN_FLIGHT_MAX_PAUSES = 500
"""... or 500 reads (10 s) in all."""

COUNTED = (VerifyResult.WRONG_CODE, VerifyResult.EXPIRED)
"""What counts as a failure. REPLAYED (the owner's code again), LOCKED and refusals by state
do not."""


@dataclass(slots=True)
class Gate:
    subject: str
    origin: str
    """The origin as stored: the caller's (`lockout.origin_key`); "" for none."""
    own_counter: bool
    """A request without an origin on a record with a counter of its own (a token by serial,
    a login code, a Security Card): that counter is its origin's, as before origins."""
    now: int
    told: str = ""
    """The origin as the caller sent it (for the audit)."""
    reservation: Reservation | None = None
    """The attempt let through by `check`, until `report` or `cancel` settles it."""
    known: bool = False
    """The origin had logged in on the subject, as read by `check`."""
    settled: bool = False
    """The success was written with the token that accepted the code (`accepted`)."""


def open_gate(app: App, actor: Actor, subject: str, origin: str, *, own_record: bool) -> Gate:
    """`own_record`: the subject has a record with its own failure counter, used for requests
    without an origin. The origin counts as the caller's (`actor`): see `lockout.origin_key`."""
    lockout.check_origin(origin)
    key = lockout.origin_key(actor.name, origin)
    return Gate(subject, key, own_record and not origin, app.now(), origin)


def check(app: App, gate: Gate) -> int:
    """Seconds the caller must wait before its code is looked at (answer LOCKED); 0: go on,
    the attempt is reserved until `report` settles it. Each try is one transaction,
    serialised per subject."""
    policy = app.policy.verification
    reservation_id = app.handle_id("r")  # never sent to a caller
    since = gate.now - lockout.RESERVATION_SECONDS

    def admit(standing: Standing) -> Reservation | Refusal:
        gate.known = lockout.is_known(standing, gate.now, policy)
        return lockout.admit(
            standing, gate.now, policy, own_counter=gate.own_counter, reservation_id=reservation_id
        )

    idle = pauses = 0
    seen: frozenset[str] = frozenset()
    while True:
        decision = app.store.reserve_origin_attempt(
            gate.subject, gate.origin, since, gate.now, admit
        )
        if isinstance(decision, Reservation):
            gate.reservation = decision
            return 0
        if not decision.in_flight:
            return decision.wait
        while idle < IN_FLIGHT_IDLE_PAUSES and pauses < IN_FLIGHT_MAX_PAUSES:
            idle, pauses = idle + 1, pauses + 1
            app.clock.sleep(IN_FLIGHT_PAUSE_SECONDS)
            crowding = _crowding(app, gate, since)
            if crowding is None:
                break  # room now: ask for it
            if crowding != seen:  # some settled, others took their place: worth waiting
                idle, seen = 0, crowding
        else:
            return decision.wait


def _crowding(app: App, gate: Gate, since: int) -> frozenset[str] | None:
    """The reservations in flight on the subject while they stand in the gate's way (one read,
    no write); None when they no longer do, or a settled failure refuses (asking again then
    gets the real wait)."""
    policy = app.policy.verification
    standing = app.store.origin_standing(gate.subject, gate.origin, since)
    if lockout.refusal(standing, gate.now, policy, own_counter=gate.own_counter):
        return None
    if not lockout.crowded(standing, gate.now, policy, own_counter=gate.own_counter):
        return None
    return standing.in_flight_ids


def peek(app: App, gate: Gate) -> int:
    """`check` for a request that looks at no code (asking for a Security Card challenge):
    the wait, nothing reserved."""
    standing = app.store.origin_standing(gate.subject, gate.origin)
    policy = app.policy.verification
    return lockout.refusal(standing, gate.now, policy, own_counter=gate.own_counter)


def report(
    app: App,
    actor: Actor,
    gate: Gate,
    result: VerifyResult,
    *,
    counted: tuple[VerifyResult, ...] = COUNTED,
) -> int:
    """Record the outcome of a code that was looked at; returns the wait a failure started for
    the origin (0 for none). Call once per request. `counted`: the results that are failures
    here (for a login code or a grid answer, EXPIRED means nothing typed was checked)."""
    if gate.settled:
        return 0  # written with the token (`accepted`)
    reservation, gate.reservation = gate.reservation, None
    reserved = reservation.id if reservation is not None else None
    if result is VerifyResult.OK and gate.origin:
        forget = lockout.forget_before(gate.now, app.policy.verification)
        app.store.origin_succeeded(gate.subject, gate.origin, gate.now, forget, reserved)
        return 0
    if reserved is None:
        return 0
    if result not in counted:
        _settle(app, gate, reserved, None)
        return 0
    policy = app.policy.verification

    def count(standing: Standing) -> Failure:
        return lockout.failure(standing, gate.now, policy, own_counter=gate.own_counter)

    failure = _settle(app, gate, reserved, count)
    if failure is None or failure.attempts is None or not failure.retry_after:
        return 0
    counter = failure.attempts.attempts
    app.audit(
        actor,
        "origin_locked",
        gate.subject,
        origin=gate.told or None,
        until=counter.locked_until,
        level=counter.lock_level,
    )
    return failure.retry_after


def accepted(app: App, gate: Gate, token: Token) -> bool:
    """The token that accepted the code written (`Store.update_token`) with what `report`
    would write for the success, in one commit (one fsync, or one PostgreSQL commit, where
    they took two): `report` then writes nothing. False: the token was not written (another
    request wrote it first), nor anything of the success."""
    reservation = gate.reservation
    if not gate.origin and reservation is None:
        return app.store.update_token(token)
    forget = lockout.forget_before(gate.now, app.policy.verification) if gate.origin else 0
    reserved = reservation.id if reservation is not None else None
    success = Success(gate.subject, gate.origin, reserved, gate.now, forget)
    if not app.store.update_token_succeeded(token, success):
        return False
    gate.reservation, gate.settled = None, True
    return True


def cancel(app: App, gate: Gate) -> None:
    """The request ended without its code being checked (an error): nothing counts."""
    reservation, gate.reservation = gate.reservation, None
    if reservation is not None:
        _settle(app, gate, reservation.id, None)


@contextmanager
def cancelled_on_error(app: App, gate: Gate) -> Iterator[None]:
    try:
        yield
    except BaseException:
        cancel(app, gate)
        raise


def release(app: App, token: Token) -> None:
    """An operator's unlock: every origin's counter and the unknown origins' budget go, on
    the token and on its citizen's logins by codice fiscale (known origins stay known)."""
    subjects = [lockout.token_subject(token.serial)]
    if token.codice_fiscale:
        subjects.append(lockout.citizen_subject(token.codice_fiscale))
    app.store.clear_origin_lockout(subjects)


def _settle(
    app: App, gate: Gate, reservation_id: str, count: Callable[[Standing], Failure] | None
) -> Failure | None:
    return app.store.settle_origin_attempt(
        gate.subject, gate.origin, reservation_id, _budget(app, gate.subject), count
    )


def _budget(app: App, subject: str) -> RateLimit:
    policy = app.policy.verification
    return RateLimit(subject, policy.unknown_origin_failures, policy.unknown_origin_window_seconds)
