"""Typed errors of the station-side smart-card layer.

Each error belongs to one of the `otphsm.core.errors` categories and carries the raw device
code it came from: `hresult` (a PC/SC return code) or `sw` (a card status word). The messages
are written for a technician at a counter.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import IntEnum
from types import MappingProxyType

from otphsm.core.errors import DeviceRefused, DeviceUnavailable, InvalidInput, OtpHsmError
from otphsm.smartcard.status_words import describe


class PcscResult(IntEnum):
    """The PC/SC return codes the adapter tells apart (winscard / pcsc-lite values)."""

    SUCCESS = 0x00000000
    F_INTERNAL_ERROR = 0x80100001
    E_CANCELLED = 0x80100002
    E_INVALID_HANDLE = 0x80100003
    E_UNKNOWN_READER = 0x80100009
    E_TIMEOUT = 0x8010000A
    E_SHARING_VIOLATION = 0x8010000B
    E_NO_SMARTCARD = 0x8010000C
    E_PROTO_MISMATCH = 0x8010000F
    E_NOT_READY = 0x80100010
    F_COMM_ERROR = 0x80100013
    E_NOT_TRANSACTED = 0x80100016
    E_READER_UNAVAILABLE = 0x80100017
    E_NO_SERVICE = 0x8010001D
    E_SERVICE_STOPPED = 0x8010001E
    E_NO_READERS_AVAILABLE = 0x8010002E
    W_UNRESPONSIVE_CARD = 0x80100066
    W_UNPOWERED_CARD = 0x80100067
    W_RESET_CARD = 0x80100068
    W_REMOVED_CARD = 0x80100069


PCSC_DESCRIPTIONS: Mapping[int, str] = MappingProxyType(
    {
        PcscResult.SUCCESS: "success",
        PcscResult.F_INTERNAL_ERROR: "internal error in the PC/SC stack",
        PcscResult.E_CANCELLED: "cancelled",
        PcscResult.E_INVALID_HANDLE: "invalid handle (the connection is gone)",
        PcscResult.E_UNKNOWN_READER: "unknown reader",
        PcscResult.E_TIMEOUT: "timeout",
        PcscResult.E_SHARING_VIOLATION: "the card is in exclusive use by another program",
        PcscResult.E_NO_SMARTCARD: "no card in the reader",
        PcscResult.E_PROTO_MISMATCH: "no common protocol with the card",
        PcscResult.E_NOT_READY: "the reader or card is not ready",
        PcscResult.F_COMM_ERROR: "communication error with the reader",
        PcscResult.E_NOT_TRANSACTED: "transaction failed",
        PcscResult.E_READER_UNAVAILABLE: "the reader is unavailable",
        PcscResult.E_NO_SERVICE: "the PC/SC service (pcscd) is not running",
        PcscResult.E_SERVICE_STOPPED: "the PC/SC service (pcscd) stopped",
        PcscResult.E_NO_READERS_AVAILABLE: "no reader connected",
        PcscResult.W_UNRESPONSIVE_CARD: "the card does not answer the reset",
        PcscResult.W_UNPOWERED_CARD: "the card is not powered",
        PcscResult.W_RESET_CARD: "the card was reset by another program",
        PcscResult.W_REMOVED_CARD: "the card was removed",
    }
)


def describe_hresult(hresult: int) -> str:
    """`"0x8010001D the PC/SC service (pcscd) is not running"`."""
    code = hresult & 0xFFFFFFFF
    return f"0x{code:08X} {PCSC_DESCRIPTIONS.get(code, 'PC/SC error')}"


class SmartcardError(OtpHsmError):
    """Base of the smart-card errors; `hresult` / `sw` hold the raw code when there is one."""

    def __init__(self, message: str, *, hresult: int | None = None, sw: int | None = None) -> None:
        super().__init__(message)
        self.hresult = hresult
        self.sw = sw


class PcscError(SmartcardError, DeviceUnavailable):
    """A PC/SC call failed in a way none of the more specific errors describes."""

    @classmethod
    def from_hresult(cls, what: str, hresult: int) -> PcscError:
        return cls(f"{what}: {describe_hresult(hresult)}", hresult=hresult)


class PcscdNotRunning(PcscError):
    """The PC/SC daemon cannot be reached (stopped, or libpcsclite missing)."""


class NoReader(PcscError):
    """No reader at all, or not the one asked for."""


class NoCard(PcscError):
    """The reader is empty (or stayed empty until the timeout)."""


class CardRemoved(PcscError):
    """The card left the reader (or was reset by someone else) during the session."""


class CardTimeout(SmartcardError, DeviceUnavailable):
    """The card did not answer in time; the connection is no longer usable."""


class MalformedCardAnswer(SmartcardError, DeviceUnavailable):
    """The card answered something that does not parse as what the command asks for."""


class CardStatusError(SmartcardError, DeviceRefused):
    """The card refused a command with a status word."""

    def __init__(self, message: str, *, sw: int) -> None:
        super().__init__(message, sw=sw)

    @property
    def status_word(self) -> int:
        assert self.sw is not None  # always set by __init__
        return self.sw


class WrongPin(CardStatusError):
    """VERIFY / CHANGE / UNBLOCK refused the PIN (or PUK); `tries_left` before it blocks."""

    def __init__(self, tries_left: int, *, sw: int, what: str = "PIN") -> None:
        plural = "try" if tries_left == 1 else "tries"
        super().__init__(f"wrong {what}: {tries_left} {plural} left", sw=sw)
        self.tries_left = tries_left
        self.what = what


class PinBlocked(CardStatusError):
    """The PIN (or PUK) is blocked (`69 83`)."""

    def __init__(self, *, sw: int, what: str = "PIN") -> None:
        hint = "; unblock it with the PUK (otphsm card unblock)" if what == "PIN" else ""
        super().__init__(f"the {what} is blocked{hint}", sw=sw)
        self.what = what


class UnexpectedStatusWord(CardStatusError):
    """Any other status word where the protocol expects success."""

    def __init__(self, operation: str, sw: int) -> None:
        super().__init__(f"{operation}: the card answered {describe(sw)}", sw=sw)
        self.operation = operation


class UnsupportedCard(SmartcardError, DeviceRefused):
    """The card in the reader is not a CNS/CPS card (its ATR says so)."""


class InvalidPinFormat(SmartcardError, InvalidInput):
    """A PIN or PUK that the card could never accept (a CNS PIN is 5..8 ASCII digits)."""


SERVICE_GONE = frozenset({PcscResult.E_NO_SERVICE, PcscResult.E_SERVICE_STOPPED})
CARD_GONE = frozenset(
    {PcscResult.W_REMOVED_CARD, PcscResult.W_RESET_CARD, PcscResult.E_NO_SMARTCARD}
)
READER_GONE = frozenset(
    {
        PcscResult.E_NO_READERS_AVAILABLE,
        PcscResult.E_UNKNOWN_READER,
        PcscResult.E_READER_UNAVAILABLE,
    }
)


def pcsc_error(what: str, hresult: int) -> PcscError:
    """The typed error for a failed PC/SC call."""
    code = hresult & 0xFFFFFFFF
    if code in SERVICE_GONE:
        return PcscdNotRunning.from_hresult(what, code)
    if code in READER_GONE:
        return NoReader.from_hresult(what, code)
    if code == PcscResult.E_NO_SMARTCARD:
        return NoCard.from_hresult(what, code)
    if code in CARD_GONE:
        return CardRemoved.from_hresult(what, code)
    return PcscError.from_hresult(what, code)
