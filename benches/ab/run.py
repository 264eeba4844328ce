"""Before/after benchmark: two c360 builds, interleaved, medians (a refactor's regression check).

    .venv-oracle/bin/python benches/ab/run.py --before /path/old/c360 --after /path/new/c360 \\
        --data /tmp/c360-1m --rounds 5 --out benches/ab/results.md

What runs, per round, for each build (the order alternates every round: before-after, then
after-before, so slow drift of the machine hits both alike):
  * `c360 features build rfm` and `... churn_signals` at `--as-of` on `--data` (a fresh store
    each run; wall seconds and peak RSS of the process), as benches/features/run.py does;
  * `c360 score` whole process on the scoring benchmark's 1M-row CSV and 300-tree model
    (benches/score/run_bench.py makes them once, under `--score-work`; needs xgboost);
  * the customer lookup: `c360 serve` on a store where that build published
    `customer_churn_scores` (`run churn_weekly`), then the open-loop driver of
    benches/lookup (`--driver`: `cargo bench --bench lookup_load --no-run`, or driver.rs built
    alone in a small crate with tokio, reqwest, rand and serde_json, which skips rebuilding
    polars with the dev-dependencies' features) at
    `--rate` requests/s for `--lookup-seconds`; p50 and p99 latency from the scheduled time.
The table gives each measure's median per build, the after/before ratio of the medians, and
the spread (min..max) so a reader can see whether a difference is larger than the noise.
Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent


def load(name, path):
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def measure(cmd, env):
    # benches/features/run.py's measure: wall seconds + peak RSS of that one process
    features_bench = load("features_bench", REPO / "benches" / "features" / "run.py")
    r = features_bench.measure([str(c) for c in cmd], env)
    if r["rc"] != 0:
        sys.exit(f"failed ({r['rc']}): {' '.join(map(str, cmd))}\n{r['err'][-2000:]}")
    return r


def env_threads(n):
    e = dict(os.environ)
    e.update(POLARS_MAX_THREADS=str(n), RAYON_NUM_THREADS=str(n), C360_LOG="warn")
    return e


def feature_build(binary, feature_set, args, work):
    store = work / f"store-{feature_set}"
    shutil.rmtree(store, ignore_errors=True)
    r = measure([binary, "features", "build", feature_set, "--as-of", args.as_of, "--source",
                 args.data, "--store", store], env_threads(args.threads))
    return {f"{feature_set} wall s": r["wall"], f"{feature_set} peak MB": r["peak_mb"]}


def score(binary, args, work, model, csv):
    out = work / "score-out"
    shutil.rmtree(out, ignore_errors=True)
    r = measure([binary, "score", "--model", model, "--input", csv, "--output", out,
                 "--no-progress"], env_threads(args.threads))
    return {"score 1M rows wall s": r["wall"]}


def lookup_setup(binary, args, work):
    """A project whose store holds customer_churn_scores published by this build."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "c360.toml").write_text(
        f'[store]\nuri = "store"\n[source]\nuri = "{args.data}"\n[paths]\n'
        f'features = "{REPO}/features"\nmodels = "{REPO}/models"\njobs = "{REPO}/jobs"\n'
        "[service]\nscheduler = false\n")
    shutil.rmtree(work / "store", ignore_errors=True)
    measure([binary, "--config", work / "c360.toml", "run", "churn_weekly", "--as-of",
             args.lookup_as_of], env_threads(args.threads))
    ids = work / "ids.txt"
    if not ids.exists():
        import polars as pl  # the product's ids, for the driver
        files = sorted((work / "store" / "products").rglob("*.parquet"))
        pl.concat([pl.read_parquet(f, columns=["customer_id"]) for f in files]) \
            .write_csv(ids, include_header=False)


def lookup(binary, args, work):
    token = "ab-" + os.urandom(8).hex()
    env = env_threads(args.threads)
    env["C360_SERVICE_TOKENS"] = f"bench:marketing:{token}"
    port = 8400 + os.getpid() % 500
    proc = subprocess.Popen([str(binary), "--config", str(work / "c360.toml"), "serve", "--bind",
                             f"127.0.0.1:{port}"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            line = proc.stdout.readline()
            if "listening on" in line:
                break
            if proc.poll() is not None:
                sys.exit(f"{binary} serve exited {proc.returncode}")
        r = subprocess.run([str(args.driver), "--url", f"http://127.0.0.1:{port}", "--token", token,
                            "--ids", str(work / "ids.txt"), "--rate", str(args.rate),
                            "--duration", str(args.lookup_seconds), "--json"],
                           capture_output=True, text=True, check=True)
        j = json.loads(r.stdout.strip().splitlines()[-1])
        if j["errors"]:
            sys.exit(f"lookup: {j['errors']} errors with {binary}")
        return {"lookup p50 ms": j["p50_ms"], "lookup p99 ms": j["p99_ms"]}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", type=Path, required=True)
    ap.add_argument("--after", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True, help="`c360 generate` output (1M customers)")
    ap.add_argument("--as-of", default="2024-06-30")
    ap.add_argument("--lookup-as-of", default="2024-09-29")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "c360-ab")
    ap.add_argument("--score-work", default=os.path.join(tempfile.gettempdir(), "c360-bench"))
    ap.add_argument("--driver", type=Path, help="lookup_load driver; without it, no lookup")
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--lookup-seconds", type=int, default=15)
    ap.add_argument("--skip", default="", help="comma list of: features,score,lookup")
    ap.add_argument("--out", type=Path, default=HERE / "results.md")
    args = ap.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    builds = {"before": args.before.resolve(), "after": args.after.resolve()}
    for f in sorted(args.data.rglob("*")):  # page cache warm for both alike
        if f.is_file():
            with open(f, "rb") as fh:
                while fh.read(1 << 24):
                    pass
    model = csv = None
    if "score" not in skip:
        generate = load("score_bench", REPO / "benches" / "score" / "run_bench.py").generate
        os.makedirs(args.score_work, exist_ok=True)
        model, csv = generate(args.score_work, 1_000_000, args.threads)
    if args.driver and "lookup" not in skip:
        for name, b in builds.items():
            lookup_setup(b, args, args.work / f"lookup-{name}")
    samples = {name: {} for name in builds}
    started = dt.datetime.now(dt.timezone.utc)
    for rnd in range(args.rounds):
        order = list(builds) if rnd % 2 == 0 else list(reversed(builds))
        for name in order:
            b, w = builds[name], args.work / name
            w.mkdir(parents=True, exist_ok=True)
            got = {}
            if "features" not in skip:
                got |= feature_build(b, "rfm", args, w)
                got |= feature_build(b, "churn_signals", args, w)
            if model:
                got |= score(b, args, w, model, csv)
            if args.driver and "lookup" not in skip:
                got |= lookup(b, args, args.work / f"lookup-{name}")
            for k, v in got.items():
                samples[name].setdefault(k, []).append(v)
            print(f"round {rnd + 1} {name}: " + ", ".join(f"{k} {v:.3f}" for k, v in got.items()),
                  file=sys.stderr, flush=True)
    lines = [
        "# Before/after benchmark (interleaved)", "",
        f"Run {started:%Y-%m-%d %H:%M} UTC, {args.rounds} rounds, order alternating; "
        f"{args.threads} threads; data `{args.data}`; load average after: "
        f"{os.getloadavg()[0]:.2f}.", "",
        f"- before: `{builds['before']}`", f"- after: `{builds['after']}`", "",
        "| measure | before (median) | after (median) | after / before | before min..max | after min..max |",
        "|---|---:|---:|---:|---|---|",
    ]
    for k in samples["before"]:
        a, bb = samples["before"][k], samples["after"][k]
        ma, mb = statistics.median(a), statistics.median(bb)
        lines.append(f"| {k} | {ma:.3f} | {mb:.3f} | {mb / ma:.3f} | {min(a):.3f}..{max(a):.3f} "
                     f"| {min(bb):.3f}..{max(bb):.3f} |")
    text = "\n".join(lines) + "\n"
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
