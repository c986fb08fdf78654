"""Activation codes: 18 digits from the HSM's RNG, Damm check digit, formats people type."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from otphsm.core.activation import (
    check_temporary_secret,
    damm_check_digit,
    format_activation_code,
    new_activation_code,
    normalise_activation_code,
)
from otphsm.core.errors import InvalidInput

codes = st.text(alphabet="0123456789", min_size=17, max_size=17).map(
    lambda body: body + damm_check_digit(body)
)


@given(codes, st.integers(0, 17), st.integers(1, 9))
def test_every_single_digit_error_is_caught(code: str, position: int, delta: int) -> None:
    wrong = code[:position] + str((int(code[position]) + delta) % 10) + code[position + 1 :]
    with pytest.raises(InvalidInput, match="typing error"):
        normalise_activation_code(wrong)


@given(codes, st.integers(0, 16))
def test_every_adjacent_transposition_is_caught(code: str, position: int) -> None:
    swapped = code[:position] + code[position + 1] + code[position] + code[position + 2 :]
    if swapped == code:
        return
    with pytest.raises(InvalidInput, match="typing error"):
        normalise_activation_code(swapped)


def test_new_codes_are_valid_distinct_and_use_every_digit() -> None:
    generated = [new_activation_code(os.urandom) for _ in range(200)]
    assert len(set(generated)) == 200
    assert all(len(c) == 18 and normalise_activation_code(c) == c for c in generated)
    assert set("".join(generated)) == set("0123456789")


def test_printed_forms_are_accepted() -> None:
    code = new_activation_code(os.urandom)
    printed = format_activation_code(code)
    assert printed.count("-") == 2 and len(printed) == 20
    assert normalise_activation_code(printed) == code
    assert normalise_activation_code(printed.replace("-", " ")) == code


@pytest.mark.parametrize("text", ["", "12345", "1234567890123456789", "12345678901234567a"])
def test_malformed_codes_are_invalid_input(text: str) -> None:
    with pytest.raises(InvalidInput):
        normalise_activation_code(text)


def test_rng_bytes_above_249_are_rejected_for_uniform_digits() -> None:
    feed = iter([bytes([255] * 32), bytes(range(32))])
    code = new_activation_code(lambda n: next(feed))
    assert code[:17] == "01234567890123456"


@pytest.mark.parametrize("secret", ["1234", "123456", "12a45", ""])
def test_temporary_secret_is_five_digits(secret: str) -> None:
    with pytest.raises(InvalidInput):
        check_temporary_secret(secret)
    assert check_temporary_secret("04711") == "04711"
