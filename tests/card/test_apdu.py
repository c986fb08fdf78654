"""The APDU codec and the status-word table (pure)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otphsm.smartcard.apdu import CommandApdu, MalformedApdu, ResponseApdu
from otphsm.smartcard.status_words import (
    SW_DESCRIPTIONS,
    StatusWord,
    describe,
    pin_tries_left,
    pin_tries_sw,
)

H = bytes.fromhex


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("00A4000C", CommandApdu(0x00, 0xA4, 0x00, 0x0C)),
        ("00B0000010", CommandApdu(0x00, 0xB0, 0x00, 0x00, le=16)),
        ("0022F30300", CommandApdu(0x00, 0x22, 0xF3, 0x03, le=256)),
        ("00A4000C023F00", CommandApdu(0x00, 0xA4, 0x00, 0x0C, H("3F00"))),
        ("00A40800041100110100", CommandApdu(0x00, 0xA4, 0x08, 0x00, H("11001101"), 256)),
        ("00B00000000100", CommandApdu(0x00, 0xB0, 0x00, 0x00, le=256, extended=True)),
        ("00B00000000000", CommandApdu(0x00, 0xB0, 0x00, 0x00, le=65536, extended=True)),
        ("002A9E9A000003010203", CommandApdu(0, 0x2A, 0x9E, 0x9A, H("010203"), extended=True)),
        ("002A8086000002AABB0101", CommandApdu(0, 0x2A, 0x80, 0x86, H("AABB"), 257, True)),
    ],
    ids=["1", "2S", "2S-Le00", "3S", "4S", "2E", "2E-Le0000", "3E", "4E"],
)
def test_each_iso_case_parses_and_encodes_back(raw: str, expected: CommandApdu) -> None:
    assert CommandApdu.parse(H(raw)) == expected
    assert expected.encode() == H(raw)


def test_encode_switches_to_extended_for_long_data_or_le() -> None:
    data = bytes(256)
    long_data = CommandApdu(0x00, 0x2A, 0x80, 0x86, data, le=256)
    assert long_data.encode() == H("002A8086000100") + data + H("0100")
    assert CommandApdu(0, 0xB0, 0, 0, le=257).encode() == H("00B00000000101")
    assert CommandApdu(0, 0xB0, 0, 0, le=256).encode() == H("00B0000000")
    assert CommandApdu(0, 0x2A, 0x9E, 0x9A, bytes(255), le=256).encode()[4] == 0xFF


def test_extended_flag_forces_extended_encoding_of_short_fields() -> None:
    apdu = CommandApdu(0x00, 0x2A, 0x9E, 0x9A, H("0102"), le=128, extended=True)
    assert apdu.encode() == H("002A9E9A0000020102") + H("0080")


def test_the_2048_bit_decipher_apdu_opensc_sends() -> None:
    block = bytes(range(256))
    raw = H("002A8086000101") + b"\x00" + block + H("0000")
    apdu = CommandApdu.parse(raw)
    assert (apdu.data, apdu.le, apdu.extended) == (b"\x00" + block, 65536, True)


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "00",
        "00A400",
        "00A4000C033F00",  # Lc 3, 2 bytes of data
        "00A4000C023F000000",  # two bytes after the data
        "00B000000001",  # extended body too short
        "00A40800000004110011",  # extended Lc 4, 3 bytes
        "00A4080000000100AB",  # extended, 1 data byte then 1 stray byte
    ],
)
def test_garbage_is_malformed(raw: str) -> None:
    with pytest.raises(MalformedApdu):
        CommandApdu.parse(H(raw))


def test_extended_lc_zero_with_a_body_is_malformed() -> None:
    with pytest.raises(MalformedApdu):
        CommandApdu.parse(H("00A40800000000AA"))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"cla": 256},
        {"ins": -1},
        {"le": 0},
        {"le": 65537},
        {"data": bytes(65536)},
    ],
)
def test_out_of_range_fields_are_refused(kwargs: dict[str, object]) -> None:
    fields: dict[str, object] = {"cla": 0, "ins": 0xA4, "p1": 0, "p2": 0}
    fields.update(kwargs)
    with pytest.raises(MalformedApdu):
        CommandApdu(**fields)  # type: ignore[arg-type]


def test_response_apdu_round_trip_and_status() -> None:
    response = ResponseApdu.parse(H("0102036282"))
    assert (response.data, response.sw1, response.sw2, response.sw) == (
        H("010203"),
        0x62,
        0x82,
        0x6282,
    )
    assert not response.ok
    assert response.encode() == H("0102036282")
    assert ResponseApdu.parse(H("9000")).ok
    assert ResponseApdu.of(StatusWord.FILE_NOT_FOUND).encode() == H("6A82")
    assert ResponseApdu.of(0x9000, b"ab").encode() == b"ab\x90\x00"


@pytest.mark.parametrize("raw", ["", "90"])
def test_response_without_a_status_word_is_malformed(raw: str) -> None:
    with pytest.raises(MalformedApdu):
        ResponseApdu.parse(H(raw))


def test_status_word_range_is_checked() -> None:
    with pytest.raises(MalformedApdu):
        ResponseApdu.of(0x10000)
    with pytest.raises(MalformedApdu):
        ResponseApdu(b"", 0x100, 0)


def test_every_status_word_has_a_description() -> None:
    assert set(SW_DESCRIPTIONS) == set(StatusWord)


@pytest.mark.parametrize(
    ("sw", "text"),
    [
        (0x9000, "9000 success"),
        (0x6A82, "6A82 file or application not found"),
        (0x63C2, "63C2 wrong PIN, 2 tries left"),
        (0x6983, "6983 authentication method blocked (PIN blocked)"),
        (0x6110, "6110 16 response bytes available"),
        (0x6C00, "6C00 wrong Le, 256 bytes available"),
        (0x6A42, "6A42 unknown status word"),
    ],
)
def test_describe(sw: int, text: str) -> None:
    assert describe(sw) == text


def test_pin_tries_helpers() -> None:
    assert pin_tries_sw(2) == 0x63C2
    assert pin_tries_left(0x63C1) == 1
    assert pin_tries_left(0x6300) is None
    assert pin_tries_left(0x9000) is None
    with pytest.raises(ValueError):
        pin_tries_sw(16)


command_apdus = st.builds(
    CommandApdu,
    cla=st.integers(0, 255),
    ins=st.integers(0, 255),
    p1=st.integers(0, 255),
    p2=st.integers(0, 255),
    data=st.binary(max_size=300),
    le=st.none() | st.integers(1, 65536),
    extended=st.booleans(),
)


@given(command_apdus)
def test_encode_then_parse_is_identity(apdu: CommandApdu) -> None:
    encoded = apdu.encode()
    has_body = bool(apdu.data) or apdu.le is not None
    assert CommandApdu.parse(encoded) == replace(apdu, extended=apdu.needs_extended and has_body)


@given(st.binary(max_size=300))
def test_parse_accepts_exactly_what_it_can_encode_back(raw: bytes) -> None:
    try:
        apdu = CommandApdu.parse(raw)
    except MalformedApdu:
        return
    assert apdu.encode() == raw
