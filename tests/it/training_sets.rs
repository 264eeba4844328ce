//! Training sets in customer batches: on generated data, a spine of 12 monthly dates
//! (every customer signed up by each date) plus customers at irregular dates; the set
//! computed in batches of 1, 17 and 1 000 customers equals the unbatched one, and both
//! equal the single-date snapshots and an independent label, cell for cell.

use std::path::Path;
use std::time::Instant;

use c360::features::{self, FeatureSet};
use c360::source::Source;
use chrono::{Datelike, Duration, NaiveDate};
use polars::prelude::*;

use crate::features::{assert_ok, c360, set};

const CUSTOMERS: &str = "1200";
const LABEL: &str = "churned_90d";

pub(crate) fn read(dir: &Path, t: &str) -> DataFrame {
    ParquetReader::new(std::fs::File::open(dir.join(format!("{t}.parquet"))).expect("open"))
        .finish()
        .expect("parquet")
}

/// A spine frame (`customer_id`, `_as_of` day numbers) from one id and one day per row.
pub(crate) fn spine_frame(ids: Vec<String>, days: Vec<i32>) -> DataFrame {
    DataFrame::new_infer_height(vec![
        Column::new("customer_id".into(), ids),
        Column::new("_as_of".into(), days),
    ])
    .expect("spine")
}

/// [`spine_frame`] from `(customer_id, day)` rows.
pub(crate) fn spine_rows(rows: &[(&str, i32)]) -> DataFrame {
    spine_frame(
        rows.iter().map(|r| r.0.to_string()).collect(),
        rows.iter().map(|r| r.1).collect(),
    )
}

pub(crate) fn epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")
}

/// A column of dates or datetimes as day numbers.
pub(crate) fn days(df: &DataFrame, c: &str) -> Vec<Option<i32>> {
    df.column(c)
        .expect("column")
        .cast(&DataType::Date)
        .expect("date")
        .cast(&DataType::Int32)
        .expect("days")
        .i32()
        .expect("i32")
        .iter()
        .collect()
}

pub(crate) fn strs(df: &DataFrame, c: &str) -> Vec<String> {
    df.column(c)
        .expect("column")
        .str()
        .expect("text")
        .iter()
        .map(|v| v.unwrap_or_default().to_string())
        .collect()
}

fn last_of_month(y: i32, m: u32) -> NaiveDate {
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    NaiveDate::from_ymd_opt(ny, nm, 1).expect("month") - Duration::days(1)
}

/// The data set, its 12 monthly dates (the last 90 days before the orders' last day)
/// and a spine: every customer signed up by each date, then a few customers at
/// irregular dates (mid-month, repeated, out of order).
struct Fixture {
    _dir: tempfile::TempDir,
    src: String,
    spine: DataFrame,
    dates: Vec<NaiveDate>,
    irregular: Vec<NaiveDate>,
    orders: DataFrame,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tmp");
    let out = c360()
        .args([
            "generate",
            "--customers",
            CUSTOMERS,
            "--seed",
            "18",
            "--out",
        ])
        .arg(dir.path())
        .output()
        .expect("generate");
    assert_ok(&out);
    let customers = read(dir.path(), "customers");
    let orders = read(dir.path(), "orders");
    let last = days(&orders, "order_ts")
        .into_iter()
        .flatten()
        .max()
        .expect("orders");
    let reach = epoch() + Duration::days(i64::from(last) - 90);
    let mut end = last_of_month(reach.year(), reach.month());
    if end > reach {
        let prev = reach.with_day(1).expect("day") - Duration::days(1);
        end = prev;
    }
    let mut dates = vec![end];
    while dates.len() < 12 {
        let d = *dates.last().expect("date");
        let first = d.with_day(1).expect("day") - Duration::days(1);
        dates.push(first);
    }
    dates.reverse();
    let ids = strs(&customers, "customer_id");
    let signup = days(&customers, "signup_ts");
    let day = |d: NaiveDate| (d - epoch()).num_days() as i32;
    let (mut sid, mut sday) = (Vec::new(), Vec::new());
    for d in &dates {
        for (id, s) in ids.iter().zip(&signup) {
            if s.is_some_and(|s| s <= day(*d)) {
                sid.push(id.clone());
                sday.push(day(*d));
            }
        }
    }
    // Irregular dates for a few customers signed up by the first of them.
    let irregular = vec![
        dates[5] + Duration::days(13),
        dates[11] - Duration::days(1),
        dates[2] + Duration::days(7),
    ];
    let mut picked = 0;
    for (id, s) in ids.iter().zip(&signup) {
        if picked == 9 {
            break;
        }
        if s.is_some_and(|s| s <= day(irregular[2])) {
            for d in &irregular {
                sid.push(id.clone());
                sday.push(day(*d));
            }
            // A repeated row.
            sid.push(id.clone());
            sday.push(day(irregular[0]));
            picked += 1;
        }
    }
    assert_eq!(picked, 9, "enough early customers");
    let spine = spine_frame(sid, sday);
    Fixture {
        src: dir.path().display().to_string(),
        _dir: dir,
        spine,
        dates,
        irregular,
        orders,
    }
}

/// The label from its definition, computed here: 1 when the customer has no completed
/// order dated in (D, D+90].
fn expected_label(orders: &DataFrame, id: &str, d: i32) -> i64 {
    let ids = strs(orders, "customer_id");
    let status = strs(orders, "status");
    let ts = days(orders, "order_ts");
    let bought =
        ids.iter().zip(&status).zip(&ts).any(|((i, s), t)| {
            i == id && s == "completed" && t.is_some_and(|t| t > d && t <= d + 90)
        });
    i64::from(!bought)
}

/// Asserts two frames equal cell for cell (names, types, nulls, values), naming the first
/// differing column and row.
pub(crate) fn assert_same(a: &DataFrame, b: &DataFrame, what: &str) {
    assert_eq!(a.shape(), b.shape(), "{what}: shape");
    assert_eq!(a.schema(), b.schema(), "{what}: columns and types");
    for (x, y) in a.columns().iter().zip(b.columns()) {
        let (x, y) = (x.as_materialized_series(), y.as_materialized_series());
        if x.equals_missing(y) {
            continue;
        }
        for i in 0..x.len() {
            let (u, v) = (x.get(i).expect("cell"), y.get(i).expect("cell"));
            // NaN == NaN for this comparison (equals_missing does not say so).
            let both_nan = matches!((&u, &v), (AnyValue::Float64(p), AnyValue::Float64(q)) if p.is_nan() && q.is_nan());
            assert!(
                u == v || both_nan,
                "{what}: column {} row {i}: {u} != {v}",
                x.name()
            );
        }
    }
}

fn run(
    fs: &FeatureSet,
    loaded: &features::Loaded,
    spine: &DataFrame,
    batch: Option<usize>,
) -> (DataFrame, f64) {
    let t0 = Instant::now();
    let df = features::training_set_batched(fs, loaded, spine, "spine", Some(LABEL), batch)
        .expect("training set");
    (df, t0.elapsed().as_secs_f64())
}

/// The training set's rows at `d` for the given customers (all when None), by customer,
/// without the label, and the same customers' rows of the snapshot at `d`.
fn rows_at(
    ts: &DataFrame,
    snap: &DataFrame,
    d: NaiveDate,
    only: Option<&[String]>,
) -> (DataFrame, DataFrame) {
    let pick = |df: &DataFrame| {
        let mut lf = df.clone().lazy().filter(col("as_of").eq(lit(d)));
        if let Some(ids) = only {
            let ids = Series::new("ids".into(), ids.to_vec());
            lf = lf.filter(col("customer_id").is_in(lit(ids).implode(false), false));
        }
        lf.unique_stable(None, UniqueKeepStrategy::First)
            .sort(["customer_id"], Default::default())
            .collect()
            .expect("rows")
    };
    let t = pick(&ts.drop(LABEL).expect("label"));
    (t, pick(snap))
}

fn check_set(name: &str, fx: &Fixture) {
    let fs = set(name);
    let src = Source::open(&fx.src).expect("source");
    let loaded = features::load_tables(&fs, &src, &[]).expect("generated data loads");
    let (whole, t_whole) = run(&fs, &loaded, &fx.spine, None);
    assert_eq!(
        whole.height(),
        fx.spine.height(),
        "{name}: one row per spine row"
    );
    assert_eq!(
        strs(&whole, "customer_id"),
        strs(&fx.spine, "customer_id"),
        "{name}: spine order"
    );
    let mut times = vec![("unbatched".to_string(), t_whole)];
    for b in [1000, 17] {
        let (df, t) = run(&fs, &loaded, &fx.spine, Some(b));
        assert_same(&df, &whole, &format!("{name}: batches of {b} vs unbatched"));
        times.push((format!("batches of {b}"), t));
    }
    // Batches of one customer, on the rows of the first 30 customers of the spine (and
    // every irregular row): thousands of one-customer plans would take minutes in debug.
    let firsts: Vec<String> = {
        let mut seen = Vec::new();
        for id in strs(&fx.spine, "customer_id") {
            if !seen.contains(&id) {
                seen.push(id);
            }
            if seen.len() == 30 {
                break;
            }
        }
        seen
    };
    let small = fx
        .spine
        .clone()
        .lazy()
        .filter(col("customer_id").is_in(
            lit(Series::new("ids".into(), firsts.clone())).implode(false),
            false,
        ))
        .collect()
        .expect("small spine");
    let (one, t_one) = run(&fs, &loaded, &small, Some(1));
    let (one_whole, _) = run(&fs, &loaded, &small, None);
    assert_same(
        &one,
        &one_whole,
        &format!("{name}: batches of 1 vs unbatched"),
    );
    times.push((format!("batches of 1 ({} rows)", small.height()), t_one));

    // Every row equals the single-date snapshot's, and the label its definition.
    let irregular = firsts_irregular(fx);
    let mut snaps = 0.0;
    for d in fx.dates.iter().chain(&fx.irregular) {
        let s0 = Instant::now();
        let snap = features::snapshot(&fs, &loaded, *d).expect("snapshot");
        snaps += s0.elapsed().as_secs_f64();
        let monthly = fx.dates.contains(d);
        let (t, s) = rows_at(
            &whole,
            &snap,
            *d,
            if monthly { None } else { Some(&irregular) },
        );
        assert!(t.height() > 0, "{name}: rows at {d}");
        assert_same(&t, &s, &format!("{name}: training rows vs snapshot at {d}"));
    }
    times.push((
        format!(
            "{} single-date snapshots",
            fx.dates.len() + fx.irregular.len()
        ),
        snaps,
    ));
    let ids = strs(&whole, "customer_id");
    let ds = days(&whole, "as_of");
    let labels: Vec<Option<i64>> = whole
        .column(LABEL)
        .expect("label")
        .i64()
        .expect("i64")
        .iter()
        .collect();
    let mut ones = 0;
    for (i, ((id, d), l)) in ids.iter().zip(&ds).zip(&labels).enumerate() {
        // Every 7th row: the label oracle is a scan of the orders.
        if i % 7 != 0 {
            continue;
        }
        let want = expected_label(&fx.orders, id, d.expect("as_of"));
        assert_eq!(*l, Some(want), "{name}: {LABEL} of {id} at row {i}");
        ones += want;
    }
    assert!(ones > 0, "{name}: some churners");
    eprintln!(
        "{name}, {} spine rows (debug build): {times:?}",
        fx.spine.height()
    );
}

/// The customers given irregular dates (each has rows at every irregular date).
fn firsts_irregular(fx: &Fixture) -> Vec<String> {
    let ids = strs(&fx.spine, "customer_id");
    let ds: Vec<i32> = fx
        .spine
        .column("_as_of")
        .expect("as_of")
        .i32()
        .expect("i32")
        .into_no_null_iter()
        .collect();
    let first = (fx.irregular[0] - epoch()).num_days() as i32;
    let mut out: Vec<String> = ids
        .into_iter()
        .zip(ds)
        .filter(|(_, d)| *d == first)
        .map(|(i, _)| i)
        .collect();
    out.dedup();
    out
}

#[test]
fn batched_training_sets_equal_unbatched_and_snapshots_cell_for_cell() {
    let fx = fixture();
    for name in ["churn_signals", "rfm"] {
        check_set(name, &fx);
    }
}

#[test]
fn batch_size_variable_is_checked_and_does_not_change_the_output() {
    let fx = fixture();
    let dir = tempfile::tempdir().expect("tmp");
    let spine = dir.path().join("spine.csv");
    let mut sp = fx
        .spine
        .clone()
        .lazy()
        .filter(col("_as_of").eq(lit(((fx.dates[11] - epoch()).num_days()) as i32)))
        .select([
            col("customer_id"),
            col("_as_of").cast(DataType::Date).alias("as_of"),
        ])
        .collect()
        .expect("spine");
    CsvWriter::new(std::fs::File::create(&spine).expect("spine"))
        .finish(&mut sp)
        .expect("write");
    let build = |batch: &str, out: &str| {
        c360()
            .env(features::BATCH_ENV, batch)
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
            .arg(dir.path().join(out))
            .arg("--source")
            .arg(&fx.src)
            .output()
            .expect("run")
    };
    assert_ok(&build("0", "one.parquet"));
    assert_ok(&build("250", "many.parquet"));
    let one = read(dir.path(), "one");
    assert_eq!(one.height(), sp.height());
    assert_same(
        &read(dir.path(), "many"),
        &one,
        "CLI, batches of 250 vs one batch",
    );
    let out = build("lots", "bad.parquet");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains(features::BATCH_ENV) && stderr.contains("\"lots\""),
        "{stderr}"
    );
    assert!(!dir.path().join("bad.parquet").exists());
}
