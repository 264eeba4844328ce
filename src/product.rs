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
//!
//! This file owns the product's definition ([`ProductSpec`], [`ColumnDoc`]), publishing and
//! the contract; `product/latest.rs` owns `latest.json`, the committed versions, reading
//! them and the catalog; `product/columns.rs` the product's standard columns.

use std::collections::BTreeMap;

use chrono::{NaiveDate, Utc};
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::offline;
use crate::store::{layout, ObjectStore, StoreError};

mod columns;
mod gc;
mod latest;
pub use columns::{product_frame, product_spec, standard_columns, ScoredRun};
pub use gc::{
    format_age, gc, resolve_retention, GcError, GcOptions, GcReport, KeepReason, Retention, RunDir,
};
pub use latest::{
    get_customer, latest, list, publish_damage, read_latest, resolve_latest, row_json, versions,
    CatalogEntry, Latest,
};
use latest::{latest_key, move_latest, write_catalog};

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
    /// `latest.json` disagrees with the manifest it names (`message` says how, and how to
    /// repair it).
    #[error("product {product}: {message}")]
    Read { product: String, message: String },
    /// `latest.json` is not a valid one (damaged or edited by hand); the next publish of
    /// the product rebuilds it.
    #[error("product {product}: {key} is unreadable ({source}); re-run the product's job (`c360 run JOB`, any as-of): its publish rebuilds {key} from the newest committed version")]
    LatestUnreadable {
        product: String,
        key: String,
        #[source]
        source: serde_json::Error,
    },
    /// The rows of a published version could not be filtered.
    #[error("product {product}: {source}")]
    Frame {
        product: String,
        #[source]
        source: PolarsError,
    },
    /// The catalog refused the version before any part of it was written, or could not
    /// be asked.
    #[error("{source}")]
    Catalog {
        product: String,
        #[source]
        source: crate::mesh::MeshError,
    },
    /// The version committed, but the catalog could not register it: it is not latest (the
    /// previous version stays latest and registered); re-running the job finishes it.
    #[error("{source}; product {product} as of {as_of} is committed but neither registered nor latest (the previous version stays both): re-run the job for {as_of} (`c360 run JOB --as-of {as_of}`) once the catalog answers, to finish the publish")]
    Unregistered {
        product: String,
        as_of: NaiveDate,
        #[source]
        source: crate::mesh::MeshError,
    },
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
    /// ODCS logical type (written `string`, `number`, ...).
    pub logical_type: LogicalType,
    pub required: bool,
    /// Allowed values, when the column is categorical.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed: Vec<String>,
    /// Inclusive numeric range, when bounded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<(f64, f64)>,
    /// The column's sensitivity (ODCS `classification`; its Lake Formation tag).
    #[serde(default)]
    pub classification: crate::mesh::Classification,
}

/// A column's ODCS logical type, written as ODCS spells it (`string`, `number`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogicalType {
    String,
    Number,
    Integer,
    Boolean,
    Date,
    Timestamp,
}

impl LogicalType {
    /// Every logical type, in the order ODCS lists them.
    pub const ALL: [LogicalType; 6] = [
        LogicalType::String,
        LogicalType::Number,
        LogicalType::Integer,
        LogicalType::Boolean,
        LogicalType::Date,
        LogicalType::Timestamp,
    ];

    /// The type's name in the contract (`logicalType`).
    pub fn as_str(self) -> &'static str {
        match self {
            LogicalType::String => "string",
            LogicalType::Number => "number",
            LogicalType::Integer => "integer",
            LogicalType::Boolean => "boolean",
            LogicalType::Date => "date",
            LogicalType::Timestamp => "timestamp",
        }
    }

    /// The contract's `physicalType` of a column of this type.
    pub fn physical_type(self) -> &'static str {
        match self {
            LogicalType::String => "STRING",
            LogicalType::Number => "DOUBLE",
            LogicalType::Integer => "BIGINT",
            LogicalType::Boolean => "BOOLEAN",
            LogicalType::Date => "DATE",
            LogicalType::Timestamp => "TIMESTAMP",
        }
    }
}

impl std::fmt::Display for LogicalType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// A logical type name that is not one of ODCS's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("logical type {0:?}: unknown (use string, number, integer, boolean, date or timestamp)")]
pub struct UnknownLogicalType(pub String);

impl std::str::FromStr for LogicalType {
    type Err = UnknownLogicalType;
    fn from_str(s: &str) -> std::result::Result<LogicalType, UnknownLogicalType> {
        LogicalType::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownLogicalType(s.to_string()))
    }
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
    /// The product's sensitivity (the table's `classification` tag).
    #[serde(default)]
    pub classification: crate::mesh::Classification,
    /// Extra Lake Formation tags on the product's database and table.
    #[serde(default)]
    pub lf_tags: BTreeMap<String, String>,
}

impl ProductSpec {
    /// The product's Lake Formation tags: `domain`, `data_product`, `classification` and
    /// the job's `[product.lf_tags]` on the table; each column's `classification`.
    pub fn tag_set(&self) -> crate::mesh::TagSet {
        let mut table = self.lf_tags.clone();
        table.insert("domain".into(), self.domain.clone());
        table.insert("data_product".into(), self.name.to_string());
        table.insert("classification".into(), self.classification.to_string());
        crate::mesh::TagSet {
            table,
            columns: self
                .columns
                .iter()
                .map(|c| (c.name.clone(), c.classification))
                .collect(),
        }
    }

    /// The contract's `version` (`<major>.0.0`).
    pub fn contract_version(&self) -> String {
        format!("{}.0.0", self.major)
    }
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

/// Everything of a product ([`layout::product`]).
pub fn product_prefix(name: &str) -> String {
    layout::product(name)
}

/// A published version's partition ([`layout::product_partition`]).
pub fn partition_prefix(name: &str, major: u32, as_of: NaiveDate) -> String {
    layout::product_partition(name, major, as_of)
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
    /// What the central catalog registered (None without one).
    pub catalog: Option<crate::mesh::CatalogRecord>,
    /// What became of the product event (None without an event bus).
    pub event: Option<crate::mesh::EventRecord>,
}

/// Publishes `df` as the product's partition for `as_of`, then the contract, the catalog
/// entry, and (last) `latest.json`, without a central catalog or events: [`publish_to`] with
/// [`crate::mesh::Mesh::none`].
pub fn publish(
    store: &dyn ObjectStore,
    spec: &ProductSpec,
    df: &DataFrame,
    as_of: NaiveDate,
    lineage: &Lineage,
    stats: Value,
) -> Result<Published> {
    publish_to(
        store,
        &crate::mesh::Mesh::none(),
        spec,
        df,
        as_of,
        lineage,
        stats,
    )
}

/// Publishes `df` as the product's partition for `as_of`, in the commit order of the data
/// mesh: the central catalog checks the schema first (a non-additive change publishes
/// nothing), then the parts, the manifest (the commit point), the contract, the catalog's
/// partition (moved to this run's prefix), `latest.json`, c360's catalog entry, and last the
/// product event. Idempotent: a partition already committed by the same run is left as it
/// is (and registered again, which changes nothing). A catalog failure after the manifest
/// commits leaves `latest.json` where it was; re-running the job registers and moves it.
/// An event that cannot be delivered never un-publishes: it is in [`Published::event`].
///
/// Errors: PII or undocumented columns, the store, the catalog ([`ProductError::Catalog`]).
pub fn publish_to(
    store: &dyn ObjectStore,
    mesh: &crate::mesh::Mesh,
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
    let catalog_err = |source| ProductError::Catalog {
        product: spec.name.to_string(),
        source,
    };
    let schema = offline::schema_of(df);
    // Additive only within a major, with or without a central catalog: against the latest
    // version of the same major, then against the catalog's table.
    if let Some(e) = breaking_change(store, &spec.name, spec.major, &schema)? {
        return Err(catalog_err(e));
    }
    mesh.catalog
        .check_product(spec, &schema)
        .map_err(catalog_err)?;
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
                stats.clone(),
                &prefix,
                version.as_deref(),
            )?;
            (m, damage)
        }
    };
    crate::failpoint::hit("publish.manifest");
    write_contract(store, spec)?;
    let catalog = mesh
        .catalog
        .register_product(store, spec, &manifest)
        .map_err(|source| ProductError::Unregistered {
            product: spec.name.to_string(),
            as_of,
            source,
        })?;
    crate::failpoint::hit("publish.catalog");
    let latest_moved = move_latest(store, spec, &prefix, &manifest)?;
    crate::failpoint::hit("publish.latest");
    write_catalog(store, spec, &manifest)?;
    let event = mesh
        .events
        .send(&crate::mesh::ProductEvent::Published(version_published(
            store,
            spec,
            &manifest,
            catalog.as_ref(),
            latest_moved,
        )));
    Ok(Published {
        prefix,
        manifest,
        latest_moved,
        redone,
        catalog,
        event,
    })
}

/// A change of the product's columns that its major does not allow, against the latest
/// version when it is of the same major: a column of that version missing from `columns`,
/// or (where `columns` gives a type, i.e. a non-empty `dtype`) retyped. Adding columns is
/// fine. `None` when nothing is published, the latest is another major, or it cannot be
/// read (a damaged `latest.json` is repaired by the publish; the catalog still checks).
pub fn breaking_change(
    store: &dyn ObjectStore,
    product: &str,
    major: u32,
    columns: &[offline::ColumnInfo],
) -> Result<Option<crate::mesh::MeshError>> {
    let latest = match resolve_latest(store, product) {
        Ok(Some((_, m))) => m,
        Ok(None) | Err(ProductError::Read { .. } | ProductError::LatestUnreadable { .. }) => {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    if latest.version != major {
        return Ok(None);
    }
    let mut broken = Vec::new();
    for old in &latest.schema {
        match columns.iter().find(|c| c.name == old.name) {
            None => broken.push(format!("column {} ({}) was removed", old.name, old.dtype)),
            Some(c) if !c.dtype.is_empty() && c.dtype != old.dtype => broken.push(format!(
                "column {} was {}, now {}",
                old.name, old.dtype, c.dtype
            )),
            Some(_) => {}
        }
    }
    Ok(
        (!broken.is_empty()).then(|| crate::mesh::MeshError::SchemaChange {
            product: product.to_string(),
            major,
            message: format!(
                "against the latest version (as of {}): {}",
                latest.as_of,
                broken.join("; ")
            ),
        }),
    )
}

/// The `detail` of the event announcing a committed version (`m`, committed for `spec`;
/// `catalog`: where the catalog registered it; `latest`: whether `latest.json` names it).
pub fn version_published(
    store: &dyn ObjectStore,
    spec: &ProductSpec,
    m: &offline::Manifest,
    catalog: Option<&crate::mesh::CatalogRecord>,
    latest: bool,
) -> crate::mesh::VersionPublished {
    let prefix = partition_prefix(&spec.name, spec.major, m.as_of);
    crate::mesh::VersionPublished {
        product: spec.name.to_string(),
        major: spec.major,
        as_of: m.as_of,
        run_id: m.run_id.clone(),
        location: match catalog {
            Some(c) => c.location.clone(),
            None => format!(
                "{}/{}/",
                store.uri().trim_end_matches('/'),
                offline::run_prefix(&prefix, m)
            ),
        },
        glue_database: catalog.map(|c| c.database.clone()),
        glue_table: catalog.map(|c| c.table.clone()),
        rows: m.rows,
        contract_version: spec.contract_version(),
        latest,
        score_statistics: m.extra.get("score_statistics").cloned().unwrap_or_default(),
    }
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
                "physicalType": c.logical_type.physical_type(),
                "description": c.description,
                "required": c.required,
                "classification": c.classification,
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
        "version": spec.contract_version(),
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

    #[test]
    fn logical_types_read_and_write_as_odcs_spells_them() {
        for t in LogicalType::ALL {
            assert_eq!(t.as_str().parse::<LogicalType>(), Ok(t));
            assert_eq!(serde_json::to_value(t).unwrap(), json!(t.as_str()));
            let back: LogicalType = serde_json::from_value(json!(t.as_str())).unwrap();
            assert_eq!(back, t);
        }
        assert_eq!(LogicalType::Number.physical_type(), "DOUBLE");
        assert_eq!(LogicalType::Timestamp.physical_type(), "TIMESTAMP");
        let e = "text".parse::<LogicalType>().unwrap_err().to_string();
        assert!(e.contains("\"text\"") && e.contains("timestamp"), "{e}");
    }
}
