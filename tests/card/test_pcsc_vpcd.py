"""The vpcd transport against a stand-in vpcd (a TCP listener in the test): framing, control
codes, reconnection, clean removal. No pcscd needed."""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from otphsm.simulators.card.vpcd import Backoff, VpcdControl, VpcdLink

pytestmark = pytest.mark.timeout(20)

ATR = bytes.fromhex("3BFF1800FFC10A31FE55006B0508C80C011101434E5310318005")


class EchoCard:
    """Answers `data reversed + 90 00`; logs power events."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.fail = False

    @property
    def atr(self) -> bytes:
        return ATR

    def power_on(self) -> None:
        self.events.append("on")

    def power_off(self) -> None:
        self.events.append("off")

    def reset(self) -> None:
        self.events.append("reset")

    def process(self, apdu: bytes) -> bytes:
        if self.fail:
            raise RuntimeError("boom")
        return apdu[::-1] + b"\x90\x00"


class FakeVpcd:
    """The vpcd side: listens, accepts the card, sends framed messages."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self.conn: socket.socket | None = None

    def accept(self, timeout: float = 5.0) -> socket.socket:
        self.listener.settimeout(timeout)
        self.conn, _ = self.listener.accept()
        self.conn.settimeout(timeout)
        return self.conn

    def send(self, payload: bytes) -> None:
        assert self.conn is not None
        # two writes, as Debian 12's vpcd does
        self.conn.send(struct.pack(">H", len(payload)))
        self.conn.send(payload)

    def receive(self) -> bytes:
        assert self.conn is not None
        head = self._exactly(2)
        return self._exactly(struct.unpack(">H", head)[0])

    def _exactly(self, count: int) -> bytes:
        assert self.conn is not None
        data = b""
        while len(data) < count:
            chunk = self.conn.recv(count - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def exchange(self, payload: bytes) -> bytes:
        self.send(payload)
        return self.receive()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.listener.close()


@pytest.fixture
def vpcd() -> Iterator[FakeVpcd]:
    server = FakeVpcd()
    yield server
    server.close()


def test_control_codes_and_apdus(vpcd: FakeVpcd) -> None:
    card = EchoCard()
    with VpcdLink(card, vpcd.port) as link:
        vpcd.accept()
        assert vpcd.exchange(bytes([VpcdControl.GET_ATR])) == ATR
        vpcd.send(bytes([VpcdControl.POWER_ON]))
        vpcd.send(bytes([VpcdControl.RESET]))
        assert vpcd.exchange(b"\x00\xa4\x00\x0c") == b"\x0c\x00\xa4\x00\x90\x00"
        big = bytes(range(256)) * 2
        assert vpcd.exchange(b"\x00\x2a" + big) == (b"\x00\x2a" + big)[::-1] + b"\x90\x00"
        vpcd.send(bytes([VpcdControl.POWER_OFF]))
        assert vpcd.exchange(bytes([VpcdControl.GET_ATR])) == ATR  # in order, so all handled
        assert link.apdu_count == 2
    assert card.events[:3] == ["on", "reset", "off"]


def test_a_card_that_raises_answers_6f00(vpcd: FakeVpcd) -> None:
    card = EchoCard()
    card.fail = True
    with VpcdLink(card, vpcd.port):
        vpcd.accept()
        assert vpcd.exchange(b"\x00\xb0\x00\x00\x10") == b"\x6f\x00"


def test_remove_closes_the_connection(vpcd: FakeVpcd) -> None:
    card = EchoCard()
    link = VpcdLink(card, vpcd.port)
    link.insert()
    conn = vpcd.accept()
    assert link.connected
    link.remove()
    assert conn.recv(1) == b""  # the reader sees the card leave
    assert not link.running and not link.connected
    assert card.events[-1] == "off"


def test_the_card_can_remove_itself_while_answering(vpcd: FakeVpcd) -> None:
    holder: dict[str, VpcdLink] = {}

    class SelfRemoving(EchoCard):
        def process(self, apdu: bytes) -> bytes:
            holder["link"].remove()
            return b"\x90\x00"

    link = VpcdLink(SelfRemoving(), vpcd.port)
    holder["link"] = link
    link.insert()
    vpcd.accept()
    vpcd.send(b"\x00\xb0\x00\x00")
    with pytest.raises((EOFError, ConnectionResetError)):
        vpcd.receive()
    link.remove()
    assert not link.running


def test_reconnects_after_vpcd_goes_away(vpcd: FakeVpcd) -> None:
    card = EchoCard()
    with VpcdLink(card, vpcd.port, backoff=Backoff(0.01, 0.05)) as link:
        first = vpcd.accept()
        first.close()  # pcscd stopped
        second = vpcd.accept()
        assert vpcd.exchange(bytes([VpcdControl.GET_ATR])) == ATR  # served: counted
        assert link.connection_count == 2
        assert "off" in card.events
        second.close()


def test_reconnects_once_the_port_listens_again() -> None:
    server = FakeVpcd()
    port = server.port
    server.close()  # nothing listens: the card keeps trying, with backoff
    link = VpcdLink(EchoCard(), port, backoff=Backoff(0.01, 0.05))
    link.insert(wait=None)
    try:
        time.sleep(0.2)
        assert link.running and not link.connected
        listener = socket.create_server(("127.0.0.1", port))
        try:
            listener.settimeout(5)
            conn, _ = listener.accept()
            assert link.wait_connected(2)
            conn.close()
        finally:
            listener.close()
    finally:
        link.remove()


def test_gives_up_after_the_bound() -> None:
    server = FakeVpcd()
    port = server.port
    server.close()
    link = VpcdLink(EchoCard(), port, backoff=Backoff(0.01, 0.02, give_up_after=0.1))
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        link.insert(wait=2.0)
    assert time.monotonic() - started < 1.5
    assert not link.running


def test_without_reconnect_the_link_ends_with_the_connection(vpcd: FakeVpcd) -> None:
    link = VpcdLink(EchoCard(), vpcd.port, reconnect=False)
    link.insert()
    vpcd.accept().close()
    deadline = time.monotonic() + 2
    while link.running and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not link.running


def test_serve_in_the_calling_thread(vpcd: FakeVpcd) -> None:
    link = VpcdLink(EchoCard(), vpcd.port, reconnect=False)
    thread = threading.Thread(target=link.serve)
    thread.start()
    vpcd.accept()
    assert vpcd.exchange(b"\x00\x84\x00\x00\x08") == b"\x08\x00\x00\x84\x00\x90\x00"
    vpcd.conn.close()  # type: ignore[union-attr]
    thread.join(2)
    assert not thread.is_alive()


def test_backoff_delays_are_capped() -> None:
    assert Backoff(0.02, 0.5).delays() == [0.02, 0.04, 0.08, 0.16, 0.32, 0.5]
