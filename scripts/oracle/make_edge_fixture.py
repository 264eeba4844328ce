"""Build the committed edge-case fixtures and their expected feature values.

Run from the repository root (deterministic; re-running rewrites identical files):

    .venv-oracle/bin/pip install -r scripts/requirements-oracle.txt   # once
    .venv-oracle/bin/python scripts/oracle/make_edge_fixture.py

Writes
    tests/fixtures/edge/{customers,orders,interactions,support_tickets}.parquet
    tests/fixtures/edge/expected/{rfm,churn_signals,labels}_<D>.csv   for D in AS_OF_DATES
    tests/fixtures/cdnow/{customers,orders,interactions,support_tickets}.parquet
    tests/fixtures/cdnow/expected_btyd_1998-06-30.csv

Where the expected values come from (see scripts/oracle/README.md):
  * BTYD columns (frequency, recency, T, monetary_value): lifetimes'
    summary_data_from_transaction_data, the reference implementation named by semantics.md.
  * Everything else: the DuckDB SQL in scripts/oracle/{rfm,churn_signals,labels}.sql.
  * Hand-computed values for the hand-written edge customers are asserted below
    (HAND_CHECKS), so a mistake in the SQL itself cannot slip into the fixtures.

Amounts are whole multiples of 0.25 in the edge data: sums and means of such values are
exact in binary floating point whatever the summation order, so the expected floats do not
depend on how an engine happens to order its additions.
"""

from __future__ import annotations

import datetime as dt
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
import oracle_lib  # noqa: E402

warnings.filterwarnings("ignore", message="pkg_resources is deprecated")
from lifetimes.utils import summary_data_from_transaction_data  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
EDGE_DIR = REPO / "tests" / "fixtures" / "edge"
CDNOW_DIR = REPO / "tests" / "fixtures" / "cdnow"

D1 = dt.date(2024, 6, 30)
D2 = dt.date(2024, 3, 31)
D3 = dt.date(2023, 12, 31)
AS_OF_DATES = (D1, D2, D3)
DATA_END = dt.date(2024, 12, 31)  # every date's label window (D, D+90] lies inside the data
SEED = 360
N_RANDOM = 400

# ----------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------


def ts(day: dt.date, clock: str = "12:00:00") -> np.datetime64:
    """A UTC instant as datetime64[ns]; nanoseconds because interactions.event_ts keeps them."""
    return np.datetime64(f"{day.isoformat()}T{clock}", "ns")


class Data:
    """Rows of the four tables, appended in the order they are described."""

    def __init__(self) -> None:
        self.customers: list[dict] = []
        self.orders: list[dict] = []
        self.interactions: list[dict] = []
        self.tickets: list[dict] = []

    def customer(self, cid, signup, country="US", segment="consumer", opt_in=True):
        self.customers.append(dict(customer_id=cid, signup_ts=signup, country=country,
                                   segment=segment, email=f"{cid.lower()}@example.com",
                                   email_opt_in=opt_in))

    def order(self, cid, when, amount, status="completed", channel="web"):
        # orders.order_ts is stored in microseconds: refuse instants that would be truncated
        assert when.astype("datetime64[us]").astype("datetime64[ns]") == when, when
        self.orders.append(dict(order_id=f"O{len(self.orders) + 1:06d}", customer_id=cid,
                                order_ts=when, amount=float(amount), status=status,
                                channel=channel))

    def event(self, cid, when, event_type):
        self.interactions.append(dict(customer_id=cid, event_ts=when, event_type=event_type))

    def ticket(self, cid, opened, resolved=None, csat=None, category="billing"):
        for t in (opened, resolved):
            assert t is None or t.astype("datetime64[us]").astype("datetime64[ns]") == t, t
        self.tickets.append(dict(ticket_id=f"T{len(self.tickets) + 1:05d}", customer_id=cid,
                                 opened_ts=opened, resolved_ts=resolved, category=category,
                                 csat=csat))


def days(base: dt.date, n: int) -> dt.date:
    """base + n days (n < 0 goes back)."""
    return base + dt.timedelta(days=n)


# ----------------------------------------------------------------------------------------
# Hand-written edge customers. Offsets are in days from the as-of date they target.
# ----------------------------------------------------------------------------------------

OLD_SIGNUP = dt.date(2022, 1, 15)


def edge_customers(data: Data) -> None:
    D = D1
    b = lambda n: days(D, -n)  # noqa: E731  "n days before D1"
    a = lambda n: days(D, n)   # noqa: E731  "n days after D1"

    # C0001 orders on D at both ends of the day (microsecond precision, tz-aware column),
    # one at D+1 00:00:00 that must not count, and one older order.
    data.customer("C0001", OLD_SIGNUP)
    data.order("C0001", ts(D, "00:00:00"), 25.0)
    data.order("C0001", ts(D, "23:59:59.999999"), 10.5)
    data.order("C0001", ts(a(1), "00:00:00"), 99.0)
    data.order("C0001", ts(b(100)), 40.0)

    # C0002 one order on each side of every window edge; powers of two make each sum
    # identify exactly which orders were included.
    data.customer("C0002", OLD_SIGNUP)
    for n, amount in zip((29, 30, 89, 90, 179, 180, 364, 365), (1, 2, 4, 8, 16, 32, 64, 128)):
        data.order("C0002", ts(b(n), "23:59:59.999999" if n % 2 else "00:00:00"), amount)

    # C0003 several orders on the same day: BTYD sums a day's orders into one purchase.
    data.customer("C0003", OLD_SIGNUP, segment="business")
    data.order("C0003", ts(b(10), "09:00:00"), 5.0)
    data.order("C0003", ts(b(10), "13:00:00"), 7.25, channel="store")
    data.order("C0003", ts(b(10), "23:59:59"), 0.75, channel="app")
    data.order("C0003", ts(b(50), "10:00:00"), 20.0)
    data.order("C0003", ts(b(50), "10:00:00"), 30.0)  # same instant, distinct order
    data.order("C0003", ts(b(200)), 100.0)

    # C0004 only cancelled orders: no purchase, and not a return either.
    data.customer("C0004", OLD_SIGNUP)
    data.order("C0004", ts(b(5)), 70.0, status="cancelled")
    data.order("C0004", ts(b(100)), 30.0, status="cancelled")

    # C0005 only returns: no purchase, return rate 1.
    data.customer("C0005", OLD_SIGNUP)
    data.order("C0005", ts(b(10)), 45.0, status="returned")
    data.order("C0005", ts(b(400)), 45.0, status="returned")

    # C0006 completed, returned and cancelled mixed; a return just outside 365d.
    data.customer("C0006", OLD_SIGNUP, country=None)
    for n in (20, 40, 60):
        data.order("C0006", ts(b(n)), 30.0)
    data.order("C0006", ts(b(30)), 30.0, status="returned")
    data.order("C0006", ts(b(35)), 30.0, status="cancelled")
    data.order("C0006", ts(b(50)), 30.0, status="cancelled")
    data.order("C0006", ts(b(366)), 30.0, status="returned")

    # C0007 signs up on D (tenure 0) and buys that day.
    data.customer("C0007", D)
    data.order("C0007", ts(D, "08:00:00"), 60.0)

    # C0008 signs up on D+1: not in D's snapshot at all.
    data.customer("C0008", a(1))
    data.order("C0008", ts(a(1), "10:00:00"), 15.0)
    data.order("C0008", ts(a(30)), 15.0)

    # C0009 never orders (but is active online).
    data.customer("C0009", OLD_SIGNUP, opt_in=None)
    data.event("C0009", ts(b(3)), "web_visit")
    data.event("C0009", ts(b(3)), "email_sent")

    # C0010 exactly one purchase day (two orders on it).
    data.customer("C0010", OLD_SIGNUP)
    data.order("C0010", ts(b(40), "07:00:00"), 15.0)
    data.order("C0010", ts(b(40), "19:00:00"), 25.0)

    # C0011 tickets around every edge.
    data.customer("C0011", OLD_SIGNUP)
    data.ticket("C0011", ts(b(5)))                                        # open
    data.ticket("C0011", ts(b(20)), ts(a(3)), csat=1)                     # resolved after D: open at D
    data.ticket("C0011", ts(b(2)), ts(D, "23:00:00"), csat=4)             # resolved on D
    data.ticket("C0011", ts(b(40)), ts(b(30)), csat=None)                 # resolved, no csat
    data.ticket("C0011", ts(b(370)), ts(b(364)), csat=2)                  # resolved at D-364: counts
    data.ticket("C0011", ts(b(400)), ts(b(365)), csat=5)                  # resolved at D-365: out
    data.ticket("C0011", ts(b(89)), ts(b(80)), csat=3, category="delivery")  # opened D-89: in 90d
    data.ticket("C0011", ts(b(90)), ts(b(85)), category="product")        # opened D-90: out of 90d
    data.ticket("C0011", ts(a(1), "00:00:00"))                            # opened D+1: invisible
    data.order("C0011", ts(b(15)), 12.0)

    # C0012 tickets that never got a csat.
    data.customer("C0012", OLD_SIGNUP)
    data.ticket("C0012", ts(b(10)), ts(b(9)), category=None)
    data.ticket("C0012", ts(b(100)), ts(b(99)))

    # C0013 opens in the window but no email_sent in it (sent at D-90 is outside): rate null.
    data.customer("C0013", OLD_SIGNUP)
    data.event("C0013", ts(b(200)), "email_sent")
    data.event("C0013", ts(b(90), "23:59:59.999999999"), "email_sent")
    data.event("C0013", ts(b(89), "00:00:00"), "email_open")
    data.event("C0013", ts(b(1)), "email_open")

    # C0014 unsubscribed long before D.
    data.customer("C0014", OLD_SIGNUP)
    data.event("C0014", ts(b(100)), "unsubscribe")

    # C0015 unsubscribes only after D (D+1 at midnight).
    data.customer("C0015", OLD_SIGNUP)
    data.event("C0015", ts(a(1), "00:00:00"), "unsubscribe")

    # C0016 unsubscribes in the last nanosecond of D.
    data.customer("C0016", OLD_SIGNUP)
    data.event("C0016", ts(D, "23:59:59.999999999"), "unsubscribe")

    # C0017 web visits around the 30d / previous-30d edges.
    data.customer("C0017", OLD_SIGNUP)
    for n in (29, 30, 31, 59, 60, 61):
        data.event("C0017", ts(b(n)), "web_visit")
    data.event("C0017", ts(a(1), "00:00:00"), "web_visit")

    # C0018 app logins at D 00:00, D-29, D-30, D+1.
    data.customer("C0018", OLD_SIGNUP)
    for when in (ts(D, "00:00:00"), ts(b(29)), ts(b(30)), ts(a(1))):
        data.event("C0018", when, "app_login")

    # C0019 email open rate 2/3: sends at D-89, D-50, D-10 (D-90 out); opens at D-89, D-10
    # (D+1 out); clicks are not opens.
    data.customer("C0019", OLD_SIGNUP)
    for n in (90, 89, 50, 10):
        data.event("C0019", ts(b(n)), "email_sent")
    data.event("C0019", ts(b(89)), "email_open")
    data.event("C0019", ts(b(10)), "email_open")
    data.event("C0019", ts(b(10)), "email_click")
    data.event("C0019", ts(a(1), "00:00:00"), "email_open")

    # C0020 a regular buyer: every 20 days, last one 20 days ago -> overdue ratio 1.
    data.customer("C0020", OLD_SIGNUP)
    for n in (60, 40, 20):
        data.order("C0020", ts(b(n)), 30.0)

    # C0021 irregular gaps (100, 10) -> mean 55, overdue 190/55.
    data.customer("C0021", OLD_SIGNUP)
    for n in (300, 200, 190):
        data.order("C0021", ts(b(n)), 22.5)

    # C0022 first order at D+1 00:00:00: no purchase at D, not churned.
    data.customer("C0022", dt.date(2023, 1, 1))
    data.order("C0022", ts(a(1), "00:00:00"), 18.0)

    # C0023 next order on the last day of the label window (D+90): not churned.
    data.customer("C0023", OLD_SIGNUP)
    data.order("C0023", ts(b(10)), 10.0)
    data.order("C0023", ts(a(90), "23:59:59.999999"), 10.0)

    # C0024 next completed order at D+91, a cancelled one inside the window: churned.
    data.customer("C0024", OLD_SIGNUP)
    data.order("C0024", ts(b(10)), 10.0)
    data.order("C0024", ts(a(30)), 10.0, status="cancelled")
    data.order("C0024", ts(a(91), "00:00:00"), 10.0)

    # C0025 signs up on D and does nothing else.
    data.customer("C0025", D, segment=None, opt_in=False)

    # C0026 a zero-amount purchase as the repeat day: monetary_value 0 with frequency 1.
    data.customer("C0026", OLD_SIGNUP)
    data.order("C0026", ts(b(33)), 12.0)
    data.order("C0026", ts(b(3)), 0.0)

    # C0027 returns at D-364 and D-365, its only purchase at D-365 (outside 365d).
    data.customer("C0027", OLD_SIGNUP)
    data.order("C0027", ts(b(365)), 80.0)
    data.order("C0027", ts(b(365), "18:00:00"), 80.0, status="returned")
    data.order("C0027", ts(b(364)), 80.0, status="returned")

    # C0028 a heavy weekly buyer over two years (top scores).
    data.customer("C0028", OLD_SIGNUP, segment="business")
    for n in range(0, 730, 7):
        data.order("C0028", ts(b(n), "11:30:00"), 50.0 + (n % 4) * 0.25, channel="store")

    # C0029 a ticket opened and resolved on the same day (D-1).
    data.customer("C0029", OLD_SIGNUP)
    data.ticket("C0029", ts(b(1), "08:00:00"), ts(b(1), "09:00:00"), csat=5)

    # C0030 bought on D, like C0001 and C0007: ties in recency share a score.
    data.customer("C0030", OLD_SIGNUP)
    data.order("C0030", ts(b(400)), 5.0)
    data.order("C0030", ts(D, "12:00:00"), 5.0)

    # ---- D2 = 2024-03-31 (2024 is a leap year: D2-31 is 2024-02-29) --------------------
    D = D2
    b2 = lambda n: days(D, -n)  # noqa: E731
    a2 = lambda n: days(D, n)   # noqa: E731

    # C0031 signs up on D2 and buys in its last microsecond.
    data.customer("C0031", D)
    data.order("C0031", ts(D, "23:59:59.999999"), 33.25)

    # C0032 signs up on D2+1: absent at D2, present at D1.
    data.customer("C0032", a2(1))
    data.order("C0032", ts(a2(1), "00:00:00"), 9.0)

    # C0033 window edges at D2, and an order at D2+1.
    data.customer("C0033", OLD_SIGNUP)
    for n, amount in zip((29, 30, 89, 90, 179, 180, 364, 365), (1, 2, 4, 8, 16, 32, 64, 128)):
        data.order("C0033", ts(b2(n)), amount)
    data.order("C0033", ts(a2(1), "00:00:00"), 256.0)

    # C0034 web visits across the leap day, app login on D2.
    data.customer("C0034", OLD_SIGNUP)
    for n in (30, 31, 60):
        data.event("C0034", ts(b2(n)), "web_visit")
    data.event("C0034", ts(D, "00:00:00"), "app_login")

    # C0035 a ticket open at D2 (resolved D2+1), one resolved on D2.
    data.customer("C0035", OLD_SIGNUP)
    data.ticket("C0035", ts(b2(10)), ts(a2(1), "00:00:00"), csat=2)
    data.ticket("C0035", ts(b2(3)), ts(D, "23:59:59.999999"), csat=5)

    # C0036 unsubscribes at D2+1: false at D2, true at D1.
    data.customer("C0036", OLD_SIGNUP)
    data.event("C0036", ts(a2(1), "00:00:00"), "unsubscribe")

    # C0037 opens but no sends in D2's window.
    data.customer("C0037", OLD_SIGNUP)
    data.event("C0037", ts(b2(120)), "email_sent")
    data.event("C0037", ts(b2(5)), "email_open")

    # ---- D3 = 2023-12-31 ----------------------------------------------------------------
    D = D3
    # C0038 orders at D3, D3+1 (a new year), D3-364 and D3-365.
    data.customer("C0038", OLD_SIGNUP)
    for day, amount in ((D, 1.0), (days(D, 1), 2.0), (days(D, -364), 4.0), (days(D, -365), 8.0)):
        data.order("C0038", ts(day, "00:00:00"), amount)

    # C0039 signs up on D3+1 = 2024-01-01.
    data.customer("C0039", days(D, 1))
    data.order("C0039", ts(days(D, 1)), 11.0)


# Hand-computed values for the edge customers: the SQL oracle must reproduce them.
# (Only columns named here are checked; None means null.)
HAND_CHECKS_D1 = {
    "C0001": dict(orders_30d=2, days_since_last_order=0, frequency=1.0, recency=100.0, T=100.0,
                  monetary_value=35.5, frequency_orders=3, monetary_total=75.5,
                  avg_interpurchase_days=100.0, overdue_ratio=0.0, recency_days=0),
    "C0002": dict(orders_30d=1, orders_90d=3, orders_365d=7, orders_prev_90d=2, spend_90d=7.0,
                  spend_365d=127.0, order_trend_90d=0.5, days_since_last_order=29,
                  avg_interpurchase_days=48.0, overdue_ratio=29 / 48, frequency=7.0,
                  recency=336.0, T=365.0, monetary_value=127 / 7, frequency_orders=8,
                  monetary_total=255.0),
    "C0003": dict(frequency=2.0, recency=190.0, T=200.0, monetary_value=31.5,
                  frequency_orders=6, monetary_total=163.0, avg_interpurchase_days=95.0),
    "C0004": dict(frequency=None, recency_days=None, frequency_orders=0, monetary_total=0.0,
                  r_score=None, rfm_segment=None, return_rate_365d=None, orders_365d=0,
                  days_since_last_order=None),
    "C0005": dict(return_rate_365d=1.0, frequency=None),
    "C0006": dict(return_rate_365d=0.25, orders_90d=3),
    "C0007": dict(tenure_days=0, frequency=0.0, recency=0.0, T=0.0, monetary_value=0.0,
                  recency_days=0),
    "C0009": dict(days_since_last_order=None, orders_365d=0, spend_365d=0.0,
                  web_visits_30d=1, email_open_rate_90d=0.0),
    "C0010": dict(frequency=0.0, recency=0.0, T=40.0, monetary_value=0.0,
                  avg_interpurchase_days=None, overdue_ratio=None, frequency_orders=2,
                  monetary_total=40.0),
    "C0011": dict(tickets_90d=5, open_tickets=2, avg_csat_365d=3.0),
    "C0012": dict(tickets_90d=1, open_tickets=0, avg_csat_365d=None),
    "C0013": dict(email_open_rate_90d=None),
    "C0014": dict(unsubscribed=True),
    "C0015": dict(unsubscribed=False),
    "C0016": dict(unsubscribed=True),
    "C0017": dict(web_visits_30d=1, web_visits_prev_30d=3),
    "C0018": dict(app_logins_30d=2),
    "C0019": dict(email_open_rate_90d=2 / 3),
    "C0020": dict(avg_interpurchase_days=20.0, overdue_ratio=1.0),
    "C0021": dict(avg_interpurchase_days=55.0, overdue_ratio=190 / 55),
    "C0022": dict(frequency=None, days_since_last_order=None),
    "C0025": dict(tenure_days=0, frequency=None, unsubscribed=False, tickets_90d=0),
    "C0026": dict(frequency=1.0, monetary_value=0.0),
    "C0027": dict(return_rate_365d=1.0, orders_365d=0, days_since_last_order=365),
    "C0029": dict(avg_csat_365d=5.0, open_tickets=0, tickets_90d=1),
    "C0032": dict(tenure_days=(D1 - days(D2, 1)).days),
    "C0036": dict(unsubscribed=True),
}
HAND_CHECKS_D2 = {
    "C0031": dict(tenure_days=0, frequency_orders=1, recency_days=0, T=0.0, orders_30d=1),
    "C0033": dict(orders_30d=1, orders_90d=3, orders_365d=7, orders_prev_90d=2, spend_90d=7.0,
                  spend_365d=127.0, days_since_last_order=29, frequency_orders=8),
    "C0034": dict(web_visits_30d=0, web_visits_prev_30d=2, app_logins_30d=1),
    "C0035": dict(open_tickets=1, avg_csat_365d=5.0, tickets_90d=2),
    "C0036": dict(unsubscribed=False),
    "C0037": dict(email_open_rate_90d=None),
}
HAND_CHECKS_D3 = {
    "C0038": dict(orders_365d=2, spend_365d=5.0, days_since_last_order=0, frequency=2.0,
                  recency=365.0, T=365.0, monetary_value=2.5, avg_interpurchase_days=182.5),
}
HAND_CHECKS = {D1: HAND_CHECKS_D1, D2: HAND_CHECKS_D2, D3: HAND_CHECKS_D3}
HAND_LABELS = {D1: {"C0001": 0, "C0002": 1, "C0022": 0, "C0023": 0, "C0024": 1, "C0007": 1}}
HAND_ABSENT = {D1: {"C0008"}, D2: {"C0008", "C0032"}, D3: {"C0039", "C0032", "C0025"}}


# ----------------------------------------------------------------------------------------
# Random background customers (seeded): realistic mixes, late sign-ups, non-buyers
# ----------------------------------------------------------------------------------------


def random_customers(data: Data, rng: np.random.Generator) -> None:
    start = np.datetime64("2022-01-01", "D")
    end = np.datetime64(DATA_END.isoformat(), "D")
    span = int((end - start).astype(int))
    day_ns = np.int64(86_400 * 10**9)

    def instants(first_day, last_day, k, unit):
        """k random instants in [first_day, last_day], sorted, at `unit` resolution."""
        lo = first_day.astype("datetime64[ns]").astype(np.int64)
        hi = (last_day + 1).astype("datetime64[ns]").astype(np.int64)
        raw = np.sort(rng.integers(lo, hi, size=k)).astype("datetime64[ns]")
        return raw.astype(f"datetime64[{unit}]").astype("datetime64[ns]")  # truncate to unit

    for i in range(N_RANDOM):
        cid = f"C{1001 + i:04d}"
        signup = start + int(rng.integers(0, span - 30))
        data.customer(cid, signup.astype(dt.date),
                      country=rng.choice(["US", "DE", "FR", "GB", "NL", None]),
                      segment=rng.choice(["consumer", "consumer", "business", None]),
                      opt_in=rng.choice([True, True, False, None]))
        # a latent lifetime: the customer stops everything after `alive_until`
        alive_until = min(end, signup + int(rng.exponential(900)))
        life = int((alive_until - signup).astype(int)) + 1

        if rng.random() < 0.85:  # the rest never order
            rate = float(np.exp(rng.uniform(np.log(1 / 120), np.log(1 / 8))))
            for when in instants(signup, alive_until, rng.poisson(rate * life), "us"):
                status = rng.choice(["completed", "returned", "cancelled"], p=[0.85, 0.08, 0.07])
                amount = int(rng.integers(0, 1600)) * 0.25
                channel = rng.choice(["web", "store", "app", None])
                data.order(cid, when, amount, status=status, channel=channel)
                if rng.random() < 0.08:  # a second order the same day
                    same_day = when + np.timedelta64(int(rng.integers(0, 3_600_000_000)), "us")
                    if same_day.astype("datetime64[D]") == when.astype("datetime64[D]"):
                        data.order(cid, same_day, int(rng.integers(0, 400)) * 0.25)

        rate = float(np.exp(rng.uniform(np.log(1 / 60), np.log(1 / 8))))
        kinds = ["web_visit", "app_login", "email_sent", "email_open", "email_click"]
        for when in instants(signup, alive_until, rng.poisson(rate * life), "ns"):
            data.event(cid, when, rng.choice(kinds, p=[0.4, 0.2, 0.2, 0.15, 0.05]))
        if rng.random() < 0.06:
            data.event(cid, instants(signup, end, 1, "ns")[0], "unsubscribe")

        for opened in instants(signup, alive_until, rng.poisson(life / 250), "us"):
            resolved = None
            if rng.random() < 0.85:
                resolved = opened + np.timedelta64(int(rng.integers(0, 20 * day_ns // 1000)), "us")
                resolved = resolved.astype("datetime64[ns]")
                if resolved > end.astype("datetime64[ns]"):
                    resolved = None  # still open when the data ends
            csat = int(rng.integers(1, 6)) if resolved is not None and rng.random() < 0.7 else None
            data.ticket(cid, opened, resolved, csat=csat,
                        category=rng.choice(["billing", "delivery", "product", None]))


# ----------------------------------------------------------------------------------------
# Parquet writing: exact contract columns, deliberately varied physical types
# ----------------------------------------------------------------------------------------


def ts_array(values, unit: str, tz: str | None) -> pa.Array:
    """datetime64[ns] values (or None) -> Arrow timestamps of the given unit and zone."""
    arr = np.array([np.datetime64("NaT") if v is None else v for v in values], dtype="datetime64[ns]")
    mask = np.isnat(arr)
    ints = arr.astype(f"datetime64[{unit}]").astype(np.int64)
    return pa.array(ints, type=pa.timestamp(unit, tz=tz), mask=mask)


def write_tables(data: Data, out: Path, rng: np.random.Generator) -> None:
    out.mkdir(parents=True, exist_ok=True)
    # Rows are shuffled so that no reader can lean on the file being sorted.
    def shuffled(rows):
        return [rows[i] for i in rng.permutation(len(rows))]

    cs, os_, ev, tk = (shuffled(x) for x in (data.customers, data.orders, data.interactions, data.tickets))
    col = lambda rows, k: [r[k] for r in rows]  # noqa: E731
    tables = {
        "customers": pa.table({
            "customer_id": pa.array(col(cs, "customer_id"), pa.string()),
            "signup_ts": pa.array(col(cs, "signup_ts"), pa.date32()),
            "country": pa.array(col(cs, "country"), pa.string()),
            "segment": pa.array(col(cs, "segment"), pa.string()),
            "email": pa.array(col(cs, "email"), pa.string()),
            "email_opt_in": pa.array(col(cs, "email_opt_in"), pa.bool_()),
        }),
        "orders": pa.table({
            "order_id": pa.array(col(os_, "order_id"), pa.string()),
            "customer_id": pa.array(col(os_, "customer_id"), pa.string()),
            "order_ts": ts_array(col(os_, "order_ts"), "us", "UTC"),
            "amount": pa.array(col(os_, "amount"), pa.float64()),
            "status": pa.array(col(os_, "status"), pa.string()),
            "channel": pa.array(col(os_, "channel"), pa.string()),
        }),
        "interactions": pa.table({
            "customer_id": pa.array(col(ev, "customer_id"), pa.string()),
            "event_ts": ts_array(col(ev, "event_ts"), "ns", None),
            "event_type": pa.array(col(ev, "event_type"), pa.string()),
        }),
        "support_tickets": pa.table({
            "ticket_id": pa.array(col(tk, "ticket_id"), pa.string()),
            "customer_id": pa.array(col(tk, "customer_id"), pa.string()),
            "opened_ts": ts_array(col(tk, "opened_ts"), "us", None),
            "resolved_ts": ts_array(col(tk, "resolved_ts"), "us", None),
            "category": pa.array(col(tk, "category"), pa.string()),
            "csat": pa.array(col(tk, "csat"), pa.int64()),
        }),
    }
    for name, table in tables.items():
        pq.write_table(table, out / f"{name}.parquet", compression="zstd")


# ----------------------------------------------------------------------------------------
# Expected values
# ----------------------------------------------------------------------------------------

BTYD = ["frequency", "recency", "T", "monetary_value"]


def lifetimes_btyd(source: Path, as_of: dt.date) -> pd.DataFrame:
    """BTYD summary from lifetimes, for snapshot customers with a completed order by as_of.

    Dates are derived here with pandas, not with DuckDB, so this side shares nothing with
    the SQL oracle but the Parquet files.
    """
    customers = pd.read_parquet(source / "customers.parquet")
    signup = pd.to_datetime(customers["signup_ts"]).dt.date
    snapshot = set(customers.loc[signup <= as_of, "customer_id"])

    orders = pd.read_parquet(source / "orders.parquet")
    order_ts = pd.to_datetime(orders["order_ts"])
    if order_ts.dt.tz is not None:
        order_ts = order_ts.dt.tz_convert("UTC").dt.tz_localize(None)
    orders = orders.assign(date=order_ts.dt.normalize())
    orders = orders[(orders["status"] == "completed")
                    & (orders["date"] <= pd.Timestamp(as_of))
                    & orders["customer_id"].isin(snapshot)]
    summary = summary_data_from_transaction_data(
        orders, "customer_id", "date", monetary_value_col="amount",
        observation_period_end=pd.Timestamp(as_of), freq="D")
    return summary[BTYD]


def check_btyd_against_sql(btyd: pd.DataFrame, cols: list[str], rows: list[tuple], as_of,
                           rel_tol: float = 0.0) -> None:
    """lifetimes and rfm.sql must agree on the four BTYD columns: exactly by default (the
    edge amounts make every sum exact), within rel_tol where amounts are in cents.

    This is what verifies that lifetimes' monetary_value (it sums each day's orders, blanks
    the first day, and takes the mean, 0 when nothing is left) is the semantics.md definition.
    """
    idx = {c: i for i, c in enumerate(cols)}
    sql = {r[idx["customer_id"]]: r for r in rows if r[idx["frequency"]] is not None}
    assert set(sql) == set(btyd.index), (as_of, set(sql) ^ set(btyd.index))
    for cid, lt in btyd.iterrows():
        for c in BTYD:
            a, b = float(lt[c]), sql[cid][idx[c]]
            assert a == b or abs(a - b) <= rel_tol * max(1.0, abs(a)), (as_of, cid, c, a, b)


def check_hand(as_of, cols, rows, label_rows) -> None:
    idx = {c: i for i, c in enumerate(cols)}
    by_id = {r[0]: r for r in rows}
    present = set(by_id)
    assert not (HAND_ABSENT.get(as_of, set()) & present), HAND_ABSENT[as_of] & present
    for cid, expect in HAND_CHECKS[as_of].items():
        for c, v in expect.items():
            got = by_id[cid][idx[c]]
            ok = got == v if (v is None or isinstance(v, (bool, int))) else abs(got - v) < 1e-12
            assert ok, (as_of, cid, c, "expected", v, "got", got)
    labels = {r[0]: r[2] for r in label_rows}
    for cid, v in HAND_LABELS.get(as_of, {}).items():
        assert labels[cid] == v, (cid, "churned_90d", v, labels[cid])


def expected_for(source: Path, as_of: dt.date, out: Path) -> dict:
    con = oracle_lib.connect(source)
    max_order = con.execute("SELECT max(CAST(order_ts AS DATE)) FROM orders").fetchone()[0]
    assert max_order >= as_of + dt.timedelta(days=90), "labels need data up to D+90"

    rfm_cols, rfm_rows = oracle_lib.run_feature_sql(con, "rfm", as_of)
    btyd = lifetimes_btyd(source, as_of)
    check_btyd_against_sql(btyd, rfm_cols, rfm_rows, as_of)
    # The BTYD cells written are lifetimes' own numbers (the SQL was only checked against them).
    i_id = rfm_cols.index("customer_id")
    rfm_rows = [
        tuple(float(btyd.at[r[i_id], c]) if c in BTYD and r[i_id] in btyd.index else v
              for c, v in zip(rfm_cols, r))
        for r in rfm_rows
    ]

    churn_cols, churn_rows = oracle_lib.run_feature_sql(con, "churn_signals", as_of)
    label_cols, label_rows = oracle_lib.run_feature_sql(con, "labels", as_of)

    # one row per snapshot customer, same customers in every file, sorted by id
    ids = [r[0] for r in rfm_rows]
    assert ids == sorted(ids) and ids == [r[0] for r in churn_rows] == [r[0] for r in label_rows]

    merged_cols = rfm_cols + churn_cols[2:]
    merged = [a + b[2:] for a, b in zip(rfm_rows, churn_rows)]
    check_hand(as_of, merged_cols, merged, label_rows)

    day = as_of.isoformat()
    oracle_lib.write_csv(out / f"rfm_{day}.csv", rfm_cols, rfm_rows)
    oracle_lib.write_csv(out / f"churn_signals_{day}.csv", churn_cols, churn_rows)
    oracle_lib.write_csv(out / f"labels_{day}.csv", label_cols, label_rows)
    return dict(customers=len(ids), buyers=len(btyd),
                churned=sum(r[2] for r in label_rows))


# ----------------------------------------------------------------------------------------
# CDNOW: lifetimes' bundled data set as a contract-shaped source
# ----------------------------------------------------------------------------------------

CDNOW_END = dt.date(1998, 6, 30)


def make_cdnow() -> int:
    import lifetimes.datasets

    raw = pd.read_csv(Path(lifetimes.datasets.__file__).parent / "CDNOW_master.txt",
                      sep=r"\s+", dtype={"customer_id": str, "date": str})
    raw["day"] = pd.to_datetime(raw["date"], format="%Y%m%d")
    CDNOW_DIR.mkdir(parents=True, exist_ok=True)

    first = raw.groupby("customer_id")["day"].min().sort_index()
    null_str = pa.nulls(len(first), pa.string())
    # signup = first purchase: every CDNOW customer is in the first-purchase cohort of Q1 1997
    customers = pa.table({
        "customer_id": pa.array(first.index.to_list(), pa.string()),
        "signup_ts": pa.array(first.to_numpy().astype("datetime64[ms]"), pa.timestamp("ms", tz="UTC")),
        "country": null_str, "segment": null_str, "email": null_str,
        "email_opt_in": pa.nulls(len(first), pa.bool_()),
    })
    # order_ts is a Date column here (the contract allows Date where a Datetime is named)
    orders = pa.table({
        "order_id": pa.array([f"N{i + 1:05d}" for i in range(len(raw))], pa.string()),
        "customer_id": pa.array(raw["customer_id"].to_list(), pa.string()),
        "order_ts": pa.array(raw["day"].dt.date.to_list(), pa.date32()),
        "amount": pa.array(raw["dollar_value"].astype(float).to_numpy(), pa.float64()),
        "status": pa.array(["completed"] * len(raw), pa.string()),
        "channel": pa.nulls(len(raw), pa.string()),
    })
    interactions = pa.table({
        "customer_id": pa.array([], pa.string()),
        "event_ts": pa.array([], pa.timestamp("us", tz="UTC")),
        "event_type": pa.array([], pa.string()),
    })
    tickets = pa.table({
        "ticket_id": pa.array([], pa.string()), "customer_id": pa.array([], pa.string()),
        "opened_ts": pa.array([], pa.timestamp("us", tz="UTC")),
        "resolved_ts": pa.array([], pa.timestamp("us", tz="UTC")),
        "category": pa.array([], pa.string()), "csat": pa.array([], pa.int64()),
    })
    for name, table in (("customers", customers), ("orders", orders),
                        ("interactions", interactions), ("support_tickets", tickets)):
        pq.write_table(table, CDNOW_DIR / f"{name}.parquet", compression="zstd")

    btyd = lifetimes_btyd(CDNOW_DIR, CDNOW_END).sort_index()
    rows = [(cid, *(float(r[c]) for c in BTYD)) for cid, r in btyd.iterrows()]
    oracle_lib.write_csv(CDNOW_DIR / f"expected_btyd_{CDNOW_END.isoformat()}.csv",
                         ["customer_id", *BTYD], rows)

    # the RFM SQL must agree with lifetimes on real data too (with cents: float sums)
    con = oracle_lib.connect(CDNOW_DIR)
    cols, sql_rows = oracle_lib.run_feature_sql(con, "rfm", CDNOW_END)
    check_btyd_against_sql(btyd, cols, sql_rows, CDNOW_END, rel_tol=1e-12)
    return len(rows)


def main() -> None:
    rng = np.random.default_rng(SEED)
    data = Data()
    edge_customers(data)
    random_customers(data, rng)
    write_tables(data, EDGE_DIR, rng)
    for as_of in AS_OF_DATES:
        stats = expected_for(EDGE_DIR, as_of, EDGE_DIR / "expected")
        print(f"edge {as_of}: {stats}")
    print(f"cdnow: {make_cdnow()} customers")
    for folder in (EDGE_DIR, EDGE_DIR / "expected", CDNOW_DIR):
        for f in sorted(folder.glob("*.*")):
            print(f"  {f.relative_to(REPO)}  {f.stat().st_size:,} B")


if __name__ == "__main__":
    main()
