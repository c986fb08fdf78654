"""`otphsm token …`: the citizen's token app, emulated (`otphsm.simulators.token.mobile_app`).

    otphsm token activate --code CODE                          (secure ECDH activation)
    otphsm token activate --temporary-secret S --codice-fiscale CF
    otphsm token add-uri 'otpauth://totp/…'                    (compatibility, local only)
    otphsm token code [ACCOUNT]        the current code and the seconds it has left
    otphsm token prove [ACCOUNT]       send the current code as proof of possession again
    otphsm token list | remove ACCOUNT | settings [--skew S] [--remember MIN] | lock
    otphsm token inbox [--push-outbox DIR]   the codes pushed to the app's tokens, newest first

The app keeps its accounts in a state file (`--state`, default $OTPHSM_TOKEN_STATE or
~/.local/share/otphsm/token-app.json, mode 0600: it is the phone's storage and holds the seeds,
which no command ever prints). The 5-digit app PIN is chosen at the first activation and asked
before codes are shown, then remembered 0, 5 or 10 minutes (`--remember`); 5 wrong PINs in a
row wipe every account. `--skew SECONDS` sets how far the phone's clock is off (kept).
`activate` and `prove` call the service as `device`. `inbox` reads the simulated push service's
outbox directory (the service's `sms.push_outbox`; `--push-outbox`, default $OTPHSM_PUSH_OUTBOX)
and, since the notifications carry login codes, asks the PIN first. Exit codes: see
`otphsm.cli.ui`.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from otphsm.cli.commands import CommandTree, Handler
from otphsm.cli.connection import add_connection_arguments, connect
from otphsm.cli.ui import ExitCode, Prompter, console
from otphsm.simulators.sms.inbox import PUSH_OUTBOX_ENV

if TYPE_CHECKING:
    from otphsm.simulators.token.mobile_app import Activated, MobileApp

STATE_ENV = "OTPHSM_TOKEN_STATE"
REMEMBER_MINUTES = (0, 5, 10)
NO_ACCOUNT_HINT = (
    "add one with `otphsm token activate --code CODE` (the code the station printed) "
    "or `otphsm token add-uri URI`; a different phone is --state FILE"
)
ASK = "-"
"""An option value that means: ask for it without echo."""


def register(tree: CommandTree) -> None:
    tree.group("token", help="the citizen's token app (emulated phone)")
    activate = _command(tree, "activate", _activate, "activate an account with the service")
    how = activate.add_mutually_exclusive_group(required=True)
    how.add_argument("--code", help="the 18-digit activation code (or the QR text); '-' asks")
    how.add_argument("--temporary-secret", metavar="S", help="5 digits chosen at the counter")
    activate.add_argument("--codice-fiscale", metavar="CF", help="with --temporary-secret")
    activate.add_argument(
        "--remember",
        type=int,
        choices=REMEMBER_MINUTES,
        metavar="MINUTES",
        help="remember the PIN 0, 5 or 10 minutes",
    )
    add_connection_arguments(activate, "device")

    add_uri = _command(tree, "add-uri", _add_uri, "scan an otpauth:// URI (compatibility mode)")
    add_uri.add_argument("uri", metavar="URI")
    add_uri.add_argument("--remember", type=int, choices=REMEMBER_MINUTES, metavar="MINUTES")

    code = _command(tree, "code", _code, "show the current code(s) and the seconds left")
    code.add_argument("account", nargs="?", metavar="ACCOUNT", help="default: every account")

    prove = _command(tree, "prove", _prove, "send the current code to confirm an activation")
    prove.add_argument("account", nargs="?", metavar="ACCOUNT")
    add_connection_arguments(prove, "device")

    _command(tree, "list", _list, "the accounts in the app (never their seeds)")
    remove = _command(tree, "remove", _remove, "delete an account from the app")
    remove.add_argument("account", metavar="ACCOUNT")
    settings = _command(tree, "settings", _settings, "show or change the phone's settings")
    settings.add_argument("--remember", type=int, choices=REMEMBER_MINUTES, metavar="MINUTES")
    _command(tree, "lock", _lock, "forget a remembered PIN")
    inbox = _command(tree, "inbox", _inbox, "the login codes pushed to the app, newest first")
    outbox_help = f"the service's sms.push_outbox (default ${PUSH_OUTBOX_ENV})"
    inbox.add_argument("--push-outbox", type=Path, metavar="DIR", help=outbox_help)


def _command(
    tree: CommandTree, name: str, handler: Handler, help_text: str
) -> argparse.ArgumentParser:
    parser = tree.command("token", name, handler=handler, help=help_text)
    parser.add_argument("--state", type=Path, metavar="FILE", help="the app's state file")
    parser.add_argument(
        "--skew",
        type=float,
        metavar="SECONDS",
        help="the phone's clock is this far ahead (negative: behind)",
    )
    parser.add_argument(
        "--pin-from-stdin",
        action="store_true",
        help="read the app PIN (and secrets) from stdin, one per line",
    )
    return parser


def _open(args: argparse.Namespace) -> MobileApp:
    from otphsm.core.clock import SystemClock
    from otphsm.simulators.token.mobile_app import AppStore, MobileApp

    path = args.state or _default_state()
    app = MobileApp(SystemClock(), AppStore(path))
    remember = getattr(args, "remember", None)
    if args.skew is not None or remember is not None:
        app.configure(skew=args.skew, remember=None if remember is None else remember * 60)
    return app


def _default_state() -> Path:
    if os.environ.get(STATE_ENV):
        return Path(os.environ[STATE_ENV])
    data = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return data / "otphsm" / "token-app.json"


def _unlock(app: MobileApp, args: argparse.Namespace) -> None:
    if app.pin_needed():
        app.unlock(Prompter(from_stdin=args.pin_from_stdin).secret("App PIN: ", "app PIN"))


def _new_pin(app: MobileApp, args: argparse.Namespace) -> str | None:
    """The PIN a first account sets (asked twice), or unlock with the existing one."""
    prompter = Prompter(from_stdin=args.pin_from_stdin)
    if app.has_pin:
        _unlock(app, args)
        return None
    from otphsm.simulators.token.app_state import check_app_pin

    return prompter.new_secret("Choose a 5-digit app PIN: ", "app PIN", check_app_pin)


# --- commands -----------------------------------------------------------------------------


def _activate(args: argparse.Namespace) -> int:
    from otphsm.simulators.token.grpc_gateway import GrpcDeviceGateway

    prompter = Prompter(from_stdin=args.pin_from_stdin)
    app = _open(args)
    code = args.code
    if code == ASK:
        code = prompter.secret("Activation code: ", "activation code")
    secret = args.temporary_secret
    if secret == ASK:
        secret = prompter.secret("Temporary secret: ", "temporary secret")
    if secret is not None and not args.codice_fiscale:
        from otphsm.core.errors import InvalidInput

        raise InvalidInput("--temporary-secret needs --codice-fiscale")
    new_pin = _new_pin(app, args)
    with connect(args) as client:
        gateway = GrpcDeviceGateway(client)
        if code is not None:
            activated = app.activate_with_code(gateway, _code_from_qr(code), new_pin=new_pin)
        else:
            activated = app.activate_with_temporary_secret(
                gateway, args.codice_fiscale, secret, new_pin=new_pin
            )
    return _report_activation(activated)


def _code_from_qr(text: str) -> str:
    """The activation code typed, or the text of the station's QR (otphsm://activate?code=…)."""
    import urllib.parse

    if text.startswith("otphsm://"):
        query = urllib.parse.parse_qs(urllib.parse.urlsplit(text).query)
        return (query.get("code") or [""])[0]
    return text


def _report_activation(activated: Activated) -> int:
    out = console()
    account = activated.account
    verb = "replaced" if activated.replaced else "added"
    out.print(
        f"Account [bold]{account.name}[/bold] {verb} (token {account.serial}); "
        "the seed was derived on the phone and in the HSM, it never travelled"
    )
    proof = activated.proof
    if proof.ok:
        out.print("First code accepted by the service: the token is active.")
        return ExitCode.OK
    out.print(
        f"[red]The service did not accept the first code ({proof.result.value})[/red]: "
        "check the phone's clock (--skew), then `otphsm token prove`."
    )
    return ExitCode.NOT_ACCEPTED


def _add_uri(args: argparse.Namespace) -> int:
    app = _open(args)
    new_pin = _new_pin(app, args)
    account = app.add_uri(args.uri, new_pin=new_pin)
    console().print(f"Account [bold]{account.name}[/bold] added (compatibility mode, local only)")
    return ExitCode.OK


def _code(args: argparse.Namespace) -> int:
    app = _open(args)
    if not app.accounts:
        from otphsm.core.errors import NotFound

        raise NotFound(f"the app holds no account: {NO_ACCOUNT_HINT}")
    _unlock(app, args)
    shown = [app.code(args.account)] if args.account else app.codes()
    for item in shown:
        left = "" if item.seconds_left is None else f"  ({item.seconds_left} s left)"
        pending = "" if item.account.confirmed else "  [not confirmed: otphsm token prove]"
        console().print(f"{item.account.name}  {item.code}{left}{pending}", markup=False)
    return ExitCode.OK


def _prove(args: argparse.Namespace) -> int:
    from otphsm.simulators.token.grpc_gateway import GrpcDeviceGateway

    app = _open(args)
    _unlock(app, args)
    with connect(args) as client:
        proof = app.prove(GrpcDeviceGateway(client), args.account)
    if proof.ok:
        console().print("Code accepted: the token is active.")
        return ExitCode.OK
    console().print(f"The service did not accept the code ({proof.result.value}).")
    return ExitCode.NOT_ACCEPTED


def _list(args: argparse.Namespace) -> int:
    from rich.table import Table

    app = _open(args)
    table = Table("Account", "Token", "Type", "Origin", "State", box=None)
    for account in app.accounts:
        params = account.params
        kind = f"{params.mode.value} {params.algorithm.value} {params.digits} digits"
        if params.mode.value == "totp":
            kind += f" {params.period} s"
        state = "active" if account.confirmed else "not confirmed"
        table.add_row(account.name, account.serial or "-", kind, account.origin, state)
    console().print(table if app.accounts else f"The app holds no account: {NO_ACCOUNT_HINT}.")
    return ExitCode.OK


def _remove(args: argparse.Namespace) -> int:
    app = _open(args)
    _unlock(app, args)
    removed = app.remove(args.account)
    console().print(f"Account {removed.name} removed from the app (the service still knows it).")
    return ExitCode.OK


def _settings(args: argparse.Namespace) -> int:
    app = _open(args)
    state = app.state
    minutes = state.remember_seconds // 60
    console().print(f"Phone clock: {state.skew_seconds:+g} s from the true time")
    console().print(
        f"App PIN: {'set' if state.has_pin else 'not set'}; remembered {minutes} min; "
        f"{state.pin_failures} wrong in a row"
    )
    return ExitCode.OK


def _inbox(args: argparse.Namespace) -> int:
    import datetime as dt

    outbox = args.push_outbox or _default_push_outbox()
    app = _open(args)
    if not app.accounts:
        console().print(f"The app holds no account: {NO_ACCOUNT_HINT}.")
        return ExitCode.OK
    _unlock(app, args)
    notifications = app.inbox(outbox)
    if not notifications:
        console().print(f"No notifications for the app's tokens in {outbox}.", markup=False)
    for item in notifications:
        at = dt.datetime.fromtimestamp(item.at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        line = f"{at}  {item.account.serial}  {item.text}"
        console().print(line, markup=False, soft_wrap=True)  # one line each, for scripts too
    return ExitCode.OK


def _default_push_outbox() -> Path:
    if os.environ.get(PUSH_OUTBOX_ENV):
        return Path(os.environ[PUSH_OUTBOX_ENV])
    from otphsm.core.errors import InvalidInput

    raise InvalidInput(f"name the push service's outbox: --push-outbox DIR or ${PUSH_OUTBOX_ENV}")


def _lock(args: argparse.Namespace) -> int:
    _open(args).lock()
    console().print("The app PIN will be asked at the next code.")
    return ExitCode.OK
