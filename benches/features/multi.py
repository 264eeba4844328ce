"""Multi-set benchmark (issue 18): `rfm` + `churn_signals` in one pass, c360 vs DuckDB vs polars.

    # 1M customers, 3 interleaved rounds, medians -> benches/features/results-multi.md
    .venv-oracle/bin/python benches/features/multi.py --data /tmp/c360-1m --as-of 2024-06-30 \\
        --c360 target/release/c360
    # same values? DuckDB's one query against polars' and c360's outputs, every column
    .venv-oracle/bin/python benches/features/multi.py --data /tmp/c360-1m --as-of 2024-06-30 \\
        --c360 target/release/c360 --check

What runs (each its own process; the protocol of run.py in this folder: wall time and GNU
time's peak RSS of that process, 2 threads per engine, warm page cache, interleaved rounds,
medians with min and max, load average before and after):
  c360     `c360 features build rfm churn_signals --as-of D` (one command), fresh store each
  duckdb   one query computing both sets: scripts/oracle/rfm.sql and churn_signals.sql as
           two subqueries joined on customer_id (both are one row per snapshot customer),
           COPY to one Parquet file
  polars   peers.py's two polars transcriptions, evaluated by one `pl.collect_all` (shared
           scans are common-subplan-eliminated by polars), each written to Parquet
Ratios c360/DuckDB are given for wall time and peak memory (issue 18's targets: at most
0.7x the time, at most 1.0x the memory).

This file is also its own worker: `multi.py --worker duckdb|polars --data --as-of --out`
(what the benchmark starts; prints {"seconds", "rows"} as JSON).
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
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "benches" / "training"))
import spine_lib  # noqa: E402

features_bench = spine_lib.features_bench
TOOLS = ("c360", "duckdb", "polars")
SETS = ("rfm", "churn_signals")


# ----------------------------------------------------------------------------------------
# workers
# ----------------------------------------------------------------------------------------


def both_sets_sql(as_of: dt.date) -> str:
    """rfm.sql and churn_signals.sql as subqueries joined on customer_id, one row per customer."""
    sys.path.insert(0, str(spine_lib.ORACLE))
    import oracle_lib

    rfm = oracle_lib.render_sql(oracle_lib.sql_text("rfm"), as_of)
    churn = oracle_lib.render_sql(oracle_lib.sql_text("churn_signals"), as_of)
    return (f"SELECT r.*, c.* EXCLUDE (customer_id, as_of)\n"
            f"FROM (\n{rfm}\n) r\nJOIN (\n{churn}\n) c USING (customer_id)\nORDER BY r.customer_id")


def worker(args) -> None:
    if args.worker == "polars":
        os.environ["POLARS_MAX_THREADS"] = str(args.threads)  # before polars is imported
        import polars as pl

        sys.path.insert(0, str(HERE))
        import peers

        t0 = time.perf_counter()
        frames = pl.collect_all([peers.polars_rfm(pl, args.data, args.as_of),
                                 peers.polars_churn_signals(pl, args.data, args.as_of)])
        for name, frame in zip(SETS, frames):
            frame.write_parquet(args.out.with_name(f"{args.out.stem}-{name}.parquet"))
        seconds, rows = time.perf_counter() - t0, frames[0].height
    else:
        sys.path.insert(0, str(spine_lib.ORACLE))
        import oracle_lib

        t0 = time.perf_counter()
        con = oracle_lib.connect(args.data, threads=args.threads)
        rows = con.execute(f"COPY ({both_sets_sql(args.as_of)}) TO '{args.out}' (FORMAT parquet)").fetchall()[0][0]
        seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "rows": rows}))


# ----------------------------------------------------------------------------------------
# benchmark
# ----------------------------------------------------------------------------------------


def command(tool: str, args, work: Path, rep: int) -> list[str]:
    if tool == "c360":
        store = work / f"store-{rep}"
        if store.exists():
            shutil.rmtree(store)  # fresh store: the build cannot reuse a committed snapshot
        return [str(args.c360), "--config", str(args.config), "features", "build", *SETS,
                "--as-of", args.as_of.isoformat(), "--source", str(args.data), "--store", str(store)]
    return [sys.executable, str(Path(__file__).resolve()), "--worker", tool, "--data", str(args.data),
            "--as-of", args.as_of.isoformat(), "--out", str(work / f"{tool}-{rep}.parquet"),
            "--threads", str(args.threads)]


def run_check(args, work: Path) -> int:
    import polars as pl

    env = spine_lib.thread_env(args.threads)
    for tool in TOOLS:
        r = spine_lib.measure(command(tool, args, work, 0), env, cwd=work, min_available_mb=args.min_available_mb)
        print(f"{tool}: {r['wall']:.2f} s, {r['peak_mb']:.0f} MB, exit {r['rc']}", file=sys.stderr)
        if r["rc"] != 0:
            print(f"{tool} failed: {spine_lib.failure_text(r, 20)}", file=sys.stderr)
            return 1
    both = pl.read_parquet(work / "duckdb-0.parquet")
    problems = []
    for name in SETS:
        polars_out = pl.read_parquet(work / f"polars-0-{name}.parquet")
        duck = both.select(polars_out.columns)  # the set's columns of DuckDB's joined output
        c360_out = features_bench.find_c360_output(work / "store-0", name)
        if c360_out is None:
            problems.append(f"{name}: no c360 output with the set's columns under {work / 'store-0'}")
            continue
        c360_out = c360_out.select(duck.columns)
        found, notes = [], []
        outs = {"duckdb": duck, "polars": polars_out, "c360": c360_out}
        for left, right in (("duckdb", "polars"), ("duckdb", "c360"), ("polars", "c360")):
            diff = spine_lib.compare_keyed(outs[left], outs[right], f"{name} {left} vs {right}")
            flips = [d for d in diff if ": m_score: 0 null mismatches" in d]
            if flips and name == "rfm" and spine_lib.unexplained_score_flips(
                    outs[left], outs[right], "m_score", "monetary_total") == 0:
                notes.append(f"{flips[0]}: every flip is a tie made or broken by the engines' float "
                             "summation order (monetary_total one ULP apart), not a difference")
                diff = [d for d in diff if d not in flips]
            found += diff
        print(f"{name} ({duck.height:,} rows): duckdb, polars and c360 {'agree' if not found else 'DIFFER'}")
        for n in notes:
            print(f"  note: {n}")
        problems += found
    for p in problems:
        print(p, file=sys.stderr)
    return 1 if problems else 0


def run_bench(args, work: Path) -> int:
    env = spine_lib.thread_env(args.threads)
    features_bench.warm_cache(args.data)
    results = {t: [] for t in TOOLS}
    failures = {}
    load_before = spine_lib.loadavg()
    for rep in range(1, args.reps + 1):
        for tool in TOOLS:
            if tool in failures:
                continue
            r = spine_lib.measure(command(tool, args, work, rep), env, cwd=work, min_available_mb=args.min_available_mb)
            if r["rc"] != 0:
                failures[tool] = spine_lib.failure_text(r)
                print(f"rep {rep}: {tool}: FAILED {failures[tool]}", file=sys.stderr)
                continue
            engine = json.loads(r["out"].strip().splitlines()[-1])["seconds"] if tool != "c360" else None
            results[tool].append(dict(r, engine=engine))
            print(f"rep {rep}: {tool:7s} {r['wall']:8.2f} s {r['peak_mb']:8.0f} MB", file=sys.stderr)
            for f in work.glob(f"*-{rep}*.parquet"):
                f.unlink()
    load_after = spine_lib.loadavg()
    summary = {}
    for tool, runs in results.items():
        if runs:
            summary[tool] = {
                "wall_s": {k: f([r["wall"] for r in runs]) for k, f in
                           (("median", statistics.median), ("min", min), ("max", max))},
                "peak_mb": {k: f([r["peak_mb"] for r in runs]) for k, f in
                            (("median", statistics.median), ("min", min), ("max", max))},
                "engine_s": statistics.median(r["engine"] for r in runs) if runs[0]["engine"] is not None else None,
                "runs": [{"wall_s": round(r["wall"], 3), "peak_mb": round(r["peak_mb"], 1)} for r in runs]}
    report = {"benchmark": "features build rfm + churn_signals, one pass", "as_of": args.as_of.isoformat(),
              "data": str(args.data), "source": features_bench.describe_data(args.data), "reps": args.reps,
              "threads": args.threads, "loadavg_before": load_before, "loadavg_after": load_after,
              "machine": spine_lib.environment(),
              "versions": features_bench.versions(args, True).split(", ")[:3] + [spine_lib.c360_version(args.c360, args.c360_rev)],
              "results": summary, "failures": failures}
    text = render(report)
    print(text)
    args.results.write_text(text)
    return 1 if failures else 0


def render(report: dict) -> str:
    s = report["results"]
    busy = spine_lib.busy(report["loadavg_before"], report["loadavg_after"])

    def ratio(tool, metric):
        if tool in s and "duckdb" in s:
            return f"{s[tool][metric]['median'] / s['duckdb'][metric]['median']:.2f}"
        return "n/a"

    lines = [
        "# rfm + churn_signals in one pass: c360 vs DuckDB (one query) vs polars (one collect_all)",
        "",
        f"- run: {report['machine']['when_utc']} UTC, as-of {report['as_of']}; {report['machine']['cpus']} CPUs, "
        f"{report['machine']['memory_gb']} GB; {report['threads']} threads per engine; median of "
        f"{report['reps']} interleaved rounds (min-max in brackets)",
        f"- data: `{report['data']}`: {report['source']}",
        f"- versions: {', '.join(report['versions'])}",
        f"- load average (1, 5, 15 min) before: {report['loadavg_before']}, after: {report['loadavg_after']}"
        + (" (**the machine was busy: these numbers are not clean**)" if busy else ""),
        "- wall s: the whole process; engine s: inside DuckDB/polars as the worker measured it",
        "",
        "| tool | wall s | peak MB | wall vs DuckDB | peak vs DuckDB | engine s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for tool in TOOLS:
        if tool in report["failures"]:
            lines.append(f"| {tool} | failed: {report['failures'][tool][:200]} | | | | |")
            continue
        if tool not in s:
            continue
        w, m = s[tool]["wall_s"], s[tool]["peak_mb"]
        engine = f"{s[tool]['engine_s']:.2f}" if s[tool]["engine_s"] is not None else "="
        lines.append(f"| {tool} | {w['median']:.2f} [{w['min']:.2f}-{w['max']:.2f}] | "
                     f"{m['median']:.0f} [{m['min']:.0f}-{m['max']:.0f}] | {ratio(tool, 'wall_s')} | "
                     f"{ratio(tool, 'peak_mb')} | {engine} |")
    lines += ["", "Issue 18 targets: c360 at most 0.70x DuckDB's wall time and at most 1.00x its peak memory.",
              "", "```json", json.dumps(report, indent=1, default=str), "```"]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="source folder with the four tables")
    ap.add_argument("--as-of", type=dt.date.fromisoformat, default=dt.date(2024, 6, 30),
                    help="YYYY-MM-DD (default 2024-06-30)")
    ap.add_argument("--c360", type=Path, help="the release c360 binary (required unless --worker)")
    ap.add_argument("--c360-rev", help="git revision the binary was built from (recorded in the results)")
    ap.add_argument("--config", type=Path, default=ROOT / "c360.toml", help="c360.toml (default: the repo's)")
    ap.add_argument("--reps", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--threads", type=int, default=2, help="threads per engine (default 2)")
    ap.add_argument("--work", type=Path, help="scratch folder (default: a temporary one, removed after)")
    ap.add_argument("--min-available-mb", type=int, default=1500,
                    help="kill a measured process when MemAvailable falls below this (0: never)")
    ap.add_argument("--results", type=Path, default=HERE / "results-multi.md", help="results file (markdown + JSON)")
    ap.add_argument("--check", action="store_true", help="compare the three outputs instead of timing")
    ap.add_argument("--worker", choices=["duckdb", "polars"], help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.data = args.data.resolve()
    if args.worker:
        if args.out is None:
            ap.error("--worker needs --out")
        if "'" in str(args.out) or "'" in str(args.data):
            ap.error("paths with a quote cannot be put in the SQL text; rename them")
        worker(args)
        return 0
    if args.reps < 1 or args.threads < 1:
        ap.error("--reps and --threads must be at least 1")
    if args.c360 is None or not (args.c360.is_file() and os.access(args.c360, os.X_OK)):
        ap.error(f"--c360 {args.c360}: missing or not executable (build it: cargo build --release)")
    args.c360, args.config = args.c360.resolve(), args.config.resolve()
    own = args.work is None
    work = Path(tempfile.mkdtemp(prefix="c360-multi-bench-")) if own else args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    try:
        return run_check(args, work) if args.check else run_bench(args, work)
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
