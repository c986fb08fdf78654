"""Device lifecycle: suspend, resume, revoke, unlock, list; replacement after an SMS code."""

from __future__ import annotations

import hmac
from dataclasses import replace

from otphsm.core.app.context import Actor, App
from otphsm.core.app.enrolment import grant_authorisation
from otphsm.core.app.validation import decide_and_store
from otphsm.core.codice_fiscale import validate as validate_codice_fiscale
from otphsm.core.errors import (
    AuthorisationRefused,
    FailedPrecondition,
    InvalidInput,
    NotFound,
)
from otphsm.core.otp import HmacFn
from otphsm.core.records import Authorisation, OobCode, OobPurpose
from otphsm.core.tokens import Token, TokenState, check_serial
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

    verdict = decide_and_store(app, actor, serial, decide, operation)
    if operation == "unlock":
        app.audit(actor, "token_unlocked", serial)
    return verdict.token


def list_tokens(app: App, codice_fiscale: str) -> list[Token]:
    return app.store.tokens_of(validate_codice_fiscale(codice_fiscale).code)


def get_token(app: App, serial: str) -> Token:
    token = app.store.get_token(check_serial(serial))
    if token is None:
        raise NotFound(f"no token with serial {serial}")
    return token


# --- replacement of a lost phone after an out-of-band code -------------------------------


def _oob_mac(app: App, cf: str, purpose: OobPurpose, text: str) -> bytes:
    return app.hsm.keyed_digest(f"oob:{purpose.value}:{cf}:{text}".encode())


def send_replacement_code(app: App, actor: Actor, codice_fiscale: str) -> OobCode:
    codice_fiscale = validate_codice_fiscale(codice_fiscale).code
    citizen = app.store.get_citizen(codice_fiscale)
    if citizen is None:
        raise NotFound("no enrolled citizen with that codice fiscale")
    if not citizen.phone_number:
        raise FailedPrecondition("no phone number on record: use a card authorisation instead")
    purpose = OobPurpose.DEVICE_REPLACEMENT
    now = app.now()
    digits = app.policy.sms_code_digits
    value = int.from_bytes(app.hsm.random_bytes(8), "big") % 10**digits
    text = str(value).zfill(digits)
    code = OobCode(
        oob_id=app.new_id("oob"),
        codice_fiscale=codice_fiscale,
        purpose=purpose,
        code_mac=_oob_mac(app, codice_fiscale, purpose, text),
        created_at=now,
        expires_at=now + app.policy.sms_code_seconds,
    )
    app.store.insert_oob_code(code)
    minutes = app.policy.sms_code_seconds // 60
    app.sms.send(
        citizen.phone_number,
        f"{app.policy.issuer}: your code to replace your device is {text}. "
        f"It is valid {minutes} minutes. Nobody will ever ask you for it.",
    )
    app.audit(actor, "replacement_code_sent", codice_fiscale, oob=code.oob_id)
    return code


def authorise_with_sms_code(
    app: App, actor: Actor, codice_fiscale: str, text: str
) -> Authorisation:
    """A right SMS code earns an authorisation (as a card does) to issue a replacement."""
    codice_fiscale = validate_codice_fiscale(codice_fiscale).code
    digits = app.policy.sms_code_digits
    if len(text) != digits or not text.isascii() or not text.isdigit():
        raise InvalidInput(f"the code is {digits} digits")
    purpose = OobPurpose.DEVICE_REPLACEMENT
    code = app.store.current_oob_code(codice_fiscale, purpose)
    if code is None:
        raise NotFound("no replacement code was sent to this citizen")
    now = app.now()
    if code.used_at is not None:
        raise FailedPrecondition("this code was already used: ask for a new one")
    if code.expires_at <= now:
        raise FailedPrecondition("this code has expired: ask for a new one")
    if code.locked_until > now:
        raise FailedPrecondition(
            "too many wrong codes: wait before trying again", retry_after=code.locked_until - now
        )
    expected = _oob_mac(app, codice_fiscale, purpose, text)
    if not hmac.compare_digest(expected, code.code_mac):
        failures = code.failures + 1
        limit = app.policy.secret_failures_before_wait
        if failures >= limit:
            wait = app.policy.secret_wait_seconds
            app.store.update_oob_code(replace(code, failures=0, locked_until=now + wait))
            message = f"wrong code: wait {wait} s before trying again"
        else:
            app.store.update_oob_code(replace(code, failures=failures))
            message = f"wrong code: {limit - failures} tries before a wait"
        app.audit(actor, "replacement_code_wrong", codice_fiscale, failures=failures)
        raise AuthorisationRefused(message)
    if not app.store.update_oob_code(replace(code, used_at=now)):
        raise FailedPrecondition("this code was just used")
    return grant_authorisation(app, actor, codice_fiscale, "sms_code")
