"""Fixtures for the pcsc tier: a private pcscd with a vpcd reader pair, and simulated cards
put into its readers over the vpcd transport (by the deployment harness's `insert_card`).

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
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from otphsm.simulators import deployment
from otphsm.simulators.card.pcscd import SOCKET_ENV, PcscdError, PrivatePcscd
from otphsm.simulators.card.vpcd import VirtualCard
from otphsm.simulators.deployment import InsertedCard, wait_card_state
from support.requirements import require_tool

_SOCKET_DIR_KEY = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    directory = Path(tempfile.mkdtemp(prefix="otphsm-pcsc-"))
    config.stash[_SOCKET_DIR_KEY] = directory
    deployment.use_pcscd_socket(directory / "pcscd.comm")


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
    pcscd = deployment.start_pcscd(directory / "pcscd", socket_path=os.environ[SOCKET_ENV])
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


InsertCard = Callable[..., InsertedCard]


@pytest.fixture
def insert_card(pcscd: PrivatePcscd) -> Iterator[InsertCard]:
    """`insert_card(card, slot=0, quickack=True)`: put `card` into reader `slot` and wait
    until pcscd sees it. Every card is removed (and its reader seen empty) at teardown."""
    inserted: list[InsertedCard] = []

    def insert(
        card: VirtualCard, slot: int = 0, *, quickack: bool = True, wait: bool = True
    ) -> InsertedCard:
        entry = deployment.insert_card(pcscd, card, slot, quickack=quickack, wait=False)
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
