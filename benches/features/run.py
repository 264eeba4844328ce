"""Peer benchmark: c360 feature builds against DuckDB and polars (Python) on the same Parquet.

    # the data (1M customers is the issue's target size)
    target/release/c360 generate --customers 1000000 --out /tmp/c360-1m
    # time everything (3 runs each, medians), write benches/features/results.md
    .venv-oracle/bin/python benches/features/run.py --data /tmp/c360-1m --as-of 2024-06-30 \\
        --c360 target/release/c360 --store /tmp/c360-bench-store
    # sanity: the peers compute the same features (and c360 too, if its output is found)
    .venv-oracle/bin/python benches/features/run.py --data /tmp/c360-1m --as-of 2024-06-30 --check

Without `c360 generate`, benches/features/make_synth.py makes a source of the same shape.

What is measured, and why this way:
  * Every measurement is its own process, started from here, so its peak RSS (GNU time's
    %M, or ru_maxrss from wait4 without it) is the cost of that one build and nothing else.
    Wall time is the whole process, interpreter start and imports included, because that
    is what a user of each tool waits for; `engine s` (the time inside DuckDB/polars, as
    the worker measured it) is shown next to it so the comparison can also be read
    without that overhead.
  * All engines get 2 threads (the machine has 2 cores): DuckDB `SET threads`, polars
    POLARS_MAX_THREADS, and POLARS_MAX_THREADS / RAYON_NUM_THREADS for c360.
  * The files are read once before timing so that no tool pays for a cold page cache, and the
    runs are interleaved (rep 1 of every tool, then rep 2, ...) so drift hits all alike.
  * c360 gets a fresh, empty store for each run: an idempotent rebuild must not be able to
    skip work.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEERS = HERE / "peers.py"
TABLES = ("customers", "orders", "interactions", "support_tickets")
SETS = ("rfm", "churn_signals")


GNU_TIME = Path("/usr/bin/time")


def measure(cmd: list[str], env: dict) -> dict:
    """Run cmd to completion; wall seconds, peak RSS (MB) of that process, its stdout.

    Peak RSS comes from GNU time when installed (`apt-get install time`): a forked child's
    high-water mark starts at its parent's size, and GNU time is a tiny parent, whereas a
    child forked from this Python process would never report less than ~10-30 MB. Without
    it, ru_maxrss from wait4 on the child is used (fine for builds of hundreds of MB).
    """
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
        use_time = GNU_TIME.is_file()
        full = [str(GNU_TIME), "-f", "%M", "-o", rss.name, *cmd] if use_time else cmd
        t0 = time.perf_counter()
        proc = subprocess.Popen(full, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # communicate() would reap the child and lose its rusage: drain the (small) pipes,
        # then collect exit status and rusage with wait4.
        out, err = proc.stdout.read(), proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        rc = os.waitstatus_to_exitcode(status)
        proc.returncode = rc
        peak_kb = usage.ru_maxrss
        if use_time:
            lines = [ln for ln in Path(rss.name).read_text().splitlines() if ln.strip().isdigit()]
            if lines:
                peak_kb = int(lines[-1])
    return dict(wall=wall, peak_mb=peak_kb / 1024, rc=rc, out=out, err=err)


def thread_env(threads: int) -> dict:
    env = dict(os.environ)
    env.update(POLARS_MAX_THREADS=str(threads), RAYON_NUM_THREADS=str(threads))
    return env


def peer_cmd(tool, feature_set, args, out: Path) -> list[str]:
    return [sys.executable, str(PEERS), "--tool", tool, "--set", feature_set, "--data", str(args.data),
            "--as-of", args.as_of, "--out", str(out), "--threads", str(args.threads)]


def c360_cmd(feature_set, args, store: Path) -> list[str]:
    return [str(args.c360), "features", "build", feature_set, "--as-of", args.as_of,
            "--source", str(args.data), "--store", str(store)]


def c360_available(args) -> bool:
    if args.c360 is None:
        print("c360: no --c360 given; only the peers are measured", file=sys.stderr)
        return False
    if not (args.c360.is_file() and os.access(args.c360, os.X_OK)):
        print(f"c360: {args.c360} is missing or not executable (build it with "
              f"`cargo build --release`); only the peers are measured", file=sys.stderr)
        return False
    return True


def fresh_store(args, feature_set: str, rep: int) -> Path:
    # only ever removes the run folders this script itself creates
    path = args.store / f"bench-{feature_set}-{rep}"
    if path.exists():
        shutil.rmtree(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def warm_cache(data: Path) -> None:
    for f in sorted(data.rglob("*")):
        if f.is_file():
            with open(f, "rb") as fh:
                while fh.read(1 << 24):
                    pass


def describe_data(data: Path) -> str:
    import pyarrow.parquet as pq

    parts = []
    for t in TABLES:
        files = [data / f"{t}.parquet"] if (data / f"{t}.parquet").is_file() else sorted((data / t).rglob("*.parquet"))
        rows = sum(pq.ParquetFile(f).metadata.num_rows for f in files)
        size = sum(f.stat().st_size for f in files)
        parts.append(f"{t} {rows:,} rows ({size / 2**20:.0f} MB)")
    return "; ".join(parts)


# ----------------------------------------------------------------------------------------
# --check: do the engines compute the same thing?
# ----------------------------------------------------------------------------------------


def compare(left_path: Path, right, label: str) -> list[str]:
    """Column-by-column comparison after sorting by customer_id; floats to 1e-9 relative."""
    import polars as pl

    a = pl.read_parquet(left_path).sort("customer_id")
    b = (right if isinstance(right, pl.DataFrame) else pl.read_parquet(right)).sort("customer_id")
    problems = []
    if a.height != b.height or not a["customer_id"].equals(b["customer_id"]):
        return [f"{label}: different customers ({a.height} vs {b.height} rows)"]
    for col in a.columns:
        if col not in b.columns:
            problems.append(f"{label}: column {col} missing on the right")
            continue
        x, y = a[col], b[col]
        null_diff = (x.is_null() != y.is_null()).sum()
        if x.dtype.is_float() or y.dtype.is_float():
            x, y = x.cast(pl.Float64), y.cast(pl.Float64)
            tol = 1e-9 * pl.max_horizontal(x.abs(), y.abs(), pl.lit(1.0))
            frame = pl.DataFrame({"x": x, "y": y}).with_columns(tol=tol)
            value_diff = frame.filter(pl.col("x").is_not_null() & pl.col("y").is_not_null()
                                      & ((pl.col("x") - pl.col("y")).abs() > pl.col("tol"))).height
        else:
            if x.dtype != y.dtype:
                y = y.cast(x.dtype)
            value_diff = (x.is_not_null() & y.is_not_null() & (x != y)).sum()
        if null_diff or value_diff:
            problems.append(f"{label}: {col}: {null_diff} null mismatches, {value_diff} value mismatches")
    return problems


def find_c360_output(store: Path, feature_set: str):
    """Best effort: the c360 store layout is not fixed here; read every Parquet file under
    the run's store that has a customer_id column and the set's first feature column."""
    import polars as pl

    marker = "frequency" if feature_set == "rfm" else "days_since_last_order"
    frames = [pl.read_parquet(f) for f in sorted(store.rglob("*.parquet"))]
    frames = [f for f in frames if "customer_id" in f.columns and marker in f.columns]
    return pl.concat(frames, how="diagonal_relaxed") if frames else None


def run_check(args, have_c360: bool) -> int:
    work = Path(tempfile.mkdtemp(prefix="c360-check-"))
    env = thread_env(args.threads)
    problems = []
    for feature_set in SETS:
        outs = {}
        for tool in ("duckdb", "polars"):
            outs[tool] = work / f"{tool}-{feature_set}.parquet"
            r = measure(peer_cmd(tool, feature_set, args, outs[tool]), env)
            if r["rc"] != 0:
                problems.append(f"{tool} {feature_set} failed:\n{r['err'][-2000:]}")
        if all(p.exists() for p in outs.values()):
            found = compare(outs["duckdb"], outs["polars"], f"{feature_set} duckdb vs polars")
            problems += found
            print(f"{feature_set}: duckdb vs polars: {'agree' if not found else 'DIFFER'}")
        if have_c360 and outs["duckdb"].exists():
            store = fresh_store(args, feature_set, 0)
            r = measure(c360_cmd(feature_set, args, store), env)
            frame = find_c360_output(store, feature_set) if r["rc"] == 0 else None
            if r["rc"] != 0:
                problems.append(f"c360 {feature_set} failed (exit {r['rc']}):\n{r['err'][-2000:]}")
            elif frame is None:
                print(f"{feature_set}: c360 output not found under {store}; not compared")
            else:
                found = compare(outs["duckdb"], frame, f"{feature_set} duckdb vs c360")
                problems += found
                print(f"{feature_set}: duckdb vs c360: {'agree' if not found else 'DIFFER'}")
    for p in problems:
        print(p, file=sys.stderr)
    shutil.rmtree(work)
    return 1 if problems else 0


# ----------------------------------------------------------------------------------------
# timing
# ----------------------------------------------------------------------------------------


def run_bench(args, have_c360: bool) -> int:
    work = Path(tempfile.mkdtemp(prefix="c360-bench-"))
    env = thread_env(args.threads)
    tasks = [(tool, s) for s in SETS for tool in ("duckdb", "polars")]
    if have_c360:
        tasks += [("c360", s) for s in SETS]
    results = {t: [] for t in tasks}
    failures = {}

    warm_cache(args.data)
    load_before = os.getloadavg()[0]
    for rep in range(1, args.reps + 1):
        for tool, feature_set in tasks:
            if (tool, feature_set) in failures:
                continue
            if tool == "c360":
                cmd = c360_cmd(feature_set, args, fresh_store(args, feature_set, rep))
            else:
                cmd = peer_cmd(tool, feature_set, args, work / f"{tool}-{feature_set}-{rep}.parquet")
            r = measure(cmd, env)
            if r["rc"] != 0:
                failures[(tool, feature_set)] = f"exit {r['rc']}: {r['err'].strip()[-500:]}"
                print(f"{tool} {feature_set}: FAILED {failures[(tool, feature_set)]}", file=sys.stderr)
                continue
            engine = json.loads(r["out"].strip().splitlines()[-1])["seconds"] if tool != "c360" else None
            results[(tool, feature_set)].append(dict(r, engine=engine))
            print(f"rep {rep}: {tool:7s} {feature_set:14s} {r['wall']:7.2f} s {r['peak_mb']:8.0f} MB",
                  file=sys.stderr)
    shutil.rmtree(work)
    load_after = os.getloadavg()[0]

    med = {k: {m: statistics.median(x[m] for x in v) for m in ("wall", "peak_mb")} |
              {"engine": statistics.median(x["engine"] for x in v) if v and v[0]["engine"] is not None else None}
           for k, v in results.items() if v}
    lines = [
        "# Feature builds: c360 vs DuckDB vs polars (Python)",
        "",
        f"- run: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC, as-of {args.as_of}, "
        f"median of {args.reps} runs, {args.threads} threads each, "
        f"{os.cpu_count()} CPUs, {platform.machine()}",
        f"- data: `{args.data}`: {describe_data(args.data)}",
        f"- versions: {versions(args, have_c360)}",
        f"- 1-minute load average before / after the runs: {load_before:.2f} / {load_after:.2f}"
        + (" (**the machine was busy: these numbers are not clean**)"
           if max(load_before, load_after) > 0.5 * (os.cpu_count() or 1) else ""),
        "- wall s: the whole process (start-up and imports included); engine s: time inside the "
        "engine as the Python worker measured it; peak MB: max RSS of the process",
        "",
        "| tool | set | wall s | peak MB | wall vs DuckDB | peak vs DuckDB | engine s |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for feature_set in SETS:
        base = med.get(("duckdb", feature_set))
        for tool in ("duckdb", "polars", "c360"):
            key = (tool, feature_set)
            if key in failures:
                lines.append(f"| {tool} | {feature_set} | failed | | | | |")
                continue
            if key not in med:
                continue
            m = med[key]
            ratio_w = f"{m['wall'] / base['wall']:.2f}" if base else "n/a"
            ratio_m = f"{m['peak_mb'] / base['peak_mb']:.2f}" if base else "n/a"
            engine = f"{m['engine']:.2f}" if m["engine"] is not None else "="
            lines.append(f"| {tool} | {feature_set} | {m['wall']:.2f} | {m['peak_mb']:.0f} | "
                         f"{ratio_w} | {ratio_m} | {engine} |")
    if not have_c360:
        lines += ["", "c360 was not measured (no binary given or found)."]
    text = "\n".join(lines) + "\n"
    print(text)
    args.results.write_text(text)
    return 1 if failures else 0


def versions(args, have_c360: bool) -> str:
    out = subprocess.run([sys.executable, "-c",
                          "import duckdb, polars; print(duckdb.__version__, polars.__version__)"],
                         capture_output=True, text=True).stdout.split()
    parts = [f"duckdb {out[0]}", f"polars {out[1]}", f"python {platform.python_version()}"]
    if have_c360:
        v = subprocess.run([str(args.c360), "--version"], capture_output=True, text=True)
        parts.append(v.stdout.strip() or "c360 (no --version)")
    return ", ".join(parts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="source folder with the four tables")
    ap.add_argument("--as-of", required=True, help="YYYY-MM-DD")
    ap.add_argument("--c360", type=Path, help="path to the release c360 binary")
    ap.add_argument("--store", type=Path, default=Path(tempfile.gettempdir()) / "c360-bench-store",
                    help="where c360's per-run stores go (bench-<set>-<rep>/ is recreated)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--results", type=Path, default=HERE / "results.md")
    ap.add_argument("--check", action="store_true", help="compare outputs instead of timing")
    args = ap.parse_args()
    dt.date.fromisoformat(args.as_of)  # fail early on a bad date
    args.data = args.data.resolve()
    have_c360 = c360_available(args)
    if have_c360:
        args.c360 = args.c360.resolve()
    return run_check(args, have_c360) if args.check else run_bench(args, have_c360)


if __name__ == "__main__":
    sys.exit(main())
