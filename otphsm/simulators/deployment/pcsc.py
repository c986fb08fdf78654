"""The deployment's card readers: a private pcscd with a vpcd reader pair, and simulated cards
inserted into it over vpcd (the cards run as threads of this process).

libpcsclite reads `PCSCLITE_CSOCK_NAME` once per process, at the first PC/SC call: point it
at the private socket (`use_pcscd_socket`) before anything in this process touches PC/SC.
Child processes (`otphsm serve` with a kiosk reader) inherit it.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from otphsm.simulators.card.pcscd import SOCKET_ENV, PcscdError, PrivatePcscd
from otphsm.simulators.card.vpcd import Backoff, VirtualCard, VpcdLink
from otphsm.smartcard.pcsc import PcscConnection, PcscContext

CARD_WAIT = 5.0
"""Seconds to wait for pcscd to notice an insertion or removal (it polls every ~0.4 s)."""


def use_pcscd_socket(socket_path: Path | str) -> None:
    """Point this process's PC/SC clients (and its children) at a private pcscd."""
    os.environ[SOCKET_ENV] = str(socket_path)


def start_pcscd(directory: Path, *, socket_path: Path | str | None = None) -> PrivatePcscd:
    """A private pcscd under `directory`, this process's PC/SC clients pointed at it."""
    pcscd = PrivatePcscd(directory, socket_path=socket_path)
    use_pcscd_socket(pcscd.socket_path)
    pcscd.start()
    return pcscd


def wait_card_state(reader: str, present: bool, timeout: float = CARD_WAIT) -> None:
    """Block until pcscd reports `reader` with (or without) a card."""
    deadline = time.monotonic() + timeout
    with PcscContext() as ctx:
        while ctx.card_present(reader) != present:
            if time.monotonic() > deadline:
                state = "a card" if present else "an empty reader"
                raise PcscdError(f"pcscd did not report {state} in {reader} in {timeout}s")
            time.sleep(0.02)


@dataclass
class InsertedCard:
    card: VirtualCard
    link: VpcdLink
    reader: str

    def connect(self, timeout: float | None = 10.0) -> PcscConnection:
        return PcscConnection(self.reader, timeout=timeout)

    def remove(self, wait: bool = True) -> None:
        self.link.remove()
        if wait:
            wait_card_state(self.reader, present=False)


def insert_card(
    pcscd: PrivatePcscd,
    card: VirtualCard,
    slot: int = 0,
    *,
    quickack: bool = True,
    wait: bool = True,
    timeout: float = CARD_WAIT,
) -> InsertedCard:
    """Put `card` into reader `slot` of `pcscd`; with `wait`, until pcscd reports it there."""
    link = VpcdLink(card, pcscd.ports[slot], quickack=quickack, backoff=Backoff(0.02, 0.2))
    link.insert(wait=timeout)
    inserted = InsertedCard(card, link, pcscd.reader_names[slot])
    if wait:
        wait_card_state(inserted.reader, present=True, timeout=timeout)
    return inserted
