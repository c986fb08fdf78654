"""Fifty copies of one valid code sent at once over two `otphsm serve` replicas sharing
PostgreSQL: exactly one is accepted, the others are REPLAYED, and the token is not locked
afterwards (a replay counts nowhere); with and without an origin, by serial and by codice
fiscale, where the citizen's other token is left untouched. Where the copies share one
origin's counter (an origin, or by codice fiscale the calls without one), at most 3 are in
flight at once: the copies past those wait for them to settle, and nothing stays counted.
A burst of wrong codes over both replicas gets no more codes looked at than the origin's
counter or the unknown origins' budget has room for."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from support.fault_support import CITIZEN, HotpToken, Replica, add_hotp_tokens, serve_configs

from otphsm.core.app.context import App
from otphsm.core.lockout import citizen_subject, token_subject
from otphsm.service.assembly import assemble
from otphsm.service.config import load_config
from otphsm.v1 import common_pb2, validation_pb2

pytestmark = [
    pytest.mark.softhsm,
    pytest.mark.postgres,
    pytest.mark.slow,
    pytest.mark.timeout(240),
]

CALLERS = 50
BUDGET = 5
"""The unknown origins' budget on the replicas: small, so that a burst can overrun it."""
OK = common_pb2.VerifyResult.Name(common_pb2.VERIFY_RESULT_OK)
REPLAYED = common_pb2.VerifyResult.Name(common_pb2.VERIFY_RESULT_REPLAYED)


def race(
    replicas: list[Replica],
    request: validation_pb2.VerifyRequest | list[validation_pb2.VerifyRequest],
) -> Counter[tuple[str, str]]:
    """(result, serial named) of CALLERS requests (identical, or those given) released
    together, alternating between the replicas."""
    requests = request if isinstance(request, list) else [request] * CALLERS
    start = threading.Barrier(len(requests))

    def call(i: int) -> tuple[str, str]:
        stub: Any = replicas[i % len(replicas)].stub()
        start.wait(timeout=30)
        answer = stub.Verify(requests[i], timeout=60)
        return common_pb2.VerifyResult.Name(answer.result), answer.serial

    with ThreadPoolExecutor(len(requests)) as pool:
        return Counter(pool.map(call, range(len(requests))))


def assert_one_accepted(results: Counter[tuple[str, str]], serial: str) -> None:
    """One OK, the rest REPLAYED: copies past the 3 in flight on one origin's counter wait for
    those to settle instead of being answered LOCKED."""
    assert results == {(OK, serial): 1, (REPLAYED, serial): CALLERS - 1}, results


def assert_not_locked(app: App, token: HotpToken, subject: str) -> None:
    stored = app.store.get_token(token.serial)
    assert stored is not None
    assert (stored.failures, stored.lock_level, stored.locked_until) == (0, 0, 0)
    snapshot = app.store.snapshot()
    counted = [row for row in snapshot["origin_attempts"] if row[0] == subject]
    assert counted == []  # no failure counted for any origin
    assert [row for row in snapshot["origin_budgets"] if row[0] == subject] == []  # nor budget
    assert snapshot["origin_reservations"] == []  # every attempt settled


@pytest.fixture
def deployment(request: pytest.FixtureRequest, tmp_path: Path, postgres_store_url: str) -> Any:
    budget = {"unknown_origin_failures": BUDGET}
    configs = serve_configs(request, tmp_path, postgres_store_url, ("a", "b"), budget)
    softhsm, pki = request.getfixturevalue("softhsm"), request.getfixturevalue("dev_pki")
    replicas = [Replica(config, softhsm, pki) for config in configs]
    assembly = assemble(load_config(configs[0], env={}))
    try:
        yield replicas, assembly.app
    finally:
        assembly.close()
        for replica in replicas:
            replica.close()


@pytest.mark.parametrize("origin", ["", "203.0.113.7"])
def test_fifty_copies_of_a_valid_code_by_serial(deployment: Any, origin: str) -> None:
    replicas, app = deployment
    (fob,) = add_hotp_tokens(app, 1)
    request = validation_pb2.VerifyRequest(serial=fob.serial, code=fob.code(0), origin=origin)
    results = race(replicas, request)
    assert_one_accepted(results, fob.serial)
    assert_not_locked(app, fob, token_subject(fob.serial))
    again = (
        replicas[1]
        .stub()
        .Verify(validation_pb2.VerifyRequest(serial=fob.serial, code=fob.code(1), origin=origin))
    )
    assert again.result == common_pb2.VERIFY_RESULT_OK


@pytest.mark.parametrize("origin", ["", "203.0.113.7"])
def test_fifty_copies_of_a_valid_code_by_codice_fiscale(deployment: Any, origin: str) -> None:
    replicas, app = deployment
    fob, other = add_hotp_tokens(app, 2)
    other_before = app.store.get_token(other.serial)
    request = validation_pb2.VerifyRequest(codice_fiscale=CITIZEN, code=fob.code(0), origin=origin)
    results = race(replicas, request)
    # every answer names the token the code was for, never the other one
    assert_one_accepted(results, fob.serial)
    assert_not_locked(app, fob, citizen_subject(CITIZEN))
    assert app.store.get_token(other.serial) == other_before  # untouched: not even a write
    for token in (fob, other):
        code = token.code(1) if token is fob else token.code(0)
        accepted = (
            replicas[0]
            .stub()
            .Verify(validation_pb2.VerifyRequest(codice_fiscale=CITIZEN, code=code, origin=origin))
        )
        assert (accepted.result, accepted.serial) == (common_pb2.VERIFY_RESULT_OK, token.serial)


WRONG = common_pb2.VerifyResult.Name(common_pb2.VERIFY_RESULT_WRONG_CODE)
LOCKED = common_pb2.VerifyResult.Name(common_pb2.VERIFY_RESULT_LOCKED)


@pytest.mark.parametrize("by", ["serial", "codice_fiscale"])
@pytest.mark.parametrize("origins", ["one", "many"])
def test_a_burst_of_wrong_codes_over_two_replicas_gets_no_more_looked_at_than_allowed(
    deployment: Any, by: str, origins: str
) -> None:
    """CALLERS wrong codes at once over both replicas, from one origin (its counter: 3) or
    each from its own unknown origin (their budget: BUDGET): the others are LOCKED unlooked."""
    replicas, app = deployment
    (fob,) = add_hotp_tokens(app, 1)
    subject = {"serial": fob.serial} if by == "serial" else {"codice_fiscale": CITIZEN}
    requests = [
        validation_pb2.VerifyRequest(
            code=fob.wrong_code(0),
            origin="203.0.113.9" if origins == "one" else f"10.0.{i // 250}.{i % 250}",
            **subject,
        )
        for i in range(CALLERS)
    ]
    results = race(replicas, requests)
    allowed = 3 if origins == "one" else BUDGET
    named = fob.serial if by == "serial" else ""
    assert results == {(WRONG, fob.serial): allowed, (LOCKED, named): CALLERS - allowed}, results
