"""The Italian codice fiscale of a natural person: validation, decoding and computation.

Sixteen characters: surname (3 letters), name (3), birth year (2 digits), birth month (a
letter), birth day (2 digits, +40 for women), birthplace (Belfiore code: a letter and 3
digits), check character. When two people would get the same code the Agenzia delle Entrate
replaces digits with the letters L M N P Q R S T U V (0..9), rightmost first ("omocodia") and
recomputes the check character. An omocode is a *different* person's code, never an alias.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from dataclasses import dataclass
from datetime import date

from otphsm.core.errors import InvalidInput

LENGTH = 16

MONTH_LETTERS = "ABCDEHLMPRST"
"""January..December."""

OMOCODE_LETTERS = "LMNPQRSTUV"
"""The letters that stand for 0..9 in an omocode."""

OMOCODE_POSITIONS = (14, 13, 12, 10, 9, 7, 6)
"""0-based indexes of the digits that omocodia may replace, in the order it replaces them."""

FEMALE_DAY_OFFSET = 40

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_DIGIT_OR_OMOCODE = "[0-9LMNPQRSTUV]"
_FORMAT = re.compile(
    rf"[A-Z]{{6}}{_DIGIT_OR_OMOCODE}{{2}}[{MONTH_LETTERS}]{_DIGIT_OR_OMOCODE}{{2}}"
    rf"[A-Z]{_DIGIT_OR_OMOCODE}{{3}}[A-Z]"
)

# Check-character values of each character at an odd (1st, 3rd, ...) or even position.
# A digit and the letter of the same rank (0/A, 1/B, ... 9/J) share a value.
_ODD_VALUES_BY_RANK = (
    1,
    0,
    5,
    7,
    9,
    13,
    15,
    17,
    19,
    21,
    2,
    4,
    18,
    20,
    11,
    3,
    6,
    8,
    12,
    14,
    16,
    10,
    22,
    25,
    24,
    23,
)
_ODD_VALUES = {
    **{letter: _ODD_VALUES_BY_RANK[rank] for rank, letter in enumerate(_ALPHABET)},
    **{str(digit): _ODD_VALUES_BY_RANK[digit] for digit in range(10)},
}
_EVEN_VALUES = {
    **{letter: rank for rank, letter in enumerate(_ALPHABET)},
    **{str(digit): digit for digit in range(10)},
}

_VOWELS = frozenset("AEIOU")


class Sex(enum.StrEnum):
    MALE = "M"
    FEMALE = "F"


class CodiceFiscaleProblem(enum.StrEnum):
    BAD_LENGTH = "bad length"
    BAD_FORMAT = "bad format"
    BAD_CHECK_CHARACTER = "bad check character"
    BAD_BIRTH_DATE = "impossible birth date"


class InvalidCodiceFiscale(InvalidInput):
    def __init__(self, problem: CodiceFiscaleProblem, detail: str) -> None:
        super().__init__(f"invalid codice fiscale: {problem}: {detail}")
        self.problem = problem


@dataclass(frozen=True)
class CodiceFiscale:
    """A validated codice fiscale and what it says about its holder."""

    code: str
    """Normalised (upper case, no surrounding blanks), exactly as assigned."""

    @property
    def is_omocode(self) -> bool:
        return self.code != self.base_code

    @property
    def base_code(self) -> str:
        """The code with every omocode letter turned back into its digit and the check
        character recomputed: the code the namesake without omocodia holds."""
        restored = restore_digits(self.code)[:15]
        return restored + check_character(restored)

    @property
    def sex(self) -> Sex:
        return Sex.FEMALE if self._day_field > FEMALE_DAY_OFFSET else Sex.MALE

    @property
    def birth_day(self) -> int:
        day_field = self._day_field
        return day_field - FEMALE_DAY_OFFSET if day_field > FEMALE_DAY_OFFSET else day_field

    @property
    def birth_month(self) -> int:
        return MONTH_LETTERS.index(self.code[8]) + 1

    @property
    def birth_year_in_century(self) -> int:
        return int(restore_digits(self.code)[6:8])

    @property
    def birthplace(self) -> str:
        """The Belfiore (cadastral) code: a municipality, or `Z` + 3 digits for a foreign state."""
        return restore_digits(self.code)[11:15]

    @property
    def born_abroad(self) -> bool:
        return self.birthplace.startswith("Z")

    def birth_date(self, *, today: date) -> date:
        """The latest possible birth date not after `today` in this century or the last (the
        code gives only two year digits)."""
        this_century = today.year // 100 * 100
        for century in (this_century, this_century - 100):
            candidate = _date_or_none(century + self.birth_year_in_century, self)
            if candidate is not None and candidate <= today:
                return candidate
        raise ValueError(f"{self.code} gives no birth date on or before {today}")

    @property
    def _day_field(self) -> int:
        return int(restore_digits(self.code)[9:11])


def restore_digits(code: str) -> str:
    """Turn the omocode letters at the numeric positions back into digits."""
    characters = list(code)
    for index in OMOCODE_POSITIONS:
        if characters[index] in OMOCODE_LETTERS:
            characters[index] = str(OMOCODE_LETTERS.index(characters[index]))
    return "".join(characters)


def check_character(first_fifteen: str) -> str:
    if len(first_fifteen) != LENGTH - 1:
        raise ValueError(f"the check character covers 15 characters, got {len(first_fifteen)}")
    total = sum(
        (_ODD_VALUES if index % 2 == 0 else _EVEN_VALUES)[character]
        for index, character in enumerate(first_fifteen)
    )
    return _ALPHABET[total % 26]


def validate(candidate: str) -> CodiceFiscale:
    code = candidate.strip().upper()
    if len(code) != LENGTH:
        raise InvalidCodiceFiscale(
            CodiceFiscaleProblem.BAD_LENGTH, f"{LENGTH} characters expected, got {len(code)}"
        )
    if not _FORMAT.fullmatch(code):
        raise InvalidCodiceFiscale(
            CodiceFiscaleProblem.BAD_FORMAT, "letters and digits out of their places"
        )
    expected = check_character(code[:15])
    if code[15] != expected:
        raise InvalidCodiceFiscale(
            CodiceFiscaleProblem.BAD_CHECK_CHARACTER,
            "the last character is not the check character of the first 15",
        )
    codice_fiscale = CodiceFiscale(code)
    if not any(
        _date_or_none(century + codice_fiscale.birth_year_in_century, codice_fiscale)
        for century in (1900, 2000)
    ):
        raise InvalidCodiceFiscale(
            CodiceFiscaleProblem.BAD_BIRTH_DATE,
            "the birth day and month fields give no date",
        )
    return codice_fiscale


def is_valid(candidate: str) -> bool:
    try:
        validate(candidate)
    except InvalidCodiceFiscale:
        return False
    return True


def compute(
    surname: str,
    name: str,
    birth_date: date,
    sex: Sex,
    belfiore: str,
    *,
    omocode_level: int = 0,
) -> str:
    """The codice fiscale for these personal data; `omocode_level` > 0 gives the omocode with
    that many digits substituted (rightmost first), as the Agenzia assigns them."""
    if not 0 <= omocode_level <= len(OMOCODE_POSITIONS):
        raise ValueError(f"omocode_level must be 0..{len(OMOCODE_POSITIONS)}, got {omocode_level}")
    place = belfiore.strip().upper()
    if not re.fullmatch(r"[A-Z][0-9]{3}", place):
        raise ValueError(f"a Belfiore code is a letter and three digits, got {belfiore!r}")
    day = birth_date.day + (FEMALE_DAY_OFFSET if sex is Sex.FEMALE else 0)
    characters = list(
        _surname_part(surname)
        + _name_part(name)
        + f"{birth_date.year % 100:02d}"
        + MONTH_LETTERS[birth_date.month - 1]
        + f"{day:02d}"
        + place
    )
    for index in OMOCODE_POSITIONS[:omocode_level]:
        characters[index] = OMOCODE_LETTERS[int(characters[index])]
    first_fifteen = "".join(characters)
    return first_fifteen + check_character(first_fifteen)


def _surname_part(surname: str) -> str:
    consonants, vowels = _consonants_and_vowels(surname)
    return (consonants + vowels + "XXX")[:3]


def _name_part(name: str) -> str:
    consonants, vowels = _consonants_and_vowels(name)
    if len(consonants) >= 4:
        return consonants[0] + consonants[2] + consonants[3]
    return (consonants + vowels + "XXX")[:3]


def _consonants_and_vowels(text: str) -> tuple[str, str]:
    letters = [
        character
        for character in unicodedata.normalize("NFD", text.upper())
        if character in _ALPHABET
    ]
    if not letters:
        raise ValueError(f"no letters in {text!r}")
    consonants = "".join(letter for letter in letters if letter not in _VOWELS)
    vowels = "".join(letter for letter in letters if letter in _VOWELS)
    return consonants, vowels


def _date_or_none(year: int, codice_fiscale: CodiceFiscale) -> date | None:
    try:
        return date(year, codice_fiscale.birth_month, codice_fiscale.birth_day)
    except ValueError:
        return None
