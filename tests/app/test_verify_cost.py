"""What one Verify costs the store and the HSM (App over SQLite and SoftHSM2), counted at the
ports, where each store method is one transaction: a valid code is two commits (the attempt
reserved; the token written with the lockout's settlement) and one HMAC, with or without an
origin; the reservation's id is drawn from the host, not the HSM. A code that loses the race
for the token writes no settlement with it: the reservation is settled on its own."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

import pytest
from support.app_fixtures import PORTAL, at_portal
from support.fault_support import add_hotp_tokens

from otphsm.core.app import validation
from otphsm.core.app.context import App
from otphsm.core.lockout import token_subject
from otphsm.core.verification import VerifyResult

pytestmark = pytest.mark.softhsm

ORIGIN = "198.51.100.7"
WRITES = ("reserve_origin_attempt", "update_token", "update_token_succeeded")
SETTLEMENTS = ("settle_origin_attempt", "origin_succeeded")


class _Counted:
    """A port with the calls of its methods counted."""

    def __init__(self, port: Any, calls: Counter[str]) -> None:
        self._port, self._calls = port, calls

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._port, name)
        if not callable(found):
            return found

        def counted(*args: Any, **kwargs: Any) -> Any:
            self._calls[name] += 1
            return found(*args, **kwargs)

        return counted


def counted(app: App) -> tuple[App, Counter[str], Counter[str], list[int]]:
    store_calls: Counter[str] = Counter()
    hsm_calls: Counter[str] = Counter()
    drawn: list[int] = []

    def handle_random(length: int) -> bytes:
        drawn.append(length)
        return len(drawn).to_bytes(length, "big")

    counted_app = replace(
        app,
        store=_Counted(app.store, store_calls),
        hsm=_Counted(app.hsm, hsm_calls),
        handle_random=handle_random,
    )
    return counted_app, store_calls, hsm_calls, drawn


@pytest.mark.parametrize("origin", ["", ORIGIN])
def test_a_valid_code_is_two_commits_and_one_hmac(app: App, origin: str) -> None:
    (token,) = add_hotp_tokens(app, 1)
    measured, store_calls, hsm_calls, drawn = counted(app)
    outcome = validation.verify_serial(measured, PORTAL, token.serial, token.code(0), origin)
    assert outcome.result is VerifyResult.OK
    assert {name: store_calls[name] for name in WRITES + SETTLEMENTS} == {
        "reserve_origin_attempt": 1,
        "update_token": 0,
        "update_token_succeeded": 1,
        "settle_origin_attempt": 0,
        "origin_succeeded": 0,
    }
    assert hsm_calls == Counter({"hmac": 1})  # no random drawn from the HSM
    assert drawn == [12]  # the reservation's id, from the host
    standing = app.store.origin_standing(token_subject(token.serial), at_portal(origin))
    assert standing.in_flight_ids == frozenset()  # settled with the token
    assert (standing.last_success_at is not None) is bool(origin)  # known only with an origin
    replayed = validation.verify_serial(app, PORTAL, token.serial, token.code(0), origin)
    assert replayed.result is VerifyResult.REPLAYED  # accepted once


def test_a_code_that_loses_the_race_settles_its_reservation_alone(app: App) -> None:
    (token,) = add_hotp_tokens(app, 1)
    measured, store_calls, _hsm_calls, _drawn = counted(app)
    first_read = app.store.get_token(token.serial)
    assert first_read is not None

    class _OvertakenOnce:
        """The token as read before another request accepted the same code."""

        def __init__(self) -> None:
            self.read = False

        def __call__(self, serial: str) -> Any:
            if not self.read:
                self.read = True
                other = validation.verify_serial(app, PORTAL, serial, token.code(0), ORIGIN)
                assert other.result is VerifyResult.OK
                return first_read
            return app.store.get_token(serial)

    store = measured.store
    object.__setattr__(store, "get_token", _OvertakenOnce())
    outcome = validation.verify_serial(measured, PORTAL, token.serial, token.code(0), ORIGIN)
    assert outcome.result is VerifyResult.REPLAYED
    assert store_calls["update_token_succeeded"] == 1  # refused: the token had moved on
    assert store_calls["settle_origin_attempt"] == 1  # so the reservation settled alone
    standing = app.store.origin_standing(token_subject(token.serial), at_portal(ORIGIN))
    assert standing.in_flight_ids == frozenset()
