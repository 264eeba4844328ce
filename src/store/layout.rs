//! The store layout: every key c360 reads or writes, built in this one place.
//!
//! It mirrors the store table of `architecture.md` (the layout is a contract: other tools
//! read these keys), the same on local disk and S3:
//!
//! ```text
//! features/<set>/v<version>/as_of=<YYYY-MM-DD>/run=<attempt>/part-<n>.parquet
//! features/<set>/v<version>/as_of=<YYYY-MM-DD>/_manifest.json      written last = committed
//! runs/<job>/<run_id>/run.json                                     the run ledger entry
//! runs/<job>/<run_id>/transform-input/part-<n>.csv
//! runs/<job>/<run_id>/transform-output/part-<n>.csv.out
//! runs/<job>/lease.json                                            who runs the job now
//! runs/<job>/schedule.json                                         the scheduler's state
//! runs/<job>/ticks/<YYYYMMDDTHHMMSSZ>.json                         one scheduled fire
//! products/<product>/v<major>/as_of=<YYYY-MM-DD>/...               as for features
//! products/<product>/contract.yaml
//! products/<product>/latest.json                                   moved after a full commit
//! catalog/<product>.json
//! ```
//!
//! Names are not checked here (their own types do that); keys are checked by the store.
//! The one parser of partition keys ([`parse_manifest_key`], [`parse_as_of`]) lives here too.

use chrono::{DateTime, NaiveDate, Utc};

/// The folder of every feature snapshot: `features`.
pub const FEATURES: &str = "features";
/// The folder of every run, lease and schedule: `runs`.
pub const RUNS: &str = "runs";
/// The folder of every data product: `products`.
pub const PRODUCTS: &str = "products";
/// The folder of the catalog entries: `catalog`.
pub const CATALOG: &str = "catalog";
/// A partition's manifest file name (written last: its existence is the commit).
pub const MANIFEST: &str = "_manifest.json";

/// `features/<set>/v<version>`: every snapshot of one version of a feature set.
pub fn snapshot_version(set: &str, version: u32) -> String {
    format!("{FEATURES}/{set}/v{version}")
}

/// `features/<set>/v<version>/as_of=<date>`: one feature snapshot's partition.
pub fn snapshot_partition(set: &str, version: u32, as_of: NaiveDate) -> String {
    partition_in(&snapshot_version(set, version), as_of)
}

/// `<partition>/_manifest.json`: a partition's commit point.
pub fn manifest(partition: &str) -> String {
    format!("{partition}/{MANIFEST}")
}

/// `<partition>/<file>`: a part file a manifest lists (relative to its partition).
pub fn partition_file(partition: &str, file: &str) -> String {
    format!("{partition}/{file}")
}

/// `runs/<job>`: everything of one job (its runs, lease, schedule state and fires).
pub fn job_runs(job: &str) -> String {
    format!("{RUNS}/{job}")
}

/// `runs/<job>/<run_id>`: one run's folder.
pub fn run_dir(job: &str, run_id: &str) -> String {
    format!("{}/{run_id}", job_runs(job))
}

/// `runs/<job>/<run_id>/run.json`: the run ledger entry.
pub fn ledger(job: &str, run_id: &str) -> String {
    format!("{}/run.json", run_dir(job, run_id))
}

/// Whether `key` (from a listing of [`job_runs`]) is a run ledger entry.
pub fn is_ledger(key: &str) -> bool {
    key.ends_with("/run.json")
}

/// `runs/<job>/<run_id>/transform-input`: the batch transform's input parts.
pub fn transform_input(job: &str, run_id: &str) -> String {
    format!("{}/transform-input", run_dir(job, run_id))
}

/// `runs/<job>/<run_id>/transform-output`: the batch transform's output parts.
pub fn transform_output(job: &str, run_id: &str) -> String {
    format!("{}/transform-output", run_dir(job, run_id))
}

/// `runs/<job>/lease.json`: which process runs the job now.
pub fn lease(job: &str) -> String {
    format!("{}/lease.json", job_runs(job))
}

/// `runs/<job>/schedule.json`: the scheduler's state of the job.
pub fn schedule_state(job: &str) -> String {
    format!("{}/schedule.json", job_runs(job))
}

/// `runs/<job>/ticks`: the job's scheduled fires.
pub fn ticks(job: &str) -> String {
    format!("{}/ticks", job_runs(job))
}

/// `runs/<job>/ticks/<YYYYMMDDTHHMMSSZ>.json`: the record of one scheduled fire.
pub fn tick(job: &str, tick: DateTime<Utc>) -> String {
    format!("{}/{}.json", ticks(job), tick.format("%Y%m%dT%H%M%SZ"))
}

/// `products/<product>`: everything of one data product.
pub fn product(product: &str) -> String {
    format!("{PRODUCTS}/{product}")
}

/// `products/<product>/v<major>`: every version of one major of a product.
pub fn product_major(product: &str, major: u32) -> String {
    format!("{}/v{major}", self::product(product))
}

/// `products/<product>/v<major>/as_of=<date>`: one published version's partition.
pub fn product_partition(product: &str, major: u32, as_of: NaiveDate) -> String {
    partition_in(&product_major(product, major), as_of)
}

/// `products/<product>/latest.json`: the pointer to the newest committed version.
pub fn product_latest(product: &str) -> String {
    format!("{}/latest.json", self::product(product))
}

/// `products/<product>/contract.yaml`: the product's data contract (ODCS).
pub fn product_contract(product: &str) -> String {
    format!("{}/contract.yaml", self::product(product))
}

/// `catalog/<product>.json`: the product's catalog entry.
pub fn catalog_entry(product: &str) -> String {
    format!("{CATALOG}/{product}.json")
}

fn partition_in(versioned: &str, as_of: NaiveDate) -> String {
    format!("{versioned}/as_of={as_of}")
}

/// The date of a partition folder name `as_of=<YYYY-MM-DD>`; `None` for any other name.
pub fn parse_as_of(component: &str) -> Option<NaiveDate> {
    component.strip_prefix("as_of=")?.parse().ok()
}

/// The version (major) and as-of date of a manifest key
/// `.../v<version>/as_of=<YYYY-MM-DD>/_manifest.json`; `None` for any other key (a
/// listing of a set or product holds part files and foreign objects too).
pub fn parse_manifest_key(key: &str) -> Option<(u32, NaiveDate)> {
    let rest = key.strip_suffix(MANIFEST)?.strip_suffix('/')?;
    let mut it = rest.rsplit('/');
    let as_of = parse_as_of(it.next()?)?;
    let version = it.next()?.strip_prefix('v')?.parse().ok()?;
    Some((version, as_of))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn keys_follow_the_architecture_table() {
        let day = d("2024-06-30");
        assert_eq!(
            snapshot_partition("rfm", 2, day),
            "features/rfm/v2/as_of=2024-06-30"
        );
        assert_eq!(
            manifest(&snapshot_partition("rfm", 2, day)),
            "features/rfm/v2/as_of=2024-06-30/_manifest.json"
        );
        assert_eq!(ledger("churn", "r1"), "runs/churn/r1/run.json");
        assert_eq!(
            transform_input("churn", "r1"),
            "runs/churn/r1/transform-input"
        );
        assert_eq!(
            transform_output("churn", "r1"),
            "runs/churn/r1/transform-output"
        );
        assert_eq!(lease("churn"), "runs/churn/lease.json");
        assert_eq!(schedule_state("churn"), "runs/churn/schedule.json");
        let t = DateTime::parse_from_rfc3339("2024-06-30T02:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(tick("churn", t), "runs/churn/ticks/20240630T020000Z.json");
        assert_eq!(
            product_partition("churn_scores", 1, day),
            "products/churn_scores/v1/as_of=2024-06-30"
        );
        assert_eq!(
            product_latest("churn_scores"),
            "products/churn_scores/latest.json"
        );
        assert_eq!(
            product_contract("churn_scores"),
            "products/churn_scores/contract.yaml"
        );
        assert_eq!(catalog_entry("churn_scores"), "catalog/churn_scores.json");
        assert!(is_ledger(&ledger("j", "r")));
        assert!(!is_ledger(&lease("j")));
    }

    #[test]
    fn manifest_keys_parse_back_and_nothing_else_does() {
        let day = d("2024-06-30");
        for (prefix, v) in [
            (snapshot_partition("rfm", 3, day), 3),
            (product_partition("p", 12, day), 12),
        ] {
            assert_eq!(parse_manifest_key(&manifest(&prefix)), Some((v, day)));
        }
        for bad in [
            "features/rfm/v1/as_of=2024-06-30/run=r-1/part-0.parquet",
            "features/rfm/v1/as_of=2024-13-01/_manifest.json",
            "features/rfm/x1/as_of=2024-06-30/_manifest.json",
            "features/rfm/v1/asof=2024-06-30/_manifest.json",
            "as_of=2024-06-30/_manifest.json",
            "_manifest.json",
            "features/rfm/v1/as_of=2024-06-30/x_manifest.json",
        ] {
            assert_eq!(parse_manifest_key(bad), None, "{bad}");
        }
        assert_eq!(parse_as_of("as_of=2024-02-29"), Some(d("2024-02-29")));
        assert_eq!(parse_as_of("as_of=2023-02-29"), None);
        assert_eq!(parse_as_of("2024-02-29"), None);
    }
}
