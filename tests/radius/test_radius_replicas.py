"""RADIUS over two `otphsm serve` replicas sharing PostgreSQL, as a NAS fails over: a
retransmitted request (the same datagram: source, identifier and authenticator) gets the
first answer again, from the replica that answered or from the other one, and is never
verified a second time (the token's counter moved once; a wrong code counted once); a
tampered Message-Authenticator is dropped; a Security Card challenge started on one replica
is answered on the other."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from support.fault_support import CITIZEN
from support.radius_support import (
    Nas,
    StartRadius,
    access_request,
    answer_code,
    card_authorisation,
    radclient,
)

from otphsm.core.app.context import Actor, Role
from otphsm.core.app.grid import issue_grid_card
from otphsm.core.lockout import citizen_subject, origin_key

pytestmark = [pytest.mark.softhsm, pytest.mark.postgres, pytest.mark.timeout(240)]

ACCEPT, REJECT = 2, 3


@pytest.fixture
def nas() -> Iterator[Nas]:
    client = Nas()
    yield client
    client.close()


def test_a_retransmission_is_answered_from_cache_on_either_replica(
    start_radius: StartRadius, postgres_store_url: str, nas: Nas
) -> None:
    deployment = start_radius(store_url=postgres_store_url, replicas=2, tokens=1)
    a, b = (server.radius_port for server in deployment.servers)
    (fob,) = deployment.tokens
    login = access_request(
        {"User-Name": fob.serial, "User-Password": fob.code(0), "Calling-Station-Id": "dev-1"},
        identifier=17,
    )
    first = nas.ask(a, login)
    assert first is not None and answer_code(first) == ACCEPT
    assert nas.ask(a, login) == first  # the same replica
    assert nas.ask(b, login) == first  # the other one, after a failover
    assert deployment.failures(fob.serial) == (1, 0)  # verified once: else REPLAYED
    wrong = access_request(
        {"User-Name": CITIZEN, "User-Password": fob.wrong_code(1), "Calling-Station-Id": "dev-1"},
        identifier=18,
    )
    rejected = nas.ask(b, wrong)
    assert rejected is not None and answer_code(rejected) == REJECT
    assert nas.ask(a, wrong) == rejected
    standing = deployment.app.store.origin_standing(
        citizen_subject(CITIZEN), origin_key("radius:nas", "dev-1")
    )
    assert standing.attempts.attempts.failures == 1  # one failure, not two


def test_a_tampered_message_authenticator_is_dropped(
    start_radius: StartRadius, postgres_store_url: str, nas: Nas
) -> None:
    deployment = start_radius(store_url=postgres_store_url, tokens=1)
    (fob,) = deployment.tokens
    login = bytearray(access_request({"User-Name": fob.serial, "User-Password": fob.code(0)}))
    at = login.index(bytes([80, 18])) + 2  # Message-Authenticator's value
    login[at] ^= 0x01
    assert nas.ask(deployment.port, bytes(login), timeout=1.5) is None
    assert deployment.failures(fob.serial) == (0, 0)


def test_a_challenge_started_on_one_replica_is_answered_on_the_other(
    start_radius: StartRadius, postgres_store_url: str
) -> None:
    deployment = start_radius(store_url=postgres_store_url, replicas=2, tokens=0)
    a, b = (server.radius_port for server in deployment.servers)
    issued = issue_grid_card(
        deployment.app, Actor("test", Role.ADMIN), card_authorisation(deployment.app)
    )
    asked = radclient(a, {"User-Name": CITIZEN, "User-Password": ""})
    assert asked.code == "Access-Challenge", asked.output
    cells = re.search(r"cells (\d+) and (\d+)", asked.message)
    assert cells, asked.message
    typed = " ".join(issued.values[int(cell) - 1] for cell in cells.groups())
    answered = radclient(
        b, {"User-Name": CITIZEN, "User-Password": typed, "State": asked.attributes["State"]}
    )
    assert answered.code == "Access-Accept", answered.output
