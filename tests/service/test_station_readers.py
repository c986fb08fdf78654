"""The technician's station (`otphsm.client.station`) on the card-reader port: the in-process
simulated card in `SimulatedReaders`, no pcscd, against the real test service over mTLS. The
same station runs on PC/SC in tests/cli/test_enrol_pcscd.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from support.card_fixtures import CARD_PIN, MARIO_ROSSI
from support.cli_support import client
from support.service_devices import SimulatedReaders
from support.service_fixtures import ServiceUnderTest

from otphsm.client.station import PinEntryCancelled, Station, reader_statuses, wait_for_card
from otphsm.simulators.card.cns_card import CnsCard
from otphsm.smartcard.cns import CardContents
from otphsm.smartcard.errors import NoCard, PinBlocked
from otphsm.smartcard.readers import ReaderStatus

pytestmark = pytest.mark.softhsm

STATION_READER = "Station Reader 00"
WRONG_PIN = "11112222"


class Citizen:
    """`CardEvents` that records what the station told the counter, and types the PINs."""

    def __init__(self, pins: list[str]) -> None:
        self.pins = list(pins)
        self.seen: list[tuple[str, object]] = []
        self.contents: CardContents | None = None

    def waiting_for_card(self, reader: str | None, seconds_left: float) -> None:
        self.seen.append(("waiting", reader))

    def card_read(self, reader: str, contents: CardContents) -> None:
        self.contents = contents
        self.seen.append(("card_read", reader))

    def ask_pin(self, tries_left: int | None) -> str:
        self.seen.append(("ask_pin", tries_left))
        return self.pins.pop(0)

    def signing(self) -> None:
        self.seen.append(("signing", None))


@pytest.fixture
def readers() -> SimulatedReaders:
    return SimulatedReaders((STATION_READER,))


@pytest.fixture
def station(service: ServiceUnderTest, readers: SimulatedReaders) -> Iterator[Station]:
    enroller = client(service, "enroller")
    yield Station(enroller, readers)
    enroller.close()


def test_the_station_authorises_with_the_card_in_a_simulated_reader(
    service: ServiceUnderTest, readers: SimulatedReaders, station: Station, cns_card_1024: CnsCard
) -> None:
    readers.insert(cns_card_1024, STATION_READER)
    assert reader_statuses(readers) == [ReaderStatus(STATION_READER, True)]
    citizen = Citizen([WRONG_PIN, CARD_PIN])
    reader = wait_for_card("Station", 5.0, citizen, readers)
    assert reader == STATION_READER

    authorised = station.authorise_with_card(reader, citizen)

    assert citizen.seen == [
        ("card_read", STATION_READER),
        ("ask_pin", None),
        ("ask_pin", 2),
        ("signing", None),
    ]
    assert citizen.contents is not None
    assert authorised.codice_fiscale == MARIO_ROSSI.codice_fiscale
    assert authorised.card_id == citizen.contents.card_id
    data = citizen.contents.personal_data
    assert authorised.holder == f"{data.given_name} {data.surname}"
    assert authorised.authorisation_id


def test_no_pin_or_a_blocked_card_stops_before_the_service_is_asked_anything(
    service: ServiceUnderTest, readers: SimulatedReaders, station: Station, cns_card_1024: CnsCard
) -> None:
    readers.insert(cns_card_1024, STATION_READER)
    before = service.snapshot()

    with pytest.raises(PinEntryCancelled):
        station.authorise_with_card(STATION_READER, Citizen([""]))
    with pytest.raises(PinBlocked):
        station.authorise_with_card(STATION_READER, Citizen([WRONG_PIN] * 3))

    assert service.snapshot() == before  # no challenge was drawn, nothing created


def test_waiting_for_a_card_times_out_with_no_card(readers: SimulatedReaders) -> None:
    citizen = Citizen([])
    with pytest.raises(NoCard, match=STATION_READER):
        wait_for_card(None, 0.6, citizen, readers)
    assert ("waiting", None) in citizen.seen
