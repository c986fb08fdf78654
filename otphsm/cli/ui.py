"""What the commands share: the one table of exit codes (`otphsm.cli.main` maps every typed
error through `exit_code_for`, for every command), secret prompts, and a rich console.

Exit codes (README, "The command line"):

    0   done
    1   done, but what was checked did not pass (e.g. the service refused the first code)
    2   invalid input or configuration (also argparse's usage errors, and what the service
        refused as INVALID_ARGUMENT, e.g. a PSKC file)
    3   the card or the reader: no reader, no card, card removed, timeout, PIN wrong or blocked
    4   refused: by the service (authorisation, state, not found, role, rate), by the app (its
        PIN), or something named that does not exist (a fob serial)
    5   the service cannot be reached (network, TLS, timeout), nor a device it needs (the HSM,
        the database, the SMS gateway)
    130 interrupted (Ctrl-C)

rich is imported when a command first prints, not when `otphsm` starts.
"""

from __future__ import annotations

import datetime as dt
import enum
import getpass
import sys
from typing import TYPE_CHECKING

from otphsm.core.errors import (
    AuthorisationRefused,
    DeviceRefused,
    DeviceUnavailable,
    FailedPrecondition,
    InvalidInput,
    NotFound,
    OtpHsmError,
    RateLimited,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from rich.console import Console

NEW_SECRET_TRIES = 3
"""How many times a secret being chosen (the app PIN, a temporary secret) is asked when it is
mistyped, before the command gives up."""


class ExitCode(enum.IntEnum):
    OK = 0
    NOT_ACCEPTED = 1
    INVALID = 2
    CARD = 3
    REFUSED = 4
    UNREACHABLE = 5
    INTERRUPTED = 130


def exit_code_for(exc: OtpHsmError) -> ExitCode:
    """The one table from a typed error to the exit code; the first match wins (a card's
    wrong PIN is a `DeviceRefused` too, but it is the card's: 3)."""
    from otphsm.client import ServiceRefused, ServiceUnavailable
    from otphsm.smartcard.errors import SmartcardError

    if isinstance(exc, SmartcardError):
        return ExitCode.CARD
    if isinstance(exc, ServiceUnavailable):
        return ExitCode.UNREACHABLE
    if isinstance(exc, ServiceRefused) and exc.code == "INVALID_ARGUMENT":
        return ExitCode.INVALID
    if isinstance(
        exc,
        ServiceRefused
        | AuthorisationRefused
        | FailedPrecondition
        | RateLimited
        | NotFound
        | DeviceRefused,
    ):
        return ExitCode.REFUSED
    if isinstance(exc, DeviceUnavailable):
        return ExitCode.UNREACHABLE
    return ExitCode.INVALID


_console: Console | None = None


def console() -> Console:
    global _console  # noqa: PLW0603 (one console per process, made on first use)
    if _console is None:
        from rich.console import Console

        _console = Console(highlight=False)
    return _console


def reset_console() -> None:
    """Forget the console (tests swap sys.stdout between commands)."""
    global _console  # noqa: PLW0603
    _console = None


class InputEnded(InvalidInput):
    """stdin ended before a secret the command reads from it."""


class Prompter:
    """Asks for secrets without echo (getpass), or reads them from stdin, one per line, with
    `from_stdin` (for tests and scripts). Never echoes or logs what it reads."""

    def __init__(self, *, from_stdin: bool = False) -> None:
        self.from_stdin = from_stdin

    def secret(self, prompt: str, what: str) -> str:
        if self.from_stdin:
            line = sys.stdin.readline()
            if not line:
                raise InputEnded(f"stdin ended before the {what}")
            return line.strip()
        return getpass.getpass(prompt).strip()

    def new_secret(
        self,
        prompt: str,
        what: str,
        check: Callable[[str], object] | None = None,
        tries: int = NEW_SECRET_TRIES,
    ) -> str:
        """A secret chosen now: asked twice when interactive. One that `check` refuses (it
        raises `InvalidInput`) or whose confirmation differs is asked again, `tries` times in
        all; then the last reason is raised. From stdin: the next line is the next try."""
        for attempt in range(1, tries + 1):
            try:
                return self._chosen(prompt, what, check)
            except InvalidInput as exc:
                if attempt == tries or isinstance(exc, InputEnded):
                    raise
                console().print(f"{exc}: choose again", style="red", markup=False)
        raise AssertionError("unreachable")  # pragma: no cover

    def _chosen(self, prompt: str, what: str, check: Callable[[str], object] | None) -> str:
        first = self.secret(prompt, what)
        if check is not None:
            check(first)
        if self.from_stdin:
            return first
        again = self.secret("Again: ", what)
        if again != first:
            raise InvalidInput(f"the two {what}s differ")
        return first


def pairs_table(*rows: tuple[str, str], header: tuple[str, str] | None = None) -> None:
    """Rows of two columns on the console, without borders (a header if given)."""
    from rich.table import Table

    table = Table(show_header=header is not None, box=None, padding=(0, 2, 0, 2))
    for title in header or ("", ""):
        table.add_column(title)
    for row in rows:
        table.add_row(*row)
    console().print(table)


def clock_time(unix: int) -> str:
    """A Unix time as the local clock shows it (HH:MM:SS)."""
    return dt.datetime.fromtimestamp(unix).strftime("%H:%M:%S")
