"""The simulated CNS card as OpenSC drives it: sequences, signatures, MSE/PSO, power."""

from __future__ import annotations

import hashlib

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from support.card_apdus import (
    SELECT_1102_FCI,
    SHA256_DIGEST_INFO,
    H,
    fci_tags,
    k_bytes,
    login,
    pkcs1_block,
    public_key,
    sw,
    tx,
)

from otphsm.simulators.card.cns_card import CnsCard
from otphsm.simulators.card.spec import CardSpec
from otphsm.smartcard.apdu import CommandApdu
from otphsm.smartcard.cns_files import (
    EF_C_CARTA,
    EF_DATI_PERSONALI,
    EF_ID_CARTA,
    parse_dati_personali,
)

# --- identification ------------------------------------------------------------------------------


def test_atr_and_pin_reference_follow_the_card_generation(
    cns_card_1024: CnsCard, cns_card_2048: CnsCard
) -> None:
    assert cns_card_1024.atr.hex().upper().endswith("434E5310318005")
    assert cns_card_1024.pin_reference == 0x10
    assert cns_card_2048.atr.hex().upper().endswith("434E531131808D")
    assert cns_card_2048.pin_reference == 0x90
    assert cns_card_1024.power_on() == cns_card_1024.atr
    assert cns_card_2048.reset() == cns_card_2048.atr


# --- OpenSC sequences, byte for byte (cns-card.md §3.2, §3.3, §3.7) ---------------------------


def opensc_read(card: CnsCard, size: int) -> bytes:
    """READ BINARY as OpenSC 0.23 issues it: 256-byte core chunks, each split by itacns into
    0xFF bytes and the rest (traced through pcscd)."""
    out = b""
    while len(out) < size:
        for want in (min(0xFF, size - len(out)), min(1, size - len(out) - 0xFF)):
            if want <= 0:
                continue
            offset = len(out)
            apdu = CommandApdu(0, 0xB0, offset >> 8, offset & 0xFF, le=want).encode()
            data, status = tx(card, apdu)
            assert (len(data), status) == (want, 0x9000)
            out += data
    return out


def test_opensc_pkcs15_bind_sequence(cns_card: CnsCard) -> None:
    """`pkcs15-tool --list-certificates`, as traced from OpenSC 0.23 (doc §3.2)."""
    card, spec = cns_card, cns_card.export_spec()
    assert sw(card, "00CADF3005") == 0x6A88
    assert sw(card, "00CB3FFF035C017E08") == 0x6D00
    assert sw(card, "00A40800022F0000") == 0x6A82
    assert sw(card, "00A4080C025015") == 0x6A82
    assert sw(card, "00A4080002503100") == 0x6A82
    assert tx(card, "00A4080C0410001003") == (b"", 0x9000)
    assert tx(card, "00B0000010") == (spec.files[EF_ID_CARTA], 0x9000)

    fci, status = tx(card, SELECT_1102_FCI)
    assert status == 0x9000
    assert fci_tags(fci)[0x80] == H("0190")
    personal = b""
    for apdu, length in (("00B00000FF", 0xFF), ("00B000FF01", 1), ("00B0010090", 0x90)):
        data, status = tx(card, apdu)
        assert (len(data), status) == (length, 0x9000)
        personal += data
    assert personal == spec.files[EF_DATI_PERSONALI]
    assert parse_dati_personali(personal).given_name in ("MARIO", "LAURA")

    assert sw(card, "00A4080C0411001101") == 0x9000
    fci, status = tx(card, "00A40800041100110100")
    size = int.from_bytes(fci_tags(fci)[0x80], "big")
    assert size == len(spec.files[EF_C_CARTA])
    assert opensc_read(card, size) == spec.files[EF_C_CARTA]

    assert sw(card, "00A4080C042FFF8228") == 0x6A82
    assert sw(card, "00A4080C0414009010") == 0x6A82
    assert sw(card, "00A4080C06140090012002") == 0x6A82
    assert sw(card, "00A4000C023F00") == 0x9000


def test_personal_data_read_as_on_a_cns_1_1_card(
    cns_card_2048: CnsCard, card_spec_2048: CardSpec
) -> None:
    card = cns_card_2048
    assert sw(card, SELECT_1102_FCI) == 0x9000
    first, s1 = tx(card, "00B00000FF")
    rest, s2 = tx(card, "00B000FF91")
    assert (s1, s2) == (0x9000, 0x9000)
    assert first + rest == card_spec_2048.files[EF_DATI_PERSONALI]


def test_serial_read_like_opensc_tool(cns_card: CnsCard) -> None:
    assert sw(cns_card, "00A4080C0410001003") == 0x9000
    data, status = tx(cns_card, "00B00000FF")
    assert (len(data), status) == (16, 0x6282)
    assert data.isdigit()
    assert tx(cns_card, "00B00010F0") == (b"", 0x6282)
    assert tx(cns_card, "00B00011EF") == (b"", 0x6B00)


def test_opensc_login_and_sign_via_decipher_on_1024(cns_card_1024: CnsCard) -> None:
    card = cns_card_1024
    message = b"challenge from the otphsm server"
    block = pkcs1_block(message, 128)
    assert tx(card, "00200010083132333435363738") == (b"", 0x9000)
    assert tx(card, "0022F30300") == (b"", 0x9000)
    assert tx(card, "0022F1B803830101") == (b"", 0x9000)
    signature, status = tx(card, H("002A808681") + b"\x00" + block + b"\x00")
    assert status == 0x9000
    assert len(signature) == 128
    public_key(card).verify(signature, message, padding.PKCS1v15(), hashes.SHA256())


@pytest.mark.parametrize("le", ["0000", "0100"])
def test_opensc_sign_via_extended_decipher_on_2048(cns_card_2048: CnsCard, le: str) -> None:
    card = cns_card_2048
    message = b"challenge for the 2048-bit card"
    assert sw(card, "00200090083132333435363738") == 0x9000
    assert sw(card, "0022F30300") == 0x9000
    assert sw(card, "0022F1B803830101") == 0x9000
    apdu = H("002A8086000101") + b"\x00" + pkcs1_block(message, 256) + H(le)
    signature, status = tx(card, apdu)
    assert (len(signature), status) == (256, 0x9000)
    public_key(card).verify(signature, message, padding.PKCS1v15(), hashes.SHA256())


def test_opensc_0_23_sign_via_chained_decipher_on_2048(cns_card_2048: CnsCard) -> None:
    """Debian 12's OpenSC splits the 257-byte DECIPHER into a CLA 10 link of 255 bytes and a
    last link of 2 bytes (traced through pcscd and vpcd)."""
    card = cns_card_2048
    message = b"hello"
    payload = b"\x00" + pkcs1_block(message, 256)
    assert sw(card, "00200090083132333435363738") == 0x9000
    assert sw(card, "0022F30300") == 0x9000
    assert sw(card, "0022F1B803830101") == 0x9000
    assert tx(card, H("102A8086FF") + payload[:255]) == (b"", 0x9000)
    signature, status = tx(card, H("002A808602") + payload[255:] + H("00"))
    assert (len(signature), status) == (256, 0x9000)
    public_key(card).verify(signature, message, padding.PKCS1v15(), hashes.SHA256())


def test_command_chaining_rules(cns_card: CnsCard) -> None:
    k = k_bytes(cns_card)
    payload = b"\x00" + pkcs1_block(b"chained", k)
    link = H("102A8086") + bytes((100,)) + payload[:100]
    rest = CommandApdu(0x00, 0x2A, 0x80, 0x86, payload[100:], le=k).encode()
    login(cns_card)
    assert sw(cns_card, "0022F1B803830101") == 0x9000
    assert sw(cns_card, "10A4080C0410001003") == 0x6884
    assert sw(cns_card, link) == 0x9000
    assert sw(cns_card, "00A4000C023F00") == 0x6883
    assert sw(cns_card, rest) == 0x6700
    assert sw(cns_card, link) == 0x9000
    assert sw(cns_card, H("102A8086") + bytes((1,)) + payload[100:101]) == 0x9000
    assert tx(cns_card, CommandApdu(0, 0x2A, 0x80, 0x86, payload[101:], le=k).encode())[1] == 0x9000
    assert sw(cns_card, link) == 0x9000
    cns_card.reset()
    login(cns_card)
    assert sw(cns_card, "0022F1B803830101") == 0x9000
    assert sw(cns_card, rest) == 0x6700
    assert sw(cns_card, "302A808601AA") == 0x6E00


# --- signatures through both PSO paths, both sizes -----------------------------------------------


def test_compute_digital_signature_with_a_full_block(cns_card: CnsCard) -> None:
    k, message = k_bytes(cns_card), b"sign me via 9E 9A"
    login(cns_card)
    assert sw(cns_card, "0022F30300") == 0x9000
    assert sw(cns_card, "0022F1B603830101") == 0x9000
    apdu = CommandApdu(0x00, 0x2A, 0x9E, 0x9A, pkcs1_block(message, k), le=k).encode()
    assert (len(apdu) > 261) == (k == 256)
    signature, status = tx(cns_card, apdu)
    assert (len(signature), status) == (k, 0x9000)
    public_key(cns_card).verify(signature, message, padding.PKCS1v15(), hashes.SHA256())


def test_compute_digital_signature_pads_a_bare_digest_info(cns_card: CnsCard) -> None:
    message = b"the card pads a DigestInfo itself"
    digest_info = SHA256_DIGEST_INFO + hashlib.sha256(message).digest()
    login(cns_card)
    assert sw(cns_card, "0022F1B603830101") == 0x9000
    signature, status = tx(cns_card, CommandApdu(0, 0x2A, 0x9E, 0x9A, digest_info, 256).encode())
    assert status == 0x9000
    public_key(cns_card).verify(signature, message, padding.PKCS1v15(), hashes.SHA256())


def test_decipher_returns_k_bytes_left_padded(cns_card: CnsCard) -> None:
    k = k_bytes(cns_card)
    numbers = public_key(cns_card).public_numbers()
    block = pow(5, numbers.e, numbers.n).to_bytes(k, "big")
    login(cns_card)
    assert sw(cns_card, "0022F1B803830101") == 0x9000
    plain, status = tx(cns_card, CommandApdu(0, 0x2A, 0x80, 0x86, b"\x00" + block, 65536).encode())
    assert status == 0x9000
    assert plain == (5).to_bytes(k, "big")


# --- PSO and MSE refusals ------------------------------------------------------------------------


def test_pso_needs_the_pin_then_the_matching_mse(cns_card: CnsCard) -> None:
    k = k_bytes(cns_card)
    cds = CommandApdu(0, 0x2A, 0x9E, 0x9A, pkcs1_block(b"x", k), le=k).encode()
    dec = CommandApdu(0, 0x2A, 0x80, 0x86, b"\x00" + pkcs1_block(b"x", k), le=k).encode()
    assert sw(cns_card, "0022F1B603830101") == 0x9000
    assert sw(cns_card, cds) == 0x6982
    login(cns_card)
    assert sw(cns_card, dec) == 0x6985
    assert sw(cns_card, cds) == 0x9000
    assert sw(cns_card, "0022F30300") == 0x9000
    assert sw(cns_card, cds) == 0x6985
    assert sw(cns_card, "0022F1B803830101") == 0x9000
    assert sw(cns_card, dec) == 0x9000
    assert sw(cns_card, cds) == 0x6985


def test_pso_bad_lengths_and_values(cns_card: CnsCard) -> None:
    k = k_bytes(cns_card)
    n = public_key(cns_card).public_numbers().n
    login(cns_card)
    assert sw(cns_card, "0022F1B603830101") == 0x9000
    assert sw(cns_card, "0022F1B803830101") == 0x9000

    def pso(p1p2: str, data: bytes) -> int:
        return sw(cns_card, CommandApdu(0, 0x2A, *H(p1p2), data, le=k).encode())

    assert pso("9E9A", bytes(k + 1)) == 0x6700
    assert pso("9E9A", b"\x01" * (k - 10)) == 0x6700
    assert pso("9E9A", n.to_bytes(k, "big")) == 0x6A80
    assert pso("8086", bytes(k)) == 0x6700
    assert pso("8086", bytes(k + 2)) == 0x6700
    assert pso("8086", b"\x81" + bytes(k)) == 0x6A80
    assert pso("8086", b"\x00" + n.to_bytes(k, "big")) == 0x6A80
    assert pso("8084", bytes(k + 1)) == 0x6A86
    assert sw(cns_card, "002A9E9A") == 0x6700


@pytest.mark.parametrize(
    ("apdu", "status"),
    [
        ("0022F30300", 0x9000),
        ("0022F303", 0x9000),
        ("0022F304", 0x6A88),
        ("0022F3030100", 0x6700),
        ("0022F1B603830101", 0x9000),
        ("002241B803830101", 0x9000),
        ("0022F1B603840101", 0x9000),
        ("0022F1B603830102", 0x6A88),
        ("0022F1B6038301", 0x6700),
        ("0022F1B6028302", 0x6A80),
        ("0022F1B603800102", 0x6A80),
        ("0022F1A403830101", 0x6A86),
        ("0022F2B603830101", 0x6A86),
    ],
)
def test_manage_security_environment(cns_card: CnsCard, apdu: str, status: int) -> None:
    assert sw(cns_card, apdu) == status


# --- security state and power --------------------------------------------------------------------


@pytest.mark.parametrize("event", ["power_on", "reset", "power_off"])
def test_power_events_clear_the_security_state(cns_card: CnsCard, event: str) -> None:
    k = k_bytes(cns_card)
    cds = CommandApdu(0, 0x2A, 0x9E, 0x9A, pkcs1_block(b"x", k), le=k).encode()
    login(cns_card)
    assert sw(cns_card, "0022F1B603830101") == 0x9000
    assert sw(cns_card, "00A4080C0410001003") == 0x9000
    assert sw(cns_card, cds) == 0x9000
    getattr(cns_card, event)()
    assert not cns_card.pin_verified
    assert sw(cns_card, cds) == 0x6982
    login(cns_card)
    assert sw(cns_card, cds) == 0x6985
    assert sw(cns_card, "00B0000010") == 0x6986
