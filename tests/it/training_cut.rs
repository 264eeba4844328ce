//! A training set loads only the rows its spine can read (`features::load_for_spine`):
//! on generated data and a sample spine (a few hundred customers at several dates,
//! unsorted, with repeats), the training set from the cut load equals the one from the
//! full load cell for cell, for `churn_signals` (customer and date cut) and `rfm`
//! (quantile scores: date cut only), with the label; the label-reach and unknown-customer
//! refusals are unchanged.

use c360::features::{self, FeatureSet};
use c360::source::{Source, CUSTOMER_KEY};
use chrono::{Duration, NaiveDate};
use polars::prelude::*;

use crate::features::{assert_ok, c360, set};
use crate::training_sets::{assert_same, days, epoch, read, strs};

const LABEL: &str = "churned_90d";

fn date(day: i32) -> NaiveDate {
    epoch() + Duration::days(i64::from(day))
}

/// The generated source and its facts.
struct Fixture {
    dir: tempfile::TempDir,
    ids: Vec<String>,
    signup: Vec<Option<i32>>,
    /// The orders' last day (the label table's reach).
    last_order: i32,
    /// Customers with an order on the last day.
    on_last_day: Vec<String>,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tmp");
    let out = c360()
        .args(["generate", "--customers", "3000", "--seed", "44", "--out"])
        .arg(dir.path())
        .output()
        .expect("generate");
    assert_ok(&out);
    let customers = read(dir.path(), "customers");
    let orders = read(dir.path(), "orders");
    let ts = days(&orders, "order_ts");
    let last_order = ts.iter().flatten().copied().max().expect("orders");
    let on_last_day = strs(&orders, "customer_id")
        .into_iter()
        .zip(&ts)
        .filter(|(_, t)| **t == Some(last_order))
        .map(|(id, _)| id)
        .collect();
    Fixture {
        ids: strs(&customers, "customer_id"),
        signup: days(&customers, "signup_ts"),
        dir,
        last_order,
        on_last_day,
    }
}

/// A sample spine: every 9th customer at each of `dates` it is signed up by, in a
/// shuffled order (a fixed permutation), with some rows repeated.
fn sample_spine(fx: &Fixture, dates: &[i32]) -> DataFrame {
    let mut rows: Vec<(String, i32)> = Vec::new();
    for d in dates {
        for (i, (id, s)) in fx.ids.iter().zip(&fx.signup).enumerate() {
            if i % 9 == 4 && s.is_some_and(|s| s <= *d) {
                rows.push((id.clone(), *d));
            }
        }
    }
    let n = rows.len();
    assert!(n > 1000, "sample spine rows: {n}");
    // Repeats, then a deterministic shuffle (7919 is prime, so this is a permutation).
    for i in (0..n).step_by(37) {
        rows.push(rows[i].clone());
    }
    let m = rows.len();
    let step = if m.is_multiple_of(7919) { 7907 } else { 7919 };
    let order: Vec<usize> = (0..m).map(|i| (i * step + 11) % m).collect();
    let mut seen = vec![false; m];
    for &o in &order {
        seen[o] = true;
    }
    assert!(seen.iter().all(|s| *s), "permutation");
    let (ids, ds): (Vec<String>, Vec<i32>) = order.iter().map(|&o| rows[o].clone()).unzip();
    DataFrame::new_infer_height(vec![
        Column::new("customer_id".into(), ids),
        Column::new("_as_of".into(), ds),
    ])
    .expect("spine")
}

/// Month-ends (approximately: every 30 days back) ending 95 days before the last order.
fn dates(fx: &Fixture) -> Vec<i32> {
    let end = fx.last_order - 95;
    let mut d: Vec<i32> = (0..6).map(|i| end - 30 * i).collect();
    d.reverse();
    d
}

fn height(l: &features::Loaded, t: &str) -> usize {
    l.tables[t].frame.clone().collect().expect("table").height()
}

fn distinct_keys(l: &features::Loaded, t: &str) -> usize {
    l.tables[t]
        .frame
        .clone()
        .select([col(CUSTOMER_KEY).n_unique()])
        .collect()
        .expect("keys")
        .column(CUSTOMER_KEY)
        .expect("key")
        .get(0)
        .expect("n")
        .extract::<usize>()
        .expect("n")
}

fn max_day(l: &features::Loaded, t: &str, ts: &str) -> i32 {
    let df = l.tables[t].frame.clone().collect().expect("table");
    days(&df, ts).into_iter().flatten().max().expect("rows")
}

/// The training set from the cut load equals the one from the full load; returns both
/// loads for the callers' checks of what was cut.
fn compare(
    fs: &FeatureSet,
    src: &Source,
    spine: &DataFrame,
) -> (features::Loaded, features::Loaded) {
    let full = features::load_tables(fs, src, &[]).expect("full load");
    let cut = features::load_for_spine(fs, src, spine, Some(LABEL)).expect("cut load");
    for batch in [None, Some(40)] {
        let a = features::training_set_batched(fs, &full, spine, "spine", Some(LABEL), batch)
            .expect("training set, full load");
        let b = features::training_set_batched(fs, &cut, spine, "spine", Some(LABEL), batch)
            .expect("training set, cut load");
        assert_eq!(
            a.height(),
            spine.height(),
            "{}: one row a spine row",
            fs.name
        );
        let ones = a
            .column(LABEL)
            .expect("label")
            .as_materialized_series()
            .sum::<i64>()
            .expect("sum");
        assert!(
            ones > 0 && (ones as usize) < a.height(),
            "{}: labels vary",
            fs.name
        );
        assert_same(
            &b,
            &a,
            &format!("{}: cut vs full load, batches {batch:?}", fs.name),
        );
    }
    (full, cut)
}

#[test]
fn cut_training_sets_equal_full_ones_and_refusals_are_unchanged() {
    let fx = fixture();
    let src = Source::open(&fx.dir.path().display().to_string()).expect("source");
    let ds = dates(&fx);
    let spine = sample_spine(&fx, &ds);
    let sampled = fx.ids.iter().skip(4).step_by(9).count();
    let last = *ds.last().expect("dates");

    // churn_signals: customer and date cut.
    let fs = set("churn_signals");
    let (full, cut) = compare(&fs, &src, &spine);
    for t in fs.tables() {
        if t == "customers" {
            assert_eq!(height(&cut, t), height(&full, t), "customers never cut");
            continue;
        }
        assert!(
            height(&cut, t) < height(&full, t) / 4,
            "churn_signals {t}: {} of {} rows kept",
            height(&cut, t),
            height(&full, t)
        );
        assert!(
            distinct_keys(&cut, t) <= sampled,
            "churn_signals {t}: only the spine's customers"
        );
    }
    // Orders (the label's table) reach the horizon; the others stop at the last date.
    assert!(max_day(&cut, "orders", "order_ts") > last);
    assert!(max_day(&cut, "orders", "order_ts") <= last + 90);
    if fs.tables().contains("interactions") {
        assert!(max_day(&cut, "interactions", "event_ts") <= last);
    }

    // rfm: quantile scores rank the whole population: no customer cut, the date cut stays.
    let fs = set("rfm");
    let (full, cut) = compare(&fs, &src, &spine);
    assert!(
        distinct_keys(&cut, "orders") > sampled * 3,
        "rfm: every customer"
    );
    assert!(
        height(&cut, "orders") < height(&full, "orders"),
        "rfm: date cut"
    );
    assert!(max_day(&cut, "orders", "order_ts") <= last + 90);

    // The label's reach is the whole table's, not the cut's: a spine whose horizon ends
    // exactly on the last order day is accepted although none of its customers ordered
    // that day (a reach taken from the cut table would refuse it).
    let fs = set("churn_signals");
    let edge_day = fx.last_order - 90;
    let (ids, edge_days): (Vec<String>, Vec<i32>) = fx
        .ids
        .iter()
        .zip(&fx.signup)
        .filter(|(id, s)| s.is_some_and(|s| s <= edge_day) && !fx.on_last_day.contains(id))
        .take(50)
        .map(|(id, _)| (id.clone(), edge_day))
        .unzip();
    let edge = DataFrame::new_infer_height(vec![
        Column::new("customer_id".into(), ids),
        Column::new("_as_of".into(), edge_days),
    ])
    .expect("spine");
    let cut = features::load_for_spine(&fs, &src, &edge, Some(LABEL)).expect("cut load");
    assert!(
        max_day(&cut, "orders", "order_ts") < fx.last_order,
        "cut lowers the max"
    );
    let full = features::load_tables(&fs, &src, &[]).expect("full load");
    let a = features::training_set_batched(&fs, &full, &edge, "spine", Some(LABEL), None)
        .expect("reach exactly at the data's end, full load");
    let b = features::training_set_batched(&fs, &cut, &edge, "spine", Some(LABEL), None)
        .expect("reach exactly at the data's end, cut load");
    assert_same(&b, &a, "edge spine");

    // Refusals through the command, with and without the cut: same exit, same message.
    let early = fx
        .ids
        .iter()
        .zip(&fx.signup)
        .find(|(_, s)| s.is_some_and(|s| s <= ds[0]))
        .map(|(id, _)| id.clone())
        .expect("an early customer");
    let cases = [
        (
            // One day past the reach.
            format!(
                "customer_id,as_of\n{early},{}\n{early},{}\n",
                date(ds[0]),
                date(fx.last_order - 89)
            ),
            vec![
                "churned_90d".to_string(),
                format!("needs data up to {}", date(fx.last_order + 1)),
                format!("orders ends on {}", date(fx.last_order)),
            ],
        ),
        (
            format!(
                "customer_id,as_of\n{early},{}\nNOPE,{}\n",
                date(ds[0]),
                date(ds[1])
            ),
            vec!["customer_id=\"NOPE\"".to_string(), "1 row(s)".to_string()],
        ),
    ];
    for (i, (csv, want)) in cases.iter().enumerate() {
        let spine = fx.dir.path().join(format!("bad{i}.csv"));
        std::fs::write(&spine, csv).expect("spine");
        let mut errs = Vec::new();
        for off in [false, true] {
            let out_file = fx.dir.path().join(format!("t{i}.parquet"));
            let mut cmd = c360();
            if off {
                cmd.env("C360_TRAINING_CUT", "off");
            }
            let out = cmd
                .args([
                    "features",
                    "training-set",
                    "churn_signals",
                    "--label",
                    LABEL,
                    "--spine",
                ])
                .arg(&spine)
                .arg("--out")
                .arg(&out_file)
                .arg("--source")
                .arg(fx.dir.path())
                .output()
                .expect("run");
            let stderr = String::from_utf8_lossy(&out.stderr).to_string();
            // Case 0 (the label's horizon past the data) is exit 2 like an --as-of past
            // the data; case 1 (an unknown customer) is bad spine data, exit 4.
            let code = if i == 0 { 2 } else { 4 };
            assert_eq!(out.status.code(), Some(code), "case {i}: {stderr}");
            assert!(!out_file.exists(), "case {i}: no output");
            for w in want {
                assert!(stderr.contains(w.as_str()), "case {i}: {w:?} in {stderr}");
            }
            errs.push(stderr);
        }
        assert_eq!(
            errs[0], errs[1],
            "case {i}: same message with the cut and without"
        );
    }
}
