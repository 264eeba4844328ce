//! The SQL compiler's `duckdb` dialect executed by DuckDB (`scripts/sql/run_duckdb.py` in
//! the test venv) equals the polars engine cell for cell: the shipped sets at every edge
//! fixture date, a snapshot at many dates, a training set with its label, and a test set
//! using every construct (with quotes inside string literals). Without the test venv the
//! tests skip loudly (a failure under CI).

use std::path::{Path, PathBuf};
use std::process::Command;

use c360::features::{self, def, FeatureSet};
use c360::source::Source;
use c360::sql::{self, Dialect, Target};
use chrono::NaiveDate;
use polars::prelude::*;

use crate::features::{edge, repo, set};
use crate::pipeline::python;

const DATES: [&str; 3] = ["2023-12-31", "2024-03-31", "2024-06-30"];

fn date(s: &str) -> NaiveDate {
    s.parse().expect("date")
}

/// Runs `query` in DuckDB over `source` (and the spine file as the view `spine`).
fn run_sql(py: &Path, query: &str, source: &Path, spine: Option<&Path>, tmp: &Path) -> DataFrame {
    run_as(py, Dialect::Duckdb, query, source, spine, tmp)
}

/// Runs `query` of `dialect` (duckdb, or athena transpiled to DuckDB by sqlglot).
fn run_as(
    py: &Path,
    dialect: Dialect,
    query: &str,
    source: &Path,
    spine: Option<&Path>,
    tmp: &Path,
) -> DataFrame {
    let n = std::fs::read_dir(tmp).map(|d| d.count()).unwrap_or(0);
    let sql_path = tmp.join(format!("q{n}.sql"));
    let out = tmp.join(format!("q{n}.parquet"));
    std::fs::write(&sql_path, query).expect("write query");
    let mut c = Command::new(py);
    c.arg(repo().join("scripts/sql/run_duckdb.py"))
        .arg("--source")
        .arg(source)
        .arg("--sql")
        .arg(&sql_path)
        .arg("--out")
        .arg(&out)
        .arg("--from-dialect")
        .arg(dialect.name());
    if let Some(s) = spine {
        c.arg("--spine").arg(s);
    }
    let o = c.output().expect("python runs");
    assert!(
        o.status.success(),
        "DuckDB refused the query:\n{}\n{query}",
        String::from_utf8_lossy(&o.stderr)
    );
    let f = std::fs::File::open(&out).expect("result");
    ParquetReader::new(f).finish().expect("result parquet")
}

fn sorted(df: &DataFrame) -> DataFrame {
    df.sort(["as_of", "customer_id"], SortMultipleOptions::default())
        .expect("sort")
}

/// Asserts same columns, types and cells (floats to 1e-12 relative), rows matched after
/// sorting both by (as_of, customer_id); returns the number of cells compared.
fn assert_equal(sql_df: &DataFrame, polars_df: &DataFrame, what: &str) -> usize {
    let names = |df: &DataFrame| -> Vec<(String, DataType)> {
        df.columns()
            .iter()
            .map(|c| (c.name().to_string(), c.dtype().clone()))
            .collect()
    };
    assert_eq!(names(sql_df), names(polars_df), "{what}: columns and types");
    assert_eq!(sql_df.height(), polars_df.height(), "{what}: rows");
    let (g, e) = (sorted(sql_df), sorted(polars_df));
    let mut bad = Vec::new();
    for c in e.columns() {
        let gc = g.column(c.name()).expect("column");
        for i in 0..e.height() {
            let (a, b) = (gc.get(i).expect("cell"), c.get(i).expect("cell"));
            let same = match (a.extract::<f64>(), b.extract::<f64>(), c.dtype()) {
                (Some(x), Some(y), DataType::Float64) => {
                    x == y || (x - y).abs() <= 1e-12 * y.abs() || (x.is_nan() && y.is_nan())
                }
                _ => a == b,
            };
            if !same {
                bad.push(format!(
                    "{} of {} at {}: SQL {a:?}, polars {b:?}",
                    c.name(),
                    e.column("customer_id").unwrap().get(i).unwrap(),
                    e.column("as_of").unwrap().get(i).unwrap()
                ));
            }
        }
    }
    assert!(
        bad.is_empty(),
        "{what}: {} cell(s) differ, e.g. {:#?}",
        bad.len(),
        &bad[..bad.len().min(10)]
    );
    e.height() * e.width()
}

fn snapshots(s: &FeatureSet, source: &Path, dates: &[&str]) -> DataFrame {
    let src = Source::open(&source.display().to_string()).expect("source");
    let loaded = features::load_tables(s, &src, &[]).expect("tables pass the contract");
    let mut out: Option<DataFrame> = None;
    for d in dates {
        let df = features::snapshot(s, &loaded, date(d)).expect("snapshot");
        match &mut out {
            None => out = Some(df),
            Some(o) => {
                o.vstack_mut(&df).expect("stack");
            }
        }
    }
    out.expect("at least one date")
}

#[test]
fn shipped_sets_in_duckdb_equal_polars_at_every_fixture_date_one_or_many_dates() {
    let Some(py) = python() else { return };
    let tmp = tempfile::tempdir().expect("tmp");
    for name in ["rfm", "churn_signals"] {
        let s = set(name);
        let mut singles: Option<DataFrame> = None;
        for d in DATES {
            let q = sql::compile(&s, Dialect::Duckdb, &Target::Snapshot(vec![date(d)]))
                .expect("compiles");
            let got = run_sql(&py, &q, &edge(), None, tmp.path());
            let exp = snapshots(&s, &edge(), &[d]);
            assert!(
                exp.height() > 300,
                "the fixture has the edge and random customers"
            );
            let cells = assert_equal(&got, &exp, &format!("{name} as of {d}"));
            eprintln!("{name} as of {d}: {cells} cells equal");
            match &mut singles {
                None => singles = Some(got),
                Some(o) => {
                    o.vstack_mut(&got).expect("stack");
                }
            }
        }
        // One query at many dates = the single-date queries.
        let dates: Vec<NaiveDate> = DATES.iter().map(|d| date(d)).collect();
        let q = sql::compile(&s, Dialect::Duckdb, &Target::Snapshot(dates)).expect("compiles");
        let many = run_sql(&py, &q, &edge(), None, tmp.path());
        let singles = singles.expect("dates");
        assert_equal(
            &many,
            &singles,
            &format!("{name} at three dates in one query"),
        );
    }
}

/// A spine of a third of the customers signed up at each fixture date, as CSV.
fn write_spine(s: &FeatureSet, source: &Path, path: &Path) -> usize {
    let mut rows_c = Vec::new();
    let mut rows_d = Vec::new();
    for d in DATES {
        let snap = snapshots(s, source, &[d]);
        let ids = snap
            .column("customer_id")
            .expect("ids")
            .str()
            .expect("text");
        for (i, id) in ids.iter().enumerate() {
            if i % 3 != 1 {
                rows_c.push(id.expect("id").to_string());
                rows_d.push(d.to_string());
            }
        }
    }
    let n = rows_c.len();
    let mut df = df!("customer_id" => rows_c, "as_of" => rows_d).expect("spine");
    CsvWriter::new(std::fs::File::create(path).expect("spine file"))
        .finish(&mut df)
        .expect("write spine");
    n
}

#[test]
fn training_sets_with_a_label_in_duckdb_equal_polars() {
    let Some(py) = python() else { return };
    let tmp = tempfile::tempdir().expect("tmp");
    let spine_path = tmp.path().join("spine.csv");
    for name in ["churn_signals", "rfm"] {
        let s = set(name);
        let n = write_spine(&s, &edge(), &spine_path);
        let src = Source::open(&edge().display().to_string()).expect("source");
        let loaded = features::load_tables(&s, &src, &[]).expect("load");
        let spine_df = features::read_spine(&spine_path).expect("spine");
        let exp = features::training_set(&s, &loaded, &spine_df, "spine.csv", Some("churned_90d"))
            .expect("training set");
        assert_eq!(exp.height(), n);
        let t = Target::Spine {
            table: "spine".into(),
            labels: vec!["churned_90d".into()],
        };
        let q = sql::compile(&s, Dialect::Duckdb, &t).expect("compiles");
        let got = run_sql(&py, &q, &edge(), Some(&spine_path), tmp.path());
        let cells = assert_equal(&got, &exp, &format!("{name} training set"));
        let churned = got
            .column("churned_90d")
            .unwrap()
            .i64()
            .unwrap()
            .sum()
            .unwrap_or(0);
        assert!(
            churned > 0 && (churned as usize) < n,
            "both label values occur"
        );
        eprintln!("{name} training set: {n} rows, {cells} cells equal");
    }
}

/// A copy of the edge fixtures whose orders have at most one order a customer a day (so
/// first/last are not ties) and channels with quotes and a backslash.
fn constructs_source(dir: &Path) -> PathBuf {
    let src = dir.join("src");
    std::fs::create_dir_all(&src).expect("dir");
    for t in ["customers", "interactions", "support_tickets"] {
        std::fs::copy(
            edge().join(format!("{t}.parquet")),
            src.join(format!("{t}.parquet")),
        )
        .expect("copy");
    }
    let f = std::fs::File::open(edge().join("orders.parquet")).expect("orders");
    let orders = ParquetReader::new(f).finish().expect("orders");
    let mut orders = orders
        .lazy()
        .with_column(col("order_ts").dt().date().alias("_day"))
        .unique_stable(
            Some(cols(["customer_id", "_day"])),
            UniqueKeepStrategy::First,
        )
        .with_row_index("_i", None)
        .with_column(
            when((col("_i") % lit(3)).eq(lit(0)))
                .then(lit("it's"))
                .when((col("_i") % lit(5)).eq(lit(0)))
                .then(lit("a\\b"))
                .otherwise(col("channel"))
                .alias("channel"),
        )
        .drop(cols(["_day", "_i"]))
        .collect()
        .expect("orders edited");
    ParquetWriter::new(std::fs::File::create(src.join("orders.parquet")).expect("out"))
        .finish(&mut orders)
        .expect("write orders");
    src
}

const CONSTRUCTS: &str = r#"
name = "constructs"
version = 3
owner = "tests"
description = "Every construct of the language, for the SQL compiler"

[[feature]]
name = "quoted_orders"
table = "orders"
agg = "count"
where = "channel == 'it''s' or channel in ('a\\b', 'x''y')"

[[feature]]
name = "not_quoted_spend_90d"
table = "orders"
agg = "sum"
column = "amount"
where = "status == 'completed' and not (channel == 'it''s')"
window_days = 90

[[feature]]
name = "channels"
table = "orders"
agg = "distinct_count"
column = "channel"

[[feature]]
name = "first_channel"
table = "orders"
agg = "first"
column = "channel"
where = "status != 'cancelled'"

[[feature]]
name = "last_amount_180d"
table = "orders"
agg = "last"
column = "amount"
window_days = 180

[[feature]]
name = "min_channel"
table = "orders"
agg = "min"
column = "channel"

[[feature]]
name = "max_amount_prev_90d"
table = "orders"
agg = "max"
column = "amount * 2"
window_days = 90
offset_days = 90

[[feature]]
name = "mean_day_spend_365d"
table = "orders"
agg = "mean"
column = "amount"
where = "status == 'completed'"
window_days = 365
per_day = "sum"

[[feature]]
name = "max_day_spend"
table = "orders"
agg = "max"
column = "amount"
per_day = "sum"

[[feature]]
name = "repeat_days_count"
table = "orders"
agg = "count"
column = "amount"
per_day = "sum"
exclude_first_day = true

[[feature]]
name = "csat_mean_resolved_180d"
table = "support_tickets"
ts = "resolved_ts"
agg = "mean"
column = "csat"
window_days = 180

[[feature]]
name = "slow_tickets"
table = "support_tickets"
agg = "count"
where = "resolved_ts is not null and days_ago - days_ago(resolved_ts) > 3"

[[feature]]
name = "any_click_30d"
table = "interactions"
agg = "any"
where = "event_type == 'email_click'"
window_days = 30

[[feature]]
name = "country"
table = "customers"
agg = "first"
column = "country"

[[feature]]
name = "tenure_weeks"
expr = "if(tenure > 0, tenure / 7, null)"

[[feature]]
name = "tenure"
hidden = true
table = "customers"
agg = "first"
column = "days_ago"

[[feature]]
name = "mix"
expr = "coalesce(csat_mean_resolved_180d, 0.0) + abs(max_amount_prev_90d - 100.0) - min(channels, 2, null) + max(null, channels)"

[[feature]]
name = "spend_score"
quantile_of = "not_quoted_spend_90d"
bins = 4

[[feature]]
name = "channel_score"
quantile_of = "channels"
bins = 3
better = "lower"
among = "channels > 0 and not is_null(first_channel)"

[[feature]]
name = "kind"
cases = [
  { when = "channels is null or channels == 0" },
  { when = "spend_score == 4 and channel_score >= 2", then = "it's \"top\"" },
  { when = "spend_score in (2, 3)", then = "mid" },
]
else = "low"

[[label]]
name = "bought_30d"
table = "orders"
where = "status == 'completed'"
horizon_days = 30
kind = "any_event"
"#;

#[test]
fn every_construct_and_quoted_literals_in_duckdb_equal_polars() {
    let Some(py) = python() else { return };
    let tmp = tempfile::tempdir().expect("tmp");
    let source = constructs_source(tmp.path());
    let def_path = tmp.path().join("constructs.toml");
    std::fs::write(&def_path, CONSTRUCTS).expect("write set");
    let s = def::load(&def_path).expect("the test set is valid");
    let dates: Vec<NaiveDate> = DATES.iter().map(|d| date(d)).collect();
    let q = sql::compile(&s, Dialect::Duckdb, &Target::Snapshot(dates)).expect("compiles");
    assert!(
        q.contains("'it''s'") && q.contains("'it''s \"top\"'"),
        "{q}"
    );
    let got = run_sql(&py, &q, &source, None, tmp.path());
    let exp = snapshots(&s, &source, &DATES);
    let cells = assert_equal(&got, &exp, "every construct at three dates");
    // The data exercise the constructs: quoted values counted, ties scored, cases taken.
    let total = |c: &str| {
        got.column(c)
            .unwrap()
            .as_materialized_series()
            .sum::<f64>()
            .unwrap()
    };
    assert!(total("quoted_orders") > 100.0, "quoted channels counted");
    for c in [
        "first_channel",
        "kind",
        "spend_score",
        "mean_day_spend_365d",
    ] {
        assert!(
            got.column(c).unwrap().null_count() < got.height(),
            "{c} has values"
        );
    }
    let kinds = got
        .column("kind")
        .unwrap()
        .as_materialized_series()
        .n_unique()
        .unwrap();
    assert!(kinds >= 4, "cases taken: {kinds}");
    eprintln!("constructs: {cells} cells equal");

    // The training set with its label (scores from the population at each date).
    let spine_path = tmp.path().join("spine.csv");
    let n = write_spine(&s, &source, &spine_path);
    let src = Source::open(&source.display().to_string()).expect("source");
    let loaded = features::load_tables(&s, &src, &[]).expect("load");
    let spine_df = features::read_spine(&spine_path).expect("spine");
    let exp = features::training_set(&s, &loaded, &spine_df, "spine.csv", Some("bought_30d"))
        .expect("training set");
    let t = Target::Spine {
        table: "spine".into(),
        labels: vec!["bought_30d".into()],
    };
    let q = sql::compile(&s, Dialect::Duckdb, &t).expect("compiles");
    let got = run_sql(&py, &q, &source, Some(&spine_path), tmp.path());
    assert_eq!(got.height(), n);
    assert_equal(&got, &exp, "every construct, training set");
}

/// Whether the tests' Python has sqlglot (skips loudly without it; a failure under CI).
fn has_sqlglot(py: &Path) -> bool {
    let ok = Command::new(py)
        .args(["-c", "import sqlglot"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("CI").is_none(),
            "sqlglot is missing from the test venv: scripts/test.sh installs scripts/requirements-test.txt"
        );
        eprintln!("\n*** SKIPPING the athena dialect checks: no sqlglot in {}. Run scripts/test.sh (it installs scripts/requirements-test.txt). ***\n", py.display());
    }
    ok
}

#[test]
fn athena_and_spark_dialects_parsed_and_transpiled_to_duckdb_equal_polars() {
    let Some(py) = python() else { return };
    if !has_sqlglot(&py) {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let source = constructs_source(tmp.path());
    let def_path = tmp.path().join("constructs.toml");
    std::fs::write(&def_path, CONSTRUCTS).expect("write set");
    let sets = [
        (set("rfm"), edge(), "churned_90d"),
        (set("churn_signals"), edge(), "churned_90d"),
        (def::load(&def_path).expect("valid"), source, "bought_30d"),
    ];
    let dates: Vec<NaiveDate> = DATES.iter().map(|d| date(d)).collect();
    let spine_path = tmp.path().join("spine.csv");
    let runs = sets
        .iter()
        .flat_map(|s| [Dialect::Athena, Dialect::Spark].map(|d| (s, d)));
    for ((s, src_dir, label), d) in runs {
        let q = sql::compile(s, d, &Target::Snapshot(dates.clone())).expect("compiles");
        let got = run_as(&py, d, &q, src_dir, None, tmp.path());
        let exp = snapshots(s, src_dir, &DATES);
        let cells = assert_equal(&got, &exp, &format!("{} ({d}) at three dates", s.name));
        eprintln!("{} {d} snapshot: {cells} cells equal", s.name);

        write_spine(s, src_dir, &spine_path);
        let src = Source::open(&src_dir.display().to_string()).expect("source");
        let loaded = features::load_tables(s, &src, &[]).expect("load");
        let spine_df = features::read_spine(&spine_path).expect("spine");
        let exp = features::training_set(s, &loaded, &spine_df, "spine.csv", Some(label))
            .expect("training set");
        let t = Target::Spine {
            table: "spine".into(),
            labels: vec![label.to_string()],
        };
        let q = sql::compile(s, d, &t).expect("compiles");
        let got = run_as(&py, d, &q, src_dir, Some(&spine_path), tmp.path());
        assert_equal(&got, &exp, &format!("{} ({d}) training set", s.name));
    }
}

#[test]
fn features_sql_prints_the_query_and_refuses_bad_arguments_with_the_reason() {
    let run = |args: &[&str]| {
        let o = crate::features::c360()
            .current_dir(repo())
            .args(["features", "sql"])
            .args(args)
            .output()
            .expect("c360 runs");
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stdout).to_string(),
            String::from_utf8_lossy(&o.stderr).to_string(),
        )
    };
    let (code, out, err) = run(&["rfm", "--as-of", "2024-06-30", "--as-of", "2024-03-31"]);
    assert_eq!(code, Some(0), "{err}");
    let s = set("rfm");
    assert!(out.starts_with(&format!("-- c360 {}", env!("CARGO_PKG_VERSION"))));
    assert!(out.contains(&format!("feature set rfm v1 ({})", s.hash)));
    assert!(out.contains("SQL dialect: duckdb") && out.contains("DATE '2024-03-31' AS as_of"));
    let expected = sql::compile(
        &s,
        Dialect::Duckdb,
        &Target::Snapshot(vec![date("2024-06-30"), date("2024-03-31")]),
    )
    .expect("compiles");
    assert_eq!(out, expected, "the command prints the library's query");

    let (code, out, _) = run(&[
        "churn_signals",
        "--dialect",
        "spark",
        "--spine",
        "ml.spine",
        "--label",
        "churned_90d",
    ]);
    assert_eq!(code, Some(0));
    assert!(out.contains("FROM `ml`.`spine` AS s") && out.contains("AS `churned_90d`"));

    let (_, help, _) = run(&["--help"]);
    for needle in [
        "--dialect",
        "--spine",
        "--label",
        "session time zone UTC",
        "customer_id",
    ] {
        assert!(help.contains(needle), "help mentions {needle}:\n{help}");
    }
    // Usage errors (exit 2) and definitions without an SQL form name the problem.
    for (args, says) in [
        (&["rfm"][..], "--as-of"),
        (
            &["rfm", "--as-of", "2024-06-30", "--dialect", "mysql"][..],
            "unknown SQL dialect \"mysql\"",
        ),
        (
            &["rfm", "--as-of", "2024-06-30", "--label", "churned_90d"][..],
            "--spine",
        ),
        (&["rfm", "--spine", "a;b"][..], "name a table as name"),
        (
            &["rfm", "--spine", "s", "--label", "nope"][..],
            "unknown label \"nope\"",
        ),
        (&["rfm", "--as-of", "2024-02-30"][..], "2024-02-30"),
    ] {
        let (code, _, err) = run(args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?} says {says}: {err}");
    }
    let (code, _, err) = run(&["nope", "--as-of", "2024-06-30"]);
    assert_eq!(code, Some(3), "{err}");
}
