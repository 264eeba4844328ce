//! Data products: publishing scored customers as a governed product that marketing reads.
//!
//! ```text
//! products/<p>/v<major>/as_of=<D>/run=<run_id>-<hex>/part-<n>.parquet
//! products/<p>/v<major>/as_of=<D>/_manifest.json      the commit point
//! products/<p>/contract.yaml     Open Data Contract Standard v3
//! products/<p>/latest.json       moved only after everything else is committed
//! catalog/<p>.json
//! ```
//!
//! The offline store's commit protocol (see [`crate::offline`]): every publish attempt
//! writes its parts under a directory of its own, then commits the manifest conditionally
//! (created if absent, or replacing exactly the version read), then moves `latest.json`.
//! A committed location is never written again and nothing a committed manifest names is
//! deleted, so `latest.json` always names a partition whose manifest lists files that
//! exist with the listed sizes and checksums. `latest.json` never moves backwards (an
//! older as-of date re-published does not displace a newer one) and always describes the
//! manifest committed at the partition when it was written.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::offline::{self, ColumnInfo};
use crate::store::doc::{self, Current, Decision, Document};
use crate::store::{layout, ObjectStore, StoreError};

mod columns;
pub use columns::{product_frame, ScoredRun};

#[derive(Debug, thiserror::Error)]
pub enum ProductError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Offline(#[from] offline::OfflineError),
    #[error("product {product}: column {column} is PII and may never enter a data product")]
    Pii { product: String, column: String },
    #[error("product {product}: {message}")]
    Invalid { product: String, message: String },
    #[error("product {0} not found (see `c360 products list`)")]
    NotFound(String),
    #[error("product {product}: customer {customer_id} not in the latest version ({as_of})")]
    NoCustomer {
        product: String,
        customer_id: String,
        as_of: NaiveDate,
    },
    #[error("product {product}: {message}")]
    Read { product: String, message: String },
    #[error("product {product}: cannot write its contract as YAML")]
    Contract {
        product: String,
        #[source]
        source: yaml_serde::Error,
    },
}

pub type Result<T, E = ProductError> = std::result::Result<T, E>;

/// Column names that are PII wherever they come from (plus the contract's PII columns).
pub const PII_COLUMNS: &[&str] = &[
    "email",
    "phone",
    "name",
    "first_name",
    "last_name",
    "address",
];

/// A column's documentation in the contract.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ColumnDoc {
    pub name: String,
    pub description: String,
    /// ODCS logical type: string, number, integer, boolean, date, timestamp.
    pub logical_type: String,
    pub required: bool,
    /// Allowed values, when the column is categorical.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed: Vec<String>,
    /// Inclusive numeric range, when bounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<(f64, f64)>,
}

/// What a product is: from the job's `[product]` section.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ProductSpec {
    pub name: crate::names::ProductName,
    /// The schema's major version (part of the path); bump on breaking changes.
    pub major: u32,
    pub domain: String,
    pub owner: String,
    pub description: String,
    pub consumers: Vec<String>,
    pub retention_days: u32,
    /// A new version is due every this many days (the job's cadence).
    pub freshness_days: u32,
    /// The cron schedule that produces it.
    pub schedule: String,
    pub columns: Vec<ColumnDoc>,
}

/// Where the data came from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
pub struct Lineage {
    pub job: String,
    pub run_id: String,
    pub source: String,
    pub source_fingerprints: BTreeMap<String, String>,
    /// Feature set name -> {version, definition_hash, snapshot}.
    pub feature_sets: BTreeMap<String, Value>,
    pub model: Value,
    pub transform: Value,
}

/// `latest.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Latest {
    /// The committed partition, relative to the store root.
    pub path: String,
    pub as_of: NaiveDate,
    pub run_id: String,
    pub committed_at: DateTime<Utc>,
    pub rows: u64,
}

/// `catalog/<p>.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CatalogEntry {
    pub name: String,
    pub domain: String,
    pub owner: String,
    pub description: String,
    pub consumers: Vec<String>,
    pub contract: String,
    pub latest: String,
    pub versions: Vec<NaiveDate>,
    pub columns: Vec<ColumnInfo>,
    pub updated_at: DateTime<Utc>,
}

impl Document for Latest {
    const WHAT: &'static str = "latest.json";
}

impl Document for CatalogEntry {
    const WHAT: &'static str = "catalog entry";
}

/// Everything of a product ([`layout::product`]).
pub fn product_prefix(name: &str) -> String {
    layout::product(name)
}

/// A published version's partition ([`layout::product_partition`]).
pub fn partition_prefix(name: &str, major: u32, as_of: NaiveDate) -> String {
    layout::product_partition(name, major, as_of)
}

fn latest_key(name: &str) -> String {
    layout::product_latest(name)
}

/// Refuses PII columns.
pub fn check_no_pii(product: &str, df: &DataFrame) -> Result<()> {
    let contract_pii: Vec<&str> = crate::source::CONTRACT
        .iter()
        .flat_map(|t| t.columns.iter().filter(|c| c.pii).map(|c| c.name))
        .collect();
    for c in df.get_column_names() {
        let lc = c.to_ascii_lowercase();
        if PII_COLUMNS.contains(&lc.as_str()) || contract_pii.contains(&lc.as_str()) {
            return Err(ProductError::Pii {
                product: product.into(),
                column: c.to_string(),
            });
        }
    }
    Ok(())
}

/// What was published.
#[derive(Debug, Clone)]
pub struct Published {
    pub prefix: String,
    pub manifest: offline::Manifest,
    pub latest_moved: bool,
    /// Why a partition this run had committed before was published again (a part was
    /// missing, truncated or changed), if it was.
    pub redone: Option<String>,
}

/// Publishes `df` as the product's partition for `as_of`, then the contract, the catalog
/// entry, and (last) `latest.json`. Idempotent: a partition already committed by the same
/// run is left as it is.
pub fn publish(
    store: &dyn ObjectStore,
    spec: &ProductSpec,
    df: &DataFrame,
    as_of: NaiveDate,
    lineage: &Lineage,
    stats: Value,
) -> Result<Published> {
    check_no_pii(&spec.name, df)?;
    for c in &spec.columns {
        if df.column(&c.name).is_err() {
            return Err(ProductError::Invalid {
                product: spec.name.to_string(),
                message: format!(
                    "the contract documents column {} but the data lacks it",
                    c.name
                ),
            });
        }
    }
    let prefix = partition_prefix(&spec.name, spec.major, as_of);
    let existing = match offline::read_manifest_versioned(store, &prefix) {
        Ok(e) => e.map(|(m, v)| (Some(m), v)),
        // An unreadable manifest is replaced (exactly that version), never trusted.
        Err(offline::OfflineError::BadManifest { key, message }) => {
            tracing::warn!(product = %spec.name, %key, %message, "the committed manifest is unreadable; publishing the partition again");
            offline::manifest_version(store, &prefix)?.map(|v| (None, v))
        }
        Err(e) => return Err(e.into()),
    };
    // Published by this run already: trusted only once every part checks out.
    let damage = match &existing {
        Some((Some(m), _)) if m.run_id == lineage.run_id => {
            Some(offline::verify_partition(store, &prefix, m)?)
        }
        _ => None,
    };
    let (manifest, redone) = match (existing, damage) {
        (Some((Some(m), _)), Some(None)) => (m, None),
        (existing, damage) => {
            let damage = damage.flatten();
            if let Some(d) = &damage {
                tracing::warn!(product = %spec.name, %as_of, run_id = %lineage.run_id, damage = %d, "the committed partition is damaged; publishing it again under a new location");
            }
            // Replaces exactly the manifest version read (none: the partition is new).
            let version = existing.map(|(_, v)| v);
            let m = write_and_commit(
                store,
                spec,
                df,
                as_of,
                lineage,
                stats,
                &prefix,
                version.as_deref(),
            )?;
            (m, damage)
        }
    };
    write_contract(store, spec)?;
    let latest_moved = move_latest(store, spec, &prefix, &manifest)?;
    write_catalog(store, spec, &manifest)?;
    Ok(Published {
        prefix,
        manifest,
        latest_moved,
        redone,
    })
}

/// Writes the parts under a new attempt directory and commits the manifest: created if
/// `previous` is `None`, else replacing exactly that version.
#[allow(clippy::too_many_arguments)]
fn write_and_commit(
    store: &dyn ObjectStore,
    spec: &ProductSpec,
    df: &DataFrame,
    as_of: NaiveDate,
    lineage: &Lineage,
    stats: Value,
    prefix: &str,
    previous: Option<&str>,
) -> Result<offline::Manifest> {
    let mut extra = BTreeMap::new();
    extra.insert(
        "lineage".to_string(),
        serde_json::to_value(lineage).unwrap_or(Value::Null),
    );
    extra.insert("score_statistics".to_string(), stats);
    extra.insert(
        "product".to_string(),
        json!({"name": spec.name, "major": spec.major}),
    );
    let m = offline::Manifest {
        kind: "data_product".into(),
        name: spec.name.to_string(),
        version: spec.major,
        as_of,
        files: vec![],
        file_checks: BTreeMap::new(),
        rows: 0,
        schema: vec![],
        definition_hash: lineage
            .feature_sets
            .values()
            .filter_map(|v| v.get("definition_hash").and_then(|h| h.as_str()))
            .collect::<Vec<_>>()
            .join(","),
        source: lineage.source.clone(),
        source_fingerprints: lineage.source_fingerprints.clone(),
        model: lineage
            .model
            .get("name")
            .and_then(|v| v.as_str())
            .map(String::from),
        run_id: lineage.run_id.clone(),
        created_by: offline::c360_version(),
        created_at: Utc::now(),
        extra,
    };
    // The one commit protocol of the store (the same as feature snapshots'): parts under a
    // new attempt directory, then the manifest, conditionally. The parts of a replaced
    // manifest stay where they are (a reader that read the old manifest may still be
    // reading them).
    Ok(offline::commit_partition_replacing(
        store,
        prefix,
        df,
        m,
        previous,
        &|_, _| {},
    )?)
}

fn move_latest(
    store: &dyn ObjectStore,
    spec: &ProductSpec,
    prefix: &str,
    m: &offline::Manifest,
) -> Result<bool> {
    // Read, decide, write conditionally on what was read; a concurrent publisher that moved
    // it in between makes us read and decide again, so latest never goes backwards.
    let key = latest_key(&spec.name);
    let ours = &m.run_id;
    let moved = doc::update_json(store, &key, 10, |cur: Current<Latest>| {
        // Decide from the manifest committed at the partition now, not from ours: a
        // concurrent publisher of the same date may have replaced it since, and latest.json
        // must describe what the partition holds.
        let committed = offline::read_manifest(store, prefix)?;
        let m = committed.as_ref().unwrap_or(m);
        let (target_prefix, target) = match cur {
            Current::Absent => (prefix.to_string(), m.clone()),
            Current::Unreadable(err) => {
                // Rebuilt from the newest committed version (ours included), so it never
                // moves backwards.
                let (p, newest) = newest_committed(store, &spec.name)?
                    .unwrap_or_else(|| (prefix.to_string(), m.clone()));
                tracing::warn!(product = %spec.name, key = %key, error = %err, as_of = %newest.as_of, "latest.json is unreadable; rebuilding it from the newest committed version");
                (p, newest)
            }
            Current::Read(cur) => {
                let disagrees = check_latest(store, &spec.name, &cur)?.err();
                if cur.as_of == m.as_of
                    && cur.run_id == m.run_id
                    && cur.path == prefix
                    && disagrees.is_none()
                {
                    // Already names this partition: "moved" when it is our version (a re-run
                    // that redid a damaged partition in place).
                    return Ok(Decision::Keep(&m.run_id == ours));
                }
                if cur.as_of > m.as_of {
                    if let Some(d) = &disagrees {
                        tracing::warn!(product = %spec.name, key = %key, disagreement = %d, "latest.json disagrees with the manifest it names; re-run the job for {} to repair it", cur.as_of);
                    }
                    return Ok(Decision::Keep(false));
                }
                if let Some(d) = &disagrees {
                    tracing::warn!(product = %spec.name, key = %key, disagreement = %d, "latest.json disagrees with the manifest it names; repairing it");
                }
                (prefix.to_string(), m.clone())
            }
        };
        let l = Latest {
            path: target_prefix.clone(),
            as_of: target.as_of,
            run_id: target.run_id.clone(),
            committed_at: Utc::now(),
            rows: target.rows,
        };
        Ok::<_, ProductError>(Decision::Write(
            l,
            target_prefix == prefix && &target.run_id == ours,
        ))
    })?;
    moved.ok_or_else(|| ProductError::Invalid {
        product: spec.name.to_string(),
        message: "latest.json kept changing under concurrent publishers; try again".into(),
    })
}

/// The newest committed version of a product (latest as-of; of equal dates the highest
/// major) whose manifest is readable and describes it, with its partition prefix.
fn newest_committed(
    store: &dyn ObjectStore,
    product: &str,
) -> Result<Option<(String, offline::Manifest)>> {
    let mut all = versions(store, product)?;
    all.sort_by_key(|&(major, as_of)| std::cmp::Reverse((as_of, major)));
    for (major, as_of) in all {
        let prefix = partition_prefix(product, major, as_of);
        match offline::read_manifest(store, &prefix) {
            Ok(Some(m))
                if m.kind == "data_product"
                    && m.name == product
                    && m.as_of == as_of
                    && m.version == major =>
            {
                return Ok(Some((prefix, m)))
            }
            Ok(_) => {}
            Err(offline::OfflineError::BadManifest { key, message }) => {
                tracing::warn!(product, %key, %message, "skipping an unreadable manifest");
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}

/// Checks that the manifest `l` names is the version it claims: a data product named
/// `product`, committed at `l.path` (the product's partition for `l.as_of`), with its
/// as-of, run id and row count. `Ok(Err(what disagrees))` when not; store errors are errors.
fn check_latest(
    store: &dyn ObjectStore,
    product: &str,
    l: &Latest,
) -> Result<std::result::Result<offline::Manifest, String>> {
    let m = match offline::read_manifest(store, &l.path) {
        Ok(Some(m)) => m,
        Ok(None) => {
            return Ok(Err(format!(
                "it names {} but there is no committed manifest there",
                l.path
            )))
        }
        Err(offline::OfflineError::BadManifest { key, message }) => {
            return Ok(Err(format!(
                "the manifest it names ({key}) is unreadable: {message}"
            )))
        }
        Err(e) => return Err(e.into()),
    };
    let at = &l.path;
    let what = if m.kind != "data_product" {
        format!(
            "it names {at}, which holds a {} ({}), not a data product",
            m.kind, m.name
        )
    } else if m.name != product {
        format!(
            "it names {at}, which holds product {}, not {product}",
            m.name
        )
    } else if m.as_of != l.as_of {
        format!(
            "it says as_of {} but the manifest at {at} is as of {}",
            l.as_of, m.as_of
        )
    } else if m.run_id != l.run_id {
        format!(
            "it says run_id {} but the manifest at {at} was committed by run {}",
            l.run_id, m.run_id
        )
    } else if *at != partition_prefix(product, m.version, m.as_of) {
        format!(
            "it names {at}, not the product's partition {}",
            partition_prefix(product, m.version, m.as_of)
        )
    } else if m.rows != l.rows {
        format!(
            "it says {} rows but the manifest at {at} lists {}",
            l.rows, m.rows
        )
    } else {
        return Ok(Ok(m));
    };
    Ok(Err(what))
}

/// The product's `latest.json` resolved to the manifest it names, checked to be that
/// version (see [`check_latest`]); `None` when nothing is published yet. An unreadable or
/// disagreeing `latest.json` is an error naming it, what is wrong and how to recover.
pub fn resolve_latest(
    store: &dyn ObjectStore,
    product: &str,
) -> Result<Option<(Latest, offline::Manifest)>> {
    let key = latest_key(product);
    let l: Latest = match doc::get_json(store, &key) {
        Ok(Some(l)) => l,
        Ok(None) => return Ok(None),
        Err(StoreError::Corrupt { source: e, .. }) => {
            return Err(ProductError::Read {
                product: product.into(),
                message: format!(
                    "{key} is unreadable ({e}); re-run the product's job (`c360 run JOB`, any as-of): its publish rebuilds {key} from the newest committed version"
                ),
            })
        }
        Err(e) => return Err(e.into()),
    };
    match check_latest(store, product, &l)? {
        Ok(m) => Ok(Some((l, m))),
        Err(what) => Err(ProductError::Read {
            product: product.into(),
            message: format!(
                "{key} disagrees with the manifest it names: {what}; re-run the job for {} (`c360 run JOB --as-of {}`) to repair it",
                l.as_of, l.as_of
            ),
        }),
    }
}

/// What a finished publish of `as_of` left that a re-run must repair although the
/// partition is intact: a missing `contract.yaml`, or a `latest.json` that is missing,
/// unreadable, or names `as_of` but disagrees with the manifest it names.
pub fn publish_damage(
    store: &dyn ObjectStore,
    product: &str,
    as_of: NaiveDate,
) -> Result<Option<String>> {
    let contract = layout::product_contract(product);
    match store.get(&contract) {
        Ok(_) => {}
        Err(StoreError::NotFound { .. }) => return Ok(Some(format!("{contract} is missing"))),
        Err(e) => return Err(e.into()),
    }
    let key = latest_key(product);
    let l: Latest = match doc::get_json(store, &key) {
        Ok(Some(l)) => l,
        Ok(None) => return Ok(Some(format!("{key} is missing"))),
        Err(StoreError::Corrupt { source: e, .. }) => {
            return Ok(Some(format!("{key} is unreadable: {e}")))
        }
        Err(e) => return Err(e.into()),
    };
    if l.as_of != as_of {
        return Ok(None);
    }
    Ok(check_latest(store, product, &l)?
        .err()
        .map(|what| format!("{key} disagrees with the manifest it names: {what}")))
}

/// The product's `latest.json`, if any, checked against its manifest ([`resolve_latest`]).
pub fn latest(store: &dyn ObjectStore, product: &str) -> Result<Option<Latest>> {
    Ok(resolve_latest(store, product)?.map(|(l, _)| l))
}

/// Committed as-of dates of a product, oldest first.
pub fn versions(store: &dyn ObjectStore, product: &str) -> Result<Vec<(u32, NaiveDate)>> {
    let mut out: Vec<(u32, NaiveDate)> = store
        .list(&product_prefix(product))?
        .iter()
        .filter_map(|o| layout::parse_manifest_key(&o.key))
        .collect();
    out.sort();
    Ok(out)
}

/// Reads the rows of the latest version.
pub fn read_latest(store: &dyn ObjectStore, product: &str) -> Result<(Latest, DataFrame)> {
    let (l, m) =
        resolve_latest(store, product)?.ok_or_else(|| ProductError::NotFound(product.into()))?;
    let df = offline::read_partition(store, &l.path, &m)?;
    Ok((l, df))
}

/// One customer's row of the latest version, as JSON.
pub fn get_customer(store: &dyn ObjectStore, product: &str, customer_id: &str) -> Result<Value> {
    let (l, df) = read_latest(store, product)?;
    let rows = df
        .lazy()
        .filter(col("customer_id").eq(lit(customer_id)))
        .collect()
        .map_err(|e| ProductError::Read {
            product: product.into(),
            message: e.to_string(),
        })?;
    if rows.height() == 0 {
        return Err(ProductError::NoCustomer {
            product: product.into(),
            customer_id: customer_id.into(),
            as_of: l.as_of,
        });
    }
    Ok(row_json(&rows, 0))
}

/// A frame row as a JSON object.
pub fn row_json(df: &DataFrame, i: usize) -> Value {
    let mut o = serde_json::Map::new();
    for c in df.columns() {
        let v = match c.get(i) {
            Ok(AnyValue::Null) | Err(_) => Value::Null,
            Ok(AnyValue::Boolean(b)) => json!(b),
            Ok(AnyValue::String(s)) => json!(s),
            Ok(AnyValue::StringOwned(s)) => json!(s.as_str()),
            Ok(AnyValue::Date(d)) => json!(crate::names::AsOf::from_day_number(d).to_string()),
            Ok(AnyValue::Datetime(v, unit, _)) => {
                let micros = match unit {
                    TimeUnit::Nanoseconds => v / 1000,
                    TimeUnit::Microseconds => v,
                    TimeUnit::Milliseconds => v * 1000,
                };
                json!(DateTime::<Utc>::from_timestamp_micros(micros).map(|t| t.to_rfc3339()))
            }
            Ok(v) => match v.extract::<f64>() {
                Some(f) if v.dtype().is_integer() => json!(f as i64),
                Some(f) => json!(f),
                None => json!(v.to_string()),
            },
        };
        o.insert(c.name().to_string(), v);
    }
    Value::Object(o)
}

fn write_catalog(store: &dyn ObjectStore, spec: &ProductSpec, m: &offline::Manifest) -> Result<()> {
    let versions = versions(store, &spec.name)?
        .into_iter()
        .filter(|(v, _)| *v == spec.major)
        .map(|(_, d)| d)
        .collect();
    let entry = CatalogEntry {
        name: spec.name.to_string(),
        domain: spec.domain.clone(),
        owner: spec.owner.clone(),
        description: spec.description.clone(),
        consumers: spec.consumers.clone(),
        contract: layout::product_contract(&spec.name),
        latest: latest_key(&spec.name),
        versions,
        columns: m.schema.clone(),
        updated_at: Utc::now(),
    };
    doc::put_json(store, &layout::catalog_entry(&spec.name), &entry)?;
    Ok(())
}

/// Every catalog entry.
pub fn list(store: &dyn ObjectStore) -> Result<Vec<CatalogEntry>> {
    let mut out = Vec::new();
    for o in store.list(layout::CATALOG)? {
        if !o.key.ends_with(".json") {
            continue;
        }
        // A damaged entry hides one product from the list, not the list: skipped (its
        // next publish rewrites it).
        match doc::get_json::<CatalogEntry>(store, &o.key) {
            Ok(Some(e)) => out.push(e),
            Ok(None) => {}
            Err(e @ StoreError::Corrupt { .. }) => {
                tracing::warn!(key = %o.key, error = %e, "skipping an unreadable catalog entry");
            }
            Err(e) => return Err(e.into()),
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// The contract as an ODCS v3 document (JSON value; written as YAML).
pub fn contract(spec: &ProductSpec) -> Value {
    let props: Vec<Value> = spec
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut p = json!({
                "name": c.name,
                "logicalType": c.logical_type,
                "physicalType": physical_type(&c.logical_type),
                "description": c.description,
                "required": c.required,
                "classification": "internal",
            });
            if i == 0 {
                p["primaryKey"] = json!(true);
                p["primaryKeyPosition"] = json!(1);
                p["unique"] = json!(true);
            }
            let mut quality = vec![];
            if c.required {
                quality.push(json!({
                    "type": "library",
                    "metric": "nullValues",
                    "mustBe": 0,
                    "description": format!("{} is never null", c.name),
                    "dimension": "completeness",
                }));
            }
            if !c.allowed.is_empty() {
                quality.push(json!({
                    "type": "library",
                    "metric": "invalidValues",
                    "arguments": {"validValues": c.allowed},
                    "mustBe": 0,
                    "description": format!("{} is one of {}", c.name, c.allowed.join(", ")),
                    "dimension": "conformity",
                }));
            }
            if let Some((lo, hi)) = c.range {
                p["logicalTypeOptions"] = json!({"minimum": lo, "maximum": hi});
            }
            if !quality.is_empty() {
                p["quality"] = json!(quality);
            }
            p
        })
        .collect();
    let key = spec
        .columns
        .first()
        .map(|c| c.name.clone())
        .unwrap_or_default();
    json!({
        "apiVersion": "v3.0.2",
        "kind": "DataContract",
        "id": format!("urn:c360:product:{}", spec.name),
        "name": spec.name,
        "version": format!("{}.0.0", spec.major),
        "status": "active",
        "domain": spec.domain,
        "dataProduct": spec.name,
        "tenant": "customer360",
        "description": {
            "purpose": spec.description,
            "usage": format!("Read the latest version via {}, or `c360 products get {} CUSTOMER_ID`. Consumers: {}.", latest_key(&spec.name), spec.name, spec.consumers.join(", ")),
            "limitations": "Scores are model estimates as of the as_of date, not facts. No personal data (e.g. email) is included: join on customer_id inside an authorised system to contact customers.",
        },
        "schema": [{
            "name": spec.name,
            "physicalName": layout::product_major(&spec.name, spec.major),
            "logicalType": "object",
            "physicalType": "table",
            "description": spec.description,
            "dataGranularityDescription": "One row per customer per as_of date",
            "properties": props,
            "quality": [
                {
                    "type": "library",
                    "metric": "duplicateValues",
                    "arguments": {"properties": [key]},
                    "mustBe": 0,
                    "description": "One row per customer",
                    "dimension": "uniqueness",
                },
                {
                    "type": "library",
                    "metric": "rowCount",
                    "mustBeGreaterThan": 0,
                    "description": "Row count equals the customers of the feature snapshot (checked before publishing)",
                    "dimension": "completeness",
                },
            ],
        }],
        "team": [{"username": spec.owner, "role": "owner"}],
        "support": [{"channel": format!("{}-data-products", spec.domain), "tool": "other"}],
        "slaProperties": [
            {"property": "frequency", "value": spec.freshness_days, "unit": "d", "description": format!("A new version every {} day(s) (cron {})", spec.freshness_days, spec.schedule)},
            {"property": "latency", "value": spec.freshness_days + 1, "unit": "d", "element": format!("{}.as_of", spec.name), "description": "The latest as_of is never older than this"},
            {"property": "retention", "value": spec.retention_days, "unit": "d"},
        ],
        "tags": ["customer360", "c360", "scores"],
        "customProperties": [
            {"property": "piiColumns", "value": "none"},
            {"property": "consumers", "value": spec.consumers.join(", ")},
        ],
    })
}

fn physical_type(logical: &str) -> &'static str {
    match logical {
        "string" => "STRING",
        "number" => "DOUBLE",
        "integer" => "BIGINT",
        "boolean" => "BOOLEAN",
        "date" => "DATE",
        "timestamp" => "TIMESTAMP",
        _ => "STRING",
    }
}

fn write_contract(store: &dyn ObjectStore, spec: &ProductSpec) -> Result<()> {
    let yaml = format!(
        "# Open Data Contract Standard v3 contract of the {} data product; written by c360.\n{}",
        spec.name,
        contract_yaml(spec)?
    );
    let key = layout::product_contract(&spec.name);
    if store.get(&key).ok().as_deref() != Some(yaml.as_bytes()) {
        store.put(&key, yaml.as_bytes())?;
    }
    Ok(())
}

/// The ODCS document of [`contract`] as YAML text (by `yaml_serde`).
///
/// Errors: [`ProductError::Contract`] if the document cannot be serialized.
pub fn contract_yaml(spec: &ProductSpec) -> Result<String> {
    yaml_serde::to_string(&contract(spec)).map_err(|source| ProductError::Contract {
        product: spec.name.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values YAML would read as something else (`yes`, `0001`, `x: y`, `# c`, `- a`, `null`,
    /// multi-line text) round-trip exactly: what a consumer parses is what c360 wrote.
    #[test]
    fn yaml_round_trips_tricky_scalars() {
        let v = json!({"a": 1, "b": {"c": "x: y", "d": [1, {"e": true, "f": []}]}, "g": [],
            "s": ["yes", "no", "0001", "1e3", "# c", "- a", "null", "~", "", "two\nlines", "'q'"]});
        let text = yaml_serde::to_string(&v).unwrap();
        let back: Value = yaml_serde::from_str(&text).unwrap();
        assert_eq!(back, v, "{text}");
    }

    #[test]
    fn pii_columns_are_refused() {
        let df = df!("customer_id" => ["a"], "Email" => ["x@y"]).unwrap();
        assert!(
            matches!(check_no_pii("p", &df), Err(ProductError::Pii { column, .. }) if column == "Email")
        );
        let df = df!("customer_id" => ["a"], "score" => [0.5]).unwrap();
        assert!(check_no_pii("p", &df).is_ok());
    }
}
