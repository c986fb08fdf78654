"""Hypothesis: the simulated card and the card-data parsers never crash on any input."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.card_fixtures import CARD_PIN

from otphsm.simulators.card.cns_card import HANDLERS, CnsCard, logger
from otphsm.simulators.card.spec import PIN_TRIES, PUK_TRIES, CardSpec
from otphsm.smartcard.apdu import CommandApdu
from otphsm.smartcard.cns_files import (
    MalformedCardData,
    PersonalData,
    encode_dati_personali,
    pad_pin,
    parse_dati_personali,
)

# Every status word the simulated card answers (see otphsm/simulators/card/), spelled out
# here rather than taken from its code, so a new one has to be added on purpose.
CARD_STATUS_WORDS = frozenset(
    (
        0x9000,  # success
        0x6282,  # READ BINARY: end of file before Le bytes
        0x6700,  # wrong length (also: an APDU that does not parse)
        0x6883,  # last command of the chain expected
        0x6884,  # chaining not supported for this INS
        0x6982,  # PSO without a verified PIN
        0x6983,  # PIN or PUK blocked
        0x6985,  # PSO without a matching MSE SET
        0x6986,  # READ BINARY with no current EF
        0x6A80,  # wrong data (bad new PIN, bad CRT, block >= modulus, bad padding indicator)
        0x6A81,  # READ BINARY by SFI
        0x6A82,  # file not found
        0x6A86,  # incorrect P1-P2
        0x6A88,  # referenced data (PIN or key reference, SE) not found
        0x6B00,  # READ BINARY offset beyond the end
        0x6D00,  # INS not supported
        0x6E00,  # CLA not supported
    )
)
# 63 Cx: a wrong PIN or PUK with x tries left (never 0: that is 69 83), or VERIFY without data.
PIN_TRIES_WORDS = frozenset(0x63C0 | n for n in range(1, max(PIN_TRIES, PUK_TRIES) + 1))
VALID_STATUS_WORDS = CARD_STATUS_WORDS | PIN_TRIES_WORDS
WITH_DATA = frozenset((0x9000, 0x6282))
"""Only success and a short read carry data; every refusal is the bare status word."""

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
    assert len(response) >= 2, response.hex()
    sw = int.from_bytes(response[-2:], "big")
    assert sw in VALID_STATUS_WORDS, f"status word {sw:04X} is not one the card answers"
    assert sw in WITH_DATA or len(response) == 2, f"{sw:04X} with data: {response.hex()}"


@pytest.mark.parametrize(
    "response",
    [
        "6F00",
        "9001",
        "9100",
        "6300",
        "63C0",
        "63CB",
        "6100",
        "6C10",
        "6981",
        "0102",
        "90",
        "6A8000",
    ],
)
def test_the_status_word_check_rejects_what_the_card_never_answers(response: str) -> None:
    with pytest.raises(AssertionError):
        assert_valid_response(bytes.fromhex(response))


@pytest.mark.parametrize("response", ["9000", "01029000", "0102036282", "6282", "63C3", "63CA"])
def test_the_status_word_check_accepts_what_the_card_answers(response: str) -> None:
    assert_valid_response(bytes.fromhex(response))


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
def test_random_bytes_get_a_valid_status_word(card_spec: CardSpec, raw: bytes) -> None:
    card = logged_in_card(card_spec)
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
    card_spec: CardSpec, commands: list[CommandApdu]
) -> None:
    card = logged_in_card(card_spec)
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
