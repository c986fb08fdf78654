"""The CNS card as OpenSC addresses it: file map, PIN and key references, ATR facts,
and the codecs of EF_IDCarta and EF_DatiPersonali (see docs: cns-card.md §1-§2).

Paths are absolute byte strings starting with the MF, `3F00`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import astuple, dataclass, fields
from enum import IntEnum
from types import MappingProxyType

MF = bytes.fromhex("3F00")
DF0 = bytes.fromhex("3F001000")
DF1 = bytes.fromhex("3F001100")
DF2 = bytes.fromhex("3F001200")
DF_DS = bytes.fromhex("3F001400")

EF_KEY_PUB = bytes.fromhex("3F003F01")
EF_CARD_STATUS = bytes.fromhex("3F003F02")
EF_GDO = bytes.fromhex("3F002F02")
EF_ROOT_INST_FILE = bytes.fromhex("3F000405")
EF_DATI_PROCESSORE = bytes.fromhex("3F0010001002")
EF_ID_CARTA = bytes.fromhex("3F0010001003")
EF_C_CARTA = bytes.fromhex("3F0011001101")
EF_DATI_PERSONALI = bytes.fromhex("3F0011001102")
EF_DATI_PERSONALI_AGGIUNTIVI = bytes.fromhex("3F0012001201")
EF_MEMORIA_RESIDUA = bytes.fromhex("3F0012001202")
EF_SERVIZI_INSTALLATI = bytes.fromhex("3F0012001203")
EF_INST_FILE = bytes.fromhex("3F0012004142")

CNS_FILES: Mapping[str, bytes] = MappingProxyType(
    {
        "EF_KeyPub": EF_KEY_PUB,
        "EF_CardStatus": EF_CARD_STATUS,
        "EF_GDO": EF_GDO,
        "EF_RootInstFile": EF_ROOT_INST_FILE,
        "EF_DatiProcessore": EF_DATI_PROCESSORE,
        "EF_IDCarta": EF_ID_CARTA,
        "EF_C_Carta": EF_C_CARTA,
        "EF_DatiPersonali": EF_DATI_PERSONALI,
        "EF_DatiPersonaliAggiuntivi": EF_DATI_PERSONALI_AGGIUNTIVI,
        "EF_MemoriaResidua": EF_MEMORIA_RESIDUA,
        "EF_ServiziInstallati": EF_SERVIZI_INSTALLATI,
        "EF_INST_FILE": EF_INST_FILE,
    }
)
"""Elementary files of a classic CNS (keyset CNS0 only)."""

CNS_DIRECTORIES: tuple[bytes, ...] = (MF, DF0, DF1, DF2)

ABSENT_PATHS: tuple[bytes, ...] = (
    bytes.fromhex("3F002F00"),
    bytes.fromhex("3F005015"),
    bytes.fromhex("3F005031"),
    bytes.fromhex("3F002FFF8228"),
    bytes.fromhex("3F0014009010"),
    bytes.fromhex("3F00140090012002"),
)
"""Paths OpenSC probes that a classic CNS answers `6A 82`: PKCS#15 DIR/ODF, other keysets."""

ID_CARTA_LENGTH = 16
DATI_PERSONALI_SIZE = 400


class PinReference(IntEnum):
    PIN = 0x10
    PUK = 0x11
    PIN_STINCARD = 0x90


class KeyReference(IntEnum):
    CNS0 = 0x01


class SecurityEnvironment(IntEnum):
    CNS = 0x03


class MaskManufacturer(IntEnum):
    SIEMENS = 0x08
    STINCARD = 0x09


STINCARD_REFERENCE_FLAG = 0x80
PIN_MAX_LENGTH = 8
PIN_PAD = 0xFF
CNS_HISTORICAL_LENGTH = 15
CNS_MARKER = b"CNS"


class MalformedCardData(ValueError):
    """Card file contents that do not follow the CNS format."""


def historical_bytes(atr: bytes) -> bytes:
    """The historical bytes of an ATR, walking T0/TDi to skip the interface bytes."""
    if len(atr) < 2:
        raise MalformedCardData("ATR too short")
    count = atr[1] & 0x0F
    indicator = atr[1]
    pos = 2
    while True:
        pos += sum(1 for bit in (0x10, 0x20, 0x40, 0x80) if indicator & bit)
        if not indicator & 0x80:
            break
        if pos > len(atr):
            raise MalformedCardData("ATR interface bytes truncated")
        indicator = atr[pos - 1]
    hist = atr[pos : pos + count]
    if len(hist) != count:
        raise MalformedCardData("ATR historical bytes truncated")
    return hist


def is_cns_atr(atr: bytes) -> bool:
    """OpenSC's soft rule: 15 historical bytes with "CNS" at positions 9..11."""
    try:
        hist = historical_bytes(atr)
    except MalformedCardData:
        return False
    return len(hist) == CNS_HISTORICAL_LENGTH and hist[9:12] == CNS_MARKER


def pin_reference_for_atr(atr: bytes) -> int:
    """0x10, or 0x90 when the mask manufacturer (historical byte 3) is STIncard."""
    hist = historical_bytes(atr)
    if len(hist) > 3 and hist[3] == MaskManufacturer.STINCARD:
        return PinReference.PIN | STINCARD_REFERENCE_FLAG
    return int(PinReference.PIN)


def cns_rsa_bits(atr: bytes) -> int:
    """The one RSA size OpenSC registers for a CNS ATR: 2048 from version 1.1, else 1024."""
    hist = historical_bytes(atr)
    version = hist[12] if len(hist) > 12 else 0
    return 2048 if version >> 4 >= 1 and version & 0x0F >= 1 else 1024


def pad_pin(pin: str) -> bytes:
    """ASCII PIN right-padded with FF to 8 bytes, as OpenSC sends it."""
    raw = pin.encode("ascii")
    if not 1 <= len(raw) <= PIN_MAX_LENGTH:
        raise ValueError(f"a PIN has 1..{PIN_MAX_LENGTH} characters")
    return raw.ljust(PIN_MAX_LENGTH, bytes((PIN_PAD,)))


def encode_id_carta(card_id: str) -> bytes:
    if len(card_id) != ID_CARTA_LENGTH or not card_id.isascii() or not card_id.isdigit():
        raise ValueError(f"a card id is {ID_CARTA_LENGTH} ASCII digits")
    return card_id.encode("ascii")


def parse_id_carta(raw: bytes) -> str:
    if len(raw) != ID_CARTA_LENGTH:
        raise MalformedCardData(f"EF_IDCarta has {len(raw)} bytes, expected {ID_CARTA_LENGTH}")
    if not all(0x20 < b < 0x7F for b in raw):
        raise MalformedCardData("EF_IDCarta is not printable ASCII")
    return raw.decode("ascii")


@dataclass(frozen=True, slots=True)
class PersonalData:
    """EF_DatiPersonali, field by field in card order.

    Text as on the card. Dates are strings `DDMMYYYY` (empty when absent), because cards carry
    them verbatim; `card_date()` / `format_card_date()` convert.
    """

    issuer_code: str
    issue_date: str
    expiry_date: str
    surname: str
    given_name: str
    birth_date: str
    sex: str
    height: str = ""
    codice_fiscale: str = ""
    citizenship: str = ""
    birth_municipality: str = ""
    birth_state: str = ""
    birth_record: str = ""
    residence_municipality: str = ""
    residence_address: str = ""
    expatriation_notes: str = ""


_FIELD_COUNT = len(fields(PersonalData))
_HEADER_DIGITS = 6
_LENGTH_DIGITS = 2
_MAX_FIELD = 0xFF
_PADDING = frozenset((0x00, 0xFF))
_HEX_DIGITS = frozenset(b"0123456789abcdefABCDEF")


def format_card_date(day: dt.date) -> str:
    return day.strftime("%d%m%Y")


def card_date(text: str) -> dt.date | None:
    """`DDMMYYYY` → date; None for an empty field; `MalformedCardData` otherwise."""
    if not text:
        return None
    try:
        return dt.datetime.strptime(text, "%d%m%Y").date()
    except ValueError as exc:
        raise MalformedCardData(f"not a DDMMYYYY date: {text!r}") from exc


def encode_dati_personali(pd: PersonalData, padded_size: int | None = DATI_PERSONALI_SIZE) -> bytes:
    """The EF content: a 6-hex-digit header counting what follows (OpenSC's reading), the 16
    length-prefixed fields, then zero padding to `padded_size` (None: no padding)."""
    body = bytearray()
    for value in astuple(pd):
        raw = str(value).encode("ascii")
        if len(raw) > _MAX_FIELD or any(b < 0x20 or b == 0x7F for b in raw):
            raise ValueError(f"field {value!r} is not up to 255 printable ASCII characters")
        body += f"{len(raw):02X}".encode() + raw
    record = f"{len(body):06X}".encode() + body
    if padded_size is None:
        return bytes(record)
    if len(record) > padded_size:
        raise ValueError(f"personal data take {len(record)} bytes, more than {padded_size}")
    return bytes(record.ljust(padded_size, b"\x00"))


def _hex_number(raw: bytes, what: str) -> int:
    if not raw or not set(raw) <= _HEX_DIGITS:
        raise MalformedCardData(f"{what} is not hexadecimal ASCII: {raw!r}")
    return int(raw, 16)


def parse_dati_personali(raw: bytes) -> PersonalData:
    """Decode EF_DatiPersonali whether the header counts what follows it (OpenSC) or the
    whole record including itself (seen on real cards); trailing 00/FF padding is ignored."""
    header = _hex_number(raw[:_HEADER_DIGITS], "EF_DatiPersonali header")
    pos = _HEADER_DIGITS
    values: list[str] = []
    for index in range(_FIELD_COUNT):
        length = _hex_number(raw[pos : pos + _LENGTH_DIGITS], f"length of field {index + 1}")
        pos += _LENGTH_DIGITS
        value = raw[pos : pos + length]
        if len(value) != length:
            raise MalformedCardData(f"field {index + 1} runs past the end of the data")
        if any(b < 0x20 or 0x7F <= b < 0xA0 for b in value):
            raise MalformedCardData(f"field {index + 1} holds control characters")
        values.append(value.decode("latin-1"))
        pos += length
    if header not in (pos - _HEADER_DIGITS, pos):
        raise MalformedCardData(f"header says {header} bytes, the fields take {pos - 6}")
    if not set(raw[pos:]) <= _PADDING:
        raise MalformedCardData("unexpected bytes after the personal data")
    return PersonalData(*values)
