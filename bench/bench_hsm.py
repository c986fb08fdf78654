"""HMAC throughput through the HSM beside stdlib HMAC measured in the same run.

    python bench/bench_hsm.py [--seconds 2] [--json]

`make bench` (bench/run.py) runs it as a subprocess: a process loads one SoftHSM2 config.

Starts a private SoftHSM2 in a temp directory; prints ops/s per path and the ratio to stdlib.
"""

from __future__ import annotations

import argparse
import hmac
import json
import multiprocessing
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from otphsm.core.otp import HashAlgorithm
from otphsm.core.seeds import SeedStorage
from otphsm.hsm import HsmSeedVault, open_vault
from otphsm.simulators.deployment import provisioned_softhsm
from otphsm.simulators.hsm.softhsm import SoftHsm

SHA1 = HashAlgorithm.SHA1
MESSAGE = (12345).to_bytes(8, "big")
MISS_CACHE = 1024
"""The cache of the miss row, whose seeds are five times as many, called in turn: every call
misses and evicts, with the cache full (as the service at 10⁶ tokens, scaled down to keep
the seeds' generation short)."""


def rate(fn: Callable[[], object], seconds: float) -> float:
    deadline = time.perf_counter() + seconds
    count = 0
    start = time.perf_counter()
    while True:
        for _ in range(200):
            fn()
        count += 200
        if time.perf_counter() >= deadline:
            return count / (time.perf_counter() - start)


def _hot_loop(vault: HsmSeedVault, seconds: float, fleet: int = 1) -> float:
    seeds = [vault.generate_seed(SHA1) for _ in range(fleet)]
    vault.hmac(seeds[0], SHA1, MESSAGE)
    index = [0]

    def call() -> None:
        index[0] = (index[0] + 1) % fleet
        vault.hmac(seeds[index[0]], SHA1, MESSAGE)

    return rate(call, seconds)


def _worker(softhsm: SoftHsm, seconds: float, start_at: float, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    softhsm.activate()
    vault = open_vault(softhsm.hsm_config())
    seed = vault.generate_seed(SHA1)
    vault.hmac(seed, SHA1, MESSAGE)
    time.sleep(max(0.0, start_at - time.time()))
    out.put(rate(lambda: vault.hmac(seed, SHA1, MESSAGE), seconds))
    vault.close()


def processes(softhsm: SoftHsm, count: int, seconds: float) -> float:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    start_at = time.time() + 1.5
    procs = [
        context.Process(target=_worker, args=(softhsm, seconds, start_at, queue))
        for _ in range(count)
    ]
    for p in procs:
        p.start()
    total = sum(queue.get(timeout=60) for _ in procs)
    for p in procs:
        p.join()
    return total


def measure(seconds: float) -> list[tuple[str, float]]:
    """(path, ops/s) rows; the first is the stdlib baseline."""
    with tempfile.TemporaryDirectory(prefix="otphsm-bench-") as tmp:
        softhsm = provisioned_softhsm(Path(tmp))
        seed_value = os.urandom(20)
        rows: list[tuple[str, float]] = [
            (
                "stdlib hmac, seed in host memory (baseline)",
                rate(lambda: hmac.new(seed_value, MESSAGE, "sha1").digest(), seconds),
            ),
        ]
        vault = open_vault(softhsm.hsm_config())
        rows.append(("HSM, wrapped seed, cached handle", _hot_loop(vault, seconds)))
        rows.append(
            ("HSM, 1,000 wrapped seeds round-robin, all cached", _hot_loop(vault, seconds, 1000))
        )
        vault.close()
        vault = open_vault(softhsm.hsm_config(handle_cache_size=MISS_CACHE))
        rows.append(
            (
                f"HSM, {5 * MISS_CACHE:,} seeds in turn, cache {MISS_CACHE:,}: miss+evict",
                _hot_loop(vault, seconds, 5 * MISS_CACHE),
            )
        )
        vault.close()
        vault = open_vault(softhsm.hsm_config(handle_cache_size=0))
        rows.append(("HSM, wrapped seed, unwrap + sign + destroy", _hot_loop(vault, seconds)))
        vault.close()
        vault = open_vault(softhsm.hsm_config(seed_storage=SeedStorage.RESIDENT))
        rows.append(("HSM, resident seed (token object), cached handle", _hot_loop(vault, seconds)))
        vault.close()
        rows.append(("HSM, cached handle, 1 process", processes(softhsm, 1, seconds)))
        rows.append(("HSM, cached handle, 2 processes (sum)", processes(softhsm, 2, seconds)))
    return rows


def print_rows(rows: list[tuple[str, float]], seconds: float) -> None:
    baseline = rows[0][1]
    print(f"\nHMAC-SHA1 of an 8-byte counter, {seconds:g} s per row, {os.cpu_count()} cores")
    print(f"{'path':<52} {'ops/s':>10} {'vs stdlib':>10}")
    for name, ops in rows:
        print(f"{name:<52} {ops:>10,.0f} {ops / baseline:>9.1%}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args()
    rows = measure(args.seconds)
    if args.json:
        print(json.dumps(rows))
    else:
        print_rows(rows, args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
