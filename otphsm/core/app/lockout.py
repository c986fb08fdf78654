"""The lockout per origin in the use cases (rules in `core.lockout`): before a code is looked
at, the origin's standing on the subject may refuse it (LOCKED); after it, a failure is
counted on the origin (or the record's own counter) and on the unknown origins' budget, and
a success makes the origin known. A replay or a refusal counts nowhere.

A use case opens a `Gate` at its decision point and reports the outcome to it once.
"""

from __future__ import annotations

from dataclasses import dataclass

from otphsm.core import lockout
from otphsm.core.app.context import Actor, App
from otphsm.core.app.writes import LOST_RACE, LostRace, with_retries
from otphsm.core.lockout import Standing
from otphsm.core.records import RateLimit
from otphsm.core.tokens import Token
from otphsm.core.verification import VerifyResult

COUNTED = (VerifyResult.WRONG_CODE, VerifyResult.EXPIRED)
"""What counts as a failure. REPLAYED (the owner's code again), LOCKED and refusals by state
do not."""


@dataclass(frozen=True, slots=True)
class Gate:
    subject: str
    origin: str
    own_counter: bool
    """A request without an origin on a record with a counter of its own (a token by serial,
    a login code, a Security Card): that counter is its origin's, as before origins."""
    standing: Standing
    now: int


def open_gate(app: App, subject: str, origin: str, *, own_record: bool) -> Gate:
    """`own_record`: the subject has a record with its own failure counter, used for requests
    without an origin."""
    lockout.check_origin(origin)
    standing = app.store.origin_standing(subject, origin)
    return Gate(subject, origin, own_record and not origin, standing, app.now())


def check(app: App, gate: Gate) -> int:
    """Seconds the caller must wait before its code is looked at (answer LOCKED); 0: go on."""
    return lockout.refusal(
        gate.standing, gate.now, app.policy.verification, own_counter=gate.own_counter
    )


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
    if result is VerifyResult.OK:
        if gate.origin:
            forget = lockout.forget_before(gate.now, app.policy.verification)
            app.store.origin_succeeded(gate.subject, gate.origin, gate.now, forget)
        return 0
    if result not in counted:
        return 0
    return _count_failure(app, actor, gate)


def release(app: App, token: Token) -> None:
    """An operator's unlock: every origin's counter and the unknown origins' budget go, on
    the token and on its citizen's logins by codice fiscale (known origins stay known)."""
    subjects = [lockout.token_subject(token.serial)]
    if token.codice_fiscale:
        subjects.append(lockout.citizen_subject(token.codice_fiscale))
    app.store.clear_origin_lockout(subjects)


def _count_failure(app: App, actor: Actor, gate: Gate) -> int:
    policy = app.policy.verification
    first_read = [gate.standing]

    def attempt() -> int | LostRace:
        standing = first_read.pop() if first_read else None
        if standing is None:
            standing = app.store.origin_standing(gate.subject, gate.origin)
        failed = lockout.failure(standing, gate.now, policy, own_counter=gate.own_counter)
        budget = None
        if failed.charge_budget:
            window = policy.unknown_origin_window_seconds
            budget = RateLimit(gate.subject, policy.unknown_origin_failures, window)
        if failed.attempts is None and budget is None:
            return 0
        if not app.store.record_origin_failure(gate.subject, failed.attempts, budget, gate.now):
            return LOST_RACE
        if failed.attempts is not None and failed.retry_after:
            counter = failed.attempts.attempts
            app.audit(
                actor,
                "origin_locked",
                gate.subject,
                origin=gate.origin or None,
                until=counter.locked_until,
                level=counter.lock_level,
            )
        return failed.retry_after

    return with_retries(app, attempt)
