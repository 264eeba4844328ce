//! The store contract: one test suite every [`ObjectStore`] backend must pass.
//!
//! [`store_contract`] is run on [`LocalStore`](super::LocalStore) by this crate's unit tests
//! and on [`S3Store`](super::S3Store) against moto by the integration tests, so both
//! backends are held to the same behaviour: conditional create and replace, listing,
//! multipart-sized objects, not-found, deletes and refused keys. What only one backend has
//! (SSE-KMS headers, multipart ETags) is asserted beside the call, not here.
//!
//! Public (but hidden from the docs) so the integration-test binary can call it; it panics
//! on the first broken promise, as a test does, and is never called by c360 itself.

use super::{ObjectStore, StoreError};

/// Every key the suite writes is below this prefix; the suite removes it when it passes.
pub const PREFIX: &str = "contract";

/// The size of the suite's large object: 13 MiB, above a 6 MiB multipart threshold, so an
/// S3 store built with that threshold and 5 MiB parts uploads it in 3 parts.
pub const BIG_LEN: usize = 13 * 1_048_576;

/// The suite's large object: [`BIG_LEN`] bytes of a pattern that catches reordered or
/// repeated parts (251 is prime, so no part boundary lines up with the pattern).
pub fn big_object() -> Vec<u8> {
    (0..BIG_LEN as u32).map(|i| (i % 251) as u8).collect()
}

/// Runs the whole contract on `store`, which must hold nothing under [`PREFIX`]. Panics
/// (with the store's URI and the broken promise) when the store breaks the contract.
pub fn store_contract(store: &dyn ObjectStore) {
    let uri = store.uri();
    assert!(
        store.list(PREFIX).unwrap().is_empty(),
        "{uri}: the contract suite needs an empty {PREFIX}/"
    );
    put_and_get(store);
    conditional_create(store);
    conditional_replace(store);
    listing(store);
    multipart(store);
    not_found(store);
    deletes(store);
    refused_keys(store);
    store.delete_prefix(PREFIX).unwrap();
    assert!(
        store.list(PREFIX).unwrap().is_empty(),
        "{uri}: delete_prefix left objects behind"
    );
}

fn k(rel: &str) -> String {
    format!("{PREFIX}/{rel}")
}

/// A whole object round-trips, at a nested key, and `put` replaces.
fn put_and_get(s: &dyn ObjectStore) {
    let key = k("a/b/c.txt");
    s.put(&key, b"one").unwrap();
    assert_eq!(s.get(&key).unwrap(), b"one");
    assert!(s.exists(&key).unwrap());
    s.put(&key, b"two!").unwrap();
    assert_eq!(s.get(&key).unwrap(), b"two!", "put replaces the object");
    s.put(&k("a/empty"), b"").unwrap();
    assert_eq!(
        s.get(&k("a/empty")).unwrap(),
        b"",
        "an empty object round-trips"
    );
}

/// `put_if_absent`: true then false, the first bytes stay; of racing writers exactly one
/// wins and its bytes are the ones stored.
fn conditional_create(s: &dyn ObjectStore) {
    let key = k("x.json");
    assert!(s.put_if_absent(&key, b"1").unwrap());
    assert!(!s.put_if_absent(&key, b"2").unwrap());
    assert_eq!(s.get(&key).unwrap(), b"1");

    let race = k("p/v1/_manifest.json");
    let winners: Vec<bool> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let race = &race;
                scope.spawn(move || {
                    s.put_if_absent(race, format!("writer {i}").as_bytes())
                        .unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(winners.iter().filter(|w| **w).count(), 1, "{winners:?}");
    let w = winners.iter().position(|w| *w).unwrap();
    assert_eq!(s.get(&race).unwrap(), format!("writer {w}").as_bytes());
}

/// `put_if_version`: the version from `get_versioned` wins once; a stale version and a
/// removed object are refused without writing.
fn conditional_replace(s: &dyn ObjectStore) {
    let key = k("x.json");
    let (b, v) = s.get_versioned(&key).unwrap();
    assert_eq!(b, b"1");
    assert!(s.put_if_version(&key, b"3", &v).unwrap());
    assert!(
        !s.put_if_version(&key, b"4", &v).unwrap(),
        "a stale version"
    );
    assert_eq!(s.get(&key).unwrap(), b"3");
    let (b, v2) = s.get_versioned(&key).unwrap();
    assert_eq!(b, b"3");
    assert_ne!(v, v2, "a replaced object has a new version");
    assert!(s.put_if_version(&key, b"5", &v2).unwrap());
    assert_eq!(s.get(&key).unwrap(), b"5");
    assert!(
        !s.put_if_version(&k("none.json"), b"4", &v).unwrap(),
        "a missing object is never replaced"
    );
    assert!(!s.exists(&k("none.json")).unwrap());
}

/// `list`: every object below a prefix, nested ones too, sorted by key, with sizes; not
/// objects that only share the prefix's characters; an object's own key lists it.
fn listing(s: &dyn ObjectStore) {
    // `modified` is the write time: S3 keeps whole seconds, so the window is widened by one.
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    s.put(&k("l/b.txt"), b"abc").unwrap();
    s.put(&k("l/a/deep/x.bin"), b"12345").unwrap();
    s.put(&k("l/a.json"), b"{}").unwrap();
    s.put(&k("lx/other.txt"), b"x").unwrap();
    let listed: Vec<(String, u64)> = s
        .list(&k("l"))
        .unwrap()
        .into_iter()
        .map(|o| (o.key, o.size))
        .collect();
    let want = vec![
        (k("l/a.json"), 2),
        (k("l/a/deep/x.bin"), 5),
        (k("l/b.txt"), 3),
    ];
    assert_eq!(listed, want);
    let slash: Vec<(String, u64)> = s
        .list(&k("l/"))
        .unwrap()
        .into_iter()
        .map(|o| (o.key, o.size))
        .collect();
    assert_eq!(slash, want, "a trailing '/' changes nothing");
    let one: Vec<(String, u64)> = s
        .list(&k("l/b.txt"))
        .unwrap()
        .into_iter()
        .map(|o| (o.key, o.size))
        .collect();
    assert_eq!(one, [(k("l/b.txt"), 3)], "an object's own key lists it");
    let after = chrono::Utc::now() + chrono::Duration::seconds(1);
    for o in s.list(&k("l")).unwrap() {
        let t = o
            .modified
            .unwrap_or_else(|| panic!("{}: no modification time", o.key));
        assert!(
            before <= t && t <= after,
            "{}: modified {t}, written between {before} and {after}",
            o.key
        );
    }
    assert!(s.list(&k("nothing/here")).unwrap().is_empty());
    let all: Vec<String> = s.list(PREFIX).unwrap().into_iter().map(|o| o.key).collect();
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(all, sorted, "listed in key order");
    assert!(all.contains(&k("lx/other.txt")) && all.contains(&k("a/b/c.txt")));
}

/// An object of [`BIG_LEN`] bytes round-trips byte-exact and lists with its size; a
/// conditional create over it is refused.
fn multipart(s: &dyn ObjectStore) {
    let big = big_object();
    let key = k("big.bin");
    s.put(&key, &big).unwrap();
    let back = s.get(&key).unwrap();
    assert!(back == big, "the large object came back different");
    let meta = s.list(&key).unwrap();
    assert_eq!(meta.len(), 1);
    assert_eq!(meta[0].size, BIG_LEN as u64);
    assert!(
        !s.put_if_absent(&key, &big).unwrap(),
        "a large conditional create over an existing object"
    );
    let (b, v) = s.get_versioned(&key).unwrap();
    assert!(b == big);
    assert!(s.put_if_version(&key, b"small now", &v).unwrap());
    assert_eq!(s.get(&key).unwrap(), b"small now");
}

/// Reading a missing key is the `NotFound` kind (which callers turn into "none yet");
/// deleting one is not an error.
fn not_found(s: &dyn ObjectStore) {
    let key = k("missing/nope.json");
    assert!(matches!(s.get(&key), Err(StoreError::NotFound { .. })));
    assert!(matches!(
        s.get_versioned(&key),
        Err(StoreError::NotFound { .. })
    ));
    assert!(!s.exists(&key).unwrap());
    s.delete(&key).unwrap();
    s.delete_prefix(&k("missing")).unwrap();
}

/// `delete` removes one object; `delete_prefix` removes everything below a prefix and
/// nothing beside it.
fn deletes(s: &dyn ObjectStore) {
    s.delete(&k("l/b.txt")).unwrap();
    assert!(!s.exists(&k("l/b.txt")).unwrap());
    assert!(matches!(
        s.get(&k("l/b.txt")),
        Err(StoreError::NotFound { .. })
    ));
    s.delete_prefix(&k("l")).unwrap();
    assert!(s.list(&k("l")).unwrap().is_empty());
    assert!(
        s.exists(&k("lx/other.txt")).unwrap(),
        "delete_prefix of l/ must not touch lx/"
    );
    assert!(s.exists(&k("x.json")).unwrap());
}

/// Keys that could escape the store or alias another key are refused before any I/O.
fn refused_keys(s: &dyn ObjectStore) {
    for bad in ["../escape", "a/../../b", "/abs/key", "a//b", "a/./b", ""] {
        assert!(
            matches!(s.put(bad, b"x"), Err(StoreError::BadKey { .. })),
            "put {bad:?}"
        );
        assert!(
            matches!(s.get(bad), Err(StoreError::BadKey { .. })),
            "get {bad:?}"
        );
        assert!(
            matches!(s.put_if_absent(bad, b"x"), Err(StoreError::BadKey { .. })),
            "put_if_absent {bad:?}"
        );
    }
    assert!(s.list("../up").is_err());
    assert!(s.delete("../up").is_err());
}
