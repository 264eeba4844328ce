//! Issue 19, kinds 6 and 8: commits that never trust too much (concurrent publishers and
//! builders, damaged parts found on reuse, old-layout stores) and no run left `running`
//! (a panic in a step, a panic under `serve`, a SIGKILLed run).

use std::path::Path;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use c360::offline::{self, Manifest};
use c360::product::{self, ColumnDoc, Lineage, ProductSpec};
use c360::store::{LocalStore, ObjectStore};
use chrono::NaiveDate;
use polars::prelude::*;
use serde_json::{json, Value};

use crate::pipeline::TestProject;
use crate::service::{configure, wait_for, Http, Service, OPS};

const PRODUCT: &str = "customer_churn_scores";

pub fn spec(name: &str) -> ProductSpec {
    let col = |n: &str, t: &str| ColumnDoc {
        name: n.into(),
        description: n.into(),
        logical_type: t.parse().unwrap(),
        required: true,
        allowed: vec![],
        range: None,
        classification: Default::default(),
    };
    ProductSpec {
        name: name.parse().expect("a valid product name"),
        major: 1,
        domain: "marketing".into(),
        owner: "team".into(),
        description: "test product".into(),
        consumers: vec!["crm".into()],
        retention_days: 30,
        freshness_days: 1,
        schedule: "0 3 * * *".into(),
        columns: vec![col("customer_id", "string"), col("score", "number")],
        classification: Default::default(),
        lf_tags: Default::default(),
    }
}

/// A publisher's frame: its own row count and scores, so a mix is visible.
pub fn frame(rows: usize, tag: f64) -> DataFrame {
    let ids: Vec<String> = (0..rows).map(|i| format!("C{i:07}")).collect();
    let scores: Vec<f64> = (0..rows).map(|i| tag + i as f64 * 1e-4).collect();
    df!("customer_id" => ids, "score" => scores).unwrap()
}

fn lineage(run_id: &str) -> Lineage {
    Lineage {
        job: "j".into(),
        run_id: run_id.into(),
        ..Default::default()
    }
}

/// Every file the manifest lists exists with the listed size and SHA-256.
fn assert_checks_hold(store: &dyn ObjectStore, prefix: &str, m: &Manifest) {
    assert!(!m.files.is_empty(), "{prefix}: no files");
    assert_eq!(m.file_checks.len(), m.files.len(), "{prefix}: {m:?}");
    for f in &m.files {
        let bytes = store
            .get(&format!("{prefix}/{f}"))
            .unwrap_or_else(|e| panic!("{prefix}/{f}: {e}"));
        let c = &m.file_checks[f];
        assert_eq!(bytes.len() as u64, c.size, "{prefix}/{f}");
        assert_eq!(offline::sha256_hex(&bytes), c.sha256, "{prefix}/{f}");
    }
    assert_eq!(offline::verify_partition(store, prefix, m).unwrap(), None);
}

/// Runs `a` and `b` at the same moment on two threads.
fn race<A: Send, B: Send>(a: impl FnOnce() -> A + Send, b: impl FnOnce() -> B + Send) -> (A, B) {
    let barrier = Barrier::new(2);
    std::thread::scope(|s| {
        let ha = s.spawn(|| {
            barrier.wait();
            a()
        });
        let hb = s.spawn(|| {
            barrier.wait();
            b()
        });
        (ha.join().unwrap(), hb.join().unwrap())
    })
}

/// `product::publish` of `df` as of `d` by run `run`, with empty statistics.
fn publish_at(
    store: &dyn ObjectStore,
    sp: &ProductSpec,
    df: DataFrame,
    d: NaiveDate,
    run: &str,
) -> product::Result<product::Published> {
    product::publish(store, sp, &df, d, &lineage(run), json!({}))
}

#[test]
fn concurrent_publishers_never_leave_latest_naming_data_that_differs_from_its_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    let (both, refused) = paired_publishes(&store, 60);
    eprintln!(
        "60 paired publishes (local): {both} both committed in turn, {refused} with one refused"
    );
}

/// The same pairs through S3 (moto): conditional puts are `If-None-Match`/`If-Match` there.
#[test]
fn concurrent_publishers_on_s3_never_leave_latest_naming_data_that_differs_from_its_manifest() {
    let Some(m) = crate::aws::moto() else { return };
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let bucket = format!(
        "c360-paired-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    m.create_bucket(&bucket);
    let store = c360::store::S3Store::open(&format!("s3://{bucket}/store"), &m.settings()).unwrap();
    let (both, refused) = paired_publishes(&store, 8);
    eprintln!("8 paired publishes (S3): {both} both committed in turn, {refused} with one refused");
}

/// `pairs` times: two publishers (different run ids, different frames) of the same product
/// and date at once; after each pair latest.json names a partition whose manifest's files
/// all check out and hold exactly one publisher's rows. Returns (pairs where both
/// committed in turn, pairs where one was refused).
fn paired_publishes(store: &dyn ObjectStore, pairs: u32) -> (u32, u32) {
    let sp = spec("paired");
    let base = NaiveDate::from_ymd_opt(2024, 1, 1).unwrap();
    let (mut both_ok, mut one_refused) = (0, 0);
    for i in 0..pairs {
        let as_of = base + chrono::Duration::days(i as i64);
        let fa = frame(40 + (i as usize % 7), 0.1);
        let fb = frame(55 + (i as usize % 5), 0.6);
        let (ra, rb) = (format!("{as_of}-a{i:07}"), format!("{as_of}-b{i:07}"));
        // Every other pair contends over a partition an earlier run already committed.
        let old = frame(10, 0.9);
        if i % 2 == 1 {
            product::publish(store, &sp, &old, as_of, &lineage("old"), json!({})).unwrap();
        }
        let (a, b) = race(
            || product::publish(store, &sp, &fa, as_of, &lineage(&ra), json!({})),
            || {
                // Every third pair staggers the second publisher a little, so that it
                // sometimes replaces the first one's fresh commit while latest.json moves.
                if i % 3 == 2 {
                    std::thread::sleep(Duration::from_millis((i % 8) as u64 * 3));
                }
                product::publish(store, &sp, &fb, as_of, &lineage(&rb), json!({}))
            },
        );
        for r in [&a, &b] {
            if let Err(e) = r {
                assert!(
                    e.to_string().contains("another writer committed"),
                    "pair {i}: {e}"
                );
            }
        }
        assert!(a.is_ok() || b.is_ok(), "pair {i}: nobody published");
        if a.is_ok() && b.is_ok() {
            both_ok += 1;
        } else {
            one_refused += 1;
        }
        let latest = product::latest(store, "paired").unwrap().unwrap();
        assert_eq!(latest.as_of, as_of, "pair {i}");
        let m = offline::read_manifest(store, &latest.path)
            .unwrap()
            .unwrap();
        assert_checks_hold(store, &latest.path, &m);
        // latest.json describes the committed manifest, not a loser's.
        assert_eq!(
            (latest.run_id.as_str(), latest.rows),
            (m.run_id.as_str(), m.rows),
            "pair {i}"
        );
        let (_, got) = product::read_latest(store, "paired").unwrap();
        assert!(m.run_id == ra || m.run_id == rb, "pair {i}: {}", m.run_id);
        let expected = if m.run_id == ra { &fa } else { &fb };
        assert!(
            got.equals(expected),
            "pair {i}: rows of {} differ",
            m.run_id
        );
    }
    (both_ok, one_refused)
}

fn snapshot_manifest(run_id: &str, as_of: NaiveDate) -> Manifest {
    Manifest {
        kind: "feature_snapshot".into(),
        name: "paired_set".into(),
        version: 1,
        as_of,
        files: vec![],
        file_checks: Default::default(),
        rows: 0,
        schema: vec![],
        definition_hash: "sha256:d".into(),
        source: "s".into(),
        source_fingerprints: Default::default(),
        model: None,
        run_id: run_id.into(),
        created_by: offline::c360_version(),
        created_at: chrono::Utc::now(),
        extra: Default::default(),
    }
}

#[test]
fn concurrent_snapshot_builds_commit_exactly_one_whole_partition() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    let as_of = NaiveDate::from_ymd_opt(2024, 6, 30).unwrap();
    for i in 0..60u32 {
        let prefix = offline::partition_prefix("paired_set", 1, as_of);
        let fa = frame(30 + (i as usize % 3), 0.2);
        let fb = frame(70 + (i as usize % 4), 0.7);
        let (ra, rb) = (format!("ra{i}"), format!("rb{i}"));
        let before = offline::read_manifest(&store, &prefix).unwrap();
        let (a, b) = race(
            || {
                offline::commit_partition(
                    &store,
                    &prefix,
                    &fa,
                    snapshot_manifest(&ra, as_of),
                    &|_, _| {},
                )
            },
            || {
                offline::commit_partition(
                    &store,
                    &prefix,
                    &fb,
                    snapshot_manifest(&rb, as_of),
                    &|_, _| {},
                )
            },
        );
        assert!(a.is_ok() || b.is_ok(), "pair {i}: nobody committed");
        for e in [a.as_ref().err(), b.as_ref().err()].into_iter().flatten() {
            assert!(
                matches!(e, offline::OfflineError::ConcurrentCommit { .. }),
                "{e}"
            );
        }
        let m = offline::read_manifest(&store, &prefix).unwrap().unwrap();
        assert_checks_hold(&store, &prefix, &m);
        let got = offline::read_partition(&store, &prefix, &m).unwrap();
        let expected = if m.run_id == ra { &fa } else { &fb };
        assert!(m.run_id == ra || m.run_id == rb, "pair {i}: {}", m.run_id);
        assert!(got.equals(expected), "pair {i}");
        // The previously committed parts are untouched (never rewritten nor deleted).
        if let Some(old) = before {
            assert_checks_hold(&store, &prefix, &old);
        }
    }
}

#[test]
fn readers_name_a_damaged_part_and_reuse_redoes_it_under_a_new_location() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    let sp = spec("dmg");
    let as_of = NaiveDate::from_ymd_opt(2024, 3, 1).unwrap();
    let f = frame(25, 0.3);
    let first = product::publish(&store, &sp, &f, as_of, &lineage("r1"), json!({})).unwrap();
    assert_eq!(first.redone, None);
    let key = format!("{}/{}", first.prefix, first.manifest.files[0]);
    assert!(first.manifest.files[0].starts_with("run=r1-"), "{key}");
    let good = store.get(&key).unwrap();
    store.put(&key, &good[..good.len() / 2]).unwrap();
    // A reader refuses it, naming the key and the sizes.
    let e = product::read_latest(&store, "dmg").unwrap_err().to_string();
    assert!(
        e.contains(&key) && e.contains("damaged") && e.contains(&good.len().to_string()),
        "{e}"
    );
    // The same run publishing again verifies, notices and redoes it elsewhere.
    let again = product::publish(&store, &sp, &f, as_of, &lineage("r1"), json!({})).unwrap();
    let why = again.redone.expect("redone");
    assert!(why.contains(&key) && why.contains("truncated"), "{why}");
    assert_ne!(again.manifest.files, first.manifest.files);
    assert_eq!(
        store.get(&key).unwrap().len(),
        good.len() / 2,
        "never rewritten"
    );
    let (_, got) = product::read_latest(&store, "dmg").unwrap();
    assert!(got.equals(&f));
    // Intact: reused as it is.
    let third = product::publish(&store, &sp, &f, as_of, &lineage("r1"), json!({})).unwrap();
    assert_eq!(
        (third.redone, third.manifest.files),
        (None, again.manifest.files.clone())
    );
    // A changed byte (same size) is caught by the checksum.
    let k2 = format!("{}/{}", again.prefix, again.manifest.files[0]);
    let mut b = store.get(&k2).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0xff;
    store.put(&k2, &b).unwrap();
    let why = offline::verify_partition(&store, &again.prefix, &again.manifest)
        .unwrap()
        .unwrap();
    assert!(why.contains("SHA-256") && why.contains(&k2), "{why}");
    // A missing part too.
    store.delete(&k2).unwrap();
    let e = product::read_latest(&store, "dmg").unwrap_err().to_string();
    assert!(e.contains(&k2) && e.contains("missing"), "{e}");
    // An unreadable manifest is named by readers, and replaced by the next publish.
    let mkey = format!("{}/_manifest.json", again.prefix);
    store.put(&mkey, b"{not json").unwrap();
    let e = product::read_latest(&store, "dmg").unwrap_err().to_string();
    assert!(e.contains(&mkey), "{e}");
    product::publish(&store, &sp, &f, as_of, &lineage("r1"), json!({})).unwrap();
    let (_, got) = product::read_latest(&store, "dmg").unwrap();
    assert!(got.equals(&f));
}

fn copy_dir(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let t = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&t).unwrap();
            copy_dir(&e.path(), &t);
        } else {
            std::fs::copy(e.path(), t).unwrap();
        }
    }
}

#[test]
fn an_old_layout_store_without_checksums_still_reads_and_is_replaced_without_rewrites() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(
        &crate::common::fixture_dir().join("old_layout_store"),
        dir.path(),
    );
    let store = LocalStore::new(dir.path());
    // The product: latest.json, a manifest listing plain `part-0.parquet`, no checks.
    let (l, df) = product::read_latest(&store, "old_scores").unwrap();
    assert_eq!((l.rows, l.run_id.as_str()), (3, "2024-09-29-0ld00001"));
    let expected = df!(
        "customer_id" => ["C0000001", "C0000002", "C0000003"],
        "churn_score" => [0.125, 0.5, 0.875]
    )
    .unwrap();
    assert!(df.equals(&expected), "{df}");
    let row = product::get_customer(&store, "old_scores", "C0000002").unwrap();
    assert_eq!(row["churn_score"], 0.5);
    let m = offline::read_manifest(&store, &l.path).unwrap().unwrap();
    assert!(m.file_checks.is_empty());
    assert_eq!(
        offline::verify_partition(&store, &l.path, &m).unwrap(),
        None
    );
    // The feature snapshot.
    let as_of = NaiveDate::from_ymd_opt(2024, 9, 29).unwrap();
    let sp = offline::partition_prefix("rfm", 1, as_of);
    let sm = offline::read_manifest(&store, &sp).unwrap().unwrap();
    let snap = offline::read_partition(&store, &sp, &sm).unwrap();
    assert_eq!(snap.height(), 2);
    assert_eq!(
        snap.column("monetary").unwrap().f64().unwrap().get(1),
        Some(99.0)
    );
    assert_eq!(
        offline::committed_dates(&store, "rfm", 1).unwrap(),
        vec![as_of]
    );
    // A new run re-publishing the date replaces the manifest; the old part stays as it was.
    let old_part = dir
        .path()
        .join("products/old_scores/v1/as_of=2024-09-29/part-0.parquet");
    let old_bytes = std::fs::read(&old_part).unwrap();
    let mut new = frame(4, 0.4);
    new.rename("score", "churn_score".into()).unwrap();
    let mut sp2 = spec("old_scores");
    sp2.columns[1].name = "churn_score".into();
    let p = product::publish(
        &store,
        &sp2,
        &new,
        as_of,
        &lineage("2024-09-29-new00001"),
        json!({}),
    )
    .unwrap();
    assert!(p.latest_moved);
    assert_eq!(std::fs::read(&old_part).unwrap(), old_bytes);
    let (l, df) = product::read_latest(&store, "old_scores").unwrap();
    assert_eq!(l.run_id, "2024-09-29-new00001");
    assert!(df.equals(&new));
}

// ---- through the binary ----

fn ledger_files(p: &TestProject) -> Vec<Value> {
    p.ledgers()
        .iter()
        .map(|l| serde_json::to_value(l).unwrap())
        .collect()
}

fn ledger_of(p: &TestProject, run_id: &str) -> Value {
    serde_json::from_slice(
        &std::fs::read(
            p.store()
                .join(format!("runs/churn_weekly/{run_id}/run.json")),
        )
        .unwrap(),
    )
    .unwrap()
}

fn step<'a>(l: &'a Value, name: &str) -> &'a Value {
    l["steps"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no step {name}: {l}"))
}

fn committed(store: &Path, partition: &str) -> Value {
    serde_json::from_slice(&std::fs::read(store.join(partition).join("_manifest.json")).unwrap())
        .unwrap()
}

#[test]
fn a_reused_run_whose_published_part_was_truncated_is_detected_and_redone() {
    let p = TestProject::new(|j| j);
    p.generate(300);
    let (code, out) = p.run("2024-09-29");
    assert_eq!(code, 0, "{out}");
    let latest = p.latest().unwrap();
    let partition = latest["path"].as_str().unwrap().to_string();
    let m = committed(&p.store(), &partition);
    let file = m["files"][0].as_str().unwrap().to_string();
    let part = p.store().join(&partition).join(&file);
    let first_id = {
        let df = ParquetReader::new(std::fs::File::open(&part).unwrap())
            .finish()
            .unwrap();
        df.column("customer_id")
            .unwrap()
            .str()
            .unwrap()
            .get(0)
            .unwrap()
            .to_string()
    };
    // Truncate the published part, and the feature snapshot's part too.
    let bytes = std::fs::read(&part).unwrap();
    std::fs::write(&part, &bytes[..bytes.len() / 3]).unwrap();
    let snap_prefix = "features/churn_signals/v1/as_of=2024-09-29";
    let sm = committed(&p.store(), snap_prefix);
    let snap_part = p
        .store()
        .join(snap_prefix)
        .join(sm["files"][0].as_str().unwrap());
    let sb = std::fs::read(&snap_part).unwrap();
    std::fs::write(&snap_part, &sb[..sb.len() - 100]).unwrap();

    // A reader names the damaged key (exit 1).
    let get = |id: &str| {
        p.cmd()
            .args(["products", "get", PRODUCT, id])
            .output()
            .unwrap()
    };
    let out = get(&first_id);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("{partition}/{file}")) && err.contains("damaged"),
        "{err}"
    );

    // The same run again: not "nothing redone"; detected, redone, exit 0.
    let (code, out) = p.run("2024-09-29");
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("nothing redone"), "{out}");
    assert!(out.contains("damaged"), "the log says why: {out}");
    assert!(!out.contains("latest not moved"), "{out}");
    let ledgers = ledger_files(&p);
    assert_eq!(ledgers.len(), 1);
    let l = &ledgers[0];
    assert_eq!(l["status"], "succeeded");
    let notes = l["notes"].to_string();
    assert!(notes.contains("redone") && notes.contains(&file), "{l}");
    assert!(step(l, "publish")["detail"]["redone"]
        .as_str()
        .unwrap()
        .contains("truncated"));
    assert_eq!(
        step(l, "features")["detail"]["churn_signals"]["reused"],
        false,
        "snapshot rebuilt"
    );
    // Readable again, from new locations; the damaged files were not rewritten.
    let m2 = committed(&p.store(), &partition);
    assert_ne!(m2["files"][0], m["files"][0]);
    assert_eq!(std::fs::read(&part).unwrap().len(), bytes.len() / 3);
    let sm2 = committed(&p.store(), snap_prefix);
    assert_ne!(sm2["files"][0], sm["files"][0]);
    let store = LocalStore::new(p.store());
    for (prefix, man) in [(partition.as_str(), &m2), (snap_prefix, &sm2)] {
        let man: Manifest = serde_json::from_value(man.clone()).unwrap();
        assert_checks_hold(&store, prefix, &man);
    }
    let out = get(&first_id);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(&first_id));
    // And intact now: the next identical run reuses it.
    let (code, out) = p.run("2024-09-29");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("already published"), "{out}");
}

#[test]
fn a_panic_in_a_step_fails_the_run_with_the_reason_and_exit_1() {
    let p = TestProject::new(|j| j);
    p.generate(300);
    let out = p
        .cmd()
        .env("C360_FAILPOINT", "panic:transform")
        .args(["run", "churn_weekly", "--as-of", "2024-09-29"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("panicked: failpoint: panic at step transform"),
        "{err}"
    );
    let ls = ledger_files(&p);
    assert_eq!(ls.len(), 1);
    let l = &ls[0];
    assert_eq!(l["status"], "failed", "{l}");
    assert!(
        l["error"]
            .as_str()
            .unwrap()
            .starts_with("transform: panicked: failpoint: panic at step transform"),
        "{l}"
    );
    assert_eq!(step(l, "transform")["status"], "failed");
    assert_eq!(step(l, "transform_input")["status"], "done");
    assert!(p.latest().is_none(), "nothing published");
    // Without the fault the next invocation finishes it (the done steps kept).
    let (code, out) = p.run("2024-09-29");
    assert_eq!(code, 0, "{out}");
    let l = &ledger_files(&p)[0];
    assert_eq!(
        (l["status"].as_str(), l["attempts"].as_u64()),
        (Some("succeeded"), Some(2))
    );
}

#[test]
fn a_run_that_panics_under_serve_shows_failed_in_the_api() {
    let p = TestProject::new(|j| j);
    p.generate(300);
    configure(&p, "scheduler = false");
    let s = Service::start(&p, &[("C360_FAILPOINT", "panic:gates")]);
    let h = Http::new();
    let r = h.send(
        "POST",
        &s.url("/jobs/churn_weekly/runs"),
        Some(OPS),
        Some("{\"as_of\": \"2024-09-29\"}"),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let run_id = r.json()["run_id"].as_str().unwrap().to_string();
    let l = run_ended(&h, &s, &run_id, "the run to end", 300);
    assert_eq!(l["status"], "failed", "{l}");
    assert!(
        l["error"]
            .as_str()
            .unwrap()
            .contains("gates: panicked: failpoint: panic at step gates"),
        "{l}"
    );
    assert_eq!(step(&l, "gates")["status"], "failed");
    // The service stays up and free to run the job again.
    assert_eq!(h.get(&s.url("/healthz"), None).status, 200);
    let m = wait_for("the failed run in the metrics", 60, || {
        let m = h.get(&s.url("/metrics"), None).body;
        m.contains("c360_runs_total{job=\"churn_weekly\",status=\"failed\",trigger=\"api\"} 1")
            .then_some(m)
    });
    assert!(!m.is_empty());
}

/// The record of `churn_weekly`'s run `run_id` from the service's API, once the run has
/// ended (`failed` or `succeeded`), waiting up to `secs` seconds for `what`.
fn run_ended(h: &Http, s: &Service, run_id: &str, what: &str, secs: u64) -> Value {
    wait_for(what, secs, || {
        let l = h
            .get(
                &s.url(&format!("/jobs/churn_weekly/runs/{run_id}")),
                Some(OPS),
            )
            .json();
        // Not "not running": a run just triggered is briefly 404 (no ledger yet).
        (l["status"] == "failed" || l["status"] == "succeeded").then_some(l)
    })
}

/// Starts `c360 run` for `as_of` that sleeps in its transform step, waits until the
/// ledger shows it there, and SIGKILLs it. Returns the run id.
fn kill_mid_transform(p: &TestProject, as_of: &str) -> String {
    let mut child = p
        .cmd()
        .env("C360_FAILPOINT", "sleep:transform:120000")
        .args(["run", "churn_weekly", "--as-of", as_of])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();
    let deadline = Instant::now() + Duration::from_secs(300);
    let run_id = loop {
        let found = ledger_files(p).into_iter().find(|l| {
            l["as_of"] == as_of
                && l["steps"].as_array().is_some_and(|s| {
                    s.iter()
                        .any(|s| s["name"] == "transform" && s["status"] == "running")
                })
        });
        if let Some(l) = found {
            break l["run_id"].as_str().unwrap().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "the run never reached its transform step"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let l = ledger_of(p, &run_id);
    assert_eq!(l["status"], "running");
    assert!(
        l["owner"].as_str().unwrap().contains(&format!(":{pid}:")),
        "the ledger names its owner: {l}"
    );
    run_id
}

#[test]
fn a_sigkilled_run_is_resumed_by_the_next_run_of_it_or_marked_failed_by_another() {
    let p = TestProject::new(|j| j.replace("max_mean_shift = 0.15", "max_mean_shift = 0.5"));
    p.generate(300);
    // Same run id next: resumed (the done steps kept), and the ledger says so.
    let a = kill_mid_transform(&p, "2024-09-29");
    let (code, out) = p.run("2024-09-29");
    assert_eq!(code, 0, "{out}");
    let l = ledger_of(&p, &a);
    assert_eq!(
        (l["status"].as_str(), l["attempts"].as_u64()),
        (Some("succeeded"), Some(2))
    );
    assert!(l["notes"].to_string().contains("resumed by"), "{l}");
    // Another run id next (another as-of date): the dead run is marked failed.
    let b = kill_mid_transform(&p, "2024-09-22");
    let (code, out) = p.run("2024-09-30");
    assert_eq!(code, 0, "{out}");
    let l = ledger_of(&p, &b);
    assert_eq!(l["status"], "failed", "{l}");
    let err = l["error"].as_str().unwrap();
    assert!(
        err.starts_with("transform: interrupted: no live owner") && err.contains("is gone"),
        "{err}"
    );
    assert_eq!(step(&l, "transform")["status"], "failed");
    assert!(l["finished_at"].is_string());
    // No ledger is left running.
    for l in ledger_files(&p) {
        assert_ne!(l["status"], "running", "{l}");
    }
}

/// Under `serve`: a SIGKILLed `c360 run` of another date is found when the service runs
/// the job, and reported failed by the API, never `running` without an owner.
#[test]
fn a_sigkilled_cli_run_is_reported_failed_by_serve_once_it_runs_the_job() {
    let p = TestProject::new(|j| j.replace("max_mean_shift = 0.15", "max_mean_shift = 0.5"));
    p.generate(300);
    let dead = kill_mid_transform(&p, "2024-09-22");
    configure(&p, "scheduler = false");
    let s = Service::start(&p, &[]);
    let h = Http::new();
    // The service resumes the interrupted run itself (same inputs, same run id).
    let l = run_ended(&h, &s, &dead, "the interrupted run to be resumed", 300);
    assert_eq!(l["status"], "succeeded", "{l}");
    assert!(l["notes"].to_string().contains("resumed by"), "{l}");
}

/// Under `serve`: an interrupted run that cannot be resumed (its model is gone) is marked
/// failed, so the API never reports it `running` without an owner.
#[test]
fn an_interrupted_run_serve_cannot_resume_is_reported_failed() {
    let p = TestProject::new(|j| j);
    p.use_local_model();
    p.generate(300);
    let dead = kill_mid_transform(&p, "2024-09-22");
    std::fs::remove_file(p.path().join("models/churn_xgb/xgboost-model.json")).unwrap();
    configure(&p, "scheduler = false");
    let s = Service::start(&p, &[]);
    let h = Http::new();
    let l = run_ended(
        &h,
        &s,
        &dead,
        "the interrupted run to be marked failed",
        120,
    );
    assert_eq!(l["status"], "failed", "{l}");
    assert!(
        l["error"]
            .as_str()
            .unwrap()
            .starts_with("transform: interrupted: no live owner"),
        "{l}"
    );
}

/// `features build` of the same set, date and source by two builders at once: both end
/// with the one committed snapshot (the later one reuses it), whole and checked.
#[test]
fn concurrent_builds_of_one_snapshot_both_end_with_the_committed_one() {
    let data = tempfile::tempdir().unwrap();
    let out = crate::features::c360()
        .args(["generate", "--customers", "200", "--seed", "9", "--out"])
        .arg(data.path())
        .output()
        .unwrap();
    crate::features::assert_ok(&out);
    let src = data.path().to_str().unwrap().to_string();
    let set = crate::features::set("rfm");
    let as_of = NaiveDate::from_ymd_opt(2024, 6, 30).unwrap();
    let mut reference: Option<DataFrame> = None;
    for i in 0..6 {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::new(dir.path());
        let (a, b) = race(
            || {
                c360::features::build_snapshot(&set, &src, &store, as_of, false)
                    .map_err(|e| e.to_string())
            },
            || {
                c360::features::build_snapshot(&set, &src, &store, as_of, false)
                    .map_err(|e| e.to_string())
            },
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_eq!(
            a.manifest, b.manifest,
            "pair {i}: both name the committed snapshot"
        );
        let prefix = offline::partition_prefix("rfm", set.version, as_of);
        let m = offline::read_manifest(&store, &prefix).unwrap().unwrap();
        assert_eq!(m, a.manifest);
        assert_checks_hold(&store, &prefix, &m);
        let df = offline::read_partition(&store, &prefix, &m).unwrap();
        assert_eq!(df.height() as u64, m.rows);
        match &reference {
            None => reference = Some(df),
            Some(r) => assert!(r.equals_missing(&df), "pair {i}"),
        }
    }
}

// ------------------------------------------------ latest.json checked against its manifest

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2024, 5, d).unwrap()
}

fn latest_json(store: &dyn ObjectStore, product: &str) -> Value {
    serde_json::from_slice(
        &store
            .get(&format!("products/{product}/latest.json"))
            .unwrap(),
    )
    .unwrap()
}

fn put_latest(store: &dyn ObjectStore, product: &str, v: &Value) {
    store
        .put(
            &format!("products/{product}/latest.json"),
            &serde_json::to_vec_pretty(v).unwrap(),
        )
        .unwrap();
}

#[test]
fn a_latest_json_naming_another_version_is_refused_by_readers_and_repaired_by_publish() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    let sp = spec("ptr");
    publish_at(&store, &sp, frame(10, 0.1), day(1), "r1").unwrap();
    let second = publish_at(&store, &sp, frame(20, 0.2), day(2), "r2").unwrap();
    let good = latest_json(&store, "ptr");
    assert_eq!(good["path"], second.prefix.as_str());
    let snap = "features/rfm/v1/as_of=2024-05-02";
    let mut sm = snapshot_manifest("r2", day(2));
    sm.name = "rfm".into();
    offline::commit_manifest(&store, snap, &serde_json::to_vec(&sm).unwrap(), None).unwrap();

    // path to another as-of partition, to a feature snapshot, to a partition of no
    // manifest; or a run id / row count that is not the manifest's: every reader refuses.
    let other = product::partition_prefix("ptr", 1, day(1));
    let cases: Vec<(Value, &str)> = vec![
        (json!({"path": other}), "as of 2024-05-01"),
        (json!({"path": snap}), "feature_snapshot"),
        (
            json!({"path": "products/ptr/v1/as_of=2024-05-09"}),
            "no committed manifest",
        ),
        (json!({"run_id": "r9"}), "run_id r9"),
        (json!({"rows": 1}), "1 rows"),
    ];
    for (patch, what) in cases {
        let mut bad = good.clone();
        for (k, v) in patch.as_object().unwrap() {
            bad[k] = v.clone();
        }
        put_latest(&store, "ptr", &bad);
        for e in [
            product::read_latest(&store, "ptr").unwrap_err().to_string(),
            product::latest(&store, "ptr").unwrap_err().to_string(),
            product::get_customer(&store, "ptr", "C0000000")
                .unwrap_err()
                .to_string(),
        ] {
            assert!(
                e.contains("products/ptr/latest.json")
                    && e.contains("disagrees")
                    && e.contains(what)
                    && e.contains("re-run the job for 2024-05-02"),
                "{patch}: {e}"
            );
        }
        // The same run publishing its as-of again repairs it (partition untouched).
        let again = publish_at(&store, &sp, frame(20, 0.2), day(2), "r2").unwrap();
        assert_eq!(again.redone, None);
        assert_eq!(again.manifest.files, second.manifest.files);
        let l = product::latest(&store, "ptr").unwrap().unwrap();
        assert_eq!(
            (l.path.as_str(), l.as_of, l.rows),
            (second.prefix.as_str(), day(2), 20)
        );
        assert_eq!(product::read_latest(&store, "ptr").unwrap().1.height(), 20);
    }

    // A disagreeing latest.json of a newer as-of is not moved backwards by an older publish.
    let mut bad = good.clone();
    bad["path"] = json!(other);
    put_latest(&store, "ptr", &bad);
    let older = publish_at(&store, &sp, frame(10, 0.1), day(1), "r3").unwrap();
    assert!(!older.latest_moved);
    assert_eq!(latest_json(&store, "ptr"), bad);
}

#[test]
fn an_unreadable_latest_json_is_rebuilt_by_the_next_publish_never_backwards() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    let sp = spec("unr");
    publish_at(&store, &sp, frame(10, 0.1), day(1), "r1").unwrap();
    let second = publish_at(&store, &sp, frame(20, 0.2), day(2), "r2").unwrap();
    let key = "products/unr/latest.json";
    for junk in [&b"{{{"[..], b""] {
        store.put(key, junk).unwrap();
        // Readers say what is wrong and how to recover.
        let e = product::read_latest(&store, "unr").unwrap_err().to_string();
        assert!(
            e.contains(key) && e.contains("unreadable") && e.contains("re-run"),
            "{e}"
        );
        // A publish of an older as-of rebuilds it from the newest committed version.
        let older = publish_at(&store, &sp, frame(10, 0.1), day(1), "r3").unwrap();
        assert!(!older.latest_moved);
        let l = product::latest(&store, "unr").unwrap().unwrap();
        assert_eq!(
            (l.path.as_str(), l.as_of, l.run_id.as_str(), l.rows),
            (second.prefix.as_str(), day(2), "r2", 20)
        );
    }
    // A publish of a newer as-of: the one just committed.
    store.put(key, b"{{{").unwrap();
    let third = publish_at(&store, &sp, frame(30, 0.3), day(3), "r4").unwrap();
    assert!(third.latest_moved);
    let (l, df) = product::read_latest(&store, "unr").unwrap();
    assert_eq!((l.path, l.as_of, df.height()), (third.prefix, day(3), 30));
}

#[test]
fn a_manifest_whose_row_count_disagrees_is_refused_by_readers_and_redone_on_reuse() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    let sp = spec("cnt");
    let f = frame(248, 0.5);
    let first = product::publish(&store, &sp, &f, day(1), &lineage("r1"), json!({})).unwrap();
    let mkey = offline::manifest_key(&first.prefix);
    let mut m: Value = serde_json::from_slice(&store.get(&mkey).unwrap()).unwrap();
    m["rows"] = json!(1);
    store.put(&mkey, &serde_json::to_vec(&m).unwrap()).unwrap();
    let man: Manifest = serde_json::from_value(m).unwrap();
    let e = offline::read_partition(&store, &first.prefix, &man)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains(&mkey) && e.contains("1 rows") && e.contains("248"),
        "{e}"
    );
    let d = offline::verify_partition(&store, &first.prefix, &man)
        .unwrap()
        .unwrap();
    assert!(d.contains(&mkey) && d.contains("248"), "{d}");
    // latest.json agreeing with the edited manifest: the reader still counts the rows.
    let mut l = latest_json(&store, "cnt");
    l["rows"] = json!(1);
    put_latest(&store, "cnt", &l);
    let e = product::read_latest(&store, "cnt").unwrap_err().to_string();
    assert!(e.contains(&mkey) && e.contains("248"), "{e}");
    // The same run again notices and publishes it again.
    let again = product::publish(&store, &sp, &f, day(1), &lineage("r1"), json!({})).unwrap();
    assert!(again.redone.unwrap().contains("248"));
    assert_eq!(product::read_latest(&store, "cnt").unwrap().1.height(), 248);
}

#[test]
fn a_rerun_of_a_finished_run_repairs_latest_json_and_restores_the_contract() {
    let p = TestProject::new(|j| j);
    p.generate(200);
    let (code, out) = p.run("2024-09-22");
    assert_eq!(code, 0, "{out}");
    let older = p.latest().unwrap();
    let (code, out) = p.run("2024-09-29");
    assert_eq!(code, 0, "{out}");
    let good = p.latest().unwrap();
    let latest_file = p.store().join(format!("products/{PRODUCT}/latest.json"));
    let id = {
        let store = LocalStore::new(p.store());
        let (_, df) = product::read_latest(&store, PRODUCT).unwrap();
        df.column("customer_id")
            .unwrap()
            .str()
            .unwrap()
            .get(0)
            .unwrap()
            .to_string()
    };
    let get = || {
        let out = p
            .cmd()
            .args(["products", "get", PRODUCT, &id])
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    // latest.json names the older partition while keeping its as_of and run_id.
    let mut bad = good.clone();
    bad["path"] = older["path"].clone();
    std::fs::write(&latest_file, serde_json::to_vec_pretty(&bad).unwrap()).unwrap();
    let (code, err) = get();
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(&format!("products/{PRODUCT}/latest.json"))
            && err.contains("disagrees")
            && err.contains("re-run the job for 2024-09-29"),
        "{err}"
    );
    // And the contract is deleted.
    let contract = p.store().join(format!("products/{PRODUCT}/contract.yaml"));
    std::fs::remove_file(&contract).unwrap();
    let (code, out) = p.run("2024-09-29");
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("nothing redone"), "{out}");
    assert!(contract.exists(), "contract restored");
    let repaired = p.latest().unwrap();
    assert_eq!(repaired["path"], good["path"]);
    let (code, err) = get();
    assert_eq!(code, Some(0), "{err}");
    // An unreadable latest.json: readers say how to recover; a re-run of the older as-of
    // rebuilds it to the newest committed version.
    std::fs::write(&latest_file, b"{{{").unwrap();
    let (code, err) = get();
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("unreadable") && err.contains("re-run"),
        "{err}"
    );
    let (code, out) = p.run("2024-09-22");
    assert_eq!(code, 0, "{out}");
    let rebuilt = p.latest().unwrap();
    assert_eq!(rebuilt["path"], good["path"]);
    assert_eq!(rebuilt["as_of"], "2024-09-29");
    let (code, err) = get();
    assert_eq!(code, Some(0), "{err}");
}
