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
- `server.processes` = 2 beside 1 on each engine, with the CPU cores the load generator and
  the servers used;
- `server.model` "threads" beside "event-loop": the do-nothing servicer and `otphsm serve` on
  each engine, served by each;
- one card-authorised enrolment + secure activation through pcscd;
- the floor (floor.py): the verify use case in one process without serving, and its parts
  (a token read, one HMAC in the HSM, one durable write), on each engine.

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
from harness import BENCH_SECTIONS, RADIUS_SECRET, BenchEnv, ServerProcess, bench_env, cpu_seconds
from load import LoadResult, run_load

from otphsm.hsm import open_vault
from otphsm.service.config import HsmSection, ServerModel

RESULTS = Path(__file__).resolve().parent / "results"
MODELS = (ServerModel.THREADS.value, ServerModel.EVENT_LOOP.value)
"""The server models the bench compares ("auto" picks one of them by the engine)."""
LARGE_VERIFIED_SET = 5 * HsmSection.cache_size
"""Tokens verified at 10⁵ and 10⁶: five times the default `hsm.cache_size` (issue 15), so a
large fleet is measured with the default cache and a working set that does not fit in it."""
FULL = {
    "sizes": (1_000, 100_000, 1_000_000),
    "known": (1_000, LARGE_VERIFIED_SET, LARGE_VERIFIED_SET),
    "warmup": 1.0,
    "duration": 4.0,
    "hsm_seconds": 1.0,
    "enrol_rounds": 5,
    "floor_rounds": 3000,
}
QUICK = {
    "sizes": (1_000, 10_000),
    "known": (1_000, 2_000),
    "warmup": 0.5,
    "duration": 1.5,
    "hsm_seconds": 0.2,
    "enrol_rounds": 1,
    "floor_rounds": 500,
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
            "floor": [],
            "processes": [],
            "durability": [],
            "models": [],
        }
        self.cores = (0.0, 0.0)
        server = {"server": {"max_workers": args.workers, "model": args.model}}
        api = {"http": {"enabled": True, "port": 0}}
        self.noops = {
            (model, interceptor): env.noop(
                f"noop-{model}{'-interceptor' if interceptor else ''}",
                interceptor=interceptor,
                server={"max_workers": args.workers, "model": model},
            )
            for model in MODELS
            for interceptor in (False, True)
        }
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
        connections: str = "process",
    ) -> tuple[LoadResult, float]:
        """One run; the servers' CPU time per answered request (µs). `self.cores`: the CPU
        cores the load generator and the servers used during it."""
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
            connections=connections,
            arrivals=self.args.arrivals,
        )
        cpu = sum(cpu_seconds(s) for s in servers) - before
        self.cores = (result.cores, cpu / result.wall_seconds if result.wall_seconds else 0.0)
        baseline = servers[0].name.startswith("noop")  # the do-nothing servers keep no counters
        if not baseline:
            self.fleet.update_counters(database, result.counters)
        expected = "VERIFY_RESULT_OK" if kind == "valid" else "VERIFY_RESULT_WRONG_CODE"
        unexpected = {k: v for k, v in result.results.items() if k != expected}
        if unexpected and not baseline:
            print(f"  answers other than {expected}: {unexpected}")
        return result, cpu / max(1, result.answered) * 1e6

    def peak_and_half(
        self,
        servers: list[ServerProcess],
        kind: str,
        protocol: str = "grpc",
        connections: str = "process",
    ) -> tuple[LoadResult, LoadResult, float]:
        """The peak run and the half-rate run; `self.cores` stays the peak run's."""
        peak, cpu = self.load(servers, kind, protocol=protocol, connections=connections)
        cores = self.cores
        half, _ = self.load(servers, kind, peak.rate / 2, protocol, connections)
        self.cores = cores
        return peak, half, cpu

    def verify_at(self, size: int) -> None:
        """The do-nothing servicers (each server model, bare and behind the interceptor), then
        each store's verifies, compared with the do-nothing served by the same model."""
        baselines = {}
        for (model, interceptor), server in self.noops.items():
            peak, half, cpu = self.peak_and_half([server], "valid")
            baselines[model, interceptor] = {
                "tokens": size,
                "model": model,
                "interceptor": interceptor,
                **figures(peak, half, cpu),
            }
            self.results["noop"].append(baselines[model, interceptor])
            label = f"do-nothing{'+interceptor' if interceptor else ''} {model}"
            p99 = baselines[model, interceptor]["half_p99_ms"]
            self.say(
                f"{size:>9,} {label:<33} {peak.rate:8,.0f}/s  p99@½ {p99:.2f} ms  cpu {cpu:,.0f} µs"
            )
        runs = [
            (name, server, protocol)
            for protocol in self.args.protocols.split(",")
            for name, server in self.stores.items()
        ]
        for name, server, protocol in runs:
            model = serving_model(server)
            noop, intercepted = baselines[model, False], baselines[model, True]
            for kind in ("valid", "wrong"):
                peak, half, cpu = self.peak_and_half([server], kind, protocol)
                row = {
                    "tokens": size,
                    "server": name if protocol == "grpc" else f"{name}/{protocol}",
                    "model": model,
                    "codes": kind,
                    **figures(peak, half, cpu),
                    "vs_noop": peak.rate / noop["peak_rps"],
                    "vs_noop_interceptor": peak.rate / intercepted["peak_rps"],
                    "peak_p99_ms": peak.percentile(0.99) * 1e3,
                    "half_rate": half.rate,
                    "half_p50_ms": half.percentile(0.5) * 1e3,
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
                **figures(peak, half, cpu),
                "vs_grpc": peak.rate / over_grpc,
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
                row = {"replicas": len(servers), **figures(peak, half, cpu)}
                self.results["replicas"].append(row)
                self.say(
                    f"replicas {len(servers)}  {peak.rate:8,.0f}/s  p99@½ "
                    f"{row['half_p99_ms']:.2f} ms"
                )
        finally:
            second.stop()

    def floor(self, size: int) -> None:
        """floor.py in its own process on each engine (its own HSM session), on the known
        tokens, whose counters it moves: the verified set at `size` tokens."""
        for name, url in (("sqlite", self.env.sqlite_url), ("postgresql", self.env.pg_url)):
            config = self.env.deployment.write_config(f"floor-{name}", url, **BENCH_SECTIONS)
            tokens = self.env.root / f"floor-{name}-tokens.json"
            known = [[s, secret.hex(), n] for s, secret, n in self.fleet.tokens_for(name)]
            tokens.write_text(json.dumps(known))
            script = Path(__file__).resolve().parent / "floor.py"
            argv = [sys.executable, str(script), "--config", str(config), "--tokens", str(tokens)]
            argv += ["--rounds", str(self.plan["floor_rounds"])]
            done = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=600)
            found = json.loads(done.stdout.splitlines()[-1])
            self.fleet.update_counters(name, found.pop("counters"))
            row = {"server": name, "tokens": size, **found}
            self.results["floor"].append(row)
            parts = ", ".join(f"{k} {v:,.0f}" for k, v in row["parts_us"].items())
            database = row["database_us"]
            beside = f"; database server {database:,.0f} µs" if database is not None else ""
            use_case = f"use case {row['use_case_us']:,.0f} µs CPU"
            self.say(f"floor {size:,} {name:<10} {use_case}; {parts} µs{beside}")

    def processes(self) -> None:
        """Peak valid verifies (and p99 at half that rate) of `otphsm serve` with
        `server.processes` = 2 beside 1, each engine, alternated twice; one gRPC connection per
        load thread, so the kernel spreads them over the processes. The load generator shares
        the machine's cores: the cores each side used are printed beside the rate."""
        workers = {"max_workers": self.args.workers}
        for name, url in (("sqlite", self.env.sqlite_url), ("postgresql", self.env.pg_url)):
            pair = {
                1: self.env.serve(f"{name}-p1", url, server=workers),
                2: self.env.serve(f"{name}-p2", url, server={**workers, "processes": 2}),
            }
            try:
                for _round in range(2):
                    for count, server in pair.items():
                        peak, half, cpu = self.peak_and_half(
                            [server], "valid", connections="thread"
                        )
                        load_cores, server_cores = self.cores
                        row = {
                            "server": name,
                            "processes": count,
                            **figures(peak, half, cpu),
                            "load_cores": load_cores,
                            "server_cores": server_cores,
                        }
                        self.results["processes"].append(row)
                        self.say(
                            f"{name:<10} processes {count}  {peak.rate:8,.0f}/s  p50 "
                            f"{row['peak_p50_ms']:.2f} ms  p99@½ {row['half_p99_ms']:.2f} ms  "
                            f"cpu {cpu:,.0f} µs  cores: load "
                            f"{load_cores:.2f}, servers {server_cores:.2f}"
                        )
            finally:
                for server in pair.values():
                    server.stop()

    def models(self) -> None:
        """`server.model` "threads" beside "event-loop": the bare do-nothing servicer and
        `otphsm serve` on each engine, served by each model; valid and wrong codes, the
        models alternated twice."""
        servers: dict[str, dict[str, ServerProcess]] = {}
        try:
            for model in MODELS:
                section = {"max_workers": self.args.workers, "model": model}
                servers[model] = {}
                for name, url in (("sqlite", self.env.sqlite_url), ("postgresql", self.env.pg_url)):
                    servers[model][name] = self.env.serve(f"{name}-{model}", url, server=section)
            for _round in range(2):
                for model in MODELS:
                    self.model_row(self.noops[model, False], "do-nothing", model, "valid")
                    for name, server in servers[model].items():
                        for kind in ("valid", "wrong"):
                            self.model_row(server, name, model, kind)
        finally:
            for by_store in servers.values():
                for server in by_store.values():
                    server.stop()

    def model_row(self, server: ServerProcess, servicer: str, model: str, kind: str) -> None:
        peak, half, cpu = self.peak_and_half([server], kind)
        row = {"servicer": servicer, "model": model, "codes": kind, **figures(peak, half, cpu)}
        self.results["models"].append(row)
        self.say(
            f"{servicer:<10} {model:<10} {kind:<5} {peak.rate:8,.0f}/s  p50 "
            f"{row['peak_p50_ms']:.2f} ms  p99@½ {row['half_p99_ms']:.2f} ms  cpu {cpu:,.0f} µs"
        )

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
            for size, known in planned_sizes(self.plan, self.args.sizes):
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
                if "floor" in sections:
                    self.floor(size)
                if size == self.plan["sizes"][0] and "processes" in sections:
                    self.processes()
                if size == self.plan["sizes"][0] and "models" in sections:
                    self.models()
                if size == self.plan["sizes"][0] and "enrol" in sections:
                    target = self.stores["postgresql"].target
                    self.results["enrolment"] = measure_enrolment(
                        self.env, target, self.plan["enrol_rounds"]
                    )
                    self.say(f"enrolment {self.results['enrolment']}")
        finally:
            vault.close()
        return self.results


def serving_model(server: ServerProcess) -> str:
    """The `server.model` a server logged in its "serving" record ("auto" decided)."""
    serving = [r for r in server.records if r.get("msg") == "serving"]
    return str(serving[0]["model"])


def planned_sizes(plan: dict[str, Any], only: str | None) -> list[tuple[int, int]]:
    """(fleet size, verified tokens) of the plan, or of the sizes in `only` ("1000,1000000"):
    each verified set as the plan's for that size, else the plan's largest, capped by the
    size."""
    pairs = list(zip(plan["sizes"], plan["known"], strict=True))
    if not only:
        return pairs
    known = dict(pairs)
    sizes = sorted({int(part.replace("_", "")) for part in only.split(",") if part.strip()})
    return [(size, min(size, known.get(size, max(known.values())))) for size in sizes]


def figures(peak: LoadResult, half: LoadResult, cpu: float) -> dict[str, float]:
    """What every row reports of a peak run and its half-rate run."""
    return {
        "peak_rps": peak.rate,
        "peak_p50_ms": peak.percentile(0.5) * 1e3,
        "half_p99_ms": half.percentile(0.99) * 1e3,
        "server_cpu_us": cpu,
    }


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
    """Issue 15's acceptance, as ratios within this run: server CPU per valid verify ≤ 2x the
    bare do-nothing servicer's per call (served by the same `server.model`) and verifies/s ≥
    60% of its calls/s (smallest fleet), wrong codes ≤ 1.5x a valid verify's CPU, p99 ≤ 10 ms
    at half the peak rate at every size, and the largest fleet ≥ 80% of the smallest's
    throughput; gRPC rows, each engine."""
    rows = {(r["tokens"], r["server"], r["codes"]): r for r in results["verify"]}
    noop = {(n["tokens"], n["model"]): n for n in results.get("noop", []) if not n["interceptor"]}
    sizes = sorted({r["tokens"] for r in results["verify"]})
    found: list[dict[str, Any]] = []

    def check(name: str, measured: str, met: bool) -> None:
        found.append({"name": name, "measured": measured, "met": met})

    for server in ("sqlite", "postgresql"):
        small = rows.get((sizes[0], server, "valid")) if sizes else None
        if small is None:
            continue
        label = f"{server} ({small['model']})"
        base = noop.get((sizes[0], small["model"]))
        if base is not None:
            cpu_ratio = small["server_cpu_us"] / base["server_cpu_us"]
            check(
                f"{label}: CPU per verify ≤ 2x the do-nothing's",
                f"{cpu_ratio:.1f}x",
                cpu_ratio <= 2,
            )
        check(
            f"{label}: verify ≥ 60% of the do-nothing servicer",
            f"{small['vs_noop']:.0%}",
            small["vs_noop"] >= 0.6,
        )
        wrong = rows.get((sizes[0], server, "wrong"))
        if wrong is not None:
            ratio = wrong["server_cpu_us"] / small["server_cpu_us"]
            check(f"{label}: wrong code ≤ 1.5x a valid one (CPU)", f"{ratio:.2f}x", ratio <= 1.5)
        for size in sizes:
            row = rows.get((size, server, "valid"))
            if row is not None:
                p99 = row["half_p99_ms"]
                check(
                    f"{label}: p99 ≤ 10 ms at half the peak rate, {size:,} tokens",
                    f"{p99:.2f} ms",
                    p99 <= 10,
                )
        big = rows.get((sizes[-1], server, "valid"))
        if big is not None and sizes[-1] > sizes[0]:
            ratio = big["peak_rps"] / small["peak_rps"]
            check(
                f"{label}: {sizes[-1]:,} tokens ≥ 80% of {sizes[0]:,}",
                f"{ratio:.0%}",
                ratio >= 0.8,
            )
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a CI-size smoke run (~1.5 min)")
    parser.add_argument(
        "--sections", default="hsm,verify,http,replicas,processes,models,enrol,floor"
    )
    parser.add_argument("--sizes", help="fleet sizes to run, comma-separated (default: the plan's)")
    parser.add_argument(
        "--protocols", default="grpc,radius", help="protocols of the verify section"
    )
    parser.add_argument("--processes", type=int, default=2, help="load generator processes")
    parser.add_argument("--threads", type=int, default=4, help="client threads per process")
    parser.add_argument("--workers", type=int, default=4, help="server.max_workers")
    parser.add_argument(
        "--arrivals",
        choices=("poisson", "even", "lockstep"),
        default="poisson",
        help="the half-rate runs' schedule (bench/load.py)",
    )
    parser.add_argument(
        "--model",
        choices=tuple(model.value for model in ServerModel),
        default=ServerModel.AUTO.value,
        help="server.model of the otphsm serve processes of the verify and http sections",
    )
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
        f"{args.arrivals} arrivals at half the peak rate, HOTP SHA-1 6 digits, mTLS"
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
