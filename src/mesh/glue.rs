//! The Glue Data Catalog: [`GlueCatalog`], c360's [`Catalog`] for `[catalog] kind = "glue"`.
//!
//! Each product major is one external Parquet table `<product>_v<major>` in the products
//! database (location `s3://<store>/products/<p>/v<major>/`), partitioned by `as_of`
//! (`date`, `yyyy-MM-dd`); each feature snapshot version is one table `<set>_v<version>`
//! in the features database. A registration points the `as_of=<D>` partition at the
//! committed run's own prefix (`.../as_of=<D>/run=<run_id>-<hex>/`), so an engine that
//! lists the partition through Glue sees exactly one committed run, never parts of an
//! uncommitted or superseded one. Within a major the table only grows: the publish-time
//! gate ([`Catalog::check_product`]) refuses a new version with a removed or retyped
//! column ([`MeshError::SchemaChange`]); a registration (after that gate, and
//! `catalog sync` of older versions) refuses only a retyped column, adds the columns a
//! version adds (`UpdateTable`) and never drops one (an older version without a newer
//! column reads it as null). Lake Formation tags (`lf_tags = true`) are applied by
//! [`super::lf`]; in a snapshot table, columns derived from PII are `confidential`.
//!
//! Every call goes through [`crate::aws`]'s credential chain, retry policy and endpoint
//! overrides (`glue_endpoint_url`, `lakeformation_endpoint_url`); every failure is a
//! [`MeshError::Aws`] naming the service, the operation and the database/table.

mod partition;
pub mod schema;
mod snapshot;
pub mod sync;

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_sdk_glue::error::SdkError;
use aws_sdk_glue::types::{Column, DatabaseInput, SerDeInfo, StorageDescriptor, Table, TableInput};
use chrono::NaiveDate;
use tokio::sync::OnceCell;

use super::{Catalog, CatalogRecord, CatalogSettings, MeshError, Result};
use crate::aws::AwsSettings;
use crate::names::StoreUri;
use crate::offline::{ColumnInfo, Manifest};
use crate::product::ProductSpec;
use crate::store::{layout, ObjectStore};
use schema::{GlueColumn, PARTITION_KEY};

const INPUT_FORMAT: &str = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat";
const OUTPUT_FORMAT: &str = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat";
const SERDE: &str = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe";
/// The partition key's comment (what Athena shows).
const AS_OF_COMMENT: &str = "The version's as-of date, yyyy-MM-dd (UTC)";
/// The identifier column of snapshots and products: `confidential` in Lake Formation.
const ID_COLUMN: &str = "customer_id";
/// At most this many partitions are read back per table ([`Catalog::referenced_locations`]).
pub const MAX_PARTITIONS: usize = 100_000;

/// The Glue Data Catalog (with Lake Formation tags when `[catalog] lf_tags = true`).
///
/// Cheap to clone; clients are made on first use.
#[derive(Debug, Clone)]
pub struct GlueCatalog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    aws: AwsSettings,
    catalog_id: Option<String>,
    owner: Option<String>,
    lf_tags: bool,
    project: String,
    products_db: String,
    features_db: String,
    /// The store's URI (`s3://bucket/prefix`, no trailing `/`).
    store_uri: String,
    glue: OnceCell<aws_sdk_glue::Client>,
    lf: OnceCell<aws_sdk_lakeformation::Client>,
}

/// One table as c360 wants it registered.
#[derive(Debug, Clone)]
struct TableSpec {
    /// `product` or `feature snapshot` (error context).
    kind: &'static str,
    name: String,
    major: u32,
    database: String,
    table: String,
    /// The table's root (`s3://.../v<major>/`).
    location: String,
    columns: Vec<GlueColumn>,
    description: String,
    parameters: BTreeMap<String, String>,
    /// Lake Formation tags of the table, and column → `classification` value.
    tags: BTreeMap<String, String>,
    column_tags: BTreeMap<String, String>,
}

/// A failed Glue call as the mesh words it ([`MeshError::Aws`]): service, operation,
/// resource (`table db.t`, `database db`), cause (no secrets) and the fix. Glue sources
/// (`crate::source::glue`) word their failures the same way.
pub(crate) fn glue_err<E, R>(
    operation: &'static str,
    resource: String,
    e: &SdkError<E, R>,
) -> MeshError
where
    E: aws_sdk_glue::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    MeshError::Aws {
        service: "Glue",
        operation,
        resource,
        message: format!(
            "{}; check [aws] glue_endpoint_url (or AWS_ENDPOINT_URL_GLUE), region, credentials and their Glue permissions, and the network",
            crate::aws::error_text(e)
        ),
    }
}

fn build_err(operation: &'static str, resource: &str, e: impl std::fmt::Display) -> MeshError {
    MeshError::Aws {
        service: "Glue",
        operation,
        resource: resource.to_string(),
        message: format!("the request could not be built: {e}"),
    }
}

impl GlueCatalog {
    /// A catalog over `[catalog]` and `[aws]`; `project`: the project's name (default
    /// database names `<project>_products` and `<project>_features`, made Glue-safe);
    /// `store_uri`: the store (must be on S3: table and partition locations are in it).
    /// Makes no call.
    ///
    /// Errors: [`MeshError::Settings`] when the store is not on S3, or a database name is
    /// empty once made Glue-safe.
    pub fn new(
        settings: &CatalogSettings,
        aws: &AwsSettings,
        project: &str,
        store_uri: &str,
    ) -> Result<GlueCatalog> {
        let uri = StoreUri::parse(store_uri).map_err(|e| MeshError::Settings {
            section: "store",
            message: e.to_string(),
        })?;
        if !uri.is_s3() {
            return Err(MeshError::Settings {
                section: "catalog",
                message: format!(
                    "kind = \"glue\" needs [store] uri = \"s3://...\" (Glue tables point at S3 locations), but the store is {uri}; put the store on S3, or set [catalog] kind = \"none\""
                ),
            });
        }
        let db = |given: &Option<String>, default: String, key: &str| {
            let name = schema::glue_name(given.as_deref().unwrap_or(&default));
            if name.trim_matches('_').is_empty() {
                Err(MeshError::Settings {
                    section: "catalog",
                    message: format!("{key} = {name:?} is no Glue database name: use lowercase letters, digits and '_'"),
                })
            } else {
                Ok(name)
            }
        };
        let products_db = db(
            &settings.products_database,
            format!("{project}_products"),
            "products_database",
        )?;
        let features_db = db(
            &settings.features_database,
            format!("{project}_features"),
            "features_database",
        )?;
        Ok(GlueCatalog {
            inner: Arc::new(Inner {
                aws: aws.clone(),
                catalog_id: settings.catalog_id.clone(),
                owner: settings.owner.clone(),
                lf_tags: settings.lf_tags,
                project: project.to_string(),
                products_db,
                features_db,
                store_uri: uri.to_string().trim_end_matches('/').to_string(),
                glue: OnceCell::new(),
                lf: OnceCell::new(),
            }),
        })
    }

    /// The Glue database of the data products.
    pub fn products_database(&self) -> &str {
        &self.inner.products_db
    }

    /// The Glue database of the feature snapshots.
    pub fn features_database(&self) -> &str {
        &self.inner.features_db
    }

    /// The Glue table of a product major (or a snapshot version): `<name>_v<major>`.
    pub fn table_name(name: &str, major: u32) -> String {
        schema::table_name(name, major)
    }

    /// `s3://<store>/<key>/`: the S3 location of a store key (a folder).
    pub fn location(&self, key: &str) -> String {
        self.inner.location(key)
    }

    fn product_table(&self, spec: &ProductSpec, schema: &[ColumnInfo]) -> Result<TableSpec> {
        let i = &self.inner;
        let table = schema::table_name(&spec.name, spec.major);
        let describe = |c: &str| {
            spec.columns
                .iter()
                .find(|d| d.name == c)
                .map(|d| d.description.clone())
        };
        let columns = schema::table_columns(&table, schema, &describe)?;
        let mut parameters = BTreeMap::new();
        parameters.insert("contract_version".into(), spec.contract_version());
        parameters.insert("owner".into(), spec.owner.clone());
        parameters.insert("domain".into(), spec.domain.clone());
        parameters.insert("data_product".into(), spec.name.to_string());
        let tags = spec.tag_set();
        let column_tags = columns
            .iter()
            .map(|c| {
                let class = tags
                    .columns
                    .iter()
                    .find(|(n, _)| schema::glue_name(n) == c.name)
                    .map(|(_, v)| *v)
                    .unwrap_or(spec.classification);
                (c.name.clone(), class.as_str().to_string())
            })
            .collect();
        Ok(TableSpec {
            kind: "product",
            name: spec.name.to_string(),
            major: spec.major,
            database: i.products_db.clone(),
            location: i.location(&layout::product_major(&spec.name, spec.major)),
            table,
            columns,
            description: schema::bounded(&spec.description, schema::MAX_DESCRIPTION),
            parameters,
            tags: tags.table,
            column_tags,
        })
    }

    /// Registers `ts` and points `m`'s partition at its run. A failed AWS call names what
    /// was being registered (`..., registering feature snapshot rfm v2 as_of=2024-09-30 in
    /// database X`) besides the call's own resource.
    fn register(&self, ts: TableSpec, m: &Manifest, prefix: String) -> Result<CatalogRecord> {
        let inner = self.inner.clone();
        let location = inner.location(&crate::offline::run_prefix(&prefix, m));
        let as_of = m.as_of;
        let context = format!(
            "registering {} {} v{} as_of={as_of} in database {}",
            ts.kind, ts.name, ts.major, ts.database
        );
        crate::aws::block_on(async move {
            let mut actions = Vec::new();
            let created = inner.ensure_table(&ts, &mut actions).await?;
            let fresh_db = actions.iter().any(|a| a.starts_with("CreateDatabase"));
            // Tags before the partition moves: the move is the catalog's commit point, so
            // a tagging failure leaves the previous version registered.
            if inner.lf_tags {
                let lf = inner.lf().await?;
                super::lf::apply(
                    lf,
                    inner.catalog_id.as_deref(),
                    &super::lf::Target {
                        database: &ts.database,
                        table: &ts.table,
                        table_tags: &ts.tags,
                        column_tags: &ts.column_tags,
                    },
                    fresh_db,
                    created,
                    &mut actions,
                )
                .await?;
            }
            inner
                .ensure_partition(&ts, as_of, &location, &mut actions)
                .await?;
            Ok(CatalogRecord {
                database: ts.database,
                table: ts.table,
                location,
                actions,
            })
        })
        .map_err(|e| match e {
            MeshError::Aws {
                service,
                operation,
                resource,
                message,
            } => MeshError::Aws {
                service,
                operation,
                resource: format!("{resource}, {context}"),
                message,
            },
            other => other,
        })
    }
}

impl Inner {
    fn location(&self, key: &str) -> String {
        format!("{}/{}/", self.store_uri, key.trim_matches('/'))
    }

    async fn glue(&self) -> Result<&aws_sdk_glue::Client> {
        self.glue
            .get_or_try_init(|| async {
                crate::aws::glue_client(&self.aws)
                    .await
                    .map_err(|message| MeshError::Settings {
                        section: "aws",
                        message,
                    })
            })
            .await
    }

    async fn lf(&self) -> Result<&aws_sdk_lakeformation::Client> {
        self.lf
            .get_or_try_init(|| async {
                crate::aws::lakeformation_client(&self.aws)
                    .await
                    .map_err(|message| MeshError::Settings {
                        section: "aws",
                        message,
                    })
            })
            .await
    }

    /// Creates the database when missing; `true` when it was created now.
    async fn ensure_database(&self, db: &str, actions: &mut Vec<String>) -> Result<bool> {
        let c = self.glue().await?;
        let res = format!("database {db}");
        match c
            .get_database()
            .set_catalog_id(self.catalog_id.clone())
            .name(db)
            .send()
            .await
        {
            Ok(_) => return Ok(false),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_entity_not_found_exception()) => {}
            Err(e) => return Err(glue_err("GetDatabase", res, &e)),
        }
        let what = if db == self.features_db {
            "feature snapshots"
        } else {
            "data products"
        };
        let description = format!(
            "The {what} of the c360 project {} (registered by c360; do not edit by hand)",
            self.project
        );
        let mut input = DatabaseInput::builder()
            .name(db)
            .description(schema::bounded(&description, schema::MAX_DESCRIPTION));
        if let Some(o) = &self.owner {
            input = input.parameters("owner", o);
        }
        let input = input
            .build()
            .map_err(|e| build_err("CreateDatabase", &res, e))?;
        match c
            .create_database()
            .set_catalog_id(self.catalog_id.clone())
            .database_input(input)
            .send()
            .await
        {
            Ok(_) => {
                actions.push(format!("CreateDatabase {db}"));
                Ok(true)
            }
            // Created by a concurrent registration in between: as good.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_already_exists_exception()) =>
            {
                Ok(false)
            }
            Err(e) => Err(glue_err("CreateDatabase", res, &e)),
        }
    }

    /// The table, or `None` when it does not exist (nor its database).
    async fn get_table(&self, db: &str, table: &str) -> Result<Option<Table>> {
        let c = self.glue().await?;
        match c
            .get_table()
            .set_catalog_id(self.catalog_id.clone())
            .database_name(db)
            .name(table)
            .send()
            .await
        {
            Ok(o) => Ok(o.table),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.is_entity_not_found_exception()) =>
            {
                Ok(None)
            }
            Err(e) => Err(glue_err("GetTable", format!("table {db}.{table}"), &e)),
        }
    }

    /// Refuses `ts` when the registered `t` is another's table, or (`strict`, the
    /// publish-time gate of a new version) when `ts` is not an additive change of `t`: a
    /// removed or retyped column. Not strict (a registration, or `catalog sync` of an
    /// older version): only a retyped column is refused; a column the table has and the
    /// version lacks reads as null.
    fn check(ts: &TableSpec, t: &Table, strict: bool) -> Result<()> {
        // The table must be this product's (or snapshot's): names are made Glue-safe, so
        // `Churn-Scores` and `churn_scores` share one table name, and two stores may share a
        // database. Never take over another's table.
        let at = t
            .storage_descriptor()
            .and_then(|sd| sd.location())
            .unwrap_or("");
        if at.trim_end_matches('/') != ts.location.trim_end_matches('/') {
            let owner = t
                .parameters()
                .and_then(|p| p.get("data_product"))
                .map(String::as_str)
                .unwrap_or("unknown");
            return Err(MeshError::Conflict {
                table: format!("{}.{}", ts.database, ts.table),
                message: format!(
                    "it is registered at {at:?} (data_product {owner}), not at {} where {} v{} is: two products or stores map to this table name; rename the product, or give this store its own [catalog] products_database / features_database",
                    ts.location, ts.name, ts.major
                ),
            });
        }
        let registered: Vec<(String, String)> = t
            .storage_descriptor()
            .map(|sd| sd.columns())
            .unwrap_or_default()
            .iter()
            .map(|c| (c.name().to_string(), c.r#type().unwrap_or("").to_string()))
            .collect();
        let broken = if strict {
            schema::breaking_changes(&registered, &ts.columns)
        } else {
            schema::retyped_columns(&registered, &ts.columns)
        };
        if broken.is_empty() {
            Ok(())
        } else {
            Err(MeshError::SchemaChange {
                product: ts.name.clone(),
                major: ts.major,
                message: format!(
                    "Glue table {}.{} is registered with other columns: {}",
                    ts.database,
                    ts.table,
                    broken.join("; ")
                ),
            })
        }
    }

    fn columns(ts: &TableSpec) -> Result<Vec<Column>> {
        ts.columns
            .iter()
            .map(|c| {
                Column::builder()
                    .name(&c.name)
                    .r#type(&c.dtype)
                    .comment(&c.comment)
                    .build()
                    .map_err(|e| build_err("CreateTable", &ts.table, e))
            })
            .collect()
    }

    fn storage(ts: &TableSpec, location: &str) -> Result<StorageDescriptor> {
        Ok(StorageDescriptor::builder()
            .set_columns(Some(Self::columns(ts)?))
            .location(location)
            .input_format(INPUT_FORMAT)
            .output_format(OUTPUT_FORMAT)
            .serde_info(
                SerDeInfo::builder()
                    .serialization_library(SERDE)
                    .parameters("serialization.format", "1")
                    .build(),
            )
            .build())
    }

    /// The table's parameters: what c360 sets, over whatever `existing` has.
    fn parameters(&self, ts: &TableSpec, existing: Option<&Table>) -> BTreeMap<String, String> {
        let mut p: BTreeMap<String, String> = existing
            .and_then(|t| t.parameters())
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        p.insert("classification".into(), "parquet".into());
        p.insert("EXTERNAL".into(), "TRUE".into());
        p.insert("c360_version".into(), crate::offline::c360_version());
        p.insert("comment".into(), ts.description.clone());
        p.extend(ts.parameters.clone());
        p
    }

    fn table_input(&self, ts: &TableSpec, existing: Option<&Table>) -> Result<TableInput> {
        TableInput::builder()
            .name(&ts.table)
            .description(&ts.description)
            .table_type("EXTERNAL_TABLE")
            .storage_descriptor(Self::storage(ts, &ts.location)?)
            .partition_keys(
                Column::builder()
                    .name(PARTITION_KEY)
                    .r#type("date")
                    .comment(AS_OF_COMMENT)
                    .build()
                    .map_err(|e| build_err("CreateTable", &ts.table, e))?,
            )
            .set_parameters(Some(self.parameters(ts, existing).into_iter().collect()))
            .build()
            .map_err(|e| build_err("CreateTable", &ts.table, e))
    }

    /// Whether the registered table already is what `ts` asks for.
    fn same_table(&self, ts: &TableSpec, t: &Table) -> bool {
        let sd = t.storage_descriptor();
        let cols: Vec<(&str, &str, &str)> = sd
            .map(|s| s.columns())
            .unwrap_or_default()
            .iter()
            .map(|c| {
                (
                    c.name(),
                    c.r#type().unwrap_or(""),
                    c.comment().unwrap_or(""),
                )
            })
            .collect();
        let want: Vec<(&str, &str, &str)> = ts
            .columns
            .iter()
            .map(|c| (c.name.as_str(), c.dtype.as_str(), c.comment.as_str()))
            .collect();
        let keys: Vec<(&str, &str)> = t
            .partition_keys()
            .iter()
            .map(|c| (c.name(), c.r#type().unwrap_or("")))
            .collect();
        let params = t.parameters();
        let params_ok = self
            .parameters(ts, None)
            .iter()
            .all(|(k, v)| params.and_then(|p| p.get(k)) == Some(v));
        cols == want
            && keys == [(PARTITION_KEY, "date")]
            && params_ok
            && t.description() == Some(ts.description.as_str())
            && t.table_type() == Some("EXTERNAL_TABLE")
            && sd.and_then(|s| s.location()) == Some(ts.location.as_str())
            && sd.and_then(|s| s.input_format()) == Some(INPUT_FORMAT)
            && sd.and_then(|s| s.output_format()) == Some(OUTPUT_FORMAT)
            && sd
                .and_then(|s| s.serde_info())
                .and_then(|s| s.serialization_library())
                == Some(SERDE)
    }

    /// Database and table as `ts` asks (additive changes only); `true` when the table
    /// was created now.
    async fn ensure_table(&self, ts: &TableSpec, actions: &mut Vec<String>) -> Result<bool> {
        self.ensure_database(&ts.database, actions).await?;
        let c = self.glue().await?;
        let res = format!("table {}.{}", ts.database, ts.table);
        match self.get_table(&ts.database, &ts.table).await? {
            None => {
                c.create_table()
                    .set_catalog_id(self.catalog_id.clone())
                    .database_name(&ts.database)
                    .table_input(self.table_input(ts, None)?)
                    .send()
                    .await
                    .map_err(|e| glue_err("CreateTable", res, &e))?;
                actions.push(format!("CreateTable {}.{}", ts.database, ts.table));
                Ok(true)
            }
            Some(t) => {
                Self::check(ts, &t, false)?;
                // The table keeps every column it has (never dropped within a major) and
                // gains the ones this version adds.
                let registered: Vec<GlueColumn> = t
                    .storage_descriptor()
                    .map(|sd| sd.columns())
                    .unwrap_or_default()
                    .iter()
                    .map(|c| GlueColumn {
                        name: c.name().to_string(),
                        dtype: c.r#type().unwrap_or("").to_string(),
                        comment: c.comment().unwrap_or("").to_string(),
                    })
                    .collect();
                let ts = &TableSpec {
                    columns: schema::merged_columns(&registered, &ts.columns),
                    ..ts.clone()
                };
                if !self.same_table(ts, &t) {
                    c.update_table()
                        .set_catalog_id(self.catalog_id.clone())
                        .database_name(&ts.database)
                        .table_input(self.table_input(ts, Some(&t))?)
                        .send()
                        .await
                        .map_err(|e| glue_err("UpdateTable", res, &e))?;
                    actions.push(format!("UpdateTable {}.{}", ts.database, ts.table));
                }
                Ok(false)
            }
        }
    }
}

impl Catalog for GlueCatalog {
    fn kind(&self) -> &'static str {
        "glue"
    }

    fn check_product(&self, spec: &ProductSpec, schema: &[ColumnInfo]) -> Result<()> {
        let ts = self.product_table(spec, schema)?;
        let inner = self.inner.clone();
        crate::aws::block_on(async move {
            match inner.get_table(&ts.database, &ts.table).await? {
                None => Ok(()),
                Some(t) => Inner::check(&ts, &t, true),
            }
        })
    }

    fn register_product(
        &self,
        _store: &dyn ObjectStore,
        spec: &ProductSpec,
        manifest: &Manifest,
    ) -> Result<Option<CatalogRecord>> {
        let ts = self.product_table(spec, &manifest.schema)?;
        let prefix = layout::product_partition(&spec.name, spec.major, manifest.as_of);
        self.register(ts, manifest, prefix).map(Some)
    }

    fn register_snapshot(
        &self,
        _store: &dyn ObjectStore,
        manifest: &Manifest,
    ) -> Result<Option<CatalogRecord>> {
        let ts = self.snapshot_table(manifest)?;
        let prefix = layout::snapshot_partition(&manifest.name, manifest.version, manifest.as_of);
        self.register(ts, manifest, prefix).map(Some)
    }

    fn plan_product(&self, spec: &ProductSpec, as_of: NaiveDate) -> Vec<String> {
        let db = &self.inner.products_db;
        let table = schema::table_name(&spec.name, spec.major);
        let prefix = layout::product_partition(&spec.name, spec.major, as_of);
        let mut out = vec![
            format!("Glue: database {db} (CreateDatabase when missing)"),
            format!(
                "Glue: CreateTable {db}.{table} at {} (UpdateTable when it exists and its columns or parameters differ; a removed or retyped column is refused)",
                self.location(&layout::product_major(&spec.name, spec.major))
            ),
            format!(
                "Glue: partition as_of={as_of} of {db}.{table} moves to this run's new prefix {}run=<run id>-<hex>/ (BatchCreatePartition, or UpdatePartition when it exists), after the manifest commits",
                self.location(&prefix)
            ),
        ];
        if self.inner.lf_tags {
            let tags = spec.tag_set();
            let text = |m: &BTreeMap<String, String>| {
                m.iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            out.push(format!(
                "Lake Formation: tag keys ensured (CreateLFTag/UpdateLFTag); table {db}.{table} tagged {}; database {db} tagged {} where it has no value yet",
                text(&tags.table),
                text(&super::lf::database_tags(&tags.table))
            ));
            let mut by_class: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
            for (c, v) in &tags.columns {
                if schema::glue_name(c) != PARTITION_KEY {
                    by_class.entry(v.as_str()).or_default().push(c);
                }
            }
            for (v, cols) in by_class {
                out.push(format!(
                    "Lake Formation: columns {} of {db}.{table} tagged classification={v}",
                    cols.join(", ")
                ));
            }
        }
        out
    }

    fn referenced_locations(
        &self,
        _store: &dyn ObjectStore,
        product: &str,
        major: u32,
    ) -> Result<Vec<String>> {
        let inner = self.inner.clone();
        let table = schema::table_name(product, major);
        let root = format!("{}/", inner.store_uri);
        let locations = crate::aws::block_on(async move {
            let db = inner.products_db.clone();
            inner.partition_locations(&db, &table).await
        })?;
        let mut keys: Vec<String> = locations
            .iter()
            .filter_map(|l| match l.strip_prefix(&root) {
                Some(k) => Some(k.trim_end_matches('/').to_string()),
                None => {
                    tracing::warn!(location = %l, store = %root, "a partition location outside the store; ignored");
                    None
                }
            })
            .collect();
        keys.sort();
        keys.dedup();
        Ok(keys)
    }
}
