"""ISO 7816-4 status words a CNS card answers, and their meaning as data."""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from types import MappingProxyType


class StatusWord(IntEnum):
    OK = 0x9000
    END_OF_FILE = 0x6282
    VERIFICATION_FAILED = 0x6300
    WRONG_LENGTH = 0x6700
    LAST_COMMAND_OF_CHAIN_EXPECTED = 0x6883
    CHAINING_NOT_SUPPORTED = 0x6884
    COMMAND_INCOMPATIBLE_WITH_FILE = 0x6981
    SECURITY_STATUS_NOT_SATISFIED = 0x6982
    AUTH_METHOD_BLOCKED = 0x6983
    REFERENCE_DATA_NOT_USABLE = 0x6984
    CONDITIONS_NOT_SATISFIED = 0x6985
    NO_CURRENT_EF = 0x6986
    WRONG_DATA = 0x6A80
    FUNCTION_NOT_SUPPORTED = 0x6A81
    FILE_NOT_FOUND = 0x6A82
    INCORRECT_P1_P2 = 0x6A86
    REFERENCED_DATA_NOT_FOUND = 0x6A88
    WRONG_P1_P2 = 0x6B00
    INS_NOT_SUPPORTED = 0x6D00
    CLA_NOT_SUPPORTED = 0x6E00
    NO_PRECISE_DIAGNOSIS = 0x6F00


PIN_TRIES_FAMILY = 0x63C0
BYTES_AVAILABLE_FAMILY = 0x6100
WRONG_LE_FAMILY = 0x6C00

SW_DESCRIPTIONS: Mapping[int, str] = MappingProxyType(
    {
        StatusWord.OK: "success",
        StatusWord.END_OF_FILE: "end of file reached before Le bytes were read",
        StatusWord.VERIFICATION_FAILED: "verification failed",
        StatusWord.WRONG_LENGTH: "wrong length",
        StatusWord.LAST_COMMAND_OF_CHAIN_EXPECTED: "last command of the chain expected",
        StatusWord.CHAINING_NOT_SUPPORTED: "command chaining not supported",
        StatusWord.COMMAND_INCOMPATIBLE_WITH_FILE: "command incompatible with the file structure",
        StatusWord.SECURITY_STATUS_NOT_SATISFIED: "security status not satisfied (PIN required)",
        StatusWord.AUTH_METHOD_BLOCKED: "authentication method blocked (PIN blocked)",
        StatusWord.REFERENCE_DATA_NOT_USABLE: "referenced data not usable",
        StatusWord.CONDITIONS_NOT_SATISFIED: "conditions of use not satisfied",
        StatusWord.NO_CURRENT_EF: "command not allowed: no current elementary file",
        StatusWord.WRONG_DATA: "incorrect data field",
        StatusWord.FUNCTION_NOT_SUPPORTED: "function not supported",
        StatusWord.FILE_NOT_FOUND: "file or application not found",
        StatusWord.INCORRECT_P1_P2: "incorrect parameters P1-P2",
        StatusWord.REFERENCED_DATA_NOT_FOUND: "referenced data not found",
        StatusWord.WRONG_P1_P2: "wrong parameters (offset beyond end of file)",
        StatusWord.INS_NOT_SUPPORTED: "instruction not supported",
        StatusWord.CLA_NOT_SUPPORTED: "class not supported",
        StatusWord.NO_PRECISE_DIAGNOSIS: "no precise diagnosis",
    }
)


def pin_tries_sw(tries_left: int) -> int:
    """The `63 Cx` status word for a failed verification with `tries_left` attempts remaining."""
    if not 0 <= tries_left <= 0xF:
        raise ValueError(f"tries left must be 0..15, got {tries_left}")
    return PIN_TRIES_FAMILY | tries_left


def pin_tries_left(sw: int) -> int | None:
    """x for a `63 Cx` status word, else None."""
    return sw & 0xF if sw & 0xFFF0 == PIN_TRIES_FAMILY else None


def describe(sw: int) -> str:
    """`"6A82 file or application not found"`, including the 63Cx/61xx/6Cxx families."""
    tries = pin_tries_left(sw)
    if tries is not None:
        meaning = f"wrong PIN, {tries} tries left"
    elif sw & 0xFF00 == BYTES_AVAILABLE_FAMILY:
        meaning = f"{sw & 0xFF or 256} response bytes available"
    elif sw & 0xFF00 == WRONG_LE_FAMILY:
        meaning = f"wrong Le, {sw & 0xFF or 256} bytes available"
    else:
        meaning = SW_DESCRIPTIONS.get(sw, "unknown status word")
    return f"{sw:04X} {meaning}"
