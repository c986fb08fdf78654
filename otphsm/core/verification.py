"""The verification policy: window, replay, drift and lockout, as a pure function of a token's
state, the code, the time and an HMAC function. The caller persists the returned token with a
conditional write (on `version`), so a code is accepted at most once across replicas.

A wrong code is a result, not an error; only a malformed code raises `InvalidInput`. A replay
of an accepted code is REPLAYED and counts as no failure. The token's own failure counter is
the one for requests without an origin; with an origin (`own_counter=False`) the counting
belongs to `core.lockout`, per origin.
"""

from __future__ import annotations

import enum
import hmac
from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Annotated

from otphsm.core.bounds import at_least
from otphsm.core.errors import InvalidInput
from otphsm.core.otp import MAX_DIGITS, MIN_DIGITS, HmacFn, hotp, totp_counter
from otphsm.core.tokens import OtpMode, Token, TokenState


class VerifyResult(enum.StrEnum):
    OK = "ok"
    WRONG_CODE = "wrong_code"
    REPLAYED = "replayed"
    """The code is right for a counter or time step that was already used."""
    EXPIRED = "expired"
    """The code is right for a time step that has passed the window."""
    LOCKED = "locked"
    NOT_ACTIVE = "not_active"
    """Suspended, or still waiting for proof of possession where that is not allowed."""
    REVOKED = "revoked"


FAILURES = (VerifyResult.WRONG_CODE, VerifyResult.EXPIRED)
"""What counts toward a lock. REPLAYED does not: a relying party retrying, or callers racing
with the owner's own code, must not lock the owner out."""


@dataclass(frozen=True, slots=True)
class VerifyOutcome:
    """What a verification answers: the result, the token it is about, and the wait left."""

    result: VerifyResult
    serial: str
    retry_after: int = 0

    @property
    def ok(self) -> bool:
        return self.result is VerifyResult.OK


@dataclass(frozen=True, slots=True)
class VerificationPolicy:
    totp_window_steps: Annotated[int, at_least(0)] = 1
    """Steps accepted either side of the device's expected step (network delay)."""
    first_use_window_steps: Annotated[int, at_least(0)] = 2
    """At proof of possession no drift is known yet: a phone up to ±2 steps off (e.g. 40 s
    fast at any moment of a 30 s step) is accepted once, and its drift learned from there."""
    hotp_look_ahead: Annotated[int, at_least(0)] = 10
    max_drift_steps: Annotated[int, at_least(0)] = 20
    """Learned drift never exceeds this (±10 min at 30 s); beyond it only a resync helps."""
    expired_look_back_steps: Annotated[int, at_least(0)] = 10
    """How far back a right-but-late TOTP code is recognised and reported as expired."""
    lock_after_failures: Annotated[int, at_least(1)] = 3
    lock_seconds: Annotated[int, at_least(1)] = 60
    lock_max_seconds: Annotated[int, at_least(1)] = 900
    resync_hotp_range: Annotated[int, at_least(0)] = 1000
    resync_totp_seconds: Annotated[int, at_least(1)] = 600
    known_origin_days: Annotated[int, at_least(1)] = 90
    """An origin that logged in on a token within this many days is known there: other
    origins' failures never block it."""
    unknown_origin_failures: Annotated[int, at_least(1)] = 100
    """Failures all unknown origins (and requests without one) together may make on one
    token per `unknown_origin_window_seconds`; then they get LOCKED until it refills."""
    unknown_origin_window_seconds: Annotated[int, at_least(1)] = 86400


@dataclass(frozen=True, slots=True)
class Attempts:
    """A failure counter and its growing wait: a token's own, or one origin's on one subject."""

    failures: int = 0
    """Consecutive failures since the last success or lock."""
    lock_level: int = 0
    """Locks in a row (each doubles the wait), reset by a success."""
    locked_until: int = 0

    def wait(self, now: float) -> int:
        """Seconds until the next try is allowed; 0 when it is allowed now."""
        return _ceil(self.locked_until - now) if self.locked_until > now else 0


def count_failure(
    attempts: Attempts, now: float, policy: VerificationPolicy
) -> tuple[Attempts, int]:
    """One more failure: `lock_after_failures` in a row start a wait of `lock_seconds`,
    doubling with each lock in a row up to `lock_max_seconds`. Returns the new counter and the
    wait it started (0 for none)."""
    failures = attempts.failures + 1
    if failures < policy.lock_after_failures:
        return replace(attempts, failures=failures), 0
    level = attempts.lock_level + 1
    seconds = min(policy.lock_seconds * 2 ** (level - 1), policy.lock_max_seconds)
    return Attempts(0, level, int(now) + seconds), seconds


@dataclass(frozen=True, slots=True)
class Verdict:
    result: VerifyResult
    token: Token
    """The token to persist; `token is` the input when nothing changed (no write needed)."""
    retry_after: int = 0
    """Seconds until a locked token may be tried again."""
    matched_factor: int | None = None


def check_code_shape(code: str) -> str:
    """What any code looks like, for checks made before the token (its digits) is known."""
    if not (MIN_DIGITS <= len(code) <= MAX_DIGITS and code.isascii() and code.isdigit()):
        raise InvalidInput(f"a code is {MIN_DIGITS} to {MAX_DIGITS} digits", field="code")
    return code


def check_code_format(code: str, digits: int) -> str:
    if len(code) != digits or not code.isascii() or not code.isdigit():
        raise InvalidInput(f"a code is exactly {digits} digits", field="code")
    return code


def verify(
    token: Token,
    code: str,
    now: float,
    hmac_fn: HmacFn,
    policy: VerificationPolicy,
    *,
    allow_pending: bool = False,
    own_counter: bool = True,
) -> Verdict:
    """Decide on `code` and return the token's next state. No HMAC is computed while locked.
    `own_counter=False` (a request with an origin, or by codice fiscale): the token's own lock
    neither refuses nor counts, and a success leaves it as it is."""
    check_code_format(code, token.params.digits)
    refusal = _state_refusal(token, now, allow_pending=allow_pending, own_counter=own_counter)
    if refusal is not None:
        return refusal
    if token.params.mode is OtpMode.HOTP:
        verdict = _verify_hotp(token, code, now, hmac_fn, policy)
    else:
        verdict = _verify_totp(token, code, now, hmac_fn, policy)
    return verdict if own_counter else _uncounted(token, verdict)


def resync(
    token: Token,
    first: str,
    second: str,
    now: float,
    hmac_fn: HmacFn,
    policy: VerificationPolicy,
    *,
    own_counter: bool = True,
) -> Verdict:
    """Find two consecutive codes (HOTP within 1,000 counters, TOTP within ±10 min) and move
    the moving factor (and the drift) to just after them. A miss counts as a failure."""
    digits = token.params.digits
    check_code_format(first, digits)
    check_code_format(second, digits)
    refusal = _state_refusal(token, now, allow_pending=False, own_counter=own_counter)
    if refusal is not None:
        return refusal
    verdict = _resync(token, first, second, now, hmac_fn, policy)
    return verdict if own_counter else _uncounted(token, verdict)


def _resync(
    token: Token, first: str, second: str, now: float, hmac_fn: HmacFn, policy: VerificationPolicy
) -> Verdict:
    digits = token.params.digits
    if token.params.mode is OtpMode.HOTP:
        factors: Iterable[int] = range(
            token.moving_factor, token.moving_factor + policy.resync_hotp_range
        )
    else:
        current = _current_step(token, now)
        reach = policy.resync_totp_seconds // token.params.period
        # The first code may be one step older than the reach: it was on the phone's screen
        # a step before the second, so a phone exactly 10 min slow resyncs like one 10 min fast.
        factors = range(max(current - reach - 1, token.moving_factor), current + reach + 1)
    previous_was_first = False
    for factor in factors:
        code = hotp(hmac_fn, factor, digits)
        if previous_was_first and hmac.compare_digest(code, second):
            drift = 0
            if token.params.mode is OtpMode.TOTP:
                drift = factor - _current_step(token, now)
            updated = _success(token, now, factor, drift)
            return Verdict(VerifyResult.OK, updated, matched_factor=factor)
        previous_was_first = hmac.compare_digest(code, first)
    return _failure(token, now, VerifyResult.WRONG_CODE, policy)


def _state_refusal(
    token: Token, now: float, *, allow_pending: bool, own_counter: bool = True
) -> Verdict | None:
    if token.state is TokenState.REVOKED:
        return Verdict(VerifyResult.REVOKED, token)
    if (
        token.state is TokenState.SUSPENDED
        or token.seed is None
        or (token.state is TokenState.PENDING and not allow_pending)
    ):
        return Verdict(VerifyResult.NOT_ACTIVE, token)
    if own_counter and token.locked_until > now:
        return Verdict(VerifyResult.LOCKED, token, retry_after=_ceil(token.locked_until - now))
    return None


def _uncounted(token: Token, verdict: Verdict) -> Verdict:
    """The verdict with the token's own counter as it was: a failure writes nothing, a
    success moves the factor (and drift) only."""
    if verdict.result is not VerifyResult.OK:
        return Verdict(verdict.result, token, matched_factor=verdict.matched_factor)
    kept = replace(
        verdict.token,
        failures=token.failures,
        lock_level=token.lock_level,
        locked_until=token.locked_until,
    )
    return replace(verdict, token=kept, retry_after=0)


def _verify_hotp(
    token: Token, code: str, now: float, hmac_fn: HmacFn, policy: VerificationPolicy
) -> Verdict:
    digits = token.params.digits
    start = token.moving_factor
    for counter in range(start, start + policy.hotp_look_ahead + 1):
        if _code_at(hmac_fn, counter, digits, code):
            return Verdict(
                VerifyResult.OK, _success(token, now, counter, 0), matched_factor=counter
            )
    for counter in range(max(0, start - policy.hotp_look_ahead), start):
        if _code_at(hmac_fn, counter, digits, code):
            return Verdict(VerifyResult.REPLAYED, token)
    return _failure(token, now, VerifyResult.WRONG_CODE, policy)


def _verify_totp(
    token: Token, code: str, now: float, hmac_fn: HmacFn, policy: VerificationPolicy
) -> Verdict:
    digits = token.params.digits
    current = _current_step(token, now)
    expected = current + token.drift_steps
    width = policy.totp_window_steps
    if token.state is TokenState.PENDING:
        width = max(width, policy.first_use_window_steps)
    window = range(expected - width, expected + width + 1)
    # Nearest steps first: the expected one, then ±1, …
    for step in sorted(window, key=lambda s: abs(s - expected)):
        if step >= 0 and _code_at(hmac_fn, step, digits, code):
            if step < token.moving_factor:
                return Verdict(VerifyResult.REPLAYED, token)
            drift = _bounded(step - current, policy.max_drift_steps)
            return Verdict(VerifyResult.OK, _success(token, now, step, drift), matched_factor=step)
    late = range(max(0, window.start - policy.expired_look_back_steps), window.start)
    for step in reversed(late):
        if _code_at(hmac_fn, step, digits, code):
            if step < token.moving_factor:
                return Verdict(VerifyResult.REPLAYED, token)
            return _failure(token, now, VerifyResult.EXPIRED, policy)
    return _failure(token, now, VerifyResult.WRONG_CODE, policy)


def _success(token: Token, now: float, factor: int, drift: int) -> Token:
    return replace(
        token,
        state=TokenState.ACTIVE if token.state is TokenState.PENDING else token.state,
        activated_at=token.activated_at if token.activated_at is not None else int(now),
        moving_factor=factor + 1,
        drift_steps=drift if token.params.mode is OtpMode.TOTP else 0,
        failures=0,
        lock_level=0,
        locked_until=0,
        last_used_at=int(now),
    )


def _failure(token: Token, now: float, result: VerifyResult, policy: VerificationPolicy) -> Verdict:
    own = Attempts(token.failures, token.lock_level, token.locked_until)
    counted, seconds = count_failure(own, now, policy)
    updated = replace(
        token,
        failures=counted.failures,
        lock_level=counted.lock_level,
        locked_until=counted.locked_until,
    )
    return Verdict(result, updated, retry_after=seconds)


def _code_at(hmac_fn: HmacFn, factor: int, digits: int, code: str) -> bool:
    return hmac.compare_digest(hotp(hmac_fn, factor, digits), code)


def _current_step(token: Token, now: float) -> int:
    return totp_counter(now, token.params.period)


def _bounded(value: int, bound: int) -> int:
    return max(-bound, min(bound, value))


def _ceil(seconds: float) -> int:
    return max(1, int(-(-seconds // 1)))
