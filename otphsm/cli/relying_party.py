"""A relying party's calls from the command line (role `verifier`), to try a login by hand or
from a script:

    otphsm verify (--serial S | --cf CF) --code CODE [--origin O]
    otphsm login-code request --cf CF [--push]        an SMS (or push) login code
    otphsm login-code verify --cf CF --code CODE [--origin O]
    otphsm grid challenge --cf CF [--origin O]        the two Security Card cells to ask
    otphsm grid answer --cf CF --first V --second V [--origin O]

A code given as '-' is asked without echo (read from stdin with --pin-from-stdin). Each takes
`--json`. A check that does not pass (a wrong, replayed or expired code, a locked or inactive
token) exits 1 with its result; refusals and errors exit as in `otphsm.cli.ui`.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from otphsm.cli.commands import CommandTree
from otphsm.cli.connection import add_connection_arguments, connect
from otphsm.cli.ui import ExitCode, Prompter, console

if TYPE_CHECKING:
    from otphsm.client import Verifier
    from otphsm.core.verification import VerifyOutcome

ASK = "-"


def register(tree: CommandTree) -> None:
    verify = _command(tree, ("verify",), _verify, "check a login code (relying party)")
    which = verify.add_mutually_exclusive_group(required=True)
    which.add_argument("--serial", metavar="S", help="against this token")
    which.add_argument("--cf", metavar="CF", help="against the citizen's tokens")
    _add_code(verify, "--code", "the code the user typed ('-' asks)")

    tree.group("login-code", help="login codes sent by SMS or pushed to the token app")
    request = _command(tree, ("login-code", "request"), _request_code, "send a login code")
    request.add_argument("--cf", metavar="CF", required=True)
    request.add_argument("--push", action="store_true", help="to the token app, not by SMS")
    check = _command(tree, ("login-code", "verify"), _verify_code, "check a login code")
    check.add_argument("--cf", metavar="CF", required=True)
    _add_code(check, "--code", "the code the user typed ('-' asks)")

    tree.group("grid", help="Security Card logins (relying party)")
    challenge = _command(tree, ("grid", "challenge"), _challenge, "the two cells to ask")
    challenge.add_argument("--cf", metavar="CF", required=True)
    answer = _command(tree, ("grid", "answer"), _answer, "check the two cells' values")
    answer.add_argument("--cf", metavar="CF", required=True)
    _add_code(answer, "--first", "the first cell's value ('-' asks)")
    _add_code(answer, "--second", "the second cell's value ('-' asks)")


def _command(
    tree: CommandTree, path: tuple[str, ...], handler: Any, text: str
) -> argparse.ArgumentParser:
    parser = tree.command(*path, handler=handler, help=text)
    if path[-1] != "request":
        parser.add_argument("--origin", default="", help="the user's address or device id")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")
    add_connection_arguments(parser, "verifier")
    return parser


def _add_code(parser: argparse.ArgumentParser, option: str, text: str) -> None:
    parser.add_argument(option, required=True, metavar="CODE", help=text)
    if not any(action.dest == "pin_from_stdin" for action in parser._actions):
        parser.add_argument(
            "--pin-from-stdin", action="store_true", help="read '-' values from stdin"
        )


def _secret(args: argparse.Namespace, value: str, what: str) -> str:
    if value != ASK:
        return value
    return Prompter(from_stdin=args.pin_from_stdin).secret(f"{what}: ", what)


def _verifier(client: Any) -> Verifier:
    from otphsm.client import Verifier

    return Verifier(client)


def _verify(args: argparse.Namespace) -> int:
    code = _secret(args, args.code, "code")
    with connect(args) as client:
        outcome = _verifier(client).verify(
            code, serial=args.serial or "", codice_fiscale=args.cf or "", origin=args.origin
        )
    return _outcome(args, outcome)


def _verify_code(args: argparse.Namespace) -> int:
    code = _secret(args, args.code, "login code")
    with connect(args) as client:
        outcome = _verifier(client).verify_login_code(args.cf, code, origin=args.origin)
    return _outcome(args, outcome)


def _request_code(args: argparse.Namespace) -> int:
    with connect(args) as client:
        sent = _verifier(client).request_login_code(args.cf, push=args.push)
    if args.json:
        _print_json(
            {
                "expires_at": sent.expires_at,
                "prefix_required": sent.prefix_required,
                "device_serial": sent.device_serial,
            }
        )
    else:
        where = f"pushed to token {sent.device_serial}" if sent.device_serial else "sent by SMS"
        prefix = " (ask for the personal part first)" if sent.prefix_required else ""
        console().print(f"Login code {where}{prefix}.")
    return ExitCode.OK


def _challenge(args: argparse.Namespace) -> int:
    with connect(args) as client:
        asked = _verifier(client).grid_challenge(args.cf, origin=args.origin)
    if args.json:
        _print_json(
            {
                "serial": asked.serial,
                "first_cell": asked.first_cell,
                "second_cell": asked.second_cell,
                "expires_at": asked.expires_at,
            }
        )
    else:
        console().print(
            f"Ask for cells {asked.first_cell} and {asked.second_cell} of Security Card "
            f"{asked.serial}."
        )
    return ExitCode.OK


def _answer(args: argparse.Namespace) -> int:
    first = _secret(args, args.first, "first value")
    second = _secret(args, args.second, "second value")
    with connect(args) as client:
        outcome = _verifier(client).grid_answer(args.cf, first, second, origin=args.origin)
    return _outcome(args, outcome)


def _outcome(args: argparse.Namespace, outcome: VerifyOutcome) -> int:
    from otphsm.core.verification import VerifyResult

    accepted = outcome.result is VerifyResult.OK
    if args.json:
        _print_json(
            {
                "result": outcome.result.value,
                "ok": accepted,
                "serial": outcome.serial,
                "retry_after_seconds": int(outcome.retry_after),
            }
        )
    else:
        wait = f" (try again in {int(outcome.retry_after)} s)" if outcome.retry_after else ""
        token = f" by token {outcome.serial}" if outcome.serial else ""
        console().print(f"{outcome.result.value.upper()}{token}{wait}")
    return ExitCode.OK if accepted else ExitCode.NOT_ACCEPTED


def _print_json(document: dict[str, Any]) -> None:
    print(json.dumps(document, indent=2, sort_keys=True))
