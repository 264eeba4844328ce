//! Reading and moving what a product has published: `latest.json` (the pointer to the
//! newest committed version, moved only forwards and only to a manifest that describes
//! it), the committed versions, the rows of the latest one, and the catalog entries
//! (`catalog/<p>.json`).

use chrono::{DateTime, NaiveDate, Utc};
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{partition_prefix, product_prefix, ProductError, ProductSpec, Result};
use crate::offline::{self, ColumnInfo};
use crate::store::doc::{self, Current, Decision, Document};
use crate::store::{layout, ObjectStore, StoreError};

/// `latest.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Latest {
    /// The committed partition, relative to the store root.
    pub path: String,
    pub as_of: NaiveDate,
    pub run_id: String,
    pub committed_at: DateTime<Utc>,
    pub rows: u64,
    /// A copy of the manifest of the version it names (written since the data mesh: older
    /// files lack it). Readers read exactly these files (under the run's own prefix, which
    /// nothing rewrites or removes while it is latest), so a re-publish of the same as-of
    /// in progress, or one that failed after its manifest committed, never changes or
    /// breaks what `latest.json` serves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<Box<offline::Manifest>>,
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

/// `products/<p>/latest.json` ([`layout::product_latest`]).
pub(super) fn latest_key(name: &str) -> String {
    layout::product_latest(name)
}

/// Moves `latest.json` to the partition at `prefix` (committed as `m`) unless it names a
/// newer version; `Ok(true)` when it names ours afterwards.
pub(super) fn move_latest(
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
            manifest: Some(Box::new(target.clone())),
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
    let read = match offline::read_manifest(store, &l.path) {
        // The partition now holds another run's manifest (a newer publish of the same as-of
        // is under way, or failed after its manifest committed): the version latest.json
        // names is the copy it carries, when that copy describes it; its files are under its
        // own run's prefix, which nothing rewrites or removes while it is latest.
        Ok(Some(m)) if m.run_id != l.run_id => match &l.manifest {
            Some(own)
                if own.run_id == l.run_id
                    && own.as_of == l.as_of
                    && partition_prefix(product, own.version, own.as_of) == l.path =>
            {
                Ok(Some((**own).clone()))
            }
            _ => Ok(Some(m)),
        },
        other => other,
    };
    let m = match read {
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
        Err(StoreError::Corrupt { source, .. }) => {
            return Err(ProductError::LatestUnreadable {
                product: product.into(),
                key,
                source,
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
        .map_err(|source| ProductError::Frame {
            product: product.into(),
            source,
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

/// Writes the product's catalog entry (its committed versions of `spec.major`).
pub(super) fn write_catalog(
    store: &dyn ObjectStore,
    spec: &ProductSpec,
    m: &offline::Manifest,
) -> Result<()> {
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
