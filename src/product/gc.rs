//! `c360 products gc`: removing the run directories of a product that no reader can reach.
//!
//! Every publish attempt writes its parts under a directory of its own
//! (`products/<p>/v<major>/as_of=<D>/run=<run_id>-<8hex>/`, see [`crate::offline`]), and a
//! re-publish of an as-of, a killed publish or a damaged partition redone leaves directories
//! that no committed manifest lists. [`gc`] removes a run directory only when it is
//!
//! - **unreferenced**: not the directory of a file the partition's committed
//!   `_manifest.json` lists, not the run `latest.json` names (its partition and run id), and
//!   not a location the central catalog references ([`Catalog::referenced_locations`]:
//!   the directory itself, a prefix of it, or a key inside it); and
//! - **older than retention**: every object in it was last modified before
//!   `now − retention_days` ([`ObjectMeta::modified`]; an object without a time keeps its
//!   directory).
//!
//! It never removes a manifest, `latest.json`, the contract, the catalog entry, objects at
//! a partition root (the old layout's parts), anything not inside a `run=` directory, or
//! anything outside `products/<p>/`. A partition whose manifest is unreadable keeps all
//! its runs (the next publish replaces the manifest; run gc again after it). Each removal
//! deletes one directory's objects only, after reading the partition's manifest again, so a
//! gc killed at any point leaves every committed version whole (a half-removed directory is
//! unreferenced and is finished by the next gc).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use serde_json::Value;

use super::Latest;
use crate::mesh::{Catalog, MeshError};
use crate::names::ProductName;
use crate::offline;
use crate::store::{doc, layout, ObjectMeta, ObjectStore, StoreError};

/// Why [`gc`] refused (nothing was removed unless the error says otherwise).
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The name is not a product name (so it cannot name a folder of the store).
    #[error("{message}")]
    BadName { message: String },
    /// Nothing is stored under `products/<product>/`.
    #[error("product {product} not found in store {store} (nothing under {prefix}/; see `c360 products list --store {store}`)")]
    NotFound {
        product: String,
        store: String,
        prefix: String,
    },
    /// No retention was given and none is recorded for the product.
    #[error("product {product}: no retention known (no --retention-days, no job in {jobs} publishes it, and {contract} has no retention); give one with `c360 products gc {product} --retention-days N`")]
    NoRetention {
        product: String,
        jobs: String,
        contract: String,
    },
    /// `latest.json` cannot be read, so the run it names is unknown.
    #[error("product {product}: {key} is unreadable ({message}), so the run it names is unknown and nothing was removed; re-run the product's job (`c360 run JOB`) to rebuild it, then run gc again")]
    LatestUnreadable {
        product: String,
        key: String,
        message: String,
    },
    /// The catalog could not say which locations it references.
    #[error("product {product} v{major}: the catalog's partition locations could not be read, so nothing was removed ({source}); fix [catalog] in c360.toml or the endpoint, then run gc again")]
    Catalog {
        product: String,
        major: u32,
        #[source]
        source: MeshError,
    },
    /// A directory could not be removed completely (what was removed stays removed; the
    /// rest is still unreferenced and the next gc finishes it).
    #[error("product {product}: removing {dir} failed after {removed} run director(y/ies) were removed ({source}); run gc again to finish")]
    Delete {
        product: String,
        dir: String,
        removed: usize,
        #[source]
        source: Box<StoreError>,
    },
}

/// What [`gc`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcOptions {
    /// A run directory is old when every object in it was last modified before
    /// `now − retention_days` (days of 24 hours).
    pub retention_days: u32,
    /// The time retention counts back from (the CLI passes `Utc::now()`).
    pub now: DateTime<Utc>,
    /// List what would be removed; delete nothing.
    pub dry_run: bool,
}

/// One run directory (`products/<p>/v<major>/as_of=<D>/run=<...>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunDir {
    /// The directory's store key (relative to the store root, no trailing `/`).
    pub key: String,
    pub major: u32,
    pub as_of: NaiveDate,
    /// Objects in it.
    pub objects: usize,
    /// Their total size (bytes).
    pub bytes: u64,
    /// The newest modification time of its objects; `None` when one has none.
    pub last_modified: Option<DateTime<Utc>>,
}

impl RunDir {
    /// The directory's name (`run=<run_id>-<8hex>`).
    pub fn name(&self) -> &str {
        self.key.rsplit('/').next().unwrap_or(&self.key)
    }

    /// How long ago (from `now`) its newest object was written; `None` when unknown.
    pub fn age(&self, now: DateTime<Utc>) -> Option<TimeDelta> {
        self.last_modified.map(|t| now.signed_duration_since(t))
    }
}

/// Why a run directory was kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum KeepReason {
    /// The partition's committed manifest lists files in it.
    Committed,
    /// `latest.json` names its partition and run.
    Latest,
    /// The catalog references it (or a location inside or around it).
    Catalog,
    /// The partition's manifest is unreadable, so what it references is unknown.
    ManifestUnreadable,
    /// An object in it was written within retention.
    WithinRetention,
    /// An object in it has no modification time.
    AgeUnknown,
}

impl KeepReason {
    /// A short phrase for output (`committed`, `within retention`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            KeepReason::Committed => "committed",
            KeepReason::Latest => "named by latest.json",
            KeepReason::Catalog => "referenced by the catalog",
            KeepReason::ManifestUnreadable => "manifest unreadable",
            KeepReason::WithinRetention => "within retention",
            KeepReason::AgeUnknown => "age unknown",
        }
    }
}

/// What [`gc`] did (or, with `dry_run`, would do).
#[derive(Debug, Clone, PartialEq)]
pub struct GcReport {
    pub product: String,
    pub dry_run: bool,
    pub retention_days: u32,
    /// Objects last modified before this are old; `None` when retention reaches back past
    /// the calendar (nothing is old).
    pub cutoff: Option<DateTime<Utc>>,
    /// The run directories removed (would be, with `dry_run`), in key order.
    pub removed: Vec<RunDir>,
    /// The run directories kept, with why, in key order.
    pub kept: Vec<(RunDir, KeepReason)>,
}

impl GcReport {
    /// Bytes removed (would be, with `dry_run`).
    pub fn bytes_removed(&self) -> u64 {
        self.removed.iter().map(|d| d.bytes).sum()
    }

    /// Kept directories counted by reason.
    pub fn kept_by_reason(&self) -> BTreeMap<KeepReason, usize> {
        let mut out = BTreeMap::new();
        for (_, r) in &self.kept {
            *out.entry(*r).or_insert(0) += 1;
        }
        out
    }
}

/// Where a retention came from, for output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    /// Days.
    pub days: u32,
    /// `--retention-days`, `jobs/<job>.toml`, or `products/<p>/contract.yaml`.
    pub from: String,
}

/// The retention of `product`: `flag` when given, else `[product] retention_days` of the
/// first job under `jobs_dir` (sorted by file name) that publishes it, else the retention
/// recorded in its contract (`slaProperties` `retention`, written at every publish).
///
/// Errors: [`GcError::BadName`]; [`GcError::NoRetention`] (saying how to give one) when
/// none is known, or
/// [`GcError::NotFound`] when nothing is stored for the product either; store errors
/// reading the contract (a missing or unparsable contract is "none recorded").
pub fn resolve_retention(
    store: &dyn ObjectStore,
    product: &str,
    flag: Option<u32>,
    jobs_dir: Option<&Path>,
) -> Result<Retention, GcError> {
    ProductName::parse(product).map_err(|e| GcError::BadName {
        message: e.to_string(),
    })?;
    if let Some(days) = flag {
        return Ok(Retention {
            days,
            from: "--retention-days".into(),
        });
    }
    if let Some(dir) = jobs_dir {
        let (jobs, _problems) = crate::pipeline::job::load_all(dir);
        if let Some(job) = jobs.iter().find(|j| j.product.name.as_str() == product) {
            return Ok(Retention {
                days: job.product.retention_days,
                from: job.file.display().to_string(),
            });
        }
    }
    let contract = layout::product_contract(product);
    if let Some(days) = contract_retention(store, &contract)? {
        return Ok(Retention {
            days,
            from: contract,
        });
    }
    let root = layout::product(product);
    if store.list(&root)?.is_empty() {
        // An unknown product is what to say, not its missing retention.
        return Err(GcError::NotFound {
            product: product.into(),
            store: store.uri(),
            prefix: root,
        });
    }
    Err(GcError::NoRetention {
        product: product.into(),
        jobs: jobs_dir
            .map(|d| d.display().to_string())
            .unwrap_or_else(|| "the project".into()),
        contract,
    })
}

/// The largest contract read for its retention (bytes); a larger one is "none recorded".
const MAX_CONTRACT_BYTES: usize = 4 * crate::store::MIB as usize;

/// `slaProperties[property = retention].value` (days) of the contract at `key`.
fn contract_retention(store: &dyn ObjectStore, key: &str) -> Result<Option<u32>, GcError> {
    let bytes = match store.get(key) {
        Ok(b) => b,
        Err(StoreError::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    if bytes.len() > MAX_CONTRACT_BYTES {
        tracing::warn!(%key, bytes = bytes.len(), "the contract is too large to read its retention");
        return Ok(None);
    }
    let doc: Value = match std::str::from_utf8(&bytes)
        .ok()
        .and_then(|t| yaml_serde::from_str(t).ok())
    {
        Some(v) => v,
        None => {
            tracing::warn!(%key, "the contract is unreadable; its retention is unknown");
            return Ok(None);
        }
    };
    Ok(doc
        .get("slaProperties")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|p| p.get("property").and_then(Value::as_str) == Some("retention"))
        .and_then(|p| p.get("value"))
        .and_then(Value::as_u64)
        .and_then(|d| u32::try_from(d).ok()))
}

/// Removes (with `dry_run`: lists) the run directories of `product` that are unreferenced
/// and older than retention (see the module's header for both rules), in key order.
///
/// `catalog`: the project's catalog ([`crate::mesh::Mesh::open`]); its
/// [`Catalog::referenced_locations`] is asked once per major found in the store.
///
/// Errors: [`GcError::BadName`], [`GcError::NotFound`] (nothing stored for the product),
/// [`GcError::LatestUnreadable`] and [`GcError::Catalog`] before anything is removed;
/// [`GcError::Delete`] when a deletion fails (after the removals reported so far); store
/// errors listing or reading.
pub fn gc(
    store: &dyn ObjectStore,
    catalog: &dyn Catalog,
    product: &str,
    opts: &GcOptions,
) -> Result<GcReport, GcError> {
    let name = ProductName::parse(product).map_err(|e| GcError::BadName {
        message: e.to_string(),
    })?;
    let product = name.as_str();
    let root = layout::product(product);
    let listed = store.list(&root)?;
    if listed.is_empty() {
        return Err(GcError::NotFound {
            product: product.into(),
            store: store.uri(),
            prefix: root,
        });
    }
    let dirs = run_dirs(&root, listed);
    let latest_key = layout::product_latest(product);
    let latest: Option<Latest> = match doc::get_json(store, &latest_key) {
        Ok(l) => l,
        Err(StoreError::Corrupt { source, .. }) => {
            return Err(GcError::LatestUnreadable {
                product: product.into(),
                key: latest_key,
                message: source.to_string(),
            })
        }
        Err(e) => return Err(e.into()),
    };
    let majors: BTreeSet<u32> = dirs.values().map(|d| d.0.major).collect();
    let mut locations = Vec::new();
    for major in majors {
        let locs = catalog
            .referenced_locations(store, product, major)
            .map_err(|source| GcError::Catalog {
                product: product.into(),
                major,
                source,
            })?;
        locations.extend(
            locs.into_iter()
                .map(|l| l.trim_end_matches('/').to_string()),
        );
    }
    let cutoff = TimeDelta::try_days(i64::from(opts.retention_days))
        .and_then(|d| opts.now.checked_sub_signed(d));
    let mut report = GcReport {
        product: product.into(),
        dry_run: opts.dry_run,
        retention_days: opts.retention_days,
        cutoff,
        removed: vec![],
        kept: vec![],
    };
    let mut committed: BTreeMap<String, Option<BTreeSet<String>>> = BTreeMap::new();
    let mut candidates: Vec<(RunDir, Vec<ObjectMeta>)> = vec![];
    for (dir, objects) in dirs.into_values() {
        let partition = layout::product_partition(product, dir.major, dir.as_of);
        let refs = match committed.get(&partition) {
            Some(r) => r.clone(),
            None => {
                let r = committed_dirs(store, &partition)?;
                committed.insert(partition.clone(), r.clone());
                r
            }
        };
        let keep = keep_reason(&dir, &partition, refs.as_ref(), latest.as_ref(), &locations)
            .or_else(|| age_reason(&objects, cutoff));
        match keep {
            Some(r) => report.kept.push((dir, r)),
            None => candidates.push((dir, objects)),
        }
    }
    for (dir, objects) in candidates {
        if opts.dry_run {
            report.removed.push(dir);
            continue;
        }
        // Read the manifest again just before: a publish that committed meanwhile may
        // name this directory (it never does in practice: a commit names a new one).
        let partition = layout::product_partition(product, dir.major, dir.as_of);
        match committed_dirs(store, &partition)? {
            Some(refs) if !refs.contains(dir.name()) => {}
            Some(_) => {
                report.kept.push((dir, KeepReason::Committed));
                continue;
            }
            None => {
                report.kept.push((dir, KeepReason::ManifestUnreadable));
                continue;
            }
        }
        let inside = format!("{}/", dir.key);
        for o in objects.iter().filter(|o| o.key.starts_with(&inside)) {
            if let Err(source) = store.delete(&o.key) {
                return Err(GcError::Delete {
                    product: product.into(),
                    dir: dir.key.clone(),
                    removed: report.removed.len(),
                    source: Box::new(source),
                });
            }
        }
        tracing::info!(product, dir = %dir.key, bytes = dir.bytes, "removed an unreferenced run directory");
        report.removed.push(dir);
    }
    report.kept.sort_by(|a, b| a.0.key.cmp(&b.0.key));
    Ok(report)
}

/// Groups the objects under `root` (`products/<p>`) that are inside a run directory
/// `v<major>/as_of=<D>/run=<...>/` (written exactly as c360 writes them), by directory.
fn run_dirs(root: &str, listed: Vec<ObjectMeta>) -> BTreeMap<String, (RunDir, Vec<ObjectMeta>)> {
    let mut out: BTreeMap<String, (RunDir, Vec<ObjectMeta>)> = BTreeMap::new();
    for o in listed {
        let Some((major, as_of, key)) = run_dir_of(root, &o.key) else {
            continue;
        };
        let entry = out.entry(key.clone()).or_insert_with(|| {
            (
                RunDir {
                    key,
                    major,
                    as_of,
                    objects: 0,
                    bytes: 0,
                    last_modified: None,
                },
                vec![],
            )
        });
        let d = &mut entry.0;
        d.last_modified = match (d.objects, d.last_modified, o.modified) {
            (0, _, m) => m,
            (_, Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
        d.objects += 1;
        d.bytes = d.bytes.saturating_add(o.size);
        entry.1.push(o);
    }
    out
}

/// The major, as-of and directory key of the run directory `key` is inside, when `key` is
/// `<root>/v<major>/as_of=<D>/run=<name>/<...>` with `v<major>` and `as_of=<D>` written
/// as c360 writes them; `None` for any other key.
fn run_dir_of(root: &str, key: &str) -> Option<(u32, NaiveDate, String)> {
    let rest = key.strip_prefix(root)?.strip_prefix('/')?;
    let mut parts = rest.splitn(4, '/');
    let (v, a, r, file) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let major: u32 = v.strip_prefix('v')?.parse().ok()?;
    let as_of = layout::parse_as_of(a)?;
    let ok = v == format!("v{major}")
        && a == format!("as_of={as_of}")
        && r.len() > "run=".len()
        && r.starts_with("run=")
        && !file.is_empty();
    ok.then(|| (major, as_of, format!("{root}/{v}/{a}/{r}")))
}

/// The directories (first path component, e.g. `run=r1-1a2b3c4d`) of the files the
/// committed manifest at `partition` lists: empty when there is none; `None` when it is
/// unreadable.
fn committed_dirs(
    store: &dyn ObjectStore,
    partition: &str,
) -> Result<Option<BTreeSet<String>>, GcError> {
    match offline::read_manifest(store, partition) {
        Ok(Some(m)) => Ok(Some(
            m.files
                .iter()
                .filter_map(|f| f.split_once('/').map(|(d, _)| d.to_string()))
                .collect(),
        )),
        Ok(None) => Ok(Some(BTreeSet::new())),
        Err(offline::OfflineError::BadManifest { key, message }) => {
            tracing::warn!(%key, %message, "the manifest is unreadable; keeping every run of its partition");
            Ok(None)
        }
        Err(offline::OfflineError::Store(e)) => Err(e.into()),
        Err(e) => Err(GcError::Store(StoreError::Backend {
            store: store.uri(),
            message: e.to_string(),
        })),
    }
}

/// Why `dir` is referenced, if it is.
fn keep_reason(
    dir: &RunDir,
    partition: &str,
    committed: Option<&BTreeSet<String>>,
    latest: Option<&Latest>,
    locations: &[String],
) -> Option<KeepReason> {
    let name = dir.name();
    match committed {
        None => return Some(KeepReason::ManifestUnreadable),
        Some(c) if c.contains(name) => return Some(KeepReason::Committed),
        Some(_) => {}
    }
    if let Some(l) = latest {
        if l.path.trim_end_matches('/') == partition
            && name.starts_with(&format!("run={}-", l.run_id))
        {
            return Some(KeepReason::Latest);
        }
    }
    let overlaps = |loc: &String| {
        *loc == dir.key
            || dir.key.starts_with(&format!("{loc}/"))
            || loc.starts_with(&format!("{}/", dir.key))
    };
    locations
        .iter()
        .any(overlaps)
        .then_some(KeepReason::Catalog)
}

/// Why an unreferenced directory is still too young to remove, if it is.
fn age_reason(objects: &[ObjectMeta], cutoff: Option<DateTime<Utc>>) -> Option<KeepReason> {
    let Some(cutoff) = cutoff else {
        return Some(KeepReason::WithinRetention);
    };
    for o in objects {
        match o.modified {
            None => return Some(KeepReason::AgeUnknown),
            Some(t) if t >= cutoff => return Some(KeepReason::WithinRetention),
            Some(_) => {}
        }
    }
    None
}

/// An age for output: `3d 4h`, `5h 12m`, `42s` (negative ages, from a clock ahead of
/// `now`, print as `0s`).
pub fn format_age(age: TimeDelta) -> String {
    let s = age.num_seconds().max(0);
    let (d, h, m) = (s / 86_400, s % 86_400 / 3600, s % 3600 / 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else if m > 0 {
        format!("{m}m {}s", s % 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "products/p";

    fn obj(key: &str, size: u64, secs: Option<i64>) -> ObjectMeta {
        ObjectMeta {
            key: key.into(),
            size,
            version: String::new(),
            modified: secs.and_then(|s| DateTime::from_timestamp(s, 0)),
        }
    }

    #[test]
    fn only_keys_inside_a_run_directory_as_c360_writes_it_belong_to_one() {
        let d: NaiveDate = "2024-06-30".parse().unwrap();
        assert_eq!(
            run_dir_of(
                ROOT,
                "products/p/v1/as_of=2024-06-30/run=r1-0a1b2c3d/part-0.parquet"
            ),
            Some((
                1,
                d,
                "products/p/v1/as_of=2024-06-30/run=r1-0a1b2c3d".into()
            ))
        );
        for other in [
            "products/p/v1/as_of=2024-06-30/_manifest.json",
            "products/p/v1/as_of=2024-06-30/part-0.parquet",
            "products/p/latest.json",
            "products/p/contract.yaml",
            "products/p/v01/as_of=2024-06-30/run=r1-0a/part-0.parquet",
            "products/p/v1/as_of=2024-6-30/run=r1-0a/part-0.parquet",
            "products/p/v1/as_of=2024-06-30/run=/part-0.parquet",
            "products/p/v1/as_of=2024-06-30/runs/part-0.parquet",
            "products/p/v1/as_of=2024-06-30/run=r1-0a/",
            "products/px/v1/as_of=2024-06-30/run=r1-0a/part-0.parquet",
            "catalog/p.json",
        ] {
            assert_eq!(run_dir_of(ROOT, other), None, "{other}");
        }
    }

    #[test]
    fn a_directory_sums_its_objects_and_is_as_new_as_its_newest() {
        let dirs = run_dirs(
            ROOT,
            vec![
                obj(
                    "products/p/v1/as_of=2024-06-30/run=a-1/part-0.parquet",
                    10,
                    Some(100),
                ),
                obj(
                    "products/p/v1/as_of=2024-06-30/run=a-1/part-1.parquet",
                    5,
                    Some(300),
                ),
                obj(
                    "products/p/v1/as_of=2024-06-30/run=b-2/part-0.parquet",
                    7,
                    None,
                ),
                obj(
                    "products/p/v1/as_of=2024-06-30/run=b-2/part-1.parquet",
                    7,
                    Some(50),
                ),
                obj("products/p/v1/as_of=2024-06-30/_manifest.json", 1, Some(1)),
            ],
        );
        let a = &dirs["products/p/v1/as_of=2024-06-30/run=a-1"].0;
        assert_eq!((a.objects, a.bytes), (2, 15));
        assert_eq!(a.last_modified, DateTime::from_timestamp(300, 0));
        assert_eq!(a.name(), "run=a-1");
        let b = &dirs["products/p/v1/as_of=2024-06-30/run=b-2"].0;
        assert_eq!(
            (b.objects, b.last_modified),
            (2, None),
            "one unknown time: unknown"
        );
        assert_eq!(dirs.len(), 2);
    }

    #[test]
    fn only_a_directory_wholly_before_the_cutoff_is_old() {
        let cutoff = DateTime::from_timestamp(1000, 0);
        let k = "products/p/v1/as_of=2024-06-30/run=a-1/part-0.parquet";
        assert_eq!(age_reason(&[obj(k, 1, Some(999))], cutoff), None);
        assert_eq!(
            age_reason(&[obj(k, 1, Some(999)), obj(k, 1, Some(1000))], cutoff),
            Some(KeepReason::WithinRetention)
        );
        assert_eq!(
            age_reason(&[obj(k, 1, None)], cutoff),
            Some(KeepReason::AgeUnknown)
        );
        assert_eq!(
            age_reason(&[obj(k, 1, Some(0))], None),
            Some(KeepReason::WithinRetention),
            "a retention past the calendar keeps everything"
        );
    }

    #[test]
    fn catalog_locations_protect_the_directory_around_and_inside_them() {
        let dir = RunDir {
            key: "products/p/v1/as_of=2024-06-30/run=a-1".into(),
            major: 1,
            as_of: "2024-06-30".parse().unwrap(),
            objects: 1,
            bytes: 1,
            last_modified: None,
        };
        let part = "products/p/v1/as_of=2024-06-30";
        let none = BTreeSet::new();
        let reason = |locs: &[&str]| {
            let locs: Vec<String> = locs.iter().map(|s| s.to_string()).collect();
            keep_reason(&dir, part, Some(&none), None, &locs)
        };
        assert_eq!(reason(&[]), None);
        assert_eq!(reason(&[&dir.key]), Some(KeepReason::Catalog));
        assert_eq!(
            reason(&[part]),
            Some(KeepReason::Catalog),
            "the partition root"
        );
        assert_eq!(
            reason(&["products/p/v1/as_of=2024-06-30/run=a-1/sub"]),
            Some(KeepReason::Catalog)
        );
        assert_eq!(reason(&["products/p/v1/as_of=2024-06-30/run=a-10"]), None);
        assert_eq!(reason(&["products/p/v1/as_of=2024-06-3"]), None);
        let committed: BTreeSet<String> = ["run=a-1".to_string()].into();
        assert_eq!(
            keep_reason(&dir, part, Some(&committed), None, &[]),
            Some(KeepReason::Committed)
        );
        assert_eq!(
            keep_reason(&dir, part, None, None, &[]),
            Some(KeepReason::ManifestUnreadable)
        );
        let latest = Latest {
            path: part.into(),
            as_of: dir.as_of,
            run_id: "a".into(),
            committed_at: Utc::now(),
            rows: 1,
            manifest: None,
        };
        assert_eq!(
            keep_reason(&dir, part, Some(&none), Some(&latest), &[]),
            Some(KeepReason::Latest)
        );
        let other = Latest {
            run_id: "a-".into(),
            ..latest
        };
        assert_eq!(
            keep_reason(&dir, part, Some(&none), Some(&other), &[]),
            None
        );
    }

    #[test]
    fn ages_print_in_their_largest_units() {
        assert_eq!(format_age(TimeDelta::seconds(42)), "42s");
        assert_eq!(format_age(TimeDelta::seconds(-5)), "0s");
        assert_eq!(format_age(TimeDelta::seconds(125)), "2m 5s");
        assert_eq!(format_age(TimeDelta::seconds(5 * 3600 + 12 * 60)), "5h 12m");
        assert_eq!(
            format_age(TimeDelta::days(3) + TimeDelta::hours(4)),
            "3d 4h"
        );
    }
}
