"""The peers c360 is measured against: one feature set, one engine, one process.

    .venv-oracle/bin/python benches/features/peers.py --tool duckdb|polars \\
        --set rfm|churn_signals --data DIR --as-of 2024-06-30 --out FILE.parquet [--threads 2]

run.py starts this once per measurement so each gets its own process (and its own peak
RSS). It prints one JSON line: {"seconds": time spent inside the engine, "rows": n}.

DuckDB runs the oracle SQL itself (scripts/oracle/*.sql). The polars version below is a
transcription of the same SQL into lazy expressions, kept as close to it as the API allows
so that `run.py --check` can demand equal results.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import time
from pathlib import Path

ORACLE = Path(__file__).resolve().parents[2] / "scripts" / "oracle"

# ----------------------------------------------------------------------------------------
# polars
# ----------------------------------------------------------------------------------------


def _scan(pl, data: Path, table: str):
    single = data / f"{table}.parquet"
    if single.is_file():
        return pl.scan_parquet(single)
    return pl.scan_parquet(data / table / "**" / "*.parquet", hive_partitioning=True)


def _utc_date(pl, lf, col: str):
    """UTC calendar date of a Date / naive (taken as UTC) / zoned Datetime column."""
    dtype = lf.collect_schema()[col]
    if dtype == pl.Date:
        return pl.col(col)
    if isinstance(dtype, pl.Datetime) and dtype.time_zone is not None:
        # to UTC, then drop the zone (both metadata-only for UTC data) so that .dt.date() is
        # plain arithmetic instead of a per-row zone lookup
        return pl.col(col).dt.convert_time_zone("UTC").dt.replace_time_zone(None).dt.date()
    return pl.col(col).dt.date()


def _tables(pl, data: Path, d: dt.date):
    """Snapshot customers and each event table cut at D, with UTC dates (the SQL's CTEs)."""
    customers = _scan(pl, data, "customers")
    snapshot = (customers
                .select("customer_id", _utc_date(pl, customers, "signup_ts").alias("signup_date"))
                .filter(pl.col("signup_date") <= d))
    orders = _scan(pl, data, "orders")
    orders = (orders
              .select("customer_id", "status", "amount", _utc_date(pl, orders, "order_ts").alias("dt"))
              .filter(pl.col("dt") <= d))
    return snapshot, orders


def _ago(d: dt.date, n: int) -> dt.date:
    return d - dt.timedelta(days=n)


def polars_rfm(pl, data: Path, d: dt.date):
    snapshot, orders = _tables(pl, data, d)
    purchases = (orders
                 .filter(pl.col("status") == "completed")
                 .join(snapshot.select("customer_id"), on="customer_id", how="semi"))
    # BTYD: a purchase is a day whose value is the day's total; the first day is not a
    # repeat. Classic RFM comes from the same days (as in rfm.sql: one grouping of orders).
    days = purchases.group_by("customer_id", "dt").agg(
        pl.col("amount").sum().alias("day_amount"), pl.len().alias("day_orders"))
    per_customer = days.group_by("customer_id").agg(
        (pl.len() - 1).alias("repeat_days"),
        pl.col("dt").min().alias("first_dt"),
        pl.col("dt").max().alias("last_dt"),
        pl.col("day_amount").get(pl.col("dt").arg_min()).alias("first_day_amount"),
        pl.col("day_amount").sum().alias("all_days_amount"),
        pl.col("day_orders").sum().cast(pl.Int64).alias("frequency_orders"),
    )
    btyd = per_customer.select(
        "customer_id",
        pl.col("repeat_days").cast(pl.Float64).alias("frequency"),
        (pl.col("last_dt") - pl.col("first_dt")).dt.total_days().cast(pl.Float64).alias("recency"),
        (pl.lit(d) - pl.col("first_dt")).dt.total_days().cast(pl.Float64).alias("T"),
        pl.when(pl.col("repeat_days") == 0).then(0.0)
          .otherwise((pl.col("all_days_amount") - pl.col("first_day_amount")) / pl.col("repeat_days"))
          .alias("monetary_value"),
    )
    classic = per_customer.select(
        "customer_id",
        (pl.lit(d) - pl.col("last_dt")).dt.total_days().alias("recency_days"),
        "frequency_orders",
        pl.col("all_days_amount").alias("monetary_total"),
    )
    # score = 1 + floor(5 * (min-rank from worst - 1) / n), n = customers with a purchase
    n = pl.len()

    def score(col, worst_first_descending):
        rank = pl.col(col).rank("min", descending=worst_first_descending).cast(pl.Int64)
        return 1 + (5 * (rank - 1)) // n

    scored = classic.with_columns(
        score("recency_days", True).alias("r_score"),
        score("frequency_orders", False).alias("f_score"),
        score("monetary_total", False).alias("m_score"),
    )
    r, f = pl.col("r_score"), pl.col("f_score")
    segment = (pl.when(r.is_null()).then(None)
               .when((r == 5) & (f >= 4)).then(pl.lit("Champions"))
               .when((r >= 3) & (f >= 4)).then(pl.lit("Loyal"))
               .when((r >= 4) & f.is_in([2, 3])).then(pl.lit("Potential Loyalist"))
               .when((r == 5) & (f == 1)).then(pl.lit("New"))
               .when((r == 4) & (f == 1)).then(pl.lit("Promising"))
               .when((r == 3) & (f == 3)).then(pl.lit("Needs Attention"))
               .when((r == 3) & (f <= 2)).then(pl.lit("About to Sleep"))
               .when((r <= 2) & (f == 5)).then(pl.lit("Cannot Lose Them"))
               .when((r <= 2) & (f >= 3)).then(pl.lit("At Risk"))
               .when((r == 1) & (f == 1)).then(pl.lit("Lost"))
               .otherwise(pl.lit("Hibernating")))
    return (snapshot.select("customer_id")
            .join(btyd, on="customer_id", how="left")
            .join(scored, on="customer_id", how="left")
            .select(
                "customer_id", pl.lit(d).alias("as_of"),
                "frequency", "recency", "T", "monetary_value", "recency_days",
                pl.col("frequency_orders").fill_null(0), pl.col("monetary_total").fill_null(0.0),
                "r_score", "f_score", "m_score", segment.alias("rfm_segment"))
            .sort("customer_id"))


def polars_churn_signals(pl, data: Path, d: dt.date):
    snapshot, orders = _tables(pl, data, d)
    c = pl.col
    completed = c("status") == "completed"

    def n_if(cond):
        return cond.sum().cast(pl.Int64)

    ord_agg = orders.group_by("customer_id").agg(
        c("dt").filter(completed).max().alias("last_dt"),
        n_if(completed & (c("dt") > _ago(d, 30))).alias("orders_30d"),
        n_if(completed & (c("dt") > _ago(d, 90))).alias("orders_90d"),
        n_if(completed & (c("dt") > _ago(d, 365))).alias("orders_365d"),
        c("amount").filter(completed & (c("dt") > _ago(d, 90))).sum().alias("spend_90d"),
        c("amount").filter(completed & (c("dt") > _ago(d, 365))).sum().alias("spend_365d"),
        n_if(completed & (c("dt") > _ago(d, 180)) & (c("dt") <= _ago(d, 90))).alias("orders_prev_90d"),
        n_if((c("status") == "returned") & (c("dt") > _ago(d, 365))).alias("returned_365d"),
    )
    # mean gap between consecutive distinct purchase days (null below two days)
    ipt = (orders.filter(completed).select("customer_id", "dt").unique()
           .group_by("customer_id")
           .agg(c("dt").sort().diff().dt.total_days().mean().alias("avg_interpurchase_days")))

    tickets = _scan(pl, data, "support_tickets")
    tk = (tickets
          .select("customer_id", "csat",
                  _utc_date(pl, tickets, "opened_ts").alias("opened_dt"),
                  _utc_date(pl, tickets, "resolved_ts").alias("resolved_dt"))
          .filter(c("opened_dt") <= d))
    tk_agg = tk.group_by("customer_id").agg(
        n_if(c("opened_dt") > _ago(d, 90)).alias("tickets_90d"),
        n_if(c("resolved_dt").is_null() | (c("resolved_dt") > d)).alias("open_tickets"),
        c("csat").filter((c("resolved_dt") > _ago(d, 365)) & (c("resolved_dt") <= d))
          .mean().alias("avg_csat_365d"),
    )

    inter = _scan(pl, data, "interactions")
    ev = (inter.select("customer_id", "event_type", _utc_date(pl, inter, "event_ts").alias("dt"))
          .filter(c("dt") <= d))
    et = c("event_type")
    ev_agg = ev.group_by("customer_id").agg(
        n_if((et == "web_visit") & (c("dt") > _ago(d, 30))).alias("web_visits_30d"),
        n_if((et == "web_visit") & (c("dt") > _ago(d, 60)) & (c("dt") <= _ago(d, 30))).alias("web_visits_prev_30d"),
        n_if((et == "app_login") & (c("dt") > _ago(d, 30))).alias("app_logins_30d"),
        n_if((et == "email_sent") & (c("dt") > _ago(d, 90))).alias("email_sent_90d"),
        n_if((et == "email_open") & (c("dt") > _ago(d, 90))).alias("email_open_90d"),
        n_if(et == "unsubscribe").alias("unsubscribes"),
    )

    zero = lambda name: c(name).fill_null(0)  # noqa: E731
    days_since = (pl.lit(d) - c("last_dt")).dt.total_days()
    mean_gap = c("avg_interpurchase_days")
    return (snapshot
            .join(ord_agg, on="customer_id", how="left")
            .join(ipt, on="customer_id", how="left")
            .join(tk_agg, on="customer_id", how="left")
            .join(ev_agg, on="customer_id", how="left")
            .select(
                "customer_id", pl.lit(d).alias("as_of"),
                days_since.alias("days_since_last_order"),
                zero("orders_30d"), zero("orders_90d"), zero("orders_365d"),
                c("spend_90d").fill_null(0.0), c("spend_365d").fill_null(0.0),
                zero("orders_prev_90d"),
                ((zero("orders_90d") - zero("orders_prev_90d")).cast(pl.Float64)
                 / pl.max_horizontal(zero("orders_prev_90d"), 1)).alias("order_trend_90d"),
                mean_gap,
                pl.when(mean_gap.is_null() | (mean_gap == 0) | c("last_dt").is_null()).then(None)
                  .otherwise(days_since.cast(pl.Float64) / mean_gap).alias("overdue_ratio"),
                pl.when(zero("orders_365d") + zero("returned_365d") == 0).then(None)
                  .otherwise(c("returned_365d").cast(pl.Float64) / (c("orders_365d") + c("returned_365d")))
                  .alias("return_rate_365d"),
                zero("tickets_90d"), zero("open_tickets"), "avg_csat_365d",
                zero("web_visits_30d"), zero("web_visits_prev_30d"), zero("app_logins_30d"),
                pl.when(zero("email_sent_90d") == 0).then(None)
                  .otherwise(c("email_open_90d").cast(pl.Float64) / c("email_sent_90d"))
                  .alias("email_open_rate_90d"),
                (zero("unsubscribes") > 0).alias("unsubscribed"),
                (pl.lit(d) - c("signup_date")).dt.total_days().alias("tenure_days"))
            .sort("customer_id"))


# ----------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tool", choices=["duckdb", "polars"], required=True)
    ap.add_argument("--set", dest="feature_set", choices=["rfm", "churn_signals"], required=True)
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--as-of", type=dt.date.fromisoformat, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    if args.tool == "polars":
        # must be set before polars is imported: its thread pool is sized at import
        os.environ["POLARS_MAX_THREADS"] = str(args.threads)
        import polars as pl

        assert pl.thread_pool_size() == args.threads, pl.thread_pool_size()
        build = polars_rfm if args.feature_set == "rfm" else polars_churn_signals
        t0 = time.perf_counter()
        frame = build(pl, args.data, args.as_of).collect()
        frame.write_parquet(args.out)
        seconds, rows = time.perf_counter() - t0, frame.height
    else:
        sys.path.insert(0, str(ORACLE))
        import oracle_lib

        t0 = time.perf_counter()
        con = oracle_lib.connect(args.data, threads=args.threads)
        query = oracle_lib.render_sql(oracle_lib.sql_text(args.feature_set), args.as_of)
        rows = con.execute(f"COPY ({query}) TO '{args.out}' (FORMAT parquet)").fetchone()[0]
        seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "rows": rows}))


if __name__ == "__main__":
    main()
