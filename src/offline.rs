//! The offline store: feature snapshots as Parquet partitions with a manifest.
//!
//! ```text
//! features/<set>/v<version>/as_of=<YYYY-MM-DD>/part-<n>.parquet
//! features/<set>/v<version>/as_of=<YYYY-MM-DD>/_manifest.json    written last = committed
//! ```
//!
//! Commit protocol (the same on local disk and S3, which has no rename): a rebuild first
//! removes the manifest (the partition is then uncommitted), then replaces the part files,
//! and writes the manifest last. A reader trusts a partition only when its manifest
//! exists and reads only the files it lists, so a build killed at any point leaves no
//! committed partition with mixed or partial content. Rebuilding with the same definition
//! and the same source is a no-op (the manifest is reused).

use std::collections::BTreeMap;

use chrono::NaiveDate;
use polars::prelude::*;
use serde::{Deserialize, Serialize};

use crate::store::{ObjectStore, StoreError};

/// Rows per part file.
pub const PART_ROWS: usize = 1_000_000;

#[derive(Debug, thiserror::Error)]
pub enum OfflineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot encode {what}: {message}")]
    Encode { what: String, message: String },
    #[error("manifest {key} is unreadable: {message}")]
    BadManifest { key: String, message: String },
    #[error("another writer committed {key} at the same moment; this commit was refused and nothing of it is referenced (run again: the committed one is reused when it matches)")]
    ConcurrentCommit { key: String },
    #[error("no committed snapshot of {set} v{version} as of {as_of} in {store} (build it with `c360 features build {set} --as-of {as_of}`)")]
    NotCommitted {
        set: String,
        version: u32,
        as_of: NaiveDate,
        store: String,
    },
}

pub type Result<T, E = OfflineError> = std::result::Result<T, E>;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ColumnInfo {
    pub name: String,
    #[serde(rename = "type")]
    pub dtype: String,
}

/// What a committed partition holds and where it came from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub kind: String,
    pub name: String,
    pub version: u32,
    pub as_of: NaiveDate,
    /// Part files, relative to the partition.
    pub files: Vec<String>,
    pub rows: u64,
    pub schema: Vec<ColumnInfo>,
    pub definition_hash: String,
    pub source: String,
    /// Table -> fingerprint of the source files read.
    pub source_fingerprints: BTreeMap<String, String>,
    #[serde(default)]
    pub model: Option<String>,
    pub run_id: String,
    pub created_by: String,
    pub created_at: chrono::DateTime<chrono::Utc>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, serde_json::Value>,
}

pub fn partition_prefix(set: &str, version: u32, as_of: NaiveDate) -> String {
    format!("features/{set}/v{version}/as_of={as_of}")
}

pub fn manifest_key(prefix: &str) -> String {
    format!("{prefix}/_manifest.json")
}

/// The committed manifest of a partition, if any.
pub fn read_manifest(store: &dyn ObjectStore, prefix: &str) -> Result<Option<Manifest>> {
    Ok(read_manifest_versioned(store, prefix)?.map(|(m, _)| m))
}

/// The committed manifest with its store version (for a conditional replace).
pub fn read_manifest_versioned(
    store: &dyn ObjectStore,
    prefix: &str,
) -> Result<Option<(Manifest, String)>> {
    let key = manifest_key(prefix);
    match store.get_versioned(&key) {
        Ok((bytes, version)) => serde_json::from_slice(&bytes)
            .map(|m| Some((m, version)))
            .map_err(|e| OfflineError::BadManifest {
                key,
                message: e.to_string(),
            }),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Commits a manifest: created only if absent, or replacing exactly `previous` (a version
/// from [`read_manifest_versioned`]); two writers can never both commit.
pub fn commit_manifest(
    store: &dyn ObjectStore,
    prefix: &str,
    json: &[u8],
    previous: Option<&str>,
) -> Result<()> {
    let key = manifest_key(prefix);
    let ok = match previous {
        None => store.put_if_absent(&key, json)?,
        Some(v) => store.put_if_version(&key, json, v)?,
    };
    if ok {
        Ok(())
    } else {
        Err(OfflineError::ConcurrentCommit { key })
    }
}

/// Encodes a frame as Parquet bytes: Snappy (Parquet's usual codec; encoding a
/// 700k-row snapshot took 0.34 s against 0.49 s with zstd, for files 1.5 times larger),
/// with min/max/null-count statistics.
pub fn parquet_bytes(df: &mut DataFrame, what: &str) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    ParquetWriter::new(&mut buf)
        .with_compression(ParquetCompression::Snappy)
        .with_statistics(StatisticsOptions::default())
        .finish(df)
        .map_err(|e| OfflineError::Encode {
            what: what.into(),
            message: e.to_string(),
        })?;
    Ok(buf)
}

pub fn schema_of(df: &DataFrame) -> Vec<ColumnInfo> {
    df.columns()
        .iter()
        .map(|c| ColumnInfo {
            name: c.name().to_string(),
            dtype: c.dtype().to_string(),
        })
        .collect()
}

/// Writes `df` as the partition at `prefix` and commits it with `manifest` (whose
/// `files`, `rows` and `schema` are filled in here). Returns the committed manifest.
pub fn commit_partition(
    store: &dyn ObjectStore,
    prefix: &str,
    df: &DataFrame,
    mut manifest: Manifest,
    on_part: &dyn Fn(usize, usize),
) -> Result<Manifest> {
    // Uncommit first, then clear whatever an earlier (maybe killed) build left behind.
    store.delete(&manifest_key(prefix))?;
    store.delete_prefix(prefix)?;
    let n = df.height();
    let parts = n.div_ceil(PART_ROWS).max(1);
    let mut files = Vec::with_capacity(parts);
    for p in 0..parts {
        let offset = p * PART_ROWS;
        let len = PART_ROWS.min(n.saturating_sub(offset));
        let mut part = df.slice(offset as i64, len);
        let name = format!("part-{p}.parquet");
        let t = std::time::Instant::now();
        let bytes = parquet_bytes(&mut part, &format!("{prefix}/{name}"))?;
        let encoded = t.elapsed().as_secs_f64();
        store.put(&format!("{prefix}/{name}"), &bytes)?;
        tracing::debug!(
            part = %name,
            bytes = bytes.len(),
            encode_secs = encoded,
            put_secs = t.elapsed().as_secs_f64() - encoded,
            "part written"
        );
        files.push(name);
        on_part(p + 1, parts);
    }
    manifest.files = files;
    manifest.rows = n as u64;
    manifest.schema = schema_of(df);
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| OfflineError::Encode {
        what: "manifest".into(),
        message: e.to_string(),
    })?;
    // The commit point: conditional, so a concurrent build of the same partition that
    // committed first makes this one fail instead of both "winning".
    commit_manifest(store, prefix, &json, None)?;
    Ok(manifest)
}

/// Reads a committed partition's rows (only the files its manifest lists).
pub fn read_partition(
    store: &dyn ObjectStore,
    prefix: &str,
    manifest: &Manifest,
) -> Result<DataFrame> {
    let mut frames = Vec::new();
    for f in &manifest.files {
        let key = format!("{prefix}/{f}");
        let bytes = store.get(&key)?;
        let df = ParquetReader::new(std::io::Cursor::new(bytes))
            .finish()
            .map_err(|e| OfflineError::BadManifest {
                key: key.clone(),
                message: format!("part file unreadable: {e}"),
            })?;
        frames.push(df);
    }
    let mut it = frames.into_iter();
    let mut out = it.next().unwrap_or_default();
    for df in it {
        out.vstack_mut(&df).map_err(|e| OfflineError::BadManifest {
            key: prefix.into(),
            message: e.to_string(),
        })?;
    }
    Ok(out)
}

/// Every committed as-of date of a set version, oldest first.
pub fn committed_dates(store: &dyn ObjectStore, set: &str, version: u32) -> Result<Vec<NaiveDate>> {
    let prefix = format!("features/{set}/v{version}");
    let mut out = Vec::new();
    for o in store.list(&prefix)? {
        if let Some(rest) = o.key.strip_suffix("/_manifest.json") {
            if let Some(d) = rest
                .rsplit('/')
                .next()
                .and_then(|p| p.strip_prefix("as_of="))
            {
                if let Ok(d) = d.parse() {
                    out.push(d);
                }
            }
        }
    }
    out.sort();
    Ok(out)
}

/// A new run id: UTC time plus randomness, sortable.
pub fn new_run_id() -> String {
    use rand::Rng;
    let now = chrono::Utc::now();
    let r: u32 = rand::thread_rng().gen();
    format!("{}-{r:08x}", now.format("%Y%m%dT%H%M%SZ"))
}

pub fn c360_version() -> String {
    format!("c360 {}", env!("CARGO_PKG_VERSION"))
}
