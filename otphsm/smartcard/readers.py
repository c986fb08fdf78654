"""The card-reader port: the readers a station (`otphsm.client.station`) or the server itself
(a kiosk: AuthoriseWithLocalCard, WatchCards) reads cards from. `PcscReaders` is the PC/SC
implementation; tests plug in simulated readers in process.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol

from otphsm.smartcard.pcsc import CardEvent, CardEventKind, PcscConnection, PcscContext
from otphsm.smartcard.transport import CardTransport

POLL_SECONDS = 0.25


@dataclass(frozen=True, slots=True)
class ReaderStatus:
    name: str
    card_present: bool


class LocalReaders(Protocol):
    def statuses(self) -> list[ReaderStatus]:
        """Every reader, and whether it holds a card."""
        ...

    def wait_for_card(self, reader: str, seconds: float) -> str:
        """The name of a reader whose name contains `reader` (any when empty) that holds a
        card, waiting up to `seconds`; then raises `NoCard` (readers, no card) or `NoReader`."""
        ...

    def connect(self, reader: str) -> AbstractContextManager[CardTransport]:
        """A connection to the card in the first reader whose name contains `reader` (any
        reader when empty); raises a `SmartcardError` (NoReader, NoCard, ...)."""
        ...

    def events(
        self, reader: str, *, include_present: bool, stop: threading.Event, max_seconds: float
    ) -> Iterator[CardEvent]:
        """Insertions and removals until `stop` is set or `max_seconds` (0: no limit) pass."""
        ...


class PcscReaders:
    """The readers pcscd knows. Each call opens its own PC/SC context."""

    def __init__(self, transmit_timeout: float = 10.0) -> None:
        self._timeout = transmit_timeout

    def statuses(self) -> list[ReaderStatus]:
        with PcscContext() as context:
            return [ReaderStatus(name, context.card_present(name)) for name in context.readers()]

    def wait_for_card(self, reader: str, seconds: float) -> str:
        with PcscContext() as context:
            return context.wait_for_card(reader or None, seconds)

    def connect(self, reader: str) -> AbstractContextManager[CardTransport]:
        with PcscContext() as context:
            name = context.find_reader(reader or None)
        return PcscConnection(name, timeout=self._timeout)

    def events(
        self, reader: str, *, include_present: bool, stop: threading.Event, max_seconds: float
    ) -> Iterator[CardEvent]:
        """Polls reader presence every POLL_SECONDS, so `stop` is noticed promptly even when
        no card moves (PcscContext.events only returns on an event)."""
        deadline = time.monotonic() + max_seconds if max_seconds else None
        present: dict[str, bool] = {}
        first = True
        with PcscContext() as context:
            while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
                names = [n for n in context.readers() if not reader or reader in n]
                for gone in set(present) - set(names):
                    if present.pop(gone):
                        yield CardEvent(CardEventKind.REMOVED, gone)
                for name in names:
                    now = context.card_present(name)
                    before = present.get(name)
                    present[name] = now
                    # A reader seen for the first time after the start counts as an insertion.
                    report_new = include_present if first else True
                    if now and (before is False or (before is None and report_new)):
                        yield CardEvent(CardEventKind.INSERTED, name)
                    elif not now and before:
                        yield CardEvent(CardEventKind.REMOVED, name)
                first = False
                stop.wait(POLL_SECONDS)
