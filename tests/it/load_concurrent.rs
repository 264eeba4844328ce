//! A build's tables are loaded concurrently (`features::load_union`): the same tables as
//! loading them one after the other, and, when several tables are bad, the same error
//! (that of the first bad table in name order), with nothing committed.

use std::path::Path;

use c360::features::{self, cut::RowCut, FeatureSet, Loaded};
use c360::names::AsOf;
use c360::source::Source;
use polars::prelude::*;

use crate::features::{c360, edge, set};

/// A copy of the edge source with the first row of each table in `bad` breaking a rule:
/// an unknown interaction type, a negative order amount, a CSAT of 9.
fn source_with(bad: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("dir");
    for t in ["customers", "interactions", "orders", "support_tickets"] {
        let from = edge().join(format!("{t}.parquet"));
        let to = dir.path().join(format!("{t}.parquet"));
        if !bad.contains(&t) {
            std::fs::copy(&from, &to).expect("copy");
            continue;
        }
        let (column, value) = match t {
            "interactions" => ("event_type", lit("teleport")),
            "orders" => ("amount", lit(-5.0)),
            "support_tickets" => ("csat", lit(9i64)),
            _ => panic!("no rule to break in {t}"),
        };
        let df = LazyFrame::scan_parquet(
            PlRefPath::new(from.display().to_string()),
            Default::default(),
        )
        .expect("scan")
        .collect()
        .expect("read");
        let dtype = df.column(column).expect("column").dtype().clone();
        let mut first = df
            .slice(0, 1)
            .lazy()
            .with_column(value.cast(dtype).alias(column))
            .collect()
            .expect("break a rule");
        first
            .vstack_mut(&df.slice(1, df.height()))
            .expect("the other rows");
        let mut df = first;
        ParquetWriter::new(std::fs::File::create(&to).expect("create"))
            .finish(&mut df)
            .expect("write");
    }
    dir
}

fn load(
    dir: &Path,
    sets: &[&FeatureSet],
    cut: &RowCut,
    workers: usize,
) -> features::Result<Loaded> {
    let src = Source::open(&dir.display().to_string()).expect("source");
    features::load_union_workers(sets, &src, &[], cut, workers)
}

fn day() -> i32 {
    AsOf::from(chrono::NaiveDate::from_ymd_opt(2024, 6, 30).expect("date")).day_number()
}

/// Every table, cut and last day the same, frame for frame (values, order and types).
fn assert_same(a: &Loaded, b: &Loaded, what: &str) {
    let mut names: Vec<_> = a.tables.keys().copied().collect();
    names.sort_unstable();
    let mut other: Vec<_> = b.tables.keys().copied().collect();
    other.sort_unstable();
    assert_eq!(names, other, "{what}: tables");
    assert_eq!(names.len(), 4, "{what}: every table is loaded");
    for n in names {
        let x = a.tables[n].frame.clone().collect().expect("frame");
        let y = b.tables[n].frame.clone().collect().expect("frame");
        assert!(x.height() > 0, "{what}: {n} keeps rows");
        assert_eq!(x.schema(), y.schema(), "{what}: {n} columns");
        assert!(x.equals_missing(&y), "{what}: {n} differs");
        assert_eq!(
            a.tables[n].fingerprint, b.tables[n].fingerprint,
            "{what}: {n} fingerprint"
        );
    }
    assert_eq!(a.last_days, b.last_days, "{what}: last days");
}

#[test]
fn a_concurrent_load_gives_the_tables_of_a_sequential_one() {
    let dir = source_with(&[]);
    let (rfm, churn) = (set("rfm"), set("churn_signals"));
    let sets = [&churn, &rfm];
    let spine = df!(
        "customer_id" => ["C1078", "C1085", "C1090"],
        "_as_of" => [day() - 400, day() - 30, day()],
    )
    .expect("spine");
    let cuts = [
        ("snapshot", RowCut::Snapshot(day())),
        ("every row", RowCut::All),
        (
            "spine",
            features::cut::spine_cut(&churn, &spine, Some("churned_90d")).expect("cut"),
        ),
    ];
    for (what, cut) in &cuts {
        let one = load(dir.path(), &sets, cut, 1).expect("sequential load");
        for workers in [2, 3, 8] {
            let many = load(dir.path(), &sets, cut, workers).expect("concurrent load");
            assert_same(&one, &many, &format!("{what}, {workers} workers"));
        }
    }
    // The spine cut keeps fewer rows than the snapshot's, so the cut really applied.
    let all = load(dir.path(), &sets, &RowCut::All, 2).expect("load");
    let spine = load(dir.path(), &sets, &cuts[2].1, 2).expect("load");
    let rows = |l: &Loaded| {
        l.tables["interactions"]
            .frame
            .clone()
            .collect()
            .expect("f")
            .height()
    };
    assert!(
        rows(&spine) < rows(&all),
        "{} < {}",
        rows(&spine),
        rows(&all)
    );
    assert!(
        spine.last_days.contains_key("orders"),
        "{:?}",
        spine.last_days
    );
}

#[test]
fn several_bad_tables_give_the_error_of_the_first_in_name_order() {
    let (rfm, churn) = (set("rfm"), set("churn_signals"));
    let sets = [&churn, &rfm];
    let cases: [(&[&str], &str); 4] = [
        (&["interactions", "orders"], "interactions"),
        (&["orders", "support_tickets"], "orders"),
        (&["support_tickets", "interactions"], "interactions"),
        (
            &["interactions", "orders", "support_tickets"],
            "interactions",
        ),
    ];
    for (bad, first) in cases {
        let dir = source_with(bad);
        let cut = RowCut::Snapshot(day());
        let text = |workers: usize| match load(dir.path(), &sets, &cut, workers) {
            Err(e) => e.to_string(),
            Ok(_) => panic!("{bad:?}: a bad table must not load ({workers} workers)"),
        };
        let sequential = text(1);
        assert!(
            sequential.starts_with(&format!("table {first}, column ")),
            "{bad:?}: {sequential}"
        );
        for workers in [2, 3] {
            // Repeated: whichever worker finishes first, the same error.
            for _ in 0..3 {
                assert_eq!(text(workers), sequential, "{bad:?}, {workers} workers");
            }
        }
    }
}

#[test]
fn a_multi_set_build_over_two_bad_tables_reports_the_first_and_commits_nothing() {
    let bad = source_with(&["orders", "support_tickets"]);
    let only = source_with(&["orders"]);
    let run = |source: &Path| {
        let store = tempfile::tempdir().expect("store");
        let out = c360()
            .args([
                "features",
                "build",
                "rfm",
                "churn_signals",
                "--as-of",
                "2024-06-30",
            ])
            .arg("--source")
            .arg(source)
            .arg("--store")
            .arg(store.path())
            .output()
            .expect("run");
        let committed = store.path().join("features").exists();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
            committed,
        )
    };
    let (code, err, committed) = run(bad.path());
    assert_eq!(code, Some(4), "{err}");
    assert!(
        err.contains("error: table orders, column amount: "),
        "{err}"
    );
    assert!(!err.contains("support_tickets"), "{err}");
    assert!(!committed, "nothing is committed");
    // The same report as when orders is the only bad table.
    assert_eq!(run(only.path()), (code, err, false));
}
