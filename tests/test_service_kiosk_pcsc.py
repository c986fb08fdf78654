"""The kiosk RPCs over real PC/SC: the server's `PcscReaders` reads a simulated CNS card that
sits in a vpcd reader of a private pcscd."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support.card_fixtures import CARD_PIN, MARIO_ROSSI
from support.pcsc_fixtures import InsertCard
from support.service_fixtures import ServiceUnderTest, start_service

from otphsm.service.readers import PcscReaders
from otphsm.simulators.card.cns_card import CnsCard
from otphsm.simulators.card.spec import CardSpec
from otphsm.v1 import enrolment_pb2

pytestmark = [pytest.mark.softhsm, pytest.mark.pcscd]


@pytest.fixture
def pcsc_service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServiceUnderTest]:
    request.getfixturevalue("pcscd")
    db = tmp_path / "otphsm.db"
    running = start_service(request, tmp_path, f"sqlite://{db}", db, readers=PcscReaders())
    yield running
    running.close()


def test_authorise_with_the_card_in_a_server_reader_and_watch_it_come_and_go(
    pcsc_service: ServiceUnderTest, card_spec_1024: CardSpec, insert_card: InsertCard
) -> None:
    station = pcsc_service.enrolment()
    inserted = insert_card(CnsCard(card_spec_1024))
    watch = station.WatchCards(
        enrolment_pb2.WatchCardsRequest(reader=inserted.reader, include_present=True),
        timeout=20,
    )
    event = next(watch)
    assert (event.kind, event.reader) == (
        enrolment_pb2.CardEvent.KIND_INSERTED,
        inserted.reader,
    )

    authorised = station.AuthoriseWithLocalCard(
        enrolment_pb2.AuthoriseWithLocalCardRequest(reader=inserted.reader, pin=CARD_PIN)
    )
    assert authorised.citizen.codice_fiscale == MARIO_ROSSI.codice_fiscale
    assert authorised.authorisation_id

    inserted.remove()
    event = next(watch)
    assert (event.kind, event.reader) == (enrolment_pb2.CardEvent.KIND_REMOVED, inserted.reader)
    watch.cancel()
