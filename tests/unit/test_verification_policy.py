"""The verification policy, pure: window, replay, drift, lockout, resync, states."""

from __future__ import annotations

import hmac
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otphsm.core.errors import InvalidInput
from otphsm.core.otp import HashAlgorithm, hotp, totp, totp_counter
from otphsm.core.seeds import SeedRef, SeedStorage
from otphsm.core.tokens import OtpMode, OtpParameters, Token, TokenKind, TokenState
from otphsm.core.verification import VerificationPolicy, VerifyResult, resync, verify

SEED = b"12345678901234567890"
POLICY = VerificationPolicy()
T0 = 1_800_000_010  # 10 s into a 30 s step


class CountingHmac:
    def __init__(self, seed: bytes = SEED) -> None:
        self.seed = seed
        self.calls = 0

    def __call__(self, message: bytes) -> bytes:
        self.calls += 1
        return hmac.new(self.seed, message, "sha1").digest()


def make_token(mode: OtpMode = OtpMode.TOTP, **changes) -> Token:  # type: ignore[no-untyped-def]
    token = Token(
        serial="TEST-0001",
        codice_fiscale="RSSMRA80A01L378S",
        kind=TokenKind.MOBILE,
        params=OtpParameters(mode=mode),
        seed=SeedRef(SeedStorage.WRAPPED, b"blob"),
        state=TokenState.ACTIVE,
        created_at=T0 - 3600,
    )
    return replace(token, **changes)


def phone_code(at: float, seed: bytes = SEED) -> str:
    return totp(lambda m: hmac.new(seed, m, "sha1").digest(), at)


def test_a_current_code_is_accepted_once() -> None:
    fn = CountingHmac()
    token = make_token()
    first = verify(token, phone_code(T0), T0, fn, POLICY)
    assert first.result is VerifyResult.OK
    again = verify(first.token, phone_code(T0), T0 + 5, fn, POLICY)
    assert again.result is VerifyResult.REPLAYED
    assert verify(first.token, phone_code(T0 + 30), T0 + 30, fn, POLICY).result is VerifyResult.OK


def test_window_is_one_step_either_side() -> None:
    token = make_token()
    fn = CountingHmac()
    assert verify(token, phone_code(T0 - 30), T0, fn, POLICY).result is VerifyResult.OK
    assert verify(token, phone_code(T0 + 30), T0, fn, POLICY).result is VerifyResult.OK
    assert verify(token, phone_code(T0 + 60), T0, fn, POLICY).result is VerifyResult.WRONG_CODE
    assert verify(token, phone_code(T0 - 60), T0, fn, POLICY).result is VerifyResult.EXPIRED


def test_an_unused_code_is_not_accepted_twenty_minutes_later() -> None:
    token = make_token()
    late = verify(token, phone_code(T0), T0 + 1200, CountingHmac(), POLICY)
    assert late.result is VerifyResult.WRONG_CODE


def test_a_phone_40_seconds_fast_logs_in_and_drift_is_learned() -> None:
    token = make_token()
    fn = CountingHmac()
    # At 10 s into a step, a phone 40 s fast is one step ahead: inside the window.
    first = verify(token, phone_code(T0 + 40), T0, fn, POLICY)
    assert first.result is VerifyResult.OK
    assert first.token.drift_steps == 1
    # At 25 s into a later step it is two steps ahead: accepted thanks to the learned drift.
    later = T0 + 300 + 15
    assert (later % 30) == 25
    second = verify(first.token, phone_code(later + 40), later, fn, POLICY)
    assert second.result is VerifyResult.OK
    assert second.token.drift_steps == 2
    # Without the learned drift the same code is refused.
    unlearned = verify(token, phone_code(later + 40), later, fn, POLICY)
    assert unlearned.result is VerifyResult.WRONG_CODE


def test_a_phone_five_minutes_off_needs_a_resync() -> None:
    token = make_token()
    fn = CountingHmac()
    assert verify(token, phone_code(T0 + 300), T0, fn, POLICY).result is VerifyResult.WRONG_CODE
    synced = resync(token, phone_code(T0 + 300), phone_code(T0 + 330), T0 + 2, fn, POLICY)
    assert synced.result is VerifyResult.OK
    assert synced.token.drift_steps == 11
    assert verify(synced.token, phone_code(T0 + 360), T0 + 60, fn, POLICY).result is VerifyResult.OK


def test_resync_needs_consecutive_codes_and_refuses_used_steps() -> None:
    token = make_token()
    fn = CountingHmac()
    gap = resync(token, phone_code(T0 + 300), phone_code(T0 + 360), T0, fn, POLICY)
    assert gap.result is VerifyResult.WRONG_CODE
    used = verify(token, phone_code(T0), T0, fn, POLICY).token
    again = resync(used, phone_code(T0 - 30), phone_code(T0), T0, fn, POLICY)
    assert again.result is VerifyResult.WRONG_CODE


def test_drift_is_bounded() -> None:
    token = make_token(drift_steps=POLICY.max_drift_steps)
    fn = CountingHmac()
    step_ahead = (POLICY.max_drift_steps + 1) * 30
    outcome = verify(token, phone_code(T0 + step_ahead), T0, fn, POLICY)
    assert outcome.result is VerifyResult.OK
    assert outcome.token.drift_steps == POLICY.max_drift_steps


def test_negative_drift_never_reopens_a_used_step() -> None:
    fn = CountingHmac()
    used = verify(make_token(), phone_code(T0), T0, fn, POLICY).token
    slow = replace(used, drift_steps=-5)
    assert verify(slow, phone_code(T0), T0 + 150, fn, POLICY).result is VerifyResult.REPLAYED


def test_three_failures_lock_and_no_hmac_is_computed_while_locked() -> None:
    fn = CountingHmac()
    token = make_token()
    for _ in range(3):
        outcome = verify(token, "000000", T0, fn, POLICY)
        assert outcome.result is VerifyResult.WRONG_CODE
        token = outcome.token
    assert outcome.retry_after == 60
    assert token.locked_until == T0 + 60
    calls = fn.calls
    locked = verify(token, phone_code(T0 + 10), T0 + 10, fn, POLICY)
    assert (locked.result, locked.retry_after) == (VerifyResult.LOCKED, 50)
    assert locked.token is token and fn.calls == calls
    assert verify(token, phone_code(T0 + 61), T0 + 61, fn, POLICY).result is VerifyResult.OK


def test_repeat_locks_double_up_to_a_cap_and_success_resets() -> None:
    fn = CountingHmac()
    token = make_token()
    now = T0
    durations = []
    for _ in range(6):
        for _ in range(3):
            outcome = verify(token, "000000", now, fn, POLICY)
            token = outcome.token
        durations.append(outcome.retry_after)
        now = token.locked_until
    assert durations == [60, 120, 240, 480, 900, 900]
    ok = verify(token, phone_code(now), now, fn, POLICY)
    assert ok.result is VerifyResult.OK and ok.token.lock_level == 0 and ok.token.failures == 0


def test_hotp_look_ahead_and_replay() -> None:
    fn = CountingHmac()
    token = make_token(OtpMode.HOTP)
    code = lambda c: hotp(fn, c)  # noqa: E731
    ahead = verify(token, code(10), T0, fn, POLICY)
    assert ahead.result is VerifyResult.OK and ahead.token.moving_factor == 11
    assert verify(token, code(11), T0, fn, POLICY).result is VerifyResult.WRONG_CODE
    assert verify(ahead.token, code(3), T0, fn, POLICY).result is VerifyResult.REPLAYED


def test_hotp_resync_within_a_thousand() -> None:
    fn = CountingHmac()
    token = make_token(OtpMode.HOTP)
    far = resync(token, hotp(fn, 500), hotp(fn, 501), T0, fn, POLICY)
    assert far.result is VerifyResult.OK and far.token.moving_factor == 502
    too_far = resync(token, hotp(fn, 1500), hotp(fn, 1501), T0, fn, POLICY)
    assert too_far.result is VerifyResult.WRONG_CODE


@pytest.mark.parametrize(
    ("state", "result"),
    [
        (TokenState.REVOKED, VerifyResult.REVOKED),
        (TokenState.SUSPENDED, VerifyResult.NOT_ACTIVE),
        (TokenState.PENDING, VerifyResult.NOT_ACTIVE),
    ],
)
def test_states_that_refuse_without_computing(state: TokenState, result: VerifyResult) -> None:
    fn = CountingHmac()
    outcome = verify(make_token(state=state), phone_code(T0), T0, fn, POLICY)
    assert outcome.result is result and fn.calls == 0


def test_proof_of_possession_activates_a_pending_token() -> None:
    outcome = verify(
        make_token(state=TokenState.PENDING),
        phone_code(T0),
        T0,
        CountingHmac(),
        POLICY,
        allow_pending=True,
    )
    assert outcome.result is VerifyResult.OK
    assert outcome.token.state is TokenState.ACTIVE and outcome.token.activated_at == T0


@pytest.mark.parametrize("code", ["", "12345", "1234567", "12a456", "١٢٣٤٥٦", " 23456"])
def test_malformed_codes_are_errors_not_results(code: str) -> None:
    with pytest.raises(InvalidInput):
        verify(make_token(), code, T0, CountingHmac(), POLICY)


def test_sha256_and_eight_digits() -> None:
    seed = b"12345678901234567890123456789012"
    token = make_token(params=OtpParameters(algorithm=HashAlgorithm.SHA256, digits=8))
    fn = lambda m: hmac.new(seed, m, "sha256").digest()  # noqa: E731
    assert verify(token, "46119246", 59, fn, POLICY).result is VerifyResult.OK  # RFC 6238 vector


@given(st.lists(st.integers(min_value=-40, max_value=40), min_size=1, max_size=30))
def test_no_step_is_ever_accepted_twice(offsets: list[int]) -> None:
    fn = CountingHmac()
    token = make_token()
    accepted: set[int] = set()
    now = T0
    for offset in offsets:
        now += 7
        before = token
        outcome = verify(token, phone_code(now + offset), now, fn, POLICY)
        assert outcome.token.moving_factor >= before.moving_factor
        if outcome.result is VerifyResult.OK:
            step = totp_counter(now + offset, 30)
            assert step not in accepted
            accepted.add(step)
            assert outcome.token.moving_factor > before.moving_factor
        # Keep exploring past locks: carry the counters, drop the lock.
        token = replace(outcome.token, locked_until=0, failures=0)


def test_first_contact_accepts_two_steps_ahead_once_then_the_normal_window() -> None:
    fn = CountingHmac()
    pending = make_token(state=TokenState.PENDING)
    later = T0 + 15  # 25 s into the step: a phone 40 s fast is two steps ahead
    first = verify(pending, phone_code(later + 40), later, fn, POLICY, allow_pending=True)
    assert first.result is VerifyResult.OK and first.token.drift_steps == 2
    # An active token with no learned drift keeps the ±1 window.
    active = make_token()
    assert verify(active, phone_code(later + 40), later, fn, POLICY).result is (
        VerifyResult.WRONG_CODE
    )
    # Three steps off is refused even at first contact.
    far = verify(pending, phone_code(later + 90), later, fn, POLICY, allow_pending=True)
    assert far.result is VerifyResult.WRONG_CODE
