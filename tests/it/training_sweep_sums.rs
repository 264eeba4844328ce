//! Float sums and means in the event sweep (`compile/sweep/sums.rs`): on the edge source
//! of `training_sweep` with orders added whose amounts make a naive f64 prefix sum differ
//! (0.1 many times after 1e8 + 0.3), the training set equals the snapshots and the join
//! path cell for cell; with an out-of-range amount (2^40, 1e-20) the batch's sums take the
//! join path (the log says so) and still equal them.

use std::path::Path;

use polars::prelude::*;

use crate::training_sweep::{check_source, cli, dates, edge_source, read, write, write_spine};

/// Appends completed web orders `(customer, day, amount)` at noon to the source's orders.
fn add_orders(dir: &Path, extra: &[(&str, i32, f64)]) {
    let path = dir.join("orders.parquet");
    let old = read(&path);
    let us = |d: i32| (i64::from(d) * 86_400 + 12 * 3600) * 1_000_000;
    let new = DataFrame::new_infer_height(vec![
        Column::new(
            "order_id".into(),
            (0..extra.len())
                .map(|i| format!("x{i}"))
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "customer_id".into(),
            extra.iter().map(|o| o.0).collect::<Vec<_>>(),
        ),
        Column::new(
            "order_ts".into(),
            extra.iter().map(|o| us(o.1)).collect::<Vec<_>>(),
        )
        .cast(&DataType::Datetime(TimeUnit::Microseconds, None))
        .expect("datetime"),
        Column::new(
            "amount".into(),
            extra.iter().map(|o| o.2).collect::<Vec<_>>(),
        ),
        Column::new("status".into(), vec!["completed"; extra.len()]),
        Column::new("channel".into(), vec![Some("web"); extra.len()]),
    ])
    .expect("extra orders");
    let new = new
        .lazy()
        .select(
            old.get_column_names()
                .iter()
                .map(|n| col(n.as_str()).cast(old.column(n.as_str()).expect("col").dtype().clone()))
                .collect::<Vec<_>>(),
        )
        .collect()
        .expect("cast");
    let mut all = old.vstack(&new).expect("vstack");
    write(&path, &mut all);
}

/// Orders of `a`: 1e8 + 0.3 long before D3, then 0.1 (and 12.34) many times within
/// the 90 days before D3.
fn many_orders(d3: i32) -> Vec<(&'static str, i32, f64)> {
    let mut v = Vec::new();
    for i in 0..40 {
        v.push(("a", d3 - 300 + i, 1e8 + 0.3));
    }
    for i in 0..3000 {
        let amount = if i % 5 == 0 { 12.34 } else { 0.1 };
        v.push(("a", d3 - 1 - (i % 89), amount));
    }
    v
}

fn spine() -> DataFrame {
    let d = dates();
    let rows = [
        ("a", d.d3),
        ("a", d.d1),
        ("c", d.d1),
        ("a", d.d4),
        ("b", d.d3),
        ("c", d.d3),
        ("a", d.d2),
    ];
    crate::training_sets::spine_rows(&rows)
}

/// `spend_90d` of the churn set's spine row 0 (a at D3).
fn spend_a(sets: &[(String, DataFrame)]) -> f64 {
    let churn = &sets
        .iter()
        .find(|s| s.0 == "churn_signals")
        .expect("churn")
        .1;
    churn
        .column("spend_90d")
        .expect("spend_90d")
        .f64()
        .expect("f64")
        .get(0)
        .expect("value")
}

/// The `fallback=` counts of the orders sweep in a debug log.
fn orders_fallbacks(log: &str) -> Vec<u64> {
    log.lines()
        .filter(|l| l.contains("training-set sweep") && l.contains("table=\"orders\""))
        .filter_map(|l| l.split("fallback=").nth(1)?.split(' ').next()?.parse().ok())
        .collect()
}

#[test]
fn swept_float_sums_equal_snapshots_where_a_naive_prefix_sum_differs() {
    let dir = tempfile::tempdir().expect("tmp");
    edge_source(dir.path());
    let d3 = dates().d3;
    add_orders(dir.path(), &many_orders(d3));
    // Snapshots, join path and sweep agree cell for cell (every set, every spine date).
    let sets = check_source(dir.path(), &spine(), "sums");
    let got = spend_a(&sets);

    // A naive f64 prefix sum over a's completed orders by day, differenced at the
    // window's edges (D3 - 90, D3], gives another value: the test can tell them apart.
    let orders = read(&dir.path().join("orders.parquet"))
        .lazy()
        .filter(
            col("customer_id")
                .eq(lit("a"))
                .and(col("status").eq(lit("completed"))),
        )
        .select([
            (col("order_ts").cast(DataType::Int64) / lit(86_400_000_000i64)).alias("day"),
            col("amount"),
        ])
        .sort(["day"], Default::default())
        .collect()
        .expect("a's orders");
    let days: Vec<i64> = orders
        .column("day")
        .expect("day")
        .i64()
        .expect("i64")
        .into_no_null_iter()
        .collect();
    let amounts: Vec<f64> = orders
        .column("amount")
        .expect("amount")
        .f64()
        .expect("f64")
        .into_no_null_iter()
        .collect();
    let mut prefix = vec![0.0f64];
    for x in &amounts {
        prefix.push(prefix.last().copied().unwrap_or(0.0) + x);
    }
    let lo = days.partition_point(|&t| t <= i64::from(d3) - 90);
    let hi = days.partition_point(|&t| t <= i64::from(d3));
    let naive = prefix[hi] - prefix[lo];
    assert!(
        (naive - got).abs() < 1e-3,
        "same sum up to rounding: {naive} vs {got}"
    );
    assert_ne!(
        naive.to_bits(),
        got.to_bits(),
        "a naive prefix sum differs: {naive} vs {got}"
    );

    // The sweep computed the sums itself (no fallback).
    let sp = dir.path().join("spine.parquet");
    write_spine(&sp, &spine());
    let (_, log) = cli(
        "churn_signals",
        dir.path(),
        &sp,
        &dir.path().join("on.parquet"),
        "on",
    );
    let f = orders_fallbacks(&log);
    assert!(
        !f.is_empty() && f.iter().all(|&n| n == 0),
        "no fallback: {f:?}\n{log}"
    );
}

#[test]
fn out_of_range_amounts_take_the_join_path_and_still_equal_snapshots() {
    let dir = tempfile::tempdir().expect("tmp");
    edge_source(dir.path());
    let d = dates();
    let mut extra = many_orders(d.d3);
    extra.push(("a", d.d3 - 2, 1e-20));
    extra.push(("c", d.d1 - 5, 2f64.powi(40)));
    add_orders(dir.path(), &extra);
    check_source(dir.path(), &spine(), "out of range");
    let sp = dir.path().join("spine.parquet");
    write_spine(&sp, &spine());
    let (_, log) = cli(
        "churn_signals",
        dir.path(),
        &sp,
        &dir.path().join("on.parquet"),
        "on",
    );
    let f = orders_fallbacks(&log);
    assert!(
        f.iter().any(|&n| n > 0),
        "the orders sums fell back: {f:?}\n{log}"
    );
}
