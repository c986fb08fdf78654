"""Out-of-band login codes (Cl@ve PIN): a relying party asks for a single-use code for a
citizen; it goes by SMS or by push to the citizen's token app; the citizen types it back,
after their personal 4-character part if they chose one.

The personal part is something the citizen knows and the message never carries, so a
message read by someone else is not enough to log in. Only its HSM-keyed MAC is stored.

A wrong code is a result (`WRONG_CODE`, like a wrong OTP), never an error; only malformed
input, an unknown citizen, a refused delivery or a used-up quota are errors.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, replace

from otphsm.core.app import lockout, oob
from otphsm.core.app.context import Actor, App
from otphsm.core.codice_fiscale import validate as validate_codice_fiscale
from otphsm.core.errors import FailedPrecondition, InvalidInput, NotFound, RateLimited
from otphsm.core.lockout import login_code_subject
from otphsm.core.records import Citizen, OobPurpose, RateLimit
from otphsm.core.tokens import TokenKind, TokenState
from otphsm.core.verification import VerifyOutcome, VerifyResult

PREFIX_LENGTH = 4
PREFIX_ALPHABET = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
"""The personal part: 4 of A-Z and 0-9; typed in either case, compared in upper case."""
_PURPOSE = OobPurpose.LOGIN

_Send = Callable[[str], None]


class Channel(enum.StrEnum):
    SMS = "sms"
    PUSH = "push"
    """To the token app on the citizen's active mobile device."""


@dataclass(frozen=True, slots=True)
class LoginCodeSent:
    oob_id: str
    expires_at: int
    channel: Channel
    prefix_required: bool
    """The citizen types their personal part before the digits."""
    device_serial: str = ""
    """PUSH: the token the code was pushed to."""


def set_code_prefix(app: App, actor: Actor, codice_fiscale: str, prefix: str) -> Citizen:
    """Record (as a MAC) the personal part the citizen chose at the counter; "" removes it."""
    citizen = _citizen(app, codice_fiscale)
    mac = _prefix_mac(app, citizen.codice_fiscale, check_prefix(prefix)) if prefix else None
    updated = replace(citizen, code_prefix_mac=mac, updated_at=app.now())
    app.store.upsert_citizen(updated)
    action = "code_prefix_set" if mac else "code_prefix_removed"
    app.audit(actor, action, citizen.codice_fiscale)
    return updated


def request_login_code(
    app: App, actor: Actor, codice_fiscale: str, channel: Channel
) -> LoginCodeSent:
    """Make a code, supersede the citizen's earlier one, and deliver it. Refused with
    `RateLimited` (nothing made, nothing sent) past the per-citizen or per-caller quota."""
    citizen = _citizen(app, codice_fiscale)
    cf = citizen.codice_fiscale
    send, device_serial = _sender(app, citizen, channel)
    _take_quota(app, actor, cf)
    code, text = oob.new_code(app, cf, _PURPOSE)
    minutes = app.policy.sms_code_seconds // 60
    typed = f"your personal part then {text}" if citizen.code_prefix_mac else f"the code {text}"
    message = (
        f"{app.policy.issuer}: to log in, type {typed}. It is valid {minutes} minutes and "
        "works once. Nobody will ever ask you for it."
    )
    try:
        oob.deliver(app, code, lambda: send(message))
    except Exception as exc:
        app.audit(
            actor,
            "login_code_undelivered",
            cf,
            oob=code.oob_id,
            channel=channel.value,
            error=type(exc).__name__,
        )
        raise
    app.audit(
        actor,
        "login_code_sent",
        cf,
        oob=code.oob_id,
        channel=channel.value,
        device=device_serial or None,
    )
    return LoginCodeSent(
        code.oob_id, code.expires_at, channel, citizen.code_prefix_mac is not None, device_serial
    )


def verify_login_code(
    app: App, actor: Actor, codice_fiscale: str, typed: str, origin: str = ""
) -> VerifyOutcome:
    """OK consumes the code. WRONG_CODE counts a try (3 → a 60 s wait, LOCKED until then: on
    the code without an origin, on the origin with one, see `core/app/lockout.py`);
    REPLAYED: the latest code was already used; EXPIRED: it has expired (ask for a new one)."""
    citizen = _citizen(app, codice_fiscale)
    cf = citizen.codice_fiscale
    gate = lockout.open_gate(app, actor, login_code_subject(cf), origin, own_record=True)
    wait = lockout.check(app, gate)
    if wait:
        return VerifyOutcome(VerifyResult.LOCKED, "", wait)
    with lockout.cancelled_on_error(app, gate):
        digits = app.policy.sms_code_digits
        prefix_mac = citizen.code_prefix_mac
        also_right = None
        if prefix_mac is not None:
            if len(typed) != PREFIX_LENGTH + digits:
                raise InvalidInput(
                    f"the code is the citizen's {PREFIX_LENGTH}-character personal part "
                    f"then {digits} digits"
                )
            prefix, typed = check_prefix(typed[:PREFIX_LENGTH]), typed[PREFIX_LENGTH:]

            def also_right() -> bool:
                return app.hsm.keyed_digest_matches(_prefix_mac_input(cf, prefix), prefix_mac)

        oob.check_digits(typed, digits)
        checked = oob.check_code(
            app, cf, _PURPOSE, typed, also_right=also_right, own_counter=gate.own_counter
        )
        if checked is None:
            raise NotFound("no login code was requested for this citizen")
    started = lockout.report(app, actor, gate, checked.result, counted=(VerifyResult.WRONG_CODE,))
    if checked.result is VerifyResult.OK:
        app.audit(actor, "login_code_accepted", cf, oob=checked.code.oob_id)
    elif checked.result is VerifyResult.WRONG_CODE and checked.retry_after:
        app.audit(
            actor,
            "login_code_locked",
            cf,
            oob=checked.code.oob_id,
            until=app.now() + checked.retry_after,
        )
    return VerifyOutcome(checked.result, "", checked.retry_after or started)


def wrong_personal_part(
    app: App, actor: Actor, gate: lockout.Gate, codice_fiscale: str, personal_part: str | None
) -> VerifyOutcome | None:
    """For a front end that asks for the personal part in front of every code (a RADIUS NAS):
    None if `personal_part` is None or is the citizen's; else the outcome WRONG_CODE, counted
    on the gate's origin (one is required), the code itself never looked at. A citizen who
    chose no personal part has none to type: every try is wrong."""
    if personal_part is None:
        return None
    if gate.own_counter or not gate.origin:
        raise InvalidInput("origin: required with a personal part")
    citizen = app.store.get_citizen(codice_fiscale)
    normalised = personal_part.upper() if personal_part.isascii() else ""
    right = (
        citizen is not None
        and citizen.code_prefix_mac is not None
        and len(normalised) == PREFIX_LENGTH
        and set(normalised) <= PREFIX_ALPHABET
        and app.hsm.keyed_digest_matches(
            _prefix_mac_input(citizen.codice_fiscale, normalised), citizen.code_prefix_mac
        )
    )
    if right:
        return None
    started = lockout.report(app, actor, gate, VerifyResult.WRONG_CODE)
    return VerifyOutcome(VerifyResult.WRONG_CODE, "", started)


def check_prefix(prefix: str) -> str:
    """The personal part, upper case; `InvalidInput` unless it is 4 of A-Z, a-z and 0-9."""
    normalised = prefix.upper() if prefix.isascii() else ""
    if len(normalised) != PREFIX_LENGTH or not set(normalised) <= PREFIX_ALPHABET:
        raise InvalidInput(f"the personal part is exactly {PREFIX_LENGTH} of A-Z and 0-9")
    return normalised


def _prefix_mac(app: App, codice_fiscale: str, prefix: str) -> bytes:
    return app.hsm.keyed_digest(_prefix_mac_input(codice_fiscale, prefix))


def _prefix_mac_input(codice_fiscale: str, prefix: str) -> bytes:
    return f"oob-prefix:{codice_fiscale}:{prefix}".encode()


def _citizen(app: App, codice_fiscale: str) -> Citizen:
    citizen = app.store.get_citizen(validate_codice_fiscale(codice_fiscale).code)
    if citizen is None:
        raise NotFound("no enrolled citizen with that codice fiscale")
    return citizen


def _sender(app: App, citizen: Citizen, channel: Channel) -> tuple[_Send, str]:
    """How the message will go, checked before anything is made; and the device for PUSH."""
    if channel is Channel.SMS:
        phone_number = citizen.phone_number
        if not phone_number:
            raise FailedPrecondition("no phone number on record for SMS: use push or set one")
        return lambda text: app.sms.send(phone_number, text), ""
    push = app.push
    if push is None:
        raise FailedPrecondition("this service does not deliver codes by push: use SMS")
    devices = [
        t
        for t in app.store.tokens_of(citizen.codice_fiscale)
        if t.kind is TokenKind.MOBILE and t.state is TokenState.ACTIVE
    ]
    if not devices:
        raise FailedPrecondition("the citizen has no active token app to push a code to")
    serial = devices[-1].serial
    return lambda text: push.push(serial, text), serial


def _take_quota(app: App, actor: Actor, codice_fiscale: str) -> None:
    policy = app.policy
    limits = (
        RateLimit(
            f"login-code:citizen:{codice_fiscale}",
            policy.login_codes_per_citizen,
            policy.login_code_citizen_window_seconds,
        ),
        RateLimit(
            f"login-code:caller:{actor.name}",
            policy.login_codes_per_caller,
            policy.login_code_caller_window_seconds,
        ),
    )
    wait = app.store.take_rate_slots(limits, app.now())
    if wait:
        raise RateLimited(
            f"too many login codes for this citizen or from this caller: try again in {wait} s",
            retry_after=wait,
        )
