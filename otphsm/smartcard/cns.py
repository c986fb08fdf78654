"""The CNS / CPS card protocol, station side, over any `CardTransport`.

The commands are the ones OpenSC's `itacns` driver sends (cns-card.md §3): SELECT by path
(`00 A4 08 00`), READ BINARY in chunks of at most 0xFF bytes sized from the FCI, VERIFY /
CHANGE REFERENCE DATA / RESET RETRY COUNTER with the PIN FF-padded to 8 bytes and reference
0x10 (0x90 on STIncard masks), and signatures made the OpenSC way: PKCS#1 v1.5 padding done
here, then MSE RESTORE `22 F3 03`, MSE SET `22 F1 B8|B6 03 83 01 01` and PSO DECIPHER
`2A 80 86` (with the leading `00` padding indicator) or PSO COMPUTE DIGITAL SIGNATURE
`2A 9E 9A`. 2048-bit keys need extended APDUs, which `CommandApdu` encodes by itself.

Every failure is a typed error from `otphsm.smartcard.errors`; an answer that does not parse
is `MalformedCardAnswer`, and every loop over card answers is bounded.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography import x509

from otphsm.smartcard import cns_files
from otphsm.smartcard.apdu import CommandApdu, MalformedApdu, ResponseApdu
from otphsm.smartcard.cns_files import PersonalData
from otphsm.smartcard.errors import (
    InvalidPinFormat,
    MalformedCardAnswer,
    PinBlocked,
    UnexpectedStatusWord,
    UnsupportedCard,
    WrongPin,
)
from otphsm.smartcard.status_words import (
    BYTES_AVAILABLE_FAMILY,
    WRONG_LE_FAMILY,
    StatusWord,
    pin_tries_left,
)
from otphsm.smartcard.transport import CardTransport

__all__ = ["SHA256_DIGEST_INFO", "CardContents", "CnsClient", "Fci", "pkcs1_v15_block"]

SHA256_DIGEST_INFO = bytes.fromhex("3031300d060960864801650304020105000420")
"""DER DigestInfo prefix for SHA-256 (RFC 8017 §9.2 note 1)."""

CHUNK = 0xFF
MAX_FILE_SIZE = 0x4000
"""Largest EF read without an FCI size (a CNS certificate is 1-2 KB)."""
MAX_GET_RESPONSE = 64
PIN_MIN_LENGTH = 5

_INS_SELECT = 0xA4
_INS_READ_BINARY = 0xB0
_INS_VERIFY = 0x20
_INS_CHANGE = 0x24
_INS_RESET_RETRY = 0x2C
_INS_MSE = 0x22
_INS_PSO = 0x2A
_INS_GET_RESPONSE = 0xC0
_SELECT_PATH_FROM_MF = 0x08
_MSE_RESTORE = (0xF3, 0x03)
_MSE_SET_CNS = 0xF1
_MSE_TEMPLATE_SIGN = 0xB6
_MSE_TEMPLATE_DECIPHER = 0xB8
_TAG_KEY_REFERENCE = 0x83
_PSO_CDS = (0x9E, 0x9A)
_PSO_DECIPHER = (0x80, 0x86)
_FCI_TEMPLATES = (0x6F, 0x62)
_FCI_SIZE_TAGS = (0x80, 0x81)
_END_OF_DATA = frozenset({StatusWord.END_OF_FILE, StatusWord.WRONG_P1_P2})


@dataclass(frozen=True, slots=True)
class Fci:
    """What the station uses from a SELECT answer."""

    size: int | None
    raw: bytes


@dataclass(frozen=True, slots=True)
class CardContents:
    """Everything a station reads from a CNS card without the PIN."""

    card_id: str
    personal_data: PersonalData
    certificate: bytes


def pkcs1_v15_block(digest_info: bytes, size: int) -> bytes:
    """EMSA-PKCS1-v1_5: `00 01 FF..FF 00 DigestInfo`, `size` bytes (the modulus length)."""
    padding = size - 3 - len(digest_info)
    if padding < 8:
        raise ValueError(f"a {size}-byte modulus is too short for this DigestInfo")
    return b"\x00\x01" + b"\xff" * padding + b"\x00" + digest_info


def _tlv_items(data: bytes) -> list[tuple[int, bytes]]:
    """Top-level BER-TLV items of `data`; `MalformedCardAnswer` if they do not parse."""
    items: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        if data[pos] in (0x00, 0xFF):  # padding between objects
            pos += 1
            continue
        tag = data[pos]
        pos += 1
        if tag & 0x1F == 0x1F:
            while pos < len(data) and data[pos] & 0x80:
                tag = (tag << 8) | data[pos]
                pos += 1
            if pos >= len(data):
                raise MalformedCardAnswer("truncated TLV tag")
            tag = (tag << 8) | data[pos]
            pos += 1
        if pos >= len(data):
            raise MalformedCardAnswer("TLV without a length")
        length = data[pos]
        pos += 1
        if length & 0x80:
            count = length & 0x7F
            if not 1 <= count <= 3 or pos + count > len(data):
                raise MalformedCardAnswer("bad TLV length")
            length = int.from_bytes(data[pos : pos + count], "big")
            pos += count
        value = data[pos : pos + length]
        if len(value) != length:
            raise MalformedCardAnswer("TLV value runs past the end of the answer")
        items.append((tag, value))
        pos += length
    return items


def parse_fci(data: bytes) -> Fci:
    """Parse a SELECT answer (`6F` or `62` template); size from tag `80` or `81`."""
    if not data:
        return Fci(None, data)
    try:
        items = _tlv_items(data)
        if len(items) != 1 or items[0][0] not in _FCI_TEMPLATES:
            raise MalformedCardAnswer("not a 6F or 62 template")
        fields = _tlv_items(items[0][1])
    except MalformedCardAnswer as exc:
        raise MalformedCardAnswer(
            f"SELECT answer is not an FCI ({exc}): {data[:8].hex()}"
        ) from None
    size = None
    for tag, value in fields:
        if tag in _FCI_SIZE_TAGS and size is None:
            if not 1 <= len(value) <= 3:
                raise MalformedCardAnswer(f"FCI file size of {len(value)} bytes")
            size = int.from_bytes(value, "big")
    return Fci(size, data)


def _der_length(data: bytes) -> int:
    """Total length of the DER SEQUENCE at the start of `data` (header included)."""
    if len(data) < 2 or data[0] != 0x30:
        raise MalformedCardAnswer("the certificate file does not start with a DER SEQUENCE")
    first = data[1]
    if first < 0x80:
        return 2 + first
    count = first & 0x7F
    if not 1 <= count <= 3 or len(data) < 2 + count:
        raise MalformedCardAnswer("bad DER length in the certificate file")
    return 2 + count + int.from_bytes(data[2 : 2 + count], "big")


def _check_secret(value: str, what: str) -> bytes:
    if not value.isascii() or not value.isdigit():
        raise InvalidPinFormat(f"a CNS {what} is made of digits only")
    if not PIN_MIN_LENGTH <= len(value) <= cns_files.PIN_MAX_LENGTH:
        raise InvalidPinFormat(
            f"a CNS {what} has {PIN_MIN_LENGTH} to {cns_files.PIN_MAX_LENGTH} digits"
        )
    return cns_files.pad_pin(value)


def check_pin(pin: str) -> str:
    """A PIN the card could accept (5..8 digits), else `InvalidPinFormat`."""
    _check_secret(pin, "PIN")
    return pin


class CnsClient:
    """Talks CNS to the card behind `transport` (which it does not own or close)."""

    def __init__(self, transport: CardTransport, *, require_cns_atr: bool = True) -> None:
        self.transport = transport
        self.atr = bytes(transport.atr)
        try:
            self.pin_reference = cns_files.pin_reference_for_atr(self.atr)
            self.rsa_bits = cns_files.cns_rsa_bits(self.atr)
        except cns_files.MalformedCardData as exc:
            raise MalformedCardAnswer("the card's ATR does not parse") from exc
        if require_cns_atr and not cns_files.is_cns_atr(self.atr):
            raise UnsupportedCard(f"not a CNS card (ATR {self.atr.hex(' ').upper()})")
        self._certificate: bytes | None = None

    # -- APDU plumbing -----------------------------------------------------------------

    def exchange(self, command: CommandApdu) -> ResponseApdu:
        """Send `command`; follow `61 xx` with GET RESPONSE and `6C xx` with a re-send."""
        response = self._send(command)
        if response.sw & 0xFF00 == WRONG_LE_FAMILY:
            corrected = response.sw2 or 256
            response = self._send(
                CommandApdu(
                    command.cla, command.ins, command.p1, command.p2, command.data, corrected
                )
            )
        data = bytearray(response.data)
        for _ in range(MAX_GET_RESPONSE):
            if response.sw & 0xFF00 != BYTES_AVAILABLE_FAMILY:
                return ResponseApdu(bytes(data), response.sw1, response.sw2)
            response = self._send(
                CommandApdu(0x00, _INS_GET_RESPONSE, 0, 0, le=response.sw2 or 256)
            )
            data += response.data
        raise MalformedCardAnswer("the card keeps announcing more response bytes (61 xx)")

    def _send(self, command: CommandApdu) -> ResponseApdu:
        raw = self.transport.transmit(command.encode())
        try:
            return ResponseApdu.parse(raw)
        except MalformedApdu as exc:
            raise MalformedCardAnswer(
                f"answer to {command.header.hex().upper()} is not a response APDU: {exc}"
            ) from exc

    def _ok(self, command: CommandApdu, operation: str) -> ResponseApdu:
        response = self.exchange(command)
        if response.sw != StatusWord.OK:
            raise UnexpectedStatusWord(operation, response.sw)
        return response

    # -- files -------------------------------------------------------------------------

    def select(self, path: bytes) -> Fci:
        """SELECT an absolute path (starting with 3F00) and return its FCI."""
        relative = path[2:] if path[:2] == cns_files.MF else path
        command = CommandApdu(0x00, _INS_SELECT, _SELECT_PATH_FROM_MF, 0x00, relative, le=256)
        response = self.exchange(command)
        if response.sw != StatusWord.OK:
            raise UnexpectedStatusWord(f"select {path.hex().upper()}", response.sw)
        return parse_fci(response.data)

    def read_binary(self, size: int | None, operation: str = "read binary") -> bytes:
        """READ BINARY from the current EF: `size` bytes, or up to the end when None."""
        limit = MAX_FILE_SIZE if size is None else size
        if not 0 <= limit <= 0x7FFF:
            raise MalformedCardAnswer(f"{operation}: file size {limit} out of range")
        data = bytearray()
        while len(data) < limit:
            want = min(CHUNK, limit - len(data))
            offset = len(data)
            response = self.exchange(
                CommandApdu(0x00, _INS_READ_BINARY, offset >> 8, offset & 0xFF, le=want)
            )
            if len(response.data) > want:
                raise MalformedCardAnswer(
                    f"{operation}: asked for {want} bytes, got {len(response.data)}"
                )
            data += response.data
            if response.sw in _END_OF_DATA:
                if size is not None and len(data) < size:
                    raise MalformedCardAnswer(
                        f"{operation}: the file ends at {len(data)} bytes, its FCI says {size}"
                    )
                break
            if response.sw != StatusWord.OK:
                raise UnexpectedStatusWord(operation, response.sw)
            if len(response.data) < want:
                if size is None:
                    break
                if not response.data:
                    raise MalformedCardAnswer(f"{operation}: no data at offset {offset}")
        return bytes(data)

    def read_file(self, path: bytes, name: str) -> bytes:
        fci = self.select(path)
        return self.read_binary(fci.size, f"read {name}")

    def read_card_id(self) -> str:
        """EF_IDCarta: the 16-character card id (also the token serial OpenSC shows)."""
        self.select(cns_files.EF_ID_CARTA)
        raw = self.read_binary(cns_files.ID_CARTA_LENGTH, "read EF_IDCarta")
        try:
            return cns_files.parse_id_carta(raw)
        except cns_files.MalformedCardData as exc:
            raise MalformedCardAnswer(str(exc)) from exc

    def read_personal_data(self) -> PersonalData:
        raw = self.read_file(cns_files.EF_DATI_PERSONALI, "EF_DatiPersonali")
        try:
            return cns_files.parse_dati_personali(raw)
        except ValueError as exc:
            raise MalformedCardAnswer("EF_DatiPersonali does not parse") from exc

    def read_certificate(self) -> bytes:
        """EF_C_Carta: the authentication certificate, DER, trailing padding removed."""
        raw = self.read_file(cns_files.EF_C_CARTA, "EF_C_Carta")
        end = _der_length(raw)
        if end > len(raw):
            raise MalformedCardAnswer(f"the certificate is truncated ({len(raw)} of {end} bytes)")
        der = raw[:end]
        try:
            x509.load_der_x509_certificate(der)
        except ValueError as exc:
            raise MalformedCardAnswer("EF_C_Carta is not an X.509 certificate") from exc
        self._certificate = der
        return der

    def read_card(self) -> CardContents:
        return CardContents(self.read_card_id(), self.read_personal_data(), self.read_certificate())

    # -- PIN ---------------------------------------------------------------------------

    def _pin_command(self, ins: int, data: bytes, operation: str, what: str) -> None:
        command = CommandApdu(0x00, ins, 0x00, self.pin_reference, data)
        sw = self.exchange(command).sw
        if sw == StatusWord.OK:
            return
        tries = pin_tries_left(sw)
        if sw == StatusWord.AUTH_METHOD_BLOCKED or tries == 0:
            raise PinBlocked(sw=sw, what=what)
        if tries is not None:
            raise WrongPin(tries, sw=sw, what=what)
        raise UnexpectedStatusWord(operation, sw)

    def verify_pin(self, pin: str) -> None:
        """VERIFY; raises `WrongPin` (with tries left) or `PinBlocked`."""
        self._pin_command(_INS_VERIFY, _check_secret(pin, "PIN"), "verify PIN", "PIN")

    def change_pin(self, old: str, new: str) -> None:
        data = _check_secret(old, "PIN") + _check_secret(new, "PIN")
        self._pin_command(_INS_CHANGE, data, "change PIN", "PIN")

    def unblock_pin(self, puk: str, new: str) -> None:
        """RESET RETRY COUNTER with the PUK; P2 is the PIN's reference, as OpenSC sends it."""
        data = _check_secret(puk, "PUK") + _check_secret(new, "PIN")
        self._pin_command(_INS_RESET_RETRY, data, "unblock PIN", "PUK")

    # -- signatures --------------------------------------------------------------------

    @property
    def modulus_bytes(self) -> int:
        """From the certificate when it was read, else from the ATR's CNS version."""
        if self._certificate is not None:
            key = x509.load_der_x509_certificate(self._certificate).public_key()
            size = getattr(key, "key_size", None)
            if isinstance(size, int):
                return (size + 7) // 8
        return self.rsa_bits // 8

    def sign_challenge(self, challenge: bytes, *, use_decipher: bool = True) -> bytes:
        """RSA PKCS#1 v1.5 signature over SHA-256(`challenge`) with the CNS0 key.

        `use_decipher=True` is what OpenSC does for a CNS certificate with clientAuth
        (MSE B8 + PSO DECIPHER); False uses MSE B6 + PSO COMPUTE DIGITAL SIGNATURE.
        The PIN must have been verified in this session (else `69 82`).
        """
        digest = hashlib.sha256(challenge).digest()
        return self.sign_digest_info(SHA256_DIGEST_INFO + digest, use_decipher=use_decipher)

    def sign_digest_info(self, digest_info: bytes, *, use_decipher: bool = True) -> bytes:
        size = self.modulus_bytes
        block = pkcs1_v15_block(digest_info, size)
        p1, p2 = _MSE_RESTORE
        self._ok(CommandApdu(0x00, _INS_MSE, p1, p2, le=256), "restore security environment")
        template = _MSE_TEMPLATE_DECIPHER if use_decipher else _MSE_TEMPLATE_SIGN
        key_ref = bytes((_TAG_KEY_REFERENCE, 0x01, cns_files.KeyReference.CNS0))
        self._ok(CommandApdu(0x00, _INS_MSE, _MSE_SET_CNS, template, key_ref), "set security env")
        if use_decipher:
            p1, p2 = _PSO_DECIPHER
            command = CommandApdu(0x00, _INS_PSO, p1, p2, b"\x00" + block, le=size)
        else:
            p1, p2 = _PSO_CDS
            command = CommandApdu(0x00, _INS_PSO, p1, p2, block, le=size)
        signature = self._ok(command, "sign").data
        if len(signature) != size:
            raise MalformedCardAnswer(f"signature of {len(signature)} bytes, expected {size}")
        return signature
