//! `c360 catalog sync`'s work: registers everything a store has committed (every version
//! of every product, every feature snapshot) in a [`Catalog`], from the store's own
//! manifests. For the first registration of products published without a catalog, and
//! for repair after an outage; a second run changes nothing.
//!
//! A product's spec (column descriptions and classifications, owner, domain) comes from
//! the job that publishes it when the project has one, else from the ODCS contract the
//! store holds (`products/<p>/contract.yaml`, see [`spec_from_contract`]).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::mesh::{Catalog, CatalogRecord, Classification, MeshError};
use crate::offline::{self, OfflineError};
use crate::product::{self, ColumnDoc, LogicalType, ProductError, ProductSpec};
use crate::store::{layout, ObjectStore, StoreError};

/// What stopped a sync before it could register anything more (per-item catalog
/// failures are reported in [`SyncReport`] instead).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Product(#[from] ProductError),
    #[error(transparent)]
    Offline(#[from] OfflineError),
    /// `--product` names a product the store has not published.
    #[error("product {0} has no catalog entry in the store (see `c360 products list`)")]
    NoProduct(String),
}

/// One registered (or failed) item of a sync.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncLine {
    /// `product churn_scores v1 as_of=2024-09-30`, `feature set rfm v1 as_of=...`.
    pub what: String,
    /// What the catalog did (`actions` empty = unchanged), or why it failed.
    pub outcome: std::result::Result<CatalogRecord, String>,
}

impl std::fmt::Display for SyncLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.outcome {
            Ok(r) if r.actions.is_empty() => {
                write!(f, "{}: unchanged ({}.{})", self.what, r.database, r.table)
            }
            Ok(r) => write!(
                f,
                "{}: registered {}.{} -> {} ({})",
                self.what,
                r.database,
                r.table,
                r.location,
                r.actions.join("; ")
            ),
            Err(e) => write!(f, "{}: FAILED: {e}", self.what),
        }
    }
}

/// What a sync did.
#[derive(Debug, Clone, Default)]
pub struct SyncReport {
    pub lines: Vec<SyncLine>,
}

impl SyncReport {
    /// Items the catalog changed.
    pub fn registered(&self) -> usize {
        self.count(|o| matches!(o, Ok(r) if !r.actions.is_empty()))
    }
    /// Items already registered as they are.
    pub fn unchanged(&self) -> usize {
        self.count(|o| matches!(o, Ok(r) if r.actions.is_empty()))
    }
    /// Items that failed.
    pub fn failed(&self) -> usize {
        self.count(|o| o.is_err())
    }
    fn count(&self, f: impl Fn(&std::result::Result<CatalogRecord, String>) -> bool) -> usize {
        self.lines.iter().filter(|l| f(&l.outcome)).count()
    }
}

/// Registers every committed version of every product in `store` (only `product` when
/// given; then no feature snapshots), then every committed feature snapshot. `spec_of`:
/// the project's spec of a product, if a job publishes it. `each`: called with every line
/// as it is done.
pub fn sync(
    catalog: &dyn Catalog,
    store: &dyn ObjectStore,
    product: Option<&str>,
    spec_of: &dyn Fn(&str) -> Option<ProductSpec>,
    each: &mut dyn FnMut(&SyncLine),
) -> Result<SyncReport, SyncError> {
    let mut report = SyncReport::default();
    let mut push = |line: SyncLine, report: &mut SyncReport| {
        each(&line);
        report.lines.push(line);
    };
    // Every product with a catalog entry, and every one with a committed version (stores
    // written before catalog entries have none).
    let mut names: std::collections::BTreeSet<String> =
        product::list(store)?.into_iter().map(|e| e.name).collect();
    for o in store.list(layout::PRODUCTS)? {
        if layout::parse_manifest_key(&o.key).is_some() {
            if let Some(n) = o
                .key
                .strip_prefix(&format!("{}/", layout::PRODUCTS))
                .and_then(|r| r.split('/').next())
            {
                names.insert(n.to_string());
            }
        }
    }
    if let Some(p) = product {
        if !names.contains(p) {
            return Err(SyncError::NoProduct(p.to_string()));
        }
    }
    for name in names
        .iter()
        .filter(|n| product.is_none_or(|p| p == n.as_str()))
    {
        let spec = match spec_of(name) {
            Some(s) => Ok(s),
            None => read_contract(store, name),
        };
        // What latest.json names: a partition whose manifest is another run's is a publish
        // that committed but did not finish; sync leaves it to the job (it never moves a
        // partition past latest.json).
        let latest = product::latest(store, name).ok().flatten();
        for (major, as_of) in product::versions(store, name)? {
            let what = format!("product {name} v{major} as_of={as_of}");
            let outcome = match &spec {
                Err(msg) => Err(msg.clone()),
                Ok(spec) => {
                    let mut spec = spec.clone();
                    spec.major = major;
                    let prefix = product::partition_prefix(name, major, as_of);
                    match offline::read_manifest(store, &prefix)? {
                        None => continue,
                        Some(m)
                            if latest
                                .as_ref()
                                .is_some_and(|l| l.path == prefix && l.run_id != m.run_id) =>
                        {
                            Err(format!(
                                "the publish of run {} committed but did not finish (latest.json still names run {}): re-run its job for {as_of} (`c360 run JOB --as-of {as_of}`) to register it, move latest.json and announce it; the catalog keeps the previous version",
                                m.run_id,
                                latest.as_ref().map(|l| l.run_id.as_str()).unwrap_or("?")
                            ))
                        }
                        Some(m) => catalog
                            .register_product(store, &spec, &m)
                            .map(|r| r.unwrap_or_default())
                            .map_err(|e| e.to_string()),
                    }
                }
            };
            push(SyncLine { what, outcome }, &mut report);
        }
    }
    if product.is_some() {
        return Ok(report);
    }
    let mut keys: Vec<String> = store
        .list(layout::FEATURES)?
        .into_iter()
        .map(|o| o.key)
        .filter(|k| layout::parse_manifest_key(k).is_some())
        .collect();
    keys.sort();
    for key in keys {
        let Some(prefix) = key.strip_suffix(&format!("/{}", layout::MANIFEST)) else {
            continue;
        };
        let outcome = match offline::read_manifest(store, prefix) {
            Ok(Some(m)) => {
                let what = format!("feature set {} v{} as_of={}", m.name, m.version, m.as_of);
                let outcome = catalog
                    .register_snapshot(store, &m)
                    .map(|r| r.unwrap_or_default())
                    .map_err(|e: MeshError| e.to_string());
                SyncLine { what, outcome }
            }
            Ok(None) => continue,
            Err(e) => SyncLine {
                what: format!("feature snapshot {prefix}"),
                outcome: Err(e.to_string()),
            },
        };
        push(outcome, &mut report);
    }
    Ok(report)
}

/// The spec in a product's stored contract, or why there is none.
fn read_contract(store: &dyn ObjectStore, name: &str) -> std::result::Result<ProductSpec, String> {
    let key = layout::product_contract(name);
    let bytes = store.get(&key).map_err(|e| {
        format!("no spec: the project has no job publishing {name}, and its contract is unreadable ({e}): run from the project whose jobs/ publishes it, or re-publish it there (`c360 run JOB`), which writes the contract")
    })?;
    let text = String::from_utf8_lossy(&bytes);
    spec_from_contract(&text).map_err(|e| format!("{key}: {e}"))
}

/// A product spec from its ODCS contract as c360 writes it ([`product::contract`]):
/// name, major (from `version`), domain, owner, description, consumers, retention and
/// each column's type, description, required flag, range and classification. The table's
/// own `classification` and extra LF tags are not in the contract: `internal` and none.
///
/// Errors: what is missing or wrong, naming the field.
pub fn spec_from_contract(yaml: &str) -> std::result::Result<ProductSpec, String> {
    let doc: Value = yaml_serde::from_str(yaml).map_err(|e| format!("not YAML: {e}"))?;
    let s = |v: &Value, field: &str| -> std::result::Result<String, String> {
        v.get(field)
            .and_then(|x| x.as_str())
            .map(String::from)
            .ok_or_else(|| format!("field {field} is missing or not text"))
    };
    let name = s(&doc, "name")?;
    let version = s(&doc, "version")?;
    let major: u32 = version
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .ok_or_else(|| format!("version {version:?} is not <major>.<minor>.<patch>"))?;
    let table = doc
        .get("schema")
        .and_then(|s| s.get(0))
        .ok_or("field schema[0] is missing")?;
    let props = table
        .get("properties")
        .and_then(|p| p.as_array())
        .ok_or("field schema[0].properties is missing")?;
    let mut columns = Vec::with_capacity(props.len());
    for p in props {
        let cname = s(p, "name")?;
        let logical_type: LogicalType = s(p, "logicalType")?
            .parse()
            .map_err(|e| format!("column {cname}: {e}"))?;
        let classification: Classification = p
            .get("classification")
            .cloned()
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| format!("column {cname}: classification: {e}"))?
            .unwrap_or_default();
        let range = p
            .get("logicalTypeOptions")
            .and_then(|o| Some((o.get("minimum")?.as_f64()?, o.get("maximum")?.as_f64()?)));
        let allowed = p
            .get("quality")
            .and_then(|q| q.as_array())
            .into_iter()
            .flatten()
            .filter_map(|q| q.pointer("/arguments/validValues")?.as_array())
            .flatten()
            .filter_map(|v| v.as_str().map(String::from))
            .collect();
        columns.push(ColumnDoc {
            description: p
                .get("description")
                .and_then(|d| d.as_str())
                .unwrap_or_default()
                .to_string(),
            required: p.get("required").and_then(|r| r.as_bool()).unwrap_or(false),
            name: cname,
            logical_type,
            allowed,
            range,
            classification,
        });
    }
    let sla: BTreeMap<String, u64> = doc
        .get("slaProperties")
        .and_then(|s| s.as_array())
        .into_iter()
        .flatten()
        .filter_map(|p| Some((s(p, "property").ok()?, p.get("value")?.as_u64()?)))
        .collect();
    let consumers = doc
        .get("customProperties")
        .and_then(|c| c.as_array())
        .into_iter()
        .flatten()
        .find(|p| p.get("property").and_then(|x| x.as_str()) == Some("consumers"))
        .and_then(|p| p.get("value")?.as_str())
        .map(|v| {
            v.split(", ")
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let days = |k: &str| sla.get(k).map(|v| (*v).min(u32::MAX as u64) as u32);
    Ok(ProductSpec {
        name: name
            .parse()
            .map_err(|e: crate::names::NameError| e.to_string())?,
        major,
        domain: s(&doc, "domain")?,
        owner: doc
            .pointer("/team/0/username")
            .and_then(|u| u.as_str())
            .unwrap_or_default()
            .to_string(),
        description: doc
            .pointer("/description/purpose")
            .and_then(|d| d.as_str())
            .unwrap_or_default()
            .to_string(),
        consumers,
        retention_days: days("retention").unwrap_or(365),
        freshness_days: days("frequency").unwrap_or(1),
        schedule: String::new(),
        columns,
        classification: Classification::default(),
        lf_tags: BTreeMap::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_contract_reads_back_as_its_spec() {
        let col = |n: &str, t: LogicalType, c: Classification| ColumnDoc {
            name: n.into(),
            description: format!("the {n}"),
            logical_type: t,
            required: true,
            allowed: if n == "band" {
                vec!["low".into(), "high".into()]
            } else {
                vec![]
            },
            range: (n == "score").then_some((0.0, 1.0)),
            classification: c,
        };
        let spec = ProductSpec {
            name: "churn_scores".parse().unwrap(),
            major: 3,
            domain: "marketing".into(),
            owner: "team@example.com".into(),
            description: "Churn risk".into(),
            consumers: vec!["crm".into(), "bi".into()],
            retention_days: 90,
            freshness_days: 7,
            schedule: String::new(),
            columns: vec![
                col(
                    "customer_id",
                    LogicalType::String,
                    Classification::Confidential,
                ),
                col("score", LogicalType::Number, Classification::Internal),
                col("band", LogicalType::String, Classification::Public),
            ],
            classification: Classification::Internal,
            lf_tags: BTreeMap::new(),
        };
        let yaml = product::contract_yaml(&spec).unwrap();
        assert_eq!(spec_from_contract(&yaml).unwrap(), spec);
        let e = spec_from_contract("name: x\n").unwrap_err();
        assert!(e.contains("version"), "{e}");
        assert!(spec_from_contract(": : :").is_err());
    }
}
