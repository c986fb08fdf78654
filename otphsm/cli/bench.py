"""`otphsm bench [--quick] [...]`: the service benchmark (bench/run.py of a source checkout).

The benchmark lives beside the package, not in it: it starts servers, a load generator and a
private PostgreSQL database, and draws a chart with matplotlib (the `bench` extra).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from otphsm.cli.commands import CommandTree
from otphsm.core.errors import ConfigurationError

BENCH_SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "run.py"


def register(tree: CommandTree) -> None:
    parser = tree.command(
        "bench", handler=_bench, help="measure Verify throughput/latency, replicas, enrolment"
    )
    parser.add_argument(
        "options",
        nargs=argparse.REMAINDER,
        help="passed to bench/run.py (--quick, --sections, --processes, --threads, --workers)",
    )


def _bench(args: argparse.Namespace) -> int:
    if not BENCH_SCRIPT.exists():
        raise ConfigurationError(
            f"{BENCH_SCRIPT} not found: the benchmark runs from a source checkout of otphsm"
        )
    return subprocess.call([sys.executable, str(BENCH_SCRIPT), *args.options])
