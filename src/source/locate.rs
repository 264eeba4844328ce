//! [`Source`]: where a source's tables are, read through the [`ObjectStore`] trait, so
//! every store backend is a source backend. Listing, fingerprints (for lineage and run
//! ids) and row counts live here.
//!
//! polars reads files on local disk. A store on local disk (one that gives a
//! [`ObjectStore::local_path`]) is read in place; the objects of any other store (S3) are
//! copied, in parallel and only when their ETag changed, to a local cache first.
//!
//! [`ObjectStore`]: crate::store::ObjectStore
//! [`ObjectStore::local_path`]: crate::store::ObjectStore::local_path

use std::path::{Path, PathBuf};
use std::sync::Arc;

use polars::prelude::*;
use sha2::{Digest, Sha256};

use super::contract::{TableSpec, CONTRACT};
use super::error::{Result, SourceError};
use super::scan::{guard, scan_file};
use crate::names::StoreUri;
use crate::store::{DynStore, LocalStore, ObjectMeta, S3Store, StoreError};

/// Where a table's data is.
#[derive(Debug, Clone)]
pub struct TableLocation {
    /// The contract table.
    pub table: &'static TableSpec,
    /// The file, or the folder for partitioned tables.
    pub path: PathBuf,
    /// The files polars reads, sorted.
    pub files: Vec<PathBuf>,
    /// Whether the files are CSV (else Parquet).
    pub csv: bool,
    /// Whether the table is a folder of files (Hive partitions allowed).
    pub folder: bool,
    /// Each file's object as the store listed it (key, size, version), in `files` order.
    objects: Vec<ObjectMeta>,
}

/// A Customer 360 source: the tables under one store location (a folder on local disk, or
/// an S3 prefix copied to a local cache).
#[derive(Debug, Clone)]
pub struct Source {
    /// The source's URI as given (`s3://bucket/prefix`, `file://path` or a path).
    pub uri: String,
    /// The folder polars reads the tables from: the source's own folder when its store is
    /// on local disk, else the local cache the store's objects are copied to.
    pub root: PathBuf,
    store: DynStore,
    /// Whether objects are copied to `root` before reading (a store not on local disk).
    /// Fingerprints then use the listed size and ETag, identical on every machine.
    cached: bool,
}

impl Source {
    /// Opens a source from its URI: a local folder (`file://` or a bare path), an S3
    /// prefix (`s3://bucket/prefix`) or a Glue database (`glue://<database>`, each table
    /// resolved to its S3 locations now: see [`super::glue`]); S3 and Glue with the
    /// process's `[aws]` settings.
    pub fn open(uri: &str) -> Result<Source> {
        if StoreUri::is_s3_uri(uri) {
            return Source::open_s3(uri);
        }
        if super::glue::GlueUri::is_glue_uri(uri) {
            return super::glue::open(uri, cache_base(&crate::aws::settings()));
        }
        let path = uri.strip_prefix("file://").unwrap_or(uri);
        let root = PathBuf::from(path);
        if !root.is_dir() {
            return Err(SourceError::BadSource {
                source_uri: uri.into(),
                message: format!(
                    "{} is not a folder; point --source (or [source] uri in c360.toml) at the folder holding customers, orders, interactions and support_tickets (`c360 generate --out DIR` makes one)",
                    root.display()
                ),
            });
        }
        Ok(Source::over(uri, Arc::new(LocalStore::new(&root)), root))
    }

    /// A source over any store. `root` is where polars reads the files: the store's own
    /// folder when the store is on local disk, else an empty or cache folder the objects
    /// are copied to.
    pub fn over(uri: &str, store: DynStore, root: PathBuf) -> Source {
        let cached = store.local_path(CONTRACT[0].name).is_none();
        Source {
            uri: uri.to_string(),
            root,
            store,
            cached,
        }
    }

    /// An S3 source: listed and read through the S3 store (same endpoint, region,
    /// credentials and retries as every other S3 call), cached under `[aws] cache_dir`
    /// (default `$XDG_CACHE_HOME/c360/sources`, else `~/.cache/c360/sources`).
    fn open_s3(uri: &str) -> Result<Source> {
        let settings = crate::aws::settings();
        // Reading never writes, so the KMS rule of the store does not apply here.
        let mut read_settings = (*settings).clone();
        read_settings.require_kms = false;
        let store_error = |cause: StoreError| SourceError::Store {
            source_uri: uri.into(),
            cause,
        };
        let location = StoreUri::parse(uri).map_err(|e| store_error(e.into()))?;
        let store = S3Store::open(uri, &read_settings).map_err(store_error)?;
        // The cache mirrors the bucket and prefix.
        let mut root = cache_base(&settings);
        if let Some((bucket, prefix)) = location.as_s3() {
            root.push(bucket);
            root.extend(prefix.split('/').filter(|p| !p.is_empty()));
        }
        Ok(Source::over(uri, Arc::new(store), root))
    }

    /// A key of the source as shown in messages: its file for a store on local disk, else
    /// its URI.
    fn shown(&self, key: &str) -> String {
        if self.cached {
            format!("{}/{key}", self.uri.trim_end_matches('/'))
        } else {
            self.root.join(key).display().to_string()
        }
    }

    /// The objects at `key` (the object itself, or every file of the folder `key`),
    /// without hidden files (a name starting with `.` or `_`: `_SUCCESS` markers, `.crc`).
    fn list(&self, table: &str, key: &str) -> Result<Vec<ObjectMeta>> {
        let objects = self.store.list(key).map_err(|cause| SourceError::Object {
            table: table.into(),
            path: self.shown(key),
            cause,
        })?;
        Ok(objects
            .into_iter()
            .filter(|o| {
                !o.key
                    .split('/')
                    .any(|c| c.starts_with('.') || c.starts_with('_'))
            })
            .collect())
    }

    /// Finds a table's files: `T.parquet`, `T.csv`, or the Parquet (else CSV) files of the
    /// folder `T/`.
    pub fn locate(&self, table: &'static TableSpec) -> Result<TableLocation> {
        let name = table.name;
        for (ext, csv) in [("parquet", false), ("csv", true)] {
            let key = format!("{name}.{ext}");
            if let Some(o) = self.list(name, &key)?.into_iter().find(|o| o.key == key) {
                let p = self.root.join(&key);
                return Ok(TableLocation {
                    table,
                    path: p.clone(),
                    files: vec![p],
                    csv,
                    folder: false,
                    objects: vec![o],
                });
            }
        }
        let dir = self.root.join(name);
        let folder = format!("{name}/");
        let mut listed = self.list(name, name)?;
        // Only files in the folder (a store may list an object named like the folder).
        listed.retain(|o| o.key.starts_with(&folder));
        // A folder on disk that holds no (visible) file is an empty table folder.
        let empty_dir =
            listed.is_empty() && self.store.local_path(name).is_some_and(|p| p.is_dir());
        if listed.is_empty() && !empty_dir {
            return Err(SourceError::MissingTable {
                source_uri: self.uri.clone(),
                table: name.into(),
            });
        }
        let mut files: Vec<(PathBuf, ObjectMeta)> = listed
            .into_iter()
            .map(|o| (self.root.join(&o.key), o))
            .collect();
        files.sort_by(|a, b| a.0.cmp(&b.0));
        let with_ext = |ext: &str| -> Vec<(PathBuf, ObjectMeta)> {
            files
                .iter()
                .filter(|(f, _)| f.extension().is_some_and(|e| e == ext))
                .cloned()
                .collect()
        };
        let (parquet, csvs) = (with_ext("parquet"), with_ext("csv"));
        let (files, csv) = if !parquet.is_empty() {
            (parquet, false)
        } else {
            (csvs, true)
        };
        if files.is_empty() {
            return Err(SourceError::EmptyFolder {
                table: name.into(),
                path: dir.display().to_string(),
            });
        }
        let (files, objects) = files.into_iter().unzip();
        Ok(TableLocation {
            table,
            path: dir,
            files,
            csv,
            folder: true,
            objects,
        })
    }

    /// A fingerprint of a table's files, for lineage: names and sizes, with the
    /// modification times of files read in place, or the ETags of cached objects.
    pub fn fingerprint(&self, loc: &TableLocation) -> String {
        let mut h = Sha256::new();
        for (f, o) in loc.files.iter().zip(&loc.objects) {
            h.update(
                f.strip_prefix(&self.root)
                    .unwrap_or(f)
                    .to_string_lossy()
                    .as_bytes(),
            );
            if self.cached {
                h.update(o.size.to_le_bytes());
                h.update(o.version.as_bytes());
            } else if let Ok(md) = std::fs::metadata(f) {
                h.update(md.len().to_le_bytes());
                if let Ok(t) = md.modified() {
                    if let Ok(d) = t.duration_since(std::time::UNIX_EPOCH) {
                        h.update(d.as_nanos().to_le_bytes());
                    }
                }
            }
        }
        format!("sha256:{}", hex::encode(h.finalize()))
    }

    /// Copies a table's objects to the local cache when the store is not on local disk (in
    /// parallel; skipped when the cached copy has the listed ETag and size).
    pub(super) fn fetch(&self, loc: &TableLocation) -> Result<()> {
        if !self.cached {
            return Ok(());
        }
        let table = loc.table.name;
        let stamp_of = |f: &Path| {
            f.with_file_name(format!(
                ".{}.etag",
                f.file_name().and_then(|n| n.to_str()).unwrap_or("object")
            ))
        };
        let todo: Vec<(&PathBuf, &ObjectMeta)> = loc
            .files
            .iter()
            .zip(&loc.objects)
            .filter(|(f, o)| {
                let fresh = std::fs::read_to_string(stamp_of(f)).ok().as_deref()
                    == Some(o.version.as_str())
                    && std::fs::metadata(f).map(|m| m.len()).ok() == Some(o.size);
                !fresh
            })
            .collect();
        if todo.is_empty() {
            return Ok(());
        }
        let bytes: u64 = todo.iter().map(|(_, o)| o.size).sum();
        tracing::info!(source = %self.uri, table, objects = todo.len(), bytes, cache = %self.root.display(), "copying source objects to the local cache");
        let cache_err = |path: &Path| {
            let path = path.display().to_string();
            move |cause| SourceError::Cache {
                table: table.to_string(),
                path,
                cause,
            }
        };
        use rayon::prelude::*;
        todo.par_iter().try_for_each(|(local, o)| -> Result<()> {
            let data = self
                .store
                .get(&o.key)
                .map_err(|cause| SourceError::Object {
                    table: table.to_string(),
                    path: local.display().to_string(),
                    cause,
                })?;
            let dir = local.parent().unwrap_or(&self.root);
            std::fs::create_dir_all(dir).map_err(cache_err(dir))?;
            let tmp = local.with_file_name(format!(
                ".{}.part.tmp",
                local
                    .file_name()
                    .and_then(|n| n.to_str())
                    .unwrap_or("object")
            ));
            std::fs::write(&tmp, &data)
                .and_then(|_| std::fs::rename(&tmp, local))
                .and_then(|_| std::fs::write(stamp_of(local), &o.version))
                .map_err(cache_err(local))
        })
    }

    /// The number of rows of a table as stored (Parquet: from the footers).
    pub fn row_count(&self, table: &'static TableSpec) -> Result<u64> {
        let loc = self.locate(table)?;
        self.fetch(&loc)?;
        let mut n = 0u64;
        for f in &loc.files {
            let df =
                guard(|| scan_file(f, loc.csv, table).and_then(|lf| lf.select([len()]).collect()))
                    .map_err(|e| SourceError::Unreadable {
                        table: table.name.into(),
                        path: f.display().to_string(),
                        cause: e.into(),
                    })?;
            n += df
                .column("len")
                .ok()
                .and_then(|c| c.get(0).ok())
                .and_then(|v| v.extract::<u64>())
                .unwrap_or(0);
        }
        Ok(n)
    }
}

/// The folder remote sources are cached under: `[aws] cache_dir`, else
/// `$XDG_CACHE_HOME/c360/sources`, else `~/.cache/c360/sources`.
fn cache_base(settings: &crate::aws::AwsSettings) -> PathBuf {
    match &settings.cache_dir {
        Some(d) => PathBuf::from(d),
        None => std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(std::env::temp_dir)
            .join("c360")
            .join("sources"),
    }
}

#[cfg(test)]
#[path = "locate_tests.rs"]
mod tests;
