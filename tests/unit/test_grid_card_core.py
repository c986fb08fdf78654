"""Security Card maths: cell derivation and the choice of challenged cells."""

from __future__ import annotations

import hmac
import os
from collections import Counter

import pytest

from otphsm.core.errors import InvalidInput
from otphsm.core.grid_card import _pair_at, all_cells, cell_value, check_answer, choose_pair

KEY = b"k" * 32


def fn(message: bytes) -> bytes:
    return hmac.new(KEY, message, "sha256").digest()


def test_cells_are_deterministic_three_digit_and_distinct_per_key() -> None:
    cells = all_cells(fn, 50, 3)
    assert len(cells) == 50 and all(len(c) == 3 and c.isdigit() for c in cells)
    assert cells == all_cells(fn, 50, 3)
    other = all_cells(lambda m: hmac.new(b"x" * 32, m, "sha256").digest(), 50, 3)
    assert sum(a == b for a, b in zip(cells, other, strict=True)) < 5
    assert cell_value(fn, 7, 4) != cell_value(fn, 8, 4)


def test_pair_index_covers_every_pair_once() -> None:
    pairs = [_pair_at(i, 6) for i in range(15)]
    assert len(set(pairs)) == 15 and all(1 <= a < b <= 6 for a, b in pairs)


def test_pairs_are_uniform_and_never_repeat_back_to_back() -> None:
    seen: Counter[tuple[int, int]] = Counter()
    previous = None
    for _ in range(3000):
        pair = choose_pair(os.urandom, 5, previous)
        assert pair != previous
        seen[pair] += 1
        previous = pair
    assert len(seen) == 10 and min(seen.values()) > 200


@pytest.mark.parametrize("answer", ["", "12", "1234", "1a3"])
def test_answers_are_exactly_the_cell_digits(answer: str) -> None:
    with pytest.raises(InvalidInput):
        check_answer(answer, 3)
