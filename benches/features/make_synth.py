"""A quick synthetic Customer 360 source for trying the peer benchmark without `c360 generate`.

    .venv-oracle/bin/python benches/features/make_synth.py --customers 100000 --out /tmp/c360-synth

Same four tables and contract columns as `c360 generate` writes (customer360-tables.md);
the behaviour is plain random (no latent churn), which is all a timing run needs: the
volumes per customer match the real generator's (~10 orders, ~30 interactions).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

START = np.datetime64("2022-01-01T00:00:00", "us").astype(np.int64)
END = np.datetime64("2025-01-01T00:00:00", "us").astype(np.int64)


def ids(prefix: str, n: int, width: int) -> pa.Array:
    return pa.array(np.char.add(prefix, np.char.zfill(np.arange(1, n + 1).astype(str), width)))


def per_customer(rng, signup_us, mean, unit_span=None):
    """Random child rows: (owner index, timestamp in us after the owner's signup)."""
    counts = rng.poisson(mean, size=len(signup_us))
    owner = np.repeat(np.arange(len(signup_us)), counts)
    lo = signup_us[owner]
    when = lo + (rng.random(len(owner)) * (END - lo)).astype(np.int64)
    return owner, when


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--customers", type=int, default=100_000)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    n = args.customers

    cust_ids = ids("C", n, 8)
    signup_us = rng.integers(START, END - 86_400_000_000 * 30, size=n)
    pq.write_table(pa.table({
        "customer_id": cust_ids,
        "signup_ts": pa.array(signup_us, pa.timestamp("us", tz="UTC")),
        "country": pa.array(rng.choice(["US", "DE", "FR", "GB", "NL"], size=n)),
        "segment": pa.array(rng.choice(["consumer", "business"], size=n, p=[0.8, 0.2])),
        "email": pa.array(np.char.add(np.asarray(cust_ids).astype(str), "@example.com")),
        "email_opt_in": pa.array(rng.random(n) < 0.7),
    }), args.out / "customers.parquet")

    owner, when = per_customer(rng, signup_us, 10)
    m = len(owner)
    pq.write_table(pa.table({
        "order_id": ids("O", m, 10),
        "customer_id": cust_ids.take(pa.array(owner)),
        "order_ts": pa.array(when, pa.timestamp("us", tz="UTC")),
        "amount": pa.array(np.round(rng.gamma(2.0, 40.0, size=m), 2)),
        "status": pa.array(rng.choice(["completed", "returned", "cancelled"], size=m, p=[0.86, 0.08, 0.06])),
        "channel": pa.array(rng.choice(["web", "store", "app"], size=m)),
    }), args.out / "orders.parquet")

    owner, when = per_customer(rng, signup_us, 30)
    kinds = ["web_visit", "app_login", "email_sent", "email_open", "email_click", "unsubscribe"]
    pq.write_table(pa.table({
        "customer_id": cust_ids.take(pa.array(owner)),
        "event_ts": pa.array(when, pa.timestamp("us", tz="UTC")),
        "event_type": pa.array(rng.choice(kinds, size=len(owner), p=[0.4, 0.2, 0.22, 0.14, 0.035, 0.005])),
    }), args.out / "interactions.parquet")

    owner, opened = per_customer(rng, signup_us, 1.5)
    k = len(owner)
    resolved = opened + rng.integers(0, 20 * 86_400_000_000, size=k)
    open_mask = (rng.random(k) < 0.1) | (resolved >= END)
    csat = rng.integers(1, 6, size=k)
    pq.write_table(pa.table({
        "ticket_id": ids("T", k, 9),
        "customer_id": cust_ids.take(pa.array(owner)),
        "opened_ts": pa.array(opened, pa.timestamp("us", tz="UTC")),
        "resolved_ts": pa.array(resolved, pa.timestamp("us", tz="UTC"), mask=open_mask),
        "category": pa.array(rng.choice(["billing", "delivery", "product"], size=k)),
        "csat": pa.array(csat, pa.int64(), mask=open_mask | (rng.random(k) < 0.3)),
    }), args.out / "support_tickets.parquet")
    print(f"wrote {args.out}: {n} customers, {m} orders")


if __name__ == "__main__":
    main()
