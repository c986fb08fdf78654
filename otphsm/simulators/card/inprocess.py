"""An in-process `CardTransport` straight onto a simulated card: no pcscd, no sockets.

For unit tests of the CNS protocol and of the station logic. It behaves like a PC/SC
connection where it matters to callers: the card is powered on when the connection opens and
off when it closes (so PIN state does not outlive a session), `remove()` makes later
transmits raise `CardRemoved`, and `close()` is idempotent.
"""

from __future__ import annotations

from otphsm.simulators.card.vpcd import VirtualCard
from otphsm.smartcard.errors import CardRemoved

__all__ = ["InProcessConnection"]


class InProcessConnection:
    """Implements `otphsm.smartcard.transport.CardTransport` over `card.process()`."""

    def __init__(self, card: VirtualCard, reader: str = "In-process card") -> None:
        self.card = card
        self.reader = reader
        self.transmitted: list[bytes] = []
        self.record = False
        self._open = True
        self._present = True
        card.power_on()

    @property
    def atr(self) -> bytes:
        return self.card.atr

    def transmit(self, apdu: bytes) -> bytes:
        if not self._open:
            raise CardRemoved(f"the connection to {self.reader} is closed")
        if not self._present:
            raise CardRemoved(f"the card left {self.reader}")
        if self.record:
            self.transmitted.append(bytes(apdu))
        return bytes(self.card.process(bytes(apdu)))

    def remove(self) -> None:
        """Simulate pulling the card: it loses power, later transmits raise `CardRemoved`."""
        if self._present:
            self._present = False
            self.card.power_off()

    def reset(self) -> None:
        """Warm reset, as after another program reset the card."""
        self.card.reset()

    def close(self) -> None:
        if self._open:
            self._open = False
            if self._present:
                self.card.power_off()

    def __enter__(self) -> InProcessConnection:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
