//! Unit tests of [`Source`] over the object store: locating tables, hidden files, empty
//! folders, and the local cache of a store that is not on local disk.

use std::path::PathBuf;
use std::sync::Arc;

use super::Source;
use crate::source::{table_spec, SourceError};
use crate::store::{LocalStore, ObjectMeta, ObjectStore, Result};

/// A store on disk that does not say so (no `local_path`), as a remote store: the source
/// must copy its objects to the cache. Counts `get` calls.
#[derive(Debug)]
struct Remote {
    inner: LocalStore,
    gets: std::sync::atomic::AtomicUsize,
}

impl ObjectStore for Remote {
    fn uri(&self) -> String {
        "remote://test".into()
    }
    fn get(&self, key: &str) -> Result<Vec<u8>> {
        self.gets.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.get(key)
    }
    fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        self.inner.put(key, data)
    }
    fn put_if_absent(&self, key: &str, data: &[u8]) -> Result<bool> {
        self.inner.put_if_absent(key, data)
    }
    fn get_versioned(&self, key: &str) -> Result<(Vec<u8>, String)> {
        self.inner.get_versioned(key)
    }
    fn put_if_version(&self, key: &str, data: &[u8], version: &str) -> Result<bool> {
        self.inner.put_if_version(key, data, version)
    }
    fn exists(&self, key: &str) -> Result<bool> {
        self.inner.exists(key)
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        // A fixed version, like an ETag that does not change while the bytes do not.
        Ok(self
            .inner
            .list(prefix)?
            .into_iter()
            .map(|o| ObjectMeta {
                version: format!("\"etag-{}\"", o.size),
                ..o
            })
            .collect())
    }
    fn delete(&self, key: &str) -> Result<()> {
        self.inner.delete(key)
    }
    fn local_path(&self, _key: &str) -> Option<PathBuf> {
        None
    }
}

fn write(root: &std::path::Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, data).expect("write");
}

#[test]
fn tables_are_found_as_files_or_folders_without_hidden_files() {
    let dir = tempfile::tempdir().expect("tmp");
    write(dir.path(), "customers.csv", b"customer_id\n1\n");
    write(dir.path(), "orders/m=2/b.parquet", b"x");
    write(dir.path(), "orders/m=1/a.parquet", b"x");
    write(dir.path(), "orders/_SUCCESS", b"");
    write(dir.path(), "orders/.a.parquet.crc", b"");
    write(dir.path(), "orders/_tmp/c.parquet", b"x");
    std::fs::create_dir_all(dir.path().join("interactions")).expect("mkdir");
    write(dir.path(), "support_tickets/_SUCCESS", b"");
    let src = Source::open(&dir.path().display().to_string()).expect("source");
    let spec = |n| table_spec(n).expect("contract table");

    let c = src.locate(spec("customers")).expect("customers");
    assert!(c.csv && !c.folder);
    assert_eq!(c.files, vec![dir.path().join("customers.csv")]);
    let o = src.locate(spec("orders")).expect("orders");
    assert!(!o.csv && o.folder);
    assert_eq!(
        o.files,
        vec![
            dir.path().join("orders/m=1/a.parquet"),
            dir.path().join("orders/m=2/b.parquet")
        ]
    );
    // An empty folder, or one with hidden files only, is an empty table folder.
    for t in ["interactions", "support_tickets"] {
        let e = src.locate(spec(t)).expect_err("empty folder");
        assert!(matches!(e, SourceError::EmptyFolder { .. }), "{t}: {e}");
    }
    std::fs::remove_dir_all(dir.path().join("interactions")).expect("rm");
    let e = src.locate(spec("interactions")).expect_err("missing");
    assert!(matches!(e, SourceError::MissingTable { .. }), "{e}");

    // The fingerprint follows the files' metadata: same files, same fingerprint.
    let again = Source::open(&dir.path().display().to_string()).expect("source");
    assert_eq!(
        src.fingerprint(&o),
        again.fingerprint(&again.locate(spec("orders")).expect("orders"))
    );
}

#[test]
fn a_store_not_on_local_disk_is_read_through_the_cache() {
    let data = tempfile::tempdir().expect("data");
    let cache = tempfile::tempdir().expect("cache");
    write(
        data.path(),
        "customers.csv",
        b"customer_id,signup_ts\n1,2024-01-01\n2,2024-01-02\n",
    );
    write(data.path(), "orders/_SUCCESS", b"");
    let remote = Arc::new(Remote {
        inner: LocalStore::new(data.path()),
        gets: Default::default(),
    });
    let src = Source::over("remote://test", remote.clone(), cache.path().to_path_buf());
    let spec = table_spec("customers").expect("customers");
    let loc = src.locate(spec).expect("customers");
    assert_eq!(loc.files, vec![cache.path().join("customers.csv")]);
    assert_eq!(src.row_count(spec).expect("rows"), 2);
    assert!(cache.path().join("customers.csv").is_file());
    // Cached with its ETag: read again without a second copy.
    assert_eq!(src.row_count(spec).expect("rows"), 2);
    assert_eq!(remote.gets.load(std::sync::atomic::Ordering::SeqCst), 1);
    // Fingerprints come from the listing (size and ETag), not the cache's file times.
    let fp = src.fingerprint(&loc);
    std::fs::remove_file(cache.path().join("customers.csv")).expect("rm");
    assert_eq!(fp, src.fingerprint(&src.locate(spec).expect("customers")));
    // A folder holding only hidden objects is not a table of a remote store.
    let e = src
        .locate(table_spec("orders").expect("orders"))
        .expect_err("missing");
    assert!(matches!(e, SourceError::MissingTable { .. }), "{e}");
}
