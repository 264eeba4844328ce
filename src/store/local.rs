//! The store on local disk (the embedded default): each key is a file below a root folder.
//!
//! Writes go to a temporary file beside the target and are renamed into place, so a reader
//! never sees half an object; conditional writes use hard links (create) and a lock file
//! (replace).

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{check_key, ObjectMeta, ObjectStore, Result, StoreError};

/// A store on local disk: keys are files below `root`.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    pub fn new(root: impl AsRef<Path>) -> Self {
        let root = root.as_ref();
        let root = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
        LocalStore { root }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &str) -> Result<PathBuf> {
        check_key(key)?;
        Ok(self.root.join(key))
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes `data` to a unique temporary file beside `path`, fsyncs it, and returns its path.
fn write_temp(path: &Path, data: &[u8]) -> Result<PathBuf> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("object");
    let tmp = dir.join(format!(
        ".{name}.{}.{}.tmp",
        std::process::id(),
        unique_suffix()
    ));
    let mut f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(data).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    Ok(tmp)
}

fn unique_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    (N.fetch_add(1, Ordering::Relaxed) << 32) ^ nanos
}

impl ObjectStore for LocalStore {
    fn uri(&self) -> String {
        format!("file://{}", self.root.display())
    }

    fn get(&self, key: &str) -> Result<Vec<u8>> {
        let p = self.path(key)?;
        std::fs::read(&p).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                StoreError::NotFound {
                    store: self.uri(),
                    key: key.to_string(),
                }
            } else {
                StoreError::Io {
                    path: p.display().to_string(),
                    source: e,
                }
            }
        })
    }

    fn put(&self, key: &str, data: &[u8]) -> Result<()> {
        let p = self.path(key)?;
        let tmp = write_temp(&p, data)?;
        std::fs::rename(&tmp, &p).map_err(io_err(&p))
    }

    fn put_if_absent(&self, key: &str, data: &[u8]) -> Result<bool> {
        let p = self.path(key)?;
        let tmp = write_temp(&p, data)?;
        // hard_link fails if the target exists: an atomic create-if-absent on POSIX.
        let r = std::fs::hard_link(&tmp, &p);
        let _ = std::fs::remove_file(&tmp);
        match r {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(StoreError::Io {
                path: p.display().to_string(),
                source: e,
            }),
        }
    }

    fn get_versioned(&self, key: &str) -> Result<(Vec<u8>, String)> {
        let b = self.get(key)?;
        let v = content_version(&b);
        Ok((b, v))
    }

    fn put_if_version(&self, key: &str, data: &[u8], version: &str) -> Result<bool> {
        let p = self.path(key)?;
        // A lock file beside the object serialises conditional writers on this disk.
        let lock = p.with_file_name(format!(
            ".{}.lock.tmp",
            p.file_name().and_then(|n| n.to_str()).unwrap_or("object")
        ));
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&lock)
            {
                Ok(_) => break,
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if std::time::Instant::now() > deadline {
                        // A writer died holding it: take it over.
                        let _ = std::fs::remove_file(&lock);
                    }
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                Err(e) => return Err(io_err(&lock)(e)),
            }
        }
        let r = (|| {
            let current = match std::fs::read(&p) {
                Ok(b) => content_version(&b),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
                Err(e) => return Err(io_err(&p)(e)),
            };
            if current != version {
                return Ok(false);
            }
            let tmp = write_temp(&p, data)?;
            std::fs::rename(&tmp, &p).map_err(io_err(&p))?;
            Ok(true)
        })();
        let _ = std::fs::remove_file(&lock);
        r
    }

    fn exists(&self, key: &str) -> Result<bool> {
        Ok(self.path(key)?.is_file())
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let prefix = prefix.trim_end_matches('/');
        let start = if prefix.is_empty() {
            self.root.clone()
        } else {
            self.path(prefix)?
        };
        let mut out = Vec::new();
        if start.is_file() {
            out.push(meta(&self.root, &start)?);
            return Ok(out);
        }
        if !start.is_dir() {
            return Ok(out);
        }
        let mut stack = vec![start];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
                let entry = entry.map_err(io_err(&dir))?;
                let path = entry.path();
                let name = entry.file_name();
                let name = name.to_string_lossy();
                if name.starts_with('.') && name.ends_with(".tmp") {
                    continue; // an unfinished write of ours
                }
                let ft = entry.file_type().map_err(io_err(&path))?;
                if ft.is_dir() {
                    stack.push(path);
                } else if ft.is_file() || (ft.is_symlink() && path.is_file()) {
                    // A symlink to a file lists as that file (sources are often folders of
                    // links); a link to a folder is not followed (no cycles).
                    out.push(meta(&self.root, &path)?);
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn delete(&self, key: &str) -> Result<()> {
        let p = self.path(key)?;
        match std::fs::remove_file(&p) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::Io {
                path: p.display().to_string(),
                source: e,
            }),
        }
    }

    fn delete_prefix(&self, prefix: &str) -> Result<()> {
        let p = self.path(prefix.trim_end_matches('/'))?;
        if p.is_dir() {
            std::fs::remove_dir_all(&p).map_err(io_err(&p))
        } else {
            self.delete(prefix)
        }
    }

    fn local_path(&self, key: &str) -> Option<PathBuf> {
        self.path(key).ok()
    }
}

fn content_version(b: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(b)[..16])
}

fn meta(root: &Path, path: &Path) -> Result<ObjectMeta> {
    let md = std::fs::metadata(path).map_err(io_err(path))?;
    let key = path
        .strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .replace('\\', "/");
    let modified = md.modified().ok();
    let mtime = modified
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    Ok(ObjectMeta {
        key,
        size: md.len(),
        version: mtime.to_string(),
        modified: modified.map(chrono::DateTime::<chrono::Utc>::from),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The local store passes the same contract suite as the S3 store (`tests/it/aws.rs`).
    #[test]
    fn local_store_meets_the_store_contract() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::new(dir.path());
        crate::store::suite::store_contract(&s);
        // Nothing of the suite's temporary or lock files is left behind.
        let left: Vec<_> = walk(dir.path());
        assert!(left.is_empty(), "{left:?}");
    }

    /// A symlinked file inside a listed folder is listed with its target's size.
    #[cfg(unix)]
    #[test]
    fn a_symlinked_file_is_listed() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::new(dir.path());
        s.put("elsewhere/a.parquet", b"12345").unwrap();
        std::fs::create_dir_all(dir.path().join("orders")).unwrap();
        std::os::unix::fs::symlink(
            dir.path().join("elsewhere/a.parquet"),
            dir.path().join("orders/part-0.parquet"),
        )
        .unwrap();
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), dir.path().join("orders/sub"))
            .unwrap();
        let listed = s.list("orders").unwrap();
        let keys: Vec<_> = listed.iter().map(|m| (m.key.as_str(), m.size)).collect();
        assert_eq!(keys, [("orders/part-0.parquet", 5)]);
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }
}
