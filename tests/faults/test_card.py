"""The card pulled out in the middle of a card-authorised enrolment, and pcscd restarted under a
running server: the server (reading the card through its own PC/SC readers, kiosk style) answers
each with a clear error, creates no citizen, authorisation or token from the broken attempt,
and enrols normally afterwards without being restarted."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from support.card_fixtures import CARD_PIN, MARIO_ROSSI
from support.pcsc_fixtures import InsertCard, WrappedCard, wait_card_state
from support.service_fixtures import ServiceUnderTest, start_service

from otphsm.simulators.card.cns_card import CnsCard
from otphsm.simulators.card.pcscd import PrivatePcscd
from otphsm.simulators.card.spec import CardSpec
from otphsm.simulators.card.vpcd import VpcdLink
from otphsm.smartcard.readers import PcscReaders
from otphsm.store.urls import sqlite_url
from otphsm.v1 import enrolment_pb2

pytestmark = [pytest.mark.softhsm, pytest.mark.pcscd, pytest.mark.slow, pytest.mark.timeout(120)]

PSO = 0x2A
CLEAN = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.FAILED_PRECONDITION}
ENROLMENT_TABLES = ("citizens", "authorisations", "tokens", "activations")


class PulledWhileSigning(WrappedCard):
    """Taken out of the reader while it computes the challenge's signature."""

    def __init__(self, inner: CnsCard) -> None:
        super().__init__(inner)
        self.link: VpcdLink | None = None

    def process(self, apdu: bytes) -> bytes:
        if apdu[1] == PSO and self.link is not None:
            self.link.remove()
        return super().process(apdu)


@pytest.fixture
def kiosk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ServiceUnderTest]:
    request.getfixturevalue("pcscd")
    db = tmp_path / "otphsm.db"
    running = start_service(request, tmp_path, sqlite_url(db), db, readers=PcscReaders())
    yield running
    running.close()


def enrolment_rows(service: ServiceUnderTest) -> dict[str, Any]:
    snapshot = service.snapshot()
    return {table: snapshot[table] for table in ENROLMENT_TABLES}


def authorise(service: ServiceUnderTest, reader: str) -> enrolment_pb2.AuthorisationResponse:
    response: enrolment_pb2.AuthorisationResponse = service.enrolment().AuthoriseWithLocalCard(
        enrolment_pb2.AuthoriseWithLocalCardRequest(reader=reader, pin=CARD_PIN), timeout=30
    )
    return response


def test_card_pulled_mid_enrolment_then_pcscd_restarted(
    kiosk: ServiceUnderTest,
    pcscd: PrivatePcscd,
    insert_card: InsertCard,
    card_spec_1024: CardSpec,
) -> None:
    before = enrolment_rows(kiosk)

    # the card leaves the reader while it signs the challenge
    pulled = PulledWhileSigning(CnsCard(card_spec_1024))
    inserted = insert_card(pulled)
    pulled.link = inserted.link
    with pytest.raises(grpc.RpcError) as refused:
        authorise(kiosk, inserted.reader)
    assert refused.value.code() in CLEAN, refused.value
    assert "card" in (refused.value.details() or "").lower()
    assert any(apdu[1] == PSO for apdu in pulled.apdus)  # it did get as far as signing
    wait_card_state(inserted.reader, present=False)
    assert enrolment_rows(kiosk) == before  # nothing half-made

    # pcscd goes away under the running server, then comes back
    pcscd.stop()
    with pytest.raises(grpc.RpcError) as no_pcscd:
        authorise(kiosk, inserted.reader)
    assert no_pcscd.value.code() in CLEAN, no_pcscd.value
    assert "pcscd" in (no_pcscd.value.details() or "").lower()
    assert enrolment_rows(kiosk) == before
    pcscd.start()

    # the same server, unrestarted, enrols the citizen from a card put back in
    again = insert_card(CnsCard(card_spec_1024))
    authorised = authorise(kiosk, again.reader)
    assert authorised.citizen.codice_fiscale == MARIO_ROSSI.codice_fiscale
    issued = kiosk.enrolment().IssueToken(
        enrolment_pb2.IssueTokenRequest(authorisation_id=authorised.authorisation_id)
    )
    tokens = enrolment_rows(kiosk)["tokens"]
    assert [row[0] for row in tokens] == [issued.token.serial]
