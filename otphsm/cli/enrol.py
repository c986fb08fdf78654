"""`otphsm enrol …`: the technician at the counter, with the citizen's card in a PC/SC reader.

    otphsm enrol readers
    otphsm enrol new        [--reader R] [--phone +39…] [--temporary-secret | --otpauth] …
    otphsm enrol replace    (--card | --sms --codice-fiscale CF) [issuing options]
    otphsm enrol assign-fob SERIAL [--sms --codice-fiscale CF] [--code CODE]

Every command but `readers` calls the service as `enroller` (see `--help` for the options).
The card PIN, the temporary secret and the SMS code are asked without echo; with
`--pin-from-stdin` they are read from stdin instead, one per line, in the order asked.
Exit codes: see `otphsm.cli.ui` (3 = the card or reader, 4 = refused, 5 = unreachable).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from otphsm.cli.commands import CommandTree
from otphsm.cli.connection import add_connection_arguments, connect
from otphsm.cli.enrol_authorise import authorisation, card_authorisation
from otphsm.cli.ui import ExitCode, Prompter, clock_time, console, pairs_table

if TYPE_CHECKING:
    from otphsm.client.station import Authorised, Station

DEFAULT_CARD_TIMEOUT = 60.0
FIRST_CODE_ATTEMPTS = 3


def register(tree: CommandTree) -> None:
    tree.group("enrol", help="the technician's station: card authorisation, tokens, fobs")
    tree.command("enrol", "readers", handler=_readers, help="list the card readers")

    new = tree.command(
        "enrol",
        "new",
        handler=_new,
        help="authorise with the citizen's card, then hand out an activation",
    )
    _card_arguments(new)
    new.add_argument("--phone", metavar="E164", help="record the citizen's phone for SMS codes")
    _issue_arguments(new)

    replace = tree.command(
        "enrol",
        "replace",
        handler=_replace,
        help="a lost phone: authorise by SMS code or card, then activate the new phone",
    )
    how = replace.add_mutually_exclusive_group(required=True)
    how.add_argument("--sms", action="store_true", help="send a code to the recorded phone")
    how.add_argument("--card", action="store_true", help="a fresh card authorisation")
    replace.add_argument("--codice-fiscale", metavar="CF", help="with --sms: whose phone")
    _card_arguments(replace)
    _issue_arguments(replace)

    fob = tree.command(
        "enrol",
        "assign-fob",
        handler=_assign_fob,
        help="give a key fob from the inventory to the citizen (card or SMS authorisation)",
    )
    fob.add_argument("serial", metavar="SERIAL", help="as printed on the fob")
    fob.add_argument("--sms", action="store_true", help="authorise by SMS code, not the card")
    fob.add_argument("--codice-fiscale", metavar="CF", help="with --sms: whose phone")
    fob.add_argument("--code", help="the code the fob shows now: it turns ACTIVE at once")
    _card_arguments(fob)


def _card_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("the card")
    group.add_argument("--reader", help="the reader whose name contains this (default: any)")
    group.add_argument(
        "--timeout",
        type=float,
        default=DEFAULT_CARD_TIMEOUT,
        metavar="SECONDS",
        help=f"how long to wait for the card (default {DEFAULT_CARD_TIMEOUT:g})",
    )
    group.add_argument(
        "--pin-from-stdin",
        action="store_true",
        help="read the PIN, secret or SMS code from stdin, one per line, without prompting",
    )
    add_connection_arguments(parser, "enroller")


def _issue_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("the activation handed out")
    method = group.add_mutually_exclusive_group()
    method.add_argument(
        "--temporary-secret",
        action="store_true",
        help="the citizen types a 5-digit secret here, then in the app (valid 5 min)",
    )
    method.add_argument(
        "--otpauth",
        action="store_true",
        help="compatibility: an otpauth:// QR for any authenticator app (shows the seed once)",
    )
    group.add_argument(
        "--png",
        type=Path,
        metavar="FILE",
        help="where to save the QR (default: activation-SERIAL.png)",
    )
    group.add_argument("--show-uri", action="store_true", help="with --otpauth: print the URI")
    group.add_argument(
        "--code",
        help="with --otpauth: the first code the app shows, confirmed at once (default: asked "
        "after the QR; with --pin-from-stdin, the next line; empty skips)",
    )
    group.add_argument(
        "--period",
        type=int,
        default=0,
        metavar="SECONDS",
        help="TOTP step (default: the service's, 30)",
    )
    group.add_argument("--digits", type=int, default=0, choices=(0, 6, 7, 8))


# --- commands -----------------------------------------------------------------------------


def _readers(args: argparse.Namespace) -> int:
    from otphsm.client.station import reader_statuses

    statuses = reader_statuses()
    if not statuses:
        console().print(
            "No card reader is connected: plug one in (simulated: `otphsm sim pcscd`, then "
            "export the PCSCLITE_CSOCK_NAME it prints)."
        )
        return ExitCode.CARD
    pairs_table(
        *((s.name, "card inserted" if s.card_present else "empty") for s in statuses),
        header=("Reader", "State"),
    )
    return ExitCode.OK


def _check_issue_arguments(args: argparse.Namespace) -> None:
    """Before the card: what the issuing options cannot mean together."""
    if args.code is not None and not args.otpauth:
        from otphsm.core.errors import InvalidInput

        raise InvalidInput("--code goes with --otpauth")


def _new(args: argparse.Namespace) -> int:
    from otphsm.client.station import Station

    _check_issue_arguments(args)
    with connect(args) as client:
        station = Station(client)
        authorised = card_authorisation(station, args)
        if args.phone:
            station.set_phone_number(authorised.codice_fiscale, args.phone)
            console().print(f"Phone number recorded for SMS codes: {_masked(args.phone)}")
        return _issue_and_show(station, authorised, args)


def _replace(args: argparse.Namespace) -> int:
    from otphsm.client.station import Station

    _check_issue_arguments(args)
    with connect(args) as client:
        station = Station(client)
        authorised = authorisation(station, args)
        return _issue_and_show(station, authorised, args)


def _assign_fob(args: argparse.Namespace) -> int:
    from otphsm.client.station import Station

    code = args.code or ""
    if not code and not args.pin_from_stdin and sys.stdin.isatty():
        code = input("Code the fob shows now (press its button; empty to skip): ").strip()
    with connect(args) as client:
        station = Station(client)
        authorised = authorisation(station, args)
        token, proof = station.assign_fob(authorised.authorisation_id, args.serial, code)
    state = token.state.value
    console().print(f"Key fob [bold]{token.serial}[/bold] assigned to {token.codice_fiscale}")
    if proof is None:
        console().print("It stays pending until its first code proves the citizen holds it.")
        return ExitCode.OK
    result = proof.result.value
    if proof.ok:
        console().print(f"First code accepted: the fob is {state}.")
        return ExitCode.OK
    console().print(
        f"[red]The first code was not accepted ({result})[/red]: the fob is {state}; its first "
        "valid code through the citizen's portal (DeviceService.ProvePossession) activates it."
    )
    return ExitCode.NOT_ACCEPTED


# --- handing out the activation -----------------------------------------------------------


def _issue_and_show(station: Station, authorised: Authorised, args: argparse.Namespace) -> int:
    from otphsm.core.records import ActivationMethod

    secret = ""
    if args.temporary_secret:
        method = ActivationMethod.TEMPORARY_SECRET
        from otphsm.core.activation import check_temporary_secret

        secret = Prompter(from_stdin=args.pin_from_stdin).new_secret(
            "The citizen chooses a 5-digit secret: ", "temporary secret", check_temporary_secret
        )
    elif args.otpauth:
        method = ActivationMethod.OTPAUTH
    else:
        method = ActivationMethod.CODE
    issued = station.issue_token(
        authorised.authorisation_id,
        method,
        temporary_secret=secret,
        period=args.period,
        digits=args.digits,
    )
    token = issued.token
    out = console()
    out.print(
        f"Token [bold]{token.serial}[/bold] created for {token.codice_fiscale}: pending "
        "until the app proves possession with its first code"
    )
    if token.replaces_serial:
        out.print(
            f"It replaces {token.replaces_serial}, revoked when the new phone proves possession"
        )
    until = clock_time(issued.activation_expires_at)
    if method is ActivationMethod.TEMPORARY_SECRET:
        out.print(
            f"Temporary-secret session open until {until}: in the app, the citizen "
            "enters their codice fiscale and the secret they chose"
        )
        return ExitCode.OK
    if method is ActivationMethod.CODE:
        out.print(f"Activation code: [bold]{issued.activation_code}[/bold]  (valid until {until})")
    else:
        out.print("Scan this QR with any authenticator app (it holds the seed: show it once)")
        if args.show_uri:
            out.print(issued.otpauth_uri, markup=False, soft_wrap=True)
    out.print(issued.qr_text, markup=False, highlight=False, soft_wrap=True)
    png = args.png or Path(f"activation-{token.serial}.png")
    _write_private(png, issued.qr_png)
    out.print(f"QR saved to {png} (owner-only: it holds the activation)")
    if method is ActivationMethod.OTPAUTH:
        return _confirm_first_code(station, token.serial, args)
    return ExitCode.OK


def _confirm_first_code(station: Station, serial: str, args: argparse.Namespace) -> int:
    """Compatibility mode: the code the citizen's app shows after the scan, typed here, turns
    the token active (an ordinary app cannot prove possession itself). A wrong code is asked
    again (up to FIRST_CODE_ATTEMPTS) unless given with --code; none leaves it pending."""
    from otphsm.core.verification import VerifyResult

    out = console()
    for attempt in range(1, FIRST_CODE_ATTEMPTS + 1):
        code = args.code if args.code is not None else _ask_first_code(args)
        if not code:
            out.print(
                "Not confirmed: the token stays pending until its first code is typed here "
                f"(otphsm enrol … --otpauth --code) or proved; serial {serial}"
            )
            return ExitCode.OK
        proof = station.confirm_first_code(serial, code)
        if proof.ok:
            out.print("First code accepted: the token is active.")
            return ExitCode.OK
        result = proof.result.value
        last = args.code is not None or attempt == FIRST_CODE_ATTEMPTS
        if last or proof.result is VerifyResult.LOCKED:
            out.print(f"[red]The first code was not accepted ({result})[/red]: it stays pending.")
            return ExitCode.NOT_ACCEPTED
        out.print(f"[red]Not accepted ({result})[/red]: type the code the app shows now.")
    raise AssertionError("unreachable")  # pragma: no cover


def _ask_first_code(args: argparse.Namespace) -> str:
    if args.pin_from_stdin:
        return sys.stdin.readline().strip()
    if not sys.stdin.isatty():
        return ""
    return input("First code the app shows (empty to skip): ").strip()


def _write_private(path: Path, data: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as stream:
        stream.write(data)
    os.chmod(path, 0o600)


def _masked(phone: str) -> str:
    return phone[:3] + "…" + phone[-3:] if len(phone) > 6 else "…"
