"""Helpers for the CLI and token-app tiers: clients of the service under test with the dev
PKI, running `otphsm …` in process with a given stdin, and the phone bound to the service's
clock."""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from otphsm.cli.main import main
from otphsm.cli.ui import reset_console
from otphsm.client import Client, ClientConfig
from support.service_fixtures import ServiceUnderTest

CF = "RSSMRA80A01L378S"
APP_PIN = "13579"


def client(service: ServiceUnderTest, role: str) -> Client:
    pki = service.pki.directory
    return Client(
        ClientConfig(
            server=f"localhost:{service.port}",
            ca=service.pki.ca,
            cert=pki / f"{role}.pem",
            key=pki / f"{role}-key.pem",
        )
    )


def connection_args(service: ServiceUnderTest) -> list[str]:
    return ["--pki", str(service.pki.directory), "--server", f"localhost:{service.port}"]


def phone_skew(service: ServiceUnderTest) -> str:
    """`--skew` that puts a CLI phone (system clock) on the service's manual clock."""
    return f"{service.clock.now() - time.time():.3f}"


class LazyStdin(io.TextIOBase):
    """stdin whose lines are computed when read (e.g. an SMS code sent meanwhile)."""

    def __init__(self, lines: Sequence[str | Callable[[], str]]) -> None:
        self._lines = list(lines)

    def readline(self, size: int | None = -1) -> str:  # type: ignore[override]
        if not self._lines:
            return ""
        line = self._lines.pop(0)
        return (line() if callable(line) else line) + "\n"

    def isatty(self) -> bool:
        return False


@dataclass
class Run:
    code: int
    out: str
    err: str


def run_cli(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: Sequence[str],
    stdin: Sequence[str | Callable[[], str]] = (),
) -> Run:
    """`otphsm ARGV` in process, stdin fed line by line; what it printed."""
    capsys.readouterr()
    monkeypatch.setattr(sys, "stdin", LazyStdin(stdin))
    reset_console()
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    reset_console()
    return Run(code, captured.out, captured.err)


def state_path(tmp_path: Path, name: str = "phone") -> Path:
    return tmp_path / f"{name}.json"
