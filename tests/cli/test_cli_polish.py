"""What a user meets first and when something is missing: `otphsm --help` written for users
and `--version`; `token code` on an empty app says how to add an account and exits 4; a
mistyped app PIN (or temporary secret) being chosen is asked again, a bounded number of times,
at a real terminal (a pty: getpass reads /dev/tty) and from stdin; `sim card insert` with
nothing listening on the port fails in seconds with a message, not a silent wait."""

from __future__ import annotations

import base64
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support.cli_support import run_cli

from otphsm import __version__
from otphsm.cli.ui import ExitCode
from otphsm.simulators.card.cardfile import save_card
from otphsm.simulators.card.spec import CardSpec

URI = f"otpauth://totp/ACME:alice?secret={base64.b32encode(b'x' * 20).decode()}&issuer=ACME"


def test_help_is_written_for_users(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SystemExit) as exited:
        run_cli(capsys, monkeypatch, ["--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: otphsm")
    assert "One-time passwords for citizens' logins" in out
    for start in ("otphsm demo", "otphsm serve --config FILE", "otphsm enrol new --help"):
        assert start in out
    assert "Each command group lives in its own module" not in out  # not the module docstring


def test_version(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SystemExit) as exited:
        run_cli(capsys, monkeypatch, ["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"otphsm {__version__}"


def test_token_code_on_an_empty_app_says_how_to_add_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run = run_cli(capsys, monkeypatch, ["token", "code", "--state", tmp_path / "app.json"])
    assert run.code == ExitCode.REFUSED
    assert run.err.startswith("otphsm: error: the app holds no account: add one with")
    assert "otphsm token activate --code" in run.err


def test_a_mistyped_app_pin_from_stdin_is_asked_again(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "app.json"
    argv = ["token", "add-uri", URI, "--state", state, "--pin-from-stdin"]
    run = run_cli(capsys, monkeypatch, argv, stdin=["1234", "12345"])
    assert run.code == ExitCode.OK, run.err
    assert "exactly 5 digits: choose again" in run.out
    assert "1234" not in run.out.replace("12345", "")  # the mistyped PIN is not echoed
    run_cli(capsys, monkeypatch, ["token", "lock", "--state", state])
    code = ["token", "code", "--state", state, "--pin-from-stdin"]
    assert run_cli(capsys, monkeypatch, code, stdin=["12345"]).code == ExitCode.OK  # its PIN


def test_the_app_pin_is_asked_a_bounded_number_of_times(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ["token", "add-uri", URI, "--state", tmp_path / "app.json", "--pin-from-stdin"]
    wrong = ["1", "22", "333", "4444", "55555"]
    run = run_cli(capsys, monkeypatch, argv, stdin=wrong)
    assert run.code == ExitCode.INVALID
    assert run.out.count("choose again") == 2  # three tries in all
    assert "exactly 5 digits" in run.err


class Terminal:
    """`otphsm ARGV` at a pseudo-terminal, as a person types at it."""

    def __init__(self, argv: list[str]) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: the pty is its controlling terminal
            os.execv(sys.executable, [sys.executable, "-m", "otphsm.cli.main", *argv])
        self.seen = ""

    def expect(self, text: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.seen:
            left = deadline - time.monotonic()
            assert left > 0, f"{text!r} not shown; the terminal shows {self.seen!r}"
            if select.select([self.fd], [], [], left)[0]:
                try:
                    self.seen += os.read(self.fd, 4096).decode(errors="replace")
                except OSError:  # the child exited
                    break
        assert text in self.seen, self.seen
        self.seen = self.seen[self.seen.index(text) + len(text) :]

    def type(self, line: str) -> None:
        os.write(self.fd, line.encode() + b"\r")

    def exit_code(self) -> int:
        _, status = os.waitpid(self.pid, 0)
        os.close(self.fd)
        return os.waitstatus_to_exitcode(status)


def test_at_a_terminal_a_mistyped_or_unconfirmed_app_pin_is_asked_again(tmp_path: Path) -> None:
    terminal = Terminal(["token", "add-uri", URI, "--state", str(tmp_path / "app.json")])
    terminal.expect("Choose a 5-digit app PIN: ")
    terminal.type("1234")  # too short
    terminal.expect("exactly 5 digits: choose again")
    terminal.expect("Choose a 5-digit app PIN: ")
    terminal.type("24680")
    terminal.expect("Again: ")
    terminal.type("24860")  # a slip in the confirmation
    terminal.expect("differ: choose again")
    terminal.expect("Choose a 5-digit app PIN: ")
    terminal.type("24680")
    terminal.expect("Again: ")
    terminal.type("24680")
    terminal.expect("Account ")
    assert terminal.exit_code() == 0


def test_sim_card_insert_with_nothing_listening_fails_fast(
    tmp_path: Path, card_spec_1024: CardSpec
) -> None:
    import socket

    card_file = tmp_path / "card.json"
    save_card(card_file, card_spec_1024)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    insert = ["sim", "card", "insert", str(card_file), "--port", str(port), "--wait", "1"]
    done = subprocess.run(
        [sys.executable, "-m", "otphsm.cli.main", *insert],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert time.monotonic() - started < 15
    assert done.returncode == ExitCode.CARD, done.stderr
    assert done.stderr.startswith("otphsm: error: no vpcd reader accepted the card within 1s")
    assert "otphsm sim pcscd" in done.stderr and "Traceback" not in done.stderr
