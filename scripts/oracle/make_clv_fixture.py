"""Expected values for the customer lifetime value models (BG/NBD and Gamma-Gamma).

Run from the repository root (deterministic; re-running rewrites identical files):

    .venv-oracle/bin/pip install -r scripts/requirements-oracle.txt   # once
    .venv-oracle/bin/python scripts/oracle/make_clv_fixture.py

Reads the committed CDNOW BTYD summary
    tests/fixtures/cdnow/expected_btyd_1998-06-30.csv
(customer_id, frequency, recency, T, monetary_value; time in days) and writes
    tests/fixtures/cdnow/clv_params.json     lifetimes' fitted parameters, penalizer 0:
                                             BetaGeoFitter r, alpha, a, b (alpha in days) and
                                             GammaGammaFitter p, q, v (fitted over the
                                             customers with frequency > 0 and
                                             monetary_value > 0, as semantics.md says)
    tests/fixtures/cdnow/clv_expected.csv    per customer, for a deterministic subset of the
                                             customers (every 16th row plus the extremes, to
                                             keep the file small): p_alive,
                                             expected_purchases_{30,90,365}d,
                                             expected_average_profit and clv_{30,90,365}d
                                             (monthly discount rate 0.01), all computed by
                                             lifetimes 0.11.3 FROM THE FITTED PARAMETERS above
                                             (floats written with %.17g, so they round-trip).

Definitions (shared/design/semantics.md, "Customer lifetime value (BTYD models)"):
  * p_alive = BetaGeoFitter.conditional_probability_alive
  * expected_purchases_<H>d = conditional_expected_number_of_purchases_up_to_time(H), H in days
  * expected_average_profit = GammaGammaFitter.conditional_expected_average_profit
    (frequency 0 gives the population mean p*v/(q-1))
  * clv_<H>d = GammaGammaFitter.customer_lifetime_value(bgf, ..., time=H/30, discount_rate,
    freq="D"): 30-day months. lifetimes sums months 1..ceil(H/30) (numpy's
    arange(1, time + 1)), so a horizon that is not a whole number of months is rounded up:
    365 days are 13 months of 30 days. c360 does the same to stay equal to lifetimes.
"""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from lifetimes import BetaGeoFitter, GammaGammaFitter

ROOT = Path(__file__).resolve().parents[2]
SUMMARY = ROOT / "tests/fixtures/cdnow/expected_btyd_1998-06-30.csv"
OUT_PARAMS = ROOT / "tests/fixtures/cdnow/clv_params.json"
OUT_VALUES = ROOT / "tests/fixtures/cdnow/clv_expected.csv"
HORIZONS = (30, 90, 365)
DISCOUNT_RATE = 0.01
EVERY = 16
EXTREMES = 10


def main() -> int:
    warnings.simplefilter("ignore")
    df = pd.read_csv(SUMMARY, dtype={"customer_id": str})
    df = df.set_index("customer_id")

    bgf = BetaGeoFitter(penalizer_coef=0.0)
    bgf.fit(df["frequency"], df["recency"], df["T"])
    repeat = df[(df["frequency"] > 0) & (df["monetary_value"] > 0)]
    ggf = GammaGammaFitter(penalizer_coef=0.0)
    ggf.fit(repeat["frequency"], repeat["monetary_value"])

    params = {
        "source": SUMMARY.relative_to(ROOT).as_posix(),
        "customers": int(len(df)),
        "gamma_gamma_customers": int(len(repeat)),
        "penalizer": 0.0,
        "bg_nbd": {k: float(bgf.params_[k]) for k in ("r", "alpha", "a", "b")},
        "bg_nbd_mean_negative_log_likelihood": float(bgf._negative_log_likelihood_),
        "gamma_gamma": {k: float(ggf.params_[k]) for k in ("p", "q", "v")},
        "gamma_gamma_mean_negative_log_likelihood": float(ggf._negative_log_likelihood_),
        "time_unit": "days",
        "discount_rate": DISCOUNT_RATE,
        "horizons_days": list(HORIZONS),
    }

    # The subset: every EVERY-th customer plus the extremes of each column.
    idx = set(range(0, len(df), EVERY))
    for c in ("frequency", "recency", "T", "monetary_value"):
        order = np.argsort(df[c].to_numpy(), kind="stable")
        idx.update(order[:EXTREMES].tolist())
        idx.update(order[-EXTREMES:].tolist())
    sub = df.iloc[sorted(idx)].copy()
    f, r, t, m = sub["frequency"], sub["recency"], sub["T"], sub["monetary_value"]

    out = sub[["frequency", "recency", "T", "monetary_value"]].copy()
    out["p_alive"] = bgf.conditional_probability_alive(f, r, t)
    for h in HORIZONS:
        out[f"expected_purchases_{h}d"] = bgf.conditional_expected_number_of_purchases_up_to_time(
            h, f, r, t
        )
    out["expected_average_profit"] = ggf.conditional_expected_average_profit(f, m)
    for h in HORIZONS:
        out[f"clv_{h}d"] = ggf.customer_lifetime_value(
            bgf, f, r, t, m, time=h / 30, discount_rate=DISCOUNT_RATE, freq="D"
        )

    # Checks before writing anything.
    if not np.isfinite(out.drop(columns=[]).to_numpy(dtype=float)).all():
        print("non-finite expected values", file=sys.stderr)
        return 1
    pm = params["gamma_gamma"]
    pop = pm["p"] * pm["v"] / (pm["q"] - 1)
    zero = out["frequency"] == 0
    if not np.allclose(out.loc[zero, "expected_average_profit"], pop, rtol=1e-12):
        print("frequency 0 is not the population mean", file=sys.stderr)
        return 1

    OUT_PARAMS.write_text(json.dumps(params, indent=2) + "\n")
    out.reset_index().to_csv(OUT_VALUES, index=False, float_format="%.17g", lineterminator="\n")
    print(
        f"BG/NBD {params['bg_nbd']}\nGamma-Gamma {params['gamma_gamma']}\n"
        f"wrote {OUT_PARAMS.relative_to(ROOT)} and {OUT_VALUES.relative_to(ROOT)} ({len(out)} customers)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
