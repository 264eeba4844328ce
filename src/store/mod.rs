//! The object store: one interface over local disk (the embedded default) and S3.
//!
//! Keys are `/`-separated paths relative to the store root (`features/rfm/v1/...`).
//! Every write is all-or-nothing: a reader never sees half an object.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::names::{key_problem, StoreUri, UriError};

pub mod doc;
pub mod layout;
pub mod local;
pub mod s3;
#[doc(hidden)]
pub mod suite;

pub use local::LocalStore;
pub use s3::S3Store;

pub(crate) const MIB: u64 = 1_048_576;

/// An error from the object store, naming the store and key involved.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object {key} not found in store {store}")]
    NotFound { store: String, key: String },
    #[error("I/O error on {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid store URI {uri:?}: {reason}")]
    BadUri { uri: String, reason: String },
    #[error("invalid object key {key:?}: {reason}")]
    BadKey { key: String, reason: String },
    #[error("store {store}: {message}")]
    Backend { store: String, message: String },
    /// A JSON document c360 wrote is not what it should hold (edited or damaged by hand).
    #[error("object {key} in store {store} is not a valid {what}: {source}")]
    Corrupt {
        store: String,
        key: String,
        /// What the document should be (`latest.json`, `run ledger`, ...).
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// A document could not be encoded as JSON (a bug: c360's documents always encode).
    #[error("cannot encode {key} as JSON: {source}")]
    Encode {
        key: String,
        #[source]
        source: serde_json::Error,
    },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// Key relative to the store root.
    pub key: String,
    pub size: u64,
    /// Modification time (seconds since the epoch) or an ETag-like version marker.
    pub version: String,
    /// When the object was last written (S3: `LastModified`, to the second; local disk:
    /// the file's mtime); `None` when the backend does not say.
    pub modified: Option<chrono::DateTime<chrono::Utc>>,
}

/// The object-store interface every module writes through.
///
/// Synchronous on purpose: the pipeline runs on plain threads (polars owns its own pool);
/// async callers (the service) wrap calls in `spawn_blocking`.
pub trait ObjectStore: Send + Sync + fmt::Debug {
    /// The store's URI (`file:///abs/path` or `s3://bucket/prefix`), for logs and manifests.
    fn uri(&self) -> String;
    /// Reads a whole object.
    fn get(&self, key: &str) -> Result<Vec<u8>>;
    /// Writes a whole object, replacing any previous one atomically.
    fn put(&self, key: &str, data: &[u8]) -> Result<()>;
    /// Writes only if no object exists at `key`; `Ok(false)` when one did (nothing written).
    fn put_if_absent(&self, key: &str, data: &[u8]) -> Result<bool>;
    /// Reads an object with a version token (S3: the ETag; local disk: a content hash).
    fn get_versioned(&self, key: &str) -> Result<(Vec<u8>, String)>;
    /// Replaces an object only if it is still at `version` (from [`get_versioned`]);
    /// `Ok(false)` when someone changed or removed it since (nothing written). On S3 this is
    /// `If-Match`, so two writers can never both win.
    ///
    /// [`get_versioned`]: ObjectStore::get_versioned
    fn put_if_version(&self, key: &str, data: &[u8], version: &str) -> Result<bool>;
    /// Whether an object exists.
    fn exists(&self, key: &str) -> Result<bool>;
    /// Every object under `prefix` (recursively), sorted by key.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>>;
    /// Deletes an object; deleting a missing object is not an error.
    fn delete(&self, key: &str) -> Result<()>;
    /// Deletes every object under `prefix`.
    fn delete_prefix(&self, prefix: &str) -> Result<()> {
        for o in self.list(prefix)? {
            self.delete(&o.key)?;
        }
        Ok(())
    }
    /// A local filesystem path for `key` when the store is on local disk (lets polars scan it
    /// in place); `None` for remote stores.
    fn local_path(&self, key: &str) -> Option<PathBuf>;
}

pub type DynStore = Arc<dyn ObjectStore>;

/// Opens a store from a URI: `file://path`, a bare path, or `s3://bucket/prefix` (with the
/// process's `[aws]` settings, see [`crate::aws::configure`]).
pub fn open(uri: &str) -> Result<DynStore> {
    match StoreUri::parse(uri)? {
        StoreUri::S3 { .. } => Ok(Arc::new(S3Store::open(uri, &crate::aws::settings())?)),
        StoreUri::File(path) => Ok(Arc::new(LocalStore::new(path))),
    }
}

/// A refused URI is a [`StoreError::BadUri`] with the same text (it has no deeper cause).
impl From<UriError> for StoreError {
    fn from(e: UriError) -> StoreError {
        StoreError::BadUri {
            uri: e.uri,
            reason: e.reason,
        }
    }
}

fn check_key(key: &str) -> Result<()> {
    match key_problem(key) {
        Some(reason) => Err(StoreError::BadKey {
            key: key.to_string(),
            reason: reason.to_string(),
        }),
        None => Ok(()),
    }
}
