//! The event sweep over a second timestamp column and with filters that test the age of
//! a timestamp (`compile/sweep/dated.rs`): on a hand-built source with tickets resolved
//! before, on and after the as-of dates, never resolved (null), and dated before 1970,
//! a feature set of such aggregations computed as a training set equals, cell for cell,
//! (a) the join path forced for every feature (`C360_TRAINING_SWEEP=off`) and (b) each
//! spine date's snapshot; the label is unchanged; what the sweep cannot compute (two
//! ages compared) is logged as left to the join path; and a few cells are checked by hand.

use std::path::Path;

use c360::features::{self, compile::SWEEP_ENV};
use c360::source::Source;
use chrono::{Duration, NaiveDate};
use polars::prelude::*;

use crate::features::{assert_ok, c360};
use crate::training_sets::assert_same;
use crate::training_sweep::{read, write, write_spine};

const LABEL: &str = "churned_90d";

const SET: &str = r#"
name = "ticket_ages"
version = 1
owner = "tests"
description = "Aggregations over resolved_ts and filters on the age of a timestamp"

[[feature]]
name = "open_tickets"
table = "support_tickets"
agg = "count"
where = "resolved_ts is null or days_ago(resolved_ts) < 0"

[[feature]]
name = "resolved_30d"
table = "support_tickets"
ts = "resolved_ts"
agg = "count"
window_days = 30

[[feature]]
name = "avg_csat_365d"
table = "support_tickets"
ts = "resolved_ts"
agg = "mean"
column = "csat"
window_days = 365

[[feature]]
name = "csat_tenths_90d"
table = "support_tickets"
ts = "resolved_ts"
agg = "sum"
column = "csat * 0.1"
window_days = 90

[[feature]]
name = "days_since_resolution"
table = "support_tickets"
ts = "resolved_ts"
agg = "min"
column = "days_ago"

[[feature]]
name = "first_resolution_days_ago"
table = "support_tickets"
ts = "resolved_ts"
agg = "max"
column = "days_ago"

[[feature]]
name = "resolution_days_60d"
table = "support_tickets"
ts = "resolved_ts"
agg = "distinct_count"
column = "days_ago"
window_days = 60

[[feature]]
name = "old_and_open"
table = "support_tickets"
agg = "count"
where = "days_ago >= 10 and (resolved_ts is null or -1 >= days_ago(resolved_ts))"

[[feature]]
name = "resolved_lately_billing"
table = "support_tickets"
agg = "any"
where = "not (days_ago(resolved_ts) > 30) and category == 'billing'"

[[feature]]
name = "open_csat_mean"
table = "support_tickets"
agg = "mean"
column = "csat"
where = "resolved_ts is not null and 0 > days_ago(resolved_ts)"

[[feature]]
name = "last_open_days_ago"
table = "support_tickets"
agg = "min"
column = "days_ago"
where = "days_ago(resolved_ts) is null or days_ago(resolved_ts) != 5"

[[feature]]
name = "resolved_after_opened"
table = "support_tickets"
agg = "count"
where = "days_ago(resolved_ts) < days_ago"

[[feature]]
name = "completed_orders"
table = "orders"
agg = "count"
where = "status == 'completed'"

[[label]]
name = "churned_90d"
description = "1 when the customer has no completed order in (D, D+90], else 0"
table = "orders"
where = "status == 'completed'"
horizon_days = 90
kind = "no_event"
"#;

fn epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")
}

fn day(y: i32, m: u32, d: u32) -> i32 {
    (NaiveDate::from_ymd_opt(y, m, d).expect("date") - epoch()).num_days() as i32
}

/// A `Datetime(us)` column at noon of each day (null where None).
fn noon(name: &str, days: &[Option<i32>]) -> Column {
    let us: Vec<Option<i64>> = days
        .iter()
        .map(|d| d.map(|d| (i64::from(d) * 86_400 + 12 * 3600) * 1_000_000))
        .collect();
    Column::new(name.into(), us)
        .cast(&DataType::Datetime(TimeUnit::Microseconds, None))
        .expect("datetime")
}

/// The spine dates: two before 1970 (so ages and days are negative), one in 2024.
fn dates() -> [i32; 3] {
    [day(1969, 12, 1), day(1969, 12, 31), day(2024, 3, 31)]
}

/// Customers a (tickets around every date), b (none), c (tickets before 1970 only);
/// orders for the label; one interaction (the table must exist).
fn source(dir: &Path) {
    let [d1, d2, d3] = dates();
    let early = day(1960, 1, 1);
    let mut customers = DataFrame::new_infer_height(vec![
        Column::new("customer_id".into(), ["a", "b", "c"]),
        noon("signup_ts", &[Some(early), Some(early), Some(early)]),
        Column::new("country".into(), ["DE", "FR", "US"]),
        Column::new("segment".into(), ["x", "y", "x"]),
        Column::new("email".into(), ["a@x", "b@x", "c@x"]),
        Column::new("email_opt_in".into(), [true, false, true]),
    ])
    .expect("customers");
    write(&dir.join("customers.parquet"), &mut customers);

    let orders: Vec<(&str, i32, &str)> = vec![
        ("a", d1 + 10, "completed"),
        ("a", d3 + 90, "completed"),
        ("c", d2 + 91, "completed"),
        ("c", d1 - 5, "returned"),
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
        noon(
            "order_ts",
            &orders.iter().map(|o| Some(o.1)).collect::<Vec<_>>(),
        ),
        Column::new("amount".into(), vec![1.5; orders.len()]),
        Column::new(
            "status".into(),
            orders.iter().map(|o| o.2).collect::<Vec<_>>(),
        ),
        Column::new("channel".into(), vec![Some("web"); orders.len()]),
    ])
    .expect("orders");
    write(&dir.join("orders.parquet"), &mut df);

    let mut df = DataFrame::new_infer_height(vec![
        Column::new("customer_id".into(), ["a"]),
        noon("event_ts", &[Some(d3)]),
        Column::new("event_type".into(), ["web_visit"]),
    ])
    .expect("interactions");
    write(&dir.join("interactions.parquet"), &mut df);

    // (customer, opened, resolved, category, csat)
    type Ticket = (
        &'static str,
        i32,
        Option<i32>,
        Option<&'static str>,
        Option<i64>,
    );
    let tickets: Vec<Ticket> = vec![
        // Around D3 (2024): resolved on D3 (not open at D3), the day after (open),
        // never (open), 40 days before; one opened after D3.
        ("a", d3 - 20, Some(d3), Some("billing"), Some(4)),
        ("a", d3 - 12, Some(d3 + 1), Some("billing"), Some(2)),
        ("a", d3 - 3, None, None, Some(5)),
        ("a", d3 - 50, Some(d3 - 40), Some("tech"), Some(3)),
        ("a", d3 - 45, Some(d3 - 40), Some("billing"), None),
        ("a", d3 + 2, Some(d3 + 3), Some("billing"), Some(1)),
        // Resolved before it was opened (not refused by the contract).
        ("a", d3 - 2, Some(d3 - 5), Some("billing"), Some(3)),
        // Before 1970, around D1 and D2: resolved exactly 5 days before D2, on D1,
        // after D2, never.
        ("a", d1 - 30, Some(d2 - 5), Some("billing"), Some(5)),
        ("a", d1 - 1, Some(d1), None, Some(4)),
        ("c", d1 - 400, Some(d1 - 370), Some("tech"), Some(2)),
        ("c", d1 - 20, Some(d2 + 1), Some("billing"), Some(5)),
        ("c", d2 - 11, None, Some("billing"), None),
        ("c", d1 - 60, Some(d1 - 59), Some("tech"), Some(1)),
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
        noon(
            "opened_ts",
            &tickets.iter().map(|t| Some(t.1)).collect::<Vec<_>>(),
        ),
        noon(
            "resolved_ts",
            &tickets.iter().map(|t| t.2).collect::<Vec<_>>(),
        ),
        Column::new(
            "category".into(),
            tickets.iter().map(|t| t.3).collect::<Vec<_>>(),
        ),
        Column::new(
            "csat".into(),
            tickets.iter().map(|t| t.4).collect::<Vec<_>>(),
        ),
    ])
    .expect("tickets");
    write(&dir.join("support_tickets.parquet"), &mut df);
}

/// `c360 features training-set ticket_ages` run in `project` with the sweep on or off.
fn cli(project: &Path, spine: &Path, out: &Path, sweep: &str) -> (DataFrame, String) {
    let o = c360()
        .current_dir(project)
        .env("C360_LOG", "debug")
        .env(SWEEP_ENV, sweep)
        .args(["features", "training-set", "ticket_ages", "--label", LABEL])
        .arg("--spine")
        .arg(spine)
        .arg("--out")
        .arg(out)
        .arg("--source")
        .arg(project.join("src"))
        .output()
        .expect("run c360");
    assert_ok(&o);
    (read(out), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn cell(df: &DataFrame, row: usize, c: &str) -> String {
    df.column(c).expect(c).get(row).expect("row").to_string()
}

#[test]
fn second_timestamps_and_age_filters_are_swept_exactly() {
    let dir = tempfile::tempdir().expect("tmp");
    let project = dir.path();
    std::fs::create_dir_all(project.join("features")).expect("features dir");
    std::fs::create_dir_all(project.join("src")).expect("source dir");
    std::fs::write(project.join("features/ticket_ages.toml"), SET).expect("set");
    source(&project.join("src"));
    let [d1, d2, d3] = dates();
    // Unsorted, with a repeat; every customer at every date.
    let rows: Vec<(&str, i32)> = vec![
        ("a", d3),
        ("c", d1),
        ("a", d1),
        ("b", d3),
        ("a", d2),
        ("c", d2),
        ("a", d3),
        ("c", d3),
        ("b", d1),
        ("b", d2),
    ];
    let spine = crate::training_sets::spine_rows(&rows);
    let spine_path = project.join("spine.parquet");
    write_spine(&spine_path, &spine);

    // (a) the sweep against the join path, through the CLI.
    let (joined, log_off) = cli(project, &spine_path, &project.join("off.parquet"), "off");
    let (swept, log_on) = cli(project, &spine_path, &project.join("on.parquet"), "on");
    assert!(!log_off.contains("training-set sweep"), "{log_off}");
    assert!(
        log_on.contains("table=\"support_tickets\" ts=resolved_ts"),
        "a sweep over resolved_ts ran: {log_on}"
    );
    let left = log_on
        .lines()
        .find(|l| l.contains("training-set aggregations on the join path"))
        .unwrap_or_else(|| panic!("the join path's aggregations are logged: {log_on}"));
    assert!(
        left.contains("features=resolved_after_opened ")
            && left.contains("label=\"\"")
            && left.contains("out_of_exact_range= "),
        "only the two-age comparison stays on the join path: {left}"
    );
    assert_same(&swept, &joined, "sweep vs join path");

    // (b) in process, in batches of one customer and in one batch, against snapshots.
    let fs = features::find_set(&project.join("features"), "ticket_ages").expect("set");
    let source = Source::open(&project.join("src").display().to_string()).expect("source");
    let loaded = features::load_tables(&fs, &source, &[]).expect("tables");
    let whole = features::training_set_batched(&fs, &loaded, &spine, "spine", Some(LABEL), None)
        .expect("training set");
    let batched =
        features::training_set_batched(&fs, &loaded, &spine, "spine", Some(LABEL), Some(1))
            .expect("training set in batches");
    assert_same(&batched, &whole, "batches of 1 vs one batch");
    assert_same(&whole, &swept, "in process vs CLI");
    for d in dates() {
        let date = epoch() + Duration::days(i64::from(d));
        let snap = features::snapshot(&fs, &loaded, date).expect("snapshot");
        let at = whole
            .clone()
            .lazy()
            .filter(col("as_of").cast(DataType::Int32).eq(lit(d)))
            .drop(cols([LABEL]))
            .unique_stable(None, UniqueKeepStrategy::First)
            .sort(["customer_id"], Default::default())
            .collect()
            .expect("rows");
        let snap = snap
            .lazy()
            .sort(["customer_id"], Default::default())
            .collect()
            .expect("snapshot rows");
        assert_eq!(at.height(), 3, "every customer at {date}");
        assert_same(&at, &snap, &format!("training rows vs snapshot at {date}"));
    }

    // By hand. Row 0: a at D3 (2024-03-31).
    let want: Vec<(usize, &str, String)> = vec![
        // Open at D3: resolved D3+1, never resolved, resolved before opened? no (D3-5
        // <= D3); the one resolved on D3 is closed; the one opened after D3 not counted.
        (0, "open_tickets", "2".into()),
        // Resolved in (D3-30, D3]: on D3 and D3-5 (D3+1 and D3+3 are after D3).
        (0, "resolved_30d", "2".into()),
        // Resolved in the last 365 days with a csat: 4 (D3), 3 (D3-40), 3 (D3-5).
        (0, "days_since_resolution", "0".into()),
        (0, "first_resolution_days_ago", (d3 - d1).to_string()),
        // Distinct resolution days in (D3-60, D3]: D3, D3-5, D3-40.
        (0, "resolution_days_60d", "3".into()),
        // Opened at least 10 days before D3 and still open at D3: D3-12 (resolved D3+1).
        (0, "old_and_open", "1".into()),
        (0, "resolved_lately_billing", "true".into()),
        // Resolved after D3 with a csat: 2 (D3+1).
        (0, "open_csat_mean", "2.0".into()),
        // Opened by D3 and resolved after it was opened (days_ago(resolved) < days_ago).
        (0, "resolved_after_opened", "6".into()),
        // The ticket opened D3-2 was resolved exactly 5 days before D3: skipped.
        (0, "last_open_days_ago", "3".into()),
        (0, LABEL, "0".into()),
        // Row 1: c at D1 (1969-12-01): open: D1-20 (resolved D2+1); resolved D1-59 and
        // D1-370.
        (1, "open_tickets", "1".into()),
        (1, "resolved_30d", "0".into()),
        (1, "avg_csat_365d", "1.0".into()),
        (1, "days_since_resolution", "59".into()),
        (1, "first_resolution_days_ago", "370".into()),
        (1, "old_and_open", "1".into()),
        (1, LABEL, "1".into()),
        // Row 4: a at D2 (1969-12-31): resolved D2-5 (csat 5) and D1 (csat 4); the
        // ticket resolved exactly 5 days before is skipped by last_open_days_ago.
        (4, "open_tickets", "0".into()),
        // (D2-30, D2]: D2-5 only (D1 = D2-30 is outside).
        (4, "resolved_30d", "1".into()),
        (4, "avg_csat_365d", "4.5".into()),
        (4, "days_since_resolution", "5".into()),
        (4, "last_open_days_ago", (d2 - (d1 - 1)).to_string()),
        // Row 5: c at D2: open D1-20 (resolved D2+1) and D2-11 (never); both old.
        (5, "open_tickets", "2".into()),
        (5, "old_and_open", "2".into()),
        (5, "open_csat_mean", "5.0".into()),
        // b has no tickets at all.
        (3, "open_tickets", "0".into()),
        (3, "avg_csat_365d", "null".into()),
        (3, "days_since_resolution", "null".into()),
        (3, "resolved_lately_billing", "false".into()),
        (3, "csat_tenths_90d", "0.0".into()),
        (3, LABEL, "1".into()),
    ];
    for (row, c, v) in want {
        assert_eq!(cell(&whole, row, c), v, "row {row} {c}");
    }
    // The mean of 4, 3 and 3 (csat of tickets resolved in the last 365 days), exactly as
    // the snapshot divides the exact sum.
    let mean = whole
        .column("avg_csat_365d")
        .expect("mean")
        .f64()
        .expect("f64")
        .get(0);
    assert_eq!(mean.map(f64::to_bits), Some((10.0f64 / 3.0).to_bits()));
}
