"""Fixtures for the card tier: one test CA and one issued 1024- and 2048-bit card per run.

Specs and card files are session-scoped (RSA key generation happens once); `cns_card_*`
give a fresh, powered-on `CnsCard` per test, so PIN counters never leak between tests.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest

from otphsm.simulators.card.cardfile import save_card
from otphsm.simulators.card.cns_card import CnsCard
from otphsm.simulators.card.factory import Person, issue_card
from otphsm.simulators.card.pki import TestCa, make_test_ca
from otphsm.simulators.card.spec import CardSpec

CARD_NOW = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)
CARD_PIN = "12345678"
CARD_PUK = "87654321"
CARD_ID_1024 = "7430010024925855"
CARD_ID_2048 = "6120021200012345"

MARIO_ROSSI = Person(
    given_name="Mario",
    surname="Rossi",
    birth_date=dt.date(1980, 1, 1),
    sex="M",
    codice_fiscale="RSSMRA80A01L378S",
    birth_municipality="L378",
)
LAURA_BIANCHI = Person(
    given_name="Laura",
    surname="Bianchi",
    birth_date=dt.date(1990, 7, 15),
    sex="F",
    codice_fiscale="BNCLRA90L55L378U",
    birth_municipality="L378",
    residence_municipality="H612",
)


def counter_bytes() -> Callable[[int], bytes]:
    """Deterministic stand-in for os.urandom: 00 01 02 … continuing across calls."""
    state = {"next": 0}

    def take(n: int) -> bytes:
        start = state["next"]
        state["next"] = start + n
        return bytes((start + i) & 0xFF for i in range(n))

    return take


@pytest.fixture(scope="session")
def card_now() -> dt.datetime:
    return CARD_NOW


@pytest.fixture(scope="session")
def card_ca() -> TestCa:
    return make_test_ca(now=CARD_NOW - dt.timedelta(days=365))


@pytest.fixture(scope="session")
def card_spec_1024(card_ca: TestCa) -> CardSpec:
    return issue_card(
        card_ca, MARIO_ROSSI, CARD_PIN, CARD_PUK, key_size=1024, card_id=CARD_ID_1024, now=CARD_NOW
    )


@pytest.fixture(scope="session")
def card_spec_2048(card_ca: TestCa) -> CardSpec:
    return issue_card(
        card_ca,
        LAURA_BIANCHI,
        CARD_PIN,
        CARD_PUK,
        key_size=2048,
        card_id=CARD_ID_2048,
        now=CARD_NOW,
    )


@pytest.fixture(scope="session")
def card_file_1024(card_spec_1024: CardSpec, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cards") / "mario-rossi-1024.json"
    save_card(path, card_spec_1024)
    return path


@pytest.fixture(scope="session")
def card_file_2048(card_spec_2048: CardSpec, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cards") / "laura-bianchi-2048.json"
    save_card(path, card_spec_2048)
    return path


@pytest.fixture
def cns_card_1024(card_spec_1024: CardSpec) -> CnsCard:
    card = CnsCard(card_spec_1024, random_bytes=counter_bytes())
    card.power_on()
    return card


@pytest.fixture
def cns_card_2048(card_spec_2048: CardSpec) -> CnsCard:
    card = CnsCard(card_spec_2048, random_bytes=counter_bytes())
    card.power_on()
    return card


@pytest.fixture(params=[1024, 2048], ids=["rsa1024", "rsa2048"])
def cns_card(request: pytest.FixtureRequest) -> CnsCard:
    """Each test using it runs against both card generations."""
    card: CnsCard = request.getfixturevalue(f"cns_card_{request.param}")
    return card


@pytest.fixture(params=[1024, 2048], ids=["rsa1024", "rsa2048"])
def card_spec(request: pytest.FixtureRequest) -> CardSpec:
    spec: CardSpec = request.getfixturevalue(f"card_spec_{request.param}")
    return spec
