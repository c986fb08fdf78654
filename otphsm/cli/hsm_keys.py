"""`otphsm admin hsm rotate-kek` and `rotate-pepper`: key rotation on the HSM token of a
configuration."""

from __future__ import annotations

import argparse
from pathlib import Path

from otphsm.cli.commands import CommandTree


def register(tree: CommandTree) -> None:
    tree.group("admin", help="operator tasks")
    tree.group("admin", "hsm", help="the HSM's keys")
    parser = tree.command(
        "admin",
        "hsm",
        "rotate-kek",
        handler=_rotate_kek,
        help="make a new KEK (as Security Officer), re-wrap every stored seed under it inside "
        "the HSM, destroy the old KEK once no row uses it; run it again to finish after a crash",
    )
    parser.add_argument("--config", type=Path, required=True, help="TOML configuration file")
    _so_pin_option(parser)
    parser.add_argument("--batch-size", type=int, default=100, help="rows per page (default 100)")
    parser.add_argument(
        "--settle-seconds",
        type=float,
        default=10.0,
        help="wait before the last count, for issuances in flight (default 10)",
    )
    _register_pepper(tree)


def _register_pepper(tree: CommandTree) -> None:
    parser = tree.command(
        "admin",
        "hsm",
        "rotate-pepper",
        handler=_rotate_pepper,
        help="make a new pepper key for every MAC from now on; older ones stay, so audit "
        "entries and stored codes made with them stay checkable",
    )
    parser.add_argument("--config", type=Path, required=True, help="TOML configuration file")


def _so_pin_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--so-pin-from-stdin",
        action="store_true",
        help="read the SO PIN from stdin (default: $OTPHSM_HSM_SO_PIN, else asked without echo)",
    )


def _so_pin(args: argparse.Namespace) -> str:
    import getpass
    import os
    import sys

    if args.so_pin_from_stdin:
        return sys.stdin.readline().rstrip("\n")
    return os.environ.get("OTPHSM_HSM_SO_PIN") or getpass.getpass("HSM Security Officer PIN: ")


def _rotate_kek(args: argparse.Namespace) -> int:
    from otphsm.core.app.key_rotation import rotate_kek
    from otphsm.hsm.keks import HsmKeyRing
    from otphsm.service.assembly import assemble
    from otphsm.service.config import load_config

    so_pin = _so_pin(args)
    assembly = assemble(load_config(args.config))
    try:
        report = rotate_kek(
            assembly.app,
            HsmKeyRing(assembly.vault, so_pin),
            batch_size=args.batch_size,
            settle_seconds=args.settle_seconds,
        )
    finally:
        assembly.close()
    how = "made" if report.started else "carried on"
    print(f"KEK {report.kek!r} ({how}): {report.rewrapped} seed(s) re-wrapped")
    if report.destroyed:
        print(f"destroyed: {', '.join(report.destroyed)}")
    if report.stuck:
        print(
            f"{report.stuck} seed(s) cannot be re-wrapped (their KEK was made before rotation "
            "existed): re-issue those tokens"
        )
    if report.kept:
        print(f"kept (still used): {', '.join(report.kept)}; run the command again to finish")
        return 1
    return 0


def _rotate_pepper(args: argparse.Namespace) -> int:
    from otphsm.core.app.key_rotation import rotate_pepper
    from otphsm.hsm.peppers import HsmPepperRing
    from otphsm.service.assembly import assemble
    from otphsm.service.config import load_config

    assembly = assemble(load_config(args.config))
    try:
        label = rotate_pepper(assembly.app, HsmPepperRing(assembly.vault))
    finally:
        assembly.close()
    print(f"pepper key {label!r} made: every new MAC is made with it")
    return 0
