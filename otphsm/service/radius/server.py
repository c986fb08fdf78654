"""The RADIUS server: one UDP socket, read by a thread of its own, answered by a pool of workers;
or, beside the event-loop gRPC server (`server.model`), read on that loop, which answers the
code checks itself as it does gRPC's (`otphsm.service.event_loop`), leaving to the pool only a
request for a challenge, which may wait on an SMS carrier (`handler.asks_for_a_challenge`).

Per datagram: a source that is not a declared NAS is dropped; the packet is decoded and checked
(`packets.decode`: dropped if malformed or not proven by its Message-Authenticator); a
Status-Server is answered Access-Accept while the health checks pass (else not at all, so the
NAS fails over), never cached; an Access-Request is claimed in the store by (source address,
port, identifier, request authenticator). A retransmission finds its claim there, on whichever
replica it reaches: it gets the answer kept with the claim, and is never verified a second time
(RFC 5080 §2.2.2); while the first copy is still being handled it is dropped (that one answers).
Expired claims and challenge states are purged now and then.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from otphsm.core.app.context import App
from otphsm.service.config import RadiusSection, RateLimitSection
from otphsm.service.metrics import Metrics
from otphsm.service.radius import handler, packets
from otphsm.service.radius.packets import Drop, Dropped
from otphsm.service.ratelimit import FailureRateLimiter

log = logging.getLogger("otphsm.radius")

PURGE_EVERY_SECONDS = 30.0
BACKLOG_PER_WORKER = 64
"""Datagrams waiting for a worker, at most (per worker); past that they are dropped
("overloaded"), so a flood from a declared address (UDP sources are easy to forge) cannot
grow the queue without bound. The NAS retransmits."""
POLL_SECONDS = 0.2
"""How often the reading thread looks whether it should stop."""


class RadiusServer:
    """Bound at construction (`port` is the bound port); `start`, then `stop`."""

    def __init__(
        self,
        section: RadiusSection,
        app: App,
        metrics: Metrics,
        healthy: Callable[[], bool] = lambda: True,
        *,
        reuse_port: bool = False,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        """`healthy`: whether the HSM and the store passed their last health check;
        `reuse_port`: one of several server processes sharing the port (SO_REUSEPORT);
        `loop`: the running event loop to read the socket on (None: a thread of its own)."""
        self._section = section
        self._healthy = healthy
        self._app = app
        self._metrics = metrics
        self._dictionary = packets.load_dictionary()
        self._clients: dict[str, handler.Client] = {}
        for client in section.clients:
            limits = RateLimitSection(True, client.failures_per_second, client.burst)
            limiter = FailureRateLimiter(limits, app.store, app.clock)
            declared = handler.Client(client, client.secret(), limiter)
            for address in client.addresses:
                self._clients[_normalised(address)] = declared
        family = socket.AF_INET6 if ":" in section.address else socket.AF_INET
        self._socket = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if reuse_port:  # one of several server processes sharing the port
                self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            self._socket.bind((section.address, section.port))
        except OSError:
            self._socket.close()
            raise
        self._socket.settimeout(POLL_SECONDS)
        self.port: int = self._socket.getsockname()[1]
        self._pool = ThreadPoolExecutor(section.workers, thread_name_prefix="radius")
        self._backlog = threading.BoundedSemaphore(section.workers * BACKLOG_PER_WORKER)
        self._stopping = threading.Event()
        self._reader = threading.Thread(target=self._read, name="radius-reader", daemon=True)
        self._loop = loop
        self._transport: asyncio.DatagramTransport | None = None
        self._next_purge = 0.0

    def start(self) -> None:
        if self._loop is None:
            self._reader.start()
            return
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result()

    def stop(self, grace_seconds: float) -> None:
        """Stop reading; requests being handled get `grace_seconds` to answer. Idempotent."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        if self._reader.is_alive():
            self._reader.join(POLL_SECONDS * 5)
        if self._loop is not None:
            with contextlib.suppress(RuntimeError, TimeoutError):  # the loop has stopped
                closing = asyncio.run_coroutine_threadsafe(self._unlisten(), self._loop)
                closing.result(POLL_SECONDS * 5)
        draining = threading.Thread(
            target=self._pool.shutdown, kwargs={"wait": True, "cancel_futures": True}
        )
        draining.start()
        draining.join(grace_seconds)
        self._socket.close()

    def _read(self) -> None:
        while not self._stopping.is_set():
            try:
                data, source = self._socket.recvfrom(packets.MAX_LENGTH + 1)
            except TimeoutError:
                self._purge_now_and_then()
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                raise
            client = self._declared(source)
            if client is not None:
                answer = functools.partial(self._answer, client, data, source)
                if not self._pooled(answer, client, source):
                    return
            self._purge_now_and_then()

    async def _listen(self) -> None:
        """Read the socket on the running loop (`_received`) until `stop`."""
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(
            lambda: _Datagrams(self._received), sock=self._socket
        )
        self._purge_every_now_and_then(loop)

    async def _unlisten(self) -> None:
        if self._transport is not None:
            self._transport.abort()  # closes the socket, on the loop that polls it

    def _received(self, data: bytes, source: tuple[str, int]) -> None:
        """One datagram, on the loop: a challenge's request goes to the pool, every other
        request is answered here. Whatever fails is dropped, the socket still read."""
        client = self._declared(source)
        if client is None:
            return
        try:
            request = self._decoded(client, data, source)
            if request is not None and handler.asks_for_a_challenge(request):
                self._pooled(
                    functools.partial(self._respond, client, request, source), client, source
                )
            elif request is not None:
                self._respond(client, request, source)
            self._purge_now_and_then()
        except Exception as exc:
            self._failed(exc, client)

    def _purge_every_now_and_then(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._stopping.is_set():
            return
        self._purge_now_and_then()
        loop.call_later(POLL_SECONDS, self._purge_every_now_and_then, loop)

    def _declared(self, source: tuple[str, int]) -> handler.Client | None:
        client = self._clients.get(_normalised(source[0]))
        if client is None:
            self._dropped(Drop.UNKNOWN_CLIENT, source)
        return client

    def _pooled(
        self, work: Callable[[], None], client: handler.Client, source: tuple[str, int]
    ) -> bool:
        """`work` (`client`'s datagram from `source`) handed to a worker if the backlog has
        room, else dropped as overloaded; False once the pool is shutting down."""
        if not self._backlog.acquire(blocking=False):
            self._dropped(Drop.OVERLOADED, source, client.section.name)
            return True
        try:
            self._pool.submit(self._handle, work)
        except RuntimeError:  # the pool is shutting down
            self._backlog.release()
            return False
        return True

    def _handle(self, work: Callable[[], None]) -> None:
        try:
            work()
        finally:
            self._backlog.release()

    def _answer(self, client: handler.Client, data: bytes, source: tuple[str, int]) -> None:
        request = self._decoded(client, data, source)
        if request is not None:
            self._respond(client, request, source)

    def _decoded(
        self, client: handler.Client, data: bytes, source: tuple[str, int]
    ) -> packets.AccessRequest | None:
        try:
            return packets.decode(data, client.secret, self._dictionary, source[0])
        except Dropped as dropped:
            self._dropped(dropped.reason, source, client.section.name)
            return None

    def _respond(
        self, client: handler.Client, request: packets.AccessRequest, source: tuple[str, int]
    ) -> None:
        if request.status_server:
            self._status(request, client, source)
            return
        key = f"{source[0]}|{source[1]}|{request.identifier}|{request.authenticator.hex()}"
        store = self._app.store
        now = self._app.now()
        try:
            claimed, cached = store.claim_radius_answer(
                key, now, now + self._section.answer_cache_seconds
            )
        except Exception as exc:
            self._failed(exc, client)
            return
        if not claimed:
            if cached is None:
                self._dropped(Drop.IN_PROGRESS, source, client.section.name)
                return
            self._metrics.radius_requests.labels("cached").inc()
            self._send(cached, source)
            return
        try:
            answer = handler.answer(self._app, client, request)
            raw = packets.encode(request, answer)
            store.save_radius_answer(key, raw)
        except Exception as exc:
            with contextlib.suppress(Exception):
                store.drop_radius_answer(key)
            self._failed(exc, client)
            return
        self._metrics.radius_requests.labels(answer.kind.name.lower()).inc()
        log.debug(
            "radius answer",
            extra={"fields": {"client": client.section.name, "answer": answer.kind.name}},
        )
        self._send(raw, source)

    def _status(
        self, request: packets.AccessRequest, client: handler.Client, source: tuple[str, int]
    ) -> None:
        if not self._healthy():
            self._dropped(Drop.UNHEALTHY, source, client.section.name)
            return
        answer = packets.Answer(packets.AnswerKind.ACCEPT, "otphsm is up.")
        self._metrics.radius_requests.labels("status").inc()
        self._send(packets.encode(request, answer), source)

    def _send(self, raw: bytes, source: tuple[str, int]) -> None:
        with contextlib.suppress(OSError):  # closed while stopping, or the NAS is gone
            self._socket.sendto(raw, source)

    def _dropped(self, reason: Drop, source: tuple[str, int], client: str = "") -> None:
        self._metrics.radius_dropped.labels(reason.value).inc()
        quiet = (Drop.MALFORMED, Drop.IN_PROGRESS, Drop.OVERLOADED)  # floods: the metric counts
        level = logging.DEBUG if reason in quiet else logging.WARNING
        log.log(
            level,
            "radius packet dropped",
            extra={"fields": {"reason": reason.value, "source": source[0], "client": client}},
        )

    def _failed(self, error: Exception, client: handler.Client) -> None:
        self._metrics.radius_dropped.labels(Drop.ERROR.value).inc()
        log.error(
            "radius request not answered",
            extra={"fields": {"client": client.section.name, "error": type(error).__name__}},
        )

    def _purge_now_and_then(self) -> None:
        now = time.monotonic()
        if now < self._next_purge:
            return
        self._next_purge = now + PURGE_EVERY_SECONDS
        with contextlib.suppress(RuntimeError):
            self._pool.submit(self._purge)

    def _purge(self) -> None:
        try:
            self._app.store.purge_radius(self._app.now())
        except Exception as exc:
            log.warning(
                "expired radius states not purged", extra={"fields": {"error": type(exc).__name__}}
            )


class _Datagrams(asyncio.DatagramProtocol):
    def __init__(self, received: Callable[[bytes, tuple[str, int]], None]) -> None:
        self._received = received

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        self._received(data, (str(addr[0]), int(addr[1])))

    def error_received(self, exc: Exception) -> None:
        """An ICMP error about an answer sent (a NAS gone): nothing to do."""


def _normalised(address: str) -> str:
    parsed = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        parsed = parsed.ipv4_mapped
    return str(parsed)
