"""Verifying codes: one conditional write per decision, re-decided if another replica wrote
first, so a code is accepted at most once, ever, across replicas. Who may try at all is the
lockout per origin's to say (`core/app/lockout.py`): it counts the attempt before the code
is looked at and is told the outcome after."""

from __future__ import annotations

import functools
from collections.abc import Callable

from otphsm.core.app import lockout
from otphsm.core.app.context import Actor, App
from otphsm.core.app.login import wrong_personal_part
from otphsm.core.app.revocation import audit_revoked, revoked
from otphsm.core.app.writes import LOST_RACE, LostRace, with_retries
from otphsm.core.codice_fiscale import validate as validate_codice_fiscale
from otphsm.core.errors import InvalidInput, NotFound
from otphsm.core.lockout import citizen_subject, token_subject
from otphsm.core.otp import HmacFn
from otphsm.core.ports import Conflict
from otphsm.core.tokens import Token, TokenKind, TokenState, check_serial
from otphsm.core.verification import (
    Verdict,
    VerifyOutcome,
    VerifyResult,
    check_code_shape,
    resync,
    verify,
)

PROOF_OF_POSSESSION = "proof_of_possession"
"""The unit of work's name, and so its write points' prefix (`App.transaction`)."""

# When a citizen has several tokens and none accepts the code, the answer names the most
# telling reason.
_RESULT_PRIORITY = (
    VerifyResult.REPLAYED,
    VerifyResult.EXPIRED,
    VerifyResult.WRONG_CODE,
    VerifyResult.LOCKED,
    VerifyResult.NOT_ACTIVE,
    VerifyResult.REVOKED,
)


Decide = Callable[[Token, HmacFn], Verdict]


def hmac_for(app: App, token: Token) -> HmacFn:
    if token.seed is None:
        return _no_hmac  # the policy refuses a seedless token before computing anything
    return functools.partial(app.hsm.hmac, token.seed, token.params.algorithm)


def decide_and_store(
    app: App,
    actor: Actor,
    serial: str,
    decide: Decide,
    via: str,
    gate: lockout.Gate | None = None,
) -> Verdict:
    """Read, decide, write conditionally (`writes.with_retries`); the transition is audited
    `via` the use case's name. With the lockout's `gate`, a code accepted is written with the
    gate's success, in one commit (`lockout.accepted`)."""

    def attempt() -> Verdict | LostRace:
        token = app.store.get_token(serial)
        if token is None:
            raise NotFound("serial: no token with that serial")
        verdict = decide(token, hmac_for(app, token))
        if verdict.token is token:
            return verdict
        if not _audited(token, verdict.token):  # the hot path: one conditional write
            return verdict if _write(app, verdict, gate) else LOST_RACE
        with app.transaction(TRANSITION_UNIT) as work:  # the token and its audit entries
            if not work.store.update_token(verdict.token):
                return LOST_RACE
            _audit_transition(work, actor, token, verdict, via)
        return verdict

    return with_retries(app, attempt)


def _write(app: App, verdict: Verdict, gate: lockout.Gate | None) -> bool:
    if gate is not None and verdict.result is VerifyResult.OK:
        return lockout.accepted(app, gate, verdict.token)
    return app.store.update_token(verdict.token)


def verify_serial(
    app: App,
    actor: Actor,
    serial: str,
    code: str,
    origin: str = "",
    personal_part: str | None = None,
) -> VerifyOutcome:
    """Without an origin the token's own counter locks (3 failures → 60 s, doubling); with
    one, the origin's own counter does and the token's is left alone. `personal_part`: the
    owner's personal part typed before the code (`login.wrong_personal_part`; needs an
    origin)."""
    now = app.clock.now()
    policy = app.policy.verification

    def check(token: Token, fn: HmacFn, own_counter: bool) -> Verdict:
        return verify(token, code, now, fn, policy, own_counter=own_counter)

    return _check_by_serial(
        app, actor, serial, origin, check, "verify", personal_part=personal_part
    )


def verify_citizen(
    app: App,
    actor: Actor,
    codice_fiscale: str,
    code: str,
    origin: str = "",
    personal_part: str | None = None,
) -> VerifyOutcome:
    """Login by codice fiscale + code: any of the citizen's active tokens may accept it.

    Each token is asked without writing; the one that accepts the code is written (a lost race
    answers REPLAYED, naming it). A miss is one failure of the origin on the citizen's logins
    by codice fiscale, whatever the number of tokens; the tokens' own counters (those of
    verifications by serial) are neither counted nor consulted."""
    cf = validate_codice_fiscale(codice_fiscale).code
    tokens = [t for t in app.store.tokens_of(cf) if t.state is TokenState.ACTIVE]
    if not tokens:
        raise NotFound("the citizen has no active token")
    tokens = _taking(tokens, code)
    gate = lockout.open_gate(app, actor, citizen_subject(cf), origin, own_record=False)
    wait = lockout.check(app, gate)
    if wait:
        return VerifyOutcome(VerifyResult.LOCKED, "", wait)
    with lockout.cancelled_on_error(app, gate):
        refused = wrong_personal_part(app, actor, gate, cf, personal_part)
    if refused is not None:
        return refused
    now = app.clock.now()
    policy = app.policy.verification

    def decide(token: Token, fn: HmacFn) -> Verdict:
        return verify(token, code, now, fn, policy, own_counter=False)

    with lockout.cancelled_on_error(app, gate):
        verdicts = [(token, decide(token, hmac_for(app, token))) for token in tokens]
        accepting = next((t for t, v in verdicts if v.result is VerifyResult.OK), None)
        if accepting is not None:
            stored = decide_and_store(app, actor, accepting.serial, decide, "verify", gate)
    if accepting is not None:
        lockout.report(app, actor, gate, stored.result)
        return VerifyOutcome(stored.result, accepting.serial)
    token, verdict = min(verdicts, key=lambda pair: _RESULT_PRIORITY.index(pair[1].result))
    started = lockout.report(app, actor, gate, verdict.result)
    return VerifyOutcome(verdict.result, token.serial, started)


def _taking(tokens: list[Token], code: str) -> list[Token]:
    """The tokens whose codes have as many digits as `code` (a citizen's tokens may differ);
    a code that none of them takes is refused before the lockout's gate: nothing looked at."""
    check_code_shape(code)
    taking = [token for token in tokens if token.params.digits == len(code)]
    if not taking:
        lengths = " or ".join(str(d) for d in sorted({t.params.digits for t in tokens}))
        raise InvalidInput(f"code: the citizen's tokens take codes of {lengths} digits")
    return taking


def check_device(app: App, actor: Actor, serial: str, code: str, origin: str = "") -> VerifyOutcome:
    """Aruba's "test your device": a verification like a login, recorded as a test."""
    outcome = verify_serial(app, actor, serial, code, origin)
    app.audit(actor, "device_tested", serial, result=outcome.result.value)
    return outcome


def prove_possession(app: App, actor: Actor, serial: str, code: str) -> VerifyOutcome:
    """The first valid code turns a PENDING token ACTIVE. A mobile token turning active
    revokes the citizen's other phones (active or suspended) in the same transaction, so a
    citizen never has two active phones, whatever the order of concurrent callers. Checked
    like a Verify without an origin: the token's own counter, and the unknown origins'
    budget (spent: LOCKED without looking at the code)."""
    check_serial(serial)
    now = app.clock.now()
    policy = app.policy.verification

    def attempt(work: App) -> Verdict | LostRace:
        token = work.store.get_token(serial)
        if token is None:
            raise NotFound("serial: no token with that serial")
        verdict = verify(token, code, now, hmac_for(work, token), policy, allow_pending=True)
        if verdict.token is token:
            return verdict
        retired = _phones_retired_by(work, token, verdict.token)
        try:
            written = work.store.update_tokens([*retired, verdict.token])
        except Conflict:  # another phone turned active meanwhile: decide again
            return LOST_RACE
        if not written:
            return LOST_RACE
        _audit_transition(work, actor, token, verdict, "prove_possession")
        for old in retired:
            audit_revoked(work, actor, old.serial, via=f"replaced_by:{serial}")
        return verdict

    gate = lockout.open_gate(app, actor, token_subject(serial), "", own_record=True)
    wait = lockout.check(app, gate)
    if wait:
        return VerifyOutcome(VerifyResult.LOCKED, serial, wait)
    # the tokens and their audit entries in one transaction
    with lockout.cancelled_on_error(app, gate), app.transaction(PROOF_OF_POSSESSION) as work:
        verdict = with_retries(work, lambda: attempt(work))
    lockout.report(app, actor, gate, verdict.result)
    return VerifyOutcome(verdict.result, serial, verdict.retry_after)


def _phones_retired_by(app: App, before: Token, after: Token) -> list[Token]:
    """The citizen's other phones, revoked, if `after` is a phone turning active."""
    if not (
        after.kind is TokenKind.MOBILE
        and before.state is not TokenState.ACTIVE
        and after.state is TokenState.ACTIVE
    ):
        return []
    return [
        revoked(other)
        for other in app.store.tokens_of(after.codice_fiscale)
        if other.serial != after.serial
        and other.kind is TokenKind.MOBILE
        and other.state in (TokenState.ACTIVE, TokenState.SUSPENDED)
    ]


def resync_serial(
    app: App, actor: Actor, serial: str, first: str, second: str, origin: str = ""
) -> VerifyOutcome:
    now = app.clock.now()
    policy = app.policy.verification

    def check(token: Token, fn: HmacFn, own_counter: bool) -> Verdict:
        return resync(token, first, second, now, fn, policy, own_counter=own_counter)

    def resynced(verdict: Verdict) -> None:  # a resync that succeeds always writes
        app.audit(actor, "token_resynced", serial, drift_steps=verdict.token.drift_steps)

    return _check_by_serial(app, actor, serial, origin, check, "resync", on_ok=resynced)


def _check_by_serial(
    app: App,
    actor: Actor,
    serial: str,
    origin: str,
    check: Callable[[Token, HmacFn, bool], Verdict],
    via: str,
    *,
    on_ok: Callable[[Verdict], None] | None = None,
    personal_part: str | None = None,
) -> VerifyOutcome:
    """A code checked on one token through the lockout gate (`check` gets whether the
    token's own counter counts), stored by `decide_and_store`, its outcome reported."""
    check_serial(serial)
    gate = lockout.open_gate(app, actor, token_subject(serial), origin, own_record=True)
    wait = lockout.check(app, gate)
    if wait:
        return VerifyOutcome(VerifyResult.LOCKED, serial, wait)
    if personal_part is not None:
        with lockout.cancelled_on_error(app, gate):
            token = app.store.get_token(serial)
            if token is None:
                raise NotFound("serial: no token with that serial")
            refused = wrong_personal_part(app, actor, gate, token.codice_fiscale, personal_part)
        if refused is not None:
            return VerifyOutcome(refused.result, serial, refused.retry_after)
    counted = gate.own_counter
    with lockout.cancelled_on_error(app, gate):
        verdict = decide_and_store(
            app, actor, serial, lambda token, fn: check(token, fn, counted), via, gate
        )
    started = lockout.report(app, actor, gate, verdict.result)  # settled before anything fails
    if on_ok is not None and verdict.result is VerifyResult.OK:
        on_ok(verdict)
    return VerifyOutcome(verdict.result, serial, verdict.retry_after or started)


TRANSITION_UNIT = "token_transition"
"""The unit of work of a check that changes a token's state or locks it (with its audit)."""


def _audited(before: Token, after: Token) -> bool:
    """Whether writing `after` over `before` is a transition the audit log records."""
    return after.state is not before.state or after.locked_until > before.locked_until


def _audit_transition(app: App, actor: Actor, before: Token, verdict: Verdict, via: str) -> None:
    after = verdict.token
    if after.state is not before.state:
        app.audit(actor, f"token_{after.state.value}", after.serial, via=via)
    if after.locked_until > before.locked_until:
        app.audit(
            actor, "token_locked", after.serial, until=after.locked_until, level=after.lock_level
        )


def _no_hmac(message: bytes) -> bytes:
    raise AssertionError("no HMAC for a token without a seed")
