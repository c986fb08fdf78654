"""`otphsm sim fob …`: a vendor's batch of key fobs (a PSKC file for the operator, a state file
for the emulated fobs), and the fobs' button and display."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from otphsm.cli.commands import CommandTree
from otphsm.core.errors import InvalidInput
from otphsm.core.otp import HashAlgorithm
from otphsm.core.tokens import OtpMode, OtpParameters
from otphsm.simulators.token.keyfob import fob_from, load_fobs, save_fobs
from otphsm.simulators.token.pskc_factory import (
    DEFAULT_PBKDF2_ITERATIONS,
    BatchSpec,
    make_batch_file,
)


def register(tree: CommandTree) -> None:
    tree.group("sim", help="simulated devices: HSM, card reader and card, tokens")
    tree.group("sim", "fob", help="emulated hardware key fobs and their vendor's PSKC file")
    batch = tree.command(
        "sim",
        "fob",
        "make-batch",
        handler=_make_batch,
        help="make a batch of fobs: a PSKC file for the operator, a state file for the fobs",
    )
    batch.add_argument("--out", required=True, type=Path, metavar="FILE", help="PSKC file")
    batch.add_argument(
        "--state", type=Path, metavar="STATEFILE", help="fobs' state (default: FILE.fobs.json)"
    )
    batch.add_argument("--count", type=int, default=1, metavar="N")
    secret = batch.add_mutually_exclusive_group(required=True)
    secret.add_argument("--psk", metavar="HEX", help="pre-shared AES key: 32, 48 or 64 hex digits")
    secret.add_argument("--password", metavar="P", help="password (PBKDF2)")
    batch.add_argument("--totp", action="store_true", help="display fobs (default: button/HOTP)")
    batch.add_argument("--digits", type=int, choices=(6, 8), default=6)
    batch.add_argument(
        "--algorithm", choices=[a.value for a in HashAlgorithm], default=HashAlgorithm.SHA1.value
    )
    batch.add_argument("--period", type=int, default=30, help="TOTP seconds per code")
    batch.add_argument(
        "--first", type=int, metavar="N", help="first serial number (default: random)"
    )
    batch.add_argument("--start-counter", type=int, default=0, help="HOTP counter at delivery")
    batch.add_argument(
        "--iterations",
        type=int,
        default=DEFAULT_PBKDF2_ITERATIONS,
        help="PBKDF2 iterations with --password",
    )
    batch.add_argument("--force", action="store_true", help="overwrite existing files")

    press = tree.command(
        "sim", "fob", "press", handler=_press, help="press a HOTP fob's button: print its code"
    )
    show = tree.command(
        "sim",
        "fob",
        "show",
        handler=_show,
        help="print what a fob shows: the display (TOTP) or a button press (HOTP)",
    )
    for parser in (press, show):
        parser.add_argument("state", type=Path, metavar="STATEFILE")
        parser.add_argument("serial", metavar="SERIAL")
    show.add_argument("--at", type=float, metavar="UNIX", help="time to show (default: now)")
    listing = tree.command(
        "sim", "fob", "list", handler=_list, help="list the fobs in a state file"
    )
    listing.add_argument("state", type=Path, metavar="STATEFILE")


def _make_batch(args: argparse.Namespace) -> int:
    out: Path = args.out
    state: Path = args.state or out.with_name(out.name + ".fobs.json")
    for path in (out, state):
        if path.exists() and not args.force:
            raise InvalidInput(f"{path} exists; pass --force to overwrite it")
    psk = None
    if args.psk is not None:
        try:
            psk = bytes.fromhex(args.psk)
        except ValueError:
            raise InvalidInput("--psk is hexadecimal") from None
    mode = OtpMode.TOTP if args.totp else OtpMode.HOTP
    params = OtpParameters(mode, HashAlgorithm(args.algorithm), args.digits, args.period)
    first = args.first if args.first is not None else _random_first(args.count)
    spec = BatchSpec(args.count, first, params, start_counter=args.start_counter)
    fobs = make_batch_file(
        out, spec, psk=psk, password=args.password, pbkdf2_iterations=args.iterations
    )
    save_fobs(state, fobs)
    protection = "a pre-shared key" if psk is not None else "a password (PBKDF2)"
    print(f"{len(fobs)} {mode.value.upper()} fobs, {params.digits} digits, {params.algorithm}")
    print(f"  serials {fobs[0].serial} .. {fobs[-1].serial}")
    print(f"  PSKC file {out} (secrets encrypted with {protection}, MACed)")
    print(f"  fob state {state} (the fobs' own memory: secrets in clear, mode 0600)")
    return 0


def _press(args: argparse.Namespace) -> int:
    fobs, fob = fob_from(args.state, args.serial)
    code = fob.press()
    save_fobs(args.state, fobs.values())
    print(code)
    return 0


def _show(args: argparse.Namespace) -> int:
    fobs, fob = fob_from(args.state, args.serial)
    now = args.at if args.at is not None else time.time()
    if fob.params.mode is OtpMode.HOTP:
        code = fob.press()
        save_fobs(args.state, fobs.values())
        print(code)
        return 0
    print(fob.code(now))
    left = fob.params.period - int(now + fob.clock_skew) % fob.params.period
    print(f"({left} s left)", file=sys.stderr)
    return 0


def _list(args: argparse.Namespace) -> int:
    for fob in load_fobs(args.state).values():
        params = fob.params
        detail = f"counter {fob.counter}" if params.mode is OtpMode.HOTP else f"{params.period} s"
        print(
            f"{fob.serial}  {params.mode.value}  {params.algorithm}  {params.digits} digits  "
            f"{detail}"
        )
    return 0


def _random_first(count: int) -> int:
    return int.from_bytes(os.urandom(4), "big") % (10**8 - count)
