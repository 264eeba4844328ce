"""Shared plumbing of the issue-18 benchmarks (benches/training, benches/growth).

* `measure`: benches/features/run.py's one-process measurement (wall time, peak RSS of
  that process through GNU time, exit code, output), plus an optional memory guard.
* `month_ends`, `make_spine`: the spines (customer_id, as_of) the training-set benchmarks
  use, made with DuckDB from the customers table.
* `compare_keyed`: column-by-column comparison of two training sets on (customer_id, as_of).
* `environment`: machine, load average, versions, git revision for the results files.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
ORACLE = ROOT / "scripts" / "oracle"

# benches/features/run.py is loaded under its own name: a plain `import run` from here
# would find benches/training/run.py (the script directory comes first on sys.path).
_spec = importlib.util.spec_from_file_location("features_bench", ROOT / "benches" / "features" / "run.py")
features_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(features_bench)
GNU_TIME = Path("/usr/bin/time")

# the spine: 12 month-end dates, 2023-07-31 .. 2024-06-30
FIRST_MONTH_END = dt.date(2023, 7, 31)
DATES = 12


def month_ends(first: dt.date = FIRST_MONTH_END, count: int = DATES) -> list[dt.date]:
    """`count` consecutive month-end dates starting at `first` (itself a month end)."""
    out, y, m = [], first.year, first.month
    for _ in range(count):
        nxt = dt.date(y + (m == 12), m % 12 + 1, 1)
        out.append(nxt - dt.timedelta(days=1))
        y, m = nxt.year, nxt.month
    return out


def thread_env(threads: int) -> dict:
    """The environment every measured process gets: POLARS_MAX_THREADS and RAYON_NUM_THREADS."""
    env = features_bench.thread_env(threads)
    env.setdefault("C360_NO_PROGRESS", "1")
    return env


def mem_available_mb() -> int:
    """MemAvailable of /proc/meminfo in MB (a large number where there is no /proc)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 1 << 30


def measure(cmd: list[str], env: dict, cwd: Path | None = None, min_available_mb: int = 0) -> dict:
    """Run cmd in its own process: wall s, peak_mb, rc, out, err, killed_low_memory.

    The protocol of benches/features/run.py's measure: peak RSS is GNU time's %M of the
    command (ru_maxrss of the child from wait4 without /usr/bin/time), wall time the whole
    process. The output goes to files, not pipes, so a chatty command cannot block.
    With min_available_mb > 0 the machine's MemAvailable is polled every 0.2 s and the
    command's process group is killed when it falls below that many MB: a step that would
    exhaust the shared machine becomes a failed result (`killed_low_memory`) instead of
    bringing in the kernel's OOM killer on someone else's process.
    """
    with tempfile.TemporaryDirectory(prefix="c360-measure-") as tmp:
        rss, out_f, err_f = Path(tmp, "rss"), Path(tmp, "out"), Path(tmp, "err")
        use_time = GNU_TIME.is_file()
        full = [str(GNU_TIME), "-f", "%M", "-o", str(rss), *cmd] if use_time else list(cmd)
        killed, lowest, watched_kb = False, mem_available_mb(), 0
        with open(out_f, "w") as out, open(err_f, "w") as err:
            t0 = time.perf_counter()
            proc = subprocess.Popen(full, env=env, stdout=out, stderr=err, cwd=cwd, start_new_session=True)
            # The wall time is taken when a blocking wait4 returns (exact); the memory watch
            # (every 0.2 s) runs on its own thread, so it no longer rounds the wall time up to
            # its polling step (it did: up to +0.2 s, a bias on short runs).
            done = threading.Event()
            watch = {"killed": False, "lowest": lowest, "watched_kb": 0}

            def watcher() -> None:
                while not done.wait(0.2):
                    watch["watched_kb"] = max(watch["watched_kb"], _tree_hwm_kb(proc.pid))
                    avail = mem_available_mb()
                    watch["lowest"] = min(watch["lowest"], avail)
                    if min_available_mb and avail < min_available_mb and not watch["killed"]:
                        watch["killed"] = True
                        try:
                            os.killpg(proc.pid, signal.SIGKILL)
                        except ProcessLookupError:
                            pass

            thread = threading.Thread(target=watcher, daemon=True)
            thread.start()
            try:
                _, status, usage = os.wait4(proc.pid, 0)
            except ChildProcessError:
                status, usage = 0, None
            wall = time.perf_counter() - t0
            done.set()
            thread.join()
            killed, lowest, watched_kb = watch["killed"], watch["lowest"], watch["watched_kb"]
        proc.returncode = rc = os.waitstatus_to_exitcode(status)
        peak_kb = usage.ru_maxrss if usage else 0
        if use_time and rss.is_file():
            text = rss.read_text()
            nums = [ln for ln in text.splitlines() if ln.strip().isdigit()]
            if nums:
                peak_kb = int(nums[-1])
            m = re.search(r"Command terminated by signal (\d+)", text)
            if m:  # GNU time reports a signal-killed child in its output file
                rc = -int(m.group(1))
        if killed:  # GNU time died with its child: the peak is the one watched from /proc
            peak_kb = max(watched_kb, peak_kb if not use_time else 0)
        return dict(wall=wall, peak_mb=peak_kb / 1024, rc=rc, out=out_f.read_text(errors="replace"),
                    err=err_f.read_text(errors="replace"), killed_low_memory=killed,
                    lowest_available_mb=lowest)


def _tree_hwm_kb(pid: int) -> int:
    """The largest VmHWM (peak RSS, KB) among pid and its direct children (GNU time and
    the command it runs); 0 where /proc cannot tell."""
    best = 0
    pids = [pid]
    try:
        pids += [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        pass
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    best = max(best, int(line.split()[1]))
        except (OSError, ValueError, IndexError):
            pass
    return best


def failure_text(r: dict, lines: int = 6) -> str:
    """One line for a failed measurement: exit code, OOM or guard kill, last stderr lines."""
    why = f"exit {r['rc']}"
    if r.get("killed_low_memory"):
        why += (f" (killed by the memory guard: MemAvailable fell below the limit; the command's "
                f"peak RSS by then {r['peak_mb'] / 1024:.1f} GB)")
    elif r["rc"] in (-9, 137, 9):
        why += " (SIGKILL: likely the kernel's OOM killer)"
    tail = [ln for ln in (r.get("err") or "").strip().splitlines() if ln.strip()][-lines:]
    return why + (": " + " | ".join(tail) if tail else "")


def make_spine(data: Path, out: Path, dates: list[dt.date], sample: int | None = None,
               seed: int = 42, threads: int = 2) -> int:
    """Write the spine Parquet (customer_id VARCHAR, as_of DATE), sorted by (as_of, customer_id):
    every customer signed up (UTC date) on or before each date; returns its row count.

    With `sample`, only that many customers take part, drawn without replacement with
    numpy's PCG64 generator seeded by `seed` from the customer ids in sorted order (the
    same source and seed give the same sample). A sampled customer appears at the dates he
    had signed up by.
    """
    sys.path.insert(0, str(ORACLE))
    import oracle_lib

    con = oracle_lib.connect(data, threads=threads)
    dates_sql = ", ".join(f"DATE '{d.isoformat()}'" for d in dates)
    con.execute(f"CREATE TEMP TABLE dates AS SELECT unnest([{dates_sql}]) AS as_of")
    if sample is not None:
        import numpy as np

        ids = [r[0] for r in con.execute("SELECT customer_id FROM customers ORDER BY customer_id").fetchall()]
        if sample > len(ids):
            raise SystemExit(f"--sample-customers {sample}: the source {data} has only {len(ids)} customers")
        pick = np.random.default_rng(seed).choice(len(ids), size=sample, replace=False)
        chosen = [ids[i] for i in sorted(pick)]
        con.register("chosen_ids", _arrow_ids(chosen))
        con.execute("CREATE TEMP TABLE chosen AS SELECT customer_id FROM chosen_ids")
        who = "customers c SEMI JOIN chosen USING (customer_id)"
    else:
        who = "customers c"
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = con.execute(f"""
        COPY (SELECT c.customer_id, d.as_of
              FROM {who}, dates d
              WHERE CAST(c.signup_ts AS DATE) <= d.as_of
              ORDER BY d.as_of, c.customer_id)
        TO '{out}' (FORMAT parquet)""").fetchall()[0][0]
    con.close()
    return rows


def _arrow_ids(ids: list[str]):
    import pyarrow as pa

    return pa.table({"customer_id": pa.array(ids, pa.string())})


def compare_keyed(left, right, label: str, keys=("customer_id", "as_of")) -> list[str]:
    """Compare two frames (or Parquet paths) on `keys`: same rows, and every column of the
    left equal on the right (ints and bools exact after casting to the left's type, floats
    to 1e-9 relative, nulls in the same places). Returns the differences found."""
    import polars as pl

    a = left if isinstance(left, pl.DataFrame) else pl.read_parquet(left)
    b = right if isinstance(right, pl.DataFrame) else pl.read_parquet(right)
    problems = []
    for k in keys:
        for name, f in (("left", a), ("right", b)):
            if k not in f.columns:
                return [f"{label}: key column {k} missing on the {name}"]
    if b["as_of"].dtype != a["as_of"].dtype:
        b = b.with_columns(pl.col("as_of").cast(pl.Utf8).str.to_date())
        a = a.with_columns(pl.col("as_of").cast(pl.Utf8).str.to_date())
    a, b = a.sort(list(keys)), b.sort(list(keys))
    if a.height != b.height:
        return [f"{label}: {a.height} rows on the left, {b.height} on the right"]
    for k in keys:
        if not a[k].equals(b[k]):
            return [f"{label}: the ({', '.join(keys)}) keys differ"]
    extra = sorted(set(b.columns) - set(a.columns))
    if extra:
        problems.append(f"{label}: columns only on the right: {extra}")
    for col in a.columns:
        if col in keys:
            continue
        if col not in b.columns:
            problems.append(f"{label}: column {col} missing on the right")
            continue
        x, y = a[col], b[col]
        null_diff = int((x.is_null() != y.is_null()).sum())
        if x.dtype.is_float() or y.dtype.is_float():
            x, y = x.cast(pl.Float64), y.cast(pl.Float64)
            frame = pl.DataFrame({"x": x, "y": y}).with_columns(
                tol=1e-9 * pl.max_horizontal(pl.col("x").abs(), pl.col("y").abs(), pl.lit(1.0)))
            value_diff = frame.filter(pl.col("x").is_not_null() & pl.col("y").is_not_null()
                                      & ((pl.col("x") - pl.col("y")).abs() > pl.col("tol"))).height
        else:
            if x.dtype != y.dtype:
                y = y.cast(x.dtype)
            value_diff = int((x.is_not_null() & y.is_not_null() & (x != y)).sum())
        if null_diff or value_diff:
            problems.append(f"{label}: {col}: {null_diff} null mismatches, {value_diff} value mismatches")
    return problems


def unexplained_score_flips(a, b, score: str, value: str, key: str = "customer_id") -> int:
    """Rows whose quantile `score` differs between frames a and b, and that a float
    summation order does not explain; 0 means every flip is explained.

    A score is a rank of `value` (rfm.sql: rank over monetary_total). Engines that sum in
    another order give totals one ULP apart, which can break or make a tie at a score
    boundary. A flip is explained when some customer's `value` differs bitwise between the
    engines but within 1e-9 relative, at a value within 1e-9 relative of the flipped row's.
    """
    import polars as pl

    j = a.select(key, score, value).join(b.select(key, score, value), on=key, suffix="_b")
    flips = j.filter(pl.col(score) != pl.col(f"{score}_b"))
    if flips.height == 0:
        return 0
    noisy = j.filter((pl.col(value) != pl.col(f"{value}_b"))
                     & ((pl.col(value) - pl.col(f"{value}_b")).abs()
                        <= 1e-9 * pl.max_horizontal(pl.col(value).abs(), pl.lit(1.0))))[value]
    unexplained = 0
    for v in flips[value]:
        if v is None or not ((noisy - v).abs() <= 1e-9 * max(abs(v), 1.0)).any():
            unexplained += 1
    return unexplained


def c360_version(c360: Path, rev: str | None = None) -> str:
    """`c360 --version`, the git revision the binary was built from (`rev`, e.g. from the
    scripts' --c360-rev; "not given" otherwise) and this benches checkout's revision."""
    v = subprocess.run([str(c360), "--version"], capture_output=True, text=True).stdout.strip()
    here = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    return (f"{v or 'c360 (no --version)'}, binary {c360} built from {rev or 'a revision not given (--c360-rev)'}, "
            f"benches checkout {here or 'unknown'}")


def environment() -> dict:
    """Machine facts for the results files."""
    mem_gb = None
    try:
        with open("/proc/meminfo") as fh:
            mem_gb = round(int(fh.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "arch": platform.machine(), "memory_gb": mem_gb,
            "python": platform.python_version(), "when_utc": f"{dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M}"}


def loadavg() -> list[float]:
    """The 1, 5 and 15-minute load averages."""
    return [round(x, 2) for x in os.getloadavg()]


def busy(before: list[float], after: list[float]) -> bool:
    """True when the 1-minute load average was above half the CPUs before or after."""
    return max(before[0], after[0]) > 0.5 * (os.cpu_count() or 1)
