//! Feature semantics against independent oracles, point-in-time guarantees, the
//! training-set/snapshot equivalence, bad input, definitions, and the offline store.

use std::path::{Path, PathBuf};
use std::process::Command;

use c360::features::{self, FeatureSet};
use c360::source::Source;
use chrono::NaiveDate;
use polars::prelude::*;

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn edge() -> PathBuf {
    repo().join("tests/fixtures/edge")
}

pub fn set(name: &str) -> FeatureSet {
    features::find_set(&repo().join("features"), name).expect("shipped set loads")
}

pub fn c360() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_c360"));
    c.env("C360_LOG", "warn").env_remove("C360_CONFIG");
    c
}

/// Asserts a command succeeded, showing its stderr when it did not.
pub fn assert_ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn date(s: &str) -> NaiveDate {
    s.parse().expect("date")
}

const DATES: [&str; 3] = ["2024-06-30", "2024-03-31", "2023-12-31"];

fn read_csv(path: &Path) -> DataFrame {
    CsvReadOptions::default()
        .with_has_header(true)
        .with_infer_schema_length(None)
        .with_schema_overwrite(Some(Arc::new(Schema::from_iter([Field::new(
            "customer_id".into(),
            DataType::String,
        )]))))
        .try_into_reader_with_file_path(Some(path.to_path_buf()))
        .expect("csv reader")
        .finish()
        .expect("csv")
}

fn snapshot(set_name: &str, source: &Path, d: &str) -> DataFrame {
    let s = set(set_name);
    let src = Source::open(&source.display().to_string()).expect("source");
    let loaded = features::load_tables(&s, &src, &[]).expect("tables load and pass the contract");
    features::snapshot(&s, &loaded, date(d)).expect("snapshot")
}

/// A cell as f64 (numbers and booleans) or string; None for null.
#[derive(Debug, PartialEq)]
enum Cell {
    Num(f64),
    Text(String),
}

fn cell(c: &Column, i: usize) -> Option<Cell> {
    let v = c.get(i).expect("row");
    match v {
        AnyValue::Null => None,
        AnyValue::Boolean(b) => Some(Cell::Num(if b { 1.0 } else { 0.0 })),
        AnyValue::String(s) => Some(match s {
            "true" => Cell::Num(1.0),
            "false" => Cell::Num(0.0),
            _ => Cell::Text(s.to_string()),
        }),
        AnyValue::StringOwned(s) => Some(Cell::Text(s.to_string())),
        AnyValue::Date(d) => Some(Cell::Text(
            c360::names::AsOf::from_day_number(d).date().to_string(),
        )),
        other => Some(Cell::Num(
            other
                .extract::<f64>()
                .unwrap_or_else(|| panic!("not a number: {other:?}")),
        )),
    }
}

/// Asserts two frames hold the same columns and values (numbers to `tol` relative),
/// rows matched by position after sorting both by customer_id.
fn assert_same(got: &DataFrame, exp: &DataFrame, tol: f64, what: &str) {
    let names = |df: &DataFrame| -> Vec<String> {
        df.get_column_names()
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    assert_eq!(names(got), names(exp), "{what}: columns");
    assert_eq!(got.height(), exp.height(), "{what}: rows");
    let sort = |df: &DataFrame| {
        df.sort(["customer_id"], SortMultipleOptions::default())
            .expect("sort")
    };
    let (g, e) = (sort(got), sort(exp));
    let mut mismatches = Vec::new();
    for name in names(exp) {
        let (gc, ec) = (g.column(&name).expect("col"), e.column(&name).expect("col"));
        for i in 0..g.height() {
            let (a, b) = (cell(gc, i), cell(ec, i));
            let same = match (&a, &b) {
                (Some(Cell::Num(x)), Some(Cell::Num(y))) => {
                    (x - y).abs() <= tol * y.abs().max(1.0) || (x.is_nan() && y.is_nan())
                }
                _ => a == b,
            };
            if !same {
                mismatches.push(format!(
                    "{name} of {}: got {a:?}, expected {b:?}",
                    g.column("customer_id").expect("id").get(i).expect("id")
                ));
            }
        }
    }
    assert!(
        mismatches.is_empty(),
        "{what}: {} mismatches, first: {:#?}",
        mismatches.len(),
        &mismatches[..mismatches.len().min(10)]
    );
}

#[test]
fn rfm_and_churn_signals_match_lifetimes_and_duckdb_on_edge_cases() {
    for d in DATES {
        for s in ["rfm", "churn_signals"] {
            let got = snapshot(s, &edge(), d);
            let exp = read_csv(&edge().join(format!("expected/{s}_{d}.csv")));
            assert!(
                exp.height() > 300,
                "fixture has the edge and random customers"
            );
            assert_same(&got, &exp, 1e-9, &format!("{s} as of {d}"));
        }
    }
}

#[test]
fn btyd_summary_matches_lifetimes_on_cdnow() {
    let dir = repo().join("tests/fixtures/cdnow");
    let got = snapshot("rfm", &dir, "1998-06-30")
        .select(["customer_id", "frequency", "recency", "T", "monetary_value"])
        .expect("btyd columns");
    let exp = read_csv(&dir.join("expected_btyd_1998-06-30.csv"));
    assert!(exp.height() > 2000, "CDNOW has 2357 customers");
    assert_same(&got, &exp, 1e-9, "BTYD on CDNOW");
}

/// A spine of every snapshot customer at each date, shuffled.
fn spine_for(source: &Path) -> DataFrame {
    let mut parts = Vec::new();
    for d in DATES {
        let snap = snapshot("churn_signals", source, d);
        let ids = snap.column("customer_id").expect("ids").clone();
        let n = ids.len();
        let dates = Column::new("as_of".into(), vec![d.to_string(); n]);
        parts.push(DataFrame::new_infer_height(vec![ids, dates]).expect("spine part"));
    }
    let mut spine = parts.remove(0);
    for p in parts {
        spine.vstack_mut(&p).expect("stack");
    }
    // Deterministic shuffle: order by a hash of the row.
    let n = spine.height();
    let order: Vec<u32> = (0..n as u32)
        .map(|i| i.wrapping_mul(2_654_435_761) % 1_000_003)
        .collect();
    spine
        .with_column(Column::new("k".into(), order))
        .expect("k")
        .sort(["k"], SortMultipleOptions::default())
        .expect("shuffle")
        .drop("k")
        .expect("drop")
}

#[test]
fn training_set_equals_single_date_snapshots_row_for_row() {
    let dir = tempfile::tempdir().expect("tmp");
    let spine_path = dir.path().join("spine.csv");
    let mut spine = spine_for(&edge());
    CsvWriter::new(std::fs::File::create(&spine_path).expect("spine"))
        .finish(&mut spine)
        .expect("write spine");
    for s in ["rfm", "churn_signals"] {
        let fs = set(s);
        let src = Source::open(&edge().display().to_string()).expect("source");
        let loaded = features::load_tables(&fs, &src, &[]).expect("load");
        let spine_df = features::read_spine(&spine_path).expect("spine reads");
        let ts = features::training_set(&fs, &loaded, &spine_df, "spine.csv", Some("churned_90d"))
            .expect("training set");
        assert_eq!(ts.height(), spine.height(), "{s}: one row per spine row");
        // Row order is the spine's.
        let ids: Vec<_> = ts
            .column("customer_id")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .map(|v| v.unwrap_or_default().to_string())
            .collect();
        let spine_ids: Vec<_> = spine
            .column("customer_id")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .map(|v| v.unwrap_or_default().to_string())
            .collect();
        assert_eq!(ids, spine_ids, "{s}: spine order kept");
        for d in DATES {
            let part = ts
                .clone()
                .lazy()
                .filter(col("as_of").eq(lit(date(d))))
                .collect()
                .expect("filter");
            let labels = part
                .select(["customer_id", "as_of", "churned_90d"])
                .expect("labels");
            let feats = part.drop("churned_90d").expect("drop label");
            let snap = snapshot(s, &edge(), d);
            assert_same(&feats, &snap, 0.0, &format!("{s} training rows as of {d}"));
            let exp = read_csv(&edge().join(format!("expected/labels_{d}.csv")));
            assert_same(&labels, &exp, 0.0, &format!("churned_90d as of {d}"));
        }
    }
}

/// Copies the edge source, rewriting every event dated after `d`.
fn perturb_after(d: &str, out: &Path) {
    let cut = date(d) + chrono::Duration::days(1); // first day after D
    let ts_after = |c: &str| col(c).cast(DataType::Date).gt_eq(lit(cut));
    let read = |t: &str| {
        LazyFrame::scan_parquet(
            PlRefPath::new(edge().join(format!("{t}.parquet")).display().to_string()),
            Default::default(),
        )
        .expect("scan")
    };
    let write = |t: &str, mut df: DataFrame| {
        ParquetWriter::new(
            std::fs::File::create(out.join(format!("{t}.parquet"))).expect("create"),
        )
        .finish(&mut df)
        .expect("write");
    };
    std::fs::copy(
        edge().join("customers.parquet"),
        out.join("customers.parquet"),
    )
    .expect("copy");
    let after = ts_after("order_ts");
    let orders = read("orders")
        .with_columns([
            when(after.clone())
                .then(col("amount") * lit(7.0) + lit(1.0))
                .otherwise(col("amount"))
                .alias("amount"),
            when(after.clone())
                .then(lit("completed"))
                .otherwise(col("status"))
                .alias("status"),
        ])
        .collect()
        .expect("orders");
    write("orders", orders);
    let after = ts_after("event_ts");
    let inter = read("interactions")
        .with_columns([when(after)
            .then(lit("unsubscribe"))
            .otherwise(col("event_type"))
            .alias("event_type")])
        .collect()
        .expect("interactions");
    write("interactions", inter);
    let tickets = read("support_tickets")
        .with_columns([when(ts_after("resolved_ts"))
            .then(lit(1i64))
            .otherwise(col("csat"))
            .alias("csat")])
        .collect()
        .expect("tickets");
    write("support_tickets", tickets);
}

#[test]
fn events_after_the_as_of_date_change_no_feature() {
    let d = DATES[0];
    let dir = tempfile::tempdir().expect("tmp");
    perturb_after(d, dir.path());
    for s in ["rfm", "churn_signals"] {
        let before = snapshot(s, &edge(), d);
        let after = snapshot(s, dir.path(), d);
        assert_same(
            &after,
            &before,
            0.0,
            &format!("{s} with the future rewritten"),
        );
        // Sanity: the rewrite did change something a later date sees.
        let later_a = snapshot(s, dir.path(), "2024-12-31");
        let later_b = snapshot(s, &edge(), "2024-12-31");
        assert_ne!(
            later_a, later_b,
            "{s}: the perturbation must be visible after D"
        );
    }
}

#[test]
fn csv_sources_hive_partitioned_folders_and_integer_ids_give_the_same_features() {
    let dir = tempfile::tempdir().expect("tmp");
    let out = dir.path();
    let read = |t: &str| {
        ParquetReader::new(std::fs::File::open(edge().join(format!("{t}.parquet"))).expect("open"))
            .finish()
            .expect("read")
    };
    // customers as CSV with the same ids.
    let mut customers = read("customers");
    CsvWriter::new(std::fs::File::create(out.join("customers.csv")).expect("c"))
        .finish(&mut customers)
        .expect("csv");
    // orders Hive-partitioned by month.
    let orders = read("orders")
        .lazy()
        .with_column(col("order_ts").dt().strftime("%Y-%m").alias("month"))
        .collect()
        .expect("month");
    let months = orders.column("month").unwrap().unique().unwrap();
    for m in months.str().unwrap().iter().flatten() {
        let mut part = orders
            .clone()
            .lazy()
            .filter(col("month").eq(lit(m)))
            .drop(cols(["month"]))
            .collect()
            .unwrap();
        let p = out.join(format!("orders/order_month={m}"));
        std::fs::create_dir_all(&p).unwrap();
        ParquetWriter::new(std::fs::File::create(p.join("part-0.parquet")).unwrap())
            .finish(&mut part)
            .unwrap();
    }
    std::fs::write(out.join("orders/_SUCCESS"), b"").unwrap();
    for t in ["interactions", "support_tickets"] {
        std::fs::copy(
            edge().join(format!("{t}.parquet")),
            out.join(format!("{t}.parquet")),
        )
        .unwrap();
    }
    for s in ["rfm", "churn_signals"] {
        let a = snapshot(s, out, DATES[0]);
        let b = snapshot(s, &edge(), DATES[0]);
        assert_same(&a, &b, 0.0, &format!("{s} from CSV + partitioned folder"));
    }

    // Integer ids: customers C0001 -> 1 in every table.
    let dir2 = tempfile::tempdir().expect("tmp");
    let strip = |c: &str| {
        col(c)
            .str()
            .strip_prefix(lit("C"))
            .cast(DataType::Int64)
            .alias(c)
    };
    for t in ["customers", "orders", "interactions", "support_tickets"] {
        let mut df = read(t)
            .lazy()
            .with_column(strip("customer_id"))
            .collect()
            .unwrap();
        ParquetWriter::new(
            std::fs::File::create(dir2.path().join(format!("{t}.parquet"))).unwrap(),
        )
        .finish(&mut df)
        .unwrap();
    }
    let a = snapshot("churn_signals", dir2.path(), DATES[0]);
    let b = snapshot("churn_signals", &edge(), DATES[0])
        .lazy()
        .with_column(strip("customer_id").cast(DataType::String))
        .collect()
        .unwrap();
    assert_same(&a, &b, 0.0, "integer ids cast to strings");
}

/// Event tables are read in checked batches with fixed-value text as Enums and ids keyed
/// by their views (short) or text (long); CSV takes the whole-table path with plain text.
/// Both give the same features, text compares as text, and float sums are exact.
#[test]
fn batched_enum_reads_equal_the_whole_table_path_for_long_ids_and_text_comparisons() {
    let defs = tempfile::tempdir().expect("tmp");
    std::fs::write(
        defs.path().join("textual.toml"),
        r#"name = "textual"
version = 1
owner = "tests"
description = "text comparisons, text min/max, distinct days, sums"

[[feature]]
name = "after_cancelled"
table = "orders"
agg = "count"
where = "status > 'cancelled'"

[[feature]]
name = "max_status"
table = "orders"
agg = "max"
column = "status"

[[feature]]
name = "min_event"
table = "interactions"
agg = "min"
column = "event_type"
window_days = 365

[[feature]]
name = "web_or_app_90d"
table = "interactions"
agg = "count"
where = "event_type in ('web_visit', 'app_login')"
window_days = 90

[[feature]]
name = "order_days"
table = "orders"
agg = "distinct_count"
column = "days_ago"
where = "status != 'cancelled'"

[[feature]]
name = "spend"
table = "orders"
agg = "sum"
column = "amount"
where = "status == 'completed'"

[[feature]]
name = "mean_spend_365d"
table = "orders"
agg = "mean"
column = "amount"
window_days = 365
"#,
    )
    .expect("write set");
    let s = features::find_set(defs.path(), "textual").expect("set loads");
    let read = |t: &str| {
        ParquetReader::new(std::fs::File::open(edge().join(format!("{t}.parquet"))).expect("open"))
            .finish()
            .expect("read")
    };
    // Ids of 21 bytes: longer than a view holds inline.
    let long = |c: &str| (lit("customer-0000000-").cast(DataType::String) + col(c)).alias(c);
    let (a, b) = (
        tempfile::tempdir().expect("tmp"),
        tempfile::tempdir().expect("tmp"),
    );
    for t in ["customers", "orders", "interactions", "support_tickets"] {
        let mut df = read(t)
            .lazy()
            .with_column(long("customer_id"))
            .collect()
            .unwrap();
        let pq = |dir: &Path, df: &mut DataFrame| {
            ParquetWriter::new(std::fs::File::create(dir.join(format!("{t}.parquet"))).unwrap())
                .finish(df)
                .unwrap();
        };
        pq(a.path(), &mut df);
        if t == "orders" || t == "interactions" {
            CsvWriter::new(std::fs::File::create(b.path().join(format!("{t}.csv"))).unwrap())
                .finish(&mut df)
                .unwrap();
        } else {
            pq(b.path(), &mut df);
        }
    }
    let build = |dir: &Path| {
        let src = Source::open(&dir.display().to_string()).expect("source");
        let loaded = features::load_tables(&s, &src, &[]).expect("tables pass the contract");
        features::snapshot(&s, &loaded, date(DATES[0])).expect("snapshot")
    };
    let (batched, whole) = (build(a.path()), build(b.path()));
    assert_same(
        &batched,
        &whole,
        0.0,
        "batched (Enum) vs whole-table (text) reads",
    );

    // Text order, not the contract's order of values: "returned" > "completed" > "cancelled".
    let orders = read("orders")
        .lazy()
        .with_column(long("customer_id"))
        .filter(col("order_ts").cast(DataType::Int64).lt(lit(
            (c360::names::AsOf::from(date(DATES[0])).day_number() as i64 + 1) * 86_400_000_000,
        )))
        .group_by([col("customer_id")])
        .agg([
            col("status").max().alias("max_status"),
            col("status")
                .gt(lit("cancelled"))
                .sum()
                .alias("after_cancelled"),
        ])
        .collect()
        .unwrap();
    let got = batched
        .lazy()
        .join(
            orders.lazy(),
            [col("customer_id")],
            [col("customer_id")],
            JoinArgs::new(JoinType::Inner),
        )
        .collect()
        .unwrap();
    assert!(got.height() > 10, "customers with orders: {}", got.height());
    let same = |a: &str, b: &str| {
        let s = |n: &str| {
            got.column(n)
                .unwrap()
                .as_materialized_series()
                .cast(&DataType::String)
                .unwrap()
        };
        s(a).equals_missing(&s(b))
    };
    assert!(same("max_status", "max_status_right"), "{got}");
    assert!(
        same("after_cancelled", "after_cancelled_right"),
        "{}",
        got.select(["customer_id", "after_cancelled", "after_cancelled_right"])
            .unwrap()
    );
    assert!(
        got.column("max_status")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .any(|v| v == Some("returned")),
        "some customer's lexical max is 'returned'"
    );
}

// ---------------------------------------------------------------- bad input

/// Writes the edge source with one table replaced by `f(table)`.
fn broken_source(table: &str, f: impl FnOnce(LazyFrame) -> LazyFrame) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    let mut f = Some(f);
    for t in ["customers", "orders", "interactions", "support_tickets"] {
        let src = edge().join(format!("{t}.parquet"));
        if t == table {
            let lf = LazyFrame::scan_parquet(
                PlRefPath::new(src.display().to_string()),
                Default::default(),
            )
            .unwrap();
            let f = f.take().expect("one table is broken");
            let mut df = f(lf).collect().expect("broken table");
            ParquetWriter::new(
                std::fs::File::create(dir.path().join(format!("{t}.parquet"))).unwrap(),
            )
            .finish(&mut df)
            .unwrap();
        } else {
            std::fs::copy(&src, dir.path().join(format!("{t}.parquet"))).unwrap();
        }
    }
    dir
}

/// Runs `features build` and asserts exit code 4, the message parts, and no commit.
fn assert_rejected(source: &Path, set_name: &str, needles: &[&str]) {
    let store = tempfile::tempdir().expect("store");
    let out = c360()
        .args([
            "features", "build", set_name, "--as-of", DATES[0], "--source",
        ])
        .arg(source)
        .arg("--store")
        .arg(store.path())
        .output()
        .expect("run c360");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(4),
        "exit code 4 for bad input; stderr: {stderr}"
    );
    for n in needles {
        assert!(stderr.contains(n), "error should mention {n:?}: {stderr}");
    }
    assert!(!stderr.contains("panicked"), "no panic: {stderr}");
    let committed = walk(store.path())
        .into_iter()
        .any(|p| p.ends_with("_manifest.json"));
    assert!(!committed, "nothing committed after bad input");
}

fn walk(p: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let path = e.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

#[test]
fn each_contract_violation_is_named_and_publishes_nothing() {
    type Case = (
        &'static str,
        &'static str,
        Box<dyn FnOnce(LazyFrame) -> LazyFrame>,
        Vec<&'static str>,
    );
    // Sets `column` of the table's first row (found by its `key` value) to `value`.
    fn set_first(
        key: &'static str,
        column: &'static str,
        value: Expr,
    ) -> Box<dyn FnOnce(LazyFrame) -> LazyFrame> {
        Box::new(move |lf| {
            lf.with_column(
                when(col(key).eq(col(key).first()))
                    .then(value)
                    .otherwise(col(column))
                    .alias(column),
            )
        })
    }
    let cases: Vec<Case> = vec![
        (
            "orders",
            "rfm",
            Box::new(|lf| lf.drop(cols(["amount"]))),
            vec!["orders", "missing column amount"],
        ),
        (
            "orders",
            "rfm",
            Box::new(|lf| lf.with_column(col("amount").cast(DataType::String))),
            vec!["orders", "amount", "cannot be read as Float64"],
        ),
        (
            "support_tickets",
            "churn_signals",
            set_first("ticket_id", "csat", lit(4.5)),
            vec!["support_tickets", "csat", "not whole numbers", "4.5"],
        ),
        (
            "support_tickets",
            "churn_signals",
            set_first("ticket_id", "csat", lit(7i64)),
            vec!["support_tickets", "csat", "outside 1..5"],
        ),
        (
            "customers",
            "rfm",
            set_first(
                "customer_id",
                "customer_id",
                lit(NULL).cast(DataType::String),
            ),
            vec!["customers", "customer_id", "null"],
        ),
        (
            "orders",
            "rfm",
            Box::new(|lf| {
                let dup = lf.clone().limit(1);
                concat([lf, dup], UnionArgs::default()).unwrap()
            }),
            vec!["orders", "order_id", "unique"],
        ),
        (
            "orders",
            "rfm",
            set_first("order_id", "amount", lit(-5.0)),
            vec!["orders", "amount", "negative, NaN or infinite", "-5"],
        ),
        (
            "orders",
            "rfm",
            set_first("order_id", "amount", lit(f64::NAN)),
            vec!["orders", "amount", "negative, NaN or infinite"],
        ),
        (
            "orders",
            "rfm",
            set_first("order_id", "amount", lit(f64::INFINITY)),
            vec!["orders", "amount", "negative, NaN or infinite"],
        ),
        (
            "orders",
            "rfm",
            set_first("order_id", "status", lit("shipped")),
            vec![
                "orders",
                "status",
                "completed, returned, cancelled",
                "shipped",
            ],
        ),
        (
            "interactions",
            "churn_signals",
            Box::new(|lf| {
                lf.with_column(
                    when(col("event_type").eq(lit("app_login")))
                        .then(lit("page_view"))
                        .otherwise(col("event_type"))
                        .alias("event_type"),
                )
            }),
            vec!["interactions", "event_type", "page_view"],
        ),
        (
            "orders",
            "rfm",
            set_first("order_id", "customer_id", lit("C9999")),
            vec!["orders", "customer_id", "missing from customers", "C9999"],
        ),
        (
            "interactions",
            "churn_signals",
            Box::new(|lf| lf.with_column(col("event_ts").cast(DataType::Int64).alias("event_ts"))),
            vec!["interactions", "event_ts", "cannot be read as Datetime"],
        ),
    ];
    for (table, s, f, needles) in cases {
        let dir = broken_source(table, f);
        assert_rejected(dir.path(), s, &needles);
    }
}

#[test]
fn missing_tables_empty_folders_type_disagreements_and_truncated_files_are_named() {
    // Missing table.
    let dir = broken_source("orders", |lf| lf);
    std::fs::remove_file(dir.path().join("orders.parquet")).unwrap();
    assert_rejected(dir.path(), "rfm", &["table orders not found"]);
    // A partitioned folder with no files.
    std::fs::create_dir_all(dir.path().join("orders/order_month=2024-01")).unwrap();
    assert_rejected(dir.path(), "rfm", &["orders", "no Parquet or CSV files"]);
    // Files that disagree on a column's type.
    let orders = ParquetReader::new(std::fs::File::open(edge().join("orders.parquet")).unwrap())
        .finish()
        .unwrap();
    let mut a = orders.slice(0, 100);
    let mut b = orders
        .slice(100, 100)
        .lazy()
        .with_column(col("amount").cast(DataType::Float32))
        .collect()
        .unwrap();
    let p = dir.path().join("orders/order_month=2024-01");
    ParquetWriter::new(std::fs::File::create(p.join("a.parquet")).unwrap())
        .finish(&mut a)
        .unwrap();
    ParquetWriter::new(std::fs::File::create(p.join("b.parquet")).unwrap())
        .finish(&mut b)
        .unwrap();
    assert_rejected(dir.path(), "rfm", &["orders", "disagree", "amount"]);
    // A truncated file.
    std::fs::remove_dir_all(dir.path().join("orders")).unwrap();
    let bytes = std::fs::read(edge().join("orders.parquet")).unwrap();
    std::fs::write(dir.path().join("orders.parquet"), &bytes[..bytes.len() / 2]).unwrap();
    assert_rejected(dir.path(), "rfm", &["orders", "cannot read"]);
}

#[test]
fn label_before_the_data_reaches_the_horizon_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let spine = dir.path().join("spine.csv");
    std::fs::write(&spine, "customer_id,as_of\nC0001,2024-11-30\n").unwrap();
    let out = c360()
        .args([
            "features",
            "training-set",
            "rfm",
            "--label",
            "churned_90d",
            "--spine",
        ])
        .arg(&spine)
        .arg("--out")
        .arg(dir.path().join("t.parquet"))
        .arg("--source")
        .arg(edge())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Exit 2, like an --as-of past the data (was 4): the sources cannot answer the question.
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("churned_90d") && stderr.contains("needs data up to 2025-02-28"),
        "{stderr}"
    );
    assert!(!dir.path().join("t.parquet").exists());
    // Unknown customers in a spine are named too.
    std::fs::write(
        &spine,
        "customer_id,as_of\nC0001,2024-03-31\nNOPE,2024-03-31\n",
    )
    .unwrap();
    let out = c360()
        .args(["features", "training-set", "rfm", "--spine"])
        .arg(&spine)
        .arg("--out")
        .arg(dir.path().join("t.parquet"))
        .arg("--source")
        .arg(edge())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("customer_id=\"NOPE\""), "{stderr}");
}

/// Spine faults of every kind are refused before any work, naming the row, and leave no
/// output behind: dates other than YYYY-MM-DD (a day/month order would be a guess, a zoned
/// timestamp another day), an empty spine (rfm's population scores once crashed on it), an
/// output name without a .parquet/.csv extension. A well-formed spine still works.
#[test]
fn spine_faults_are_refused_naming_the_row() {
    let dir = tempfile::tempdir().unwrap();
    let spine = dir.path().join("spine.csv");
    let out_file = dir.path().join("t.parquet");
    let run = |set: &str, out: &Path| {
        c360()
            .args(["features", "training-set", set, "--spine"])
            .arg(&spine)
            .arg("--out")
            .arg(out)
            .arg("--source")
            .arg(edge())
            .output()
            .unwrap()
    };
    let cases: [(&str, &str, &str); 5] = [
        (
            "C0001,2024-03-31\nC0001,30/04/2024\n",
            "rfm",
            r#"first at row 2: customer_id="C0001", as_of="30/04/2024""#,
        ),
        (
            "C0001,04/05/2024\n",
            "churn_signals",
            r#"first at row 1: customer_id="C0001", as_of="04/05/2024""#,
        ),
        (
            "C0001,2024-04-30T23:00:00-05:00\n",
            "rfm",
            r#"as_of="2024-04-30T23:00:00-05:00""#,
        ),
        ("", "rfm", "has no rows"),
        ("", "churn_signals", "has no rows"),
    ];
    for (rows, set, want) in cases {
        std::fs::write(&spine, format!("customer_id,as_of\n{rows}")).unwrap();
        let out = run(set, &out_file);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{set} {rows:?}: {stderr}");
        assert!(
            stderr.contains(want),
            "{set} {rows:?}: want {want:?} in {stderr}"
        );
        assert!(!stderr.contains("computing failed"), "{stderr}");
        assert!(!out_file.exists(), "{set} {rows:?}: output left behind");
    }
    std::fs::write(&spine, "customer_id,as_of\nC0001,2024-03-31\n").unwrap();
    let txt = dir.path().join("t.txt");
    let out = run("rfm", &txt);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("name a .parquet or .csv file"), "{stderr}");
    assert!(!txt.exists());
    let out = run("rfm", &out_file);
    assert_ok(&out);
    let df = ParquetReader::new(std::fs::File::open(&out_file).unwrap())
        .finish()
        .unwrap();
    assert_eq!(df.height(), 1);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

// ---------------------------------------------------------------- definitions

fn validate_with(files: &[(&str, &str)]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("features")).unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join("features").join(name), text).unwrap();
    }
    let out = c360()
        .arg("validate")
        .current_dir(dir.path())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout),
    )
}

#[test]
fn malformed_definitions_name_file_key_and_reason() {
    let head = "name = \"s\"\nversion = 1\n";
    let cases: Vec<(String, Vec<&str>)> = vec![
        ("name = \"s\"\nversion = \n".into(), vec!["s.toml", "line 2"]),
        (format!("{head}colour = \"red\"\n"), vec!["s.toml", "unknown field `colour`"]),
        (
            format!("{head}[[feature]]\nname = \"a\"\ntable = \"orders\"\nagg = \"sum\"\ncolumn = \"price\"\n"),
            vec!["s.toml", "feature[0] (a).column", "unknown column price in table orders"],
        ),
        (
            format!("{head}[[feature]]\nname = \"a\"\nexpr = \"b + 1\"\n"),
            vec!["feature[0] (a)", "unknown feature b"],
        ),
        (
            format!("{head}[[feature]]\nname = \"a\"\nexpr = \"b + 1\"\n[[feature]]\nname = \"b\"\nexpr = \"a * 2\"\n"),
            vec!["dependency cycle: a -> b -> a"],
        ),
        (
            format!("{head}[[feature]]\nname = \"a\"\ntable = \"orders\"\nagg = \"count\"\nwindow_days = 0\n"),
            vec!["feature[0] (a).window_days", "at least 1 day"],
        ),
        (
            format!("{head}[[feature]]\nname = \"a\"\ntable = \"orders\"\nagg = \"sum\"\ncolumn = \"status\"\n"),
            vec!["feature[0] (a).column", "needs a number, got string"],
        ),
        (
            format!("{head}[[feature]]\nname = \"a\"\ntable = \"orders\"\nagg = \"count\"\nwhere = \"status + 1 > 0\"\n"),
            vec!["feature[0] (a).where", "'+' needs numbers"],
        ),
        (
            format!("{head}[[feature]]\nname = \"a\"\ntable = \"orders\"\nagg = \"count\"\nwhere = \"status == \"\n"),
            vec!["feature[0] (a).where", "unexpected end of expression"],
        ),
        (
            format!("{head}[[feature]]\nname = \"a\"\ntable = \"order\"\nagg = \"count\"\n"),
            vec!["feature[0] (a).table", "unknown table \"order\""],
        ),
        (
            format!("{head}[[feature]]\nname = \"a\"\ntable = \"orders\"\nagg = \"median\"\n"),
            vec!["feature[0] (a).agg", "unknown aggregation \"median\""],
        ),
    ];
    for (text, needles) in cases {
        let (code, out) = validate_with(&[("s.toml", &text)]);
        assert_eq!(code, 3, "exit 3 for invalid definitions: {out}");
        for n in needles {
            assert!(out.contains(n), "expected {n:?} in: {out}");
        }
    }
    // Every error is reported, not only the first.
    let text = format!(
        "{head}[[feature]]\nname = \"a\"\nexpr = \"x\"\n[[feature]]\nname = \"b\"\ntable = \"orders\"\nagg = \"count\"\nwindow_days = 0\n"
    );
    let (code, out) = validate_with(&[("s.toml", &text)]);
    assert_eq!(code, 3);
    assert!(
        out.contains("2 problem(s)")
            && out.contains("unknown feature x")
            && out.contains("window_days"),
        "{out}"
    );
    // The shipped definitions validate.
    let out = c360().arg("validate").current_dir(repo()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_ok(&out);
    assert!(
        text.contains("churn_signals") && text.contains("rfm"),
        "{text}"
    );
}

// ---------------------------------------------------------------- offline store

fn build(store: &Path, s: &str, extra: &[&str]) -> (i32, String) {
    let out = c360()
        .args(["features", "build", s, "--as-of", DATES[0], "--source"])
        .arg(edge())
        .arg("--store")
        .arg(store)
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

fn manifest(store: &Path, s: &str) -> serde_json::Value {
    let p = store.join(format!("features/{s}/v1/as_of={}/_manifest.json", DATES[0]));
    serde_json::from_slice(&std::fs::read(p).expect("manifest")).expect("json")
}

#[test]
fn build_writes_the_layout_manifest_last_and_rebuilds_idempotently() {
    let store = tempfile::tempdir().unwrap();
    let (code, out) = build(store.path(), "churn_signals", &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("372 rows built"), "{out}");
    let m = manifest(store.path(), "churn_signals");
    assert_eq!(m["rows"], 372);
    // One part, under the build's own attempt directory, with its size and checksum.
    let files = m["files"].as_array().unwrap();
    assert_eq!(files.len(), 1, "{m}");
    let file = files[0].as_str().unwrap().to_string();
    assert!(
        file.starts_with(&format!("run={}-", m["run_id"].as_str().unwrap()))
            && file.ends_with("/part-0.parquet"),
        "{file}"
    );
    assert_eq!(
        m["file_checks"][&file]["sha256"].as_str().unwrap().len(),
        64
    );
    assert_eq!(m["as_of"], DATES[0]);
    assert!(m["definition_hash"]
        .as_str()
        .unwrap()
        .starts_with("sha256:"));
    for t in ["customers", "orders", "interactions", "support_tickets"] {
        assert!(
            m["source_fingerprints"][t]
                .as_str()
                .unwrap()
                .starts_with("sha256:"),
            "{t}"
        );
    }
    let schema: Vec<String> = m["schema"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(schema.len(), 22);
    assert!(
        !schema.iter().any(|c| c.starts_with('_')),
        "hidden features are not stored"
    );
    let part = store.path().join(format!(
        "features/churn_signals/v1/as_of={}/{file}",
        DATES[0]
    ));
    let df = ParquetReader::new(std::fs::File::open(&part).unwrap())
        .finish()
        .unwrap();
    let exp = read_csv(&edge().join(format!("expected/churn_signals_{}.csv", DATES[0])));
    assert_same(&df, &exp, 1e-9, "stored snapshot");

    // Same definition and source: reused, untouched.
    let run_id = m["run_id"].clone();
    let (code, out) = build(store.path(), "churn_signals", &[]);
    assert_eq!(code, 0);
    assert!(out.contains("already committed"), "{out}");
    assert_eq!(manifest(store.path(), "churn_signals")["run_id"], run_id);
    // Forced: rebuilt with identical content.
    let (code, _) = build(store.path(), "churn_signals", &["--force"]);
    assert_eq!(code, 0);
    let m2 = manifest(store.path(), "churn_signals");
    assert_ne!(m2["run_id"], run_id);
    let part2 = store.path().join(format!(
        "features/churn_signals/v1/as_of={}/{}",
        DATES[0],
        m2["files"][0].as_str().unwrap()
    ));
    assert_ne!(part2, part, "a rebuild never rewrites a committed location");
    let df2 = ParquetReader::new(std::fs::File::open(&part2).unwrap())
        .finish()
        .unwrap();
    assert!(df.equals_missing(&df2), "rebuild gives identical rows");
}

#[test]
fn a_build_killed_at_any_moment_leaves_no_committed_partial_partition() {
    // A source big enough for the build to take a while.
    let data = tempfile::tempdir().unwrap();
    let out = c360()
        .args(["generate", "--customers", "20000", "--seed", "3", "--out"])
        .arg(data.path())
        .output()
        .unwrap();
    assert_ok(&out);
    let store = tempfile::tempdir().unwrap();
    let prefix = store
        .path()
        .join("features/churn_signals/v1/as_of=2024-06-30");
    let build = || {
        let mut c = c360();
        c.args([
            "features",
            "build",
            "churn_signals",
            "--as-of",
            "2024-06-30",
            "--force",
            "--source",
        ])
        .arg(data.path())
        .arg("--store")
        .arg(store.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
        c
    };
    // Time one whole build, then kill builds at moments spread over that span and a bit beyond.
    let t0 = std::time::Instant::now();
    assert!(build().status().unwrap().success());
    let full = t0.elapsed();
    let mut outcomes = (0, 0);
    for i in 0..10u32 {
        let mut child = build().spawn().unwrap();
        std::thread::sleep(full.mul_f64(0.12 * i as f64 + 0.05));
        let _ = child.kill();
        let status = child.wait().unwrap();
        let m = prefix.join("_manifest.json");
        if m.exists() {
            // Committed: the manifest's files exist and hold exactly its rows.
            let m: serde_json::Value = serde_json::from_slice(&std::fs::read(&m).unwrap()).unwrap();
            let mut rows = 0;
            for f in m["files"].as_array().unwrap() {
                let df = ParquetReader::new(
                    std::fs::File::open(prefix.join(f.as_str().unwrap())).unwrap(),
                )
                .finish()
                .unwrap();
                rows += df.height();
            }
            assert_eq!(rows as u64, m["rows"].as_u64().unwrap());
            outcomes.0 += 1;
        } else {
            assert!(!status.success());
            outcomes.1 += 1;
        }
    }
    // The next build completes.
    let out = c360()
        .args([
            "features",
            "build",
            "churn_signals",
            "--as-of",
            "2024-06-30",
            "--source",
        ])
        .arg(data.path())
        .arg("--store")
        .arg(store.path())
        .output()
        .unwrap();
    assert_ok(&out);
    assert!(prefix.join("_manifest.json").exists());
    eprintln!(
        "kill test: {} runs committed before the kill, {} killed uncommitted",
        outcomes.0, outcomes.1
    );
}

#[test]
fn generator_is_deterministic_and_shows_churn_behaviour() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    for d in [a.path(), b.path()] {
        let out = c360()
            .args(["generate", "--customers", "3000", "--seed", "11", "--out"])
            .arg(d)
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    for t in ["customers", "orders", "interactions", "support_tickets"] {
        let x =
            ParquetReader::new(std::fs::File::open(a.path().join(format!("{t}.parquet"))).unwrap())
                .finish()
                .unwrap();
        let y =
            ParquetReader::new(std::fs::File::open(b.path().join(format!("{t}.parquet"))).unwrap())
                .finish()
                .unwrap();
        assert!(
            x.height() > 0 && x.equals_missing(&y),
            "{t} is deterministic"
        );
    }
    // The data passes the contract, and churners look different before they go.
    let s = set("churn_signals");
    let src = Source::open(&a.path().display().to_string()).unwrap();
    let loaded = features::load_tables(&s, &src, &[]).expect("generated data passes the contract");
    let spine = features::snapshot(&s, &loaded, date("2024-06-30"))
        .unwrap()
        .select(["customer_id", "as_of"])
        .unwrap()
        .lazy()
        .with_column(col("as_of").cast(DataType::Int32).alias("_as_of"))
        .select([col("customer_id"), col("_as_of")])
        .collect()
        .unwrap();
    let ts = features::training_set(&s, &loaded, &spine, "spine", Some("churned_90d")).unwrap();
    let stats = ts
        .lazy()
        .filter(col("orders_365d").gt(lit(0)))
        .group_by([col("churned_90d")])
        .agg([
            col("web_visits_30d")
                .cast(DataType::Float64)
                .mean()
                .alias("visits"),
            col("tickets_90d")
                .cast(DataType::Float64)
                .mean()
                .alias("tickets"),
            col("days_since_last_order")
                .cast(DataType::Float64)
                .mean()
                .alias("recency"),
            len().alias("n"),
        ])
        .sort(["churned_90d"], Default::default())
        .collect()
        .unwrap();
    let get = |c: &str, i: usize| {
        stats
            .column(c)
            .unwrap()
            .get(i)
            .unwrap()
            .extract::<f64>()
            .unwrap()
    };
    assert!(
        get("n", 0) > 100.0 && get("n", 1) > 100.0,
        "both classes present: {stats}"
    );
    assert!(
        get("visits", 1) < get("visits", 0),
        "churners visit less: {stats}"
    );
    assert!(
        get("tickets", 1) > get("tickets", 0),
        "churners open more tickets: {stats}"
    );
    assert!(
        get("recency", 1) > get("recency", 0),
        "churners ordered longer ago: {stats}"
    );
}
