//! One pass for several feature sets (`c360 features build SET... --as-of D` and the
//! `features` step of `c360 run`): equal to the single-set builds cell for cell and byte
//! for byte, reuse decided per set, the CLI's lines, the run ledger, and bad input.

use std::path::{Path, PathBuf};

use c360::features;
use c360::pipeline::{Step, StepDetail};
use c360::source::Source;
use polars::prelude::*;
use sha2::{Digest, Sha256};

use crate::features::{assert_ok, c360, edge, set};
use crate::pipeline::TestProject;

const AS_OF: &str = "2024-06-30";

/// Generated data: `customers` customers, seed `seed`.
fn generated(customers: u32, seed: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = c360()
        .args([
            "generate",
            "--customers",
            &customers.to_string(),
            "--seed",
            &seed.to_string(),
            "--out",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_ok(&out);
    dir
}

/// `c360 features build <sets> --as-of AS_OF` (plus `extra`): exit code and stdout+stderr.
fn build(source: &Path, store: &Path, sets: &[&str], extra: &[&str]) -> (i32, String) {
    let out = c360()
        .args(["features", "build"])
        .args(sets)
        .args(["--as-of", AS_OF, "--source"])
        .arg(source)
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

fn partition(store: &Path, s: &str, as_of: &str) -> PathBuf {
    store.join(format!("features/{s}/v1/as_of={as_of}"))
}

fn manifest(store: &Path, s: &str) -> serde_json::Value {
    let p = partition(store, s, AS_OF).join("_manifest.json");
    serde_json::from_slice(&std::fs::read(p).expect("manifest")).expect("json")
}

/// The committed part files' bytes, in manifest order.
fn part_bytes(store: &Path, s: &str) -> Vec<Vec<u8>> {
    let m = manifest(store, s);
    m["files"]
        .as_array()
        .expect("files")
        .iter()
        .map(|f| std::fs::read(partition(store, s, AS_OF).join(f.as_str().unwrap())).unwrap())
        .collect()
}

fn frame(bytes: &[Vec<u8>]) -> DataFrame {
    let mut out: Option<DataFrame> = None;
    for b in bytes {
        let df = ParquetReader::new(std::io::Cursor::new(b.clone()))
            .finish()
            .unwrap();
        match &mut out {
            None => out = Some(df),
            Some(o) => {
                o.vstack_mut(&df).unwrap();
            }
        }
    }
    out.expect("a part")
}

fn sha(bytes: &[Vec<u8>]) -> Vec<String> {
    bytes
        .iter()
        .map(|b| hex::encode(Sha256::digest(b)))
        .collect()
}

/// The line `features build` prints for a set.
fn line<'a>(out: &'a str, s: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(&format!("{s} v1 as of {AS_OF}: ")))
        .unwrap_or_else(|| panic!("no line for {s}: {out}"))
}

/// Asserts two stores hold the same snapshot of `s`: same rows, schema, definition and
/// source, and the same Parquet bytes (different runs).
fn assert_same_snapshot(a: &Path, b: &Path, s: &str) {
    let (ma, mb) = (manifest(a, s), manifest(b, s));
    for k in [
        "rows",
        "schema",
        "definition_hash",
        "source_fingerprints",
        "as_of",
    ] {
        assert_eq!(ma[k], mb[k], "{s}: manifest {k}");
    }
    assert_ne!(ma["run_id"], mb["run_id"], "{s}: two builds, two runs");
    let (ba, bb) = (part_bytes(a, s), part_bytes(b, s));
    let (fa, fb) = (frame(&ba), frame(&bb));
    assert_eq!(fa.height() as u64, ma["rows"].as_u64().unwrap());
    assert!(fa.equals_missing(&fb), "{s}: cell for cell\n{fa}\n{fb}");
    assert_eq!(sha(&ba), sha(&bb), "{s}: byte for byte");
    let checks: Vec<&str> = ma["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            ma["file_checks"][f.as_str().unwrap()]["sha256"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(
        checks,
        sha(&ba),
        "{s}: the manifest lists the bytes' SHA-256"
    );
}

#[test]
fn multi_set_build_equals_the_single_set_builds_cell_for_cell_and_byte_for_byte() {
    let data = generated(3000, 17);
    let (single, multi, again) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    for s in ["rfm", "churn_signals"] {
        let (code, out) = build(data.path(), single.path(), &[s], &[]);
        assert_eq!(code, 0, "{out}");
        // One set: the output is one line, as before several sets were accepted.
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(line(&out, s).contains(" rows built in "), "{out}");
        // The single-set rebuild is byte-identical (what the multi-set build must match).
        let (code, out) = build(data.path(), again.path(), &[s], &[]);
        assert_eq!(code, 0, "{out}");
        assert_same_snapshot(single.path(), again.path(), s);
    }
    let (code, out) = build(data.path(), multi.path(), &["rfm", "churn_signals"], &[]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.lines().count(), 2, "{out}");
    for s in ["rfm", "churn_signals"] {
        let m = manifest(multi.path(), s);
        let l = line(&out, s);
        assert!(
            l.contains(&format!(": {} rows built in ", m["rows"])),
            "{l}"
        );
        assert!(
            l.ends_with(&format!("features/{s}/v1/as_of={AS_OF}")),
            "{l}"
        );
        assert_same_snapshot(single.path(), multi.path(), s);
    }
    // rfm's snapshot holds every customer signed up by the date; both sets agree on who.
    let ids = |s: &str| {
        frame(&part_bytes(multi.path(), s))
            .column("customer_id")
            .unwrap()
            .as_materialized_series()
            .sort(Default::default())
            .unwrap()
    };
    assert!(ids("rfm").equals(&ids("churn_signals")));
    assert!(ids("rfm").len() > 1000, "{}", ids("rfm").len());
}

#[test]
fn shared_load_snapshots_equal_single_set_snapshots_at_several_dates() {
    let data = generated(1500, 23);
    let sources = [data.path().to_path_buf(), edge()];
    let (rfm, churn) = (set("rfm"), set("churn_signals"));
    for source in &sources {
        let src = Source::open(&source.display().to_string()).unwrap();
        for d in ["2024-06-30", "2024-03-31", "2023-12-31"] {
            let d: chrono::NaiveDate = d.parse().unwrap();
            let single: Vec<DataFrame> = [&rfm, &churn]
                .iter()
                .map(|s| {
                    let loaded = features::load_tables(s, &src, &[]).unwrap();
                    features::snapshot(s, &loaded, d).unwrap()
                })
                .collect();
            // Both orders: the first set sees a shared table, the last one owns it.
            let both = features::snapshots(&[&rfm, &churn], &src, d).unwrap();
            let rev = features::snapshots(&[&churn, &rfm], &src, d).unwrap();
            assert_eq!(both.len(), 2);
            for (i, (name, r)) in [("rfm", 1), ("churn_signals", 0)].iter().enumerate() {
                let what = format!("{name} at {d} over {}", source.display());
                assert!(single[i].height() > 0, "{what}");
                assert!(single[i].equals_missing(&both[i]), "{what}: shared load");
                assert!(single[i].equals_missing(&rev[*r]), "{what}: other order");
            }
        }
    }
}

#[test]
fn a_committed_set_is_reused_and_the_others_built() {
    let data = generated(800, 29);
    let (store, single) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (code, out) = build(data.path(), store.path(), &["rfm"], &[]);
    assert_eq!(code, 0, "{out}");
    let rfm_run = manifest(store.path(), "rfm")["run_id"].clone();
    let rfm_bytes = sha(&part_bytes(store.path(), "rfm"));

    // A set named twice is built once and listed once.
    let (code, out) = build(
        data.path(),
        store.path(),
        &["rfm", "churn_signals", "rfm"],
        &[],
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.lines().count(), 2, "{out}");
    assert!(
        line(&out, "rfm").contains("rows already committed (same definition and source)"),
        "{out}"
    );
    assert!(line(&out, "churn_signals").contains("rows built"), "{out}");
    assert_eq!(
        manifest(store.path(), "rfm")["run_id"],
        rfm_run,
        "untouched"
    );
    assert_eq!(sha(&part_bytes(store.path(), "rfm")), rfm_bytes);
    let (code, out) = build(data.path(), single.path(), &["churn_signals"], &[]);
    assert_eq!(code, 0, "{out}");
    assert_same_snapshot(single.path(), store.path(), "churn_signals");

    // Both committed: both reused; forced: both rebuilt, to the same bytes.
    let churn_run = manifest(store.path(), "churn_signals")["run_id"].clone();
    let (code, out) = build(data.path(), store.path(), &["churn_signals", "rfm"], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(line(&out, "rfm").contains("already committed"), "{out}");
    assert!(
        line(&out, "churn_signals").contains("already committed"),
        "{out}"
    );
    // Printed in the order named.
    assert!(out.starts_with("churn_signals v1"), "{out}");
    let (code, out) = build(
        data.path(),
        store.path(),
        &["churn_signals", "rfm"],
        &["--force"],
    );
    assert_eq!(code, 0, "{out}");
    assert!(line(&out, "rfm").contains("rows built"), "{out}");
    assert_ne!(manifest(store.path(), "rfm")["run_id"], rfm_run);
    assert_ne!(manifest(store.path(), "churn_signals")["run_id"], churn_run);
    assert_eq!(sha(&part_bytes(store.path(), "rfm")), rfm_bytes);
    assert_same_snapshot(single.path(), store.path(), "churn_signals");

    // A damaged committed snapshot is built again; the intact one is still reused.
    let rfm_run = manifest(store.path(), "rfm")["run_id"].clone();
    let churn_run = manifest(store.path(), "churn_signals")["run_id"].clone();
    let m = manifest(store.path(), "churn_signals");
    let part =
        partition(store.path(), "churn_signals", AS_OF).join(m["files"][0].as_str().unwrap());
    std::fs::write(&part, b"not parquet").unwrap();
    let (code, out) = build(data.path(), store.path(), &["rfm", "churn_signals"], &[]);
    assert_eq!(code, 0, "{out}");
    assert!(line(&out, "rfm").contains("already committed"), "{out}");
    assert!(line(&out, "churn_signals").contains("rows built"), "{out}");
    assert_eq!(manifest(store.path(), "rfm")["run_id"], rfm_run);
    assert_ne!(manifest(store.path(), "churn_signals")["run_id"], churn_run);
    assert_same_snapshot(single.path(), store.path(), "churn_signals");
}

#[test]
fn a_run_builds_every_set_of_its_model_in_one_pass_and_its_ledger_lists_each() {
    let p = TestProject::new(|j| j);
    p.generate(400);
    let (code, out) = p.run("2024-09-30");
    assert_eq!(code, 0, "{out}");
    let ledgers = p.ledgers();
    assert_eq!(ledgers.len(), 1);
    let Some(StepDetail::Features(detail)) =
        ledgers[0].step(Step::Features).map(|s| s.detail.clone())
    else {
        panic!("no features detail: {:?}", ledgers[0]);
    };
    let names: Vec<&str> = detail.keys().map(|k| k.as_str()).collect();
    assert_eq!(names, ["churn_signals", "rfm"]);
    let store = p.store();
    for (s, d) in &detail {
        assert!(!d.reused, "{s}: built by the run");
        let part = partition(&store, s, "2024-09-30");
        let m: serde_json::Value =
            serde_json::from_slice(&std::fs::read(part.join("_manifest.json")).unwrap()).unwrap();
        assert_eq!(m["run_id"], d.run_id.as_str(), "{s}");
        assert_eq!(m["rows"], d.rows, "{s}");
        assert_eq!(m["definition_hash"], d.definition_hash.as_str(), "{s}");
        assert_eq!(d.definition_hash, set(s).hash, "{s}");
        assert!(d.rows > 300, "{s}: {}", d.rows);
        assert_eq!(
            d.source_fingerprints.keys().collect::<Vec<_>>(),
            set(s).tables().into_iter().collect::<Vec<_>>(),
            "{s}: the fingerprints of the tables it reads"
        );
        assert!(
            d.snapshot.ends_with(&format!("{s}/v1/as_of=2024-09-30")),
            "{}",
            d.snapshot
        );
    }
    // Same snapshots as single-set builds of the run's source.
    let single = tempfile::tempdir().unwrap();
    for s in ["rfm", "churn_signals"] {
        let out = c360()
            .args(["features", "build", s, "--as-of", "2024-09-30", "--source"])
            .arg(p.path().join("data"))
            .arg("--store")
            .arg(single.path())
            .output()
            .unwrap();
        assert_ok(&out);
        let a = part_bytes_at(&store, s, "2024-09-30");
        let b = part_bytes_at(single.path(), s, "2024-09-30");
        assert_eq!(sha(&a), sha(&b), "{s}: byte for byte");
    }
}

fn part_bytes_at(store: &Path, s: &str, as_of: &str) -> Vec<Vec<u8>> {
    let part = partition(store, s, as_of);
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(part.join("_manifest.json")).unwrap()).unwrap();
    m["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| std::fs::read(part.join(f.as_str().unwrap())).unwrap())
        .collect()
}

#[test]
fn a_bad_table_read_by_one_set_names_it_and_commits_no_set() {
    // The edge source with one support ticket's csat out of range (only churn_signals
    // reads support_tickets).
    let dir = tempfile::tempdir().unwrap();
    for t in ["customers", "orders", "interactions", "support_tickets"] {
        let src = edge().join(format!("{t}.parquet"));
        let dst = dir.path().join(format!("{t}.parquet"));
        if t == "support_tickets" {
            let mut df = LazyFrame::scan_parquet(
                PlRefPath::new(src.display().to_string()),
                Default::default(),
            )
            .unwrap()
            .with_column(
                when(col("ticket_id").eq(col("ticket_id").first()))
                    .then(lit(7i64))
                    .otherwise(col("csat"))
                    .alias("csat"),
            )
            .collect()
            .unwrap();
            ParquetWriter::new(std::fs::File::create(&dst).unwrap())
                .finish(&mut df)
                .unwrap();
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
    let store = tempfile::tempdir().unwrap();
    let (code, out) = build(dir.path(), store.path(), &["rfm", "churn_signals"], &[]);
    assert_eq!(code, 4, "bad input: {out}");
    for needle in ["support_tickets", "csat", "outside 1..5"] {
        assert!(out.contains(needle), "{needle}: {out}");
    }
    assert!(!out.contains("panicked"), "{out}");
    // The tables are checked before any set is computed: nothing is committed.
    assert!(
        !store.path().join("features").exists(),
        "nothing committed after bad input"
    );
    // rfm alone does not read the bad table: it builds.
    let (code, out) = build(dir.path(), store.path(), &["rfm"], &[]);
    assert_eq!(code, 0, "{out}");

    // An unknown set among several is named, before anything is read.
    let store = tempfile::tempdir().unwrap();
    let (code, out) = build(edge().as_path(), store.path(), &["rfm", "no_such_set"], &[]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains("no_such_set"), "{out}");
    assert!(!store.path().join("features").exists(), "{out}");
}

/// A feature file: `name`, version 1, the given `[[feature]]` blocks.
fn set_file(dir: &Path, name: &str, features: &[&str]) {
    let mut text = format!("name = \"{name}\"\nversion = 1\n");
    for f in features {
        text.push_str(&format!("\n[[feature]]\n{f}\n"));
    }
    std::fs::write(dir.join(format!("{name}.toml")), text).unwrap();
}

#[test]
fn aggregations_shared_between_sets_under_other_names_keep_each_sets_bytes() {
    let data = generated(2500, 31);
    let project = tempfile::tempdir().unwrap();
    let defs = project.path().join("features");
    std::fs::create_dir(&defs).unwrap();
    let completed = "table = \"orders\"\nwhere = \"status == 'completed'\"";
    // `a` computes first; `b` has two of its aggregations under other names (taken from
    // `a`) and two float ones (computed: a float sum or max is never shared); every
    // aggregation of `c` is `a`'s (its orders aggregate is not computed at all).
    set_file(
        &defs,
        "a",
        &[
            &format!("name = \"last_purchase\"\n{completed}\nagg = \"min\"\ncolumn = \"days_ago\""),
            &format!("name = \"n_completed\"\n{completed}\nagg = \"count\""),
            &format!("name = \"spend\"\n{completed}\nagg = \"sum\"\ncolumn = \"amount\""),
            "name = \"channels\"\ntable = \"orders\"\nagg = \"distinct_count\"\ncolumn = \"channel\"",
            "name = \"returns_90d\"\ntable = \"orders\"\nagg = \"count\"\nwhere = \"status == 'returned'\"\nwindow_days = 90",
        ],
    );
    set_file(
        &defs,
        "b",
        &[
            &format!("name = \"recency\"\n{completed}\nagg = \"min\"\ncolumn = \"days_ago\""),
            &format!("name = \"completed_orders\"\n{completed}\nagg = \"count\""),
            &format!("name = \"spend_b\"\n{completed}\nagg = \"sum\"\ncolumn = \"amount\""),
            &format!("name = \"top_amount\"\n{completed}\nagg = \"max\"\ncolumn = \"amount\""),
            "name = \"recency_weeks\"\nexpr = \"recency / 7\"",
        ],
    );
    set_file(
        &defs,
        "c",
        &[
            &format!("name = \"days_since\"\n{completed}\nagg = \"min\"\ncolumn = \"days_ago\""),
            &format!("name = \"orders\"\n{completed}\nagg = \"count\""),
        ],
    );
    let config = project.path().join("c360.toml");
    std::fs::write(&config, "[paths]\nfeatures = \"features\"\n").unwrap();
    let run = |store: &Path, sets: &[&str]| {
        let out = c360()
            .env("C360_LOG", "c360=debug")
            .args(["features", "build"])
            .args(sets)
            .arg("--config")
            .arg(&config)
            .args(["--as-of", AS_OF, "--source"])
            .arg(data.path())
            .arg("--store")
            .arg(store)
            .output()
            .unwrap();
        assert_ok(&out);
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let multi = tempfile::tempdir().unwrap();
    let log = run(multi.path(), &["a", "b", "c"]);
    // b: its plain orders aggregate computes two columns and takes two from a; c: none.
    assert!(log.contains("reused=2"), "{log}");
    assert!(log.contains("aggregate taken from an earlier set"), "{log}");
    for s in ["a", "b", "c"] {
        let single = tempfile::tempdir().unwrap();
        let log = run(single.path(), &[s]);
        assert!(
            !log.contains("reused=") || log.contains("reused=0"),
            "{log}"
        );
        assert_same_snapshot(single.path(), multi.path(), s);
    }
    // The shared values are the same values under each set's names.
    let (a, b, c) = (
        frame(&part_bytes(multi.path(), "a")),
        frame(&part_bytes(multi.path(), "b")),
        frame(&part_bytes(multi.path(), "c")),
    );
    let same = |x: &DataFrame, xn: &str, y: &DataFrame, yn: &str| {
        assert!(
            x.column(xn)
                .unwrap()
                .as_materialized_series()
                .equals_missing(y.column(yn).unwrap().as_materialized_series()),
            "{xn} vs {yn}"
        );
    };
    same(&a, "last_purchase", &b, "recency");
    same(&a, "last_purchase", &c, "days_since");
    same(&a, "n_completed", &c, "orders");
    same(&a, "spend", &b, "spend_b");
    let n = a
        .column("n_completed")
        .unwrap()
        .i64()
        .unwrap()
        .sum()
        .unwrap();
    assert!(n > 1000, "completed orders counted: {n}");
}
