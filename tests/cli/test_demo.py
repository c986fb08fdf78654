"""`make demo`'s story runs as a test: it passes every step in under a minute, a step that does
not behave as shown fails it (exit 1, its FAIL line), and whatever happens it leaves no process
and no file behind."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.pcsc_fixtures import require_pcscd
from support.requirements import require_softhsm

pytestmark = [pytest.mark.softhsm, pytest.mark.pcscd, pytest.mark.slow]

STEPS = (
    "Card-authorised enrolment",
    "Secure activation on the citizen's phone",
    "Logins on a citizen portal",
    "Three wrong codes lock the token",
    "Released by an operator",
    "Phone lost: replaced after an SMS code",
    "Key fobs: the vendor's PSKC file",
    "A fob for the citizen",
    "The audit chain and the server's log",
)


def demo_command() -> list[str]:
    require_softhsm()
    require_pcscd()
    return [sys.executable, "-m", "otphsm.cli.main", "demo"]


PHONE_CLOCK_FIVE_MINUTES_FAST = """
import sys
from otphsm.simulators.token.mobile_app import MobileApp

MobileApp.device_time = lambda self: self.clock.now() + 300
from otphsm.cli.main import main

sys.exit(main(["demo"]))
"""
"""`otphsm demo` with the emulated phone's clock 5 minutes fast, patched into the demo process
only (the service, a child process, is the real one): the phone's first code must be refused."""


def demo_env() -> dict[str, str]:
    """The demo on a machine where nothing is set up: none of the test run's settings."""
    drop = ("OTPHSM_", "SOFTHSM2_CONF", "PCSCLITE_CSOCK_NAME")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if text in command:
            found.append(f"{entry.name}: {command}")
    return found


def work_directory(transcript: str) -> str:
    found = re.search(r"(/\S*otphsm-demo-[^/\s]+)", transcript)
    assert found, transcript
    return found.group(1)


def test_the_demo_plays_every_step_in_under_a_minute_and_cleans_up() -> None:
    started = time.monotonic()
    done = subprocess.run(
        demo_command(), capture_output=True, text=True, timeout=120, check=False, env=demo_env()
    )
    elapsed = time.monotonic() - started
    transcript = done.stdout
    assert done.returncode == 0, transcript + done.stderr
    assert elapsed < 60, f"the demo took {elapsed:.1f} s"
    assert "FAIL" not in transcript
    positions = [transcript.index(step) for step in STEPS]
    assert positions == sorted(positions), "the story is told in order"
    assert transcript.count("   ok   ") >= 20
    assert re.search(r"activation code \d{6}-\d{6}-\d{6}", transcript)
    assert "results: WRONG_CODE, WRONG_CODE, WRONG_CODE, LOCKED" in transcript
    assert "demo: every step behaved as shown" in transcript
    directory = work_directory(transcript)
    assert not Path(directory).exists()
    assert processes_mentioning(directory) == []


def test_an_interrupted_demo_stops_everything_it_started() -> None:
    process = subprocess.Popen(
        demo_command(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=demo_env(),
    )
    assert process.stdout is not None
    seen: list[str] = []
    try:
        for line in process.stdout:
            seen.append(line)
            if line.startswith("== Card-authorised enrolment"):
                break
        directory = work_directory("".join(seen))
        assert processes_mentioning(directory), "pcscd and the server should be running"
        process.send_signal(signal.SIGINT)
        _out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, err
    assert "everything it started is stopped" in err
    assert processes_mentioning(directory) == []
    assert not Path(directory).exists()


def test_a_step_that_misbehaves_fails_the_demo_and_stops_everything() -> None:
    python = demo_command()[0]
    done = subprocess.run(
        [python, "-c", PHONE_CLOCK_FIVE_MINUTES_FAST],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=demo_env(),
    )
    transcript = done.stdout
    assert done.returncode == 1, transcript + done.stderr
    lines = transcript.splitlines()
    failed = [index for index, line in enumerate(lines) if "FAIL" in line]
    assert [lines[index] for index in failed] == [
        "   FAIL the phone's first code proves possession"
    ]
    step = [line for line in lines[: failed[0]] if line.startswith("== ")][-1]
    assert step.startswith("== Secure activation on the citizen's phone"), transcript
    assert "demo FAILED at: the phone's first code proves possession" in done.stderr
    assert STEPS[2] not in transcript, "the story stops at the first step that misbehaves"
    assert "every step behaved as shown" not in transcript
    directory = work_directory(transcript)
    assert not Path(directory).exists()
    assert processes_mentioning(directory) == []
