"""Self-tests of the issue-18 benchmark scripts (no c360 binary needed).

    .venv-oracle/bin/python benches/training/test_benches.py        # unittest, ~10 s

What they pin down, each with values a bug would change:
  * the spine: the 12 month ends (leap February included), who is in it at each date, the
    seeded sample (size, determinism, only signed-up customers);
  * training_set.sql (DuckDB's 12-date query) equals churn_signals.sql + labels.sql run
    date by date and stacked, every column, on a synthetic source (make_synth.py);
  * multi.py's one query equals rfm.sql and churn_signals.sql run on their own;
  * compare_keyed finds a 1e-6 float change, an int change, a null moved and a missing row,
    and accepts 1e-12 relative float noise;
  * measure: peak RSS and exit codes of a child, and the memory guard's kill;
  * growth: size labels and finding a reusable source by its customer count.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "scripts" / "oracle"))
import oracle_lib  # noqa: E402
import polars as pl  # noqa: E402
import spine_lib  # noqa: E402


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


multi = _load("multi_bench", ROOT / "benches" / "features" / "multi.py")
growth = _load("growth_bench", ROOT / "benches" / "growth" / "run.py")

CUSTOMERS = 1500


def frame(con, query: str) -> pl.DataFrame:
    """A DuckDB query's result as a polars frame (through Arrow)."""
    return pl.from_arrow(con.sql(query).to_arrow_table())


class Benches(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="c360-bench-test-")
        cls.work = Path(cls.tmp.name)
        cls.data = cls.work / "src"
        subprocess.run([sys.executable, str(ROOT / "benches" / "features" / "make_synth.py"),
                        "--customers", str(CUSTOMERS), "--out", str(cls.data), "--seed", "3"],
                       check=True, capture_output=True)
        cls.con = oracle_lib.connect(cls.data, threads=2)

    @classmethod
    def tearDownClass(cls):
        cls.con.close()
        cls.tmp.cleanup()

    def signed_up_by(self, d: dt.date) -> int:
        return self.con.execute(
            f"SELECT count(*) FROM customers WHERE CAST(signup_ts AS DATE) <= DATE '{d}'").fetchall()[0][0]

    def test_month_ends(self):
        d = spine_lib.month_ends()
        self.assertEqual(len(d), 12)
        self.assertEqual(d[0], dt.date(2023, 7, 31))
        self.assertEqual(d[7], dt.date(2024, 2, 29))
        self.assertEqual(d[-1], dt.date(2024, 6, 30))
        self.assertEqual(spine_lib.month_ends(dt.date(2023, 11, 30), 3),
                         [dt.date(2023, 11, 30), dt.date(2023, 12, 31), dt.date(2024, 1, 31)])

    def test_spine_every_customer_signed_up_by_each_date(self):
        dates = spine_lib.month_ends()
        out = self.work / "spine-all.parquet"
        rows = spine_lib.make_spine(self.data, out, dates)
        spine = pl.read_parquet(out)
        self.assertEqual(spine.columns, ["customer_id", "as_of"])
        self.assertEqual(spine["as_of"].dtype, pl.Date)
        self.assertEqual(rows, spine.height)
        per_date = dict(spine.group_by("as_of").len().iter_rows())
        for d in dates:
            self.assertEqual(per_date[d], self.signed_up_by(d), d)
        self.assertTrue(spine.equals(spine.sort("as_of", "customer_id")))
        self.assertEqual(spine.unique().height, spine.height)

    def test_spine_sample_is_seeded_and_sized(self):
        dates = spine_lib.month_ends()
        a, b, c = (self.work / f"spine-s{i}.parquet" for i in range(3))
        spine_lib.make_spine(self.data, a, dates, sample=300, seed=5)
        spine_lib.make_spine(self.data, b, dates, sample=300, seed=5)
        spine_lib.make_spine(self.data, c, dates, sample=300, seed=6)
        sa, sb, sc = (pl.read_parquet(p) for p in (a, b, c))
        self.assertTrue(sa.equals(sb))
        self.assertFalse(sa.equals(sc))
        chosen = sa["customer_id"].unique()
        self.assertLessEqual(chosen.len(), 300)
        # every sampled customer signed up by the last date is in the spine at that date
        last = sa.filter(pl.col("as_of") == dates[-1]).height
        self.assertEqual(last, chosen.len())
        with self.assertRaises(SystemExit):
            spine_lib.make_spine(self.data, a, dates, sample=CUSTOMERS + 1)

    def test_twelve_date_query_equals_the_oracles_date_by_date(self):
        dates = spine_lib.month_ends()
        spine = self.work / "spine-q.parquet"
        spine_lib.make_spine(self.data, spine, dates)
        con = oracle_lib.connect(self.data, threads=2)
        con.execute(f"CREATE VIEW spine AS SELECT customer_id, CAST(as_of AS DATE) AS as_of "
                    f"FROM read_parquet('{spine}')")
        got = frame(con, (HERE / "training_set.sql").read_text())
        parts = []
        for d in dates:
            feats = frame(con, oracle_lib.render_sql(oracle_lib.sql_text("churn_signals"), d))
            label = frame(con, oracle_lib.render_sql(oracle_lib.sql_text("labels"), d))
            parts.append(feats.join(label.select("customer_id", "churned_90d"), on="customer_id", how="left"))
        want = pl.concat(parts)
        self.assertEqual(got.columns, want.columns)
        self.assertEqual(got.height, pl.read_parquet(spine).height)
        self.assertGreater(got["churned_90d"].sum(), 0)
        self.assertGreater((got["churned_90d"] == 0).sum(), 0)
        self.assertGreater(got["orders_90d"].sum(), 0)
        self.assertEqual(spine_lib.compare_keyed(want, got, "oracle vs 12-date query"), [])

    def test_multi_query_equals_the_two_oracles(self):
        d = dt.date(2024, 6, 30)
        both = frame(self.con, multi.both_sets_sql(d))
        for name in ("rfm", "churn_signals"):
            one = frame(self.con, oracle_lib.render_sql(oracle_lib.sql_text(name), d))
            self.assertEqual(spine_lib.compare_keyed(one, both.select(one.columns), name), [])
        self.assertEqual(both.height, self.signed_up_by(d))
        self.assertEqual(len(both.columns), len(set(both.columns)))

    def test_compare_keyed_finds_differences(self):
        base = pl.DataFrame({"customer_id": ["a", "b", "c"], "as_of": [dt.date(2024, 1, 31)] * 3,
                             "n": [1, 2, 3], "x": [1.0, 2.0, None]})
        self.assertEqual(spine_lib.compare_keyed(base, base.reverse(), "same"), [])
        noise = base.with_columns(pl.col("x") * (1 + 1e-12))
        self.assertEqual(spine_lib.compare_keyed(base, noise, "noise"), [])
        cases = {
            "x: 0 null mismatches, 1 value": base.with_columns(pl.Series("x", [1.0, 2.000002, None])),
            "n: 0 null mismatches, 1 value": base.with_columns(pl.Series("n", [1, 2, 4])),
            "x: 2 null mismatches": base.with_columns(pl.Series("x", [1.0, None, 3.0])),
            "3 rows on the left, 2 on the right": base.head(2),
            "column n missing": base.drop("n"),
        }
        for want, other in cases.items():
            found = spine_lib.compare_keyed(base, other, "t")
            self.assertEqual(len(found), 1, (want, found))
            self.assertIn(want, found[0])

    def test_score_flips_explained_only_by_ulp_totals(self):
        a = pl.DataFrame({"customer_id": ["a", "b", "c"], "m_score": [2, 2, 4], "monetary_total": [241.53, 241.53, 99.0]})
        ulp = a.with_columns(pl.Series("monetary_total", [241.53, 241.52999999999997, 99.0]),
                             pl.Series("m_score", [3, 2, 4]))
        self.assertEqual(spine_lib.unexplained_score_flips(a, ulp, "m_score", "monetary_total"), 0)
        wrong = a.with_columns(pl.Series("m_score", [2, 2, 5]))  # no total moved near 99.0
        self.assertEqual(spine_lib.unexplained_score_flips(a, wrong, "m_score", "monetary_total"), 1)
        far = a.with_columns(pl.Series("monetary_total", [241.6, 241.53, 99.0]), pl.Series("m_score", [3, 2, 4]))
        self.assertEqual(spine_lib.unexplained_score_flips(a, far, "m_score", "monetary_total"), 1)

    def test_measure_reports_exit_peak_and_guard(self):
        env = spine_lib.thread_env(2)
        r = spine_lib.measure([sys.executable, "-c", "b = bytearray(200 * 2**20); b[::4096] = b'x' * len(b[::4096])"], env)
        self.assertEqual(r["rc"], 0)
        self.assertGreater(r["peak_mb"], 200)
        self.assertLess(r["peak_mb"], 400)
        r = spine_lib.measure([sys.executable, "-c", "import sys; print('boom', file=sys.stderr); sys.exit(3)"], env)
        self.assertEqual(r["rc"], 3)
        self.assertIn("exit 3: boom", spine_lib.failure_text(r))
        r = spine_lib.measure([sys.executable, "-c", "import time; time.sleep(30)"], env, min_available_mb=1 << 30)
        self.assertTrue(r["killed_low_memory"])
        self.assertEqual(r["rc"], -9)
        self.assertLess(r["wall"], 10)
        self.assertIn("memory guard", spine_lib.failure_text(r))

    def test_tree_peak_sees_the_command_under_gnu_time(self):
        # what a guard kill reports: the command's VmHWM read from /proc while it runs
        code = "b = bytearray(150 * 2**20); b[::4096] = b'x' * len(b[::4096]); import time; time.sleep(30)"
        proc = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", "/dev/null", sys.executable, "-c", code],
                                start_new_session=True)
        try:
            peak = 0
            for _ in range(100):
                peak = spine_lib._tree_hwm_kb(proc.pid)
                if peak > 150 * 1024:
                    break
                time.sleep(0.1)
            self.assertGreater(peak, 150 * 1024)
            self.assertLess(peak, 300 * 1024)
        finally:
            os.killpg(proc.pid, signal.SIGKILL)  # GNU time and the command: their own group
            proc.wait()

    def test_growth_labels_and_sources(self):
        self.assertEqual([growth.label(n) for n in (1_000_000, 10_000_000, 20_000, 1500)],
                         ["1m", "10m", "20k", "1500"])
        self.assertEqual(growth.find_source([self.work], CUSTOMERS), None)  # named src, not c360-1500
        self.assertEqual(growth.find_source([self.data], CUSTOMERS), self.data)
        self.assertIsNone(growth.find_source([self.data], CUSTOMERS + 1))
        cell = growth.cell({"ok": True, "wall_s": 12.34, "peak_mb": 2048.0})
        self.assertEqual(cell, "12.3 s, 2.00 GB")
        self.assertIn("**failed**", growth.cell({"ok": False, "failure": "exit -9"}))

    def test_growth_ceiling_extrapolates_the_largest_peak(self):
        def size(n, build_mb, run_mb, ok=True):
            return {"customers": n, "steps": {"build-2-sets": {"ok": ok, "peak_mb": build_mb},
                                              "run": {"ok": True, "peak_mb": run_mb}}}
        # 1 GB per million from 2M (2 GB) to 4M (4 GB): 16 GB is reached at 16M
        text = growth.ceiling_estimate([size(1_000_000, 900, 1000), size(2_000_000, 2048, 100),
                                        size(4_000_000, 4096, 100)], 16)
        self.assertIn("near 16M customers", text)
        self.assertIn("4.00 GB (build-2-sets)", text)
        # a failed size is not a point of the line; one passing size is not enough
        self.assertIsNone(growth.ceiling_estimate([size(1_000_000, 900, 1000), size(2_000_000, 2048, 100, ok=False)], 16))


if __name__ == "__main__":
    unittest.main()
