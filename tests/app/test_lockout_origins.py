"""The lockout per origin through the use cases (App over SQLite and SoftHSM2), for OTP codes
by serial and by codice fiscale, login codes and Security Card answers: a stranger's failures
lock the stranger's origin, never an origin the owner logged in from; unknown origins share a
budget; without an origin the record's own counter locks as before."""

from __future__ import annotations

import functools
import hmac
import os
import re
from dataclasses import replace

import pytest
from support.app_fixtures import OPERATOR, PHONE_GATEWAY, PORTAL, at_portal
from support.fault_support import CITIZEN, add_hotp_tokens

from otphsm.core.app import grid, lifecycle, login, validation
from otphsm.core.app.context import Actor, App, Role
from otphsm.core.app.login import Channel
from otphsm.core.clock import ManualClock
from otphsm.core.errors import FailedPrecondition, InvalidInput
from otphsm.core.grid_card import all_cells
from otphsm.core.lockout import citizen_subject, grid_subject, login_code_subject, token_subject
from otphsm.core.otp import HashAlgorithm, hotp
from otphsm.core.records import Citizen, GridCard, GridCardState
from otphsm.core.tokens import OtpMode, OtpParameters, Token, TokenKind, TokenState
from otphsm.core.verification import Attempts, VerifyResult
from otphsm.simulators.sms.inbox import read_sms_messages

pytestmark = pytest.mark.softhsm

OK, WRONG, LOCKED = VerifyResult.OK, VerifyResult.WRONG_CODE, VerifyResult.LOCKED
HOME, STRANGER = "198.51.100.20", "203.0.113.66"
PHONE = "+393331234567"


def clock_of(app: App) -> ManualClock:
    clock = app.clock
    assert isinstance(clock, ManualClock)
    return clock


def test_a_strangers_failures_lock_the_stranger_and_not_the_owner(app: App) -> None:
    (fob,) = add_hotp_tokens(app, 1)
    verify = functools.partial(validation.verify_serial, app, PORTAL, fob.serial)
    assert verify(fob.code(0), HOME).result is OK  # HOME is known from now on
    results = [verify(fob.wrong_code(1), STRANGER) for _ in range(3)]
    assert [r.result for r in results] == [WRONG] * 3 and results[-1].retry_after == 60
    assert verify(fob.code(1), STRANGER).result is LOCKED  # not even a right code
    assert verify(fob.code(1), HOME).result is OK
    assert verify(fob.code(2), "192.0.2.1").result is OK  # another unknown origin: its own
    token = app.store.get_token(fob.serial)
    assert token is not None and (token.failures, token.locked_until) == (0, 0)
    clock_of(app).advance(60)
    assert verify(fob.wrong_code(3), STRANGER).result is WRONG  # the wait ran out
    actions = [e.action for e in app.store.audit_entries()]
    assert actions.count("origin_locked") == 1


def test_without_an_origin_the_tokens_own_counter_locks_as_before(app: App) -> None:
    (fob,) = add_hotp_tokens(app, 1)
    verify = functools.partial(validation.verify_serial, app, PORTAL, fob.serial)
    assert verify(fob.code(0), HOME).result is OK
    assert [verify(fob.wrong_code(1)).result for _ in range(3)] == [WRONG] * 3
    locked = verify(fob.code(1))
    assert (locked.result, locked.retry_after) == (LOCKED, 60)
    assert verify(fob.code(1), HOME).result is OK  # a known origin is not blocked by it


def test_unknown_origins_share_a_budget_that_a_success_does_not_refill(app: App) -> None:
    app.policy = replace(
        app.policy, verification=replace(app.policy.verification, unknown_origin_failures=5)
    )
    (fob,) = add_hotp_tokens(app, 1)
    verify = functools.partial(validation.verify_serial, app, PORTAL, fob.serial)
    assert verify(fob.code(0), HOME).result is OK
    for i in range(5):  # five origins, one failure each: none is locked on its own
        assert verify(fob.wrong_code(1), f"10.0.0.{i}").result is WRONG
    spent = verify(fob.code(1), "10.0.0.99")
    assert spent.result is LOCKED and spent.retry_after == 86400
    assert verify(fob.code(1)).result is LOCKED  # no origin: unknown too
    assert verify(fob.code(1), HOME).result is OK
    assert verify(fob.code(2), "10.0.0.99").result is LOCKED  # the owner refilled nothing
    clock_of(app).advance(86400)
    assert verify(fob.code(2), "10.0.0.99").result is OK


def test_a_login_by_codice_fiscale_counts_one_failure_and_touches_no_token(app: App) -> None:
    fob, other = add_hotp_tokens(app, 2)
    before = [app.store.get_token(t.serial) for t in (fob, other)]
    for origin in (STRANGER, ""):
        for _ in range(2):
            missed = validation.verify_citizen(app, PORTAL, CITIZEN, fob.wrong_code(0), origin)
            assert missed.result is WRONG
        standing = app.store.origin_standing(citizen_subject(CITIZEN), at_portal(origin))
        assert standing.attempts.attempts.failures == 2  # one per attempt, not per token
    assert [app.store.get_token(t.serial) for t in (fob, other)] == before
    assert len(app.store.origin_standing(citizen_subject(CITIZEN), "").budget_events) == 4
    assert app.store.origin_standing(token_subject(fob.serial), "").budget_events == ()
    accepted = validation.verify_citizen(app, PORTAL, CITIZEN, other.code(0), HOME)
    assert (accepted.result, accepted.serial) == (OK, other.serial)
    replayed = validation.verify_citizen(app, PORTAL, CITIZEN, other.code(0), STRANGER)
    assert (replayed.result, replayed.serial) == (VerifyResult.REPLAYED, other.serial)
    # the replay counted nowhere: the stranger's origin still has its two failures
    assert app.store.origin_standing(
        citizen_subject(CITIZEN), at_portal(STRANGER)
    ).attempts.attempts == (Attempts(2, 0, 0))


def test_an_operators_unlock_releases_every_origin_of_the_token_and_citizen(app: App) -> None:
    (fob,) = add_hotp_tokens(app, 1)
    for _ in range(3):
        validation.verify_serial(app, PORTAL, fob.serial, fob.wrong_code(0), STRANGER)
        validation.verify_citizen(app, PORTAL, CITIZEN, fob.wrong_code(0))
    assert validation.verify_serial(app, PORTAL, fob.serial, fob.code(0), STRANGER).result is LOCKED
    assert validation.verify_citizen(app, PORTAL, CITIZEN, fob.code(0)).result is LOCKED
    lifecycle.change_state(app, OPERATOR, fob.serial, "unlock")
    assert validation.verify_citizen(app, PORTAL, CITIZEN, fob.code(0)).ok
    assert validation.verify_serial(app, PORTAL, fob.serial, fob.code(1), STRANGER).ok


@pytest.mark.parametrize("origin", ["x" * 129, "line\nbreak", "tab\there", "caffè"])
def test_a_malformed_origin_is_refused_by_name(app: App, origin: str) -> None:
    (fob,) = add_hotp_tokens(app, 1)
    with pytest.raises(InvalidInput, match="origin") as refused:
        validation.verify_serial(app, PORTAL, fob.serial, fob.code(0), origin)
    assert origin not in str(refused.value)


# login codes


def citizen(app: App) -> Citizen:
    record = Citizen(
        CITIZEN,
        "Mario",
        "Rossi",
        "1980-01-01",
        "M",
        "L378",
        "7430010024925855",
        "0a1b2c",
        "CN=Test CNS CA",
        app.now(),
        app.now(),
        PHONE,
    )
    app.store.upsert_citizen(record)
    return record


def send_login_code(app: App) -> str:
    login.request_login_code(app, PORTAL, CITIZEN, Channel.SMS)
    messages = read_sms_messages(app.sms.outbox, PHONE)  # type: ignore[attr-defined]
    found = re.search(r"\b(\d{6})\b", messages[-1].text)
    assert found
    return found.group(1)


def test_login_codes_lock_the_strangers_origin_not_the_code(app: App) -> None:
    citizen(app)
    assert login.verify_login_code(app, PORTAL, CITIZEN, send_login_code(app), HOME).ok
    code = send_login_code(app)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    answers = [login.verify_login_code(app, PORTAL, CITIZEN, wrong, STRANGER) for _ in range(3)]
    assert [a.result for a in answers] == [WRONG] * 3 and answers[-1].retry_after == 60
    assert login.verify_login_code(app, PORTAL, CITIZEN, code, STRANGER).result is LOCKED
    stored = app.store.current_oob_code(CITIZEN, login._PURPOSE)
    assert stored is not None and (stored.failures, stored.locked_until) == (0, 0)
    assert login.verify_login_code(app, PORTAL, CITIZEN, code, HOME).ok
    standing = app.store.origin_standing(login_code_subject(CITIZEN), at_portal(STRANGER))
    assert len(standing.budget_events) == 3


def test_login_codes_without_an_origin_wait_on_the_code_as_before(app: App) -> None:
    citizen(app)
    code = send_login_code(app)
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    assert [login.verify_login_code(app, PORTAL, CITIZEN, wrong).result for _ in range(3)] == [
        WRONG
    ] * 3
    assert login.verify_login_code(app, PORTAL, CITIZEN, code).result is LOCKED
    assert login.verify_login_code(app, PORTAL, CITIZEN, code, HOME).ok  # an origin: its own


# Security Cards


def grid_card(app: App) -> list[str]:
    key = app.hsm.generate_seed(grid.KEY_ALGORITHM)
    card = GridCard("GRID-00000001", CITIZEN, key, 20, 3, GridCardState.ACTIVE, app.now())
    app.store.insert_grid_card(card)
    return all_cells(functools.partial(app.hsm.hmac, key, grid.KEY_ALGORITHM), 20, 3)


def answer(app: App, values: list[str], origin: str, *, right: bool) -> VerifyResult:
    first, second = grid.grid_challenge(app, PORTAL, CITIZEN, origin).cells
    a, b = values[first - 1], values[second - 1]
    if not right:
        b = f"{(int(b) + 1) % 1000:03d}"
    return grid.verify_grid_answer(app, PORTAL, CITIZEN, a, b, origin).result


def test_grid_answers_lock_the_strangers_origin_not_the_card(app: App) -> None:
    values = grid_card(app)
    assert answer(app, values, HOME, right=True) is OK
    assert [answer(app, values, STRANGER, right=False) for _ in range(3)] == [WRONG] * 3
    with pytest.raises(FailedPrecondition):
        grid.grid_challenge(app, PORTAL, CITIZEN, STRANGER)
    card = app.store.get_grid_card("GRID-00000001")
    assert card is not None and (card.failures, card.locked_until) == (0, 0)
    assert answer(app, values, HOME, right=True) is OK
    standing = app.store.origin_standing(grid_subject(CITIZEN), at_portal(STRANGER))
    assert standing.attempts.attempts.lock_level == 1


def test_grid_answers_without_an_origin_lock_the_card_as_before(app: App) -> None:
    values = grid_card(app)
    assert answer(app, values, HOME, right=True) is OK
    assert [answer(app, values, "", right=False) for _ in range(3)] == [WRONG] * 3
    with pytest.raises(FailedPrecondition):
        grid.grid_challenge(app, PORTAL, CITIZEN)
    assert answer(app, values, HOME, right=True) is OK  # the known origin is not blocked


def test_proof_of_possession_spends_and_obeys_the_unknown_origins_budget(app: App) -> None:
    app.policy = replace(
        app.policy, verification=replace(app.policy.verification, unknown_origin_failures=3)
    )
    fob, other = add_hotp_tokens(app, 2)
    prove = functools.partial(validation.prove_possession, app, PHONE_GATEWAY)
    for i in range(3):
        assert validation.verify_serial(app, PORTAL, fob.serial, fob.wrong_code(0), f"10.0.0.{i}")
    spent = prove(fob.serial, fob.code(0))  # the right code is not even looked at
    assert (spent.result, spent.retry_after) == (LOCKED, 86400)
    assert [prove(other.serial, other.wrong_code(0)).result for _ in range(2)] == [WRONG] * 2
    assert prove(other.serial, other.code(0)).result is OK
    assert prove(other.serial, other.code(0)).result is VerifyResult.REPLAYED
    assert len(app.store.origin_standing(token_subject(other.serial), "").budget_events) == 2
    verify_other = validation.verify_serial(app, PORTAL, other.serial, other.code(1), STRANGER)
    assert verify_other.result is OK  # a third failure would have spent it


def test_a_strangers_wrong_answer_does_not_end_the_owners_grid_challenge(app: App) -> None:
    values = grid_card(app)
    assert answer(app, values, HOME, right=True) is OK  # HOME is known from now on
    first, second = grid.grid_challenge(app, PORTAL, CITIZEN, HOME).cells
    assert grid.grid_challenge(app, PORTAL, CITIZEN, STRANGER).cells == (first, second)
    wrong = grid.verify_grid_answer(app, PORTAL, CITIZEN, "000", "000", STRANGER)
    assert wrong.result is WRONG  # counted on the stranger's origin
    standing = app.store.origin_standing(grid_subject(CITIZEN), at_portal(STRANGER))
    assert standing.attempts.attempts.failures == 1 and len(standing.budget_events) == 1
    right = (values[first - 1], values[second - 1])
    assert grid.verify_grid_answer(app, PORTAL, CITIZEN, *right, HOME).result is OK
    assert answer(app, values, HOME, right=False) is WRONG  # the owner's own miss ends it
    with pytest.raises(FailedPrecondition):
        grid.verify_grid_answer(app, PORTAL, CITIZEN, "000", "000", HOME)


FORUM = Actor("CN=forum,OU=verifier", Role.VERIFIER)
"""Another relying party, whose origins (its own device ids, say) are its own."""


def test_a_stranger_at_another_relying_party_cannot_lock_the_owners_known_origin(
    app: App,
) -> None:
    """The owner logs in through the portal from its device id "device-42"; a stranger at
    another relying party presenting the same string (that relying party's ids are not the
    portal's) fails three times: the owner's device at the portal must not be locked."""
    (fob,) = add_hotp_tokens(app, 1)
    assert validation.verify_serial(app, PORTAL, fob.serial, fob.code(0), "device-42").result is OK
    stranger = functools.partial(validation.verify_serial, app, FORUM, fob.serial)
    wrong = [stranger(fob.wrong_code(1), "device-42") for _ in range(3)]
    assert [w.result for w in wrong] == [WRONG] * 3
    assert validation.verify_serial(app, PORTAL, fob.serial, fob.code(1), "device-42").result is OK


def test_a_login_by_codice_fiscale_takes_the_code_of_any_token_whatever_its_digits(
    app: App,
) -> None:
    """A citizen with a 6-digit fob and an 8-digit token logs in by codice fiscale with
    either's code; a code of a length none of them takes is refused before it is looked at
    (nothing counted), a wrong one counts one failure."""
    (six,) = add_hotp_tokens(app, 1)
    secret = os.urandom(20)
    app.store.insert_token(
        Token(
            serial="EIGHT-0001",
            codice_fiscale=CITIZEN,
            kind=TokenKind.PHYSICAL,
            params=OtpParameters(mode=OtpMode.HOTP, digits=8),
            seed=app.hsm.import_seed(secret, HashAlgorithm.SHA1),
            state=TokenState.ACTIVE,
            created_at=app.now(),
            activated_at=app.now(),
        )
    )
    eight = hotp(lambda message: hmac.new(secret, message, "sha1").digest(), 0, 8)
    by_cf = functools.partial(validation.verify_citizen, app, PORTAL, CITIZEN)
    first = by_cf(six.code(0), HOME)
    assert (first.result, first.serial) == (OK, six.serial)
    accepted = by_cf(eight, HOME)
    assert (accepted.result, accepted.serial) == (OK, "EIGHT-0001")
    with pytest.raises(InvalidInput, match="code"):
        by_cf("1234567", STRANGER)
    assert by_cf(six.wrong_code(1), STRANGER).result is WRONG
    standing = app.store.origin_standing(citizen_subject(CITIZEN), at_portal(STRANGER))
    assert standing.attempts.attempts.failures == 1
