"""Device lifecycle: suspend, resume, revoke, unlock, list; replacement after an SMS code."""

from __future__ import annotations

from dataclasses import replace

from otphsm.core.app import lockout, oob
from otphsm.core.app.context import Actor, App
from otphsm.core.app.enrolment import grant_authorisation
from otphsm.core.app.validation import decide_and_store
from otphsm.core.codice_fiscale import validate as validate_codice_fiscale
from otphsm.core.errors import AuthorisationRefused, FailedPrecondition, NotFound
from otphsm.core.otp import HmacFn
from otphsm.core.ports import Conflict
from otphsm.core.records import Authorisation, OobCode, OobPurpose
from otphsm.core.tokens import Token, TokenKind, TokenState, check_serial
from otphsm.core.verification import Verdict, VerifyResult

_TRANSITIONS: dict[str, tuple[frozenset[TokenState], TokenState | None]] = {
    "suspend": (frozenset({TokenState.ACTIVE}), TokenState.SUSPENDED),
    "resume": (frozenset({TokenState.SUSPENDED}), TokenState.ACTIVE),
    "revoke": (
        frozenset({TokenState.ACTIVE, TokenState.SUSPENDED, TokenState.PENDING}),
        TokenState.REVOKED,
    ),
    "unlock": (frozenset({TokenState.ACTIVE, TokenState.SUSPENDED, TokenState.PENDING}), None),
}


def change_state(app: App, actor: Actor, serial: str, operation: str) -> Token:
    """Apply `operation` (suspend, resume, revoke, unlock) as one conditional write."""
    check_serial(serial)
    allowed, target = _TRANSITIONS[operation]

    def decide(token: Token, _fn: HmacFn) -> Verdict:
        if token.state not in allowed:
            raise FailedPrecondition(f"cannot {operation} a token that is {token.state.value}")
        if operation == "resume" and not token.codice_fiscale:
            raise FailedPrecondition("an unassigned fob is resumed by assigning it to a citizen")
        if target is None:
            changed = replace(token, failures=0, lock_level=0, locked_until=0)
        else:
            changed = replace(token, state=target)
        return Verdict(VerifyResult.OK, changed)

    if operation == "resume":
        _refuse_a_second_active_phone(app, serial)
    try:
        verdict = decide_and_store(app, actor, serial, decide, operation)
    except Conflict as exc:  # a phone turned active between the check and the write
        raise FailedPrecondition(_SECOND_PHONE) from exc
    if operation == "unlock":
        lockout.release(app, verdict.token)
        app.audit(actor, "token_unlocked", serial)
    return verdict.token


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


def list_tokens(app: App, codice_fiscale: str) -> list[Token]:
    return app.store.tokens_of(validate_codice_fiscale(codice_fiscale).code)


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
    """A right SMS code earns an authorisation (as a card does) to issue a replacement."""
    codice_fiscale = validate_codice_fiscale(codice_fiscale).code
    oob.check_digits(text, app.policy.sms_code_digits)
    checked = oob.check_code(app, codice_fiscale, OobPurpose.DEVICE_REPLACEMENT, text)
    if checked is None:
        raise NotFound("no replacement code was sent to this citizen")
    result = checked.result
    if result is VerifyResult.REPLAYED:
        raise FailedPrecondition("this code was already used: ask for a new one")
    if result is VerifyResult.EXPIRED:
        raise FailedPrecondition("this code has expired: ask for a new one")
    if result is VerifyResult.LOCKED:
        raise FailedPrecondition(
            "too many wrong codes: wait before trying again", retry_after=checked.retry_after
        )
    if result is VerifyResult.WRONG_CODE:
        failures = app.policy.secret_failures_before_wait - checked.tries_left
        app.audit(actor, "replacement_code_wrong", codice_fiscale, failures=failures)
        if checked.retry_after:
            raise AuthorisationRefused(
                f"wrong code: wait {checked.retry_after} s before trying again"
            )
        raise AuthorisationRefused(f"wrong code: {checked.tries_left} tries before a wait")
    return grant_authorisation(app, actor, codice_fiscale, "sms_code")
