"""Faults through a real pcscd: each gives a clear typed error quickly, never a hang."""

from __future__ import annotations

import threading
import time

import pytest
from support.card_fixtures import CARD_PIN
from support.pcsc_fixtures import InsertCard, InsertedCard, WrappedCard, wait_card_state

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
VERIFY = 0x20
PERFORM_SECURITY_OPERATION = 0x2A
REMOVAL_NOTICED_WITHIN = 3.0
"""Seconds from the call to the typed error (pcscd polls for presence every ~0.4 s)."""


class RemovedDuring(WrappedCard):
    """Pulled out of the reader while answering the `nth` APDU with instruction `ins`: the
    card has done the work, the answer never reaches the reader."""

    def __init__(self, inner: CnsCard, ins: int, nth: int = 1) -> None:
        super().__init__(inner)
        self.ins = ins
        self.nth = nth
        self.link: VpcdLink | None = None

    def process(self, apdu: bytes) -> bytes:
        answer = super().process(apdu)
        if apdu[1] == self.ins and self.received(self.ins) == self.nth and self.link is not None:
            self.link.remove()
        return answer

    def received(self, ins: int) -> int:
        return sum(1 for a in self.apdus if a[1] == ins)


def insert_removable(
    insert_card: InsertCard, spec: CardSpec, ins: int, nth: int = 1
) -> tuple[RemovedDuring, InsertedCard]:
    card = RemovedDuring(CnsCard(spec), ins, nth)
    inserted = insert_card(card)
    card.link = inserted.link
    return card, inserted


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
    _card, inserted = insert_removable(insert_card, card_spec_2048, READ_BINARY, nth=5)
    with inserted.connect() as connection:
        client = CnsClient(connection)
        started = time.monotonic()
        with pytest.raises(CardRemoved) as removed:
            client.read_certificate()
        assert time.monotonic() - started < REMOVAL_NOTICED_WITHIN
        assert removed.value.hresult is not None
        with pytest.raises(CardRemoved):  # and it stays an error, no hang
            client.read_card_id()
    wait_card_state(inserted.reader, present=False)


def test_card_removed_during_pin_verification(
    insert_card: InsertCard, card_spec_1024: CardSpec
) -> None:
    card, inserted = insert_removable(insert_card, card_spec_1024, VERIFY)
    with inserted.connect() as connection:
        client = CnsClient(connection)
        started = time.monotonic()
        with pytest.raises(CardRemoved) as removed:
            client.verify_pin(CARD_PIN)
        assert time.monotonic() - started < REMOVAL_NOTICED_WITHIN
        assert removed.value.hresult is not None
        assert card.received(VERIFY) == 1  # the PIN went out once, and was not re-sent
        with pytest.raises(CardRemoved):  # and it stays an error, no hang
            client.verify_pin(CARD_PIN)
        assert card.received(VERIFY) == 1
    wait_card_state(inserted.reader, present=False)


@pytest.mark.parametrize("use_decipher", [True, False], ids=["pso-decipher", "pso-cds"])
def test_card_removed_while_signing(
    insert_card: InsertCard, card_spec_2048: CardSpec, use_decipher: bool
) -> None:
    card, inserted = insert_removable(insert_card, card_spec_2048, PERFORM_SECURITY_OPERATION)
    with inserted.connect() as connection:
        client = CnsClient(connection)
        client.verify_pin(CARD_PIN)
        started = time.monotonic()
        with pytest.raises(CardRemoved) as removed:
            client.sign_challenge(b"enrolment challenge", use_decipher=use_decipher)
        assert time.monotonic() - started < REMOVAL_NOTICED_WITHIN
        assert removed.value.hresult is not None
        assert card.received(PERFORM_SECURITY_OPERATION) == 1
        with pytest.raises(CardRemoved):  # and it stays an error, no hang
            client.sign_challenge(b"enrolment challenge", use_decipher=use_decipher)
        assert card.received(PERFORM_SECURITY_OPERATION) == 1
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
