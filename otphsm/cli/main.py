"""`otphsm` entry point. Each command group lives in its own module exposing `register()`.

Every command's typed error ends here: one line on stderr and its code from the one table
(`otphsm.cli.ui.exit_code_for`, README "The command line"); Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from otphsm.cli.commands import CommandTree
from otphsm.cli.ui import ExitCode, exit_code_for
from otphsm.core.errors import OtpHsmError

# Each module exposes `register(tree: CommandTree) -> None`.
COMMAND_MODULES = (
    "otphsm.cli.sim_hsm",
    "otphsm.cli.demo",
    "otphsm.cli.sim_card",
    "otphsm.cli.fobs",
    "otphsm.cli.card",
    "otphsm.cli.service",
    "otphsm.cli.hsm_keys",
    "otphsm.cli.sim_push",
    "otphsm.cli.enrol",
    "otphsm.cli.token",
    "otphsm.cli.inventory",
    "otphsm.cli.admin_ops",
    "otphsm.cli.relying_party",
    "otphsm.cli.bench",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="otphsm", description=__doc__)
    tree = CommandTree(parser.add_subparsers(dest="cmd", required=True, metavar="COMMAND"))
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(tree)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.handler(args)
    except OtpHsmError as exc:
        print(f"otphsm: error: {exc}", file=sys.stderr)
        return exit_code_for(exc)
    except KeyboardInterrupt:
        print("\notphsm: interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    return result


if __name__ == "__main__":
    sys.exit(main())
