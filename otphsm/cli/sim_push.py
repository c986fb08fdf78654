"""`otphsm sim push show`: the notifications the simulated push service delivered to one token
app (its per-device outbox), as the phone would show them."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
from pathlib import Path

from otphsm.cli.commands import CommandTree
from otphsm.core.errors import InvalidInput
from otphsm.simulators.sms.inbox import PUSH_OUTBOX_ENV


def register(tree: CommandTree) -> None:
    tree.group("sim", help="simulated devices: HSM, card reader and card, tokens")
    tree.group("sim", "push", help="the simulated push service (codes sent to the token app)")
    parser = tree.command(
        "sim", "push", "show", handler=_show, help="show the notifications pushed to a device"
    )
    parser.add_argument(
        "--outbox",
        type=Path,
        metavar="DIR",
        help=f"the service's sms.push_outbox (default ${PUSH_OUTBOX_ENV})",
    )
    parser.add_argument("--serial", required=True, help="the token serial of the device")
    parser.add_argument("--last", action="store_true", help="only the newest notification")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")


def _show(args: argparse.Namespace) -> int:
    from otphsm.simulators.sms.inbox import read_push_messages

    outbox = args.outbox or os.environ.get(PUSH_OUTBOX_ENV)
    if not outbox:
        raise InvalidInput(f"name the outbox: --outbox DIR or ${PUSH_OUTBOX_ENV}")
    messages = read_push_messages(Path(outbox), args.serial)
    if args.last:
        messages = messages[-1:]
    if not messages:
        print(f"no notifications for {args.serial} in {outbox}")
        return 1
    for message in messages:
        if args.json:
            print(json.dumps({"at": message.at, "serial": message.serial, "text": message.text}))
        else:
            at = dt.datetime.fromtimestamp(message.at, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
            print(f"{at}  {message.text}")
    return 0
