"""A PostgreSQL server private to one test, which the test may crash and start again.

The machine's shared cluster (OTPHSM_TEST_PG_DSN, port 5432) serves other tests and CI and is
never stopped; this one is initialised in a temporary directory, listens only on 127.0.0.1 on
a free port and on a unix socket in that directory, trusts local connections, and keeps
`fsync` and `synchronous_commit` on: a commit it acknowledged must survive a crash.

PostgreSQL refuses to run as root, so `initdb` and `pg_ctl` run as the `postgres` system user
(`runuser`); the test therefore needs root, that user and the server binaries, and skips with
the reason otherwise (a failure in CI, where OTPHSM_REQUIRE_DEVICES=1).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SERVER_USER = "postgres"
BINARIES = Path("/usr/lib/postgresql")
START_TIMEOUT = 30


def server_bindir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin holding initdb and pg_ctl (`pg_config
    --bindir` may name the client's directory only)."""
    found = [
        path.parent
        for path in BINARIES.glob("*/bin/initdb")
        if (path.parent / "pg_ctl").exists() and (path.parent / "postgres").exists()
    ]
    return max(found, key=lambda p: _version(p.parent.name), default=None)


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


def require_private_postgres() -> tuple[Path, pwd.struct_passwd]:
    """The server binaries and the user to run them as; skips with the reason if missing."""
    if os.geteuid() != 0:
        pytest.skip(
            "a private PostgreSQL server is started as the `postgres` user through runuser, "
            "which needs root (CI runs as root)"
        )
    try:
        user = pwd.getpwnam(SERVER_USER)
    except KeyError:
        pytest.skip(f"no `{SERVER_USER}` system user (Debian package postgresql)")
    if shutil.which("runuser") is None:
        pytest.skip("runuser is not installed (Debian package util-linux)")
    bindir = server_bindir()
    if bindir is None:
        pytest.skip(
            f"no PostgreSQL server binaries (initdb, pg_ctl) in {BINARIES}/*/bin "
            "(Debian package postgresql)"
        )
    return bindir, user


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class PrivatePostgres:
    """One cluster: `crash()` is `pg_ctl stop -m immediate` (no shutdown checkpoint, like the
    power failing under the server), `start()` brings it back through crash recovery."""

    bindir: Path
    user: pwd.struct_passwd
    directory: Path
    port: int = 0

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def log(self) -> Path:
        return self.directory / "server.log"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SERVER_USER}@127.0.0.1:{self.port}/{dbname}"

    def initdb(self) -> None:
        self._run(
            "initdb",
            "--pgdata",
            str(self.data),
            "--username",
            SERVER_USER,
            "--auth",
            "trust",
            "--encoding",
            "UTF8",
            "--no-instructions",
        )
        (self.data / "pg_hba.conf").write_text(
            "local all all trust\nhost all all 127.0.0.1/32 trust\n"
        )

    def configure(self, port: int) -> None:
        self.port = port
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(port),
            "unix_socket_directories": f"'{self.directory}'",
            "fsync": "on",
            "synchronous_commit": "on",
            "full_page_writes": "on",
            "max_connections": "40",
            "shared_buffers": "32MB",
            "logging_collector": "off",
        }
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write("\n# the test's private server\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def start(self) -> None:
        self._run(
            "pg_ctl",
            "start",
            "--wait",
            f"--timeout={START_TIMEOUT}",
            "--pgdata",
            str(self.data),
            "--log",
            str(self.log),
        )

    def crash(self) -> None:
        self._run("pg_ctl", "stop", "--wait", "--mode", "immediate", "--pgdata", str(self.data))

    def running(self) -> bool:
        status = subprocess.run(
            self._command("pg_ctl", "status", "--pgdata", str(self.data)),
            cwd=self.directory,
            capture_output=True,
            text=True,
            check=False,
        )
        return status.returncode == 0

    def destroy(self) -> None:
        """Stop it however it is (immediate, then SIGKILL as a last resort) and remove it."""
        pid_file = self.data / "postmaster.pid"
        if pid_file.exists():
            with contextlib.suppress(subprocess.SubprocessError, OSError):
                self.crash()
        if pid_file.exists():
            with contextlib.suppress(ValueError, OSError, IndexError):
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
                time.sleep(0.5)
        shutil.rmtree(self.directory, ignore_errors=True)

    def server_log(self) -> str:
        try:
            return self.log.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def _command(self, tool: str, *args: str) -> list[str]:
        return ["runuser", "-u", self.user.pw_name, "--", str(self.bindir / tool), *args]

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run(
            self._command(tool, *args),
            cwd=self.directory,  # the postgres user may not read the caller's directory
            capture_output=True,
            text=True,
            timeout=START_TIMEOUT + 30,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{tool} {' '.join(args)} exited with {done.returncode}:\n"
                f"{done.stdout}{done.stderr}\nserver log:\n{self.server_log()}"
            )


@contextlib.contextmanager
def private_postgres(attempts: int = 3) -> Iterator[PrivatePostgres]:
    """Initialise and start a private cluster; always stopped and removed afterwards."""
    bindir, user = require_private_postgres()
    # Not under pytest's tmp_path: its parents are root's, mode 0700, closed to `postgres`.
    directory = Path(tempfile.mkdtemp(prefix="otphsm-pg-"))
    os.chown(directory, user.pw_uid, user.pw_gid)
    server = PrivatePostgres(bindir, user, directory)
    try:
        server.initdb()
        for attempt in range(1, attempts + 1):
            server.configure(free_port())
            try:
                server.start()
                break
            except RuntimeError:  # the port was taken between the probe and the start
                if attempt == attempts:
                    raise
        yield server
    finally:
        server.destroy()
