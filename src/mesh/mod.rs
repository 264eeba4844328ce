//! The data mesh: what c360 tells the rest of the mesh about what it publishes.
//!
//! - [`Catalog`]: the central Glue Data Catalog (`[catalog] kind = "glue"`), with Lake
//!   Formation tags (`lf_tags = true`). Each product major is one external Parquet table
//!   (`<product>_v<major>`) partitioned by `as_of`; each committed version moves the
//!   `as_of=<D>` partition's location to the committing run's own prefix
//!   (`.../as_of=<D>/run=<run_id>-<hex>/`), so an engine that lists the partition sees exactly
//!   one committed run. Feature snapshots are registered the same way in their own database.
//! - [`EventSink`]: EventBridge (`[events] kind = "eventbridge"`): one event after
//!   `latest.json` moves (`Data Product Version Published`) and one when a gate refuses a
//!   version (`Data Product Version Refused`). A failed event never un-publishes.
//!
//! The commit order of a publish is: parts → manifest → catalog partition → `latest.json`
//! → event. The embedded default (`kind = "none"` for both) does nothing here.

use std::collections::BTreeMap;
use std::fmt;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::offline::{ColumnInfo, Manifest};
use crate::product::ProductSpec;
use crate::store::ObjectStore;

pub mod events;
pub mod glue;
pub mod lf;
pub mod settings;

pub use settings::{CatalogKind, CatalogSettings, Classification, EventSettings, EventsKind};

/// An error talking to the mesh's services, naming the service, the resource and the fix.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// The settings cannot work (e.g. a Glue catalog over a store not on S3).
    #[error("[{section}] in c360.toml: {message}")]
    Settings {
        section: &'static str,
        message: String,
    },
    /// A call to an AWS service failed (after the retry policy's attempts).
    #[error("{service} {operation} on {resource}: {message}")]
    Aws {
        service: &'static str,
        operation: &'static str,
        resource: String,
        message: String,
    },
    /// A product's columns changed in a way its readers cannot follow within one major.
    #[error("product {product} v{major}: {message}; a removed or retyped column is a breaking change: bump [product] major in the job file (the new major is a new table), or put the column back as it was")]
    SchemaChange {
        product: String,
        major: u32,
        message: String,
    },
    /// The Glue table a product (or snapshot) maps to is registered for another location:
    /// two products whose names map to one table name, or two stores in one database.
    #[error("Glue table {table}: {message}")]
    Conflict { table: String, message: String },
    /// A column's type has no Glue (Hive) equivalent.
    #[error("{table}: column {column} has type {dtype}, which has no Glue type")]
    UnsupportedType {
        table: String,
        column: String,
        dtype: String,
    },
}

pub type Result<T, E = MeshError> = std::result::Result<T, E>;

/// What a catalog registration did (kept in the run ledger and in events).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CatalogRecord {
    /// The Glue database.
    pub database: String,
    /// The Glue table.
    pub table: String,
    /// The partition's location: the committed run's prefix (`s3://.../as_of=<D>/run=.../`).
    pub location: String,
    /// What was done, in order (`CreateTable churn_scores_v1`, `UpdatePartition as_of=...`).
    #[serde(default)]
    pub actions: Vec<String>,
}

/// The central catalog: none (the embedded default) or the Glue Data Catalog.
///
/// Calls block (they run on the AWS runtime, see [`crate::aws::block_on`]).
pub trait Catalog: Send + Sync + fmt::Debug {
    /// `none`, or `glue`.
    fn kind(&self) -> &'static str;
    /// Before any part of a product version is written: refuses a schema that is not an
    /// additive change of the registered table of the same major
    /// ([`MeshError::SchemaChange`]), or an unreachable catalog. `schema`: the columns
    /// about to be written, in order.
    fn check_product(&self, spec: &ProductSpec, schema: &[ColumnInfo]) -> Result<()>;
    /// After the manifest commits, before `latest.json` moves: creates the database and
    /// the table when missing (else updates the table: additive changes only), applies the
    /// Lake Formation tags, and points the manifest's `as_of` partition at the committed
    /// run's prefix. Idempotent. `None` for the `none` catalog.
    fn register_product(
        &self,
        store: &dyn ObjectStore,
        spec: &ProductSpec,
        manifest: &Manifest,
    ) -> Result<Option<CatalogRecord>>;
    /// The same for a committed feature snapshot (its manifest names set, version, as-of).
    fn register_snapshot(
        &self,
        store: &dyn ObjectStore,
        manifest: &Manifest,
    ) -> Result<Option<CatalogRecord>>;
    /// What [`Catalog::register_product`] would do for a version of `spec` as of `as_of`,
    /// for `c360 run --dry-run` (one line per action; empty for `none`).
    fn plan_product(&self, spec: &ProductSpec, as_of: NaiveDate) -> Vec<String>;
    /// The store keys (relative to the store root, no trailing `/`) every registered
    /// partition of `product` major `major` points at: what `c360 products gc` must never
    /// remove. Empty for `none`, or when the table does not exist.
    fn referenced_locations(
        &self,
        store: &dyn ObjectStore,
        product: &str,
        major: u32,
    ) -> Result<Vec<String>>;
}

/// No catalog: the embedded default.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCatalog;

impl Catalog for NoCatalog {
    fn kind(&self) -> &'static str {
        "none"
    }
    fn check_product(&self, _: &ProductSpec, _: &[ColumnInfo]) -> Result<()> {
        Ok(())
    }
    fn register_product(
        &self,
        _: &dyn ObjectStore,
        _: &ProductSpec,
        _: &Manifest,
    ) -> Result<Option<CatalogRecord>> {
        Ok(None)
    }
    fn register_snapshot(
        &self,
        _: &dyn ObjectStore,
        _: &Manifest,
    ) -> Result<Option<CatalogRecord>> {
        Ok(None)
    }
    fn plan_product(&self, _: &ProductSpec, _: NaiveDate) -> Vec<String> {
        vec![]
    }
    fn referenced_locations(&self, _: &dyn ObjectStore, _: &str, _: u32) -> Result<Vec<String>> {
        Ok(vec![])
    }
}

/// EventBridge `detail-type` of a new committed version.
pub const VERSION_PUBLISHED: &str = "Data Product Version Published";
/// EventBridge `detail-type` of a version a gate refused.
pub const VERSION_REFUSED: &str = "Data Product Version Refused";

/// The `detail` of a [`VERSION_PUBLISHED`] event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionPublished {
    pub product: String,
    pub major: u32,
    pub as_of: NaiveDate,
    pub run_id: String,
    /// The committed run's prefix (`s3://bucket/.../as_of=<D>/run=<id>-<hex>/`).
    pub location: String,
    /// The Glue database and table, when the catalog is Glue.
    pub glue_database: Option<String>,
    pub glue_table: Option<String>,
    pub rows: u64,
    /// The ODCS contract's `version` (`<major>.0.0`).
    pub contract_version: String,
    /// Whether `latest.json` now names this version (false for a back-filled older as-of).
    pub latest: bool,
    /// The score's statistics (the gates' inputs: mean, quantiles, distinct count).
    pub score_statistics: serde_json::Value,
}

/// The `detail` of a [`VERSION_REFUSED`] event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionRefused {
    pub product: String,
    pub major: u32,
    pub as_of: NaiveDate,
    pub run_id: String,
    /// Which gate refused and why (the ledger's text).
    pub reason: String,
    pub score_statistics: serde_json::Value,
}

/// One event for the bus.
#[derive(Debug, Clone, PartialEq)]
pub enum ProductEvent {
    Published(VersionPublished),
    Refused(VersionRefused),
}

impl ProductEvent {
    /// The event's `detail-type`.
    pub fn detail_type(&self) -> &'static str {
        match self {
            ProductEvent::Published(_) => VERSION_PUBLISHED,
            ProductEvent::Refused(_) => VERSION_REFUSED,
        }
    }
    /// The event's `detail` as JSON.
    pub fn detail(&self) -> serde_json::Value {
        match self {
            ProductEvent::Published(d) => serde_json::to_value(d),
            ProductEvent::Refused(d) => serde_json::to_value(d),
        }
        .unwrap_or_default()
    }
}

/// What became of one event (kept in the run ledger).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventRecord {
    pub detail_type: String,
    pub bus: String,
    /// Delivered: the event id EventBridge gave.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    pub attempts: u32,
    /// Not delivered after every attempt: why (the version stays published).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Where product events go: nowhere (the default) or an EventBridge bus.
pub trait EventSink: Send + Sync + fmt::Debug {
    /// `none`, or `eventbridge`.
    fn kind(&self) -> &'static str;
    /// Sends one event, retrying; never fails the caller: what happened is the record
    /// (`None` for the `none` sink). Failures are counted in `/metrics`.
    fn send(&self, event: &ProductEvent) -> Option<EventRecord>;
    /// What [`EventSink::send`] would do, for `c360 run --dry-run`.
    fn plan(&self, detail_type: &str) -> Vec<String>;
}

/// No events: the embedded default.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoEvents;

impl EventSink for NoEvents {
    fn kind(&self) -> &'static str {
        "none"
    }
    fn send(&self, _: &ProductEvent) -> Option<EventRecord> {
        None
    }
    fn plan(&self, _: &str) -> Vec<String> {
        vec![]
    }
}

/// The catalog and the event sink of a project.
#[derive(Debug)]
pub struct Mesh {
    pub catalog: Box<dyn Catalog>,
    pub events: Box<dyn EventSink>,
}

impl Default for Mesh {
    fn default() -> Mesh {
        Mesh::none()
    }
}

impl Mesh {
    /// Neither catalog nor events (the embedded default).
    pub fn none() -> Mesh {
        Mesh {
            catalog: Box::new(NoCatalog),
            events: Box::new(NoEvents),
        }
    }

    /// What [`Mesh::open`] refuses, every problem (the catalog's and the event bus's): for
    /// `c360 validate`. Makes no call.
    pub fn problems(config: &crate::project::Config, store_uri: &str) -> Vec<MeshError> {
        let mut errs = Vec::new();
        if config.catalog.kind == CatalogKind::Glue {
            if let Err(e) = glue::GlueCatalog::new(
                &config.catalog,
                &config.aws,
                &config.project.name,
                store_uri,
            ) {
                errs.push(e);
            }
        }
        if config.events.kind == EventsKind::Eventbridge {
            if let Err(e) = events::EventBridgeSink::new(&config.events, &config.aws) {
                errs.push(e);
            }
        }
        errs
    }

    /// The project's catalog and event sink, from `[catalog]`, `[events]` and `[aws]`.
    /// `store_uri`: the store products are published to (a Glue catalog needs it on S3).
    /// Opening makes no call; the first use does.
    pub fn open(config: &crate::project::Config, store_uri: &str) -> Result<Mesh> {
        let catalog: Box<dyn Catalog> = match config.catalog.kind {
            CatalogKind::None => Box::new(NoCatalog),
            CatalogKind::Glue => Box::new(glue::GlueCatalog::new(
                &config.catalog,
                &config.aws,
                &config.project.name,
                store_uri,
            )?),
        };
        let events: Box<dyn EventSink> = match config.events.kind {
            EventsKind::None => Box::new(NoEvents),
            EventsKind::Eventbridge => {
                Box::new(events::EventBridgeSink::new(&config.events, &config.aws)?)
            }
        };
        Ok(Mesh { catalog, events })
    }
}

/// The Lake Formation tags of a product: from the job's `[product]` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TagSet {
    /// Tag key -> value on the database and the table (`domain`, `data_product`,
    /// `classification`, and the job's extra `[product.lf_tags]`).
    pub table: BTreeMap<String, String>,
    /// Column -> its `classification` value.
    pub columns: BTreeMap<String, Classification>,
}
