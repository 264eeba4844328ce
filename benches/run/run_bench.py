#!/usr/bin/env python3
"""Times `c360 run churn_weekly` end to end on generated data and splits the time by step.

    python benches/run/run_bench.py --c360 ~/.cache/c360-target/release/c360 --customers 1000000

Generates the data (once, into --data), runs the job on a fresh store, reads the run
ledger (runs/<job>/<run_id>/run.json) and reports each step's share of the wall time.
"Orchestration" is everything but computing features and scoring: writing the transform
input, reading results back and gating them, publishing the product, and process/ledger
overhead. A second invocation shows the cost of an idempotent re-run.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--c360", default=os.path.expanduser("~/.cache/c360-target/release/c360"))
    ap.add_argument("--customers", type=int, default=1_000_000)
    ap.add_argument("--data", default="/tmp/c360-bench-run/data")
    ap.add_argument("--store", default="/tmp/c360-bench-run/store")
    ap.add_argument("--as-of", default="2024-09-30")
    ap.add_argument("--out", default=str(ROOT / "benches/run/results.md"))
    a = ap.parse_args()
    data = Path(a.data)
    if not (data / "orders.parquet").exists():
        t = time.time()
        subprocess.run([a.c360, "generate", "--customers", str(a.customers), "--out", str(data)], check=True)
        print(f"generated in {time.time() - t:.1f}s", flush=True)
    shutil.rmtree(a.store, ignore_errors=True)
    env = dict(os.environ, C360_LOG="warn", C360_NO_PROGRESS="1")
    cmd = [a.c360, "--config", str(ROOT / "c360.toml"), "run", "churn_weekly", "--as-of", a.as_of,
           "--source", str(data), "--store", a.store]
    t = time.time()
    subprocess.run(cmd, check=True, env=env)
    wall = time.time() - t
    t = time.time()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    rerun = time.time() - t
    ledger = next(Path(a.store, "runs/churn_weekly").glob("*/run.json"))
    steps = json.loads(ledger.read_text())["steps"]
    secs = {s["name"]: s["seconds"] for s in steps}
    rows = {s["name"]: s["rows"] for s in steps}
    core = secs.get("features", 0) + secs.get("transform", 0)
    orch = wall - core
    lines = [
        f"`c360 run churn_weekly --as-of {a.as_of}`, {rows.get('transform_input')} customers scored "
        f"({a.customers} generated), release build, cold store, 2 cores.",
        "",
        "| step | seconds | share of the run |",
        "|---|---:|---:|",
    ]
    for s in steps:
        lines.append(f"| {s['name']} | {s['seconds']:.2f} | {100 * s['seconds'] / wall:.1f}% |")
    other = wall - sum(secs.values())
    lines.append(f"| (process start, loading definitions and model, ledger) | {other:.2f} | {100 * other / wall:.1f}% |")
    lines.append(f"| **total wall time** | **{wall:.2f}** | 100% |")
    lines.append("")
    lines.append(f"Orchestration (everything but the feature build and scoring): **{orch:.2f} s = "
                 f"{100 * orch / wall:.1f}%** of the run (target: under 20%).")
    lines.append(f"An identical re-run (reuses the finished run, recomputes nothing): {rerun:.2f} s.")
    text = "\n".join(lines) + "\n"
    print(text)
    Path(a.out).write_text(text)


if __name__ == "__main__":
    sys.exit(main())
