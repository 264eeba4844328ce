//! Helpers shared by the integration tests.

/// `tests/fixtures`, the committed test data.
#[allow(dead_code)]
pub fn fixture_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// After a test rewrote the part file `rel` of the committed partition `part` (to plant
/// data a producer could have published), records its new size and SHA-256 in the
/// partition's manifest, as a publish of that data would have.
#[allow(dead_code)]
pub fn reseal_part(part: &std::path::Path, rel: &str) {
    use sha2::{Digest, Sha256};
    let key = part.join("_manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&key).unwrap()).unwrap();
    let bytes = std::fs::read(part.join(rel)).unwrap();
    manifest["file_checks"][rel] = serde_json::json!({
        "size": bytes.len(),
        "sha256": hex::encode(Sha256::digest(&bytes)),
    });
    std::fs::write(&key, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
}

/// Held by the tests that load a project in this process: `Project::load` installs the
/// project's `[aws]` settings for the whole process, so two such tests at once would run
/// with each other's S3 endpoint.
#[allow(dead_code)]
pub fn in_process_project() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
