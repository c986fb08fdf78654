"""CNS file map facts, ATR decoding, EF_IDCarta and EF_DatiPersonali codecs (pure)."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest

from otphsm.smartcard.cns_files import (
    ABSENT_PATHS,
    CNS_FILES,
    DATI_PERSONALI_SIZE,
    EF_C_CARTA,
    EF_DATI_PERSONALI,
    EF_ID_CARTA,
    MalformedCardData,
    PersonalData,
    card_date,
    cns_rsa_bits,
    encode_dati_personali,
    encode_id_carta,
    format_card_date,
    historical_bytes,
    is_cns_atr,
    pad_pin,
    parse_dati_personali,
    parse_id_carta,
    pin_reference_for_atr,
)

ATR_1_0 = bytes.fromhex("3BFF1800FFC10A31FE55006B0508C80C011101434E5310318005")
ATR_1_1 = bytes.fromhex("3BFF1800FF8131FE55006B02091617011101434E531131808D")
ATR_STINCARD_1_0 = bytes.fromhex("3BFF1800FF8131FE55006B02090303010101434E531031809D")
ATR_CIE_V1 = bytes.fromhex("3BF41800FF8131805500318000C7")

ROSSI = PersonalData(
    issuer_code="0001",
    issue_date="01012024",
    expiry_date="01012030",
    surname="ROSSI",
    given_name="MARIO",
    birth_date="01011980",
    sex="M",
    codice_fiscale="RSSMRA80A01L378S",
    birth_municipality="L378",
    residence_municipality="L378",
)
# cns-card.md §2.3, the fake example with the header counted OpenSC-style.
ROSSI_TEXT = (
    b"00005F0400010801012024080101203005ROSSI05MARIO080101198001M00"
    b"10RSSMRA80A01L378S0004L3780000"
    b"04L3780000"
)


def test_paths_of_the_files_opensc_reads() -> None:
    assert EF_ID_CARTA.hex().upper() == "3F0010001003"
    assert EF_DATI_PERSONALI.hex().upper() == "3F0011001102"
    assert EF_C_CARTA.hex().upper() == "3F0011001101"
    assert CNS_FILES["EF_KeyPub"].hex().upper() == "3F003F01"
    assert CNS_FILES["EF_DatiProcessore"].hex().upper() == "3F0010001002"
    assert not set(ABSENT_PATHS) & set(CNS_FILES.values())


@pytest.mark.parametrize(
    ("atr", "hist", "pin_ref", "bits"),
    [
        (ATR_1_0, "006B0508C80C011101434E53103180", 0x10, 1024),
        (ATR_1_1, "006B02091617011101434E53113180", 0x90, 2048),
        (ATR_STINCARD_1_0, "006B02090303010101434E53103180", 0x90, 1024),
    ],
    ids=["cps-1.0", "ts-cns-1.1", "stincard-1.0"],
)
def test_cns_atrs(atr: bytes, hist: str, pin_ref: int, bits: int) -> None:
    assert historical_bytes(atr).hex().upper() == hist
    assert is_cns_atr(atr)
    assert pin_reference_for_atr(atr) == pin_ref
    assert cns_rsa_bits(atr) == bits


def test_cie_atr_is_not_a_cns() -> None:
    assert historical_bytes(ATR_CIE_V1) == bytes.fromhex("00318000")
    assert not is_cns_atr(ATR_CIE_V1)


@pytest.mark.parametrize("atr", ["", "3B", "3BFF1800FF81", "3B8F"])
def test_truncated_atrs(atr: str) -> None:
    with pytest.raises(MalformedCardData):
        historical_bytes(bytes.fromhex(atr))
    assert not is_cns_atr(bytes.fromhex(atr))


def test_pad_pin() -> None:
    assert pad_pin("12345") == bytes.fromhex("3132333435FFFFFF")
    assert pad_pin("12345678") == b"12345678"
    with pytest.raises(ValueError):
        pad_pin("123456789")


def test_id_carta_codec() -> None:
    raw = encode_id_carta("7430010024925855")
    assert raw == b"7430010024925855"
    assert parse_id_carta(raw) == "7430010024925855"
    for bad in ("743001002492585", "743001002492585X"):
        with pytest.raises(ValueError):
            encode_id_carta(bad)
    for raw_bad in (b"743001002492585", b"74300100249258\x00\x00"):
        with pytest.raises(MalformedCardData):
            parse_id_carta(raw_bad)


def test_encoding_matches_the_reference_example_and_pads_to_400() -> None:
    raw = encode_dati_personali(ROSSI)
    assert len(raw) == DATI_PERSONALI_SIZE
    assert raw.startswith(ROSSI_TEXT)
    assert raw[len(ROSSI_TEXT) :] == bytes(DATI_PERSONALI_SIZE - len(ROSSI_TEXT))
    assert encode_dati_personali(ROSSI, padded_size=None) == ROSSI_TEXT


def test_parse_the_opensc_header_convention_padded_and_not() -> None:
    assert parse_dati_personali(encode_dati_personali(ROSSI)) == ROSSI
    assert parse_dati_personali(ROSSI_TEXT) == ROSSI


def test_parse_the_real_card_header_convention() -> None:
    whole = b"%06X" % len(ROSSI_TEXT) + ROSSI_TEXT[6:]
    assert whole.startswith(b"000065")
    assert parse_dati_personali(whole.ljust(400, b"\x00")) == ROSSI
    assert parse_dati_personali(whole) == ROSSI


def test_parse_tolerates_ff_padding_and_latin1_letters() -> None:
    accented = replace(ROSSI, surname="DELL'ORTO")
    raw = encode_dati_personali(accented, padded_size=None).ljust(300, b"\xff")
    assert parse_dati_personali(raw).surname == "DELL'ORTO"
    latin = ROSSI_TEXT.replace(b"05ROSSI", b"05ROSS\xc8")
    assert parse_dati_personali(latin).surname == "ROSSÈ"


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"", "empty"),
        (b"00005", "short header"),
        (b"00005G" + ROSSI_TEXT[6:], "non-hex header"),
        (b"000050" + ROSSI_TEXT[6:], "header matches neither convention"),
        (ROSSI_TEXT[:-3], "truncated last field"),
        (ROSSI_TEXT[:40], "missing fields"),
        (ROSSI_TEXT.replace(b"05ROSSI", b"05RO\x01SI"), "control character"),
        (ROSSI_TEXT + b"\x00\x00junk", "junk after the record"),
        (bytes(400), "all zero (an unwritten EF)"),
        (b"\xff" * 400, "all FF"),
        (ROSSI_TEXT.replace(b"05ROSSI", b"5GROSSI"), "non-hex field length"),
    ],
)
def test_malformed_personal_data(raw: bytes, why: str) -> None:
    with pytest.raises(MalformedCardData):
        parse_dati_personali(raw)


def test_encoding_refuses_what_the_format_cannot_hold() -> None:
    with pytest.raises(ValueError):
        encode_dati_personali(replace(ROSSI, residence_address="X" * 256))
    with pytest.raises(ValueError):
        encode_dati_personali(replace(ROSSI, surname="ROSSÈ"))
    with pytest.raises(ValueError):
        encode_dati_personali(replace(ROSSI, residence_address="VIA " * 60), padded_size=200)


def test_card_dates() -> None:
    assert format_card_date(dt.date(1980, 1, 2)) == "02011980"
    assert card_date("02011980") == dt.date(1980, 1, 2)
    assert card_date("") is None
    with pytest.raises(MalformedCardData):
        card_date("31021980")
