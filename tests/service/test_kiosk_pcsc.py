"""The kiosk RPCs over real PC/SC: the server's `PcscReaders` reads a simulated CNS card that
sits in a vpcd reader of a private pcscd."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from support.card_fixtures import CARD_PIN, MARIO_ROSSI
from support.factor_fixtures import assert_nowhere, observable_text
from support.pcsc_fixtures import InsertCard
from support.recorded_calls import RecordedCalls, assert_in_no_bytes
from support.service_fixtures import ServiceUnderTest, start_service

from otphsm.simulators.card.cns_card import CnsCard
from otphsm.simulators.card.spec import CardSpec
from otphsm.smartcard.readers import PcscReaders
from otphsm.store.urls import sqlite_url
from otphsm.v1 import enrolment_pb2

pytestmark = [pytest.mark.softhsm, pytest.mark.pcscd]

WRONG_PIN = "24681357"


@pytest.fixture
def pcsc_service(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServiceUnderTest]:
    request.getfixturevalue("pcscd")
    db = tmp_path / "otphsm.db"
    running = start_service(request, tmp_path, sqlite_url(db), db, readers=PcscReaders())
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


def test_the_pin_the_kiosk_passes_shows_nowhere(
    pcsc_service: ServiceUnderTest,
    card_spec_1024: CardSpec,
    insert_card: InsertCard,
    captured_logs: io.StringIO,
) -> None:
    """The station UI hands the citizen's PIN to the server; neither the right PIN nor a
    mistyped one reaches the logs, the errors, the responses, the metrics, the audit or the
    database. Also looked for as the VERIFY APDU carries it (ASCII digits, in hex)."""
    calls = RecordedCalls(pcsc_service)
    station = calls.enrolment()
    inserted = insert_card(CnsCard(card_spec_1024))

    with pytest.raises(grpc.RpcError) as wrong:
        station.AuthoriseWithLocalCard(
            enrolment_pb2.AuthoriseWithLocalCardRequest(reader=inserted.reader, pin=WRONG_PIN)
        )
    assert wrong.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "2 tries" in wrong.value.details()
    assert pcsc_service.snapshot()["authorisations"] == []

    authorised = station.AuthoriseWithLocalCard(
        enrolment_pb2.AuthoriseWithLocalCardRequest(reader=inserted.reader, pin=CARD_PIN)
    )
    assert authorised.citizen.codice_fiscale == MARIO_ROSSI.codice_fiscale
    assert '"rpc": "/otphsm.v1.EnrolmentService/AuthoriseWithLocalCard"' in (
        captured_logs.getvalue()
    )
    assert calls.errors == [wrong.value] and len(calls.responses) == 1

    pins = [CARD_PIN, WRONG_PIN]
    secrets = [
        *pins,
        *(pin.encode().hex() for pin in pins),
        *(pin.encode().hex(" ") for pin in pins),
    ]
    texts = observable_text(pcsc_service, captured_logs, calls.errors)
    texts["responses"] = calls.response_text()
    texts["store"] = repr(pcsc_service.snapshot())
    assert_nowhere(texts, secrets)
    assert_in_no_bytes(calls.response_bytes(), [pin.encode() for pin in pins])
