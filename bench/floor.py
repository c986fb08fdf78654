"""The floor of a verification: what it costs in one process, without serving it.

    python bench/floor.py --config FILE --tokens FILE [--rounds N]

The config is a `serve` config (store, HSM); the tokens file a JSON list of [serial, secret
hex, next counter] the database holds. One thread verifies valid HOTP codes with an origin
through the same use case `otphsm serve` runs (`validation.verify_serial`), then times its
parts alone: a token read, one HMAC in the HSM, one durable token write. Prints one JSON
object: CPU µs per call of each, and the tokens' next counters. Beside the do-nothing
servicer's CPU per call (serving alone), these say how close to it a verify can come.

On PostgreSQL it also counts the database server's own CPU per verify of the use case
(`database_us`: every `postgres` process on this host, its backends and WAL writer among
them, from /proc), which shares the host's cores with otphsm where both run on one machine.
SQLite's work is the process's own, already in `use_case_us`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from otphsm.core.app import validation
from otphsm.core.app.context import Actor, Role
from otphsm.core.otp import hotp
from otphsm.service.assembly import assemble
from otphsm.service.config import load_config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from load import _mac

ORIGIN = "198.51.100.9"


def postgres_cpu_seconds() -> float:
    """CPU seconds used so far by the processes named `postgres` on this host (Linux)."""
    ticks = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # gone meanwhile
        name, _, rest = text.partition(") ")
        if name.endswith("(postgres"):
            fields = rest.split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
    return ticks / os.sysconf("SC_CLK_TCK")


def cpu_per_call(rounds: int, call: Callable[[int], object]) -> float:
    started = time.process_time()
    for index in range(rounds):
        call(index)
    return (time.process_time() - started) / rounds * 1e6


def measure(config_path: Path, tokens: list[list[Any]], rounds: int) -> dict[str, Any]:
    config = load_config(config_path, env={})
    on_postgres = config.store.url.startswith("postgresql")
    assembly = assemble(config)
    app = assembly.app
    actor = Actor("CN=bench floor", Role.VERIFIER)
    try:

        def verify(index: int) -> None:
            token = tokens[index % len(tokens)]
            code = hotp(_mac(bytes.fromhex(token[1])), token[2], 6)
            token[2] += 1
            outcome = validation.verify_serial(app, actor, token[0], code, ORIGIN)
            if outcome.result.name != "OK":
                raise SystemExit(f"the floor's verify answered {outcome.result.name}")

        cpu_per_call(min(200, rounds), verify)  # warm: seeds unwrapped, statements prepared
        database_before = postgres_cpu_seconds() if on_postgres else None
        use_case = cpu_per_call(rounds, verify)
        database = None
        if database_before is not None:
            database = (postgres_cpu_seconds() - database_before) / rounds * 1e6
        stored = [app.store.get_token(token[0]) for token in tokens[:200]]
        held = [token for token in stored if token is not None]

        def read(index: int) -> None:
            app.store.get_token(held[index % len(held)].serial)

        def hmac(index: int) -> None:
            token = held[index % len(held)]
            if token.seed is not None:
                app.hsm.hmac(token.seed, token.params.algorithm, index.to_bytes(8, "big"))

        def write(index: int) -> None:
            token = app.store.get_token(held[index % len(held)].serial)
            if token is not None:
                app.store.update_token(token)

        parts = {
            "token_read": cpu_per_call(rounds, read),
            "hmac": cpu_per_call(rounds, hmac),
            "read_and_durable_write": cpu_per_call(rounds // 2, write),
        }
    finally:
        assembly.close()
    return {
        "use_case_us": use_case,
        "database_us": database,
        "parts_us": parts,
        "counters": {token[0]: token[2] for token in tokens},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--tokens", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=1000)
    args = parser.parse_args()
    tokens = json.loads(args.tokens.read_text())
    print(json.dumps(measure(args.config, tokens, args.rounds)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
