"""Hypothesis: the simulated card and the card-data parsers never crash on any input."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.card_fixtures import CARD_PIN

from otphsm.simulators.card.cns_card import HANDLERS, CnsCard, logger
from otphsm.simulators.card.spec import CardSpec
from otphsm.smartcard.apdu import CommandApdu
from otphsm.smartcard.cns_files import (
    MalformedCardData,
    PersonalData,
    encode_dati_personali,
    pad_pin,
    parse_dati_personali,
)

VALID_FIRST_BYTES = frozenset((0x90, *range(0x61, 0x70)))
FUZZ = settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextmanager
def no_internal_errors() -> Iterator[None]:
    """Fail if the card's catch-all (`6F 00` on an exception) was reached."""
    handler = _Collect()
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
    assert not handler.records, handler.records[0].getMessage()


def assert_valid_response(response: bytes) -> None:
    assert len(response) >= 2
    assert response[-2] in VALID_FIRST_BYTES
    assert response[-2:] != b"\x6f\x00"


def logged_in_card(spec: CardSpec) -> CnsCard:
    card = CnsCard(spec)
    card.power_on()
    ref = f"{card.pin_reference:02X}"
    assert card.process(bytes.fromhex(f"002000{ref}08") + pad_pin(CARD_PIN)) == b"\x90\x00"
    assert card.process(bytes.fromhex("0022F1B603830101")) == b"\x90\x00"
    assert card.process(bytes.fromhex("0022F1B803830101")) == b"\x90\x00"
    return card


@FUZZ
@given(raw=st.binary(max_size=300))
def test_random_bytes_get_a_valid_status_word(card_spec_1024: CardSpec, raw: bytes) -> None:
    card = logged_in_card(card_spec_1024)
    with no_internal_errors():
        assert_valid_response(card.process(raw))


known_commands = st.builds(
    CommandApdu,
    cla=st.sampled_from([0x00, 0x00, 0x00, 0x10, 0x10, 0x80, 0x0C]),
    ins=st.sampled_from(sorted(HANDLERS)),
    p1=st.integers(0, 255) | st.sampled_from([0x00, 0x08, 0x09, 0xF1, 0xF3, 0x9E, 0x80]),
    p2=st.integers(0, 255) | st.sampled_from([0x00, 0x0C, 0x10, 0x90, 0xB6, 0xB8, 0x9A, 0x86]),
    data=st.binary(max_size=300) | st.sampled_from([b"\x11\x00\x11\x01", b"\x83\x01\x01"]),
    le=st.none() | st.integers(1, 65536),
    extended=st.booleans(),
)


@FUZZ
@given(commands=st.lists(known_commands, min_size=1, max_size=8))
def test_sequences_of_known_commands_get_valid_status_words(
    card_spec_1024: CardSpec, commands: list[CommandApdu]
) -> None:
    card = logged_in_card(card_spec_1024)
    with no_internal_errors():
        for command in commands:
            assert_valid_response(card.process(command.encode()))


@FUZZ
@given(raw=st.binary(max_size=500))
def test_random_personal_data_parses_or_is_malformed(raw: bytes) -> None:
    try:
        result = parse_dati_personali(raw)
    except MalformedCardData:
        return
    assert isinstance(result, PersonalData)


printable = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20)
personal_data = st.builds(PersonalData, *([printable] * 16))


@FUZZ
@given(pd=personal_data, padded=st.booleans(), whole_header=st.booleans())
def test_personal_data_round_trips_in_both_header_conventions(
    pd: PersonalData, padded: bool, whole_header: bool
) -> None:
    record = encode_dati_personali(pd, padded_size=None)
    if whole_header:
        record = b"%06X" % len(record) + record[6:]
    raw = record.ljust(400, b"\x00") if padded else record
    assert parse_dati_personali(raw) == pd


@FUZZ
@given(pd=personal_data, data=st.data())
def test_damaged_personal_data_never_crashes(pd: PersonalData, data: st.DataObject) -> None:
    raw = bytearray(encode_dati_personali(pd, padded_size=None))
    position = data.draw(st.integers(0, len(raw) - 1))
    raw[position] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    with suppress(MalformedCardData):
        parse_dati_personali(bytes(raw[:cut]))
