//! Typed JSON documents in the store: read, write, and read-decide-write conditionally.
//!
//! Every JSON document c360 keeps in the store (manifests, `latest.json`, run ledgers,
//! leases, schedule state, fires, catalog entries) is read and written through here, so
//! "missing" is always `Ok(None)` and a damaged document is always a
//! [`StoreError::Corrupt`] naming its key. Whether a caller may then ignore it (a damaged
//! catalog entry is skipped, a damaged `latest.json` is rebuilt) is the caller's decision.

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{ObjectStore, Result, StoreError};

/// A JSON document type with a name for error messages (`"latest.json"`, `"run ledger"`).
pub trait Document: Serialize + DeserializeOwned {
    /// What the document is, as error messages name it.
    const WHAT: &'static str;
}

/// Any JSON, for documents read without their type (the service shows them as they are).
impl Document for serde_json::Value {
    const WHAT: &'static str = "JSON document";
}

/// Decodes the bytes of the document at `key`; a decode failure is
/// [`StoreError::Corrupt`] naming the store and key.
pub fn decode<T: DeserializeOwned>(
    store: &dyn ObjectStore,
    key: &str,
    what: &'static str,
    bytes: &[u8],
) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Corrupt {
        store: store.uri(),
        key: key.to_string(),
        what,
        source,
    })
}

/// Encodes a document as pretty JSON (the store's documents are read by people too).
pub fn encode<T: Serialize>(key: &str, doc: &T) -> Result<Vec<u8>> {
    serde_json::to_vec_pretty(doc).map_err(|source| StoreError::Encode {
        key: key.to_string(),
        source,
    })
}

/// The document at `key`: `Ok(None)` when there is none; [`StoreError::Corrupt`] when it
/// is not a valid `T`.
pub fn get_json<T: Document>(store: &dyn ObjectStore, key: &str) -> Result<Option<T>> {
    Ok(get_json_versioned(store, key)?.map(|(d, _)| d))
}

/// [`get_json`] with the object's version, for a later [`ObjectStore::put_if_version`].
pub fn get_json_versioned<T: Document>(
    store: &dyn ObjectStore,
    key: &str,
) -> Result<Option<(T, String)>> {
    match store.get_versioned(key) {
        Ok((bytes, version)) => Ok(Some((decode(store, key, T::WHAT, &bytes)?, version))),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Writes the document at `key`, replacing any previous one.
pub fn put_json<T: Serialize>(store: &dyn ObjectStore, key: &str, doc: &T) -> Result<()> {
    store.put(key, &encode(key, doc)?)
}

/// Writes the document at `key` only if nothing is there; `Ok(false)` when something was.
pub fn create_json<T: Serialize>(store: &dyn ObjectStore, key: &str, doc: &T) -> Result<bool> {
    store.put_if_absent(key, &encode(key, doc)?)
}

/// What [`update_json`] found at the key.
#[derive(Debug)]
pub enum Current<T> {
    /// No object.
    Absent,
    /// An object that is not a valid `T` (the decode error).
    Unreadable(serde_json::Error),
    /// The document.
    Read(T),
}

/// What an [`update_json`] decision does.
#[derive(Debug)]
pub enum Decision<T, R> {
    /// Write this document (only if the key still holds what was read), then return `R`.
    Write(T, R),
    /// Write nothing and return `R`.
    Keep(R),
}

/// Read, decide, write conditionally on what was read: the one retry loop for documents
/// that concurrent writers move (`latest.json`, leases). `decide` sees what the key holds
/// now; when another writer changed it between the read and the write, it is read and
/// decided again, up to `attempts` times. `Ok(None)` when every attempt lost such a race
/// (the caller says what that means); errors from `decide` and the store are returned as
/// they are.
pub fn update_json<T, R, E>(
    store: &dyn ObjectStore,
    key: &str,
    attempts: usize,
    mut decide: impl FnMut(Current<T>) -> std::result::Result<Decision<T, R>, E>,
) -> std::result::Result<Option<R>, E>
where
    T: Document,
    E: From<StoreError>,
{
    for _ in 0..attempts {
        let (current, version) = match store.get_versioned(key) {
            Ok((bytes, v)) => match serde_json::from_slice::<T>(&bytes) {
                Ok(d) => (Current::Read(d), Some(v)),
                Err(e) => (Current::Unreadable(e), Some(v)),
            },
            Err(StoreError::NotFound { .. }) => (Current::Absent, None),
            Err(e) => return Err(e.into()),
        };
        let (doc, out) = match decide(current)? {
            Decision::Keep(out) => return Ok(Some(out)),
            Decision::Write(doc, out) => (doc, out),
        };
        let bytes = encode(key, &doc)?;
        let written = match &version {
            None => store.put_if_absent(key, &bytes)?,
            Some(v) => store.put_if_version(key, &bytes, v)?,
        };
        if written {
            return Ok(Some(out));
        }
        tracing::info!(key, "moved concurrently; deciding again");
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LocalStore;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Counter {
        n: u32,
    }
    impl Document for Counter {
        const WHAT: &'static str = "counter";
    }

    #[test]
    fn missing_is_none_and_corrupt_names_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::new(dir.path());
        assert_eq!(get_json::<Counter>(&s, "c/n.json").unwrap(), None);
        put_json(&s, "c/n.json", &Counter { n: 3 }).unwrap();
        assert_eq!(
            get_json::<Counter>(&s, "c/n.json").unwrap(),
            Some(Counter { n: 3 })
        );
        assert!(!create_json(&s, "c/n.json", &Counter { n: 4 }).unwrap());
        s.put("c/n.json", b"{not json").unwrap();
        let e = get_json::<Counter>(&s, "c/n.json").unwrap_err();
        assert!(matches!(e, StoreError::Corrupt { .. }));
        let msg = e.to_string();
        assert!(
            msg.contains("c/n.json") && msg.contains("not a valid counter"),
            "{msg}"
        );
        assert!(std::error::Error::source(&e).is_some(), "keeps its cause");
    }

    #[test]
    fn update_retries_until_its_write_lands() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::new(dir.path());
        // Absent: created.
        let r: Option<u32> = update_json::<Counter, _, StoreError>(&s, "n.json", 3, |c| {
            assert!(matches!(c, Current::Absent));
            Ok(Decision::Write(Counter { n: 1 }, 1))
        })
        .unwrap();
        assert_eq!(r, Some(1));
        // A concurrent writer moves it after our read: we decide again on its value.
        let mut calls = 0;
        let r = update_json::<Counter, _, StoreError>(&s, "n.json", 3, |c| {
            calls += 1;
            let Current::Read(c) = c else { panic!("{c:?}") };
            if calls == 1 {
                put_json(&s, "n.json", &Counter { n: 10 }).unwrap();
            }
            Ok(Decision::Write(Counter { n: c.n + 1 }, c.n + 1))
        })
        .unwrap();
        assert_eq!((r, calls), (Some(11), 2));
        assert_eq!(get_json::<Counter>(&s, "n.json").unwrap().unwrap().n, 11);
        // Keep writes nothing; unreadable is shown as such.
        s.put("n.json", b"[]").unwrap();
        let r = update_json::<Counter, _, StoreError>(&s, "n.json", 3, |c| {
            assert!(matches!(c, Current::Unreadable(_)));
            Ok(Decision::Keep("kept"))
        })
        .unwrap();
        assert_eq!(r, Some("kept"));
        assert_eq!(s.get("n.json").unwrap(), b"[]");
        // Always losing the race: None after the attempts.
        let mut n = 0;
        let r = update_json::<Counter, (), StoreError>(&s, "n.json", 2, |_| {
            n += 1;
            s.put("n.json", format!("{{\"n\":{n}}}").as_bytes())
                .unwrap();
            Ok(Decision::Write(Counter { n: 0 }, ()))
        })
        .unwrap();
        assert_eq!((r, n), (None, 2));
    }
}
