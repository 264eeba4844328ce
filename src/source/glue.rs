//! Glue sources: `[source] uri = "glue://<database>"` (or
//! `glue://<database>?catalog_id=<12-digit account id>` for a catalog shared from another
//! account).
//!
//! Each Customer 360 contract table ([`CONTRACT`]: customers, orders, interactions,
//! support_tickets, by those names) is resolved through the Glue Data Catalog: `GetTable`
//! gives its S3 location and format (the `classification` parameter, else the SerDe or
//! InputFormat; Parquet or CSV), and for a partitioned table (`PartitionKeys` not empty)
//! `GetPartitions` (paginated, at most [`MAX_PARTITIONS`]) gives each partition's location.
//! A [`GlueStore`] then shows those locations, which may sit under any prefixes of any
//! buckets, as one source laid out the usual way: the table's objects under `<table>/`, a
//! partition under its folder relative to the table's location (`orders/year=2024/...`),
//! or under `<key>=<value>/...` folders when it lives elsewhere. Everything downstream
//! (contract checks, the local cache, fingerprints of names, sizes and ETags) is the
//! `s3://` source's: a `glue://` source over the same objects has the same fingerprints,
//! so run ids stay stable when a domain moves its source to the catalog.
//!
//! Every call uses the process's `[aws]` settings (credential chain, retries,
//! `glue_endpoint_url` and the S3 endpoint). Errors name the database and the table and
//! say how to fix them.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use aws_sdk_glue::error::ProvideErrorMetadata;
use aws_sdk_glue::types::StorageDescriptor;

use super::contract::{TableSpec, CONTRACT};
use super::error::{Result, SourceError};
use super::locate::Source;
use crate::aws::{self, AwsSettings};
use crate::names::{key_problem, StoreUri};
use crate::store::s3::Encryption;
use crate::store::{ObjectMeta, ObjectStore, S3Store, StoreError};

use crate::store::s3::Listed;

/// The scheme of a Glue source URI.
pub const SCHEME: &str = "glue://";

/// The most partitions read of one table (more is refused, naming database and table).
pub const MAX_PARTITIONS: usize = 10_000;

/// The most objects read of one table, over all its locations (more is refused).
pub const MAX_OBJECTS: usize = 100_000;

/// Partitions asked for per `GetPartitions` page (Glue's own maximum is 1000).
const PAGE: i32 = 1000;

/// A parsed Glue source URI: `glue://<database>[?catalog_id=<12-digit account id>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlueUri {
    /// The Glue database holding the contract tables (letters, digits, `_`, `-`; 1-255).
    pub database: String,
    /// The catalog's AWS account id (12 digits); `None`: the caller's own account.
    pub catalog_id: Option<String>,
}

impl GlueUri {
    /// Whether `uri` is written with the `glue://` scheme.
    pub fn is_glue_uri(uri: &str) -> bool {
        uri.starts_with(SCHEME)
    }

    /// Parses a Glue source URI; `Err` is the reason, with the fix (e.g. for `glue://` or
    /// `glue://a/b`).
    pub fn parse(uri: &str) -> std::result::Result<GlueUri, String> {
        let Some(rest) = uri.strip_prefix(SCHEME) else {
            return Err("a Glue source is written glue://<database>".into());
        };
        let (db, query) = match rest.split_once('?') {
            Some((d, q)) => (d, Some(q)),
            None => (rest, None),
        };
        let db = db.strip_suffix('/').unwrap_or(db);
        if db.is_empty() {
            return Err("no database: write glue://<database>, the Glue database holding the tables customers, orders, interactions and support_tickets".into());
        }
        if db.contains('/') {
            return Err(format!(
                "{:?} is not a database name: a Glue source is one whole database (its tables customers, orders, interactions and support_tickets are found by name), so write glue://<database> without a table or path",
                db
            ));
        }
        if db.len() > 255
            || !db
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(format!(
                "{:?} is not a Glue database name: use 1-255 letters, digits, '_' or '-'",
                db.chars().take(80).collect::<String>()
            ));
        }
        let mut catalog_id = None;
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            match pair.split_once('=') {
                Some(("catalog_id", v))
                    if catalog_id.is_none()
                        && v.len() == 12
                        && v.bytes().all(|b| b.is_ascii_digit()) =>
                {
                    catalog_id = Some(v.to_string());
                }
                Some(("catalog_id", v)) => {
                    return Err(format!(
                        "catalog_id {:?} must be given once, as the 12-digit AWS account id that owns the catalog",
                        v.chars().take(40).collect::<String>()
                    ))
                }
                _ => {
                    return Err(format!(
                        "unknown parameter {:?}: the only one is catalog_id=<12-digit account id>",
                        pair.chars().take(40).collect::<String>()
                    ))
                }
            }
        }
        Ok(GlueUri {
            database: db.to_string(),
            catalog_id,
        })
    }
}

impl std::fmt::Display for GlueUri {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(&match &self.catalog_id {
            Some(c) => format!("{SCHEME}{}?catalog_id={c}", self.database),
            None => format!("{SCHEME}{}", self.database),
        })
    }
}

/// One S3 folder shown under a source key: the table's location, or one partition's.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    /// The folder in the source's layout (`orders`, `orders/year=2024`).
    key: String,
    bucket: String,
    /// The S3 key prefix, without a trailing `/` (empty: the bucket root).
    prefix: String,
}

/// A contract table as the catalog describes it.
#[derive(Debug, Clone)]
struct Resolved {
    table: &'static str,
    /// CSV (else Parquet).
    csv: bool,
    mounts: Vec<Mount>,
}

/// A read-only [`ObjectStore`] over the S3 locations of a Glue database's contract
/// tables, keyed the way an `s3://` source is (`<table>/<path below the table's
/// location>`). Only objects of the table's format are listed (`.parquet` or `.csv`
/// names; a name without any extension, as Athena CTAS writes, is listed with the format's
/// extension added). Writes are refused.
pub struct GlueStore {
    uri: GlueUri,
    client: aws_sdk_s3::Client,
    tables: Vec<Resolved>,
    /// Listed source key → (bucket, S3 key), filled by `list`.
    index: Mutex<HashMap<String, (String, String)>>,
    /// The most objects listed per table ([`MAX_OBJECTS`]; smaller in tests).
    max_objects: usize,
}

impl std::fmt::Debug for GlueStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlueStore")
            .field("uri", &self.uri)
            .field("tables", &self.tables)
            .finish()
    }
}

/// Opens a Glue source: resolves every contract table (and its partitions) now, so a
/// missing table or a bad location is reported before anything is read. `cache_base`:
/// the source cache folder (`[aws] cache_dir`); the objects are cached under
/// `<cache_base>/glue/<catalog id or "default">/<database>/`.
pub(super) fn open(uri: &str, cache_base: PathBuf) -> Result<Source> {
    let bad = |message: String| SourceError::BadSource {
        source_uri: uri.into(),
        message,
    };
    let g = GlueUri::parse(uri).map_err(bad)?;
    let settings = (*aws::settings()).clone();
    let (s, g2) = (settings.clone(), g.clone());
    let tables = aws::block_on(async move { resolve(&s, &g2).await }).map_err(|problems| {
        let message = problems.join("; ");
        if problems.iter().any(|p| is_call_failure(p)) {
            // Glue could not be asked (unreachable, denied, throttled): not bad input, a
            // failure to retry (exit 1, not 4).
            SourceError::Store {
                source_uri: uri.into(),
                cause: StoreError::Backend {
                    store: uri.into(),
                    message,
                },
            }
        } else {
            bad(message)
        }
    })?;
    let client = aws::block_on(async move { aws::s3_client(&settings).await }).map_err(|m| {
        bad(format!(
            "cannot make an S3 client to read the tables of Glue database {}: {m}",
            g.database
        ))
    })?;
    let root = cache_base
        .join("glue")
        .join(g.catalog_id.as_deref().unwrap_or("default"))
        .join(&g.database);
    let store = GlueStore {
        uri: g,
        client,
        tables,
        index: Mutex::new(HashMap::new()),
        max_objects: MAX_OBJECTS,
    };
    Ok(Source::over(uri, Arc::new(store), root))
}

/// The Glue service error code of a failed call (`EntityNotFoundException`, ...).
fn code_of<E: ProvideErrorMetadata, R>(e: &aws_sdk_glue::error::SdkError<E, R>) -> Option<&str> {
    e.as_service_error().and_then(|se| se.code())
}

/// A failed Glue call as the mesh words it: service, operation, resource, cause, fix.
fn glue_error<E, R>(
    operation: &'static str,
    resource: String,
    e: &aws_sdk_glue::error::SdkError<E, R>,
) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    crate::mesh::glue::glue_err(operation, resource, e).to_string()
}

/// Whether a problem text is a failed Glue call as [`glue_error`] words it (the one
/// producer of texts starting `Glue <Operation> on `, from [`crate::mesh::MeshError::Aws`]),
/// rather than something the database holds (a missing table, a bad location).
fn is_call_failure(problem: &str) -> bool {
    problem
        .strip_prefix("Glue ")
        .and_then(|r| r.split_once(" on "))
        .is_some_and(|(op, _)| op.starts_with("Get") && op.bytes().all(|b| b.is_ascii_alphabetic()))
}

/// Resolves every contract table; `Err`: every problem found (each names database and
/// table).
async fn resolve(s: &AwsSettings, g: &GlueUri) -> std::result::Result<Vec<Resolved>, Vec<String>> {
    let db = &g.database;
    let names = CONTRACT
        .iter()
        .map(|t| t.name)
        .collect::<Vec<_>>()
        .join(", ");
    let glue = aws::glue_client(s).await.map_err(|m| {
        vec![format!(
            "cannot make a Glue client to resolve tables {names} of database {db}: {m}"
        )]
    })?;
    let mut req = glue.get_database().name(db);
    if let Some(c) = &g.catalog_id {
        req = req.catalog_id(c);
    }
    if let Err(e) = req.send().await {
        let in_catalog = g
            .catalog_id
            .as_ref()
            .map(|c| format!(" in catalog {c}"))
            .unwrap_or_default();
        return Err(vec![if code_of(&e) == Some("EntityNotFoundException") {
            format!(
                "Glue database {db} does not exist{in_catalog} (EntityNotFoundException), so tables {names} cannot be resolved: create the database and register the tables (CreateDatabase and CreateTable, or a Glue crawler over their S3 folders), or fix the database in [source] uri"
            )
        } else {
            glue_error(
                "GetDatabase",
                format!("database {db}{in_catalog} (resolving tables {names})"),
                &e,
            )
        }]);
    }
    let mut out = Vec::new();
    let mut problems = Vec::new();
    for spec in CONTRACT.iter() {
        match resolve_table(&glue, g, spec).await {
            Ok(r) => out.push(r),
            Err(p) => problems.push(p),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// One contract table: its format and S3 folders (one per partition when partitioned).
async fn resolve_table(
    glue: &aws_sdk_glue::Client,
    g: &GlueUri,
    spec: &'static TableSpec,
) -> std::result::Result<Resolved, String> {
    let (db, t) = (&g.database, spec.name);
    let what = format!("Glue table {db}.{t}");
    let mut req = glue.get_table().database_name(db).name(t);
    if let Some(c) = &g.catalog_id {
        req = req.catalog_id(c);
    }
    let out = match req.send().await {
        Ok(o) => o,
        Err(e) if code_of(&e) == Some("EntityNotFoundException") => {
            return Err(format!(
                "{what} not found (EntityNotFoundException): register the Customer 360 table {t} in database {db} (CreateTable over its S3 folder, or a Glue crawler), or point [source] uri at the database that holds it"
            ))
        }
        Err(e) => {
            return Err(glue_error(
                "GetTable",
                format!("database {db}, table {t}"),
                &e,
            ))
        }
    };
    let Some(table) = out.table() else {
        return Err(format!("{what}: GetTable answered without a table; check [aws] glue_endpoint_url points at Glue"));
    };
    if table.table_type() == Some("VIRTUAL_VIEW") {
        return Err(format!("{what} is a view: c360 reads tables stored on S3; register {t} as an external Parquet or CSV table over its S3 folder"));
    }
    let params = table.parameters();
    if params
        .and_then(|p| p.get("table_type"))
        .is_some_and(|v| !v.eq_ignore_ascii_case("EXTERNAL_TABLE"))
    {
        return Err(format!("{what} is a {} table, which c360 does not read: register {t} as an external Parquet or CSV table over its S3 folder", params.and_then(|p| p.get("table_type")).map(String::as_str).unwrap_or("?")));
    }
    let sd = table.storage_descriptor();
    let csv = format_of(params, sd).map_err(|m| format!("{what}: {m}"))?;
    let location = sd.and_then(|s| s.location()).unwrap_or("");
    let (bucket, prefix) = s3_location(location).map_err(|m| format!("{what}: {m}"))?;
    let keys: Vec<&str> = table.partition_keys().iter().map(|c| c.name()).collect();
    let mut mounts = Vec::new();
    if keys.is_empty() {
        mounts.push(Mount {
            key: t.to_string(),
            bucket,
            prefix,
        });
    } else {
        let mut token: Option<String> = None;
        // Each page holds at least one partition or ends the listing; a service that kept
        // answering empty pages with a token would otherwise loop for ever.
        for _page in 0..=MAX_PARTITIONS {
            let mut req = glue
                .get_partitions()
                .database_name(db)
                .table_name(t)
                .max_results(PAGE)
                .set_next_token(token.take());
            if let Some(c) = &g.catalog_id {
                req = req.catalog_id(c);
            }
            let page = req.send().await.map_err(|e| {
                glue_error("GetPartitions", format!("database {db}, table {t}"), &e)
            })?;
            for p in page.partitions() {
                if mounts.len() >= MAX_PARTITIONS {
                    return Err(format!("{what} has more than {MAX_PARTITIONS} partitions, more than c360 reads: compact them into fewer, larger partitions, or register a table over the partitions c360 should read"));
                }
                mounts.push(partition_mount(&what, t, &keys, &bucket, &prefix, p)?);
            }
            token = page
                .next_token()
                .filter(|n| !n.is_empty())
                .map(String::from);
            if token.is_none() || page.partitions().is_empty() {
                break;
            }
        }
        if mounts.is_empty() {
            return Err(format!("{what} is partitioned by {} but has no partitions: register them (BatchCreatePartition, MSCK REPAIR TABLE in Athena, or a Glue crawler)", keys.join(", ")));
        }
        // Two partitions over one folder would list its objects twice.
        mounts.sort_by(|a, b| a.key.cmp(&b.key));
        mounts.dedup();
    }
    tracing::info!(
        database = %db,
        table = t,
        format = if csv { "csv" } else { "parquet" },
        location,
        partitions = if keys.is_empty() { 0 } else { mounts.len() },
        "resolved a Glue source table"
    );
    for m in &mounts {
        tracing::debug!(database = %db, table = t, folder = %m.key, location = %format!("s3://{}/{}", m.bucket, m.prefix), "Glue source folder");
    }
    Ok(Resolved {
        table: t,
        csv,
        mounts,
    })
}

/// A partition's folder: below the table's location it keeps its path there
/// (`orders/year=2024`), elsewhere it is shown under `<key>=<value>` folders.
fn partition_mount(
    what: &str,
    t: &str,
    keys: &[&str],
    bucket: &str,
    prefix: &str,
    p: &aws_sdk_glue::types::Partition,
) -> std::result::Result<Mount, String> {
    let values = p.values();
    let hive = keys
        .iter()
        .zip(values)
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("/");
    if values.len() != keys.len() {
        return Err(format!("{what}: partition {values:?} has {} value(s) for the {} partition key(s) {}: fix the partition (DeletePartition, then BatchCreatePartition)", values.len(), keys.len(), keys.join(", ")));
    }
    let (pb, pp) = match p
        .storage_descriptor()
        .and_then(|s| s.location())
        .filter(|l| !l.is_empty())
    {
        Some(l) => s3_location(l).map_err(|m| format!("{what}, partition {hive}: {m}"))?,
        None if prefix.is_empty() => (bucket.to_string(), hive.clone()),
        None => (bucket.to_string(), format!("{prefix}/{hive}")),
    };
    let below = if pb != bucket {
        None
    } else if prefix.is_empty() {
        Some(pp.as_str())
    } else if pp == prefix {
        Some("")
    } else {
        pp.strip_prefix(prefix).and_then(|r| r.strip_prefix('/'))
    };
    let key = match below {
        Some("") => t.to_string(),
        Some(rel) => format!("{t}/{rel}"),
        None => format!("{t}/{hive}"),
    };
    if let Some(problem) = key_problem(&key) {
        return Err(format!("{what}, partition {hive}: its folder {key:?} cannot be a local folder ({problem}): rename the partition's value or folder"));
    }
    Ok(Mount {
        key,
        bucket: pb,
        prefix: pp,
    })
}

/// The bucket and prefix of an S3 location, or why it is not one (with the fix).
fn s3_location(location: &str) -> std::result::Result<(String, String), String> {
    if location.is_empty() {
        return Err("it has no location (StorageDescriptor.Location): set it to the table's S3 folder (s3://bucket/prefix/)".into());
    }
    if !StoreUri::is_s3_uri(location) {
        return Err(format!("its location {location} is not on S3: c360 reads Glue tables whose data is in S3, so set the location (StorageDescriptor.Location) to the table's S3 folder (s3://bucket/prefix/), or copy the data there"));
    }
    match StoreUri::parse(location) {
        Ok(StoreUri::S3 { bucket, prefix }) => Ok((bucket, prefix)),
        Ok(StoreUri::File(_)) => Err(format!("its location {location} is not on S3")),
        Err(e) => Err(format!(
            "its location {location} is not a usable S3 folder: {}",
            e.reason
        )),
    }
}

/// The table's format: CSV (`true`) or Parquet (`false`), from the `classification`
/// parameter (the table's, else the storage descriptor's), else the SerDe or InputFormat.
fn format_of(
    params: Option<&HashMap<String, String>>,
    sd: Option<&StorageDescriptor>,
) -> std::result::Result<bool, String> {
    let classification = params.and_then(|p| p.get("classification")).or_else(|| {
        sd.and_then(|s| s.parameters())
            .and_then(|p| p.get("classification"))
    });
    let serde = sd.and_then(|s| s.serde_info());
    let serde_lib = serde.and_then(|i| i.serialization_library()).unwrap_or("");
    let input = sd.and_then(|s| s.input_format()).unwrap_or("");
    let delimiter = serde.and_then(|i| i.parameters()).and_then(|p| {
        p.get("field.delim")
            .or_else(|| p.get("separatorChar"))
            .cloned()
    });
    let csv_ok = || {
        match delimiter.as_deref() {
        None | Some(",") => Ok(true),
        Some(d) => Err(format!("its CSV delimiter is {d:?}; c360 reads comma-separated files with a header line: write the table with ',' (or as Parquet)")),
    }
    };
    if let Some(c) = classification {
        return match c.to_ascii_lowercase().as_str() {
            "parquet" => Ok(false),
            "csv" => csv_ok(),
            other => Err(format!("its classification is {other:?}; c360 reads Parquet or CSV tables: store the table as Parquet (classification = parquet) or CSV")),
        };
    }
    if serde_lib.ends_with("ParquetHiveSerDe") || input.ends_with("MapredParquetInputFormat") {
        Ok(false)
    } else if serde_lib.ends_with("OpenCSVSerde")
        || (serde_lib.ends_with("LazySimpleSerDe") && delimiter.as_deref() == Some(","))
    {
        csv_ok()
    } else {
        Err(format!("its format is neither Parquet nor CSV (SerDe {serde_lib:?}, InputFormat {input:?}, no classification parameter): store the table as Parquet (ParquetHiveSerDe) or CSV, or set its classification parameter to parquet or csv"))
    }
}

/// Whether a path below a location is hidden (`_SUCCESS`, `.crc`, `_temporary/`).
fn hidden(rel: &str) -> bool {
    rel.split('/')
        .any(|c| c.starts_with('.') || c.starts_with('_'))
}

impl GlueStore {
    fn backend(&self, message: String) -> StoreError {
        StoreError::Backend {
            store: self.uri.to_string(),
            message,
        }
    }

    /// An S3 store at a bucket's root, sharing the client (reads only).
    fn bucket(&self, bucket: &str) -> S3Store {
        S3Store::with_client(
            self.client.clone(),
            bucket,
            "",
            Encryption {
                kms_key_id: None,
                bucket_key: false,
            },
            usize::MAX,
            usize::MAX,
        )
    }

    /// The bucket and S3 key behind a source key (listed before, or found from the
    /// table's folders).
    fn object(&self, key: &str) -> Option<(String, String)> {
        if let Some(hit) = self.index.lock().ok().and_then(|i| i.get(key).cloned()) {
            return Some(hit);
        }
        let table = key.split('/').next()?;
        let t = self.tables.iter().find(|t| t.table == table)?;
        t.mounts
            .iter()
            .filter_map(|m| {
                let rel = key.strip_prefix(&m.key)?.strip_prefix('/')?;
                let full = if m.prefix.is_empty() {
                    rel.to_string()
                } else {
                    format!("{}/{rel}", m.prefix)
                };
                Some((m.key.len(), (m.bucket.clone(), full)))
            })
            .max_by_key(|(n, _)| *n)
            .map(|(_, o)| o)
    }

    /// The objects under an S3 prefix: (key, size, ETag, last modified); refused when there are more than
    /// `limit` (every listed object counts, hidden or not, so nothing is left out silently).
    fn list_s3(
        &self,
        table: &str,
        bucket: &str,
        prefix: &str,
        limit: usize,
    ) -> Result<Vec<Listed>, StoreError> {
        aws::block_on(crate::store::s3::list_objects(
            self.client.clone(),
            bucket.to_string(),
            prefix.to_string(),
            limit,
        ))
        .map_err(|m| {
            self.backend(format!(
                "S3 ListObjectsV2 s3://{bucket}/{prefix} (Glue table {}.{table}): {m}",
                self.uri.database
            ))
        })?
        .ok_or_else(|| {
            self.backend(format!(
                "Glue table {}.{table} has more than {} objects under its location(s), more than c360 reads: compact the table into fewer, larger files",
                self.uri.database, self.max_objects
            ))
        })
    }
}

impl ObjectStore for GlueStore {
    fn uri(&self) -> String {
        self.uri.to_string()
    }

    fn get(&self, key: &str) -> Result<Vec<u8>, StoreError> {
        let (bucket, full) = self.object(key).ok_or_else(|| StoreError::NotFound {
            store: self.uri(),
            key: key.to_string(),
        })?;
        self.bucket(&bucket).get(&full)
    }

    fn put(&self, key: &str, _: &[u8]) -> Result<(), StoreError> {
        Err(self.read_only(key))
    }

    fn put_if_absent(&self, key: &str, _: &[u8]) -> Result<bool, StoreError> {
        Err(self.read_only(key))
    }

    fn get_versioned(&self, key: &str) -> Result<(Vec<u8>, String), StoreError> {
        let (bucket, full) = self.object(key).ok_or_else(|| StoreError::NotFound {
            store: self.uri(),
            key: key.to_string(),
        })?;
        self.bucket(&bucket).get_versioned(&full)
    }

    fn put_if_version(&self, key: &str, _: &[u8], _: &str) -> Result<bool, StoreError> {
        Err(self.read_only(key))
    }

    fn exists(&self, key: &str) -> Result<bool, StoreError> {
        match self.object(key) {
            Some((bucket, full)) => self.bucket(&bucket).exists(&full),
            None => Ok(false),
        }
    }

    /// The objects of the table named by `prefix`'s first folder that lie under
    /// `prefix`, keyed as in an `s3://` source; at most [`MAX_OBJECTS`] per table.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>, StoreError> {
        let p = prefix.trim_matches('/');
        let name = p.split('/').next().unwrap_or("");
        let Some(t) = self.tables.iter().find(|t| t.table == name) else {
            return Ok(Vec::new());
        };
        let ext = if t.csv { "csv" } else { "parquet" };
        let mut found: BTreeMap<String, (ObjectMeta, String, String)> = BTreeMap::new();
        let (mut skipped, mut listed) = (0usize, 0usize);
        for m in &t.mounts {
            let below = if m.prefix.is_empty() {
                String::new()
            } else {
                format!("{}/", m.prefix)
            };
            let objects = self.list_s3(t.table, &m.bucket, &below, self.max_objects - listed)?;
            listed += objects.len();
            for (k, size, etag, modified) in objects {
                let Some(rel) = k.strip_prefix(&below).filter(|r| !r.is_empty()) else {
                    continue;
                };
                if hidden(rel) || rel.ends_with('/') {
                    continue;
                }
                let file = rel.rsplit('/').next().unwrap_or(rel);
                let shown = if file.ends_with(&format!(".{ext}")) {
                    rel.to_string()
                } else if !file.contains('.') {
                    format!("{rel}.{ext}")
                } else {
                    skipped += 1;
                    continue;
                };
                let key = format!("{}/{shown}", m.key);
                if let Some(problem) = key_problem(&key) {
                    return Err(self.backend(format!(
                        "Glue table {}.{}: object s3://{}/{k} cannot be read into a local file ({problem}): rename it",
                        self.uri.database, t.table, m.bucket
                    )));
                }
                if !(key == p || p == name || key.starts_with(&format!("{p}/"))) {
                    continue;
                }
                found.entry(key.clone()).or_insert((
                    ObjectMeta {
                        key,
                        size,
                        version: etag,
                        modified,
                    },
                    m.bucket.clone(),
                    k,
                ));
            }
        }
        if skipped > 0 {
            tracing::debug!(database = %self.uri.database, table = t.table, skipped, "objects that are not {ext} files left out of a Glue source table");
        }
        let mut index = self.index.lock().unwrap_or_else(|e| e.into_inner());
        let out = found
            .into_values()
            .map(|(o, bucket, full)| {
                index.insert(o.key.clone(), (bucket, full));
                o
            })
            .collect();
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<(), StoreError> {
        Err(self.read_only(key))
    }

    fn local_path(&self, _: &str) -> Option<PathBuf> {
        None
    }
}

impl GlueStore {
    fn read_only(&self, key: &str) -> StoreError {
        self.backend(format!(
            "cannot write {key}: a Glue source is read-only (c360 never writes to its sources)"
        ))
    }
}

#[cfg(test)]
#[path = "glue_tests.rs"]
mod tests;
