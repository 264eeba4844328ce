#!/usr/bin/env python3
"""Train small xgboost models and write parity fixtures to tests/fixtures/xgb/.

Each fixture is a model file (JSON or UBJSON, from Booster.save_model), an input CSV (no
header, one record per line, empty field = missing) and the predictions of xgboost's own
Booster.predict on exactly those float32 values. tests/it/scoring.rs checks that c360's
evaluator matches them to 1e-6.

Run (from the repository root, with xgboost installed, e.g. .venv-oracle):
    python scripts/xgb/make_fixtures.py [--out tests/fixtures/xgb]

Deterministic (fixed seeds); every file is kept well under 1 MB.
"""
import argparse
import json
import os
import sys

import numpy as np
import xgboost as xgb

MAX_FILE_BYTES = 900_000


def fmt(v):
    """Shortest-enough text that reads back as the same float32 (9 significant digits)."""
    if np.isnan(v):
        return ""
    return "%.9g" % float(v)


def write_csv(path, X):
    with open(path, "w") as f:
        for row in X:
            f.write(",".join(fmt(v) for v in row) + "\n")


def write_expected(path, P):
    P = np.asarray(P, dtype=np.float32)
    if P.ndim == 1:
        P = P[:, None]
    with open(path, "w") as f:
        for row in P:
            f.write(",".join("%.9g" % float(v) for v in row) + "\n")


def make_data(rng, n, d, nan_frac):
    X = rng.normal(size=(n, d)).astype(np.float32)
    # A few features on a larger scale and a few repeated values, so split points matter.
    X[:, 0] *= 100.0
    if d > 2:
        X[:, 2] = np.round(X[:, 2] * 2) / 2
    if nan_frac > 0:
        X[rng.random(X.shape) < nan_frac] = np.nan
    return X


def signal(X):
    Z = np.nan_to_num(X, nan=0.0).astype(np.float64)
    return 0.02 * Z[:, 0] + Z[:, 1] - 0.5 * Z[:, min(2, X.shape[1] - 1)] ** 2 + 0.3 * Z[:, -1]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="tests/fixtures/xgb")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(20240601)

    specs = []

    def fixture(name, ext, params, rounds, n_train=2000, n_test=300, d=8, nan_frac=0.0,
                label=None, base_score_form=None):
        X = make_data(rng, n_train + n_test, d, nan_frac)
        s = signal(X)
        y = label(s, rng) if label else s
        Xtr, Xte, ytr = X[:n_train], X[n_train:], y[:n_train]
        params = dict(params)
        params.setdefault("seed", 7)
        params.setdefault("nthread", 2)
        b = xgb.train(params, xgb.DMatrix(Xtr, label=ytr, missing=np.nan), rounds)
        model_file = f"{name}.{ext}"
        model_path = os.path.join(args.out, model_file)
        b.save_model(model_path)
        if base_score_form == "scalar":
            # xgboost 1.x/2.x wrote base_score as a plain number string ("5E-1"); 3.x writes
            # "[5E-1]". Rewrite the file to the old form and let xgboost itself reload it, so
            # the expected predictions come from the rewritten file.
            with open(model_path) as f:
                j = json.load(f)
            bs = j["learner"]["learner_model_param"]["base_score"]
            assert bs.startswith("[") and bs.endswith("]") and "," not in bs, bs
            j["learner"]["learner_model_param"]["base_score"] = bs[1:-1]
            with open(model_path, "w") as f:
                json.dump(j, f, separators=(",", ":"))
            b = xgb.Booster()
            b.load_model(model_path)
        # Predict from the CSV text's own float32 values (exactly what c360 will parse).
        csv_file = f"{name}.csv"
        write_csv(os.path.join(args.out, csv_file), Xte)
        P = b.predict(xgb.DMatrix(Xte, missing=np.nan))
        exp_file = f"{name}.expected.csv"
        write_expected(os.path.join(args.out, exp_file), P)
        with open(model_path, "rb") as f:
            full = f.read()
        if full[:1] == b"{" and full[1:2] in b"iUIlL":
            fmt_name = "ubjson"
        else:
            fmt_name = "json"
        cfg = json.loads(b.save_config())
        gb = json.loads(b.save_raw("json"))["learner"]["gradient_booster"]
        trees = len((gb["gbtree"] if gb["name"] == "dart" else gb)["model"]["trees"])
        specs.append({
            "name": name,
            "model": model_file,
            "format": fmt_name,
            "input": csv_file,
            "expected": exp_file,
            "objective": cfg["learner"]["objective"]["name"],
            "num_feature": d,
            "rows": int(Xte.shape[0]),
            "outputs_per_row": int(P.shape[1]) if P.ndim == 2 else 1,
            "trees": trees,
            "max_depth": int(params.get("max_depth", 6)),
            "nan_fraction": nan_frac,
            # As stored in the file (the scalar fixtures keep the 1.x form).
            "base_score": json.loads(full)["learner"]["learner_model_param"]["base_score"]
            if fmt_name == "json" else None,
        })
        for f in (model_file, csv_file, exp_file):
            size = os.path.getsize(os.path.join(args.out, f))
            assert size < MAX_FILE_BYTES, f"{f} is {size} bytes; shrink the fixture"

    binary = lambda s, r: (s + r.normal(scale=0.5, size=s.shape) > 0).astype(np.float32)

    fixture("binary_shallow", "json", {"objective": "binary:logistic", "max_depth": 2, "eta": 0.3}, 20,
            label=binary)
    fixture("binary_deep_nan", "ubj", {"objective": "binary:logistic", "max_depth": 8, "eta": 0.1,
                                        "min_child_weight": 0.5}, 25, nan_frac=0.2, label=binary)
    fixture("binary_lossguide_nan", "json", {"objective": "binary:logistic", "grow_policy": "lossguide",
                                             "max_leaves": 48, "max_depth": 0, "tree_method": "hist"},
            12, nan_frac=0.3, label=binary)
    fixture("binary_base_scalar", "json", {"objective": "binary:logistic", "max_depth": 4,
                                           "base_score": 0.3}, 15, nan_frac=0.1, label=binary,
            base_score_form="scalar")
    fixture("binary_logitraw", "json", {"objective": "binary:logitraw", "max_depth": 3}, 15,
            nan_frac=0.1, label=binary)
    # Outputs in the thousands: only f32 arithmetic in xgboost's order stays within 1e-6.
    fixture("reg_squarederror_large_scale", "ubj", {"objective": "reg:squarederror", "max_depth": 6,
                                                    "eta": 0.2}, 40, nan_frac=0.15,
            label=lambda s, r: (5000.0 + 800.0 * s).astype(np.float32))
    fixture("reg_squarederror_scalar_base", "json", {"objective": "reg:squarederror", "max_depth": 3,
                                                     "base_score": 2.5}, 10,
            label=lambda s, r: s.astype(np.float32), base_score_form="scalar")
    fixture("reg_logistic", "ubj", {"objective": "reg:logistic", "max_depth": 4}, 20, nan_frac=0.05,
            label=lambda s, r: (1 / (1 + np.exp(-s))).astype(np.float32))
    fixture("reg_absoluteerror", "json", {"objective": "reg:absoluteerror", "max_depth": 4}, 15,
            nan_frac=0.1, label=lambda s, r: (100 * s).astype(np.float32))
    fixture("count_poisson", "ubj", {"objective": "count:poisson", "max_depth": 3}, 15,
            label=lambda s, r: r.poisson(np.exp(np.clip(s, -3, 3))).astype(np.float32))
    multi = lambda s, r: np.digitize(s + r.normal(scale=0.3, size=s.shape), [-0.5, 0.5]).astype(np.float32)
    fixture("multi_softprob_nan", "json", {"objective": "multi:softprob", "num_class": 3, "max_depth": 4},
            10, nan_frac=0.1, label=multi)
    fixture("multi_softprob_deep", "ubj", {"objective": "multi:softprob", "num_class": 4, "max_depth": 7,
                                           "eta": 0.2}, 8, nan_frac=0.2,
            label=lambda s, r: np.digitize(s, [-1.0, 0.0, 1.0]).astype(np.float32))
    fixture("multi_softmax", "json", {"objective": "multi:softmax", "num_class": 3, "max_depth": 3}, 6,
            label=multi)

    # dart: each tree's leaves are scaled by its weight_drop at prediction time.
    fixture("binary_dart", "json", {"booster": "dart", "objective": "binary:logistic", "max_depth": 4,
                                    "rate_drop": 0.3, "skip_drop": 0.0, "normalize_type": "forest"},
            20, nan_frac=0.1, label=binary)

    with open(os.path.join(args.out, "fixtures.json"), "w") as f:
        json.dump({"xgboost_version": xgb.__version__, "fixtures": specs}, f, indent=1)
    total = sum(os.path.getsize(os.path.join(args.out, p)) for p in os.listdir(args.out))
    print(f"wrote {len(specs)} fixtures ({total / 1e6:.2f} MB) to {args.out} with xgboost {xgb.__version__}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
