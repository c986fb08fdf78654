"""Faults through a real pcscd: each gives a clear typed error quickly, never a hang."""

from __future__ import annotations

import threading
import time

import pytest
from support.card_fixtures import CARD_PIN
from support.pcsc_fixtures import InsertCard, WrappedCard, wait_card_state

from otphsm.simulators.card.cns_card import CnsCard
from otphsm.simulators.card.pcscd import PrivatePcscd
from otphsm.simulators.card.spec import CardSpec
from otphsm.simulators.card.vpcd import VpcdLink
from otphsm.smartcard.cns import CnsClient
from otphsm.smartcard.errors import (
    CardRemoved,
    CardTimeout,
    MalformedCardAnswer,
    PcscdNotRunning,
    UnsupportedCard,
)
from otphsm.smartcard.pcsc import PcscContext

pytestmark = [pytest.mark.pcscd, pytest.mark.timeout(60)]

READ_BINARY = 0xB0


class RemovedDuringRead(WrappedCard):
    """Pulled out of the reader while answering the `nth` READ BINARY."""

    def __init__(self, inner: CnsCard, nth: int) -> None:
        super().__init__(inner)
        self.nth = nth
        self.link: VpcdLink | None = None

    def process(self, apdu: bytes) -> bytes:
        answer = super().process(apdu)
        reads = sum(1 for a in self.apdus if a[1] == READ_BINARY)
        if apdu[1] == READ_BINARY and reads == self.nth and self.link is not None:
            self.link.remove()
        return answer


class Garbage(WrappedCard):
    """Answers every APDU with `answer` once `after` APDUs were answered correctly."""

    def __init__(self, inner: CnsCard, answer: bytes, after: int = 0) -> None:
        super().__init__(inner)
        self.answer = answer
        self.after = after

    def process(self, apdu: bytes) -> bytes:
        if len(self.apdus) >= self.after:
            self.apdus.append(bytes(apdu))
            return self.answer
        return super().process(apdu)


class Mute(WrappedCard):
    """Stops answering (blocks) at the first APDU, until released."""

    def __init__(self, inner: CnsCard) -> None:
        super().__init__(inner)
        self.release = threading.Event()

    def process(self, apdu: bytes) -> bytes:
        self.release.wait(30)
        return super().process(apdu)


def test_card_removed_while_reading_the_certificate(
    insert_card: InsertCard, card_spec_2048: CardSpec
) -> None:
    card = RemovedDuringRead(CnsCard(card_spec_2048), nth=5)
    inserted = insert_card(card)
    card.link = inserted.link
    with inserted.connect() as connection:
        client = CnsClient(connection)
        started = time.monotonic()
        with pytest.raises(CardRemoved) as removed:
            client.read_certificate()
        assert time.monotonic() - started < 3
        assert removed.value.hresult is not None
        with pytest.raises(CardRemoved):  # and it stays an error, no hang
            client.read_card_id()
    wait_card_state(inserted.reader, present=False)


def test_stopping_and_restarting_pcscd(
    insert_card: InsertCard, pcscd: PrivatePcscd, card_spec_1024: CardSpec
) -> None:
    inserted = insert_card(CnsCard(card_spec_1024))
    connection = inserted.connect()
    try:
        client = CnsClient(connection)
        assert client.read_card_id()
        pcscd.stop()
        with pytest.raises(PcscdNotRunning) as stopped:
            client.read_card_id()
        assert "pcscd" in str(stopped.value)
    finally:
        connection.close()
    with pytest.raises(PcscdNotRunning) as refused:
        PcscContext()
    assert refused.value.hresult == 0x8010001D
    pcscd.start()
    with PcscContext() as ctx:  # the card link reconnects by itself
        assert ctx.wait_for_card(inserted.reader, timeout=5) == inserted.reader
    with inserted.connect() as connection:
        CnsClient(connection).verify_pin(CARD_PIN)
    assert inserted.link.connection_count >= 2  # it did reconnect


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"\x90", "not a response APDU"),
        (b"\x6f\x00\x01\x02\x03\x90\x00", "FCI"),
        (bytes(range(7, 200)) + b"\x90\x00", "FCI"),
    ],
    ids=["one-byte", "junk-fci", "long-junk"],
)
def test_a_card_answering_garbage(
    insert_card: InsertCard, card_spec_1024: CardSpec, answer: bytes, message: str
) -> None:
    inserted = insert_card(Garbage(CnsCard(card_spec_1024), answer))
    with inserted.connect() as connection:
        started = time.monotonic()
        with pytest.raises(MalformedCardAnswer, match=message):
            CnsClient(connection).read_card()
        assert time.monotonic() - started < 2


def test_a_card_answering_nothing(insert_card: InsertCard, card_spec_1024: CardSpec) -> None:
    """A zero-length vpcd frame leaves vpcd waiting (it has no I/O timeout): a mute card."""
    inserted = insert_card(Garbage(CnsCard(card_spec_1024), b""))
    connection = inserted.connect(timeout=0.5)
    try:
        with pytest.raises(CardTimeout):
            CnsClient(connection).read_card_id()
    finally:
        connection.close()
        inserted.remove()


def test_a_card_that_stops_answering_times_out(
    insert_card: InsertCard, card_spec_1024: CardSpec
) -> None:
    card = Mute(CnsCard(card_spec_1024))
    inserted = insert_card(card)
    connection = inserted.connect(timeout=0.5)
    try:
        started = time.monotonic()
        with pytest.raises(CardTimeout, match=r"did not answer within 0\.5s"):
            CnsClient(connection).read_card_id()
        assert time.monotonic() - started < 2
        with pytest.raises(CardRemoved):  # the connection is abandoned, not reused
            CnsClient(connection).read_card_id()
    finally:
        connection.close()  # must not block on the stuck transmit
        card.release.set()
        inserted.remove()


def test_a_card_that_is_not_a_cns(insert_card: InsertCard, card_spec_1024: CardSpec) -> None:
    class Foreign(WrappedCard):
        @property
        def atr(self) -> bytes:  # T=0, two historical bytes, no "CNS"
            return bytes.fromhex("3B021450")

    inserted = insert_card(Foreign(CnsCard(card_spec_1024)))
    with inserted.connect() as connection, pytest.raises(UnsupportedCard, match="not a CNS"):
        CnsClient(connection)
