//! Failures under c360's own message keep their cause: a polars, store or parse error is
//! reported with its text (once, never twice) and the command exits with the right code.

use std::path::Path;
use std::process::{Command, Output};

use c360::features::{self, FeatureError};
use c360::source::{Source, SourceError};

fn c360() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_c360"));
    c.env("C360_LOG", "warn").env_remove("C360_CONFIG");
    c
}

fn edge() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/edge")
}

/// A copy of the edge source's four tables.
fn edge_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    for t in ["customers", "orders", "interactions", "support_tickets"] {
        let name = format!("{t}.parquet");
        std::fs::copy(edge().join(&name), dir.path().join(&name)).expect("copy");
    }
    dir
}

fn build(source: &Path, store: &Path) -> Output {
    c360()
        .args([
            "features",
            "build",
            "rfm",
            "--as-of",
            "2024-06-30",
            "--source",
        ])
        .arg(source)
        .arg("--store")
        .arg(store)
        .output()
        .expect("run c360")
}

fn stderr_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .map(str::to_string)
        .collect()
}

/// A table whose folder holds garbage and a truncated table file: c360's message names the
/// table and the file, and says polars' reason once, on the same line; exit code 4.
#[test]
fn a_polars_failure_is_reported_under_the_table_with_its_cause_once() {
    let store = tempfile::tempdir().expect("store");
    // A table file cut in half.
    let dir = edge_copy();
    let orders = dir.path().join("orders.parquet");
    let bytes = std::fs::read(&orders).expect("orders");
    std::fs::write(&orders, &bytes[..bytes.len() / 2]).expect("truncate");
    let out = build(dir.path(), store.path());
    let lines = stderr_lines(&out);
    assert_eq!(out.status.code(), Some(4), "{lines:?}");
    assert_eq!(
        lines,
        vec![format!(
            "error: table orders: cannot read {}: parquet: File out of specification: The file must end with PAR1",
            orders.display()
        )]
    );
    // A table folder whose one file is garbage.
    std::fs::remove_file(&orders).expect("rm");
    std::fs::create_dir(dir.path().join("orders")).expect("folder");
    let part = dir.path().join("orders/part-0.parquet");
    std::fs::write(&part, b"not parquet at all").expect("garbage");
    let out = build(dir.path(), store.path());
    let lines = stderr_lines(&out);
    assert_eq!(out.status.code(), Some(4), "{lines:?}");
    assert_eq!(lines.len(), 1, "the cause is not repeated: {lines:?}");
    assert!(
        lines[0].starts_with(&format!(
            "error: table orders: cannot read {}: parquet: ",
            part.display()
        )),
        "{lines:?}"
    );

    // In process: the polars error is the chained cause, not only text.
    let s = features::find_set(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("features"),
        "rfm",
    )
    .expect("rfm");
    let src = Source::open(&dir.path().display().to_string()).expect("source");
    let e = match features::load_tables(&s, &src, &[]) {
        Err(FeatureError::Source(e)) => e,
        Err(e) => panic!("a source error, got {e}"),
        Ok(_) => panic!("garbage must not load"),
    };
    assert!(matches!(*e, SourceError::Unreadable { .. }), "{e}");
    let mut chain = Vec::new();
    let mut cause = std::error::Error::source(&*e);
    while let Some(c) = cause {
        chain.push(c.to_string());
        cause = c.source();
    }
    assert!(!chain.is_empty(), "the reader's error is kept as the cause");
    assert!(chain[0].starts_with("parquet: "), "{chain:?}");
}

/// A store path that is a file: the store's I/O failure names the object and says the
/// operating system's reason; exit code 1 (a failure, not bad input).
#[test]
fn a_store_failure_is_reported_with_the_object_and_its_cause() {
    let dir = edge_copy();
    let file = tempfile::NamedTempFile::new().expect("file");
    let out = build(dir.path(), file.path());
    let lines = stderr_lines(&out);
    assert_eq!(out.status.code(), Some(1), "{lines:?}");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with(&format!("error: I/O error on {}/", file.path().display())),
        "{lines:?}"
    );
    assert!(lines[0].contains("_manifest.json"), "{lines:?}");
    #[cfg(target_os = "linux")]
    assert!(
        lines[0].ends_with("Not a directory (os error 20)"),
        "{lines:?}"
    );
}

/// Context added by a command (`loading the model from ...`) comes first; the cause follows
/// on its own line.
#[test]
fn a_cause_under_a_context_prints_on_its_own_line() {
    let dir = tempfile::tempdir().expect("tmp");
    let model = dir.path().join("xgboost-model");
    std::fs::write(&model, b"{\"learner\": garbage").expect("model");
    let out = c360()
        .args(["score", "--model"])
        .arg(&model)
        .arg("--input")
        .arg(dir.path())
        .arg("--output")
        .arg(dir.path().join("out"))
        .output()
        .expect("run c360");
    let lines = stderr_lines(&out);
    assert_eq!(out.status.code(), Some(1), "{lines:?}");
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert_eq!(
        lines[0],
        format!("error: loading the model from {}", model.display())
    );
    assert!(
        lines[1].starts_with(&format!(
            "  caused by: {} is not a valid xgboost JSON model: ",
            model.display()
        )),
        "{lines:?}"
    );
}
