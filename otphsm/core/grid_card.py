"""The Security Card (OTP PAT's grid card): numbered cells whose values the HSM derives from a
per-card key and the cell number. Values are computed to print the card and to check an
answer; they are never stored. The login policy (`answer_challenge`) is pure, like
`verification.verify`: the caller persists the card it returns with one conditional write."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from dataclasses import dataclass, replace

from otphsm.core.errors import FailedPrecondition, InvalidInput
from otphsm.core.otp import HmacFn
from otphsm.core.records import GridCard, GridCardState
from otphsm.core.verification import Attempts, VerificationPolicy, VerifyResult, count_failure

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


MAX_CELL_DIGITS = 6


def check_answer_shape(answer: str) -> str:
    """What any cell value looks like, for checks made before the card is known."""
    if not (0 < len(answer) <= MAX_CELL_DIGITS and answer.isascii() and answer.isdigit()):
        raise InvalidInput(f"a cell value is 1 to {MAX_CELL_DIGITS} digits, as printed")
    return answer


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


@dataclass(frozen=True, slots=True)
class GridVerdict:
    result: VerifyResult
    card: GridCard
    """The card to persist; `card is` the input when nothing changed (no write needed)."""
    retry_after: int = 0


def answer_challenge(
    card: GridCard,
    first: str,
    second: str,
    now: int,
    hmac_fn: HmacFn,
    policy: VerificationPolicy,
    *,
    own_counter: bool = True,
    wrong_ends_challenge: bool = True,
) -> GridVerdict:
    """Decide on the values typed for the pending challenge's two cells. Any answer ends the
    challenge (the next one asks another pair); a wrong one counts toward a lock, as for an
    OTP (`lock_after_failures` → `lock_seconds`, doubling up to `lock_max_seconds`). No HMAC
    is computed while locked or without an unexpired challenge. `own_counter=False` (an
    answer with an origin): the card's own lock neither refuses nor counts; the caller counts
    on the origin (`core.lockout`). `wrong_ends_challenge=False` (an origin the owner has not
    logged in from, maybe not the one that asked): a wrong answer leaves the challenge
    pending, so a stranger cannot cancel the owner's."""
    check_answer(first, card.cell_digits)
    check_answer(second, card.cell_digits)
    if card.state is not GridCardState.ACTIVE:
        return GridVerdict(VerifyResult.REVOKED, card)
    if own_counter and card.locked_until > now:
        return GridVerdict(VerifyResult.LOCKED, card, retry_after=card.locked_until - now)
    if card.challenge is None:
        raise FailedPrecondition("no pending challenge for this card: ask for one first")
    answered = replace(card, challenge=None, challenge_expires_at=0)
    if card.challenge_expires_at <= now:
        return GridVerdict(VerifyResult.EXPIRED, answered)
    cell_a, cell_b = card.challenge
    right_a = hmac.compare_digest(cell_value(hmac_fn, cell_a, card.cell_digits), first)
    right_b = hmac.compare_digest(cell_value(hmac_fn, cell_b, card.cell_digits), second)
    if right_a and right_b:
        if own_counter:
            answered = replace(answered, failures=0, lock_level=0, locked_until=0)
        return GridVerdict(VerifyResult.OK, answered)
    if not own_counter:
        return GridVerdict(VerifyResult.WRONG_CODE, answered if wrong_ends_challenge else card)
    own = Attempts(card.failures, card.lock_level, card.locked_until)
    counted, seconds = count_failure(own, now, policy)
    updated = replace(
        answered,
        failures=counted.failures,
        lock_level=counted.lock_level,
        locked_until=counted.locked_until,
    )
    return GridVerdict(VerifyResult.WRONG_CODE, updated, retry_after=seconds)
