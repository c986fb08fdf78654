"""The CNS certificate common name `CF/CARDID.digest`."""

from __future__ import annotations

import base64
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otphsm.core.cns_identity import (
    CnsCommonName,
    MalformedCommonName,
    format_common_name,
    parse_common_name,
    personal_data_digest,
)
from otphsm.core.errors import InvalidInput

CF = "RSSMRA80A01L378S"
CARD_ID = "7430010024925855"
EMPTY_SHA1_BASE64 = "2jmj7l5rSw0yVb/vlWAYkK/YBwk="  # SHA-1 of nothing, with two '/' in it


def test_parse_keeps_slashes_and_pluses_in_the_digest() -> None:
    digest = "a/b+cd/EfatjsUqKYSrqv18O1Fl="
    parsed = parse_common_name(f"{CF}/{CARD_ID}.{digest}")
    assert parsed == CnsCommonName(codice_fiscale=CF, card_id=CARD_ID, personal_data_digest=digest)


def test_personal_data_digest_is_base64_sha1() -> None:
    assert personal_data_digest(b"") == EMPTY_SHA1_BASE64
    assert len(personal_data_digest(b"00005F04000108...")) == 28


def test_format_then_parse_round_trips_a_digest_with_slashes() -> None:
    common_name = format_common_name(CF, CARD_ID, EMPTY_SHA1_BASE64)
    assert common_name == f"{CF}/{CARD_ID}.{EMPTY_SHA1_BASE64}"
    assert parse_common_name(common_name).personal_data_digest == EMPTY_SHA1_BASE64


def test_the_codice_fiscale_is_not_validated_here() -> None:
    # Wrong check character: a shape-correct name; the certificate checks judge the CF.
    assert (
        parse_common_name(f"RSSMRA80A01L378T/{CARD_ID}.AAAA").codice_fiscale == "RSSMRA80A01L378T"
    )


@pytest.mark.parametrize(
    "common_name",
    [
        "",
        "Mario Rossi",
        f"{CF}{CARD_ID}.AAAA",  # no slash
        f"{CF}/{CARD_ID}",  # no dot
        f"{CF}/{CARD_ID}.",  # empty digest
        f"{CF}/{CARD_ID}.not base64!",
        f"{CF}/{CARD_ID}.AAA",  # bad base64 padding
        f"RSSMRA80A01L378/{CARD_ID}.AAAA",  # 15-character CF
        f"RSSMRA80A01L378SX/{CARD_ID}.AAAA",  # 17-character CF
        f"RSSMRA80A01L37-S/{CARD_ID}.AAAA",
        f"RSSMRA80A01L37ÈS/{CARD_ID}.AAAA",
        f"{CF}/743001002492585.AAAA",  # 15-character card id
        f"{CF}/74300100249258551.AAAA",  # 17-character card id
        f"{CF}/7430 10024925855.AAAA",
        f"{CF}/.{CARD_ID}.AAAA",
        f"{CF}/7430.10024925855.AAAA",  # a dot inside the card id
    ],
)
def test_malformed_names_are_refused(common_name: str) -> None:
    with pytest.raises(MalformedCommonName):
        parse_common_name(common_name)


def test_malformed_name_is_invalid_input() -> None:
    assert issubclass(MalformedCommonName, InvalidInput)


def test_format_refuses_what_parse_would_refuse() -> None:
    with pytest.raises(MalformedCommonName):
        format_common_name(CF, "123", EMPTY_SHA1_BASE64)


@given(
    digest=st.binary(min_size=20, max_size=20).map(lambda raw: base64.b64encode(raw).decode()),
    card_id=st.text(alphabet=string.digits, min_size=16, max_size=16),
)
def test_any_sha1_digest_and_card_id_round_trip(digest: str, card_id: str) -> None:
    parsed = parse_common_name(format_common_name(CF, card_id, digest))
    assert (parsed.codice_fiscale, parsed.card_id, parsed.personal_data_digest) == (
        CF,
        card_id,
        digest,
    )
