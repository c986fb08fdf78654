"""Server child processes of a deployment: `otphsm serve` (and anything else that logs the
same "serving" record, such as the benchmark's do-nothing server), started on the port its
config names (0: the kernel picks one), the bound port read back from its log.

The child's stdout and stderr go to a log file (one JSON record per line); `records` reads
them back, so the parent pumps nothing while the server runs. Stopping is what an operator
does: SIGTERM (a graceful stop), SIGKILL only if it has not stopped after `STOP_WAIT`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, overload

from otphsm.core.errors import ConfigurationError
from otphsm.simulators.hsm.softhsm import SoftHsm

START_TIMEOUT = 60.0
STOP_WAIT = 15.0
SERVING = "serving"
"""The `msg` of the record a server logs once it listens; its `port` field is the bound port
(and `http_port` the HTTP/JSON API's, when [http] is enabled)."""


class ServerStartError(ConfigurationError):
    """A server process exited, or did not log that it was serving, in time."""


class ServerProcess:
    """One server child process; `wait_serving()` returns its port once it listens."""

    def __init__(self, name: str, argv: Sequence[str], env: Mapping[str, str], log: Path) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        self._offset = log.stat().st_size if log.exists() else 0  # a restart appends
        self._port: int | None = None
        self._serving: dict[str, Any] | None = None
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                self.argv, env=dict(env), stdin=subprocess.DEVNULL, stdout=out, stderr=out
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def port(self) -> int:
        if self._port is None:
            raise ServerStartError(f"{self.name} is not serving yet")
        return self._port

    @property
    def http_port(self) -> int:
        """The HTTP/JSON API's bound port (the server must be serving, with [http] enabled)."""
        serving = [r for r in self.records if r.get("msg") == SERVING]
        port = serving[0].get("http_port") if serving else None
        if not isinstance(port, int):
            raise ServerStartError(f"{self.name} serves no HTTP/JSON API")
        return port

    @property
    def target(self) -> str:
        return f"localhost:{self.port}"

    @property
    def records(self) -> LogRecords:
        """This process's log records (read afresh at each use, so they follow the log)."""
        return LogRecords(self.log, self._offset)

    @property
    def radius_port(self) -> int:
        """The RADIUS front end's bound port (`[radius]` enabled), once serving."""
        if self._serving is None or self._serving.get("radius_port") is None:
            raise ServerStartError(f"{self.name} serves no RADIUS")
        return int(self._serving["radius_port"])

    def wait_serving(self, timeout: float = START_TIMEOUT) -> int:
        """Block until the "serving" record is logged; its port."""
        deadline = time.monotonic() + timeout
        while self._port is None:
            serving = [r for r in self.records if r.get("msg") == SERVING]
            if serving:
                self._serving = serving[0]
                self._port = int(serving[0]["port"])
            elif (code := self.process.poll()) is not None:
                raise ServerStartError(f"{self.name} exited with {code}: {self.log_tail()}")
            elif time.monotonic() > deadline:
                raise ServerStartError(f"{self.name} did not start: {self.log_tail()}")
            else:
                time.sleep(0.05)
        return self._port

    def log_tail(self, count: int = 5) -> str:
        return " | ".join(json.dumps(r) for r in self.records[-count:]) or "(no log)"

    def stop(self) -> None:
        """SIGTERM, then wait; SIGKILL only if it is still running after STOP_WAIT seconds."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(STOP_WAIT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


class LogRecords:
    """The JSON records of a log file from `offset` on, as they are when looked at; a line
    that is not JSON reads as {"raw": line}, a line still being written is left out."""

    def __init__(self, log: Path, offset: int) -> None:
        self.log = log
        self.offset = offset

    def _load(self) -> list[dict[str, Any]]:
        with self.log.open("rb") as source:
            source.seek(self.offset)
            text = source.read().decode("utf-8", errors="replace")
        lines = text.split("\n")
        lines.pop()  # "" after the last newline, or a line still being written
        return [_parse(line) for line in lines if line.strip()]

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        return self._load()[index]

    def __len__(self) -> int:
        return len(self._load())

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._load())


def _parse(line: str) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError:
        return {"raw": line}
    return record if isinstance(record, dict) else {"raw": line}


def server_env(softhsm: SoftHsm) -> dict[str, str]:
    """This process's environment for a server child: the config file alone decides, so the
    developer's OTPHSM_* overrides are left out; SoftHSM2 reads the deployment's token."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTPHSM_")}
    env["SOFTHSM2_CONF"] = str(softhsm.conf_path)
    return env


def start_server(
    name: str,
    argv: Sequence[str],
    softhsm: SoftHsm,
    log: Path,
    extra_env: Mapping[str, str] | None = None,
) -> ServerProcess:
    """Start a server child process with the deployment's environment (not waiting for it);
    `extra_env` adds to it (e.g. `otphsm.simulators.crash.crash_env`)."""
    return ServerProcess(name, argv, {**server_env(softhsm), **(extra_env or {})}, log)


def start_serve(
    config: Path,
    softhsm: SoftHsm,
    *,
    name: str = "otphsm serve",
    log: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> ServerProcess:
    """`otphsm serve --config CONFIG` as a child process, logging to `log` (default: the config
    file's name with .log); call `wait_serving()` for its port."""
    argv = [sys.executable, "-m", "otphsm.cli.main", "serve", "--config", str(config)]
    return start_server(name, argv, softhsm, log or config.with_suffix(".log"), extra_env)
