"""The station side through a real private pcscd, its vpcd reader and the simulated card."""

from __future__ import annotations

import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from support.card_fixtures import CARD_PIN, CARD_PUK
from support.pcsc_fixtures import InsertCard, WrappedCard, wait_card_state

from otphsm.simulators.card.cns_card import CnsCard
from otphsm.simulators.card.pcscd import PrivatePcscd
from otphsm.simulators.card.spec import CardSpec
from otphsm.smartcard.cns import CnsClient
from otphsm.smartcard.cns_files import (
    EF_C_CARTA,
    EF_DATI_PERSONALI,
    EF_ID_CARTA,
    parse_dati_personali,
)
from otphsm.smartcard.errors import (
    NoCard,
    NoReader,
    PinBlocked,
    UnexpectedStatusWord,
    WrongPin,
)
from otphsm.smartcard.pcsc import CardEvent, CardEventKind, PcscContext

pytestmark = [pytest.mark.pcscd, pytest.mark.timeout(60)]


def _public_key(spec: CardSpec) -> rsa.RSAPublicKey:
    key = x509.load_der_x509_certificate(spec.files[EF_C_CARTA]).public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    return key


def test_the_private_pcscd_shows_its_two_vpcd_readers(pcscd: PrivatePcscd) -> None:
    with PcscContext() as ctx:
        assert ctx.readers() == list(pcscd.reader_names)


def test_reads_the_whole_card(insert_card: InsertCard, card_spec: CardSpec) -> None:
    inserted = insert_card(CnsCard(card_spec))
    with inserted.connect() as connection:
        assert connection.atr == card_spec.atr
        contents = CnsClient(connection).read_card()
    assert contents.card_id.encode() == card_spec.files[EF_ID_CARTA]
    assert contents.personal_data == parse_dati_personali(card_spec.files[EF_DATI_PERSONALI])
    assert contents.certificate == card_spec.files[EF_C_CARTA]


def test_wrong_pin_counts_down_blocks_and_the_puk_unblocks(
    insert_card: InsertCard, card_spec: CardSpec
) -> None:
    card = CnsCard(card_spec)
    inserted = insert_card(card)
    with inserted.connect() as connection:
        client = CnsClient(connection)
        client.verify_pin(CARD_PIN)
        seen = []
        for _ in range(3):
            with pytest.raises((WrongPin, PinBlocked)) as caught:
                client.verify_pin("99999999")
            seen.append(caught.value)
        assert [type(e) for e in seen] == [WrongPin, WrongPin, PinBlocked]
        assert [e.sw for e in seen] == [0x63C2, 0x63C1, 0x6983]
        assert [getattr(e, "tries_left", 0) for e in seen] == [2, 1, 0]
        with pytest.raises(PinBlocked):
            client.verify_pin(CARD_PIN)  # the right PIN does not help any more
    with inserted.connect() as connection:  # nor does a new session (card reset)
        client = CnsClient(connection)
        with pytest.raises(PinBlocked):
            client.verify_pin(CARD_PIN)
        with pytest.raises(WrongPin) as wrong_puk:
            client.unblock_pin("11111111", "24682468")
        assert wrong_puk.value.what == "PUK"
        assert wrong_puk.value.sw & 0xFFF0 == 0x63C0
        client.unblock_pin(CARD_PUK, "24682468")
        client.verify_pin("24682468")
        with pytest.raises(WrongPin) as old_pin:
            client.verify_pin(CARD_PIN)
        assert old_pin.value.tries_left == 2


def test_change_pin(insert_card: InsertCard, card_spec_1024: CardSpec) -> None:
    inserted = insert_card(CnsCard(card_spec_1024))
    with inserted.connect() as connection:
        client = CnsClient(connection)
        with pytest.raises(WrongPin):
            client.change_pin("55555555", "13571357")
        client.change_pin(CARD_PIN, "13571357")
        client.verify_pin("13571357")


@pytest.mark.parametrize("use_decipher", [True, False], ids=["pso-decipher", "pso-cds"])
def test_signature_verifies_with_the_certificate_key(
    insert_card: InsertCard, card_spec: CardSpec, use_decipher: bool
) -> None:
    card = WrappedCard(CnsCard(card_spec))
    inserted = insert_card(card)
    challenge = b"server challenge " + bytes(range(32))
    with inserted.connect() as connection:
        client = CnsClient(connection)
        client.verify_pin(CARD_PIN)
        signature = client.sign_challenge(challenge, use_decipher=use_decipher)
    _public_key(card_spec).verify(signature, challenge, padding.PKCS1v15(), hashes.SHA256())
    pso = [apdu for apdu in card.apdus if apdu[1] == 0x2A]
    assert len(pso) == 1
    assert pso[0][2:4] == (b"\x80\x86" if use_decipher else b"\x9e\x9a")
    extended = pso[0][4] == 0x00
    assert extended == (card_spec.key_size == 2048)


def test_signing_without_the_pin_is_refused(insert_card: InsertCard, card_spec: CardSpec) -> None:
    inserted = insert_card(CnsCard(card_spec))
    with inserted.connect() as connection:
        client = CnsClient(connection)
        client.verify_pin(CARD_PIN)
    # closing reset the card: the PIN is needed again
    with inserted.connect() as connection, pytest.raises(UnexpectedStatusWord) as refused:
        CnsClient(connection).sign_challenge(b"x")
    assert refused.value.sw == 0x6982
    assert "PIN required" in str(refused.value)


def test_waiting_on_an_empty_reader_times_out_with_no_card(pcscd: PrivatePcscd) -> None:
    with PcscContext() as ctx, pytest.raises(NoCard, match=r"within 0\.3s"):
        ctx.wait_for_card(pcscd.reader_names[1], timeout=0.3)


def test_asking_for_an_unknown_reader_is_no_reader(pcscd: PrivatePcscd) -> None:
    with PcscContext() as ctx:
        with pytest.raises(NoReader, match="Virtual PCD"):
            ctx.find_reader("Omnikey 5422")
        with pytest.raises(NoReader):
            ctx.wait_for_card("Omnikey 5422", timeout=0.2)


def test_wait_for_card_returns_when_a_card_arrives(
    insert_card: InsertCard, pcscd: PrivatePcscd, card_spec_1024: CardSpec
) -> None:
    timer = threading.Timer(0.3, insert_card, (CnsCard(card_spec_1024),), {"wait": False})
    timer.start()
    try:
        with PcscContext() as ctx:
            assert ctx.wait_for_card("00 00", timeout=5) == pcscd.reader_names[0]
    finally:
        timer.join()


def test_insert_and_remove_events(
    insert_card: InsertCard, pcscd: PrivatePcscd, card_spec_1024: CardSpec
) -> None:
    reader = pcscd.reader_names[0]
    events: list[CardEvent] = []
    started = threading.Event()

    def watch() -> None:
        with PcscContext() as ctx:
            started.set()
            for event in ctx.events(reader, timeout=4.0):
                events.append(event)
                if event.kind is CardEventKind.REMOVED:
                    return

    watcher = threading.Thread(target=watch)
    watcher.start()
    assert started.wait(2)
    inserted = insert_card(CnsCard(card_spec_1024))
    inserted.remove()
    watcher.join(6)
    assert not watcher.is_alive()
    assert [(e.kind, e.reader) for e in events] == [
        (CardEventKind.INSERTED, reader),
        (CardEventKind.REMOVED, reader),
    ]
    assert events[0].atr == card_spec_1024.atr


def test_a_card_already_present_is_reported_first(
    insert_card: InsertCard, pcscd: PrivatePcscd, card_spec_1024: CardSpec
) -> None:
    insert_card(CnsCard(card_spec_1024), slot=1)
    with PcscContext() as ctx:
        first = next(iter(ctx.events(timeout=2.0)))
    assert first == CardEvent(CardEventKind.INSERTED, pcscd.reader_names[1], card_spec_1024.atr)
    wait_card_state(pcscd.reader_names[0], present=False)
