"""What a valid verify makes durable before its answer, counted during one short extra run
per store (valid codes, closed loop): the fsync/fdatasync calls of the processes that commit
(`strace -c` attached to them: the `otphsm serve` process on SQLite, the PostgreSQL backends
serving the benchmark's database), and on PostgreSQL the commits (`pg_stat_database.
xact_commit` of that database, a lone read counting as one). strace slows the traced
processes: this run's rate is not reported.

PostgreSQL's sessions flush their statistics when idle, at most once a second; one that went
idle sooner after its last flush waits 10 s (PGSTAT_IDLE_INTERVAL). So the commit counter is
read once it has not moved for longer than that, before and after the run.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo

SYNC_CALLS = ("fsync", "fdatasync")
STATS_IDLE_INTERVAL = 11.0
"""Seconds without a change after which PostgreSQL's commit counter holds every commit."""
SETTLE_TIMEOUT = 40.0
"""Longest wait for it."""


def measure(
    run: Callable[[], int],
    pids: list[int],
    pg_settings: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """`run` makes the verifies and returns how many were answered (warm-up included);
    `pids` the processes whose fsyncs count; `pg_settings` (PostgreSQL: connection settings
    of the benchmark's database) to count the commits too."""
    commits_before = _settled_commits(pg_settings) if pg_settings else None
    with _strace(pids) as counts:
        verifies = run()
    row: dict[str, Any] = {"verifies": verifies, "fsyncs_per_verify": None}
    if counts.get("available"):
        row["fsyncs_per_verify"] = sum(counts[c] for c in SYNC_CALLS) / max(1, verifies)
    else:
        row["fsyncs_unavailable"] = counts.get("why", "strace is not installed")
    if pg_settings and commits_before is not None:
        commits = _settled_commits(pg_settings) - commits_before
        row["commits_per_verify"] = commits / max(1, verifies)
    return row


def backend_pids(pg_settings: dict[str, Any]) -> list[int]:
    """The PostgreSQL backends connected to the benchmark's database."""
    with _admin(pg_settings) as admin:
        found = admin.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s AND backend_type = "
            "'client backend' AND pid <> pg_backend_pid()",
            (pg_settings["dbname"],),
        ).fetchall()
    return [int(pid) for (pid,) in found]


class _strace:
    """`strace -f -c` attached to `pids` for the block; the counts of `SYNC_CALLS` made."""

    def __init__(self, pids: list[int]) -> None:
        self._pids = pids
        self._counts: dict[str, Any] = {c: 0 for c in SYNC_CALLS}
        self._process: subprocess.Popen[bytes] | None = None
        self._out = Path(tempfile.mkstemp(prefix="otphsm-bench-strace-")[1])

    def __enter__(self) -> dict[str, Any]:
        strace = shutil.which("strace")
        if strace is None or not self._pids:
            self._counts["why"] = "strace is not installed" if strace is None else "no process"
            return self._counts
        argv = [strace, "-f", "-c", "-e", f"trace={','.join(SYNC_CALLS)}", "-o", str(self._out)]
        for pid in self._pids:
            argv += ["-p", str(pid)]
        self._process = subprocess.Popen(argv, stderr=subprocess.PIPE)
        time.sleep(1.0)  # attached (strace prints nothing when it is)
        if self._process.poll() is not None:
            why = (self._process.stderr.read() if self._process.stderr else b"").decode()
            self._counts["why"] = f"strace could not attach: {why.strip()[:200]}"
            self._process = None
        return self._counts

    def __exit__(self, *exc: object) -> None:
        if self._process is None:
            return
        self._process.send_signal(signal.SIGINT)  # detaches and writes the summary
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
            self._counts["why"] = "strace did not detach"
            return
        for line in self._out.read_text().splitlines():
            fields = line.split()
            if fields and fields[-1] in SYNC_CALLS:
                self._counts[fields[-1]] = int(fields[3])
        self._counts["available"] = True
        os.unlink(self._out)


def _admin(pg_settings: dict[str, Any]) -> psycopg.Connection[Any]:
    """A connection to another database than the benchmark's: its reads count nowhere."""
    return psycopg.connect(make_conninfo("", **{**pg_settings, "dbname": "postgres"}))


def _settled_commits(pg_settings: dict[str, Any]) -> int:
    """The database's commit counter once the sessions have flushed their statistics."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    last = None
    with _admin(pg_settings) as admin:
        admin.autocommit = True
        while True:
            admin.execute("SELECT pg_stat_clear_snapshot()")
            (now,) = admin.execute(
                "SELECT xact_commit FROM pg_stat_database WHERE datname = %s",
                (pg_settings["dbname"],),
            ).fetchone() or (0,)
            if now == last or time.monotonic() > deadline:
                return int(now)
            last = now
            time.sleep(STATS_IDLE_INTERVAL)
