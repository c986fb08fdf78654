"""`otphsm` entry point. Each command group lives in its own module exposing `register()`.

Every command's typed error ends here: one line on stderr and its code from the one table
(`otphsm.cli.ui.exit_code_for`, README "The command line"); Ctrl-C exits 130. `otphsm --help`
shows `USAGE` and `START_HERE`, written for the people who type the commands.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from otphsm import __version__
from otphsm.cli.commands import CommandTree
from otphsm.cli.ui import ExitCode, exit_code_for
from otphsm.core.errors import OtpHsmError

# Each module exposes `register(tree: CommandTree) -> None`. `otphsm --help` lists the groups
# in the order they are first registered: the service and the operator's, the station's, the
# citizen's app, the relying party's, then the simulators, the demo and the benchmark.
COMMAND_MODULES = (
    "otphsm.cli.service",
    "otphsm.cli.health",
    "otphsm.cli.hsm_keys",
    "otphsm.cli.inventory",
    "otphsm.cli.admin_ops",
    "otphsm.cli.enrol",
    "otphsm.cli.token",
    "otphsm.cli.relying_party",
    "otphsm.cli.card",  # also `sim pcscd` and `sim card insert`: the simulators follow
    "otphsm.cli.sim_hsm",
    "otphsm.cli.sim_card",
    "otphsm.cli.fobs",
    "otphsm.cli.sim_push",
    "otphsm.cli.demo",
    "otphsm.cli.bench",
)


USAGE = """\
One-time passwords for citizens' logins, with every secret kept inside an HSM (PKCS#11).

A technician enrols a citizen at a counter with their CNS smart card in a reader; the citizen's
phone app (or a key fob) then shows the codes a relying party checks with the service.
"""

START_HERE = """\
where to start:
  otphsm demo                  the whole story on simulated devices (HSM, card, phone)
  otphsm serve --config FILE   the service (operators: also `admin` and `audit`)
  otphsm admin token --help    an operator's token commands: list, show, suspend, revoke, …
  otphsm enrol new --help      the technician's station: the citizen's card, then a token
  otphsm token --help          the citizen's app, emulated on this machine
  otphsm verify --help         a relying party's check of a code
  otphsm COMMAND --help        the options of any command

Exit codes: 0 done, 1 checked but not passed, 2 invalid input or configuration, 3 the card or
reader, 4 refused, 5 the service or a device unreachable, 130 interrupted. More in README.md.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="otphsm",
        description=USAGE,
        epilog=START_HERE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"otphsm {__version__}")
    tree = CommandTree(
        parser.add_subparsers(title="commands", dest="cmd", required=True, metavar="COMMAND")
    )
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
