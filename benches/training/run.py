"""Training-set benchmark (issue 18): c360 against DuckDB's 12-date query and one snapshot.

    # 1M customers, 3 interleaved rounds, medians -> benches/training/results.md
    .venv-oracle/bin/python benches/training/run.py --data /tmp/c360-1m --c360 target/release/c360
    # same outputs? (c360's training set against DuckDB's, every column)
    .venv-oracle/bin/python benches/training/run.py --data /tmp/c360-1m --c360 target/release/c360 --check

The spine: 12 month-end dates, 2023-07-31 .. 2024-06-30, x every customer signed up (UTC
date) by each date; made once with DuckDB (Parquet, sorted by as_of then customer_id).
`--sample-customers N` restricts it to N customers drawn with a fixed seed.

Measured, each in its own process, interleaved for --reps rounds (round 1 of every tool,
then round 2, ...), medians reported with min and max:
  c360-training-set  `c360 features training-set churn_signals --spine S --label churned_90d`
  duckdb-12-dates    duckdb_peer.py: training_set.sql, churn_signals.sql and labels.sql
                     generalised from one $as_of to the spine, in one query, COPY to Parquet
  c360-snapshot      `c360 features build churn_signals --as-of <last spine date>` on a fresh
                     store (the "at most 3x one snapshot" reference)
Wall time is the whole process; peak RSS is GNU time's %M of that process. Every engine
gets 2 threads (--threads): POLARS_MAX_THREADS / RAYON_NUM_THREADS, DuckDB `SET threads`.
The source files are read once before timing (warm page cache for everyone).

--check runs c360 and DuckDB once each and compares the two training sets on
(customer_id, as_of): same rows, every column (ints and bools exact, floats to 1e-9
relative, nulls in the same places); exit 1 on any difference.

Output: a markdown table and the same figures as JSON (medians, min, max, each run, load
average before and after, machine, versions) in --results (default results.md here).
Exit codes: 0 done, 1 a measured command failed or --check found differences, 2 bad usage.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import spine_lib  # noqa: E402

ROOT = spine_lib.ROOT
TOOLS = ("c360-training-set", "duckdb-12-dates", "c360-snapshot")


def c360_training_cmd(args, spine: Path, out: Path) -> list[str]:
    return [str(args.c360), "--config", str(args.config), "features", "training-set", "churn_signals",
            "--spine", str(spine), "--label", "churned_90d", "--out", str(out),
            "--source", str(args.data)]


def c360_snapshot_cmd(args, as_of: dt.date, store: Path) -> list[str]:
    return [str(args.c360), "--config", str(args.config), "features", "build", "churn_signals",
            "--as-of", as_of.isoformat(), "--source", str(args.data), "--store", str(store)]


def duckdb_cmd(args, spine: Path, out: Path) -> list[str]:
    return [sys.executable, str(HERE / "duckdb_peer.py"), "--data", str(args.data), "--spine", str(spine),
            "--out", str(out), "--threads", str(args.threads)]


def command(tool: str, args, spine: Path, work: Path, rep: int) -> list[str]:
    if tool == "c360-training-set":
        return c360_training_cmd(args, spine, work / f"c360-{rep}.parquet")
    if tool == "duckdb-12-dates":
        return duckdb_cmd(args, spine, work / f"duckdb-{rep}.parquet")
    store = work / f"store-{rep}"
    if store.exists():
        shutil.rmtree(store)  # a fresh store: the build cannot reuse a committed snapshot
    return c360_snapshot_cmd(args, args.dates[-1], store)


def summarize(runs: list[dict]) -> dict:
    walls, peaks = [r["wall"] for r in runs], [r["peak_mb"] for r in runs]
    return {"wall_s": {"median": statistics.median(walls), "min": min(walls), "max": max(walls)},
            "peak_mb": {"median": statistics.median(peaks), "min": min(peaks), "max": max(peaks)},
            "runs": [{"wall_s": round(r["wall"], 3), "peak_mb": round(r["peak_mb"], 1)} for r in runs]}


def run_check(args, spine: Path, work: Path) -> int:
    env = spine_lib.thread_env(args.threads)
    outs = {}
    for tool in ("c360-training-set", "duckdb-12-dates"):
        r = spine_lib.measure(command(tool, args, spine, work, 0), env, cwd=work,
                              min_available_mb=args.min_available_mb)
        print(f"{tool}: {r['wall']:.2f} s, {r['peak_mb']:.0f} MB, exit {r['rc']}", file=sys.stderr)
        if r["rc"] != 0:
            print(f"{tool} failed: {spine_lib.failure_text(r, 20)}", file=sys.stderr)
            return 1
        outs[tool] = work / ("c360-0.parquet" if tool.startswith("c360") else "duckdb-0.parquet")
    problems = spine_lib.compare_keyed(outs["duckdb-12-dates"], outs["c360-training-set"], "duckdb vs c360")
    import polars as pl

    rows = pl.scan_parquet(outs["c360-training-set"]).select(pl.len()).collect().item()
    for p in problems:
        print(p, file=sys.stderr)
    print(f"training set, {rows:,} rows: c360 and DuckDB {'agree' if not problems else 'DIFFER'}")
    return 1 if problems else 0


def run_bench(args, spine: Path, spine_rows: int, work: Path) -> int:
    env = spine_lib.thread_env(args.threads)
    spine_lib.features_bench.warm_cache(args.data)
    results = {t: [] for t in TOOLS}
    failures = {}
    load_before = spine_lib.loadavg()
    for rep in range(1, args.reps + 1):
        for tool in TOOLS:
            if tool in failures:
                continue
            r = spine_lib.measure(command(tool, args, spine, work, rep), env, cwd=work,
                                  min_available_mb=args.min_available_mb)
            if r["rc"] != 0:
                failures[tool] = spine_lib.failure_text(r)
                print(f"rep {rep}: {tool}: FAILED {failures[tool]}", file=sys.stderr)
                continue
            results[tool].append(r)
            print(f"rep {rep}: {tool:18s} {r['wall']:8.2f} s {r['peak_mb']:8.0f} MB", file=sys.stderr)
            for f in work.glob(f"*-{rep}.parquet"):
                f.unlink()  # outputs are not kept between rounds (disk)
    load_after = spine_lib.loadavg()
    summary = {t: summarize(v) for t, v in results.items() if v}
    report = {
        "benchmark": "training set churn_signals + churned_90d",
        "data": str(args.data), "source": spine_lib.features_bench.describe_data(args.data),
        "spine": {"dates": [d.isoformat() for d in args.dates], "rows": spine_rows,
                  "sample_customers": args.sample_customers, "seed": args.seed},
        "reps": args.reps, "threads": args.threads,
        "loadavg_before": load_before, "loadavg_after": load_after,
        "machine": spine_lib.environment(),
        "versions": spine_lib.features_bench.versions(args, True).split(", ")[:3]
        + [spine_lib.c360_version(args.c360, args.c360_rev)],
        "results": summary, "failures": failures,
    }
    text = render(report)
    print(text)
    args.results.write_text(text)
    return 1 if failures else 0


def ratio(summary: dict, a: str, b: str, metric: str) -> str:
    if a in summary and b in summary:
        return f"{summary[a][metric]['median'] / summary[b][metric]['median']:.2f}"
    return "n/a"


def render(report: dict) -> str:
    s, sp = report["results"], report["spine"]
    busy = spine_lib.busy(report["loadavg_before"], report["loadavg_after"])
    lines = [
        "# Training set: c360 vs DuckDB's 12-date query vs one snapshot",
        "",
        f"- run: {report['machine']['when_utc']} UTC; {report['machine']['cpus']} CPUs, "
        f"{report['machine']['memory_gb']} GB, {report['machine']['arch']}; {report['threads']} threads "
        f"per engine; median of {report['reps']} interleaved rounds (min-max in brackets)",
        f"- data: `{report['data']}`: {report['source']}",
        f"- spine: {len(sp['dates'])} dates {sp['dates'][0]} .. {sp['dates'][-1]}, {sp['rows']:,} rows"
        + (f" ({sp['sample_customers']:,} customers sampled, seed {sp['seed']})" if sp["sample_customers"] else
           " (every customer signed up by each date)"),
        f"- versions: {', '.join(report['versions'])}",
        f"- load average (1, 5, 15 min) before: {report['loadavg_before']}, after: {report['loadavg_after']}"
        + (" (**the machine was busy: these numbers are not clean**)" if busy else ""),
        "",
        "| tool | wall s | peak MB | wall vs DuckDB | peak vs DuckDB | wall vs one snapshot |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for tool in TOOLS:
        if tool in report["failures"]:
            lines.append(f"| {tool} | failed: {report['failures'][tool][:200]} | | | | |")
            continue
        if tool not in s:
            continue
        w, m = s[tool]["wall_s"], s[tool]["peak_mb"]
        lines.append(f"| {tool} | {w['median']:.2f} [{w['min']:.2f}-{w['max']:.2f}] | "
                     f"{m['median']:.0f} [{m['min']:.0f}-{m['max']:.0f}] | "
                     f"{ratio(s, tool, 'duckdb-12-dates', 'wall_s')} | {ratio(s, tool, 'duckdb-12-dates', 'peak_mb')} | "
                     f"{ratio(s, tool, 'c360-snapshot', 'wall_s')} |")
    lines += ["", "Issue 18 targets: c360-training-set at most 3x c360-snapshot in wall time, and at or "
              "below duckdb-12-dates in wall time and peak memory.", "", "```json",
              json.dumps(report, indent=1, default=str), "```"]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="source folder with the four tables")
    ap.add_argument("--c360", type=Path, required=True, help="the release c360 binary")
    ap.add_argument("--c360-rev", help="git revision the binary was built from (recorded in the results)")
    ap.add_argument("--config", type=Path, default=ROOT / "c360.toml",
                    help="c360.toml whose [paths] name the definitions (default: the repo's)")
    ap.add_argument("--reps", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--threads", type=int, default=2, help="threads per engine (default 2)")
    ap.add_argument("--sample-customers", type=int, help="spine of this many sampled customers (default: all)")
    ap.add_argument("--seed", type=int, default=42, help="seed of the customer sample (default 42)")
    ap.add_argument("--work", type=Path, help="scratch folder (default: a new temporary one, removed after)")
    ap.add_argument("--min-available-mb", type=int, default=1500,
                    help="kill a measured process when the machine's MemAvailable falls below this "
                         "(0: never; default 1500)")
    ap.add_argument("--results", type=Path, default=HERE / "results.md", help="results file (markdown + JSON)")
    ap.add_argument("--check", action="store_true", help="compare c360's training set with DuckDB's instead of timing")
    args = ap.parse_args()
    if args.reps < 1 or args.threads < 1 or (args.sample_customers is not None and args.sample_customers < 1):
        ap.error("--reps, --threads and --sample-customers must be at least 1")
    if not (args.c360.is_file() and os.access(args.c360, os.X_OK)):
        ap.error(f"--c360 {args.c360}: missing or not executable (build it: cargo build --release)")
    if not (args.data / "customers.parquet").exists() and not (args.data / "customers").is_dir():
        ap.error(f"--data {args.data}: no customers table (make one: c360 generate --customers N --out DIR)")
    args.data, args.c360, args.config = args.data.resolve(), args.c360.resolve(), args.config.resolve()
    args.dates = spine_lib.month_ends()
    own_work = args.work is None
    work = Path(tempfile.mkdtemp(prefix="c360-training-bench-")) if own_work else args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    try:
        spine = work / "spine.parquet"
        rows = spine_lib.make_spine(args.data, spine, args.dates, args.sample_customers, args.seed, args.threads)
        print(f"spine: {rows:,} rows ({len(args.dates)} dates) in {spine}", file=sys.stderr)
        return run_check(args, spine, work) if args.check else run_bench(args, spine, rows, work)
    finally:
        if own_work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
