"""The parent of the server processes of one `otphsm serve` when `server.processes` > 1.

Start-up, in order: the ports are held (`ports.reserve`: sockets bound with SO_REUSEPORT, never
listening, kept for the parent's life, so that port 0 is resolved once for every process and
another `otphsm serve` on a port in use stops with the one-line error naming the key); the
/metrics endpoint, if enabled, is served here alone, merging the processes' metrics
(`metrics.serve_merged`); the one-off work is done once (the database created or migrated, the
orphan-seed sweep, `assembly.prepare`), its HSM session closed before any process starts; then
each process is a fresh interpreter (`python -m otphsm.cli.main serve`, never a fork: PKCS#11
must not cross one) that assembles its own HSM session and store, told its place and the
concrete ports through its environment, each started once the one before serves (so no two
log in to the HSM together). "serving" is logged once every process serves; if one
cannot start (a bad file, an HSM refusing the PIN, ...), the others are stopped and the parent
exits with that process's code (its one-line error is on the shared stderr).

While serving: a process that exits is restarted after a back-off (0.5 s doubling to 30 s,
back to 0.5 s once a process ran a minute); one whose heartbeat (`workers`) is older than
max(60 s, 12 health intervals) is stuck: killed, then restarted. SIGHUP is passed on to every
process (each reloads its TLS and CRL files); SIGTERM or SIGINT too, and the parent waits
`server.grace_seconds` + 10 s for them to finish (then SIGKILL) before it exits.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from otphsm.service.assembly import assemble, prepare
from otphsm.service.config import ServiceConfig
from otphsm.service.metrics import Endpoint, process_gone, serve_merged
from otphsm.service.ports import cannot_listen, port_taken, reserve
from otphsm.service.workers import WORKER_ENV, Heartbeats, Worker, shared_directory
from otphsm.store.urls import describe_store_url

log = logging.getLogger("otphsm.supervisor")

POLL_SECONDS = 0.2
STOP_MARGIN_SECONDS = 10.0
BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
STEADY_SECONDS = 60.0
"""A process that ran this long before it exited is restarted after the first delay again."""
STUCK_CHECKS = 12
STUCK_MIN_SECONDS = 60.0
SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


@dataclass
class Slot:
    """One place in the set: its current process, if any, and its restart schedule."""

    index: int
    process: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    ready: bool = False
    failures: int = 0
    restart_at: float = 0.0


class Supervisor:
    def __init__(
        self,
        config_path: Path,
        config: ServiceConfig,
        count: int,
        *,
        env: Mapping[str, str],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config_path = config_path.resolve()
        self.config = config
        self.count = count
        self.env = dict(env)
        self.clock = clock
        self.directory = shared_directory(os.getpid())
        self.metrics_dir = self.directory / "metrics"
        self.health_dir = self.directory / "health"
        self.metrics_dir.mkdir()
        self.health_dir.mkdir()
        interval = config.server.health_interval_seconds
        self.beats = Heartbeats(self.health_dir, count, interval, clock)
        self.stuck_after = max(STUCK_MIN_SECONDS, STUCK_CHECKS * interval)
        self.slots = [Slot(index) for index in range(count)]
        self.held: list[socket.socket] = []
        self.ports: dict[str, int | None] = {}
        self.endpoint: Endpoint | None = None
        self.wake = threading.Event()
        self.received: list[signal.Signals] = []

    def hold_ports(self) -> None:
        """Hold every port the processes will share, and serve /metrics (each failure is a
        one-line error naming its key)."""
        config = self.config
        self.ports["port"] = self._hold(config.server.address, config.server.port, "server.port")
        self.ports["http_port"] = (
            self._hold(config.http.address, config.http.port, "http.port")
            if config.http.enabled
            else None
        )
        self.ports["radius_port"] = (
            self._hold(config.radius.address, config.radius.port, "radius.port", udp=True)
            if config.radius.enabled
            else None
        )
        self.ports["metrics_port"] = None
        if config.metrics.enabled:
            try:
                self.endpoint = serve_merged(
                    self.metrics_dir, config.metrics.address, config.metrics.port
                )
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise port_taken("metrics.port") from None
                raise cannot_listen("metrics.port") from None
            self.ports["metrics_port"] = self.endpoint.port

    def _hold(self, address: str, port: int, key: str, *, udp: bool = False) -> int:
        held = reserve(address, port, key, udp=udp)
        self.held.append(held)
        bound: int = held.getsockname()[1]
        return bound

    def _worker_env(self, slot: Slot) -> dict[str, str]:
        worker = Worker(slot.index, self.count, self.health_dir, os.getpid())
        overrides = {
            "OTPHSM_SERVER_PORT": self.ports["port"],
            "OTPHSM_HTTP_PORT": self.ports["http_port"],
            "OTPHSM_RADIUS_PORT": self.ports["radius_port"],
        }
        return {
            **self.env,
            **{key: str(port) for key, port in overrides.items() if port is not None},
            "OTPHSM_METRICS_ENABLED": "false",
            "PROMETHEUS_MULTIPROC_DIR": str(self.metrics_dir),
            WORKER_ENV: worker.env_value(),
        }

    def spawn(self, slot: Slot) -> None:
        argv = [sys.executable, "-m", "otphsm.cli.main", "serve", "--config"]
        slot.process = subprocess.Popen(
            [*argv, str(self.config_path)], env=self._worker_env(slot), stdin=subprocess.DEVNULL
        )
        slot.started = self.clock()
        slot.ready = False

    def on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.received.append(signal.Signals(signum))
        self.wake.set()

    def _signals(self) -> bool:
        """Handle the signals received; whether one asks to stop."""
        while self.received:
            signum = self.received.pop(0)
            log.info("signal received", extra={"fields": {"signal": signum.name}})
            if signum is not signal.SIGHUP:
                return True
            self._send(signal.SIGHUP)
        return False

    def _send(self, signum: signal.Signals) -> None:
        for slot in self.slots:
            if slot.process is not None and slot.process.poll() is None:
                slot.process.send_signal(signum)

    def start(self) -> int | None:
        """Every process started and serving, one after the other (two processes logging in to
        the HSM at the same moment can be refused by it): None; else the code to exit with (0
        when a signal asked to stop first)."""
        for slot in self.slots:
            self.spawn(slot)
            while not slot.ready:
                if self._signals():
                    return 0
                assert slot.process is not None
                code = slot.process.poll()
                if code is not None:
                    log.error(
                        "a server process could not start: stopping",
                        extra={"fields": {"process": slot.index + 1, "exit_code": code}},
                    )
                    return code if code > 0 else 1  # < 0: ended by a signal
                slot.ready = self._beating(slot)
                if not slot.ready:
                    self.wake.wait(POLL_SECONDS)
                    self.wake.clear()
        return None

    def _beating(self, slot: Slot) -> bool:
        beat = self.beats.read(slot.index)
        return slot.process is not None and beat is not None and beat[0] == slot.process.pid

    def watch(self) -> None:
        """Until a signal asks to stop: restart what exits or is stuck."""
        while not self._signals():
            now = self.clock()
            for slot in self.slots:
                self._watch(slot, now)
            self.wake.wait(POLL_SECONDS)
            self.wake.clear()

    def _watch(self, slot: Slot, now: float) -> None:
        if slot.process is None:
            if now >= slot.restart_at:
                self.spawn(slot)
            return
        fields: dict[str, object] = {"process": slot.index + 1, "pid": slot.process.pid}
        code = slot.process.poll()
        if code is not None:
            ran = now - slot.started
            slot.failures = 0 if ran >= STEADY_SECONDS else slot.failures + 1
            delay = min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** max(0, slot.failures - 1))
            log.warning(
                "server process exited: restarting",
                extra={"fields": {**fields, "exit_code": code, "restart_in_seconds": delay}},
            )
            self.beats.forget(slot.index)
            process_gone(self.metrics_dir, slot.process.pid)
            slot.process = None
            slot.restart_at = now + delay
        elif not slot.ready:
            if self._beating(slot):
                slot.ready = True
                log.info("server process serving again", extra={"fields": fields})
        elif (beat := self.beats.read(slot.index)) is not None and beat[1] > self.stuck_after:
            log.error(
                "server process stuck: killing it",
                extra={"fields": {**fields, "seconds_since_health_check": round(beat[1])}},
            )
            slot.process.kill()

    def stop(self) -> None:
        """SIGTERM to every process; SIGKILL to those still running after the grace period
        and a margin."""
        self._send(signal.SIGTERM)
        deadline = self.clock() + self.config.server.grace_seconds + STOP_MARGIN_SECONDS
        for slot in self.slots:
            if slot.process is None:
                continue
            try:
                slot.process.wait(max(0.0, deadline - self.clock()))
            except subprocess.TimeoutExpired:
                log.error("server process did not stop: killing it", extra={"fields": {}})
                slot.process.kill()
                slot.process.wait()

    def close(self) -> None:
        for held in self.held:
            held.close()
        if self.endpoint is not None:
            self.endpoint.close()
        shutil.rmtree(self.directory, ignore_errors=True)


def supervise(config_path: Path, config: ServiceConfig, count: int) -> int:
    """`otphsm serve` with `count` server processes; returns the exit code."""
    supervisor = Supervisor(config_path, config, count, env=os.environ)
    previous = {sig: signal.signal(sig, supervisor.on_signal) for sig in SIGNALS}
    try:
        supervisor.hold_ports()
        assembly = assemble(config)
        prepare(assembly, config)  # closes the assembly if it fails
        assembly.close()
        code = supervisor.start()
        if code is not None:
            return code
        fields = {
            "address": config.server.address,
            **supervisor.ports,
            "tls": not config.server.insecure,
            "store": describe_store_url(config.store.url),
            "processes": count,
        }
        log.info("serving", extra={"fields": fields})
        supervisor.watch()
        return 0
    finally:
        supervisor.stop()
        supervisor.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info("stopped")
