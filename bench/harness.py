"""What the service benchmark starts on loopback: a private SoftHSM2, a dev PKI, a private
PostgreSQL database, a card CA, and `otphsm serve` / do-nothing server processes.

Everything lives in one temporary directory and one database, both removed at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from cryptography.hazmat.primitives import serialization
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from otphsm.service.devpki import DevPki, client_files, write_dev_pki
from otphsm.simulators.card.pki import TestCa, make_test_ca
from otphsm.simulators.hsm.softhsm import SoftHsm, create_softhsm, provision_softhsm

BENCH_DIR = Path(__file__).resolve().parent
PG_DSN = os.environ.get("OTPHSM_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
LOOPBACK = "127.0.0.1"
HUGE = 1_000_000_000
"""Lockout threshold of the benchmark servers, whose per-caller limit on failed checks is off
too (the load is one caller): every wrong code then costs its whole window of HMACs and a
write (the worst case), instead of a cheap LOCKED or RESOURCE_EXHAUSTED."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return int(probe.getsockname()[1])


@dataclass
class ServerProcess:
    """A server subprocess (`otphsm serve` or the do-nothing server) logging to a file."""

    name: str
    argv: list[str]
    port: int
    log: Path
    env: dict[str, str]
    process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> ServerProcess:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.argv, env=self.env, stdout=out, stderr=out, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + timeout
        while not self._listening():
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited: {self.log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start: {self.log.read_text()[-2000:]}")
            time.sleep(0.1)
        return self

    def _listening(self) -> bool:
        with socket.socket() as probe:
            probe.settimeout(0.2)
            return probe.connect_ex((LOOPBACK, self.port)) == 0

    @property
    def target(self) -> str:
        return f"localhost:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def cpu_seconds(self) -> float:
        """User + system CPU time the server process has used so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


@dataclass
class BenchEnv:
    root: Path
    softhsm: SoftHsm
    pki: DevPki
    card_ca: TestCa
    pg_settings: dict[str, Any]
    servers: list[ServerProcess] = field(default_factory=list)

    @property
    def pg_url(self) -> str:
        s = self.pg_settings
        return f"postgresql://{s.get('user', 'postgres')}@{s['host']}:{s['port']}/{s['dbname']}"

    @property
    def sqlite_url(self) -> str:
        return f"sqlite://{self.root / 'otphsm.db'}"

    def client_tls(self, role: str) -> tuple[str, str, str]:
        cert, key = client_files(self.pki.directory, role)
        return str(self.pki.ca), str(cert), str(key)

    def child_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("OTPHSM_")}
        env["SOFTHSM2_CONF"] = str(self.softhsm.conf_path)
        return env

    def config(self, name: str, store_url: str, port: int, **sections: dict[str, Any]) -> Path:
        raw: dict[str, dict[str, Any]] = {
            "server": {
                "address": LOOPBACK,
                "port": port,
                "tls_cert": str(self.pki.server_cert),
                "tls_key": str(self.pki.server_key),
                "tls_client_ca": str(self.pki.ca),
            },
            "hsm": {
                "module": self.softhsm.module,
                "token_label": self.softhsm.token_label,
                "user_pin": self.softhsm.user_pin,
            },
            "store": {"url": store_url},
            "card": {
                "trusted_ca": [str(self.root / "cns-ca.pem")],
                "crls": [str(self.root / "cns-ca.crl.pem")],
            },
            "sms": {"outbox": str(self.root / f"sms-{name}.jsonl")},
            "verification": {"lock_after_failures": HUGE},
            "ratelimit": {"enabled": False},
            "metrics": {"enabled": False},
        }
        for section, values in sections.items():
            raw[section] = {**raw.get(section, {}), **values}
        lines: list[str] = []
        for section, values in raw.items():
            lines.append(f"[{section}]")
            lines.extend(f"{key} = {json.dumps(value)}" for key, value in values.items())
        path = self.root / f"{name}.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def serve(self, name: str, store_url: str, **sections: dict[str, Any]) -> ServerProcess:
        port = free_port()
        config = self.config(name, store_url, port, **sections)
        argv = [sys.executable, "-m", "otphsm.cli.main", "serve", "--config", str(config)]
        return self._start(name, argv, port)

    def noop(
        self, name: str, *, interceptor: bool = False, **sections: dict[str, Any]
    ) -> ServerProcess:
        """The do-nothing servicer, from the same config file shape (same server section),
        bare or behind otphsm's interceptor."""
        port = free_port()
        config = self.config(name, self.sqlite_url, port, **sections)
        argv = [sys.executable, str(BENCH_DIR / "noop_server.py"), "--config", str(config)]
        argv += ["--interceptor"] if interceptor else []
        return self._start(name, argv, port)

    def _start(self, name: str, argv: list[str], port: int) -> ServerProcess:
        server = ServerProcess(name, argv, port, self.root / f"{name}.log", self.child_env())
        self.servers.append(server)
        return server.start()


@contextlib.contextmanager
def bench_env(keep: bool = False) -> Any:
    root = Path(tempfile.mkdtemp(prefix="otphsm-bench-"))
    settings = conninfo_to_dict(PG_DSN)
    settings.setdefault("connect_timeout", 5)
    name = f"otphsm_bench_{secrets.token_hex(4)}"
    admin = psycopg.connect(make_conninfo("", **settings), autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    env: BenchEnv | None = None
    try:
        softhsm = create_softhsm(root / "hsm")
        softhsm.activate()
        provision_softhsm(softhsm)
        pki = write_dev_pki(root / "pki")
        now = _now()
        card_ca = make_test_ca(now=now)
        (root / "cns-ca.pem").write_bytes(
            card_ca.certificate.public_bytes(serialization.Encoding.PEM)
        )
        (root / "cns-ca.crl.pem").write_bytes(
            card_ca.crl(now=now).public_bytes(serialization.Encoding.PEM)
        )
        settings = {**settings, "host": settings.get("host", LOOPBACK), "dbname": name}
        settings.setdefault("port", "5432")
        env = BenchEnv(root, softhsm, pki, card_ca, settings)
        yield env
    finally:
        if env is not None:
            for server in env.servers:
                server.stop()
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()
        if not keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"kept {root}")


def _now() -> Any:
    import datetime as dt

    return dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)
