"""How `otphsm enrol` gets the service's authorisation for a citizen: the card at the counter
(wait for it, show whose it is, the citizen types the PIN, the card signs the challenge) or,
with `--sms`, a code sent to the phone on record."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from otphsm.cli.ui import Prompter, clock_time, console, pairs_table

if TYPE_CHECKING:
    from rich.status import Status

    from otphsm.client.station import Authorised, Station
    from otphsm.smartcard.cns import CardContents

SMS_ATTEMPTS = 3


def authorisation(station: Station, args: argparse.Namespace) -> Authorised:
    """An SMS code with --sms, otherwise the citizen's card."""
    if args.sms:
        return _sms_authorisation(station, args)
    return card_authorisation(station, args)


class ConsoleCardEvents:
    """`otphsm.client.station.CardEvents` on the terminal."""

    def __init__(self, prompter: Prompter) -> None:
        self.prompter = prompter
        self._status: Status | None = None
        self._announced = False

    def waiting_for_card(self, reader: str | None, seconds_left: float) -> None:
        out = console()
        where = f"in {reader}" if reader else "in a reader"
        text = f"Insert the citizen's card {where}… ({seconds_left:.0f} s left)"
        if not out.is_terminal:
            if not self._announced:
                out.print(f"Waiting for the citizen's card {where}…")
                self._announced = True
            return
        if self._status is None:
            self._status = out.status(text)
            self._status.start()
        else:
            self._status.update(text)

    def stop_waiting(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def card_read(self, reader: str, contents: CardContents) -> None:
        self.stop_waiting()
        data = contents.personal_data
        out = console()
        out.print(f"Card in [bold]{reader}[/bold]")
        pairs_table(
            ("Name", f"{data.given_name} {data.surname}"),
            ("Codice fiscale", data.codice_fiscale or "-"),
            ("Card", contents.card_id),
        )

    def ask_pin(self, tries_left: int | None) -> str:
        if tries_left is not None:
            plural = "try" if tries_left == 1 else "tries"
            last = " (the last one before the card blocks)" if tries_left == 1 else ""
            console().print(f"[red]Wrong PIN[/red]: {tries_left} {plural} left{last}")
        return self.prompter.secret("Card PIN (the citizen types it): ", "card PIN")

    def signing(self) -> None:
        console().print("PIN correct; the card signs the service's challenge…")


def card_authorisation(station: Station, args: argparse.Namespace) -> Authorised:
    from otphsm.client.station import wait_for_card

    events = ConsoleCardEvents(Prompter(from_stdin=args.pin_from_stdin))
    try:
        reader = wait_for_card(args.reader, args.timeout, events)
    finally:
        events.stop_waiting()
    authorised = station.authorise_with_card(reader, events)
    console().print(
        f"[green]Authorised[/green]: {authorised.codice_fiscale} ({authorised.holder}); "
        f"the card may be removed. Authorisation valid until {clock_time(authorised.expires_at)}"
    )
    return authorised


def _sms_authorisation(station: Station, args: argparse.Namespace) -> Authorised:
    from otphsm.client import AuthorisationRefused

    if not args.codice_fiscale:
        from otphsm.core.errors import InvalidInput

        raise InvalidInput("--sms needs --codice-fiscale")
    cf = args.codice_fiscale.strip().upper()
    expires = station.send_sms_code(cf)
    console().print(
        f"A code was sent by SMS to the phone on record (valid until {clock_time(expires)})"
    )
    prompter = Prompter(from_stdin=args.pin_from_stdin)
    for attempt in range(1, SMS_ATTEMPTS + 1):
        code = prompter.secret("Code received by SMS: ", "SMS code")
        try:
            authorised = station.authorise_with_sms_code(cf, code)
        except AuthorisationRefused as exc:
            if exc.retry_after or attempt == SMS_ATTEMPTS:
                raise
            console().print(f"[red]{exc}[/red]")
            continue
        console().print(f"[green]Authorised[/green] by SMS code: {cf}")
        return authorised
    raise AssertionError("unreachable")  # pragma: no cover
