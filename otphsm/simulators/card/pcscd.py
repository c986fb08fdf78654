"""A private pcscd with one vpcd reader pair, for tests and development.

pcscd 1.9.9 ignores `PCSCLITE_CSOCK_NAME`, but it accepts systemd-style socket activation
without systemd: we bind an AF_UNIX socket and hand it over as fd 3 with `LISTEN_FDS=1` and
`LISTEN_PID=<pcscd's pid>` (a `/bin/sh` shim moves the socket from stdin to fd 3 and sets
`LISTEN_PID=$$` before `exec`ing pcscd, so no `preexec_fn` runs in a threaded parent). `-c DIR`
points pcscd at a private reader.conf.d with one vpcd entry, i.e. two readers,
`Virtual PCD 00 00` on `port` and `Virtual PCD 00 01` on `port + 1`.

Clients find the daemon through `PCSCLITE_CSOCK_NAME`, which libpcsclite reads **once per
process**, at the first PC/SC call. So either set it before anything touches PC/SC (the test
suite does so in `pytest_configure`, giving each pytest process one fixed socket path that
every private pcscd of the run binds in turn), or run the clients as subprocesses with
`PrivatePcscd.env` merged into their environment (the CLI prints that).

Readiness is checked without side effects: the vpcd ports must be LISTENing in
`/proc/net/tcp` (connecting would insert a card) and the socket must answer a pcsc-lite
version request. pcscd still writes `/run/pcscd/pcscd.pid`, so `/run/pcscd` is created if
missing (as root; otherwise run inside `unshare -rm` with a tmpfs on /run).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import struct
import subprocess
import time
from pathlib import Path

from otphsm.core.errors import ConfigurationError

__all__ = [
    "PCSCD_BINARY",
    "VPCD_DRIVER",
    "PcscdError",
    "PrivatePcscd",
    "free_port_pair",
    "listening_tcp_ports",
    "pcscd_answers",
]

PCSCD_BINARY = "/usr/sbin/pcscd"
VPCD_DRIVER = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so"
PCSCD_RUN_DIR = Path("/run/pcscd")
SOCKET_ENV = "PCSCLITE_CSOCK_NAME"
READER_NAME_PREFIX = "Virtual PCD"

_SHIM = 'exec 3<&0 </dev/null; LISTEN_PID=$$ LISTEN_FDS=1 exec "$0" "$@"'
_TCP_LISTEN = "0A"
_CMD_VERSION = 0x11
_PROTOCOL_VERSION = (4, 4)
_VERSION_MESSAGE = struct.Struct("<IIiiI")


class PcscdError(ConfigurationError):
    """The private pcscd could not be started, or died."""


def listening_tcp_ports() -> set[int]:
    """Ports in LISTEN state according to /proc/net/tcp{,6} (no connection is made)."""
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 3 and fields[3] == _TCP_LISTEN:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def free_port_pair(attempts: int = 50) -> int:
    """A port P such that P and P+1 are both free right now (vpcd opens both)."""
    for _ in range(attempts):
        with socket.socket() as first:
            first.bind(("0.0.0.0", 0))  # noqa: S104 - vpcd binds 0.0.0.0: test the same
            port = int(first.getsockname()[1])
            if port >= 0xFFFF:
                continue
            with socket.socket() as second:
                try:
                    second.bind(("0.0.0.0", port + 1))  # noqa: S104
                except OSError:
                    continue
        return port
    raise PcscdError("no free pair of consecutive TCP ports")


def pcscd_answers(socket_path: Path, timeout: float = 1.0) -> bool:
    """True if a pcsc-lite daemon answers a version request on `socket_path`."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(socket_path))
            sock.sendall(_VERSION_MESSAGE.pack(12, _CMD_VERSION, *_PROTOCOL_VERSION, 0))
            answer = sock.recv(12)
    except OSError:
        return False
    return len(answer) == 12


class PrivatePcscd:
    """One private pcscd (a context manager): `start()`, `stop()`, `restart()`.

    `directory` holds the socket, the reader configuration and pcscd's log; the port pair
    and the socket path stay the same across restarts, so a `VpcdLink` reconnects by itself.
    """

    def __init__(
        self,
        directory: Path | str,
        port: int | None = None,
        *,
        socket_path: Path | str | None = None,
        pcscd: str = PCSCD_BINARY,
        driver: str = VPCD_DRIVER,
        debug: bool = False,
    ) -> None:
        self.directory = Path(directory).absolute()
        self.port = port if port is not None else free_port_pair()
        self.socket_path = (
            Path(socket_path).absolute() if socket_path else self.directory / "pcscd.comm"
        )
        self.pcscd = pcscd
        self.driver = driver
        self.debug = debug
        self.config_dir = self.directory / "reader.conf.d"
        self.log_path = self.directory / "pcscd.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def ports(self) -> tuple[int, int]:
        return (self.port, self.port + 1)

    @property
    def reader_names(self) -> tuple[str, str]:
        return (f"{READER_NAME_PREFIX} 00 00", f"{READER_NAME_PREFIX} 00 01")

    @property
    def env(self) -> dict[str, str]:
        """What a client process needs in its environment to talk to this pcscd."""
        return {SOCKET_ENV: str(self.socket_path)}

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def check_prerequisites(self) -> None:
        for path, package in ((self.pcscd, "pcscd"), (self.driver, "vsmartcard-vpcd")):
            if not os.path.exists(path):
                raise PcscdError(f"{path} is missing (Debian package {package})")

    def _write_config(self) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        (self.config_dir / "vpcd").write_text(
            f'FRIENDLYNAME "{READER_NAME_PREFIX}"\n'
            f"DEVICENAME   /dev/null:{self.port}\n"
            f"LIBPATH      {self.driver}\n"
        )

    def start(self, timeout: float = 5.0) -> None:
        if self.running:
            return
        self.check_prerequisites()
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            PCSCD_RUN_DIR.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PcscdError(
                f"pcscd needs {PCSCD_RUN_DIR} for its pid file and it cannot be created ({exc});"
                " run as root or inside `unshare -rm` with a tmpfs on /run"
            ) from exc
        self._write_config()
        busy = set(self.ports) & listening_tcp_ports()
        if busy:
            raise PcscdError(f"vpcd port(s) {sorted(busy)} already in use")
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()
        args = [self.pcscd, "--foreground", "-c", str(self.config_dir)]
        if self.debug:
            args += ["--debug", "--apdu"]
        with (
            socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listener,
            self.log_path.open("ab") as log_file,
        ):
            listener.bind(str(self.socket_path))
            listener.listen(64)
            # Our copy of the listener is closed right after the fork: a client must get
            # "connection refused" once pcscd is gone, not a connection nobody serves.
            self._process = subprocess.Popen(
                ["/bin/sh", "-c", _SHIM, *args],
                stdin=listener.fileno(),
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not set(self.ports) <= listening_tcp_ports():
            if not self.running:
                raise PcscdError(f"pcscd exited at start-up; see {self.log_path}")
            if time.monotonic() > deadline:
                raise PcscdError(f"vpcd ports {self.ports} not listening after {timeout}s")
            time.sleep(0.005)
        if not pcscd_answers(self.socket_path, max(0.1, deadline - time.monotonic())):
            raise PcscdError(f"pcscd does not answer on {self.socket_path}")

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL after `timeout`; the vpcd ports are closed on return."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    def restart(self, timeout: float = 5.0) -> None:
        self.stop(timeout)
        self.start(timeout)

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""

    def __enter__(self) -> PrivatePcscd:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
