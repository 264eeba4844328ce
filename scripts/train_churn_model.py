#!/usr/bin/env python3
"""Trains the sample churn model in models/churn_xgb/ from c360's own training sets.

    .venv-oracle/bin/python scripts/train_churn_model.py [--c360 PATH] [--customers N]

1. `c360 generate` a synthetic Customer 360 (deterministic seed);
2. a spine of every customer signed up by each month end from 2023-03-31 to 2024-09-30;
3. `c360 features training-set` for rfm and churn_signals with the label churned_90d;
4. xgboost (binary:logistic) trained on the months up to 2024-03-31, evaluated on a
   held-out period (2024-06-30 and 2024-09-30, customers and dates the model never saw
   in training are not guaranteed disjoint in customers, only in time);
5. writes models/churn_xgb/xgboost-model.json, model.toml and metrics.json.

The label needs 90 days of data after the as-of date, so the latest usable date with the
default data (ending 2024-12-31) is 2024-10-02.
"""

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import polars as pl
import xgboost as xgb
from sklearn.metrics import roc_auc_score

ROOT = Path(__file__).resolve().parent.parent
MODEL_DIR = ROOT / "models" / "churn_xgb"

# The model's inputs, in order: numeric columns of both sets (segment names are left out;
# the scores carry the same information).
RFM = ["frequency", "recency", "T", "monetary_value", "recency_days", "frequency_orders",
       "monetary_total", "r_score", "f_score", "m_score"]
CHURN = ["days_since_last_order", "orders_30d", "orders_90d", "orders_365d", "spend_90d",
         "spend_365d", "orders_prev_90d", "order_trend_90d", "avg_interpurchase_days",
         "overdue_ratio", "return_rate_365d", "tickets_90d", "open_tickets", "avg_csat_365d",
         "web_visits_30d", "web_visits_prev_30d", "app_logins_30d", "email_open_rate_90d",
         "unsubscribed", "tenure_days"]
TRAIN_END = dt.date(2024, 3, 31)


def month_ends(start: dt.date, end: dt.date):
    d = start
    while d <= end:
        yield d
        nxt = (d.replace(day=1) + dt.timedelta(days=32)).replace(day=1)
        d = (nxt + dt.timedelta(days=32)).replace(day=1) - dt.timedelta(days=1)


def run(cmd):
    print("+", " ".join(str(c) for c in cmd), flush=True)
    subprocess.run([str(c) for c in cmd], check=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--c360", default=os.path.expanduser("~/.cache/c360-target/release/c360"))
    ap.add_argument("--customers", type=int, default=40000)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--trees", type=int, default=120)
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = tmp / "data"
        run([args.c360, "generate", "--customers", args.customers, "--seed", args.seed, "--out", data])
        customers = pl.read_parquet(data / "customers.parquet").select(
            "customer_id", pl.col("signup_ts").dt.date().alias("signup"))
        dates = list(month_ends(dt.date(2023, 3, 31), dt.date(2024, 9, 30)))
        spine = pl.concat([
            customers.filter(pl.col("signup") <= d).select("customer_id", pl.lit(d).alias("as_of"))
            for d in dates
        ])
        spine.write_csv(tmp / "spine.csv")
        for s in ["rfm", "churn_signals"]:
            run([args.c360, "--config", ROOT / "c360.toml", "features", "training-set", s,
                 "--spine", tmp / "spine.csv", "--label", "churned_90d",
                 "--out", tmp / f"{s}.parquet", "--source", data])
        rfm = pl.read_parquet(tmp / "rfm.parquet")
        churn = pl.read_parquet(tmp / "churn_signals.parquet").drop("churned_90d")
        df = rfm.join(churn, on=["customer_id", "as_of"], how="inner")
        assert df.height == spine.height, "one row per spine row"

    features = RFM + CHURN
    X = df.select([pl.col(c).cast(pl.Float64) for c in features]).to_numpy()
    y = df["churned_90d"].to_numpy()
    as_of = df["as_of"].to_numpy()
    train = as_of <= np.datetime64(TRAIN_END)
    test = as_of > np.datetime64(dt.date(2024, 5, 31))
    dtrain = xgb.DMatrix(X[train], label=y[train], feature_names=features, missing=np.nan)
    dtest = xgb.DMatrix(X[test], label=y[test], feature_names=features, missing=np.nan)
    params = {"objective": "binary:logistic", "max_depth": 5, "eta": 0.1, "subsample": 0.8,
              "colsample_bytree": 0.8, "min_child_weight": 5, "eval_metric": "auc",
              "seed": 7, "nthread": 2}
    booster = xgb.train(params, dtrain, num_boost_round=args.trees,
                        evals=[(dtrain, "train"), (dtest, "held_out")], verbose_eval=40)
    p = booster.predict(dtest)
    auc = float(roc_auc_score(y[test], p))
    # The naive baseline: days since the last order alone.
    dslo = X[test][:, features.index("days_since_last_order")]
    baseline = float(roc_auc_score(y[test], np.nan_to_num(dslo, nan=10_000)))
    print(f"held-out AUC {auc:.4f} (days_since_last_order alone: {baseline:.4f})")

    MODEL_DIR.mkdir(parents=True, exist_ok=True)
    booster.save_model(MODEL_DIR / "xgboost-model.json")
    # Risk bands at the held-out score quantiles: the riskiest 20% are "high".
    q60, q80 = (float(round(v, 4)) for v in np.quantile(p, [0.6, 0.8]))
    metrics = {
        "trained_on": f"{int(train.sum())} rows, as-of dates {dates[0]} .. {TRAIN_END}",
        "held_out": f"{int(test.sum())} rows, as-of dates 2024-06-30 and 2024-09-30",
        "held_out_auc": round(auc, 4),
        "baseline_auc_days_since_last_order": round(baseline, 4),
        "churn_rate_held_out": round(float(y[test].mean()), 4),
        "generator": {"customers": args.customers, "seed": args.seed},
        "xgboost": xgb.__version__,
        "params": params,
        "trees": args.trees,
    }
    (MODEL_DIR / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    feats = ",\n  ".join(f'"{f}"' for f in features)
    (MODEL_DIR / "model.toml").write_text(f'''# Sample churn model: xgboost binary:logistic on rfm + churn_signals, label churned_90d.
# Trained by scripts/train_churn_model.py on generated data; metrics.json has its
# held-out AUC ({auc:.3f}).
description = "Probability that a customer places no completed order in the next 90 days"
feature_sets = {{ rfm = 1, churn_signals = 1 }}
features = [
  {feats},
]
content_type = "text/csv"
objective = "binary:logistic"

[artifact]
path = "xgboost-model.json"

[sagemaker]
# The built-in XGBoost container reads the same JSON model file (as xgboost-model).
image = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
model_data = "s3://example-ml-artifacts/models/churn_xgb/model.tar.gz"

[[risk_bands]]
name = "low"
below = {q60}

[[risk_bands]]
name = "medium"
below = {q80}

[[risk_bands]]
name = "high"
''')
    print(f"wrote {MODEL_DIR}")


if __name__ == "__main__":
    sys.exit(main())
