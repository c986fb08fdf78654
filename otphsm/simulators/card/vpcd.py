"""The vpcd transport: puts a simulated card into a vsmartcard `vpcd` reader of a pcscd.

vpcd (the pcscd driver) listens on TCP; the card connects to it. "Inserting" the card is
connecting, "removing" it is closing the socket. Every message is a 2-byte big-endian length
and a payload; 1-byte payloads are control codes (`VpcdControl`), longer ones are command
APDUs, answered with data + SW1 SW2.

Debian 12's vpcd writes each message in two `send()` calls with Nagle on, so without help
each APDU waits ~44 ms for a delayed ACK. The card side avoids that by setting `TCP_QUICKACK`
before *every* `recv` (the option is not sticky).

`VpcdLink` serves one card in a background thread (`insert()` / `remove()`, or as a context
manager) or in the calling thread (`serve()`, used by `otphsm sim card insert`). When pcscd
stops, the link powers the card off and reconnects with a capped exponential backoff, so the
card reappears when pcscd comes back.

Security note: vpcd binds 0.0.0.0, so anyone who can reach its port can "insert a card". Run
private pcscd instances only on trusted hosts (see `otphsm.simulators.card.pcscd`).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
import time
from dataclasses import dataclass
from enum import IntEnum
from typing import Protocol

__all__ = [
    "DEFAULT_VPCD_PORT",
    "Backoff",
    "VirtualCard",
    "VpcdControl",
    "VpcdLink",
]

log = logging.getLogger(__name__)

DEFAULT_VPCD_PORT = 35963
_LENGTH = struct.Struct(">H")
_STATUS_NO_PRECISE_DIAGNOSIS = b"\x6f\x00"


class VirtualCard(Protocol):
    """What a transport needs from a simulated card (`CnsCard` implements it)."""

    @property
    def atr(self) -> bytes: ...

    def power_on(self) -> object: ...

    def power_off(self) -> object: ...

    def reset(self) -> object: ...

    def process(self, apdu: bytes) -> bytes:
        """Answer one command APDU with data + SW1 SW2; never raises."""
        ...


class VpcdControl(IntEnum):
    """1-byte control messages vpcd sends to the card."""

    POWER_OFF = 0x00
    POWER_ON = 0x01
    RESET = 0x02
    GET_ATR = 0x04


@dataclass(frozen=True, slots=True)
class Backoff:
    """Reconnection delays: `initial`, doubling up to `maximum`; give up after `give_up_after`
    seconds without a connection (None: keep trying until removed)."""

    initial: float = 0.02
    maximum: float = 0.5
    give_up_after: float | None = None

    def delays(self) -> list[float]:
        """The first few delays, for documentation and tests."""
        out, delay = [], self.initial
        while delay < self.maximum:
            out.append(delay)
            delay *= 2
        return [*out, self.maximum]


class _LinkClosed(Exception):
    """The peer closed the connection (pcscd stopped) or we did (card removed)."""


class VpcdLink:
    """Connects `card` to the vpcd reader listening on `host:port`."""

    def __init__(
        self,
        card: VirtualCard,
        port: int = DEFAULT_VPCD_PORT,
        host: str = "127.0.0.1",
        *,
        quickack: bool = True,
        reconnect: bool = True,
        backoff: Backoff | None = None,
        connect_timeout: float = 1.0,
    ) -> None:
        self.card = card
        self.host = host
        self.port = port
        self.quickack = quickack
        self.reconnect = reconnect
        self.backoff = backoff or Backoff()
        self.connect_timeout = connect_timeout
        self.apdu_count = 0
        self.connection_count = 0
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------

    def insert(self, wait: float | None = 5.0) -> None:
        """Start serving in a background thread; with `wait`, block until vpcd accepted the
        connection (raises `TimeoutError` if it did not within `wait` seconds)."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("the card is already inserted")
        self._stop.clear()
        self._thread = threading.Thread(
            target=self.serve, name=f"vpcd-card-{self.port}", daemon=True
        )
        self._thread.start()
        if wait is not None and not self.wait_connected(wait):
            self.remove()
            raise TimeoutError(f"vpcd on {self.host}:{self.port} did not accept the card")

    def remove(self, timeout: float = 2.0) -> None:
        """Close the connection (the reader sees the card leave) and stop serving.

        Safe to call from the card itself (inside `process`), from any thread, and twice.
        """
        self._stop.set()
        self._drop_socket()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                log.warning("vpcd card thread on port %d did not stop in %.1fs", self.port, timeout)

    def drop_connection(self) -> None:
        """Close the current connection but keep serving: the card is pulled and, with
        `reconnect`, pushed back in after the first backoff delay."""
        self._drop_socket()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait_connected(self, timeout: float) -> bool:
        """True once vpcd accepted the card; False after `timeout` or if the link gave up."""
        deadline = time.monotonic() + timeout
        while not self._connected.wait(min(0.02, max(0.0, deadline - time.monotonic()))):
            if not self.running or time.monotonic() >= deadline:
                return self._connected.is_set()
        return True

    def __enter__(self) -> VpcdLink:
        self.insert()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remove()

    # -- serving -----------------------------------------------------------------------

    def serve(self) -> None:
        """Serve until `remove()` (or, without `reconnect`, until the connection ends)."""
        while not self._stop.is_set():
            sock = self._connect_with_backoff()
            if sock is None:
                return
            try:
                self._session(sock)
            except (_LinkClosed, OSError) as exc:
                log.debug("vpcd link on port %d ended: %s", self.port, exc)
            finally:
                self._connected.clear()
                self._drop_socket()
                self.card.power_off()
            if not self.reconnect:
                return

    def _connect_with_backoff(self) -> socket.socket | None:
        delay = self.backoff.initial
        started = time.monotonic()
        while not self._stop.is_set():
            try:
                sock = socket.create_connection((self.host, self.port), self.connect_timeout)
            except OSError as exc:
                waited = time.monotonic() - started
                limit = self.backoff.give_up_after
                if limit is not None and waited >= limit:
                    log.warning("vpcd on port %d unreachable for %.1fs: %s", self.port, waited, exc)
                    return None
                self._stop.wait(delay)
                delay = min(delay * 2, self.backoff.maximum)
                continue
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if self._stop.is_set():
                    sock.close()
                    return None
                self._sock = sock
            self.connection_count += 1
            self._connected.set()
            return sock
        return None

    def _drop_socket(self) -> None:
        with self._lock:
            sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def _recv_exactly(self, sock: socket.socket, count: int) -> bytes:
        buf = bytearray()
        while len(buf) < count:
            if self.quickack:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
            chunk = sock.recv(count - len(buf))
            if not chunk:
                raise _LinkClosed("connection closed")
            buf += chunk
        return bytes(buf)

    def _session(self, sock: socket.socket) -> None:
        while True:
            (length,) = _LENGTH.unpack(self._recv_exactly(sock, _LENGTH.size))
            message = self._recv_exactly(sock, length)
            answer = self._handle(message)
            if answer is not None:
                sock.sendall(_LENGTH.pack(len(answer)) + answer)

    def _handle(self, message: bytes) -> bytes | None:
        if len(message) == 1:
            return self._control(message[0])
        if not message:
            return None
        self.apdu_count += 1
        try:
            answer = self.card.process(message)
        except Exception:  # the card must never take the link down
            log.exception("simulated card raised on %s", message.hex())
            return _STATUS_NO_PRECISE_DIAGNOSIS
        if len(answer) > 0xFFFF:
            log.error("simulated card answer too long for vpcd: %d bytes", len(answer))
            return _STATUS_NO_PRECISE_DIAGNOSIS
        return answer

    def _control(self, code: int) -> bytes | None:
        if code == VpcdControl.GET_ATR:
            return self.card.atr
        if code == VpcdControl.POWER_ON:
            self.card.power_on()
        elif code == VpcdControl.POWER_OFF:
            self.card.power_off()
        elif code == VpcdControl.RESET:
            self.card.reset()
        else:
            log.debug("unknown vpcd control byte %#04x ignored", code)
        return None
