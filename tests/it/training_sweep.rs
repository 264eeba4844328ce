//! The event sweep of training sets (`compile/sweep.rs`): on a generated source and on a
//! tiny hand-built edge source, the training set computed with the sweep equals, cell for
//! cell (values, nulls, types), (a) the single-date snapshots restricted to the spine's
//! rows and (b) the join path forced for every feature (`C360_TRAINING_SWEEP=off`), for
//! `churn_signals` and `rfm` with the `churned_90d` label; on the edge source a few values
//! are also checked by hand (window edges, same-day repeats, events after D, the label's
//! horizon edge).

use std::path::Path;

use c360::features::{self, compile::SWEEP_ENV};
use c360::source::Source;
use chrono::{Datelike, Duration, NaiveDate};
use polars::prelude::*;

use crate::features::{assert_ok, c360, set};
use crate::training_sets::{assert_same, days};

const LABEL: &str = "churned_90d";
const SETS: [&str; 2] = ["churn_signals", "rfm"];

fn epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")
}

fn day(d: NaiveDate) -> i32 {
    (d - epoch()).num_days() as i32
}

fn ymd(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("date")
}

pub(crate) fn read(path: &Path) -> DataFrame {
    ParquetReader::new(std::fs::File::open(path).expect("open"))
        .finish()
        .expect("parquet")
}

pub(crate) fn write(path: &Path, df: &mut DataFrame) {
    ParquetWriter::new(std::fs::File::create(path).expect("create"))
        .finish(df)
        .expect("write parquet");
}

/// The spine as the CLI reads it: `customer_id`, `as_of` (Date).
pub(crate) fn write_spine(path: &Path, spine: &DataFrame) {
    let mut df = spine
        .clone()
        .lazy()
        .select([
            col("customer_id"),
            col("_as_of").cast(DataType::Date).alias("as_of"),
        ])
        .collect()
        .expect("spine");
    write(path, &mut df);
}

/// `c360 features training-set` with the sweep on or off; the output, and stderr (debug
/// log).
pub(crate) fn cli(
    set_name: &str,
    src: &Path,
    spine: &Path,
    out: &Path,
    sweep: &str,
) -> (DataFrame, String) {
    let o = c360()
        .env("C360_LOG", "debug")
        .env(SWEEP_ENV, sweep)
        .args([
            "features",
            "training-set",
            set_name,
            "--label",
            LABEL,
            "--spine",
        ])
        .arg(spine)
        .arg("--out")
        .arg(out)
        .arg("--source")
        .arg(src)
        .output()
        .expect("run c360");
    assert_ok(&o);
    (read(out), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// The training set's rows at `d` (first of repeats), by customer, without the label;
/// and the snapshot's rows at `d` of the same customers.
fn rows_at(ts: &DataFrame, snap: &DataFrame, d: i32) -> (DataFrame, DataFrame) {
    let at = ts
        .clone()
        .lazy()
        .filter(col("as_of").cast(DataType::Int32).eq(lit(d)))
        .drop(cols([LABEL]))
        .unique_stable(None, UniqueKeepStrategy::First)
        .sort(["customer_id"], Default::default())
        .collect()
        .expect("rows");
    let ids = at.column("customer_id").expect("ids").clone();
    let s = snap
        .clone()
        .lazy()
        .filter(col("customer_id").is_in(lit(ids.take_materialized_series()).implode(false), false))
        .sort(["customer_id"], Default::default())
        .collect()
        .expect("snapshot rows");
    (at, s)
}

/// For each set: the sweep (in process, in batches of 3 customers and in one batch, and
/// through the CLI) equals the snapshots at each spine date and the join path (CLI, sweep
/// off), cell for cell. Returns the in-process training sets by set name.
pub(crate) fn check_source(src: &Path, spine: &DataFrame, what: &str) -> Vec<(String, DataFrame)> {
    let dir = tempfile::tempdir().expect("tmp");
    let spine_path = dir.path().join("spine.parquet");
    write_spine(&spine_path, spine);
    let source = Source::open(&src.display().to_string()).expect("source");
    let mut out = Vec::new();
    for name in SETS {
        let fs = set(name);
        let loaded = features::load_tables(&fs, &source, &[]).expect("tables load");
        let whole = features::training_set_batched(&fs, &loaded, spine, "spine", Some(LABEL), None)
            .expect("training set");
        assert_eq!(
            whole.height(),
            spine.height(),
            "{what} {name}: one row per spine row"
        );
        let batched =
            features::training_set_batched(&fs, &loaded, spine, "spine", Some(LABEL), Some(3))
                .expect("training set in batches");
        assert_same(
            &batched,
            &whole,
            &format!("{what} {name}: batches of 3 vs one batch"),
        );

        // (b) the join path for every feature, and the sweep, through the CLI.
        let (joined, log_off) = cli(
            name,
            src,
            &spine_path,
            &dir.path().join("off.parquet"),
            "off",
        );
        let (swept, log_on) = cli(name, src, &spine_path, &dir.path().join("on.parquet"), "on");
        assert!(
            log_on.contains("training-set sweep") && log_on.contains("table=\"orders\""),
            "{what} {name}: the sweep ran: {log_on}"
        );
        assert!(
            !log_off.contains("training-set sweep"),
            "{what} {name}: off means no sweep: {log_off}"
        );
        assert_same(
            &swept,
            &joined,
            &format!("{what} {name}: sweep vs join path"),
        );
        assert_same(&whole, &swept, &format!("{what} {name}: in process vs CLI"));

        // (a) every spine date's rows equal that date's snapshot.
        let dates: Vec<i32> = spine
            .column("_as_of")
            .expect("as_of")
            .i32()
            .expect("days")
            .into_no_null_iter()
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        for d in dates {
            let date = epoch() + Duration::days(i64::from(d));
            let snap = features::snapshot(&fs, &loaded, date).expect("snapshot");
            let (t, s) = rows_at(&whole, &snap, d);
            assert!(t.height() > 0, "{what} {name}: rows at {date}");
            assert_same(
                &t,
                &s,
                &format!("{what} {name}: training rows vs snapshot at {date}"),
            );
        }
        out.push((name.to_string(), whole));
    }
    out
}

// ------------------------------------------------------------------ generated source

#[test]
fn sweep_equals_snapshots_and_join_path_on_generated_data() {
    let dir = tempfile::tempdir().expect("tmp");
    let o = c360()
        .args(["generate", "--customers", "300", "--seed", "1818", "--out"])
        .arg(dir.path())
        .output()
        .expect("generate");
    assert_ok(&o);
    let customers = read(&dir.path().join("customers.parquet"));
    let orders = read(&dir.path().join("orders.parquet"));
    let last = days(&orders, "order_ts")
        .into_iter()
        .flatten()
        .max()
        .expect("orders");
    // Month-ends whose label (90 days) the data reaches: six of them, going back.
    let reach = epoch() + Duration::days(i64::from(last) - 90);
    let mut d = reach.with_day(1).expect("day") - Duration::days(1);
    let mut dates = Vec::new();
    for _ in 0..6 {
        dates.push(d);
        d = d.with_day(1).expect("day") - Duration::days(1);
    }
    let ids: Vec<String> = customers
        .column("customer_id")
        .expect("ids")
        .str()
        .expect("text")
        .iter()
        .map(|v| v.unwrap_or_default().to_string())
        .collect();
    let signup = days(&customers, "signup_ts");
    let (mut sid, mut sday) = (Vec::new(), Vec::new());
    // Newest date first (the spine is not sorted), every customer signed up by it; then
    // irregular dates (mid-month, the day before a month-end) with repeats.
    for d in &dates {
        for (id, s) in ids.iter().zip(&signup).rev() {
            if s.is_some_and(|s| s <= day(*d)) {
                sid.push(id.clone());
                sday.push(day(*d));
            }
        }
    }
    let irregular = [dates[1] - Duration::days(16), dates[0] - Duration::days(1)];
    for (id, s) in ids.iter().zip(&signup).take(40) {
        for d in irregular.iter().chain(&irregular[..1]) {
            if s.is_some_and(|s| s <= day(*d)) {
                sid.push(id.clone());
                sday.push(day(*d));
            }
        }
    }
    let spine = crate::training_sets::spine_frame(sid, sday);
    let sets = check_source(dir.path(), &spine, "generated");
    // The data exercise the features: some customers bought in the last 30 days, some
    // churned, some unsubscribed.
    let churn = &sets[0].1;
    let sum = |c: &str| {
        churn
            .column(c)
            .expect(c)
            .cast(&DataType::Int64)
            .expect("int")
            .i64()
            .expect("i64")
            .sum()
            .unwrap_or(0)
    };
    for c in [
        "orders_30d",
        "web_visits_prev_30d",
        "tickets_90d",
        LABEL,
        "unsubscribed",
    ] {
        assert!(sum(c) > 0, "generated data: some {c}");
    }
}

// ------------------------------------------------------------------ hand-built edges

/// A `Datetime(us)` column from (day, seconds into the day).
fn ts(name: &str, v: &[(i32, i64)]) -> Column {
    let us: Vec<i64> = v
        .iter()
        .map(|(d, s)| (i64::from(*d) * 86_400 + s) * 1_000_000)
        .collect();
    Column::new(name.into(), us)
        .cast(&DataType::Datetime(TimeUnit::Microseconds, None))
        .expect("datetime")
}

fn opt_ts(name: &str, v: &[Option<(i32, i64)>]) -> Column {
    let us: Vec<Option<i64>> = v
        .iter()
        .map(|o| o.map(|(d, s)| (i64::from(d) * 86_400 + s) * 1_000_000))
        .collect();
    Column::new(name.into(), us)
        .cast(&DataType::Datetime(TimeUnit::Microseconds, None))
        .expect("datetime")
}

const NOON: i64 = 12 * 3600;
const LAST_SECOND: i64 = 86_399;

/// The edge source's dates: D1 < D2 < D4 < D3 (month-ends and one mid-month day).
pub(crate) struct Dates {
    pub(crate) d1: i32,
    pub(crate) d2: i32,
    pub(crate) d3: i32,
    pub(crate) d4: i32,
}

pub(crate) fn dates() -> Dates {
    Dates {
        d1: day(ymd(2024, 1, 31)),
        d2: day(ymd(2024, 2, 29)),
        d3: day(ymd(2024, 3, 31)),
        d4: day(ymd(2024, 3, 15)),
    }
}

/// Writes the edge source: customers a..f (b without events, c whose events start after
/// D1, d with only uncounted events, e signed up on D2, f outside the spine).
pub(crate) fn edge_source(dir: &Path) {
    let Dates { d1, d2, d3, .. } = dates();
    let early = day(ymd(2022, 1, 1));
    let mut customers = DataFrame::new_infer_height(vec![
        Column::new("customer_id".into(), ["a", "b", "c", "d", "e", "f"]),
        Column::new(
            "signup_ts".into(),
            [
                early,
                early,
                day(ymd(2022, 6, 1)),
                day(ymd(2023, 1, 1)),
                d2,
                early,
            ],
        )
        .cast(&DataType::Date)
        .expect("date"),
        Column::new("country".into(), ["DE", "FR", "US", "US", "DE", "FR"]),
        Column::new("segment".into(), ["x", "y", "x", "y", "x", "y"]),
        Column::new("email".into(), ["a@x", "b@x", "c@x", "d@x", "e@x", "f@x"]),
        Column::new(
            "email_opt_in".into(),
            [true, false, true, true, false, true],
        ),
    ])
    .expect("customers");
    write(&dir.join("customers.parquet"), &mut customers);

    // (customer, day, seconds, status, amount)
    let orders: Vec<(&str, i32, i64, &str, f64)> = vec![
        ("a", d3, NOON, "completed", 10.0),
        ("a", d3 - 30, NOON, "completed", 11.5),
        ("a", d3 - 29, 0, "completed", 12.25),
        ("a", d3 - 10, 8 * 3600, "completed", 3.0),
        ("a", d3 - 10, 20 * 3600, "completed", 4.0),
        ("a", d3 - 200, NOON, "returned", 5.0),
        ("a", d3 - 100, NOON, "cancelled", 6.0),
        ("a", d3 + 1, 0, "completed", 7.0),
        ("a", d3 - 365, NOON, "completed", 8.0),
        ("a", d3 - 364, NOON, "completed", 9.0),
        ("a", d3 - 180, NOON, "completed", 1.0),
        ("a", d3 - 179, NOON, "completed", 2.0),
        ("a", d3 - 90, LAST_SECOND, "completed", 0.1),
        ("c", d1 + 5, NOON, "completed", 20.0),
        ("c", d3 + 90, LAST_SECOND, "completed", 21.0),
        ("c", d1 + 6, NOON, "returned", 22.0),
        ("d", d1 - 3, NOON, "cancelled", 30.0),
        ("d", d2 - 3, NOON, "cancelled", 31.0),
        ("e", d2, LAST_SECOND, "completed", 40.0),
        ("e", d2 + 91, 0, "completed", 41.0),
        ("f", d1 - 50, NOON, "completed", 50.0),
        ("f", day(ymd(2024, 7, 15)), NOON, "completed", 51.0),
    ];
    let mut df = DataFrame::new_infer_height(vec![
        Column::new(
            "order_id".into(),
            (0..orders.len())
                .map(|i| format!("o{i}"))
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "customer_id".into(),
            orders.iter().map(|o| o.0).collect::<Vec<_>>(),
        ),
        ts(
            "order_ts",
            &orders.iter().map(|o| (o.1, o.2)).collect::<Vec<_>>(),
        ),
        Column::new(
            "amount".into(),
            orders.iter().map(|o| o.4).collect::<Vec<_>>(),
        ),
        Column::new(
            "status".into(),
            orders.iter().map(|o| o.3).collect::<Vec<_>>(),
        ),
        Column::new("channel".into(), vec![Some("web"); orders.len()]),
    ])
    .expect("orders");
    write(&dir.join("orders.parquet"), &mut df);

    // (customer, day, seconds, type)
    let events: Vec<(&str, i32, i64, &str)> = vec![
        ("a", d3, LAST_SECOND, "web_visit"),
        ("a", d3 - 29, NOON, "web_visit"),
        ("a", d3 - 30, NOON, "web_visit"),
        ("a", d3 - 59, NOON, "web_visit"),
        ("a", d3 - 60, NOON, "web_visit"),
        ("a", d3 + 1, 0, "web_visit"),
        ("a", d3 - 5, 1, "app_login"),
        ("a", d3 - 5, 2, "app_login"),
        ("a", d3 - 5, 3, "app_login"),
        ("a", d3 - 89, NOON, "email_sent"),
        ("a", d3 - 90, NOON, "email_sent"),
        ("a", d3 - 89, NOON, "email_open"),
        ("a", d3 + 2, NOON, "unsubscribe"),
        ("c", d1 + 1, NOON, "web_visit"),
        ("d", d1 - 10, NOON, "unsubscribe"),
        ("d", d1 - 2, NOON, "email_click"),
        ("f", d1 - 2, NOON, "web_visit"),
    ];
    let mut df = DataFrame::new_infer_height(vec![
        Column::new(
            "customer_id".into(),
            events.iter().map(|e| e.0).collect::<Vec<_>>(),
        ),
        ts(
            "event_ts",
            &events.iter().map(|e| (e.1, e.2)).collect::<Vec<_>>(),
        ),
        Column::new(
            "event_type".into(),
            events.iter().map(|e| e.3).collect::<Vec<_>>(),
        ),
    ])
    .expect("interactions");
    write(&dir.join("interactions.parquet"), &mut df);

    // (customer, opened, resolved, csat)
    let tickets: Vec<(&str, i32, Option<i32>, Option<i64>)> = vec![
        ("a", d3, None, None),
        ("a", d3 - 90, Some(d3 - 80), Some(4)),
        ("a", d3 - 89, Some(d3 + 5), Some(2)),
        ("c", d1 + 3, Some(d1 + 4), Some(5)),
    ];
    let mut df = DataFrame::new_infer_height(vec![
        Column::new(
            "ticket_id".into(),
            (0..tickets.len())
                .map(|i| format!("t{i}"))
                .collect::<Vec<_>>(),
        ),
        Column::new(
            "customer_id".into(),
            tickets.iter().map(|t| t.0).collect::<Vec<_>>(),
        ),
        ts(
            "opened_ts",
            &tickets.iter().map(|t| (t.1, NOON)).collect::<Vec<_>>(),
        ),
        opt_ts(
            "resolved_ts",
            &tickets
                .iter()
                .map(|t| t.2.map(|d| (d, NOON)))
                .collect::<Vec<_>>(),
        ),
        Column::new("category".into(), vec![Some("billing"); tickets.len()]),
        Column::new(
            "csat".into(),
            tickets.iter().map(|t| t.3).collect::<Vec<_>>(),
        ),
    ])
    .expect("tickets");
    write(&dir.join("support_tickets.parquet"), &mut df);
}

/// One cell of the training set, by spine row, as text ("null" for nulls).
fn cell(df: &DataFrame, row: usize, c: &str) -> String {
    df.column(c).expect(c).get(row).expect("row").to_string()
}

#[test]
fn sweep_equals_snapshots_and_join_path_on_edge_cases() {
    let dir = tempfile::tempdir().expect("tmp");
    edge_source(dir.path());
    let Dates { d1, d2, d3, d4 } = dates();
    // Unsorted, with repeats; one customer at many dates; dates before a first event.
    let rows: Vec<(&str, i32)> = vec![
        ("a", d3),
        ("b", d1),
        ("a", d1),
        ("c", d1),
        ("a", d3),
        ("a", d4),
        ("d", d2),
        ("c", d3),
        ("a", d2),
        ("e", d2),
        ("d", d1),
        ("b", d3),
    ];
    let spine = crate::training_sets::spine_rows(&rows);
    let sets = check_source(dir.path(), &spine, "edge");

    // By hand, at spine row 0 (a at D3) and the others named.
    let churn = &sets[0].1;
    let want = [
        // Window (D-30, D]: D, D-29, two on D-10; not D-30, not D+1 (00:00).
        (0, "orders_30d", "4"),
        // (D-90, D]: adds D-30; not D-90 (at 23:59:59).
        (0, "orders_90d", "5"),
        // (D-180, D-90]: D-90 and D-179; not D-180.
        (0, "orders_prev_90d", "2"),
        // (D-365, D]: nine completed; not D-365.
        (0, "orders_365d", "9"),
        (0, "days_since_last_order", "0"),
        (0, "web_visits_30d", "2"),
        (0, "web_visits_prev_30d", "2"),
        (0, "app_logins_30d", "3"),
        (0, "unsubscribed", "false"),
        (0, "tickets_90d", "2"),
        (0, "email_open_rate_90d", "1.0"),
        (0, LABEL, "0"),
        // b has no events at all.
        (1, "orders_365d", "0"),
        (1, "days_since_last_order", "null"),
        (1, "unsubscribed", "false"),
        (1, LABEL, "1"),
        // c at D1: its first order is after D1; the label counts D1+5.
        (3, "days_since_last_order", "null"),
        (3, "orders_30d", "0"),
        (3, LABEL, "0"),
        // a at D4 = D3 - 16: the last order on or before D4 is D3 - 29 = D4 - 13.
        (5, "days_since_last_order", &(d4 - (d3 - 29)).to_string()),
        // d: only cancelled orders; unsubscribed before D1.
        (6, "orders_365d", "0"),
        (6, "unsubscribed", "true"),
        (6, LABEL, "1"),
        // c at D3: its order on D3+90 (23:59:59) is inside the horizon.
        (7, LABEL, "0"),
        (7, "web_visits_prev_30d", "1"),
        // e signed up on D2 and bought on D2 at 23:59:59; next order D2+91: churned.
        (9, "days_since_last_order", "0"),
        (9, "orders_30d", "1"),
        (9, LABEL, "1"),
        (10, "unsubscribed", "true"),
    ];
    for (row, c, v) in want {
        assert_eq!(cell(churn, row, c), v, "churn_signals row {row} {c}");
    }
    // rfm: the BTYD columns from distinct purchase days (same-day repeats once).
    let rfm = &sets[1].1;
    // a at D3: completed days on or before D3: D-365, D-364, D-180, D-179, D-90, D-30,
    // D-29, D-10, D: 9 days, frequency 8; first purchase 365 days ago.
    assert_eq!(cell(rfm, 0, "frequency"), "8");
    assert_eq!(cell(rfm, 0, "T"), "365");
    assert_eq!(cell(rfm, 0, "recency"), "365");
    assert_eq!(cell(rfm, 0, "recency_days"), "0");
    assert_eq!(cell(rfm, 0, "frequency_orders"), "10");
    assert_eq!(cell(rfm, 1, "frequency"), "null");
    assert_eq!(cell(rfm, 1, "frequency_orders"), "0");
}

#[test]
fn unknown_diagnostic_switches_are_refused_by_name() {
    let dir = tempfile::tempdir().expect("tmp");
    edge_source(dir.path());
    let spine = DataFrame::new_infer_height(vec![
        Column::new("customer_id".into(), ["a"]),
        Column::new("_as_of".into(), [dates().d3]),
    ])
    .expect("spine");
    let spine_path = dir.path().join("spine.parquet");
    write_spine(&spine_path, &spine);
    let out_path = dir.path().join("out.parquet");
    // Every on/off diagnostic of a training set reads its value the same way: a typo is
    // refused, never taken silently as "on".
    for var in [SWEEP_ENV, "C360_TRAINING_CUT"] {
        let o = c360()
            .env(var, "sometimes")
            .args(["features", "training-set", "churn_signals", "--spine"])
            .arg(&spine_path)
            .arg("--out")
            .arg(&out_path)
            .arg("--source")
            .arg(dir.path())
            .output()
            .expect("run c360");
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{var}: {stderr}");
        assert!(
            stderr.contains(&format!("{var}=\"sometimes\" is not on or off")),
            "{var}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!out_path.exists());
    }
}
