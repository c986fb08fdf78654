"""The seam between the CNS protocol and whatever carries APDUs to a card.

`CardTransport` is implemented by the PC/SC adapter (`otphsm.smartcard.pcsc`) and by the
in-process connection to a simulated card (`otphsm.simulators.card.inprocess`); `CnsClient`
and every test of the protocol talk only to this Protocol.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class CardTransport(Protocol):
    """A connection to one powered card.

    `transmit` sends one command APDU and returns the raw response (data followed by SW1 SW2);
    it raises a `otphsm.smartcard.errors.SmartcardError` subclass when the card cannot be
    reached (removed, timed out, reader or daemon gone), never for a status word. `close`
    is idempotent and must not hang.
    """

    @property
    def atr(self) -> bytes: ...

    def transmit(self, apdu: bytes) -> bytes: ...

    def close(self) -> None: ...
