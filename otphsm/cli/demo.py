"""`otphsm demo` (what `make demo` runs): a private SoftHSM2, the development PKI, a private
pcscd with a simulated CPS card, and `otphsm serve` on SQLite, then the story of
`otphsm.demo.story`, narrated and checked as it goes.

Exit status: 0 when every step behaved as shown, 1 at the first step that did not (its line
says FAIL), 2 when a part could not be started, 130 when interrupted. Everything started is
stopped on the way out, whatever happened; `--keep DIR` leaves the files (not the processes).
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path
from types import FrameType

from otphsm.cli.commands import CommandTree


def register(tree: CommandTree) -> None:
    parser = tree.command("demo", handler=_run, help="play the whole flow on simulated devices")
    parser.add_argument(
        "--keep", type=Path, metavar="DIR", help="work in DIR and leave the files there"
    )


def _interrupt_on_sigterm() -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def _run(args: argparse.Namespace) -> int:
    from otphsm.core.errors import OtpHsmError
    from otphsm.demo.story import DemoFailure, Narrator, play
    from otphsm.demo.world import DemoWorld

    _interrupt_on_sigterm()
    started = time.monotonic()
    narrator = Narrator(lambda line: print(line, flush=True))
    with tempfile.TemporaryDirectory(prefix="otphsm-demo-") as tmp:
        directory: Path = args.keep or Path(tmp)
        directory.mkdir(parents=True, exist_ok=True)
        where = "kept" if args.keep else "removed at the end"
        narrator.step(f"Starting the parts in {directory} ({where})")
        try:
            with DemoWorld(directory, narrator.say) as world:
                play(world, narrator, directory)
        except DemoFailure as failure:
            print(f"\ndemo FAILED at: {failure}", file=sys.stderr)
            return 1
        except OtpHsmError as exc:
            print(f"\ndemo FAILED: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("\ndemo interrupted; everything it started is stopped", file=sys.stderr)
            return 130
    elapsed = time.monotonic() - started
    print(f"\ndemo: every step behaved as shown ({elapsed:.1f} s; all processes stopped)")
    return 0
