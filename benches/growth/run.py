"""Growth curve (issue 18): every heavy c360 step at 1M, 3M and 10M customers, and where it stops.

    # the issue's sizes; sources generated into --work (about 0.5 GB per 1M customers)
    .venv-oracle/bin/python benches/growth/run.py --c360 target/release/c360
    # reuse existing sources (a folder that is a source, or holds c360-1m, c360-3m, c360-10m)
    .venv-oracle/bin/python benches/growth/run.py --c360 target/release/c360 \\
        --reuse-data /tmp/c360-1m --reuse-data /work/data --time-generate
    # a quick end-to-end check of the script
    .venv-oracle/bin/python benches/growth/run.py --c360 target/release/c360 --sizes 20000 \\
        --sample-customers 5000 --results /tmp/growth-20k.md

For each size in --sizes, one process per step, each measured for wall time and peak RSS
(GNU time's %M; for serve, VmHWM of the server process), 2 threads (POLARS_MAX_THREADS,
RAYON_NUM_THREADS):
  generate       `c360 generate --customers N` (skipped when --reuse-data has a source of N
                 customers, unless --time-generate: then generated into a scratch folder
                 and removed)
  build-2-sets   `c360 features build rfm churn_signals --as-of 2024-06-30` (one command,
                 fresh store)
  training-set   `c360 features training-set churn_signals --label churned_90d` over a spine
                 of the 12 month ends 2023-07-31 .. 2024-06-30 x --sample-customers customers
                 (default 200,000, drawn with --seed; every customer when the source has fewer)
  run            `c360 run churn_weekly --as-of 2024-09-30` (benches/run/run_bench.py's job and
                 as-of, the repo's c360.toml), fresh store; its steps' seconds from the ledger
  serve-index    `c360 serve` on the run's store (scheduler off): seconds from start until
                 it logs "lookup index loaded" for customer_churn_scores, then one lookup over
                 HTTP must answer 200; peak RSS = the server's VmHWM once the index is loaded
A failed step (exit code, a signal such as the kernel's OOM kill, the memory guard, a
timeout) is recorded as a result with the last lines of its stderr, and the steps that
need its output are skipped; the script goes on with the next size. The memory guard kills
a step when the machine's MemAvailable falls below --min-available-mb (the machine is
shared: better a failed step than the OOM killer on someone else's process).

Writes --results (default benches/growth/results.md): a size x step table of wall seconds
and peak MB, the one-machine ceiling (the largest size where every step passed, and what
failed above it), load averages before and after each size, and the same as JSON.
Exit codes: 0 every step passed, 1 some step failed, 2 bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "benches" / "training"))
import spine_lib  # noqa: E402

STEPS = ("generate", "build-2-sets", "training-set", "run", "serve-index")
BUILD_AS_OF = "2024-06-30"
RUN_AS_OF = "2024-09-30"  # benches/run/run_bench.py's
PRODUCT = "customer_churn_scores"


def label(n: int) -> str:
    """1000000 -> 1m, 20000 -> 20k, 1500 -> 1500."""
    if n % 1_000_000 == 0:
        return f"{n // 1_000_000}m"
    if n % 1_000 == 0:
        return f"{n // 1_000}k"
    return str(n)


def customers_in(source: Path) -> int | None:
    """Rows of source/customers.parquet (Parquet metadata only), None if there is none."""
    import pyarrow.parquet as pq

    f = source / "customers.parquet"
    if not f.is_file():
        return None
    try:
        return pq.ParquetFile(f).metadata.num_rows
    except Exception:  # noqa: BLE001 - an unreadable file is simply not a reusable source
        return None


def find_source(dirs: list[Path], n: int) -> Path | None:
    """A folder among --reuse-data (itself, or its child c360-<label> / c360-<n>) whose
    customers table has exactly n rows and whose four tables all exist."""
    for d in dirs:
        for cand in (d, d / f"c360-{label(n)}", d / f"c360-{n}"):
            if customers_in(cand) == n and all((cand / f"{t}.parquet").is_file() or (cand / t).is_dir()
                                               for t in spine_lib.features_bench.TABLES):
                return cand
    return None


def step_result(r: dict, **extra) -> dict:
    out = {"ok": r["rc"] == 0, "wall_s": round(r["wall"], 2), "peak_mb": round(r["peak_mb"], 0),
           "rc": r["rc"], "lowest_available_mb": r.get("lowest_available_mb")}
    if r["rc"] != 0:
        out["failure"] = spine_lib.failure_text(r, 8)
    out.update(extra)
    return out


def c360(args, *rest: str) -> list[str]:
    return [str(args.c360), "--config", str(args.config), *rest]


def run_serve(args, work: Path, store: Path, data: Path, env: dict) -> dict:
    """Start `c360 serve` on store, time until the lookup index is loaded, check one lookup,
    read the server's peak RSS, stop it with SIGTERM."""
    toml = work / "serve.toml"
    toml.write_text(
        f'[store]\nuri = "{store}"\n[source]\nuri = "{data}"\n[paths]\n'
        f'features = "{ROOT / "features"}"\nmodels = "{ROOT / "models"}"\njobs = "{ROOT / "jobs"}"\n'
        f"[service]\nscheduler = false\n")
    token = secrets.token_hex(16)
    senv = dict(env, C360_SERVICE_TOKENS=f"bench:marketing:{token}", C360_LOG="info")
    out_f, err_f = work / "serve.out", work / "serve.err"
    lowest = spine_lib.mem_available_mb()
    with open(out_f, "w") as out, open(err_f, "w") as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen([str(args.c360), "--config", str(toml), "serve", "--bind", "127.0.0.1:0"],
                                env=senv, stdout=out, stderr=err, start_new_session=True)
        ready, failure, killed = None, None, False
        try:
            while True:
                if proc.poll() is not None:
                    failure = f"exit {proc.returncode} before the index was loaded"
                    break
                if "lookup index loaded" in err_f.read_text(errors="replace"):
                    ready = time.perf_counter() - t0
                    break
                avail = spine_lib.mem_available_mb()
                lowest = min(lowest, avail)
                if args.min_available_mb and avail < args.min_available_mb:
                    killed, failure = True, "killed by the memory guard: MemAvailable fell below the limit"
                    break
                if time.perf_counter() - t0 > args.serve_timeout:
                    failure = f"no 'lookup index loaded' within {args.serve_timeout} s"
                    break
                time.sleep(0.1)
            status, hwm_kb = None, 0
            if ready is not None:
                hwm_kb = _vm_hwm_kb(proc.pid)
                addr = next((ln.split("listening on ", 1)[1].strip() for ln in out_f.read_text().splitlines()
                             if "listening on " in ln), None)
                customer = _first_customer(store)
                if addr and customer:
                    req = urllib.request.Request(f"{addr}/products/{PRODUCT}/customers/{customer}",
                                                 headers={"Authorization": f"Bearer {token}"})
                    try:
                        with urllib.request.urlopen(req, timeout=30) as resp:
                            status = resp.status
                    except Exception as e:  # noqa: BLE001 - recorded as the step's failure
                        failure = f"lookup of {customer} failed: {e}"
                else:
                    failure = "no listening address or no customer id found to look up"
                hwm_kb = max(hwm_kb, _vm_hwm_kb(proc.pid))
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL if killed else signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    res = {"ok": failure is None, "wall_s": round(ready, 2) if ready is not None else None,
           "peak_mb": round(hwm_kb / 1024, 0) if ready is not None else None, "rc": proc.returncode,
           "lowest_available_mb": lowest, "lookup_status": status}
    if failure:
        tail = [ln for ln in err_f.read_text(errors="replace").splitlines() if ln.strip()][-6:]
        res["failure"] = failure + (": " + " | ".join(tail) if tail else "")
    return res


def _vm_hwm_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _first_customer(store: Path) -> str | None:
    """A customer id from the product's latest version (to look up)."""
    import polars as pl

    files = sorted((store / "products" / PRODUCT).rglob("*.parquet"))
    for f in files:
        ids = pl.read_parquet(f, columns=["customer_id"], n_rows=1)["customer_id"]
        if len(ids):
            return ids[0]
    return None


def ledger_steps(store: Path) -> dict:
    """Seconds of each step of the churn_weekly run, from its ledger (run.json); {} if none."""
    for f in sorted((store / "runs" / "churn_weekly").glob("*/run.json")):
        try:
            return {st["name"]: round(st["seconds"], 2) for st in json.loads(f.read_text())["steps"]}
        except (OSError, ValueError, KeyError, TypeError):
            return {}
    return {}


def run_size(args, n: int, work: Path) -> dict:
    env = spine_lib.thread_env(args.threads)
    name = label(n)
    sdir = work / name
    if sdir.exists():
        shutil.rmtree(sdir)  # only this script's own per-size folder
    sdir.mkdir(parents=True)
    res = {"customers": n, "loadavg_before": spine_lib.loadavg(), "steps": {}}
    steps = res["steps"]
    guard = args.min_available_mb

    def measure(cmd, **kw):
        return spine_lib.measure(cmd, env, cwd=sdir, min_available_mb=guard, **kw)

    data = find_source(args.reuse_data, n)
    if data is None or args.time_generate:
        target = sdir / "data" if data is not None else (args.data_root or sdir) / f"c360-{name}"
        if data is None and target.exists():
            steps["generate"] = {"ok": False, "failure": f"{target} exists but is not a source of {n:,} "
                                 "customers: remove it or pass --reuse-data"}
        else:
            r = measure(c360(args, "generate", "--customers", str(n), "--out", str(target)))
            steps["generate"] = step_result(r)
            if data is None and r["rc"] == 0:
                data = target
            if data is not None and target != data and target.exists():
                shutil.rmtree(target)  # only timed: the reused source is used for the rest
    else:
        steps["generate"] = {"ok": True, "skipped": f"reused {data}"}
    print(f"[{name}] generate: {steps['generate']}", file=sys.stderr)
    if data is None:
        for s in STEPS[1:]:
            steps[s] = {"ok": False, "skipped": "no source (generate failed)"}
        res["loadavg_after"] = spine_lib.loadavg()
        return res
    res["data"] = str(data)
    res["source"] = spine_lib.features_bench.describe_data(data)
    spine_lib.features_bench.warm_cache(data)

    r = measure(c360(args, "features", "build", "rfm", "churn_signals", "--as-of", BUILD_AS_OF,
                     "--source", str(data), "--store", str(sdir / "store-build")))
    steps["build-2-sets"] = step_result(r)
    print(f"[{name}] build-2-sets: {steps['build-2-sets']}", file=sys.stderr)
    shutil.rmtree(sdir / "store-build", ignore_errors=True)

    spine = sdir / "spine.parquet"
    sample = args.sample_customers if args.sample_customers < n else None
    t0 = time.perf_counter()
    spine_rows = spine_lib.make_spine(data, spine, spine_lib.month_ends(), sample, args.seed, args.threads)
    spine_s = time.perf_counter() - t0
    r = measure(c360(args, "features", "training-set", "churn_signals", "--spine", str(spine),
                     "--label", "churned_90d", "--out", str(sdir / "training.parquet"), "--source", str(data)))
    steps["training-set"] = step_result(r, spine_rows=spine_rows, sample_customers=sample or n,
                                        spine_seconds=round(spine_s, 2))
    print(f"[{name}] training-set: {steps['training-set']}", file=sys.stderr)
    for f in (spine, sdir / "training.parquet"):
        f.unlink(missing_ok=True)

    store = sdir / "store-run"
    r = measure(c360(args, "run", "churn_weekly", "--as-of", RUN_AS_OF, "--source", str(data),
                     "--store", str(store)))
    steps["run"] = step_result(r, ledger_steps=ledger_steps(store))
    print(f"[{name}] run: {steps['run']}", file=sys.stderr)
    if r["rc"] == 0:
        steps["serve-index"] = run_serve(args, sdir, store, data, env)
    else:
        steps["serve-index"] = {"ok": False, "skipped": "the run failed: no product to serve"}
    print(f"[{name}] serve-index: {steps['serve-index']}", file=sys.stderr)
    res["loadavg_after"] = spine_lib.loadavg()
    if not args.keep:
        shutil.rmtree(sdir, ignore_errors=True)
    return res


def cell(step: dict | None) -> str:
    if step is None:
        return ""
    if step.get("skipped"):
        return "reused a source (not timed)" if step["ok"] else f"not run ({step['skipped']})"
    if not step["ok"]:
        what = step.get("failure", "failed")
        return f"**failed** ({what[:160]})"
    return f"{step['wall_s']:.1f} s, {step['peak_mb'] / 1024:.2f} GB"


def ceiling_estimate(sizes: list[dict], memory_gb: float | None) -> str | None:
    """Where the hungriest step would reach the machine's memory, extrapolating its peak
    linearly from the two largest sizes that passed every step (a line, not a measurement)."""
    ok = sorted((s for s in sizes if all(st.get("ok") for st in s["steps"].values())), key=lambda s: s["customers"])
    if len(ok) < 2 or not memory_gb:
        return None

    def peak(s):
        return max((st.get("peak_mb") or 0, k) for k, st in s["steps"].items())

    (p1, _), (p2, step) = peak(ok[-2]), peak(ok[-1])
    n1, n2 = ok[-2]["customers"], ok[-1]["customers"]
    if p2 <= p1 or n2 <= n1:
        return None
    per_customer = (p2 - p1) / (n2 - n1)
    n = n2 + (memory_gb * 1024 - p2) / per_customer
    return (f"largest peak at {n2:,}: {p2 / 1024:.2f} GB ({step}); growing {per_customer * 1e6 / 1024:.2f} GB "
            f"per million customers between {n1:,} and {n2:,}, it would reach the machine's {memory_gb} GB "
            f"near {n / 1e6:.0f}M customers (a linear extrapolation, not a measurement)")


def render(report: dict) -> str:
    sizes = report["sizes"]
    busy = any(spine_lib.busy(s["loadavg_before"], s.get("loadavg_after", s["loadavg_before"])) for s in sizes)
    lines = [
        "# Growth curve: c360 at 1M, 3M, 10M customers on one machine",
        "",
        f"- run: {report['machine']['when_utc']} UTC; {report['machine']['cpus']} CPUs, "
        f"{report['machine']['memory_gb']} GB, {report['machine']['arch']}; {report['threads']} threads; "
        "one run per step (wall time, peak RSS of that process)",
        f"- versions: {report['versions']}",
        f"- steps: generate; build-2-sets = `features build rfm churn_signals --as-of {BUILD_AS_OF}`; "
        f"training-set = churn_signals + churned_90d, 12 month ends x a customer sample "
        f"({report['sample_customers']:,}, seed {report['seed']}); run = `run churn_weekly --as-of {RUN_AS_OF}`; "
        "serve-index = `c360 serve` until the lookup index of customer_churn_scores is loaded (VmHWM)",
        f"- memory guard: a step is killed when MemAvailable < {report['min_available_mb']} MB",
        *(["- **the machine was busy (1-minute load average above half the CPUs): the times are not "
           "clean, the peak memory figures are**"] if busy else []),
        "",
        "| customers | " + " | ".join(STEPS) + " | load avg before / after |",
        "|---:|" + "---|" * len(STEPS) + "---|",
    ]
    for s in sizes:
        row = [f"{s['customers']:,}"] + [cell(s["steps"].get(st)) for st in STEPS]
        row.append(f"{s['loadavg_before'][0]:.2f} / {s.get('loadavg_after', ['?'])[0]}")
        lines.append("| " + " | ".join(row) + " |")
    passed = [s["customers"] for s in sizes if all(st.get("ok") for st in s["steps"].values())]
    failed = [s for s in sizes if not all(st.get("ok") for st in s["steps"].values())]
    lines.append("")
    lines.append(f"One-machine ceiling: every step passed up to **{max(passed):,} customers**" if passed
                 else "One-machine ceiling: no size passed every step")
    estimate = ceiling_estimate(sizes, report["machine"].get("memory_gb"))
    if estimate:
        lines.append(f"- {estimate}")
    for s in failed:
        bad = [f"{k}: {v.get('failure') or v.get('skipped')}" for k, v in s["steps"].items() if not v.get("ok")]
        lines.append(f"- at {s['customers']:,}: " + "; ".join(bad))
    for s in sizes:
        split = s["steps"].get("run", {}).get("ledger_steps")
        if split:
            lines.append(f"- run at {s['customers']:,}, seconds per step (ledger): "
                         + ", ".join(f"{k} {v:.1f}" for k, v in split.items()))
    for s in sizes:
        if "source" in s:
            lines.append(f"- {s['customers']:,} customers: `{s['data']}`: {s['source']}")
    lines += ["", "```json", json.dumps(report, indent=1, default=str), "```"]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--c360", type=Path, required=True, help="the release c360 binary")
    ap.add_argument("--c360-rev", help="git revision the binary was built from (recorded in the results)")
    ap.add_argument("--config", type=Path, default=ROOT / "c360.toml", help="c360.toml (default: the repo's)")
    ap.add_argument("--sizes", default="1000000,3000000,10000000", help="customer counts, comma-separated")
    ap.add_argument("--reuse-data", type=Path, action="append", default=[],
                    help="a source folder, or a folder holding c360-1m, c360-3m, ...: a source with "
                         "exactly N customers is used instead of generating (repeatable)")
    ap.add_argument("--time-generate", action="store_true",
                    help="with --reuse-data, still time generate (into a scratch folder, then removed)")
    ap.add_argument("--data-root", type=Path, help="where generated sources go (default: the size's work folder)")
    ap.add_argument("--sample-customers", type=int, default=200_000, help="training-set spine customers (default 200000)")
    ap.add_argument("--seed", type=int, default=42, help="seed of the customer sample (default 42)")
    ap.add_argument("--threads", type=int, default=2, help="threads (default 2)")
    ap.add_argument("--work", type=Path, help="scratch folder (default: a temporary one, removed after)")
    ap.add_argument("--keep", action="store_true", help="keep each size's stores and outputs")
    ap.add_argument("--min-available-mb", type=int, default=1500,
                    help="kill a step when MemAvailable falls below this (0: never; default 1500)")
    ap.add_argument("--serve-timeout", type=float, default=900, help="seconds to wait for the index (default 900)")
    ap.add_argument("--results", type=Path, default=HERE / "results.md", help="results file (markdown + JSON)")
    args = ap.parse_args()
    try:
        sizes = [int(x.replace("_", "")) for x in args.sizes.split(",") if x.strip()]
    except ValueError:
        ap.error(f"--sizes {args.sizes!r}: give customer counts like 1000000,3000000")
    if not sizes or any(not 1 <= n <= 100_000_000 for n in sizes):
        ap.error("--sizes: each between 1 and 100,000,000 (c360 generate's range)")
    if args.sample_customers < 1 or args.threads < 1:
        ap.error("--sample-customers and --threads must be at least 1")
    if not (args.c360.is_file() and os.access(args.c360, os.X_OK)):
        ap.error(f"--c360 {args.c360}: missing or not executable (build it: cargo build --release)")
    args.c360, args.config = args.c360.resolve(), args.config.resolve()
    args.reuse_data = [d.resolve() for d in args.reuse_data]
    args.data_root = args.data_root.resolve() if args.data_root else None
    own = args.work is None
    work = Path(tempfile.mkdtemp(prefix="c360-growth-")) if own else args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    report = {"benchmark": "growth curve", "threads": args.threads, "sample_customers": args.sample_customers,
              "seed": args.seed, "min_available_mb": args.min_available_mb, "machine": spine_lib.environment(),
              "versions": spine_lib.c360_version(args.c360, args.c360_rev), "sizes": []}
    try:
        for n in sizes:
            report["sizes"].append(run_size(args, n, work))
            args.results.write_text(render(report))  # after each size: a crash keeps what was measured
    finally:
        if own and not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    text = render(report)
    print(text)
    args.results.write_text(text)
    ok = all(st.get("ok") for s in report["sizes"] for st in s["steps"].values())
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
