"""The benchmark's outputs: the printed table, the JSON file, the PNG chart, the README text."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "cpu": model, "python": platform.python_version()}


def _ms(value: float) -> str:
    return f"{value:.2f}"


def verify_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| tokens | server | server.model | codes | peak verif./s | vs do-nothing "
        "| vs do-nothing + interceptor | p50 ms (peak) | p99 ms at ½ peak | server CPU µs/verif. |",
        "|---:|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results["verify"]:
        behind = row.get("vs_noop_interceptor")
        lines.append(
            f"| {row['tokens']:,} | {row['server']} | {row.get('model', 'threads')} "
            f"| {row['codes']} | {row['peak_rps']:,.0f} "
            f"| {row['vs_noop']:.0%} | {f'{behind:.0%}' if behind is not None else '-'} "
            f"| {_ms(row['peak_p50_ms'])} | {_ms(row['half_p99_ms'])} "
            f"| {row['server_cpu_us']:,.0f} |"
        )
    return lines


def baseline_table(results: dict[str, Any]) -> list[str]:
    rows = results.get("noop", [])
    if not rows:
        return []
    lines = [
        "| tokens | do-nothing servicer | server.model | calls/s | p99 ms at ½ peak "
        "| server CPU µs/call |",
        "|---:|---|---|---:|---:|---:|",
    ]
    for row in rows:
        kind = "behind otphsm's interceptor" if row.get("interceptor") else "bare"
        lines.append(
            f"| {row['tokens']:,} | {kind} | {row.get('model', 'threads')} "
            f"| {row['peak_rps']:,.0f} | {_ms(row['half_p99_ms'])} "
            f"| {row['server_cpu_us']:,.0f} |"
        )
    return lines


def http_table(results: dict[str, Any]) -> list[str]:
    rows = results.get("http", [])
    if not rows:
        return []
    lines = [
        "| tokens | server | HTTP/JSON verif./s (valid) | vs gRPC | p50 ms (peak) "
        "| p99 ms at ½ peak | server CPU µs/verif. |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['tokens']:,} | {row['server']} | {row['peak_rps']:,.0f} "
            f"| {row['vs_grpc']:.0%} | {_ms(row['peak_p50_ms'])} | {_ms(row['half_p99_ms'])} "
            f"| {row['server_cpu_us']:,.0f} |"
        )
    return lines


def durability_table(results: dict[str, Any]) -> list[str]:
    rows = results.get("durability", [])
    if not rows:
        return []
    lines = [
        "| server | fsyncs per valid verify | commits per valid verify |",
        "|---|---:|---:|",
    ]
    for row in rows:
        fsyncs = row.get("fsyncs_per_verify")
        commits = row.get("commits_per_verify")
        lines.append(
            f"| {row['server']} "
            f"| {f'{fsyncs:.2f}' if fsyncs is not None else row.get('fsyncs_unavailable', '-')} "
            f"| {f'{commits:.2f}' if commits is not None else '-'} |"
        )
    return lines


def replica_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "| replicas (PostgreSQL + one SoftHSM token) | peak verif./s | p99 ms at ½ peak |",
        "|---|---:|---:|",
    ]
    for row in results.get("replicas", []):
        lines.append(f"| {row['replicas']} | {row['peak_rps']:,.0f} | {_ms(row['half_p99_ms'])} |")
    return lines


def processes_table(results: dict[str, Any]) -> list[str]:
    """`server.processes` 2 beside 1 (each run of the alternation), with the cores used."""
    rows = results.get("processes", [])
    if not rows:
        return []
    lines = [
        "| store | server.processes | peak verif./s | p50 ms (peak) | p99 ms at ½ peak "
        "| server CPU µs/verif. | cores: load generator | cores: servers |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['server']} | {r['processes']} | {r['peak_rps']:,.0f} | {_ms(r['peak_p50_ms'])} "
        f"| {_ms(r['half_p99_ms'])} | {r['server_cpu_us']:,.0f} | {r['load_cores']:.2f} "
        f"| {r['server_cores']:.2f} |"
        for r in rows
    ]
    return lines


def models_table(results: dict[str, Any]) -> list[str]:
    """Each run of section `models`, then per model and engine the issue's ratios against the
    bare do-nothing servicer served by the same model (means over the runs)."""
    rows = results.get("models", [])
    if not rows:
        return []
    lines = [
        "| server | server.model | codes | peak verif./s | p50 ms (peak) "
        "| p99 ms at ½ peak | server CPU µs/verif. |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['servicer']} | {r['model']} | {r['codes']} | {r['peak_rps']:,.0f} "
        f"| {_ms(r['peak_p50_ms'])} | {_ms(r['half_p99_ms'])} | {r['server_cpu_us']:,.0f} |"
        for r in rows
    ]
    lines += [
        "",
        "| store | server.model | CPU per verify / do-nothing's | verifies/s / do-nothing's "
        "| wrong / valid (CPU) | p99 ms at ½ peak |",
        "|---|---|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {m['store']} | {m['model']} | {m['cpu_ratio']:.2f}x | {m['rate_ratio']:.0%} "
        f"| {m['wrong_ratio']:.2f}x | {_ms(m['half_p99_ms'])} |"
        for m in model_ratios(rows)
    ]
    return lines


def model_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def mean(servicer: str, model: str, codes: str, key: str) -> float:
        found = [
            r[key]
            for r in rows
            if (r["servicer"], r["model"], r["codes"]) == (servicer, model, codes)
        ]
        return sum(found) / len(found) if found else float("nan")

    stores = sorted({r["servicer"] for r in rows} - {"do-nothing"}, reverse=True)
    models = list(dict.fromkeys(r["model"] for r in rows))
    ratios = []
    for store in stores:
        for model in models:
            valid_cpu = mean(store, model, "valid", "server_cpu_us")
            ratios.append(
                {
                    "store": store,
                    "model": model,
                    "cpu_ratio": valid_cpu / mean("do-nothing", model, "valid", "server_cpu_us"),
                    "rate_ratio": mean(store, model, "valid", "peak_rps")
                    / mean("do-nothing", model, "valid", "peak_rps"),
                    "wrong_ratio": mean(store, model, "wrong", "server_cpu_us") / valid_cpu,
                    "half_p99_ms": mean(store, model, "valid", "half_p99_ms"),
                }
            )
    return ratios


def hsm_table(results: dict[str, Any]) -> list[str]:
    rows = results.get("hsm", [])
    if not rows:
        return []
    baseline = rows[0]["ops"]
    lines = ["| HSM path (in process) | ops/s | vs stdlib |", "|---|---:|---:|"]
    lines += [f"| {r['path']} | {r['ops']:,.0f} | {r['ops'] / baseline:.1%} |" for r in rows]
    return lines


def enrol_table(results: dict[str, Any]) -> list[str]:
    enrol = results.get("enrolment")
    if not enrol:
        return []
    return [
        f"| enrolment through pcscd (median of {enrol['rounds']}) | ms |",
        "|---|---:|",
        f"| station: read card, verify PIN, sign challenge (RSA-2048) | "
        f"{_ms(enrol['station_card_ms'])} |",
        "| server: GetChallenge + AuthoriseWithCard + IssueToken + ActivateWithCode + "
        f"ProvePossession | {_ms(enrol['server_rpcs_ms'])} |",
        f"| device: P-256 key pair | {_ms(enrol['device_ms'])} |",
        f"| total | {_ms(enrol['total_ms'])} |",
    ]


def targets_lines(results: dict[str, Any]) -> list[str]:
    lines = []
    for target in results.get("targets", []):
        mark = "met" if target["met"] else "NOT met"
        lines.append(f"- {target['name']}: {target['measured']} — {mark}")
    return lines


def text(results: dict[str, Any]) -> str:
    m = results["machine"]
    head = [
        f"otphsm benchmark, {results['date']}, {m['nproc']} cores ({m['cpu']}), "
        f"Python {m['python']}; {results['settings']}",
        "",
    ]
    parts = [head, verify_table(results), [""], baseline_table(results), [""]]
    parts += [durability_table(results), [""]]
    parts += [http_table(results), [""], replica_table(results), [""]]
    parts += [processes_table(results), [""], models_table(results), [""]]
    parts += [enrol_table(results), [""], hsm_table(results), [""], floor_table(results)]
    parts += [[""], targets_lines(results)]
    return "\n".join(line for part in parts for line in part)


def floor_table(results: dict[str, Any]) -> list[str]:
    """The verify use case in process beside the do-nothing servicer's CPU per call: the
    ratio a verify could reach if serving it cost nothing more than serving an empty call."""
    rows = results.get("floor", [])
    noop = [n for n in results.get("noop", []) if not n.get("interceptor")]
    if not rows:
        return []
    serving = min(n["server_cpu_us"] for n in noop) if noop else float("nan")
    lines = [
        "floor: CPU µs per call in one process, no serving "
        f"(do-nothing servicer: {serving:,.0f} µs a call)",
        f"{'tokens':>9} {'engine':<11} {'use case':>9} {'token read':>11} {'HMAC':>6}"
        f" {'read+durable write':>19} {'(use case + serving) / serving':>31}"
        f" {'database server':>16}",
    ]
    for row in rows:
        parts = row["parts_us"]
        ratio = (row["use_case_us"] + serving) / serving
        database = row.get("database_us")
        beside = f"{database:>16,.0f}" if database is not None else f"{'-':>16}"
        lines.append(
            f"{row.get('tokens', 0):>9,} {row['server']:<11} {row['use_case_us']:>9,.0f}"
            f" {parts['token_read']:>11,.0f} {parts['hmac']:>6,.0f}"
            f" {parts['read_and_durable_write']:>19,.0f} {ratio:>30.2f}x {beside}"
        )
    return lines


def write_json(results: dict[str, Any], directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"bench-{results['date']}.json"
    path.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    (directory / "latest.json").write_text(path.read_text())
    return path


def write_chart(results: dict[str, Any], directory: Path) -> Path | None:
    """Throughput and p99 against token count, and against replicas (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("no chart: matplotlib is missing (pip install -e '.[bench]')")
        return None
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    series: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in results["verify"]:
        series.setdefault((row["server"], row["codes"]), []).append(row)
    for (server, codes), rows in series.items():
        x = [r["tokens"] for r in rows]
        style = "--" if codes == "wrong" else "-"
        axes[0].plot(x, [r["peak_rps"] for r in rows], style, marker="o", label=f"{server} {codes}")
        axes[1].plot(
            x, [r["half_p99_ms"] for r in rows], style, marker="o", label=server + f" {codes}"
        )
    bare = [n for n in results.get("noop", []) if not n.get("interceptor")]
    for model in dict.fromkeys(n.get("model", "threads") for n in bare):
        noop = [n for n in bare if n.get("model", "threads") == model]
        axes[0].plot(
            [n["tokens"] for n in noop],
            [n["peak_rps"] for n in noop],
            ":",
            marker="s",
            label=f"do-nothing servicer ({model})",
        )
    for ax, title in ((axes[0], "peak verifications/s"), (axes[1], "p99 ms at half the peak rate")):
        ax.set_xscale("log")
        ax.set_xlabel("tokens in the database")
        ax.set_title(title)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    replicas = results.get("replicas", [])
    if replicas:
        names = [f"{r['replicas']} replica(s)" for r in replicas]
        axes[2].bar(names, [r["peak_rps"] for r in replicas], color="tab:blue")
        axes[2].set_ylabel("peak verifications/s (PostgreSQL)")
        twin = axes[2].twinx()
        twin.plot(names, [r["half_p99_ms"] for r in replicas], "o-", color="tab:red")
        twin.set_ylabel("p99 ms at half peak", color="tab:red")
        axes[2].set_title("replicas sharing PostgreSQL and the SoftHSM token")
    m = results["machine"]
    fig.suptitle(f"otphsm {results['date']} — {m['nproc']} cores, {m['cpu']}")
    fig.tight_layout()
    path = directory / f"bench-{results['date']}.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
