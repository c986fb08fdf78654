"""The Security Card login policy, pure: two cells, single-use challenges, expiry, and the same
lockout as an OTP (3 wrong → 60 s, doubling, capped). No HSM: a software HMAC stands in."""

from __future__ import annotations

import hmac
from dataclasses import replace

import pytest

from otphsm.core.errors import FailedPrecondition, InvalidInput
from otphsm.core.grid_card import answer_challenge, cell_value
from otphsm.core.records import GridCard, GridCardState
from otphsm.core.seeds import SeedRef, SeedStorage
from otphsm.core.verification import VerificationPolicy, VerifyResult

NOW = 1_772_000_000
POLICY = VerificationPolicy()
CARD = GridCard(
    serial="GRID-0001",
    codice_fiscale="RSSMRA80A01L378S",
    key=SeedRef(SeedStorage.WRAPPED, b"blob"),
    cells=50,
    cell_digits=3,
    state=GridCardState.ACTIVE,
    created_at=NOW - 1000,
    challenge=(4, 17),
    challenge_expires_at=NOW + 300,
    last_pair=(4, 17),
)


def fn(message: bytes) -> bytes:
    return hmac.new(b"card key" * 4, message, "sha256").digest()


def no_hmac(message: bytes) -> bytes:
    raise AssertionError("no HMAC may be computed here")


RIGHT = (cell_value(fn, 4), cell_value(fn, 17))


def wrong(value: str) -> str:
    return f"{(int(value) + 1) % 1000:03d}"


def test_both_right_cells_pass_and_end_the_challenge() -> None:
    failed_before = replace(CARD, failures=2, lock_level=3)
    verdict = answer_challenge(failed_before, *RIGHT, NOW, fn, POLICY)
    assert verdict.result is VerifyResult.OK
    assert verdict.card == replace(CARD, challenge=None, challenge_expires_at=0)
    assert verdict.card.last_pair == (4, 17)  # remembered, so the next pair differs


@pytest.mark.parametrize("answer", [(wrong(RIGHT[0]), RIGHT[1]), (RIGHT[0], wrong(RIGHT[1]))])
def test_one_wrong_cell_is_a_counted_failure(answer: tuple[str, str]) -> None:
    verdict = answer_challenge(CARD, *answer, NOW, fn, POLICY)
    assert verdict.result is VerifyResult.WRONG_CODE and verdict.retry_after == 0
    assert verdict.card.failures == 1 and verdict.card.challenge is None


def test_the_third_failure_locks_doubling_up_to_the_cap() -> None:
    card = CARD
    waits = []
    for _ in range(6):
        for attempt in range(3):
            at = max(NOW, card.locked_until)
            card = replace(card, challenge=(4, 17), challenge_expires_at=at + 300)
            verdict = answer_challenge(card, wrong(RIGHT[0]), RIGHT[1], at, fn, POLICY)
            card = verdict.card
            assert (verdict.retry_after > 0) == (attempt == 2)
        waits.append(verdict.retry_after)
        assert card.locked_until == at + verdict.retry_after and card.failures == 0
    assert waits == [60, 120, 240, 480, 900, 900]


def test_a_locked_card_computes_nothing() -> None:
    locked = replace(CARD, locked_until=NOW + 45)
    verdict = answer_challenge(locked, *RIGHT, NOW, no_hmac, POLICY)
    assert (verdict.result, verdict.retry_after) == (VerifyResult.LOCKED, 45)
    assert verdict.card is locked  # the challenge survives the wait


def test_an_expired_challenge_is_not_a_failure() -> None:
    late = answer_challenge(CARD, *RIGHT, NOW + 300, no_hmac, POLICY)
    assert late.result is VerifyResult.EXPIRED
    assert late.card == replace(CARD, challenge=None, challenge_expires_at=0)


def test_no_challenge_malformed_answers_and_a_revoked_card() -> None:
    with pytest.raises(FailedPrecondition, match="ask for one"):
        answer_challenge(replace(CARD, challenge=None), *RIGHT, NOW, no_hmac, POLICY)
    for bad in (("12", "123"), ("123", "1234"), ("12a", "123"), ("", "")):
        with pytest.raises(InvalidInput):
            answer_challenge(CARD, *bad, NOW, no_hmac, POLICY)
    revoked = replace(CARD, state=GridCardState.REVOKED)
    assert answer_challenge(revoked, *RIGHT, NOW, no_hmac, POLICY).result is VerifyResult.REVOKED
