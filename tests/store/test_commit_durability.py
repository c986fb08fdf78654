"""What reaches the disk before a store call returns, on SQLite, as the kernel sees it (the
calls run under strace): an accepted code and a counted failure are synced (fdatasync/fsync)
before they return; the lockout's reservation of an attempt in flight, which is ignored
after a minute anyway, is committed without a sync of its own (the next synced commit
carries it), and does not leave the connection relaxed for the commit after it, even when
refused at its BEGIN (another program holding SQLite's write lock). Accepted codes queued
behind a transaction in progress share one synced commit (group commit). The RADIUS answers
cache's commits are not synced either (a lost answer only makes a retransmission be verified
again, and answered REPLAYED)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support.requirements import require_tool

TESTS = Path(__file__).resolve().parents[1]


def syncs_per_call(tmp_path: Path) -> dict[str, int]:
    trace = tmp_path / "trace"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), *sys.path])}
    strace = ["strace", "-f", "-qq", "-o", str(trace), "-e", "trace=fsync,fdatasync,write"]
    probe = [sys.executable, "-m", "support.sync_probe", str(tmp_path / "otphsm.db")]
    subprocess.run([*strace, *probe], check=True, env=env, capture_output=True, timeout=120)
    counts: dict[str, int] = {}
    phase = ""
    for line in trace.read_text().splitlines():
        if 'write(2, "MARK ' in line:
            phase = line.split('"MARK ', 1)[1].split("\\n", 1)[0]
            counts[phase] = 0
        elif phase and ("fdatasync(" in line or "fsync(" in line) and "= 0" in line:
            counts[phase] += 1
    return counts


def test_accepted_codes_and_failures_are_synced_reservations_are_not(tmp_path: Path) -> None:
    require_tool("strace", "strace")
    counts = syncs_per_call(tmp_path)
    assert counts["reserve"] == 0
    assert counts["accept"] >= 1
    assert counts["reserve-again"] == 0
    assert counts["fail"] >= 1
    assert 1 <= counts["group"] <= 2  # the unit of work's commit, then one for the 4 queued
    # The RADIUS answers cache (a claim, then the answer) commits without syncs of its own,
    # and leaves the next accepted code synced.
    assert counts["radius-claim"] == 0
    assert counts["radius-save"] == 0
    assert counts["accept-after-radius"] >= 1
    # A reservation refused at its BEGIN does not leave the connection relaxed.
    assert counts["accept-after-refused"] >= 1
