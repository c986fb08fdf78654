"""A day of attack on one token, on an injected clock, through the use cases on real parts
(SQLite, SoftHSM2): a stranger sends 100 wrong codes a minute for 24 hours, once from one
origin, once rotating over 1,000 origins and once sending none, while the owner logs in
every hour from the origin they logged in from before. Every owner login is accepted; at
most 100 of the stranger's codes are even looked at in the day (the rest are LOCKED unread).

The test prints what that bound allows a guesser: the chance that one of 100 guesses a day
(or 36,500 a year) hits one of the codes the window accepts, for 6-digit codes. The README's
security model quotes these numbers.
"""

from __future__ import annotations

from collections import Counter

import pytest
from support.app_fixtures import PORTAL
from support.fault_support import add_hotp_tokens

from otphsm.core.app import validation
from otphsm.core.app.context import App
from otphsm.core.clock import ManualClock
from otphsm.core.verification import VerificationPolicy, VerifyResult

pytestmark = [pytest.mark.softhsm, pytest.mark.slow, pytest.mark.timeout(900)]

DAY = 86400
GUESSES_PER_MINUTE = 100
HOME = "198.51.100.20"
DIGITS = 6


def guessing_odds(policy: VerificationPolicy, guesses: int) -> dict[str, float]:
    """The chance that `guesses` random 6-digit guesses hit a code the window accepts: a TOTP
    guess may match 2·window+1 steps, an HOTP guess any of look-ahead+1 counters."""
    accepted = {
        "totp": 2 * policy.totp_window_steps + 1,
        "hotp": policy.hotp_look_ahead + 1,
    }
    return {mode: 1 - (1 - codes / 10**DIGITS) ** guesses for mode, codes in accepted.items()}


def stranger_origin(n: int, origins: int) -> str:
    """The n-th request's origin: "" (none sent), one address, or one of `origins`."""
    if origins == 0:
        return ""
    return f"10.{n % origins // 256}.{n % origins % 256}.1"


@pytest.mark.parametrize(
    "origins", [1, 1000, 0], ids=["one-origin", "1000-origins", "no-origin-sent"]
)
def test_a_day_of_guessing_locks_the_stranger_and_never_the_owner(
    app: App, origins: int, capsys: pytest.CaptureFixture[str]
) -> None:
    clock = app.clock
    assert isinstance(clock, ManualClock)
    policy = app.policy.verification
    (fob,) = add_hotp_tokens(app, 1)
    counter = 0
    assert validation.verify_serial(app, PORTAL, fob.serial, fob.code(counter), HOME).ok
    counter += 1
    start = clock.now()
    looked_at: list[float] = []  # when a stranger's code was checked (not LOCKED unread)
    answers: Counter[VerifyResult] = Counter()
    owner_logins = 0
    step = 60 / GUESSES_PER_MINUTE
    for n in range(24 * 60 * GUESSES_PER_MINUTE):
        if n % (60 * GUESSES_PER_MINUTE) == 0 and n:  # every hour, the owner logs in
            owner = validation.verify_serial(app, PORTAL, fob.serial, fob.code(counter), HOME)
            assert owner.ok, (n, owner)
            owner_logins += 1
            counter += 1
        origin = stranger_origin(n, origins)
        guess = validation.verify_serial(app, PORTAL, fob.serial, fob.wrong_code(counter), origin)
        answers[guess.result] += 1
        if guess.result is not VerifyResult.LOCKED:
            looked_at.append(clock.now())
        clock.advance(step)
    assert owner_logins == 23
    assert validation.verify_serial(app, PORTAL, fob.serial, fob.code(counter), HOME).ok
    assert set(answers) == {VerifyResult.WRONG_CODE, VerifyResult.LOCKED}, answers
    # in any 24 h window (the whole run is one), at most the budget of guesses was read
    assert len(looked_at) <= policy.unknown_origin_failures, len(looked_at)
    assert all(t < start + DAY for t in looked_at)
    stored = app.store.snapshot()
    assert len(stored["origin_attempts"]) <= max(origins, 1)  # one row per failing origin
    assert len({row[1] for row in stored["origin_attempts"]}) <= policy.unknown_origin_failures
    if origins:  # the token's own counter is for requests without an origin
        token = app.store.get_token(fob.serial)
        assert token is not None and (token.failures, token.locked_until) == (0, 0)

    per_day = guessing_odds(policy, policy.unknown_origin_failures)
    per_year = guessing_odds(policy, policy.unknown_origin_failures * 365)
    with capsys.disabled():
        print(
            f"\n[lockout simulation, stranger from {origins or 'no'} origin(s)]: "
            f"{sum(answers.values())} codes sent, {len(looked_at)} looked at in 24 h, owner: "
            f"{owner_logins + 2} logins, all accepted"
        )
        for mode in ("totp", "hotp"):
            print(
                f"  {mode}: P(a guess hits) per day {per_day[mode]:.2e}, "
                f"per year {per_year[mode]:.2e}"
            )
