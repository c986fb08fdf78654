"""`make demo`'s story runs as a test: it exits non-zero if any step misbehaves."""

from __future__ import annotations

import subprocess
import sys

import pytest
from support.requirements import require_softhsm

pytestmark = [pytest.mark.softhsm, pytest.mark.slow]


def test_demo_plays_through() -> None:
    require_softhsm()
    done = subprocess.run(
        [sys.executable, "-m", "otphsm.cli.main", "demo"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "demo: every step behaved as shown" in done.stdout
    assert "FAIL" not in done.stdout
