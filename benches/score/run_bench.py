#!/usr/bin/env python3
"""Benchmark `c360 score` against xgboost's own predict.

Same model (300 trees, depth 6, 30 features, binary:logistic), same 1M-row CSV, same thread
count (2 by default), measured two ways:

- in-process: data already in memory, time only the prediction
  (xgboost: `Booster.predict(DMatrix)` and `Booster.inplace_predict(ndarray)`, the faster is
  reported; c360: `c360 score --bench-in-process`, which parses the CSV once and times the
  evaluator alone);
- whole-process: wall time of a fresh process that reads the CSV, predicts, and writes one
  prediction per line (xgboost: python + pandas.read_csv + predict + write; c360: `c360 score`
  with SageMaker's default transform settings, output assembled in order).

It also checks that c360's output equals xgboost's predictions (max abs diff over all rows).

Usage (from the repository root; see benches/score/README.md):
    .venv-oracle/bin/python benches/score/run_bench.py \
        --c360 ~/.cache/c360-target/release/c360 --threads 2 --out BENCHMARKS.md
"""
import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np
import xgboost as xgb

N_FEATURES = 30
N_TREES = 300
DEPTH = 6


def generate(work, rows, threads, seed=42):
    """Trains the benchmark model and writes the CSV (cached in `work`)."""
    model_path = os.path.join(work, "model.ubj")
    csv_path = os.path.join(work, f"data_{rows}.csv")
    rng = np.random.default_rng(seed)
    if not os.path.exists(model_path):
        n = 100_000
        X = rng.normal(size=(n, N_FEATURES)).astype(np.float32)
        X[rng.random(X.shape) < 0.05] = np.nan
        Z = np.nan_to_num(X)
        logit = Z[:, 0] - 0.5 * Z[:, 1] ** 2 + Z[:, 2] * Z[:, 3] + 0.3 * Z[:, 4:10].sum(axis=1)
        y = (logit + rng.normal(size=n) > 0).astype(np.float32)
        t = time.time()
        b = xgb.train(
            {"objective": "binary:logistic", "max_depth": DEPTH, "eta": 0.05, "nthread": threads,
             "tree_method": "hist", "seed": 1},
            xgb.DMatrix(X, label=y, missing=np.nan), N_TREES)
        b.save_model(model_path)
        print(f"trained the model in {time.time() - t:.1f}s -> {model_path}", file=sys.stderr)
    if not os.path.exists(csv_path):
        import pandas as pd
        X = rng.normal(size=(rows, N_FEATURES)).astype(np.float32)
        X[rng.random(X.shape) < 0.05] = np.nan
        t = time.time()
        pd.DataFrame(X).to_csv(csv_path, header=False, index=False, na_rep="", float_format="%.7g")
        print(f"wrote {rows} rows in {time.time() - t:.1f}s -> {csv_path}", file=sys.stderr)
    return model_path, csv_path


XGB_WHOLE = r"""
import sys, numpy as np, pandas as pd, xgboost as xgb
model, csv, out, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
b = xgb.Booster(); b.load_model(model); b.set_param({"nthread": threads})
X = pd.read_csv(csv, header=None, dtype=np.float32).to_numpy()
p = b.inplace_predict(X)
with open(out, "w") as f:
    f.write("\n".join(map(str, p.tolist())))
    f.write("\n")
"""


def wall(cmd, env=None):
    t = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"command failed ({r.returncode}): {' '.join(cmd)}\n{r.stderr}")
    return dt, r


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--c360", default=os.path.expanduser("~/.cache/c360-target/release/c360"))
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3, help="runs per measurement (best is kept)")
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "c360-bench"))
    ap.add_argument("--out", default="benches/score/RESULTS.md", help="markdown report")
    args = ap.parse_args()
    if not os.path.exists(args.c360):
        sys.exit(f"{args.c360} not found: build it with `cargo build --release` (see README.md)")
    os.makedirs(args.work, exist_ok=True)
    model, csv = generate(args.work, args.rows, args.threads)
    env = dict(os.environ, RAYON_NUM_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads))

    # ---- xgboost in process
    import pandas as pd
    X = pd.read_csv(csv, header=None, dtype=np.float32).to_numpy()
    b = xgb.Booster()
    b.load_model(model)
    b.set_param({"nthread": args.threads})
    best_dm, best_inplace = float("inf"), float("inf")
    for _ in range(args.repeat):
        # A fresh DMatrix each time: xgboost caches the predictions of a DMatrix it has seen.
        dm = xgb.DMatrix(X, missing=np.nan, nthread=args.threads)
        t = time.perf_counter()
        p_xgb = b.predict(dm)
        best_dm = min(best_dm, time.perf_counter() - t)
        t = time.perf_counter()
        p_in = b.inplace_predict(X)
        best_inplace = min(best_inplace, time.perf_counter() - t)
    if not np.array_equal(p_xgb, p_in):
        print("note: DMatrix predict and inplace_predict differ by "
              f"{float(np.max(np.abs(p_xgb - p_in))):.3e}", file=sys.stderr)
    xgb_in = min(best_dm, best_inplace)

    # ---- c360 in process
    _, r = wall([args.c360, "score", "--model", model, "--input", csv, "--output",
                 os.path.join(args.work, "unused"), "--bench-in-process",
                 "--bench-repeat", str(args.repeat)], env=env)
    c_in = json.loads(r.stdout.strip().splitlines()[-1])
    assert c_in["rows"] == args.rows, c_in

    # ---- whole process
    xgb_out = os.path.join(args.work, "xgb_out.txt")
    xgb_whole = min(wall([sys.executable, "-c", XGB_WHOLE, model, csv, xgb_out, str(args.threads)], env=env)[0]
                    for _ in range(args.repeat))
    c_out_dir = os.path.join(args.work, "c360_out")
    c_whole = float("inf")
    for _ in range(args.repeat):
        dt, r = wall([args.c360, "score", "--model", model, "--input", csv, "--output", c_out_dir,
                      "--no-progress"], env=env)
        c_whole = min(c_whole, dt)
    summary = r.stderr.strip()

    # ---- parity on every row
    out_file = os.path.join(c_out_dir, os.path.basename(csv) + ".out")
    p_c = np.loadtxt(out_file, dtype=np.float64)
    assert p_c.shape[0] == args.rows, p_c.shape
    diff = float(np.max(np.abs(p_c - p_xgb.astype(np.float64))))

    rows = args.rows
    lines = [
        "# Scoring benchmark: c360 vs xgboost",
        "",
        f"Model: {N_TREES} trees, depth {DEPTH}, {N_FEATURES} features, binary:logistic (5% missing values). "
        f"Data: {rows:,} rows of CSV ({os.path.getsize(csv) / 1e6:.0f} MB). Threads: {args.threads} "
        f"(RAYON_NUM_THREADS / nthread). Best of {args.repeat}.",
        f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, {platform.system()}; "
        f"xgboost {xgb.__version__}, numpy {np.__version__}, pandas {pd.__version__}.",
        "",
        "| measurement | xgboost | c360 | c360 / xgboost speed |",
        "|---|---:|---:|---:|",
        f"| in-process predict (data in memory) | {xgb_in:.3f} s ({rows / xgb_in:,.0f} rows/s) | "
        f"{c_in['predict_s']:.3f} s ({rows / c_in['predict_s']:,.0f} rows/s) | {xgb_in / c_in['predict_s']:.2f}x |",
        f"| whole process (read CSV, predict, write) | {xgb_whole:.3f} s ({rows / xgb_whole:,.0f} rows/s) | "
        f"{c_whole:.3f} s ({rows / c_whole:,.0f} rows/s) | {xgb_whole / c_whole:.2f}x |",
        "",
        f"xgboost in-process: DMatrix predict {best_dm:.3f} s, inplace_predict {best_inplace:.3f} s (the faster is shown). "
        f"c360 CSV parse alone: {c_in['parse_s']:.3f} s.",
        f"Whole process: xgboost = python + pandas.read_csv + inplace_predict + write; c360 = `c360 score` "
        f"with SageMaker's defaults (multi-record 6 MB payloads, one request per CPU, in-order assembly).",
        f"Parity: max abs diff between c360's output and xgboost's predict over all {rows:,} rows: {diff:.3e}.",
        "",
        "c360's own summary of the last run:",
        "",
        "```",
        summary,
        "```",
        "",
        f"Reproduce: `{' '.join([os.path.basename(sys.executable), 'benches/score/run_bench.py', '--threads', str(args.threads)])}`"
        " (see benches/score/README.md).",
        "",
    ]
    text = "\n".join(lines)
    with open(args.out, "w") as f:
        f.write(text)
    print(text)
    if diff > 1e-6:
        sys.exit(f"parity failed: max abs diff {diff}")


if __name__ == "__main__":
    main()
