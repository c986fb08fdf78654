"""`otphsm sim hsm …`: an isolated SoftHSM2 for development and tests."""

from __future__ import annotations

import argparse

from otphsm.cli.commands import CommandTree


def register(tree: CommandTree) -> None:
    tree.group("sim", help="simulated devices: HSM, card reader and card, tokens")
    tree.group("sim", "hsm", help="a private SoftHSM2 token")
    parser = tree.command("sim", "hsm", "init", handler=_init, help="create and provision a token")
    parser.add_argument("dir")


def _init(args: argparse.Namespace) -> int:
    raise NotImplementedError
