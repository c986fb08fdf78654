"""`otphsm sim hsm …`: an isolated SoftHSM2 for development and tests."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from otphsm.cli.commands import CommandTree


def register(tree: CommandTree) -> None:
    tree.group("sim", help="simulated devices: HSM, card reader and card, tokens")
    tree.group("sim", "hsm", help="a private SoftHSM2 token")
    parser = tree.command(
        "sim", "hsm", "init", handler=_init, help="create and provision a private SoftHSM2 token"
    )
    parser.add_argument("dir", type=Path, help="directory for the config, tokens and settings")
    parser.add_argument("--label", default="otphsm", help="token label (default: otphsm)")
    parser.add_argument("--pin", help="user PIN (default: random)")
    parser.add_argument("--so-pin", help="Security Officer PIN (default: random)")


def _init(args: argparse.Namespace) -> int:
    from otphsm.simulators.hsm.softhsm import (  # python-pkcs11: the `server` extra
        create_softhsm,
        load_settings,
        provision_softhsm,
        write_settings,
    )

    directory: Path = args.dir
    settings_file = directory / "otphsm-hsm.env"
    if settings_file.exists() and not (args.pin or args.so_pin):
        softhsm = load_settings(directory)
        if softhsm.token_label != args.label:
            softhsm = create_softhsm(
                directory, (args.label,), user_pin=softhsm.user_pin, so_pin=softhsm.so_pin
            )
    else:
        softhsm = create_softhsm(directory, (args.label,), user_pin=args.pin, so_pin=args.so_pin)
    softhsm.activate()
    report = provision_softhsm(softhsm)
    path = write_settings(softhsm)
    print(f"SoftHSM2 token {softhsm.token_label!r} in {softhsm.directory}")
    print(f"  KEK (trusted, wrap/unwrap only): {'created' if report.kek_created else 'kept'}")
    print(f"  pepper MAC key:                  {'created' if report.pepper_created else 'kept'}")
    print("For the [hsm] section of a server config (otphsm admin init-config writes it):")
    print(f'  softhsm_conf = "{softhsm.conf_path}"')
    print(f'  token_label = "{softhsm.token_label}"')
    print(f'  user_pin_file = "{softhsm.user_pin_path}"')
    print(f"Or in the environment (also in {path}, mode 0600, for `. {path}`; test PINs for")
    print("this simulator only; with OTPHSM_HSM_PIN set, leave hsm.user_pin_file out):")
    for key, value in softhsm.settings().items():
        print(f"export {key}={shlex.quote(value)}")
    return 0
