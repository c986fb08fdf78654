"""APDU helpers for the card tests: send hex, split data and status, build PSO blocks."""

from __future__ import annotations

import hashlib

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from otphsm.simulators.card.cns_card import CnsCard
from otphsm.simulators.card.spec import CardSpec
from otphsm.smartcard.apdu import CommandApdu
from otphsm.smartcard.cns_files import EF_C_CARTA, pad_pin
from support.card_fixtures import CARD_PIN

H = bytes.fromhex
SHA256_DIGEST_INFO = H("3031300D060960864801650304020105000420")
SELECT_1102_FCI = "00A40800041100110200"


def tx(card: CnsCard, apdu: str | bytes) -> tuple[bytes, int]:
    raw = H(apdu.replace(" ", "")) if isinstance(apdu, str) else apdu
    response = card.process(raw)
    assert len(response) >= 2
    return response[:-2], int.from_bytes(response[-2:], "big")


def sw(card: CnsCard, apdu: str | bytes) -> int:
    return tx(card, apdu)[1]


def ref(card: CnsCard) -> str:
    return f"{card.pin_reference:02X}"


def verify_apdu(card: CnsCard, pin: str) -> bytes:
    return H(f"002000{ref(card)}08") + pad_pin(pin)


def login(card: CnsCard) -> None:
    assert sw(card, verify_apdu(card, CARD_PIN)) == 0x9000


def certificate(spec: CardSpec) -> x509.Certificate:
    return x509.load_der_x509_certificate(spec.files[EF_C_CARTA])


def spec_of(card: CnsCard) -> CardSpec:
    return card.export_spec()


def k_bytes(card: CnsCard) -> int:
    return (spec_of(card).key_size + 7) // 8


def pkcs1_block(message: bytes, k: int) -> bytes:
    digest_info = SHA256_DIGEST_INFO + hashlib.sha256(message).digest()
    return b"\x00\x01" + b"\xff" * (k - 3 - len(digest_info)) + b"\x00" + digest_info


def public_key(card: CnsCard) -> rsa.RSAPublicKey:
    key = certificate(spec_of(card)).public_key()
    assert isinstance(key, rsa.RSAPublicKey)
    return key


def read_selected(card: CnsCard, size: int, chunk: int = 0xFF) -> bytes:
    out = b""
    while len(out) < size:
        offset = len(out)
        want = min(chunk, size - offset)
        data, status = tx(card, CommandApdu(0, 0xB0, offset >> 8, offset & 0xFF, le=want).encode())
        assert status == 0x9000
        out += data
    return out


def fci_tags(fci: bytes) -> dict[int, bytes]:
    assert fci[0] in (0x62, 0x6F)
    assert fci[1] == len(fci) - 2
    tags, pos = {}, 2
    while pos < len(fci):
        tag, length = fci[pos], fci[pos + 1]
        tags[tag] = fci[pos + 2 : pos + 2 + length]
        pos += 2 + length
    return tags
