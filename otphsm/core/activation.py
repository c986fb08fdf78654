"""Activation secrets: the 18-digit activation code with a Damm check digit, and the 5-digit
temporary secret a citizen chooses. Both are stored only as HSM-keyed MACs."""

from __future__ import annotations

from collections.abc import Callable

from otphsm.core.errors import InvalidInput

ACTIVATION_CODE_DIGITS = 18
TEMPORARY_SECRET_DIGITS = 5

# Damm's totally anti-symmetric quasigroup of order 10: the check digit catches every
# single-digit error and every transposition of adjacent digits.
_DAMM = (
    (0, 3, 1, 7, 5, 9, 8, 6, 4, 2),
    (7, 0, 9, 2, 1, 5, 4, 8, 6, 3),
    (4, 2, 0, 6, 8, 7, 1, 3, 5, 9),
    (1, 7, 5, 0, 9, 8, 3, 4, 2, 6),
    (6, 1, 2, 3, 0, 4, 5, 9, 7, 8),
    (3, 6, 7, 4, 2, 0, 9, 5, 8, 1),
    (5, 8, 6, 9, 7, 2, 0, 1, 3, 4),
    (8, 9, 4, 5, 3, 6, 2, 0, 1, 7),
    (9, 4, 3, 8, 6, 1, 7, 2, 0, 5),
    (2, 5, 8, 1, 4, 3, 6, 7, 9, 0),
)


def damm_check_digit(digits: str) -> str:
    interim = 0
    for ch in digits:
        interim = _DAMM[interim][int(ch)]
    return str(interim)


def new_activation_code(random_bytes: Callable[[int], bytes]) -> str:
    """17 uniformly random digits (from the HSM's RNG) and a Damm check digit."""
    body: list[str] = []
    while len(body) < ACTIVATION_CODE_DIGITS - 1:
        for byte in random_bytes(32):
            if byte < 250 and len(body) < ACTIVATION_CODE_DIGITS - 1:  # 250 = 25 x 10: unbiased
                body.append(str(byte % 10))
    digits = "".join(body)
    return digits + damm_check_digit(digits)


def normalise_activation_code(text: str) -> str:
    """Accept the code as printed (groups separated by spaces or dashes); check its digit."""
    digits = "".join(ch for ch in text if ch not in " -")
    if len(digits) != ACTIVATION_CODE_DIGITS or not digits.isascii() or not digits.isdigit():
        raise InvalidInput(f"an activation code is {ACTIVATION_CODE_DIGITS} digits")
    if damm_check_digit(digits) != "0":
        raise InvalidInput("the activation code has a typing error (check digit mismatch)")
    return digits


def format_activation_code(digits: str) -> str:
    return "-".join(digits[i : i + 6] for i in range(0, len(digits), 6))


def check_temporary_secret(secret: str) -> str:
    if len(secret) != TEMPORARY_SECRET_DIGITS or not secret.isascii() or not secret.isdigit():
        raise InvalidInput(f"a temporary secret is exactly {TEMPORARY_SECRET_DIGITS} digits")
    return secret
