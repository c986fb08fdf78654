"""The CNS protocol over the in-process connection (no pcscd): exact APDUs, status-word
handling, and random card answers that must never crash or hang the reader code."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.card_fixtures import CARD_PIN, CARD_PUK

from otphsm.simulators.card.cns_card import CnsCard
from otphsm.simulators.card.inprocess import InProcessConnection
from otphsm.simulators.card.spec import CardSpec
from otphsm.smartcard.apdu import CommandApdu
from otphsm.smartcard.cns import SHA256_DIGEST_INFO, CnsClient, parse_fci, pkcs1_v15_block
from otphsm.smartcard.cns_files import EF_C_CARTA, EF_ID_CARTA
from otphsm.smartcard.errors import (
    CardRemoved,
    InvalidPinFormat,
    MalformedCardAnswer,
    SmartcardError,
    UnexpectedStatusWord,
    UnsupportedCard,
)
from otphsm.smartcard.transport import CardTransport

H = bytes.fromhex
ATR_1024 = H("3BFF1800FFC10A31FE55006B0508C80C011101434E5310318005")
ATR_2048 = H("3BFF1800FF8131FE55006B02091617011101434E531131808D")


class Scripted:
    """A `CardTransport` answering from a list; records what it was sent."""

    def __init__(self, answers: list[bytes], atr: bytes = ATR_1024) -> None:
        self.answers = list(answers)
        self.sent: list[bytes] = []
        self._atr = atr

    @property
    def atr(self) -> bytes:
        return self._atr

    def transmit(self, apdu: bytes) -> bytes:
        self.sent.append(apdu)
        if not self.answers:
            raise CardRemoved("script exhausted")
        return self.answers.pop(0)

    def close(self) -> None:
        pass


def test_both_transports_implement_the_seam(cns_card_1024: CnsCard) -> None:
    assert isinstance(InProcessConnection(cns_card_1024), CardTransport)
    assert isinstance(Scripted([]), CardTransport)


def test_reads_use_the_opensc_commands(card_spec: CardSpec) -> None:
    connection = InProcessConnection(CnsCard(card_spec))
    connection.record = True
    client = CnsClient(connection)
    assert client.read_card_id().encode() == card_spec.files[EF_ID_CARTA]
    assert client.read_certificate() == card_spec.files[EF_C_CARTA]
    sent = connection.transmitted
    assert sent[0] == H("00A408000410001003" + "00")
    assert sent[1] == H("00B0000010")
    assert sent[2] == H("00A408000411001101" + "00")
    reads = sent[3:]
    assert all(apdu[:2] == H("00B0") and len(apdu) == 5 and apdu[4] <= 0xFF for apdu in reads)
    offsets = [(apdu[2] << 8) | apdu[3] for apdu in reads]
    lengths = [apdu[4] or 256 for apdu in reads]
    assert offsets == [sum(lengths[:i]) for i in range(len(reads))]
    assert sum(lengths) == len(card_spec.files[EF_C_CARTA])


@pytest.mark.parametrize(("atr", "ref"), [(ATR_1024, 0x10), (ATR_2048, 0x90)])
def test_pin_apdus_pad_with_ff_and_use_the_mask_reference(atr: bytes, ref: int) -> None:
    script = Scripted([H("9000")] * 3, atr)
    client = CnsClient(script)
    client.verify_pin("12345")
    client.change_pin("12345", "87654321")
    client.unblock_pin("11223344", "54321")
    pad = "3132333435FFFFFF"
    assert script.sent == [
        H(f"002000{ref:02X}08{pad}"),
        H(f"002400{ref:02X}10{pad}3837363534333231"),
        H(f"002C00{ref:02X}10313132323333343435343332 31FFFFFF".replace(" ", "")),
    ]


@pytest.mark.parametrize("bad", ["1234", "123456789", "12a45", "١٢٣٤٥", ""])
def test_pins_the_card_could_never_accept_are_refused_before_sending(bad: str) -> None:
    script = Scripted([])
    with pytest.raises(InvalidPinFormat):
        CnsClient(script).verify_pin(bad)
    assert script.sent == []


@pytest.mark.parametrize("use_decipher", [True, False], ids=["pso-decipher", "pso-cds"])
def test_signing_apdus_and_signature(card_spec: CardSpec, use_decipher: bool) -> None:
    connection = InProcessConnection(CnsCard(card_spec))
    client = CnsClient(connection)
    client.verify_pin(CARD_PIN)
    connection.record = True
    signature = client.sign_challenge(b"challenge", use_decipher=use_decipher)
    key = x509.load_der_x509_certificate(card_spec.files[EF_C_CARTA]).public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    key.verify(signature, b"challenge", padding.PKCS1v15(), hashes.SHA256())
    k = card_spec.key_size // 8
    restore, mse, pso = connection.transmitted
    assert restore == H("0022F30300")
    assert mse == H("0022F1B803830101" if use_decipher else "0022F1B603830101")
    assert pso[:4] == (H("002A8086") if use_decipher else H("002A9E9A"))
    lc = k + 1 if use_decipher else k
    if k == 128:  # short: Lc, data, Le = 0x80
        assert (pso[4], pso[-1], len(pso)) == (lc, 0x80, 5 + lc + 1)
        body = pso[5:-1]
    else:  # extended: 00 Lc(2) data Le(2) = 0x0100
        assert (pso[4:7], pso[-2:], len(pso)) == (
            b"\x00" + lc.to_bytes(2, "big"),
            H("0100"),
            9 + lc,
        )
        body = pso[7:-2]
    block = body[1:] if use_decipher else body
    if use_decipher:
        assert body[0] == 0x00  # padding indicator
    assert block[:2] == H("0001") and block[-51:-32] == SHA256_DIGEST_INFO
    assert set(block[2:-52]) == {0xFF} and block[-52] == 0 and len(block) == k


def test_pkcs1_block_matches_what_the_public_key_recovers(card_spec_1024: CardSpec) -> None:
    key = card_spec_1024.private_key
    block = pkcs1_v15_block(SHA256_DIGEST_INFO + bytes(32), 128)
    signature = key.sign(bytes(0), padding.PKCS1v15(), hashes.SHA256())
    numbers = key.public_key().public_numbers()
    recovered = pow(int.from_bytes(signature, "big"), numbers.e, numbers.n).to_bytes(128, "big")
    assert recovered[:-32] == block[:-32]


def test_61xx_is_followed_by_get_response_and_6cxx_by_a_resend() -> None:
    script = Scripted([H("6C10"), H("31323334") + H("6104"), H("35363738") + H("9000")])
    response = CnsClient(script).exchange(CommandApdu(0, 0xB0, 0, 0, le=255))
    assert response.data == b"12345678" and response.sw == 0x9000
    assert script.sent == [H("00B00000FF"), H("00B0000010"), H("00C0000004")]


def test_endless_61xx_is_a_malformed_answer() -> None:
    script = Scripted([H("6101")] * 100)
    with pytest.raises(MalformedCardAnswer, match="61 xx"):
        CnsClient(script).read_card_id()


def test_a_card_that_returns_no_data_forever_does_not_loop() -> None:
    fci = H("6F0480020400")
    script = Scripted([fci + H("9000")] + [H("9000")] * 5)
    with pytest.raises(MalformedCardAnswer, match="no data"):
        CnsClient(script).read_certificate()


def test_a_status_word_where_success_is_expected() -> None:
    script = Scripted([H("6A82")])
    with pytest.raises(UnexpectedStatusWord, match="6A82") as caught:
        CnsClient(script).read_personal_data()
    assert caught.value.sw == 0x6A82


def test_fci_parsing() -> None:
    assert parse_fci(H("6F0C8002019082030100008A0105")).size == 0x190
    assert parse_fci(H("620481020010")).size == 0x10
    assert parse_fci(H("6F03820101")).size is None
    assert parse_fci(b"").size is None
    for junk in ("6F05800201", "9000", "6F028001", "6F0480050102"):
        with pytest.raises(MalformedCardAnswer):
            parse_fci(H(junk))


def test_a_non_cns_atr_is_refused() -> None:
    with pytest.raises(UnsupportedCard):
        CnsClient(Scripted([], H("3B021450")))
    assert CnsClient(Scripted([], H("3B021450")), require_cns_atr=False).rsa_bits == 1024


def test_removed_connection_raises_card_removed(cns_card_1024: CnsCard) -> None:
    connection = InProcessConnection(cns_card_1024)
    client = CnsClient(connection)
    client.verify_pin(CARD_PIN)
    connection.remove()
    assert not cns_card_1024.pin_verified
    with pytest.raises(CardRemoved):
        client.read_card_id()
    connection.close()
    connection.close()


def test_closing_powers_the_card_off(cns_card_1024: CnsCard) -> None:
    with InProcessConnection(cns_card_1024) as connection:
        CnsClient(connection).verify_pin(CARD_PIN)
        assert cns_card_1024.pin_verified
    assert not cns_card_1024.powered and not cns_card_1024.pin_verified
    with pytest.raises(CardRemoved):
        connection.transmit(H("00A4000C023F00"))


# -- random card answers --------------------------------------------------------------------

STATUS_WORDS = [0x9000, 0x6282, 0x6B00, 0x6100, 0x61FF, 0x6C00, 0x6C10, 0x63C1, 0x63C0, 0x6983]
ANSWER = st.one_of(
    st.binary(max_size=300),
    st.tuples(st.binary(max_size=300), st.sampled_from(STATUS_WORDS)).map(
        lambda t: t[0] + t[1].to_bytes(2, "big")
    ),
    st.tuples(
        st.sampled_from([H("6F0480020010"), H("62038102FFFF"), H("6F03800100")]),
        st.binary(max_size=4),
    ).map(lambda t: t[0] + t[1] + H("9000")),
)
OPERATIONS: dict[str, Callable[[CnsClient], object]] = {
    "card id": CnsClient.read_card_id,
    "personal data": CnsClient.read_personal_data,
    "certificate": CnsClient.read_certificate,
    "verify": lambda c: c.verify_pin(CARD_PIN),
    "unblock": lambda c: c.unblock_pin(CARD_PUK, CARD_PIN),
    "sign decipher": lambda c: c.sign_challenge(b"x"),
    "sign cds": lambda c: c.sign_challenge(b"x", use_decipher=False),
}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    operation=st.sampled_from(sorted(OPERATIONS)),
    answers=st.lists(ANSWER, max_size=30),
    atr=st.sampled_from([ATR_1024, ATR_2048]),
)
def test_random_card_answers_give_typed_errors_only(
    operation: str, answers: list[bytes], atr: bytes
) -> None:
    script = Scripted(answers, atr)
    with contextlib.suppress(SmartcardError):
        OPERATIONS[operation](CnsClient(script))
    assert len(script.sent) <= 200


@given(st.binary(max_size=40))
def test_random_atrs_give_typed_errors_only(atr: bytes) -> None:
    with contextlib.suppress(MalformedCardAnswer, UnsupportedCard):
        CnsClient(Scripted([], atr))


class Corrupting:
    """The real card, except that answer number `index` is replaced by `replacement`."""

    def __init__(self, card: CnsCard, index: int, replacement: bytes) -> None:
        self.inner = InProcessConnection(card)
        self.index = index
        self.replacement = replacement
        self.count = 0

    @property
    def atr(self) -> bytes:
        return self.inner.atr

    def transmit(self, apdu: bytes) -> bytes:
        answer = self.inner.transmit(apdu)
        self.count += 1
        if self.count - 1 == self.index:
            return self.replacement
        return answer

    def close(self) -> None:
        self.inner.close()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    operation=st.sampled_from(sorted(OPERATIONS)),
    index=st.integers(0, 12),
    replacement=ANSWER,
)
def test_one_corrupted_answer_in_a_real_exchange_gives_typed_errors_only(
    card_spec_1024: CardSpec, operation: str, index: int, replacement: bytes
) -> None:
    signing = operation.startswith("sign")
    transport = Corrupting(CnsCard(card_spec_1024), index + signing, replacement)
    client = CnsClient(transport)
    if signing:
        client.verify_pin(CARD_PIN)  # one APDU, left intact
    with contextlib.suppress(SmartcardError):
        OPERATIONS[operation](client)
