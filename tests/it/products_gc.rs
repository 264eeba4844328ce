//! Issue 12: `c360 products gc` removes exactly the run directories no reader can reach
//! (superseded re-publishes, killed publishes) once they are older than retention, on local
//! disk and on S3 (moto); every committed version and the latest read back identically.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Output;

use c360::mesh::{Catalog, NoCatalog};
use c360::offline::{self, Manifest};
use c360::product::{self, GcError, GcOptions, KeepReason, Lineage};
use c360::store::{LocalStore, ObjectStore};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use polars::prelude::*;
use serde_json::json;

use crate::features::c360;
use crate::hardening_commits::{frame, spec};

const P: &str = "gc_scores";
const OTHER: &str = "gc_other";

fn date(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

/// Publishes `df` as `run_id`; returns the run directory its manifest names.
fn publish(
    store: &dyn ObjectStore,
    name: &str,
    as_of: &str,
    run_id: &str,
    df: &DataFrame,
) -> String {
    let lineage = Lineage {
        job: "j".into(),
        run_id: run_id.into(),
        ..Default::default()
    };
    let p = product::publish(store, &spec(name), df, date(as_of), &lineage, json!({})).unwrap();
    let dir = p.manifest.files[0].split_once('/').unwrap().0;
    assert!(dir.starts_with(&format!("run={run_id}-")), "{dir}");
    format!("{}/{dir}", p.prefix)
}

/// What a store holds after [`populate`]: the run directories nothing references (what gc
/// must remove) and the committed run directories.
struct Populated {
    unreferenced: BTreeSet<String>,
    committed: BTreeSet<String>,
}

/// Publishes P several times: as-of 06-30 twice (r1 superseded by r2), 07-31 twice (r3
/// superseded by r4, latest), 05-31 once (an older as-of: committed, not latest); plus a
/// killed publish's run directory in a partition with no manifest, an orphan run in a
/// committed partition, an old-layout part at a partition root, a foreign file, and another
/// product with a superseded run (never touched by gc of P).
fn populate(store: &dyn ObjectStore) -> Populated {
    let r1 = publish(store, P, "2024-06-30", "r1", &frame(20, 0.1));
    let r2 = publish(store, P, "2024-06-30", "r2", &frame(25, 0.2));
    let r3 = publish(store, P, "2024-07-31", "r3", &frame(30, 0.3));
    let r4 = publish(store, P, "2024-07-31", "r4", &frame(35, 0.4));
    let r5 = publish(store, P, "2024-05-31", "r5", &frame(15, 0.5));
    publish(store, OTHER, "2024-06-30", "o1", &frame(5, 0.6));
    publish(store, OTHER, "2024-06-30", "o2", &frame(6, 0.7));
    let part = frame(3, 0.9);
    let mut bytes = Vec::new();
    ParquetWriter::new(&mut bytes)
        .finish(&mut part.clone())
        .unwrap();
    let killed = format!("products/{P}/v1/as_of=2024-08-31/run=r6-0badc0de");
    store
        .put(&format!("{killed}/part-0.parquet"), &bytes)
        .unwrap();
    store
        .put(&format!("{killed}/part-1.parquet"), &bytes)
        .unwrap();
    let orphan = format!("products/{P}/v1/as_of=2024-06-30/run=r9-deadbeef");
    store
        .put(&format!("{orphan}/part-0.parquet"), &bytes)
        .unwrap();
    store
        .put(
            &format!("products/{P}/v1/as_of=2024-08-31/part-0.parquet"),
            &bytes,
        )
        .unwrap();
    store
        .put(&format!("products/{P}/notes.txt"), b"kept")
        .unwrap();
    let l = product::latest(store, P).unwrap().unwrap();
    assert_eq!((l.as_of, l.run_id.as_str()), (date("2024-07-31"), "r4"));
    Populated {
        unreferenced: [r1, r3, killed, orphan].into(),
        committed: [r2, r4, r5].into(),
    }
}

/// Every key with its size.
fn listing(store: &dyn ObjectStore) -> BTreeMap<String, u64> {
    store
        .list("")
        .unwrap()
        .into_iter()
        .map(|o| (o.key, o.size))
        .collect()
}

/// Every committed version of P (manifest and rows), and the latest's rows.
fn committed_versions(store: &dyn ObjectStore) -> (Vec<(Manifest, DataFrame)>, DataFrame) {
    let mut out = vec![];
    for (major, as_of) in product::versions(store, P).unwrap() {
        let prefix = product::partition_prefix(P, major, as_of);
        let m = offline::read_manifest(store, &prefix).unwrap().unwrap();
        assert_eq!(
            offline::verify_partition(store, &prefix, &m).unwrap(),
            None,
            "{prefix}"
        );
        let df = offline::read_partition(store, &prefix, &m).unwrap();
        out.push((m, df));
    }
    let (_, latest) = product::read_latest(store, P).unwrap();
    (out, latest)
}

fn assert_same_versions(
    before: &(Vec<(Manifest, DataFrame)>, DataFrame),
    after: &(Vec<(Manifest, DataFrame)>, DataFrame),
) {
    assert_eq!(before.0.len(), 3);
    assert_eq!(before.0.len(), after.0.len());
    for ((m1, d1), (m2, d2)) in before.0.iter().zip(&after.0) {
        assert_eq!(m1, m2);
        assert!(d1.equals_missing(d2), "{} changed", m1.as_of);
    }
    assert!(before.1.equals_missing(&after.1), "the latest changed");
    assert_eq!(after.1.height(), 35, "the latest is r4's 35 rows");
}

fn keys(dirs: &[product::RunDir]) -> BTreeSet<String> {
    dirs.iter().map(|d| d.key.clone()).collect()
}

fn opts(now: DateTime<Utc>, dry_run: bool) -> GcOptions {
    GcOptions {
        retention_days: 30,
        now,
        dry_run,
    }
}

/// The whole cycle on one store: inside retention nothing goes; a dry run lists exactly
/// the unreferenced directories and removes nothing; gc removes exactly them (every object
/// of theirs, nothing else), every committed version reads back identically; a second gc
/// finds nothing.
fn gc_cycle(store: &dyn ObjectStore) {
    let pop = populate(store);
    let before = listing(store);
    let versions = committed_versions(store);

    let r = product::gc(store, &NoCatalog, P, &opts(Utc::now(), false)).unwrap();
    assert!(r.removed.is_empty(), "{:?}", r.removed);
    let kept = r.kept_by_reason();
    assert_eq!(kept.get(&KeepReason::WithinRetention), Some(&4), "{kept:?}");
    assert_eq!(kept.get(&KeepReason::Committed), Some(&3), "{kept:?}");
    assert_eq!(
        listing(store),
        before,
        "inside retention nothing is removed"
    );

    let later = Utc::now() + Duration::days(31);
    let dry = product::gc(store, &NoCatalog, P, &opts(later, true)).unwrap();
    assert!(dry.dry_run);
    assert_eq!(keys(&dry.removed), pop.unreferenced);
    assert_eq!(listing(store), before, "a dry run removes nothing");
    let killed = dry
        .removed
        .iter()
        .find(|d| d.key.ends_with("run=r6-0badc0de"))
        .unwrap();
    assert_eq!(killed.objects, 2);
    assert_eq!(
        killed.bytes,
        2 * before[&format!("{}/part-0.parquet", killed.key)]
    );
    let age = killed.age(later).unwrap();
    assert!(
        age > Duration::days(30) && age < Duration::days(32),
        "{age}"
    );

    let done = product::gc(store, &NoCatalog, P, &opts(later, false)).unwrap();
    assert_eq!(
        done.removed, dry.removed,
        "gc removes what the dry run listed"
    );
    let expected: BTreeMap<String, u64> = before
        .iter()
        .filter(|(k, _)| {
            !pop.unreferenced
                .iter()
                .any(|d| k.starts_with(&format!("{d}/")))
        })
        .map(|(k, s)| (k.clone(), *s))
        .collect();
    assert!(expected.len() < before.len());
    assert_eq!(
        listing(store),
        expected,
        "exactly the unreferenced directories went"
    );
    for d in &pop.committed {
        assert!(!store.list(d).unwrap().is_empty(), "{d} is committed");
    }
    assert_same_versions(&versions, &committed_versions(store));

    let again = product::gc(store, &NoCatalog, P, &opts(later, false)).unwrap();
    assert!(again.removed.is_empty(), "{:?}", again.removed);
    assert_eq!(again.kept.len(), 3);
    assert_eq!(listing(store), expected);
}

#[test]
fn gc_removes_exactly_the_unreferenced_runs_older_than_retention_on_local_disk() {
    let dir = tempfile::tempdir().unwrap();
    gc_cycle(&LocalStore::new(dir.path()));
}

#[test]
fn gc_removes_exactly_the_unreferenced_runs_older_than_retention_on_s3() {
    let Some(m) = crate::aws::moto() else { return };
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let bucket = format!(
        "c360-gc-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    m.create_bucket(&bucket);
    let store = c360::store::S3Store::open(&format!("s3://{bucket}/store"), &m.settings()).unwrap();
    // LastModified is listed, to the second.
    let t0 = Utc::now() - Duration::seconds(2);
    store.put("probe/x", b"x").unwrap();
    let listed = store.list("probe").unwrap();
    let t = listed[0].modified.expect("LastModified");
    assert!(t >= t0 && t <= Utc::now() + Duration::seconds(2), "{t}");
    gc_cycle(&store);
}

/// A run directory the Glue catalog points at is kept (a partition not yet moved, e.g. after
/// an outage between the manifest and the catalog); a catalog gc cannot ask stops it before
/// anything is removed. The real Glue catalog, on moto.
#[test]
fn gc_keeps_what_the_glue_catalog_references_and_refuses_when_it_cannot_ask() {
    use c360::mesh::glue::GlueCatalog;
    use c360::mesh::{CatalogKind, CatalogSettings};
    let Some(m) = crate::aws::moto() else { return };
    let bucket = crate::aws::unique("c360-gc-glue");
    m.create_bucket(&bucket);
    let uri = format!("s3://{bucket}/store");
    let store = c360::store::S3Store::open(&uri, &m.settings()).unwrap();
    let pop = populate(&store);
    let db = crate::aws::unique("gc_products").replace('-', "_");
    let settings = CatalogSettings {
        kind: CatalogKind::Glue,
        products_database: Some(db.clone()),
        features_database: Some(format!("{db}_features")),
        catalog_id: None,
        owner: None,
        lf_tags: false,
    };
    let glue = GlueCatalog::new(&settings, &m.settings(), "proj", &uri).unwrap();
    let june = product::partition_prefix(P, 1, date("2024-06-30"));
    let committed = offline::read_manifest(&store, &june).unwrap().unwrap();
    glue.register_product(&store, &spec(P), &committed)
        .unwrap()
        .unwrap();
    // The partition still names the superseded run r1 (its move did not happen).
    let pinned = pop
        .unreferenced
        .iter()
        .find(|d| d.starts_with(&format!("{june}/run=r1-")))
        .unwrap()
        .clone();
    let (s, d, loc) = (m.settings(), db.clone(), format!("{uri}/{pinned}/"));
    c360::aws::block_on(async move {
        use aws_sdk_glue::types::{PartitionInput, StorageDescriptor};
        let g = c360::aws::glue_client(&s).await.unwrap();
        g.update_partition()
            .database_name(&d)
            .table_name(format!("{P}_v1"))
            .partition_value_list("2024-06-30")
            .partition_input(
                PartitionInput::builder()
                    .values("2024-06-30")
                    .storage_descriptor(StorageDescriptor::builder().location(loc).build())
                    .build(),
            )
            .send()
            .await
            .unwrap();
    });
    let before = listing(&store);
    let later = Utc::now() + Duration::days(31);

    let down_aws = c360::aws::AwsSettings {
        glue_endpoint_url: Some("http://127.0.0.1:1".into()),
        max_attempts: 1,
        ..m.settings()
    };
    let down = GlueCatalog::new(&settings, &down_aws, "proj", &uri).unwrap();
    let e = product::gc(&store, &down, P, &opts(later, false)).unwrap_err();
    assert!(matches!(e, GcError::Catalog { major: 1, .. }), "{e:?}");
    let text = e.to_string();
    assert!(
        text.contains(P) && text.contains("nothing was removed") && text.contains("GetPartitions"),
        "{text}"
    );
    assert_eq!(listing(&store), before);

    let r = product::gc(&store, &glue, P, &opts(later, false)).unwrap();
    let mut want = pop.unreferenced.clone();
    want.remove(&pinned);
    assert_eq!(keys(&r.removed), want);
    assert!(r
        .kept
        .iter()
        .any(|(d, why)| d.key == pinned && *why == KeepReason::Catalog));
    assert!(!store.list(&pinned).unwrap().is_empty());
}

/// A damaged manifest keeps its partition's runs; unknown and invalid names are refused.
#[test]
fn gc_keeps_the_runs_of_an_unreadable_manifest_and_refuses_unknown_products() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    let pop = populate(&store);
    let manifest = format!("products/{P}/v1/as_of=2024-06-30/_manifest.json");
    store.put(&manifest, b"{not json").unwrap();
    let later = Utc::now() + Duration::days(31);
    let r = product::gc(&store, &NoCatalog, P, &opts(later, false)).unwrap();
    let june: BTreeSet<String> = pop
        .unreferenced
        .iter()
        .filter(|d| !d.contains("as_of=2024-06-30"))
        .cloned()
        .collect();
    assert_eq!(keys(&r.removed), june, "the 06-30 runs are all kept");
    assert_eq!(
        r.kept_by_reason().get(&KeepReason::ManifestUnreadable),
        Some(&3)
    );

    let e = product::gc(&store, &NoCatalog, "nope", &opts(later, false)).unwrap_err();
    assert!(matches!(e, GcError::NotFound { .. }), "{e:?}");
    assert!(e.to_string().contains("product nope not found"), "{e}");
    let e = product::gc(&store, &NoCatalog, "../gc_scores", &opts(later, false)).unwrap_err();
    assert!(matches!(e, GcError::BadName { .. }), "{e:?}");
    assert!(e.to_string().contains("product name"), "{e}");
    for (flag, days) in [(Some(7), 7), (None, 30)] {
        let r = product::resolve_retention(&store, P, flag, None).unwrap();
        assert_eq!(r.days, days);
    }
    // A job that publishes the product gives its `[product] retention_days`.
    let jobs = crate::features::repo().join("jobs");
    let r = product::resolve_retention(&store, "customer_churn_scores", None, Some(&jobs)).unwrap();
    assert_eq!(r.days, 365);
    assert!(r.from.ends_with("churn_weekly.toml"), "{}", r.from);
    let e = product::resolve_retention(&store, "nope", None, None).unwrap_err();
    assert!(matches!(e, GcError::NotFound { .. }), "{e:?}");
    let e = product::resolve_retention(&store, "../x", None, None).unwrap_err();
    assert!(matches!(e, GcError::BadName { .. }), "{e:?}");

    // A retention reaching past the calendar keeps everything, without a panic.
    let r = product::gc(
        &store,
        &NoCatalog,
        P,
        &GcOptions {
            retention_days: u32::MAX,
            now: later,
            dry_run: false,
        },
    )
    .unwrap();
    assert!(r.removed.is_empty() && r.cutoff.is_none());
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

/// Through the binary: the retention from the contract, a dry run that lists and keeps, a
/// gc that removes, an unknown product and a product without retention refused (non-zero
/// exit), and the help.
#[test]
fn products_gc_through_the_binary() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("c360.toml"), "[store]\nuri = \"store\"\n").unwrap();
    let store = LocalStore::new(dir.path().join("store"));
    let pop = populate(&store);
    let before = listing(&store);
    let gc = |args: &[&str]| {
        c360()
            .current_dir(dir.path())
            .args(["products", "gc"])
            .args(args)
            .output()
            .unwrap()
    };

    let out = gc(&[P, "--dry-run"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains(&format!(
            "retention 30 day(s) (from products/{P}/contract.yaml)"
        )),
        "{t}"
    );
    assert!(
        t.contains("total: 0 run directories, 0 B would be removed"),
        "{t}"
    );
    assert!(
        t.contains("4 within retention") && t.contains("3 committed"),
        "{t}"
    );

    let out = gc(&[P, "--dry-run", "--retention-days", "0"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    let listed: Vec<&str> = t
        .lines()
        .filter(|l| l.starts_with("would remove"))
        .collect();
    assert_eq!(listed.len(), 4, "{t}");
    for d in &pop.unreferenced {
        let name = d.rsplit('/').next().unwrap();
        assert!(listed.iter().any(|l| l.contains(name)), "{name}: {t}");
    }
    assert!(listed.iter().any(|l| l.contains("as_of 2024-08-31")), "{t}");
    assert!(
        t.contains("total: 4 run directories, ") && t.contains(" would be removed"),
        "{t}"
    );
    assert!(t.contains("(dry run: nothing deleted)"), "{t}");
    assert_eq!(listing(&store), before);

    let out = gc(&[P, "--retention-days", "0"]);
    let t = text(&out);
    eprintln!("{t}");
    assert_eq!(out.status.code(), Some(0), "{t}");
    assert_eq!(
        t.lines().filter(|l| l.starts_with("removed")).count(),
        4,
        "{t}"
    );
    assert!(
        t.contains("total: 4 run directories, ") && t.contains(" removed; kept 3 (3 committed)"),
        "{t}"
    );
    for d in &pop.unreferenced {
        assert!(store.list(d).unwrap().is_empty(), "{d}: {t}");
    }
    assert_eq!(product::read_latest(&store, P).unwrap().1.height(), 35);

    let out = gc(&["nope"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(1), "{t}");
    assert!(t.contains("product nope not found"), "{t}");

    store
        .delete(&format!("products/{OTHER}/contract.yaml"))
        .unwrap();
    let out = gc(&[OTHER]);
    let t = text(&out);
    assert_ne!(out.status.code(), Some(0), "{t}");
    assert!(
        t.contains("no retention known") && t.contains("--retention-days N"),
        "{t}"
    );
    assert!(!store
        .list(&format!("products/{OTHER}/v1"))
        .unwrap()
        .is_empty());

    let out = gc(&["--help"]);
    let t = text(&out);
    assert_eq!(out.status.code(), Some(0), "{t}");
    for want in [
        "--dry-run",
        "--retention-days",
        "latest.json",
        "_manifest.json",
        "Examples:",
    ] {
        assert!(t.contains(want), "{want}: {t}");
    }
}

/// A store whose deletes fail after `left` of them: a gc stopped part-way.
#[derive(Debug)]
struct StopsDeleting {
    inner: LocalStore,
    left: std::sync::atomic::AtomicUsize,
}

impl ObjectStore for StopsDeleting {
    fn uri(&self) -> String {
        self.inner.uri()
    }
    fn get(&self, key: &str) -> c360::store::Result<Vec<u8>> {
        self.inner.get(key)
    }
    fn put(&self, key: &str, data: &[u8]) -> c360::store::Result<()> {
        self.inner.put(key, data)
    }
    fn put_if_absent(&self, key: &str, data: &[u8]) -> c360::store::Result<bool> {
        self.inner.put_if_absent(key, data)
    }
    fn get_versioned(&self, key: &str) -> c360::store::Result<(Vec<u8>, String)> {
        self.inner.get_versioned(key)
    }
    fn put_if_version(&self, key: &str, data: &[u8], version: &str) -> c360::store::Result<bool> {
        self.inner.put_if_version(key, data, version)
    }
    fn exists(&self, key: &str) -> c360::store::Result<bool> {
        self.inner.exists(key)
    }
    fn list(&self, prefix: &str) -> c360::store::Result<Vec<c360::store::ObjectMeta>> {
        self.inner.list(prefix)
    }
    fn delete(&self, key: &str) -> c360::store::Result<()> {
        use std::sync::atomic::Ordering;
        if self
            .left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_err()
        {
            return Err(c360::store::StoreError::Backend {
                store: self.uri(),
                message: format!("stopped before deleting {key}"),
            });
        }
        self.inner.delete(key)
    }
    fn local_path(&self, key: &str) -> Option<std::path::PathBuf> {
        self.inner.local_path(key)
    }
}

/// A gc stopped after each possible number of deletions leaves every committed version
/// whole and latest readable; the next gc finishes exactly the same removal.
#[test]
fn a_gc_stopped_at_any_deletion_leaves_every_version_whole_and_the_next_one_finishes() {
    let later = Utc::now() + Duration::days(31);
    // The unreferenced directories hold 5 objects: stop after 0..=4 of them.
    for stop_after in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let inner = LocalStore::new(dir.path());
        let pop = populate(&inner);
        let before = listing(&inner);
        let versions = committed_versions(&inner);
        let store = StopsDeleting {
            inner,
            left: stop_after.into(),
        };
        let e = product::gc(&store, &NoCatalog, P, &opts(later, false)).unwrap_err();
        assert!(matches!(e, GcError::Delete { .. }), "{e:?}");
        let t = e.to_string();
        assert!(t.contains("run gc again") && t.contains("/run="), "{t}");
        assert_eq!(
            before.len() - listing(&store.inner).len(),
            stop_after,
            "{stop_after}"
        );
        assert_same_versions(&versions, &committed_versions(&store.inner));

        let r = product::gc(&store.inner, &NoCatalog, P, &opts(later, false)).unwrap();
        assert!(keys(&r.removed).is_subset(&pop.unreferenced));
        for d in &pop.unreferenced {
            assert!(store.inner.list(d).unwrap().is_empty(), "{stop_after}: {d}");
        }
        for d in &pop.committed {
            assert!(!store.inner.list(d).unwrap().is_empty(), "{d}");
        }
        assert_same_versions(&versions, &committed_versions(&store.inner));
    }
}
