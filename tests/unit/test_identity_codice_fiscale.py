"""Codice fiscale: the vectors of cns-card.md §5 (omocodes included), errors, properties."""

from __future__ import annotations

import string
from datetime import date, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otphsm.core import codice_fiscale as cf
from otphsm.core.codice_fiscale import CodiceFiscaleProblem, InvalidCodiceFiscale, Sex
from otphsm.core.errors import InvalidInput

TODAY = date(2025, 3, 1)

# code, sex, birth date, birthplace, omocode
VECTORS = [
    ("RCCMNL83S18D969H", Sex.MALE, date(1983, 11, 18), "D969", False),
    ("CNTCHR83T41D969D", Sex.FEMALE, date(1983, 12, 1), "D969", False),
    ("RSSMRA80A01H501U", Sex.MALE, date(1980, 1, 1), "H501", False),
    ("RSSMRA80A01L378S", Sex.MALE, date(1980, 1, 1), "L378", False),
    ("BNCLRA90L55L378U", Sex.FEMALE, date(1990, 7, 15), "L378", False),
    ("RSSMRA80A01L37UP", Sex.MALE, date(1980, 1, 1), "L378", True),
    ("RSSMRA80A01L3TUB", Sex.MALE, date(1980, 1, 1), "L378", True),
    ("RSSMRA80A01LPTUX", Sex.MALE, date(1980, 1, 1), "L378", True),
]
VALID_CODES = [vector[0] for vector in VECTORS]
ALPHANUMERIC = string.ascii_uppercase + string.digits


def with_check_character(first_fifteen: str) -> str:
    return first_fifteen + cf.check_character(first_fifteen)


@pytest.mark.parametrize(("code", "sex", "born", "birthplace", "omocode"), VECTORS)
def test_vectors_validate_and_decode(
    code: str, sex: Sex, born: date, birthplace: str, omocode: bool
) -> None:
    decoded = cf.validate(code)

    assert decoded.code == code
    assert decoded.sex is sex
    assert decoded.birth_date(today=TODAY) == born
    assert decoded.birthplace == birthplace
    assert decoded.is_omocode is omocode
    assert not decoded.born_abroad
    assert cf.is_valid(code)


@pytest.mark.parametrize(
    ("level", "code"),
    [
        (0, "RSSMRA80A01L378S"),
        (1, "RSSMRA80A01L37UP"),
        (2, "RSSMRA80A01L3TUB"),
        (3, "RSSMRA80A01LPTUX"),
    ],
)
def test_compute_gives_the_omocodes_the_agenzia_assigns(level: int, code: str) -> None:
    assert (
        cf.compute("Rossi", "Mario", date(1980, 1, 1), Sex.MALE, "L378", omocode_level=level)
        == code
    )


@pytest.mark.parametrize("omocode", ["RSSMRA80A01L37UP", "RSSMRA80A01L3TUB", "RSSMRA80A01LPTUX"])
def test_omocode_restores_to_the_base_code(omocode: str) -> None:
    assert cf.validate(omocode).base_code == "RSSMRA80A01L378S"
    assert cf.restore_digits(omocode) == "RSSMRA80A01L378" + omocode[15]


def test_a_base_code_is_its_own_base() -> None:
    assert cf.validate("RSSMRA80A01L378S").base_code == "RSSMRA80A01L378S"


def test_an_omocode_in_every_position_decodes_like_the_digits() -> None:
    # All seven numeric positions substituted: year, day and birthplace digits are letters.
    code = cf.compute("Bianchi", "Laura", date(1990, 7, 15), Sex.FEMALE, "L378", omocode_level=7)
    assert code[:15] == "BNCLRAVLLRRLPTU"
    decoded = cf.validate(code)
    assert (decoded.sex, decoded.birth_date(today=TODAY), decoded.birthplace) == (
        Sex.FEMALE,
        date(1990, 7, 15),
        "L378",
    )


@pytest.mark.parametrize(
    ("surname", "name", "born", "sex", "place", "code"),
    [
        ("Bianchi", "Laura", date(1990, 7, 15), Sex.FEMALE, "L378", "BNCLRA90L55L378U"),
        ("Rossi", "Mario", date(1980, 1, 1), Sex.MALE, "H501", "RSSMRA80A01H501U"),
        ("Ricci", "Emanuele", date(1983, 11, 18), Sex.MALE, "D969", "RCCMNL83S18D969H"),
        ("Conte", "Chiara", date(1983, 12, 1), Sex.FEMALE, "D969", "CNTCHR83T41D969D"),
    ],
)
def test_compute_reproduces_the_vectors(
    surname: str, name: str, born: date, sex: Sex, place: str, code: str
) -> None:
    assert cf.compute(surname, name, born, sex, place) == code


@pytest.mark.parametrize(
    ("surname", "name", "prefix"),
    [
        ("Fo", "Al", "FOXLAX"),  # short names padded with X
        ("Rossi", "Francesco", "RSSFNC"),  # 4+ consonants in the name: 1st, 3rd, 4th
        ("D'Angelo", "Nicolò", "DNGNCL"),  # apostrophe dropped, accent stripped
        ("De Rosa", "Anna Maria", "DRSNMR"),  # blanks dropped
        ("Aiello", "Ugo", "LLAGUO"),  # consonants first, then vowels
    ],
)
def test_compute_takes_letters_by_the_rules(surname: str, name: str, prefix: str) -> None:
    code = cf.compute(surname, name, date(1970, 5, 3), Sex.MALE, "H612")
    assert code[:6] == prefix
    assert cf.is_valid(code)


def test_foreign_birthplace() -> None:
    decoded = cf.validate(cf.compute("Smith", "John", date(1975, 2, 28), Sex.MALE, "Z404"))
    assert decoded.born_abroad
    assert decoded.birthplace == "Z404"


def test_validate_normalises_case_and_surrounding_blanks() -> None:
    assert cf.validate("  rssmra80a01l378s\n").code == "RSSMRA80A01L378S"


@pytest.mark.parametrize(
    ("candidate", "problem"),
    [
        ("", CodiceFiscaleProblem.BAD_LENGTH),
        ("RSSMRA80A01L378", CodiceFiscaleProblem.BAD_LENGTH),
        ("RSSMRA80A01L378SX", CodiceFiscaleProblem.BAD_LENGTH),
        ("12345678901", CodiceFiscaleProblem.BAD_LENGTH),  # a company's partita IVA
        ("RSSMR480A01L378S", CodiceFiscaleProblem.BAD_FORMAT),  # digit among the name letters
        ("RSSMRA8AA01L378S", CodiceFiscaleProblem.BAD_FORMAT),  # A is no omocode letter
        ("RSSMRA80F01L378S", CodiceFiscaleProblem.BAD_FORMAT),  # F is no month
        ("RSSMRA80A011378S", CodiceFiscaleProblem.BAD_FORMAT),  # birthplace starts with a digit
        ("RSSMRA80A01L3785", CodiceFiscaleProblem.BAD_FORMAT),  # check character is a digit
        ("RSSMRA80A01L378-", CodiceFiscaleProblem.BAD_FORMAT),
        ("RSSMRA80A01L378T", CodiceFiscaleProblem.BAD_CHECK_CHARACTER),
        ("RSSMRA80A01L37UQ", CodiceFiscaleProblem.BAD_CHECK_CHARACTER),
        (with_check_character("RSSMRA80A32L378"), CodiceFiscaleProblem.BAD_BIRTH_DATE),
        (with_check_character("RSSMRA80A00L378"), CodiceFiscaleProblem.BAD_BIRTH_DATE),
        (with_check_character("RSSMRA80A40L378"), CodiceFiscaleProblem.BAD_BIRTH_DATE),
        (with_check_character("RSSMRA80A72L378"), CodiceFiscaleProblem.BAD_BIRTH_DATE),
        (with_check_character("RSSMRA80A81L378"), CodiceFiscaleProblem.BAD_BIRTH_DATE),
        (with_check_character("RSSMRA80B30L378"), CodiceFiscaleProblem.BAD_BIRTH_DATE),
        (with_check_character("RSSMRA81B29L378"), CodiceFiscaleProblem.BAD_BIRTH_DATE),
        (with_check_character("RSSMRA80S31L378"), CodiceFiscaleProblem.BAD_BIRTH_DATE),
    ],
)
def test_validate_names_the_problem(candidate: str, problem: CodiceFiscaleProblem) -> None:
    with pytest.raises(InvalidCodiceFiscale) as caught:
        cf.validate(candidate)
    assert caught.value.problem is problem
    assert isinstance(caught.value, InvalidInput)
    assert not cf.is_valid(candidate)


def test_leap_day_needs_a_leap_century() -> None:
    # '00' February 29th exists in 2000, not in 1900: valid, and dated 2000.
    code = with_check_character("RSSMRA00B29L378")
    assert cf.validate(code).birth_date(today=TODAY) == date(2000, 2, 29)
    with pytest.raises(ValueError, match="no birth date"):
        cf.validate(code).birth_date(today=date(1999, 12, 31))


@pytest.mark.parametrize(
    ("year_digits", "born_year"), [("80", 1980), ("05", 2005), ("25", 2025), ("26", 1926)]
)
def test_birth_date_picks_the_latest_century_not_in_the_future(
    year_digits: str, born_year: int
) -> None:
    code = with_check_character(f"RSSMRA{year_digits}A01L378")
    assert cf.validate(code).birth_date(today=TODAY) == date(born_year, 1, 1)


@pytest.mark.parametrize("code", VALID_CODES)
def test_every_single_character_change_is_rejected(code: str) -> None:
    # Within digits and within letters the table values are distinct, and the only places
    # that admit both admit L..V, whose values no digit shares, so no change survives.
    survivors = [
        changed
        for position in range(cf.LENGTH)
        for replacement in ALPHANUMERIC
        if replacement != code[position]
        and cf.is_valid(changed := code[:position] + replacement + code[position + 1 :])
    ]
    assert survivors == []


@pytest.mark.parametrize("code", VALID_CODES)
def test_swapping_adjacent_different_characters_is_mostly_caught(code: str) -> None:
    swapped = [
        code[:i] + code[i + 1] + code[i] + code[i + 2 :]
        for i in range(cf.LENGTH - 1)
        if code[i] != code[i + 1]
    ]
    caught = sum(not cf.is_valid(candidate) for candidate in swapped)
    assert caught >= len(swapped) - 2


def test_compute_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError, match="Belfiore"):
        cf.compute("Rossi", "Mario", date(1980, 1, 1), Sex.MALE, "L37")
    with pytest.raises(ValueError, match="no letters"):
        cf.compute("123", "Mario", date(1980, 1, 1), Sex.MALE, "L378")
    with pytest.raises(ValueError, match="omocode_level"):
        cf.compute("Rossi", "Mario", date(1980, 1, 1), Sex.MALE, "L378", omocode_level=8)


names = st.text(alphabet=string.ascii_letters + "àèéìòù' ", min_size=1, max_size=20).filter(
    lambda text: any(character.isascii() and character.isalpha() for character in text)
)
belfiore_codes = st.builds(
    lambda letter, number: f"{letter}{number:03d}",
    st.sampled_from(string.ascii_uppercase),
    st.integers(0, 999),
)


@given(
    surname=names,
    name=names,
    born=st.dates(date(1901, 1, 1), date(2099, 12, 31)),
    sex=st.sampled_from(Sex),
    place=belfiore_codes,
    omocode_level=st.integers(0, len(cf.OMOCODE_POSITIONS)),
    age_days=st.integers(0, 36_000),
)
def test_compute_then_validate_round_trips(
    surname: str,
    name: str,
    born: date,
    sex: Sex,
    place: str,
    omocode_level: int,
    age_days: int,
) -> None:
    code = cf.compute(surname, name, born, sex, place, omocode_level=omocode_level)
    decoded = cf.validate(code)

    assert decoded.code == code
    assert decoded.is_omocode is (omocode_level > 0)
    assert decoded.base_code == cf.compute(surname, name, born, sex, place)
    assert decoded.sex is sex
    assert decoded.birthplace == place
    assert decoded.birth_date(today=born + timedelta(days=age_days)) == born


@given(position=st.integers(0, cf.LENGTH - 1), replacement=st.sampled_from(ALPHANUMERIC))
def test_a_changed_omocode_is_rejected(position: int, replacement: str) -> None:
    code = cf.compute("Bianchi", "Laura", date(1990, 7, 15), Sex.FEMALE, "L378", omocode_level=4)
    changed = code[:position] + replacement + code[position + 1 :]
    assert cf.is_valid(changed) is (changed == code)
