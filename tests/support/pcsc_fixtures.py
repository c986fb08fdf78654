"""Fixtures for the pcsc tier: a private pcscd with a vpcd reader pair, and simulated cards
put into its readers over the vpcd transport.

libpcsclite reads `PCSCLITE_CSOCK_NAME` once per process, at the first PC/SC call, so
`pytest_configure` points it at a private path before any test runs; every private pcscd of
this pytest process binds that path (one at a time: tests that stop or restart pcscd get the
same socket back). OpenSC tools run as subprocesses and inherit it.

The cards run as threads of the test process, like the pyscard clients; every connection is
closed explicitly and every card removed at teardown (an open handle at exit would deadlock
in SCardDisconnect, see pcsc-vpcd.md).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from otphsm.simulators.card.pcscd import SOCKET_ENV, PcscdError, PrivatePcscd
from otphsm.simulators.card.vpcd import Backoff, VirtualCard, VpcdLink
from otphsm.smartcard.pcsc import PcscConnection, PcscContext
from support.requirements import require_tool

_SOCKET_DIR_KEY = pytest.StashKey[Path]()
CARD_WAIT = 5.0
"""Seconds to wait for pcscd to notice an insertion or removal (it polls every ~0.4 s)."""


def pytest_configure(config: pytest.Config) -> None:
    directory = Path(tempfile.mkdtemp(prefix="otphsm-pcsc-"))
    config.stash[_SOCKET_DIR_KEY] = directory
    os.environ[SOCKET_ENV] = str(directory / "pcscd.comm")


def pytest_unconfigure(config: pytest.Config) -> None:
    directory = config.stash.get(_SOCKET_DIR_KEY, None)
    if directory is not None:
        shutil.rmtree(directory, ignore_errors=True)


def require_pcscd() -> None:
    require_tool("pcscd", "pcscd")
    try:
        PrivatePcscd(Path(tempfile.gettempdir()), port=0).check_prerequisites()
    except PcscdError as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def private_pcscd(pytestconfig: pytest.Config) -> Iterator[PrivatePcscd]:
    """The run's private pcscd (started once)."""
    require_pcscd()
    directory = pytestconfig.stash[_SOCKET_DIR_KEY]
    pcscd = PrivatePcscd(directory / "pcscd", socket_path=os.environ[SOCKET_ENV])
    pcscd.start()
    try:
        yield pcscd
    finally:
        pcscd.stop()


@pytest.fixture
def pcscd(private_pcscd: PrivatePcscd) -> Iterator[PrivatePcscd]:
    """The private pcscd, running again after the test even if the test stopped it."""
    yield private_pcscd
    if not private_pcscd.running:
        private_pcscd.start()


def wait_card_state(reader: str, present: bool, timeout: float = CARD_WAIT) -> None:
    """Block until pcscd reports `reader` with (or without) a card."""
    deadline = time.monotonic() + timeout
    with PcscContext() as ctx:
        while ctx.card_present(reader) != present:
            if time.monotonic() > deadline:
                state = "a card" if present else "an empty reader"
                raise AssertionError(f"pcscd did not report {state} in {reader} in {timeout}s")
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


InsertCard = Callable[..., InsertedCard]


@pytest.fixture
def insert_card(pcscd: PrivatePcscd) -> Iterator[InsertCard]:
    """`insert_card(card, slot=0, quickack=True)`: put `card` into reader `slot` and wait
    until pcscd sees it. Every card is removed (and its reader seen empty) at teardown."""
    inserted: list[InsertedCard] = []

    def insert(
        card: VirtualCard, slot: int = 0, *, quickack: bool = True, wait: bool = True
    ) -> InsertedCard:
        link = VpcdLink(card, pcscd.ports[slot], quickack=quickack, backoff=Backoff(0.02, 0.2))
        link.insert(wait=CARD_WAIT)
        entry = InsertedCard(card, link, pcscd.reader_names[slot])
        inserted.append(entry)
        if wait:
            wait_card_state(entry.reader, present=True)
        return entry

    yield insert
    for entry in inserted:
        entry.link.remove()
    if pcscd.running:
        for entry in inserted:
            wait_card_state(entry.reader, present=False)


class WrappedCard:
    """A `VirtualCard` that forwards to `inner`; subclasses bend `process` to inject faults.
    `apdus` records every command APDU the card received."""

    def __init__(self, inner: VirtualCard) -> None:
        self.inner = inner
        self.apdus: list[bytes] = []

    @property
    def atr(self) -> bytes:
        return self.inner.atr

    def power_on(self) -> object:
        return self.inner.power_on()

    def power_off(self) -> object:
        return self.inner.power_off()

    def reset(self) -> object:
        return self.inner.reset()

    def process(self, apdu: bytes) -> bytes:
        self.apdus.append(bytes(apdu))
        return self.inner.process(apdu)
