//! Helpers shared by the integration tests.

/// `tests/fixtures`, the committed test data.
#[allow(dead_code)]
pub fn fixture_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}
