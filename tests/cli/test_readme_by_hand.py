"""The README's "By hand" section runs as written: its ```sh blocks, in order, with bash, in an
empty directory, from an environment with none of the test run's settings (no SOFTHSM2_CONF,
no OTPHSM_*, no PC/SC socket): the configuration alone must reach the HSM. It ends with the
relying party's login answered OK.

A block whose first line says `# in a second terminal` (third, …) keeps running: it is started
in its own process group, the next block waits for the line it names (`go on once it prints
"…"`), and it is stopped with SIGTERM at the end, as Ctrl-C would. Exports of a block carry to
the next, as in one terminal. The ports are moved with the variables the README names for two
setups on one host, so the test runs beside others.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from support.pcsc_fixtures import require_pcscd
from support.private_postgres import free_port
from support.requirements import require_softhsm

from otphsm.simulators.card.pcscd import free_port_pair

pytestmark = [pytest.mark.softhsm, pytest.mark.pcscd, pytest.mark.slow]

README = Path(__file__).resolve().parents[2] / "README.md"
SECTION = "## By hand"
BACKGROUND = re.compile(r'^# in an? \w+ terminal\b.*go on once it prints "([^"]+)"')
BLOCK_SECONDS = 90
READY_SECONDS = 60


@dataclass(frozen=True)
class Block:
    text: str
    ready: str | None
    """For a block that keeps running: the line to wait for."""


def by_hand_blocks(readme: str) -> list[Block]:
    start = readme.index(f"\n{SECTION}\n")
    end = readme.find("\n## ", start + 1)
    section = readme[start : end if end != -1 else len(readme)]
    blocks = []
    for text in re.findall(r"^```sh\n(.*?)^```$", section, flags=re.S | re.M):
        first = text.splitlines()[0]
        found = BACKGROUND.match(first)
        blocks.append(Block(text, found.group(1) if found else None))
    return blocks


def clean_env(home: Path) -> dict[str, str]:
    drop = ("OTPHSM_", "SOFTHSM2_CONF", "PCSCLITE_CSOCK_NAME", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    venv_bin = str(Path(sys.executable).parent)
    env["PATH"] = f"{venv_bin}{os.pathsep}{env.get('PATH', '')}"
    env["HOME"] = str(home)
    # Two setups on one host, as the README says: this one's ports.
    env["OTPHSM_SERVER_PORT"] = str(server_port := free_port())
    env["OTPHSM_METRICS_PORT"] = str(free_port())
    env["OTPHSM_CLIENT_SERVER"] = f"localhost:{server_port}"
    env["OTPHSM_VPCD_PORT"] = str(free_port_pair())
    return env


def script(block: Block, state: Path) -> str:
    """The block in a shell that starts with the exports of the blocks before it and, for a
    block run to its end, saves its own for the next."""
    save = "" if block.ready else f"\nexport -p > {state}\n"
    return f"set -euo pipefail\n. {state}\n{block.text}{save}"


def wait_for(log: Path, line: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_SECONDS
    while time.monotonic() < deadline:
        if line in log.read_text(errors="replace"):
            return
        if process.poll() is not None:
            pytest.fail(f"ended (exit {process.returncode}) before {line!r}:\n{log.read_text()}")
        time.sleep(0.1)
    pytest.fail(f"no {line!r} within {READY_SECONDS} s:\n{log.read_text()}")


def stop(running: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM to each process group we started (newest first), as Ctrl-C in its terminal."""
    for process in reversed(running):
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in reversed(running):
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_the_readme_by_hand_ends_with_a_login_answered_ok(tmp_path: Path) -> None:
    require_softhsm()
    require_pcscd()
    blocks = by_hand_blocks(README.read_text(encoding="utf-8"))
    assert sum(block.ready is not None for block in blocks) == 3  # serve, pcscd, the card
    work = tmp_path / "work"
    work.mkdir()
    state = tmp_path / "exports.sh"
    state.write_text("")
    env = clean_env(tmp_path)
    running: list[subprocess.Popen[bytes]] = []
    outputs: list[str] = []
    started = time.monotonic()
    try:
        for number, block in enumerate(blocks, 1):
            if block.ready is not None:
                log = tmp_path / f"terminal-{number}.log"
                with log.open("wb") as out:
                    process = subprocess.Popen(
                        ["bash", "-c", script(block, state)],
                        cwd=work,
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        stdin=subprocess.DEVNULL,
                        start_new_session=True,
                    )
                running.append(process)
                wait_for(log, block.ready, process)
                continue
            done = subprocess.run(
                ["bash", "-c", script(block, state)],
                cwd=work,
                env=env,
                capture_output=True,
                text=True,
                stdin=subprocess.DEVNULL,
                timeout=BLOCK_SECONDS,
                check=False,
            )
            outputs.append(done.stdout)
            assert done.returncode == 0, (
                f"block {number}:\n{block.text}\n{done.stdout}{done.stderr}"
            )
    finally:
        stop(running)
    elapsed = time.monotonic() - started
    print(f"README by hand: {elapsed:.1f} s")
    assert re.search(r"^OK by token MOB-\w+$", outputs[-1], flags=re.M), outputs[-1]
    serve = next(n for n, block in enumerate(blocks, 1) if "otphsm serve" in block.text)
    serve_log = (tmp_path / f"terminal-{serve}.log").read_text()
    assert "created a new, empty database" in serve_log
    assert str(work / "otphsm.db") in serve_log  # the start-up line names the database
    assert '"msg": "stopped"' in serve_log  # SIGTERM: a graceful stop
