"""`otphsm admin import-pskc FILE`: an operator imports a vendor's PSKC file of key fobs into
the service's inventory (AdminService.ImportPskc, role `admin`), all or nothing.

The file's key is `--psk HEX` (a pre-shared AES key) or `--password P` ('-' asks for it without
echo; `--pin-from-stdin` reads it from stdin). A refused file imports nothing and the reason is
printed (bad MAC, wrong key, malformed XML, …). Exit codes: see `otphsm.cli.ui`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from otphsm.cli.commands import CommandTree
from otphsm.cli.connection import add_connection_arguments, connect
from otphsm.cli.ui import ExitCode, Prompter, console

MAX_FILE_BYTES = 16 * 1024 * 1024
ASK = "-"


def register(tree: CommandTree) -> None:
    tree.group("admin", help="operator tasks")
    parser = tree.command(
        "admin",
        "import-pskc",
        handler=_import_pskc,
        help="import a vendor's PSKC file of key fobs into the inventory (all or nothing)",
    )
    parser.add_argument("file", type=Path, metavar="FILE")
    key = parser.add_mutually_exclusive_group(required=True)
    key.add_argument("--psk", metavar="HEX", help="the pre-shared AES key, in hex")
    key.add_argument("--password", metavar="P", help="the file's password ('-' asks)")
    parser.add_argument(
        "--pin-from-stdin", action="store_true", help="with --password -: read it from stdin"
    )
    add_connection_arguments(parser, "admin")


def _import_pskc(args: argparse.Namespace) -> int:
    from otphsm.client import Operator
    from otphsm.core.errors import InvalidInput

    path: Path = args.file
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise InvalidInput(f"{path} is larger than {MAX_FILE_BYTES} bytes")
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from None
    pre_shared_key: bytes | None = None
    password: str | None = None
    if args.psk is not None:
        try:
            pre_shared_key = bytes.fromhex(args.psk)
        except ValueError:
            raise InvalidInput("--psk is hexadecimal") from None
    else:
        password = args.password
        if password == ASK:
            password = Prompter(from_stdin=args.pin_from_stdin).secret(
                "PSKC file password: ", "PSKC password"
            )
    with connect(args) as client:
        tokens = Operator(client).import_pskc(
            data, pre_shared_key=pre_shared_key, password=password
        )
    from rich.table import Table

    table = Table("Serial", "Type", "Digits", box=None)
    for token in tokens:
        params = token.params
        table.add_row(
            token.serial, f"{params.mode.name} {params.algorithm.name}", str(params.digits)
        )
    out = console()
    out.print(f"Imported {len(tokens)} key fob(s) from {path} into the inventory:")
    out.print(table)
    return ExitCode.OK
