//! Training-set batches computed on several workers, and the training set written in
//! spine order straight from the batches' outputs: on generated data and a spine in no
//! particular order (dates descending, customers interleaved, repeated rows), the frame
//! is the same, cell for cell, with 1, 2 and 3 workers and batches of 1, 7 and 40
//! customers and one batch; the CLI's Parquet and CSV outputs equal the in-process frame
//! and leave no temporary file, on success and on failure; spine rows naming unknown or
//! not-yet-signed-up customers are counted and the first one is named.

use std::path::Path;

use c360::features::{self, FeatureError};
use c360::source::Source;
use chrono::NaiveDate;
use polars::prelude::*;

use crate::features::{assert_ok, c360, set};
use crate::training_sets::{assert_same, days, epoch, read, strs};

const LABEL: &str = "churned_90d";

/// Generated data (`customers` of them) in a temporary folder.
fn generated(customers: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    let out = c360()
        .args(["generate", "--customers", customers, "--seed", "7", "--out"])
        .arg(dir.path())
        .output()
        .expect("generate");
    assert_ok(&out);
    dir
}

/// Four month-ends before the label's reach, latest first; every customer signed up by
/// each date, customers taken in an interleaved order (odd rows then even rows), and
/// every 5th row repeated at the end.
fn spine(dir: &Path) -> DataFrame {
    let customers = read(dir, "customers");
    let orders = read(dir, "orders");
    let last = days(&orders, "order_ts")
        .into_iter()
        .flatten()
        .max()
        .expect("orders");
    let ids = strs(&customers, "customer_id");
    let signup = days(&customers, "signup_ts");
    let order: Vec<usize> = (0..ids.len())
        .filter(|i| i % 2 == 1)
        .chain((0..ids.len()).filter(|i| i % 2 == 0))
        .collect();
    let (mut sid, mut sday) = (Vec::new(), Vec::new());
    for back in [100, 130, 161, 191] {
        let d = last - back;
        for &i in &order {
            if signup[i].is_some_and(|s| s <= d) {
                sid.push(ids[i].clone());
                sday.push(d);
            }
        }
    }
    let n = sid.len();
    for i in (0..n).step_by(5) {
        sid.push(sid[i].clone());
        sday.push(sday[i]);
    }
    crate::training_sets::spine_frame(sid, sday)
}

/// The rows of `spine` whose customer is one of its first `n` distinct customers.
fn first_customers(spine: &DataFrame, n: usize) -> DataFrame {
    let mut seen: Vec<String> = Vec::new();
    for id in strs(spine, "customer_id") {
        if seen.len() == n {
            break;
        }
        if !seen.contains(&id) {
            seen.push(id);
        }
    }
    spine
        .clone()
        .lazy()
        .filter(
            col("customer_id").is_in(lit(Series::new("ids".into(), seen)).implode(false), false),
        )
        .collect()
        .expect("small spine")
}

#[test]
fn workers_give_the_same_frame_at_every_batch_size() {
    let dir = generated("160");
    let src = Source::open(&dir.path().display().to_string()).expect("source");
    let spine = spine(dir.path());
    let small = first_customers(&spine, 12);
    // rfm has quantile scores (population snapshots sliced per batch); churn_signals not.
    for name in ["churn_signals", "rfm"] {
        let fs = set(name);
        let loaded = features::load_tables(&fs, &src, &[]).expect("tables load");
        let run = |spine: &DataFrame, batch: Option<usize>, workers: usize| {
            features::training_set_workers(
                &fs,
                &loaded,
                spine,
                "spine",
                Some(LABEL),
                batch,
                workers,
            )
            .expect("training set")
        };
        let whole = run(&spine, None, 1);
        assert_eq!(
            whole.height(),
            spine.height(),
            "{name}: a row per spine row"
        );
        assert_eq!(
            strs(&whole, "customer_id"),
            strs(&spine, "customer_id"),
            "{name}: spine order"
        );
        assert_eq!(
            days(&whole, "as_of"),
            spine
                .column("_as_of")
                .expect("as_of")
                .i32()
                .expect("days")
                .iter()
                .collect::<Vec<_>>(),
            "{name}: spine dates"
        );
        for workers in [1, 2, 3] {
            for batch in [Some(7), Some(40), Some(1_000_000)] {
                let got = run(&spine, batch, workers);
                assert_same(
                    &got,
                    &whole,
                    &format!("{name}: batches of {batch:?} on {workers} workers vs one batch"),
                );
            }
            let one = run(&small, Some(1), workers);
            let want = run(&small, None, 1);
            assert_same(
                &one,
                &want,
                &format!("{name}: batches of 1 on {workers} workers vs one batch"),
            );
        }
    }
}

/// `c360 features training-set` to `out`; the output (stderr when it failed).
fn cli(src: &Path, spine: &Path, out: &Path, workers: &str) -> std::process::Output {
    c360()
        .env(features::WORKERS_ENV, workers)
        .env(features::BATCH_ENV, "9")
        .args([
            "features",
            "training-set",
            "churn_signals",
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
        .expect("run c360")
}

fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("list")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("tmp"))
        .collect()
}

#[test]
fn cli_outputs_equal_the_frame_and_leave_no_temporary_file() {
    let dir = generated("90");
    let spine = spine(dir.path());
    let out = tempfile::tempdir().expect("tmp");
    let spine_path = out.path().join("spine.csv");
    let dates: Vec<String> = spine
        .column("_as_of")
        .expect("as_of")
        .i32()
        .expect("days")
        .into_no_null_iter()
        .map(|d| (epoch() + chrono::Duration::days(i64::from(d))).to_string())
        .collect();
    let text: String = std::iter::once("customer_id,as_of".to_string())
        .chain(
            strs(&spine, "customer_id")
                .into_iter()
                .zip(&dates)
                .map(|(i, d)| format!("{i},{d}")),
        )
        .map(|l| l + "\n")
        .collect();
    std::fs::write(&spine_path, text).expect("spine");
    let fs = set("churn_signals");
    let src = Source::open(&dir.path().display().to_string()).expect("source");
    let loaded = features::load_tables(&fs, &src, &[]).expect("tables load");
    let want = features::training_set_workers(&fs, &loaded, &spine, "spine", Some(LABEL), None, 1)
        .expect("training set");
    for workers in ["1", "2"] {
        let pq = out.path().join(format!("train-{workers}.parquet"));
        assert_ok(&cli(dir.path(), &spine_path, &pq, workers));
        let got = ParquetReader::new(std::fs::File::open(&pq).expect("open"))
            .finish()
            .expect("parquet");
        assert_same(&got, &want, &format!("CLI Parquet, {workers} workers"));
        let csv = out.path().join(format!("train-{workers}.csv"));
        assert_ok(&cli(dir.path(), &spine_path, &csv, workers));
        let got = CsvReadOptions::default()
            .with_has_header(true)
            .try_into_reader_with_file_path(Some(csv.clone()))
            .expect("csv")
            .finish()
            .expect("csv read");
        assert_eq!(got.shape(), want.shape(), "CLI CSV shape");
        assert_eq!(
            strs(&got, "customer_id"),
            strs(&want, "customer_id"),
            "CLI CSV spine order"
        );
    }
    assert!(
        leftovers(out.path()).is_empty(),
        "{:?}",
        leftovers(out.path())
    );
    // A write that fails at the end (the output name is taken by a folder): an error
    // naming the output, and neither a file nor a temporary file left behind.
    let taken = out.path().join("taken.parquet");
    std::fs::create_dir(&taken).expect("folder");
    std::fs::write(taken.join("keep"), "x").expect("file");
    let o = cli(dir.path(), &spine_path, &taken, "2");
    assert!(!o.status.success(), "writing over a folder must fail");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("taken.parquet"), "names the output: {err}");
    assert!(taken.join("keep").exists(), "the folder is left as it was");
    assert!(
        leftovers(out.path()).is_empty(),
        "{:?}",
        leftovers(out.path())
    );
}

#[test]
fn unknown_and_early_customers_are_counted_and_the_first_named() {
    let dir = generated("60");
    let fs = set("churn_signals");
    let src = Source::open(&dir.path().display().to_string()).expect("source");
    let loaded = features::load_tables(&fs, &src, &[]).expect("tables load");
    let spine = spine(dir.path());
    let ids = strs(&spine, "customer_id");
    let day = |d: &str| (d.parse::<NaiveDate>().expect("date") - epoch()).num_days() as i32;
    let good = spine
        .column("_as_of")
        .expect("as_of")
        .i32()
        .expect("d")
        .get(0)
        .expect("day");
    // Row 3: an unknown customer; row 5: a known one long before anyone signed up.
    let mut sid = ids[..6].to_vec();
    let mut sday = vec![good; 6];
    sid[2] = "no-such-customer".into();
    sday[4] = day("1990-01-01");
    let bad = crate::training_sets::spine_frame(sid.clone(), sday);
    for (batch, workers) in [(None, 1), (Some(2), 2)] {
        let e = features::training_set_workers(
            &fs,
            &loaded,
            &bad,
            "bad.csv",
            Some(LABEL),
            batch,
            workers,
        )
        .expect_err("refused");
        let msg = e.to_string();
        assert!(matches!(e, FeatureError::Spine { .. }), "{msg}");
        assert!(msg.contains("bad.csv"), "{msg}");
        assert!(msg.contains("2 row(s)"), "counts both: {msg}");
        assert!(
            msg.contains("customer_id=\"no-such-customer\"")
                && msg.contains(&format!(
                    "{}",
                    epoch() + chrono::Duration::days(i64::from(good))
                )),
            "names the first bad row (spine order): {msg}"
        );
    }
}
