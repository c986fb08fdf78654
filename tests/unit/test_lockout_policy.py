"""The lockout per origin, pure: an origin's own counter, known origins never blocked by
others, the unknown origins' budget per subject, replays counting nowhere, and the token's own
counter left alone when an origin is given."""

from __future__ import annotations

import hmac
from dataclasses import replace

import pytest

from otphsm.core.errors import InvalidInput
from otphsm.core.lockout import (
    MAX_ORIGIN_LENGTH,
    OriginAttempts,
    Refusal,
    Reservation,
    Standing,
    admit,
    budget_wait,
    check_origin,
    failure,
    is_known,
    refusal,
)
from otphsm.core.otp import hotp
from otphsm.core.seeds import SeedRef, SeedStorage
from otphsm.core.tokens import OtpMode, OtpParameters, Token, TokenKind, TokenState
from otphsm.core.verification import (
    Attempts,
    VerificationPolicy,
    VerifyResult,
    count_failure,
    resync,
    verify,
)

POLICY = VerificationPolicy()
NOW = 1_800_000_000
DAY = 86400
SEED = b"12345678901234567890"


def fn(message: bytes) -> bytes:
    return hmac.new(SEED, message, "sha1").digest()


def hotp_token(**changes: object) -> Token:
    token = Token(
        serial="TEST-0001",
        codice_fiscale="RSSMRA80A01L378S",
        kind=TokenKind.PHYSICAL,
        params=OtpParameters(mode=OtpMode.HOTP),
        seed=SeedRef(SeedStorage.WRAPPED, b"blob"),
        state=TokenState.ACTIVE,
        created_at=NOW - 3600,
    )
    return replace(token, **changes)  # type: ignore[arg-type]


def standing(origin: str = "203.0.113.7", **changes: object) -> Standing:
    return replace(Standing(OriginAttempts("token:TEST-0001", origin)), **changes)  # type: ignore[arg-type]


# origins


@pytest.mark.parametrize("origin", ["", "203.0.113.7", "2001:db8::1", "device:ab12-CD", "x" * 128])
def test_an_origin_is_up_to_128_printable_ascii_characters(origin: str) -> None:
    assert check_origin(origin) == origin


@pytest.mark.parametrize("origin", ["x" * (MAX_ORIGIN_LENGTH + 1), "a\nb", "tab\t", "é", "\x00"])
def test_a_bad_origin_is_refused_naming_the_field_not_the_value(origin: str) -> None:
    with pytest.raises(InvalidInput) as refused:
        check_origin(origin)
    assert "origin" in str(refused.value) and origin not in str(refused.value)


# the counter: 3 failures → 60 s, doubling up to 15 min


def test_three_failures_wait_sixty_seconds_doubling_up_to_fifteen_minutes() -> None:
    attempts, waits = Attempts(), []
    for _ in range(8):
        for _ in range(2):
            attempts, started = count_failure(attempts, NOW, POLICY)
            assert started == 0
        attempts, started = count_failure(attempts, NOW, POLICY)
        waits.append(started)
        assert attempts.wait(NOW) == started and attempts.wait(NOW + started) == 0
    assert waits == [60, 120, 240, 480, 900, 900, 900, 900]


# known origins


def test_an_origin_is_known_for_the_configured_days_after_a_login() -> None:
    seen = NOW - 90 * DAY + 1
    assert is_known(standing(last_success_at=seen), NOW, POLICY)
    assert not is_known(standing(last_success_at=seen - 1), NOW, POLICY)
    assert not is_known(standing(), NOW, POLICY)
    assert not is_known(standing("", last_success_at=NOW), NOW, POLICY)  # no origin: never
    short = replace(POLICY, known_origin_days=1)
    assert not is_known(standing(last_success_at=NOW - DAY), NOW, short)


def test_a_known_origin_is_not_blocked_by_a_spent_budget_but_by_its_own_lock() -> None:
    spent = tuple(range(NOW - 100, NOW))
    known = standing(last_success_at=NOW - DAY, budget_events=spent)
    assert refusal(known, NOW, POLICY, own_counter=False) == 0
    locked = replace(known, attempts=replace(known.attempts, attempts=Attempts(0, 1, NOW + 60)))
    assert refusal(locked, NOW, POLICY, own_counter=False) == 60


def test_a_known_origins_failure_is_counted_on_it_and_not_on_the_budget() -> None:
    failed = failure(standing(last_success_at=NOW), NOW, POLICY, own_counter=False)
    assert not failed.charge_budget
    assert failed.attempts is not None and failed.attempts.attempts.failures == 1


# the unknown origins' budget


def test_unknown_origins_share_a_budget_of_100_failures_per_rolling_day() -> None:
    events = tuple(NOW - DAY + 1 + i * 60 for i in range(100))
    assert budget_wait(events[:99], NOW, POLICY) == 0
    assert budget_wait(events, NOW, POLICY) == 1  # the oldest leaves the window in 1 s
    assert budget_wait(events, NOW + 1, POLICY) == 0
    assert budget_wait(events, NOW + 1 + 59, POLICY) == 0  # still one leaving at a time
    spent = standing(budget_events=events)
    assert refusal(spent, NOW, POLICY, own_counter=False) == 1
    no_origin = replace(spent, attempts=OriginAttempts("s", ""))
    assert refusal(no_origin, NOW, POLICY, own_counter=True) == 1


def test_an_unknown_origins_failure_charges_the_budget_and_its_own_counter() -> None:
    failed = failure(standing(), NOW, POLICY, own_counter=False)
    assert failed.charge_budget and failed.attempts is not None
    assert (failed.attempts.attempts, failed.attempts.updated_at) == (Attempts(1, 0, 0), NOW)
    # without an origin, on a record with a counter of its own: that counter, and the budget
    own = failure(standing(""), NOW, POLICY, own_counter=True)
    assert own.charge_budget and own.attempts is None


def test_a_third_failure_locks_only_that_origin() -> None:
    two = standing(attempts=OriginAttempts("token:TEST-0001", "198.51.100.1", Attempts(2), NOW, 7))
    failed = failure(two, NOW, POLICY, own_counter=False)
    assert failed.retry_after == 60 and failed.attempts is not None
    assert failed.attempts.version == 7  # the write is conditional on the version read
    assert refusal(standing(), NOW, POLICY, own_counter=False) == 0  # another origin: free


# attempts in flight


def admitted(state: Standing, *, own_counter: bool = False) -> Reservation | Refusal:
    return admit(state, NOW, POLICY, own_counter=own_counter, reservation_id="r-1")


def test_attempts_in_flight_fill_an_origins_counter_as_failures_would() -> None:
    assert admitted(standing(in_flight=2)) == Reservation("r-1", charges_budget=True)
    assert admitted(standing(in_flight=3)) == Refusal(1, in_flight=True)  # worth asking again
    one_failed = OriginAttempts("token:TEST-0001", "203.0.113.7", Attempts(1), NOW, 1)
    assert admitted(standing(attempts=one_failed, in_flight=2)) == Refusal(1, in_flight=True)
    locked = OriginAttempts("token:TEST-0001", "203.0.113.7", Attempts(0, 1, NOW + 60), NOW, 1)
    assert admitted(standing(attempts=locked)) == Refusal(60)  # settled: no asking again
    # without an origin on a record's own counter, only the budget can be crowded
    assert isinstance(admitted(standing("", in_flight=9), own_counter=True), Reservation)


def test_attempts_in_flight_fill_the_unknown_origins_budget_but_not_a_known_origins_way() -> None:
    events = tuple(NOW - 60 * i for i in range(99))
    assert isinstance(admitted(standing(budget_events=events)), Reservation)
    crowded = standing(budget_events=events, budget_in_flight=1)
    assert admitted(crowded) == Refusal(1, in_flight=True)
    known = replace(crowded, last_success_at=NOW - DAY)
    assert admitted(known) == Reservation("r-1", charges_budget=False)


# replays and the token's own counter


def test_a_replayed_code_counts_nowhere() -> None:
    token = hotp_token(moving_factor=5, failures=2)
    replayed = verify(token, hotp(fn, 4, 6), NOW, fn, POLICY)
    assert replayed.result is VerifyResult.REPLAYED and replayed.token is token
    for _ in range(50):  # fifty copies of the owner's used code lock nothing
        assert verify(token, hotp(fn, 4, 6), NOW, fn, POLICY).token is token


def test_with_an_origin_the_tokens_own_lock_neither_refuses_nor_counts() -> None:
    locked = hotp_token(failures=1, lock_level=2, locked_until=NOW + 100)
    assert verify(locked, hotp(fn, 0, 6), NOW, fn, POLICY).result is VerifyResult.LOCKED
    ok = verify(locked, hotp(fn, 0, 6), NOW, fn, POLICY, own_counter=False)
    assert ok.result is VerifyResult.OK and ok.token.moving_factor == 1
    assert (ok.token.failures, ok.token.lock_level, ok.token.locked_until) == (1, 2, NOW + 100)
    wrong = verify(locked, "000000", NOW, fn, POLICY, own_counter=False)
    assert wrong.result is VerifyResult.WRONG_CODE and wrong.token is locked


def test_resync_with_an_origin_leaves_the_tokens_own_counter() -> None:
    token = hotp_token(failures=2)
    missed = resync(token, "000000", "000001", NOW, fn, POLICY, own_counter=False)
    assert missed.result is VerifyResult.WRONG_CODE and missed.token is token
    done = resync(token, hotp(fn, 40, 6), hotp(fn, 41, 6), NOW, fn, POLICY, own_counter=False)
    assert done.result is VerifyResult.OK
    assert (done.token.moving_factor, done.token.failures) == (42, 2)
