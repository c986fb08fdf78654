"""The PC/SC adapter (pyscard's low-level `smartcard.scard`): readers, waiting for a card,
insert/remove events, and `PcscConnection`, the `CardTransport` over a real reader.

This is the only module that imports pyscard, and it does so on first use, not at import.

Rules this adapter follows (see pcsc-vpcd.md):

- Every failing PC/SC call becomes a typed error from `otphsm.smartcard.errors` carrying the
  hresult. A failed transmit is diagnosed with `SCardStatus` to tell "card removed" from
  "pcscd gone" from other failures.
- A connection is always disconnected explicitly (`close()`, or the context manager), by
  default with a card reset so no verified PIN outlives the session. (pyscard's high-level
  `CardConnection` disconnects from `__del__` at interpreter exit, which deadlocks with a
  simulated card in the same process; the low-level calls used here never do that.)
- vpcd has no I/O timeout, so `SCardTransmit` can block forever on a card that stopped
  answering. With a `timeout`, each transmit runs on the connection's own daemon worker
  thread; when it does not return in time the connection raises `CardTimeout` and is
  abandoned (its context is never touched again, so other contexts keep working).
- Each connection owns its own PC/SC context, so one stuck connection blocks nothing else.
"""

from __future__ import annotations

import importlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum, IntEnum, IntFlag
from types import ModuleType
from typing import Any, TypeVar

from otphsm.smartcard.errors import (
    CARD_GONE,
    READER_GONE,
    SERVICE_GONE,
    CardRemoved,
    CardTimeout,
    MalformedCardAnswer,
    NoCard,
    NoReader,
    PcscError,
    PcscResult,
    pcsc_error,
)

__all__ = [
    "CardEvent",
    "CardEventKind",
    "Disposition",
    "PcscConnection",
    "PcscContext",
]

T = TypeVar("T")

DEFAULT_TRANSMIT_TIMEOUT = 10.0
SETTLE = 0.6
"""Seconds a failed exchange waits for pcscd to tell whether the card left (it polls ~0.4 s)."""
_POLL_SLICE = 0.25
_SHARE_SHARED = 0x2
_PROTOCOL_ANY = 0x1 | 0x2  # T=0 or T=1
_SCOPE_USER = 0x0


class ReaderState(IntFlag):
    """SCARD_STATE_* bits of SCardGetStatusChange / SCardStatus (the ones used here)."""

    CHANGED = 0x0002
    EMPTY = 0x0010
    PRESENT = 0x0020
    MUTE = 0x0200


class Disposition(IntEnum):
    """What SCardDisconnect does to the card."""

    LEAVE = 0
    RESET = 1
    UNPOWER = 2


def _scard() -> ModuleType:
    return importlib.import_module("smartcard.scard")


def _check(what: str, hresult: int) -> None:
    if hresult != PcscResult.SUCCESS:
        raise pcsc_error(what, hresult)


class CardEventKind(Enum):
    INSERTED = "inserted"
    REMOVED = "removed"


@dataclass(frozen=True, slots=True)
class CardEvent:
    kind: CardEventKind
    reader: str
    atr: bytes = b""


def _matches(reader: str, wanted: str | None) -> bool:
    return wanted is None or reader == wanted or wanted.casefold() in reader.casefold()


class PcscContext:
    """A PC/SC context (a context manager): list readers, wait for cards, watch events and
    open connections."""

    def __init__(self) -> None:
        self._scard = _scard()
        hresult, self._handle = self._scard.SCardEstablishContext(_SCOPE_USER)
        _check("cannot reach the PC/SC service", hresult)
        self._closed = False

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._scard.SCardReleaseContext(self._handle)

    def __enter__(self) -> PcscContext:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def readers(self) -> list[str]:
        """Reader names, [] when there are none."""
        hresult, names = self._scard.SCardListReaders(self._handle, [])
        if hresult & 0xFFFFFFFF == PcscResult.E_NO_READERS_AVAILABLE:
            return []
        _check("cannot list the readers", hresult)
        return list(names)

    def find_reader(self, wanted: str | None) -> str:
        """The first reader whose name contains `wanted` (any reader when None)."""
        names = self.readers()
        for name in names:
            if _matches(name, wanted):
                return name
        if not names:
            raise NoReader("no smart-card reader is connected")
        raise NoReader(f"reader: no reader's name contains it; readers: {', '.join(names)}")

    def _states(self, readers: list[str], known: dict[str, int], wait: float) -> dict[str, Any]:
        """One SCardGetStatusChange over `readers`; returns {reader: (state, atr)}."""
        query = [(name, known.get(name, 0) & ~int(ReaderState.CHANGED)) for name in readers]
        hresult, states = self._scard.SCardGetStatusChange(
            self._handle, max(0, int(wait * 1000)), query
        )
        code = hresult & 0xFFFFFFFF
        if code == PcscResult.E_TIMEOUT:
            return {name: (known.get(name, 0), b"") for name in readers}
        if code in READER_GONE:
            return {}
        _check("cannot read the reader state", code)
        return {name: (state, bytes(atr)) for name, state, atr in states}

    def card_present(self, reader: str) -> bool:
        state, _atr = self._states([reader], {}, 0).get(reader, (0, b""))
        return bool(state & ReaderState.PRESENT) and not state & ReaderState.MUTE

    def wait_for_card(self, reader: str | None = None, timeout: float = 30.0) -> str:
        """Block until a reader matching `reader` holds a card; return that reader's name.

        Raises `NoCard` (readers but no card) or `NoReader` (no matching reader) after
        `timeout` seconds, `PcscdNotRunning` if the daemon goes away.
        """
        deadline = time.monotonic() + timeout
        known: dict[str, int] = {}
        while True:
            names = [name for name in self.readers() if _matches(name, reader)]
            remaining = deadline - time.monotonic()
            wait = min(_POLL_SLICE, max(0.0, remaining))
            if names:
                states = self._states(names, known, wait)
                for name, (state, _atr) in states.items():
                    known[name] = state
                    if state & ReaderState.PRESENT and not state & ReaderState.MUTE:
                        return name
            else:
                time.sleep(wait)
            if time.monotonic() >= deadline:
                if names:
                    raise NoCard(f"no card was inserted in {', '.join(names)} within {timeout:g}s")
                wanted = "matching " if reader else ""
                raise NoReader(f"no {wanted}reader appeared within {timeout:g}s")

    def events(
        self,
        reader: str | None = None,
        timeout: float | None = None,
        initial: bool = True,
    ) -> Iterator[CardEvent]:
        """Yield insert/remove events for readers matching `reader`, until `timeout` seconds
        have passed (None: forever; close the generator to stop). With `initial`, a card
        already present at the start is reported as INSERTED."""
        deadline = None if timeout is None else time.monotonic() + timeout
        present: dict[str, bool] = {}
        known: dict[str, int] = {}
        first = True
        while deadline is None or time.monotonic() < deadline:
            names = [name for name in self.readers() if _matches(name, reader)]
            for gone in set(present) - set(names):
                if present.pop(gone):
                    yield CardEvent(CardEventKind.REMOVED, gone)
                known.pop(gone, None)
            remaining = _POLL_SLICE if deadline is None else deadline - time.monotonic()
            wait = 0.0 if first else min(_POLL_SLICE, max(0.0, remaining))
            if not names:
                time.sleep(wait)
                first = False
                continue
            for name, (state, atr) in self._states(names, known, wait).items():
                known[name] = state
                now = bool(state & ReaderState.PRESENT) and not state & ReaderState.MUTE
                before = present.get(name)
                present[name] = now
                if now and (before is False or (before is None and initial)):
                    yield CardEvent(CardEventKind.INSERTED, name, atr)
                elif not now and before:
                    yield CardEvent(CardEventKind.REMOVED, name)
            first = False

    def connect(
        self, reader: str, *, timeout: float | None = DEFAULT_TRANSMIT_TIMEOUT
    ) -> PcscConnection:
        """Connect (shared, T=0 or T=1) to the card in `reader`."""
        return PcscConnection(reader, timeout=timeout)


class _Worker:
    """A daemon thread that runs calls one at a time, so the caller can stop waiting."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()

    def call(self, fn: Callable[[], T], timeout: float) -> T:
        done = threading.Event()
        box: list[Any] = []

        def job() -> None:
            try:
                box.append((True, fn()))
            except BaseException as exc:  # handed back to the caller
                box.append((False, exc))
            done.set()

        self._jobs.put(job)
        if not done.wait(timeout):
            raise TimeoutError
        ok, value = box[0]
        if not ok:
            raise value
        result: T = value
        return result

    def stop(self) -> None:
        self._jobs.put(None)


class PcscConnection:
    """A `CardTransport` over one PC/SC reader (its own context; a context manager)."""

    def __init__(
        self,
        reader: str,
        *,
        timeout: float | None = DEFAULT_TRANSMIT_TIMEOUT,
        disposition_on_close: Disposition = Disposition.RESET,
    ) -> None:
        self._scard = _scard()
        self.reader = reader
        self.timeout = timeout
        self._disposition = disposition_on_close
        self._worker: _Worker | None = None
        self._abandoned = False
        self._card: Any = None
        self._context: Any = None
        self.protocol = 0
        hresult, context = self._scard.SCardEstablishContext(_SCOPE_USER)
        _check("cannot reach the PC/SC service", hresult)
        self._context = context
        try:
            hresult, card, protocol = self._scard.SCardConnect(
                self._context, reader, _SHARE_SHARED, _PROTOCOL_ANY
            )
            if hresult & 0xFFFFFFFF == PcscResult.W_UNRESPONSIVE_CARD:
                raise MalformedCardAnswer(
                    f"the card in {reader} gives no valid answer to reset", hresult=hresult
                )
            _check(f"cannot connect to the card in {reader}", hresult)
            self._card, self.protocol = card, int(protocol)
            hresult, _name, _state, _protocol, atr = self._scard.SCardStatus(self._card)
            _check(f"cannot read the status of the card in {reader}", hresult)
            self._atr = bytes(atr)
        except BaseException:
            self.close()
            raise
        if timeout is not None:
            self._worker = _Worker(f"pcsc-{reader}")

    @property
    def atr(self) -> bytes:
        return self._atr

    def transmit(self, apdu: bytes) -> bytes:
        if self._card is None:
            raise CardRemoved(f"the connection to {self.reader} is closed")
        command = list(apdu)
        card = self._card

        def call() -> tuple[int, list[int]]:
            hresult, response = self._scard.SCardTransmit(card, self.protocol, command)
            return int(hresult), list(response)

        if self._worker is None or self.timeout is None:
            hresult, response = call()
        else:
            try:
                hresult, response = self._worker.call(call, self.timeout)
            except TimeoutError:
                self._abandon()
                raise CardTimeout(
                    f"the card in {self.reader} did not answer within {self.timeout:g}s"
                ) from None
        if hresult == PcscResult.SUCCESS and len(response) >= 2:
            return bytes(response)
        # A card that vanishes mid-APDU yields "success" with no bytes, then "transaction
        # failed" until pcscd's presence poll (~0.4 s) notices: let that settle first.
        gone = self._card_gone(hresult)
        if gone is not None:
            raise gone
        if hresult != PcscResult.SUCCESS:
            raise pcsc_error(f"exchange with the card in {self.reader} failed", hresult)
        return bytes(response)  # a short answer from a present card: the caller judges it

    def _card_gone(self, hresult: int) -> PcscError | None:
        """The error if the card or pcscd went away, waiting up to `SETTLE` seconds for
        pcscd to notice; None if the card is still there."""
        code = hresult & 0xFFFFFFFF
        if code in SERVICE_GONE or code in CARD_GONE:
            return pcsc_error(f"card in {self.reader}", code)
        deadline = time.monotonic() + SETTLE
        while True:
            status, _name, state, _protocol, _atr = self._scard.SCardStatus(self._card)
            status &= 0xFFFFFFFF
            if status in SERVICE_GONE or status in CARD_GONE or status in READER_GONE:
                return pcsc_error(f"card in {self.reader}", status)
            if status == PcscResult.SUCCESS and not state & ReaderState.PRESENT:
                return CardRemoved(f"the card left {self.reader}", hresult=code)
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.02)

    def _abandon(self) -> None:
        """Forget a connection whose worker is stuck in the PC/SC library."""
        self._abandoned = True
        self._card = None
        if self._worker is not None:
            self._worker.stop()
            self._worker = None

    def close(self) -> None:
        """Disconnect (resetting the card by default, so no PIN state outlives the session)
        and release the context. Never blocks on an abandoned connection."""
        if self._abandoned:
            return
        card, self._card = self._card, None
        if card is not None:
            self._scard.SCardDisconnect(card, self._disposition)
        if self._worker is not None:
            self._worker.stop()
            self._worker = None
        context, self._context = self._context, None
        if context is not None:
            self._scard.SCardReleaseContext(context)

    def __enter__(self) -> PcscConnection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
