"""The Security Card (OTP PAT's grid card): numbered cells whose values the HSM derives from a
per-card key and the cell number. Values are computed to print the card and to check an
answer; they are never stored."""

from __future__ import annotations

from collections.abc import Callable

from otphsm.core.errors import InvalidInput
from otphsm.core.otp import HmacFn

DEFAULT_CELLS = 50
DEFAULT_CELL_DIGITS = 3
_CELL_DOMAIN = b"otphsm-grid-cell:"


def cell_value(hmac_fn: HmacFn, cell: int, digits: int = DEFAULT_CELL_DIGITS) -> str:
    """RFC 4226-style dynamic truncation of HMAC(card key, domain ‖ cell), to `digits`."""
    mac = hmac_fn(_CELL_DOMAIN + cell.to_bytes(2, "big"))
    offset = mac[-1] & 0x0F
    binary = int.from_bytes(mac[offset : offset + 4], "big") & 0x7FFF_FFFF
    return str(binary % 10**digits).zfill(digits)


def all_cells(hmac_fn: HmacFn, cells: int, digits: int) -> list[str]:
    """Every cell, 1..cells, for printing."""
    return [cell_value(hmac_fn, n, digits) for n in range(1, cells + 1)]


def choose_pair(
    random_bytes: Callable[[int], bytes], cells: int, previous: tuple[int, int] | None
) -> tuple[int, int]:
    """Two distinct cells, uniformly, never the same pair as the previous challenge."""
    pairs = cells * (cells - 1) // 2
    limit = (1 << 32) - (1 << 32) % pairs
    while True:
        draw = int.from_bytes(random_bytes(4), "big")
        if draw >= limit:
            continue
        pair = _pair_at(draw % pairs, cells)
        if pair != previous:
            return pair


def check_answer(answer: str, digits: int) -> str:
    if len(answer) != digits or not answer.isascii() or not answer.isdigit():
        raise InvalidInput(f"a cell value is exactly {digits} digits")
    return answer


def _pair_at(index: int, cells: int) -> tuple[int, int]:
    """The index-th pair (a, b), 1 <= a < b <= cells, in lexicographic order."""
    first = 1
    while index >= cells - first:
        index -= cells - first
        first += 1
    return first, first + 1 + index
