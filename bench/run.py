"""The otphsm benchmark: `make bench` or `otphsm bench [--quick]`.

Starts everything on loopback (a private SoftHSM2, a private PostgreSQL database, `otphsm
serve` on SQLite and on PostgreSQL, the do-nothing servicer), then measures:

- the HSM paths in process (bench_hsm.py: unwrap-cache hit vs miss, threads vs processes);
- Verify over gRPC with mTLS from a load generator in separate processes: peak rate (closed
  loop), then p50/p99 at half that rate (open loop), valid and wrong codes, SQLite and
  PostgreSQL, at each fleet size, beside the do-nothing servicer measured in the same run;
  the same over RADIUS (PAP Access-Requests by serial to the same servers: rows
  "sqlite/radius" and "postgresql/radius");
- Verify over the HTTP/JSON API (mTLS, keep-alive), valid codes, beside gRPC in the same run;
- what a valid verify makes durable before its answer: fsyncs per verify (strace) and, on
  PostgreSQL, commits per verify (durability.py), in one extra run per store;
- two `otphsm serve` replicas sharing PostgreSQL and the SoftHSM token, vs one;
- one card-authorised enrolment + secure activation through pcscd.

Prints the table, writes bench/results/bench-DATE.json (and latest.json) and a PNG chart.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_hsm
import durability
import report
from enrol_flow import measure_enrolment
from fleet import Fleet, grow
from harness import RADIUS_SECRET, BenchEnv, ServerProcess, bench_env, cpu_seconds
from load import LoadResult, run_load

from otphsm.hsm import open_vault

RESULTS = Path(__file__).resolve().parent / "results"
FULL = {
    "sizes": (1_000, 100_000, 1_000_000),
    "known": (1_000, 20_000, 20_000),
    "warmup": 1.0,
    "duration": 4.0,
    "hsm_seconds": 1.0,
    "enrol_rounds": 5,
}
QUICK = {
    "sizes": (1_000, 10_000),
    "known": (1_000, 2_000),
    "warmup": 0.5,
    "duration": 1.5,
    "hsm_seconds": 0.2,
    "enrol_rounds": 1,
}


class Bench:
    def __init__(self, env: BenchEnv, args: argparse.Namespace, plan: dict[str, Any]) -> None:
        self.env = env
        self.args = args
        self.plan = plan
        self.tls = env.client_tls("verifier")
        self.fleet = Fleet()
        self.results: dict[str, Any] = {
            "verify": [],
            "noop": [],
            "replicas": [],
            "http": [],
            "durability": [],
        }
        server = {"server": {"max_workers": args.workers}}
        api = {"http": {"enabled": True, "port": 0}}
        self.noop = env.noop("noop", **server)
        self.noop_intercepted = env.noop("noop-interceptor", interceptor=True, **server)
        radius = {"radius": {**env.radius_section(), "workers": args.workers}}
        self.stores = {
            "sqlite": env.serve("sqlite", env.sqlite_url, **server, **api, **radius),
            "postgresql": env.serve("postgresql", env.pg_url, **server, **api, **radius),
        }

    def load(
        self,
        servers: list[ServerProcess],
        kind: str,
        rate: float | None = None,
        protocol: str = "grpc",
    ) -> tuple[LoadResult, float]:
        """One run; the servers' CPU time per answered request (µs)."""
        database = servers[0].name.split("-")[0]  # replicas share their database's counters
        before = sum(cpu_seconds(s) for s in servers)
        if protocol == "radius":
            targets = [f"127.0.0.1:{s.radius_port}" for s in servers]
        elif protocol == "http":
            targets = [f"localhost:{s.http_port}" for s in servers]
        else:
            targets = [s.target for s in servers]
        result = run_load(
            targets,
            self.tls,
            kind,
            self.fleet.tokens_for(database),
            processes=self.args.processes,
            threads=self.args.threads,
            warmup=self.plan["warmup"],
            duration=self.plan["duration"],
            rate=rate,
            protocol=protocol,
            radius_secret=RADIUS_SECRET,
        )
        cpu = sum(cpu_seconds(s) for s in servers) - before
        baseline = servers[0] in (self.noop, self.noop_intercepted)
        if not baseline:
            self.fleet.update_counters(database, result.counters)
        expected = "VERIFY_RESULT_OK" if kind == "valid" else "VERIFY_RESULT_WRONG_CODE"
        unexpected = {k: v for k, v in result.results.items() if k != expected}
        if unexpected and not baseline:
            print(f"  answers other than {expected}: {unexpected}")
        return result, cpu / max(1, result.answered) * 1e6

    def peak_and_half(
        self, servers: list[ServerProcess], kind: str, protocol: str = "grpc"
    ) -> tuple[LoadResult, LoadResult, float]:
        peak, cpu = self.load(servers, kind, protocol=protocol)
        half, _ = self.load(servers, kind, rate=peak.rate / 2, protocol=protocol)
        return peak, half, cpu

    def verify_at(self, size: int) -> None:
        baselines = {}
        for interceptor, server in ((False, self.noop), (True, self.noop_intercepted)):
            peak, half, cpu = self.peak_and_half([server], "valid")
            baselines[interceptor] = {
                "tokens": size,
                "interceptor": interceptor,
                "peak_rps": peak.rate,
                "peak_p50_ms": peak.percentile(0.5) * 1e3,
                "half_p99_ms": half.percentile(0.99) * 1e3,
                "server_cpu_us": cpu,
            }
            self.results["noop"].append(baselines[interceptor])
            label = "do-nothing+interceptor" if interceptor else "do-nothing"
            p99 = baselines[interceptor]["half_p99_ms"]
            self.say(
                f"{size:>9,} {label:<22} {peak.rate:8,.0f}/s  p99@½ {p99:.2f} ms  cpu {cpu:,.0f} µs"
            )
        noop, intercepted = baselines[False], baselines[True]
        runs = [
            (name, server, protocol)
            for protocol in ("grpc", "radius")
            for name, server in self.stores.items()
        ]
        for name, server, protocol in runs:
            for kind in ("valid", "wrong"):
                peak, half, cpu = self.peak_and_half([server], kind, protocol)
                row = {
                    "tokens": size,
                    "server": name if protocol == "grpc" else f"{name}/{protocol}",
                    "codes": kind,
                    "peak_rps": peak.rate,
                    "vs_noop": peak.rate / noop["peak_rps"],
                    "vs_noop_interceptor": peak.rate / intercepted["peak_rps"],
                    "peak_p50_ms": peak.percentile(0.5) * 1e3,
                    "peak_p99_ms": peak.percentile(0.99) * 1e3,
                    "half_rate": half.rate,
                    "half_p50_ms": half.percentile(0.5) * 1e3,
                    "half_p99_ms": half.percentile(0.99) * 1e3,
                    "server_cpu_us": cpu,
                    "results": dict(peak.results + half.results),
                }
                self.results["verify"].append(row)
                self.say(
                    f"{size:>9,} {row['server']:<17} {kind:<5} {peak.rate:8,.0f}/s "
                    f"({row['vs_noop']:.0%})  p50 {row['peak_p50_ms']:.2f} ms  "
                    f"p99@½ {row['half_p99_ms']:.2f} ms  cpu {cpu:,.0f} µs"
                )

    def durability(self) -> None:
        """fsyncs (and PostgreSQL's commits) per valid verify, in one short extra run per
        store under strace (durability.py)."""
        for name, server in self.stores.items():
            pg = self.env.pg_settings if name == "postgresql" else None
            pids = durability.backend_pids(pg) if pg else [server.pid]

            def run(server: ServerProcess = server) -> int:
                return self.load([server], "valid")[0].answered

            row = {"server": name, **durability.measure(run, pids, pg)}
            self.results["durability"].append(row)
            fsyncs, commits = row["fsyncs_per_verify"], row.get("commits_per_verify")
            self.say(
                f"{name:<10} per valid verify: "
                + (f"{fsyncs:.2f} fsyncs" if fsyncs is not None else row["fsyncs_unavailable"])
                + (f", {commits:.2f} commits" if commits is not None else "")
            )

    def verify_over_http(self, size: int) -> None:
        """Valid codes over the HTTP/JSON API, beside the gRPC rows of the same size."""
        grpc_rows = {
            r["server"]: r
            for r in self.results["verify"]
            if r["tokens"] == size and r["codes"] == "valid"
        }
        for name, server in self.stores.items():
            peak, half, cpu = self.peak_and_half([server], "valid", protocol="http")
            over_grpc = grpc_rows[name]["peak_rps"] if name in grpc_rows else float("nan")
            row = {
                "tokens": size,
                "server": name,
                "peak_rps": peak.rate,
                "vs_grpc": peak.rate / over_grpc,
                "peak_p50_ms": peak.percentile(0.5) * 1e3,
                "half_p99_ms": half.percentile(0.99) * 1e3,
                "server_cpu_us": cpu,
                "results": dict(peak.results + half.results),
            }
            self.results["http"].append(row)
            self.say(
                f"{size:>9,} {name:<10} http  {peak.rate:8,.0f}/s ({row['vs_grpc']:.0%} of gRPC)"
                f"  p50 {row['peak_p50_ms']:.2f} ms  p99@½ {row['half_p99_ms']:.2f} ms"
                f"  cpu {cpu:,.0f} µs"
            )

    def replicas(self) -> None:
        first = self.stores["postgresql"]
        second = self.env.serve(
            "postgresql-b", self.env.pg_url, server={"max_workers": self.args.workers}
        )
        try:
            for servers in ([first], [first, second]):
                peak, half, cpu = self.peak_and_half(servers, "valid")
                row = {
                    "replicas": len(servers),
                    "peak_rps": peak.rate,
                    "half_p99_ms": half.percentile(0.99) * 1e3,
                    "server_cpu_us": cpu,
                }
                self.results["replicas"].append(row)
                self.say(
                    f"replicas {len(servers)}  {peak.rate:8,.0f}/s  p99@½ "
                    f"{row['half_p99_ms']:.2f} ms"
                )
        finally:
            second.stop()

    def say(self, line: str) -> None:
        print(line, flush=True)

    def run(self) -> dict[str, Any]:
        sections = set(self.args.sections.split(","))
        if "hsm" in sections:
            rows = hsm_rows(self.plan["hsm_seconds"])
            self.results["hsm"] = [{"path": path, "ops": ops} for path, ops in rows]
            bench_hsm.print_rows(rows, self.plan["hsm_seconds"])
        vault = open_vault(self.env.softhsm.hsm_config())
        urls = [self.env.sqlite_url, self.env.pg_url]
        try:
            for size, known in zip(self.plan["sizes"], self.plan["known"], strict=True):
                started = time.monotonic()
                grow(self.fleet, vault, urls, size, known, int(time.time()))
                self.say(
                    f"fleet of {size:,} tokens ({len(self.fleet.known):,} verified) "
                    f"in {time.monotonic() - started:.1f} s"
                )
                if "verify" in sections:
                    self.verify_at(size)
                    if size == self.plan["sizes"][0]:
                        self.durability()
                if "http" in sections:
                    self.verify_over_http(size)
                if size == self.plan["sizes"][0] and "replicas" in sections:
                    self.replicas()
                if size == self.plan["sizes"][0] and "enrol" in sections:
                    target = self.stores["postgresql"].target
                    self.results["enrolment"] = measure_enrolment(
                        self.env, target, self.plan["enrol_rounds"]
                    )
                    self.say(f"enrolment {self.results['enrolment']}")
        finally:
            vault.close()
        return self.results


def hsm_rows(seconds: float) -> list[tuple[str, float]]:
    """bench_hsm.py in its own process: SoftHSM2 reads its config once per process."""
    script = Path(__file__).resolve().parent / "bench_hsm.py"
    done = subprocess.run(
        [sys.executable, str(script), "--seconds", str(seconds), "--json"],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return [(str(path), float(ops)) for path, ops in json.loads(done.stdout.splitlines()[-1])]


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = {(r["tokens"], r["server"], r["codes"]): r for r in results["verify"]}
    sizes = sorted({r["tokens"] for r in results["verify"]})
    found: list[dict[str, Any]] = []
    if not sizes:
        return found
    small, large = sizes[0], sizes[-1]
    for server in ("sqlite", "postgresql"):
        row = rows.get((small, server, "valid"))
        if row is None:
            continue
        found.append(
            {
                "name": f"{server}: verify ≥ 60% of the do-nothing servicer",
                "measured": f"{row['vs_noop']:.0%}",
                "met": row["vs_noop"] >= 0.6,
            }
        )
        found.append(
            {
                "name": f"{server}: p99 ≤ 10 ms at half the peak rate",
                "measured": f"{row['half_p99_ms']:.2f} ms",
                "met": row["half_p99_ms"] <= 10,
            }
        )
        big = rows.get((large, server, "valid"))
        if big is not None and large > small:
            ratio = big["peak_rps"] / row["peak_rps"]
            found.append(
                {
                    "name": f"{server}: {large:,} tokens ≥ 80% of {small:,}",
                    "measured": f"{ratio:.0%}",
                    "met": ratio >= 0.8,
                }
            )
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a CI-size smoke run (~1.5 min)")
    parser.add_argument("--sections", default="hsm,verify,http,replicas,enrol")
    parser.add_argument("--processes", type=int, default=2, help="load generator processes")
    parser.add_argument("--threads", type=int, default=4, help="client threads per process")
    parser.add_argument("--workers", type=int, default=4, help="server.max_workers")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    started = time.monotonic()
    date = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H%M%SZ")
    with bench_env(keep=args.keep) as env:
        results = Bench(env, args, plan).run()
    results["date"] = date
    results["machine"] = report.machine()
    results["settings"] = (
        f"load: {args.processes} processes x {args.threads} threads, server.max_workers "
        f"{args.workers}, {plan['duration']:g} s per run after {plan['warmup']:g} s warm-up, "
        "HOTP SHA-1 6 digits, mTLS"
    )
    results["targets"] = targets(results)
    results["seconds"] = round(time.monotonic() - started, 1)
    print()
    print(report.text(results))
    print(f"\nwritten: {report.write_json(results, args.out)}")
    chart = report.write_chart(results, args.out)
    if chart:
        print(f"written: {chart}")
    print(f"the benchmark took {results['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
