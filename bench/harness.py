"""What the service benchmark starts on loopback: a deployment from the harness
(`otphsm.simulators.deployment`: a private SoftHSM2, a dev PKI, a card CA), a private
PostgreSQL database, and `otphsm serve` / do-nothing server processes.

Everything lives in one temporary directory and one database, both removed at the end.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from otphsm.simulators.card.pki import TestCa
from otphsm.simulators.deployment import (
    Deployment,
    ServerProcess,
    create_deployment,
    radius_section,
    with_sections,
)
from otphsm.simulators.hsm.softhsm import SoftHsm

BENCH_DIR = Path(__file__).resolve().parent
PG_DSN = os.environ.get("OTPHSM_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
LOOPBACK = "127.0.0.1"
HUGE = 1_000_000_000
"""Lockout threshold of the benchmark servers, whose per-caller limit on failed checks is off
too (the load is one caller): every wrong code then costs its whole window of HMACs and a
write (the worst case), instead of a cheap LOCKED or RESOURCE_EXHAUSTED."""
BENCH_SECTIONS: dict[str, dict[str, Any]] = {
    "verification": {"lock_after_failures": HUGE, "unknown_origin_failures": HUGE},
    "ratelimit": {"enabled": False},
}
RADIUS_SECRET = "otphsm-bench-radius-shared-secret"
"""The benchmark NAS's shared secret (the NAS sends from 127.0.0.1; its origin is that
address, whose counter and the unknown origins' budget are as large as the lockout's)."""


def cpu_seconds(server: ServerProcess) -> float:
    """User + system CPU time the server process has used so far, with that of its server
    processes (`server.processes` > 1) while they run."""
    return sum(_process_cpu(pid) for pid in (server.pid, *_children(server.pid)))


def _process_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:  # exited in between
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


@dataclass
class BenchEnv:
    deployment: Deployment
    pg_settings: dict[str, Any]

    @property
    def root(self) -> Path:
        return self.deployment.directory

    @property
    def softhsm(self) -> SoftHsm:
        return self.deployment.softhsm

    @property
    def card_ca(self) -> TestCa:
        return self.deployment.card_ca

    @property
    def pg_url(self) -> str:
        s = self.pg_settings
        return f"postgresql://{s.get('user', 'postgres')}@{s['host']}:{s['port']}/{s['dbname']}"

    @property
    def sqlite_url(self) -> str:
        return self.deployment.sqlite_url()

    def client_tls(self, role: str) -> tuple[str, str, str]:
        ca, cert, key = self.deployment.client_tls(role)
        return str(ca), str(cert), str(key)

    def radius_section(self) -> dict[str, Any]:
        """[radius] for one NAS at 127.0.0.1 whose failed checks are not limited."""
        secret = self.root / "radius.secret"
        secret.write_text(RADIUS_SECRET + "\n", encoding="utf-8")
        return radius_section(secret, failures_per_second=float(HUGE), burst=HUGE)

    def serve(self, name: str, store_url: str, **sections: dict[str, Any]) -> ServerProcess:
        server = self.deployment.serve(name, store_url, **with_sections(BENCH_SECTIONS, sections))
        server.wait_serving()
        return server

    def noop(
        self, name: str, *, interceptor: bool = False, **sections: dict[str, Any]
    ) -> ServerProcess:
        """The do-nothing servicer, from the same config file shape (same server section),
        bare or behind otphsm's interceptor."""
        merged = with_sections(BENCH_SECTIONS, sections)
        config = self.deployment.write_config(name, self.sqlite_url, **merged)
        argv = [sys.executable, str(BENCH_DIR / "noop_server.py"), "--config", str(config)]
        argv += ["--interceptor"] if interceptor else []
        server = self.deployment.launch(name, argv)
        server.wait_serving()
        return server


@contextlib.contextmanager
def bench_env(keep: bool = False) -> Iterator[BenchEnv]:
    root = Path(tempfile.mkdtemp(prefix="otphsm-bench-"))
    settings = conninfo_to_dict(PG_DSN)
    settings.setdefault("connect_timeout", 5)
    name = f"otphsm_bench_{secrets.token_hex(4)}"
    admin = psycopg.connect(make_conninfo("", **settings), autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with create_deployment(root) as deployment:
            settings = {**settings, "host": settings.get("host", LOOPBACK), "dbname": name}
            settings.setdefault("port", "5432")
            yield BenchEnv(deployment, settings)
    finally:
        if not keep:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"kept {root} and the database {name}")
        admin.close()
