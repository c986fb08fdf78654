"""Out-of-band codes, whatever they are for (a device replacement, a login): made from HSM
randomness, kept only as an HSM-keyed MAC, single use, expiring, superseded by a newer one,
and guarded by a wait after repeated wrong tries. Each check is one conditional write,
re-decided if another replica wrote first, so a code is accepted at most once and no wrong
try goes uncounted.

The purpose-specific use cases (`lifecycle` for replacement, `login` for Cl@ve-style login
codes) decide what a code earns and how an outcome is reported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from otphsm.core.app.context import App
from otphsm.core.app.writes import LOST_RACE, LostRace, with_retries
from otphsm.core.errors import InvalidInput
from otphsm.core.records import OobCode, OobPurpose
from otphsm.core.verification import VerifyResult


@dataclass(frozen=True, slots=True)
class OobCheck:
    result: VerifyResult
    """OK; WRONG_CODE (counted); LOCKED (a wait is running); REPLAYED (the latest code was
    already used); EXPIRED (the latest code has expired)."""
    code: OobCode
    """The record as it was decided on (as stored after the decision, for OK and WRONG_CODE)."""
    retry_after: int = 0
    """LOCKED, or a WRONG_CODE that started a wait: seconds until the next try."""
    tries_left: int = 0
    """WRONG_CODE without a wait: wrong tries left before one."""


def code_mac(app: App, codice_fiscale: str, purpose: OobPurpose, text: str) -> bytes:
    return app.hsm.keyed_digest(_code_mac_input(codice_fiscale, purpose, text))


def _code_mac_input(codice_fiscale: str, purpose: OobPurpose, text: str) -> bytes:
    return f"oob:{purpose.value}:{codice_fiscale}:{text}".encode()


def check_digits(text: str, digits: int) -> str:
    if len(text) != digits or not text.isascii() or not text.isdigit():
        raise InvalidInput(f"the code is {digits} digits")
    return text


def new_code(app: App, codice_fiscale: str, purpose: OobPurpose) -> tuple[OobCode, str]:
    """Store a new code (superseding the citizen's unused ones of this purpose) and return it
    with its text. The text is the secret: hand it to one gateway, then forget it."""
    digits = app.policy.sms_code_digits
    value = int.from_bytes(app.hsm.random_bytes(8), "big") % 10**digits
    text = str(value).zfill(digits)
    now = app.now()
    code = OobCode(
        oob_id=app.new_id("oob"),
        codice_fiscale=codice_fiscale,
        purpose=purpose,
        code_mac=code_mac(app, codice_fiscale, purpose, text),
        created_at=now,
        expires_at=now + app.policy.sms_code_seconds,
    )
    app.store.insert_oob_code(code)
    return code, text


def deliver(app: App, code: OobCode, send: Callable[[], None]) -> None:
    """Run `send`; if it fails the code is withdrawn (never usable) and the error raised: a
    code whose delivery is unknown must not be left for someone else to guess or receive."""
    try:
        send()
    except BaseException:
        withdraw(app, code)
        raise


def withdraw(app: App, code: OobCode) -> None:
    """Mark the code superseded, unless something newer already did."""

    def attempt() -> LostRace | None:
        current = app.store.current_oob_code(code.codice_fiscale, code.purpose)
        if current is None or current.oob_id != code.oob_id or current.superseded:
            return None
        return None if app.store.update_oob_code(replace(current, superseded=True)) else LOST_RACE

    with_retries(app, attempt)


def check_code(
    app: App,
    codice_fiscale: str,
    purpose: OobPurpose,
    text: str,
    *,
    also_right: Callable[[], bool] | None = None,
    own_counter: bool = True,
) -> OobCheck | None:
    """Decide on `text` against the citizen's latest code of `purpose`; None if none was ever
    sent. `also_right` is a further check (a personal prefix) that must pass too; a failure of
    either counts as one wrong try, and neither is computed while a wait is running.
    `own_counter=False` (a request with an origin): the code's own wait neither refuses nor
    counts; the caller counts the failure on the origin."""

    def attempt() -> OobCheck | LostRace | None:
        code = app.store.current_oob_code(codice_fiscale, purpose)
        if code is None:
            return None
        decided = _decide(app, code, text, also_right, own_counter=own_counter)
        if decided.code is code or app.store.update_oob_code(decided.code):
            return decided
        return LOST_RACE

    return with_retries(app, attempt)


def _decide(
    app: App,
    code: OobCode,
    text: str,
    also_right: Callable[[], bool] | None,
    *,
    own_counter: bool,
) -> OobCheck:
    now = app.now()
    if own_counter and code.locked_until > now:
        return OobCheck(VerifyResult.LOCKED, code, retry_after=code.locked_until - now)
    if code.used_at is not None:
        return OobCheck(VerifyResult.REPLAYED, code)
    if code.expires_at <= now:
        return OobCheck(VerifyResult.EXPIRED, code)
    typed = _code_mac_input(code.codice_fiscale, code.purpose, text)
    right = app.hsm.keyed_digest_matches(typed, code.code_mac)
    if also_right is not None:
        right = also_right() and right
    if right:
        return OobCheck(VerifyResult.OK, replace(code, used_at=now))
    if not own_counter:
        return OobCheck(VerifyResult.WRONG_CODE, code)
    return _counted_wrong_try(app, code, now)


def _counted_wrong_try(app: App, code: OobCode, now: int) -> OobCheck:
    failures = code.failures + 1
    limit = app.policy.secret_failures_before_wait
    if failures >= limit:
        wait = app.policy.secret_wait_seconds
        locked = replace(code, failures=0, locked_until=now + wait)
        return OobCheck(VerifyResult.WRONG_CODE, locked, retry_after=wait)
    return OobCheck(
        VerifyResult.WRONG_CODE, replace(code, failures=failures), tries_left=limit - failures
    )
