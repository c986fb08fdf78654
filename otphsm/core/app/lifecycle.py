"""Device lifecycle: suspend, resume, revoke, unlock, list; replacement after an SMS code."""

from __future__ import annotations

import enum
from dataclasses import replace
from typing import NoReturn

from otphsm.core.app import lockout, oob
from otphsm.core.app.context import Actor, App
from otphsm.core.app.enrolment import grant_authorisation
from otphsm.core.app.revocation import check_reason, revoke_token
from otphsm.core.app.writes import LOST_RACE, LostRace, with_retries
from otphsm.core.codice_fiscale import validate as validate_codice_fiscale
from otphsm.core.errors import AuthorisationRefused, FailedPrecondition, NotFound
from otphsm.core.ports import Conflict
from otphsm.core.records import Authorisation, OobCode, OobPurpose
from otphsm.core.tokens import Token, TokenKind, TokenState, check_serial
from otphsm.core.verification import VerifyResult


class Operation(enum.StrEnum):
    SUSPEND = "suspend"
    RESUME = "resume"
    REVOKE = "revoke"
    UNLOCK = "unlock"


_LIVE = frozenset({TokenState.ACTIVE, TokenState.SUSPENDED, TokenState.PENDING})
_ALLOWED: dict[Operation, frozenset[TokenState]] = {
    Operation.SUSPEND: frozenset({TokenState.ACTIVE}),
    Operation.RESUME: frozenset({TokenState.SUSPENDED}),
    Operation.REVOKE: _LIVE,
    Operation.UNLOCK: _LIVE,
}


def change_state(app: App, actor: Actor, serial: str, operation: str, reason: str = "") -> Token:
    """Apply `operation` (suspend, resume, revoke, unlock) as one conditional write (retried
    on a lost race); the token as written. `reason`, if given, goes into the audit entry."""
    check_serial(serial)
    check_reason(reason)
    op = Operation(operation)
    with app.transaction(STATE_CHANGE) as work:  # the token and its audit entries
        return _change_state(work, actor, serial, op, reason)


def _change_state(app: App, actor: Actor, serial: str, op: Operation, reason: str) -> Token:
    if op is Operation.REVOKE:
        if not revoke_token(app, actor, serial, via=op.value, reason=reason):
            raise FailedPrecondition("cannot revoke a token that is revoked")
        return get_token(app, serial)
    if op is Operation.RESUME:
        _refuse_a_second_active_phone(app, serial)

    def attempt() -> tuple[Token, Token] | LostRace:
        token = get_token(app, serial)
        if token.state not in _ALLOWED[op]:
            raise FailedPrecondition(f"cannot {op.value} a token that is {token.state.value}")
        if op is Operation.RESUME and not token.codice_fiscale:
            raise FailedPrecondition("an unassigned fob is resumed by assigning it to a citizen")
        changed = _changed(token, op)
        try:
            written = app.store.update_token(changed)
        except Conflict as exc:  # a phone turned active between the check and the write
            raise FailedPrecondition(_SECOND_PHONE) from exc
        return (token, changed) if written else LOST_RACE

    before, after = with_retries(app, attempt)
    why = check_reason(reason)
    if after.state is not before.state:
        app.audit(actor, f"token_{after.state.value}", serial, via=op.value, **why)
    if op is Operation.UNLOCK:
        lockout.release(app, after)
        app.audit(actor, "token_unlocked", serial, **why)
    return replace(after, version=after.version + 1)


def _changed(token: Token, op: Operation) -> Token:
    if op is Operation.SUSPEND:
        return replace(token, state=TokenState.SUSPENDED)
    if op is Operation.RESUME:
        return replace(token, state=TokenState.ACTIVE)
    return replace(token, failures=0, lock_level=0, locked_until=0)  # UNLOCK


STATE_CHANGE = "state_change"
SMS_REPLACEMENT = "sms_replacement"
"""Units of work (`App.transaction`): their write points' prefixes."""

_SECOND_PHONE = "the citizen has another active phone: revoke or suspend it first"


def _refuse_a_second_active_phone(app: App, serial: str) -> None:
    token = get_token(app, serial)
    if token.kind is not TokenKind.MOBILE or token.state is not TokenState.SUSPENDED:
        return
    if any(
        other.serial != serial
        and other.kind is TokenKind.MOBILE
        and other.state is TokenState.ACTIVE
        for other in app.store.tokens_of(token.codice_fiscale)
    ):
        raise FailedPrecondition(_SECOND_PHONE)


def get_token(app: App, serial: str) -> Token:
    token = app.store.get_token(check_serial(serial))
    if token is None:
        raise NotFound("serial: no token with that serial")
    return token


# --- replacement of a lost phone after an out-of-band code -------------------------------


def send_replacement_code(app: App, actor: Actor, codice_fiscale: str) -> OobCode:
    codice_fiscale = validate_codice_fiscale(codice_fiscale).code
    citizen = app.store.get_citizen(codice_fiscale)
    if citizen is None:
        raise NotFound("no enrolled citizen with that codice fiscale")
    phone_number = citizen.phone_number
    if not phone_number:
        raise FailedPrecondition("no phone number on record: use a card authorisation instead")
    code, text = oob.new_code(app, codice_fiscale, OobPurpose.DEVICE_REPLACEMENT)
    minutes = app.policy.sms_code_seconds // 60
    message = (
        f"{app.policy.issuer}: your code to replace your device is {text}. "
        f"It is valid {minutes} minutes. Nobody will ever ask you for it."
    )
    oob.deliver(app, code, lambda: app.sms.send(phone_number, message))
    app.audit(actor, "replacement_code_sent", codice_fiscale, oob=code.oob_id)
    return code


def authorise_with_sms_code(
    app: App, actor: Actor, codice_fiscale: str, text: str
) -> Authorisation:
    """A right SMS code earns an authorisation (as a card does) to issue a replacement: the
    code used and the authorisation granted in one unit of work."""
    codice_fiscale = validate_codice_fiscale(codice_fiscale).code
    oob.check_digits(text, app.policy.sms_code_digits)
    with app.transaction(SMS_REPLACEMENT) as work:
        checked = oob.check_code(work, codice_fiscale, OobPurpose.DEVICE_REPLACEMENT, text)
        if checked is None:
            raise NotFound("no replacement code was sent to this citizen")
        if checked.result is VerifyResult.OK:
            return grant_authorisation(work, actor, codice_fiscale, "sms_code")
        if checked.result is VerifyResult.WRONG_CODE:
            failures = app.policy.secret_failures_before_wait - checked.tries_left
            work.audit(actor, "replacement_code_wrong", codice_fiscale, failures=failures)
    _refuse(checked)


def _refuse(checked: oob.OobCheck) -> NoReturn:
    """The refusal for a code that earned nothing (its failure, if any, is committed)."""
    result = checked.result
    if result is VerifyResult.REPLAYED:
        raise FailedPrecondition("this code was already used: ask for a new one")
    if result is VerifyResult.EXPIRED:
        raise FailedPrecondition("this code has expired: ask for a new one")
    if result is VerifyResult.LOCKED:
        raise FailedPrecondition(
            "too many wrong codes: wait before trying again", retry_after=checked.retry_after
        )
    if checked.retry_after:
        raise AuthorisationRefused(f"wrong code: wait {checked.retry_after} s before trying again")
    raise AuthorisationRefused(f"wrong code: {checked.tries_left} tries before a wait")
