"""The lockout per origin in the use cases (rules in `core.lockout`): before a code is looked
at, the origin's standing on the subject may refuse it (LOCKED); if not, the attempt is
counted at once as a failure (on the origin's counter, or on the record's own, and on the
unknown origins' budget), so that requests in flight together cannot all pass the gate. The
outcome then keeps that count (a failure) or gives it back (a success, which also makes the
origin known, a replay, a refusal by state).

A use case opens a `Gate`, `check`s it at its decision point and reports the outcome to it
once (or `cancel`s it when it ends without checking the code).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from otphsm.core import lockout
from otphsm.core.app.context import Actor, App
from otphsm.core.lockout import Failure, Standing
from otphsm.core.records import RateLimit
from otphsm.core.tokens import Token
from otphsm.core.verification import VerifyResult

COUNTED = (VerifyResult.WRONG_CODE, VerifyResult.EXPIRED)
"""What counts as a failure. REPLAYED (the owner's code again), LOCKED and refusals by state
do not."""


@dataclass(slots=True)
class Gate:
    subject: str
    origin: str
    own_counter: bool
    """A request without an origin on a record with a counter of its own (a token by serial,
    a login code, a Security Card): that counter is its origin's, as before origins."""
    now: int
    standing: Standing | None = None
    """As read when the attempt was reserved."""
    reserved: Failure | None = None
    """The attempt counted by `check`, until `report` keeps it or gives it back."""


def open_gate(app: App, subject: str, origin: str, *, own_record: bool) -> Gate:
    """`own_record`: the subject has a record with its own failure counter, used for requests
    without an origin."""
    lockout.check_origin(origin)
    return Gate(subject, origin, own_record and not origin, app.now())


def check(app: App, gate: Gate) -> int:
    """Seconds the caller must wait before its code is looked at (answer LOCKED); 0: go on,
    the attempt is counted as a failure until `report` says otherwise. One transaction,
    serialised per subject."""
    policy = app.policy.verification

    def decide(standing: Standing) -> Failure | int:
        wait = lockout.refusal(standing, gate.now, policy, own_counter=gate.own_counter)
        return wait or lockout.failure(standing, gate.now, policy, own_counter=gate.own_counter)

    standing, decision = app.store.reserve_origin_attempt(
        gate.subject, gate.origin, _budget(app, gate.subject), gate.now, decide
    )
    if isinstance(decision, int):
        return decision
    gate.standing, gate.reserved = standing, decision
    return 0


def peek(app: App, gate: Gate) -> int:
    """`check` for a request that looks at no code (asking for a Security Card challenge):
    the wait, nothing counted."""
    standing = app.store.origin_standing(gate.subject, gate.origin)
    policy = app.policy.verification
    return lockout.refusal(standing, gate.now, policy, own_counter=gate.own_counter)


def known(app: App, gate: Gate) -> bool:
    """Whether the origin had logged in on the subject, as read by `check`."""
    standing = gate.standing
    return standing is not None and lockout.is_known(standing, gate.now, app.policy.verification)


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
    reserved, gate.reserved = gate.reserved, None
    if result is VerifyResult.OK and gate.origin:
        forget = lockout.forget_before(gate.now, app.policy.verification)
        event = gate.now if reserved is not None and reserved.charge_budget else None
        app.store.origin_succeeded(gate.subject, gate.origin, gate.now, forget, event)
        return 0
    if reserved is None:
        return 0
    if result is VerifyResult.OK or result not in counted:
        _refund(app, gate, reserved)
        return 0
    if reserved.attempts is not None and reserved.retry_after:
        counter = reserved.attempts.attempts
        app.audit(
            actor,
            "origin_locked",
            gate.subject,
            origin=gate.origin or None,
            until=counter.locked_until,
            level=counter.lock_level,
        )
    return reserved.retry_after


def cancel(app: App, gate: Gate) -> None:
    """The request ended without its code being checked (an error): nothing counts."""
    reserved, gate.reserved = gate.reserved, None
    if reserved is not None:
        _refund(app, gate, reserved)


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


def _budget(app: App, subject: str) -> RateLimit:
    policy = app.policy.verification
    return RateLimit(subject, policy.unknown_origin_failures, policy.unknown_origin_window_seconds)


def _refund(app: App, gate: Gate, reserved: Failure) -> None:
    event = gate.now if reserved.charge_budget else None
    counted, before = reserved.attempts, gate.standing
    if counted is None and event is None:
        return
    policy = app.policy.verification

    def undo(current: lockout.OriginAttempts) -> lockout.OriginAttempts | None:
        if counted is None or before is None:
            return None
        return lockout.refund(current, counted, before.attempts.attempts, app.now(), policy)

    app.store.refund_origin_attempt(gate.subject, gate.origin, event, undo)
