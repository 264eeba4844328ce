//! The command line as a new user meets it: exit codes and messages of wrong variables,
//! arguments and folders, `-q`, and output paths. Each test runs the binary and asserts the
//! exit code and the words of the message a user acts on.

use std::path::Path;
use std::process::Output;

use crate::features::{assert_ok, c360, edge, repo};

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

/// A one-row spine for the edge fixture (customer C0001 at `as_of`).
fn spine(dir: &Path, as_of: &str) -> std::path::PathBuf {
    let p = dir.join("spine.csv");
    std::fs::write(&p, format!("customer_id,as_of\nC0001,{as_of}\n")).expect("spine");
    p
}

/// Fault 1: a tuning or diagnostic variable c360 cannot read is a usage error (exit 2)
/// naming the variable, its value and what it accepts; refused before anything is read
/// (the source does not even exist) or written. It used to exit 1 with "computing failed:"
/// after loading the data (the batch size), or be ignored (a bad log filter, step delay).
#[test]
fn bad_tuning_variables_are_usage_errors_naming_value_and_accepted_values() {
    let dir = tempfile::tempdir().expect("tmp");
    let spine = spine(dir.path(), "2024-03-31");
    let out = dir.path().join("t.parquet");
    let cases = [
        ("C360_TRAINING_SWEEP", "sometimes", "set it to off"),
        ("C360_TRAINING_CUT", "maybe", "set it to off"),
        ("C360_TRAINING_BATCH_CUSTOMERS", "lots", "0 for one batch"),
        ("C360_TRAINING_WORKERS", "9", "from 1 to 8"),
        ("C360_TRAINING_WORKERS", "two", "from 1 to 8"),
        ("C360_TRAINING_BATCH_CUSTOMERS", "-5", "set a whole number"),
        (
            "C360_TRAINING_BATCH_CUSTOMERS",
            "99999999999999999999999",
            "set a whole number",
        ),
        ("C360_LOG", "c360=loud", "debug"),
        (
            "C360_SERVICE_STEP_DELAY_MS",
            "soon",
            "whole number of milliseconds",
        ),
        // Read by clap too (serve-model's flags), whose refusal named only the flag.
        ("C360_SERVE_MAX_CONNECTIONS", "abc", "1 to 65536"),
        (
            "C360_SERVE_HEADER_TIMEOUT_SECONDS",
            "soon",
            "not a number of seconds",
        ),
    ];
    for (var, value, accepted) in cases {
        let o = c360()
            .env(var, value)
            .args(["features", "training-set", "churn_signals", "--spine"])
            .arg(&spine)
            .arg("--out")
            .arg(&out)
            .arg("--source")
            .arg(dir.path().join("no such source"))
            .output()
            .expect("run");
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{var}={value}: {e}");
        assert!(
            e.starts_with(&format!("error: {var}={value:?}")),
            "{var}={value}: {e}"
        );
        assert!(e.contains(accepted), "{var}={value}: {e}");
        assert!(!e.contains("computing failed"), "{e}");
        assert!(!out.exists());
        // Any command: the check runs before the command does.
        let o = c360().env(var, value).args(["features", "list"]).output();
        let o = o.expect("run");
        assert_eq!(o.status.code(), Some(2), "{var}={value}: {}", stderr(&o));
        assert!(stderr(&o).starts_with(&format!("error: {var}={value:?}")));
        assert_eq!(stdout(&o), "");
    }
    let o = c360()
        .env("C360_SERVE_MAX_CONNECTIONS", "abc")
        .args(["serve-model", "--model-dir"])
        .arg(repo().join("models/churn_xgb"))
        .output()
        .expect("run");
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(
        e.starts_with("error: C360_SERVE_MAX_CONNECTIONS=\"abc\""),
        "{e}"
    );
    // Valid values still run (case and spaces as the library reads them).
    for (var, value) in [
        ("C360_TRAINING_SWEEP", " OFF "),
        ("C360_TRAINING_CUT", "on"),
        ("C360_TRAINING_BATCH_CUSTOMERS", "all"),
        ("C360_LOG", "c360=debug,warn"),
        ("C360_SERVICE_STEP_DELAY_MS", "0"),
        ("C360_SERVE_MAX_CONNECTIONS", "64"),
    ] {
        let o = c360().env(var, value).args(["features", "list"]).output();
        assert_ok(&o.expect("run"));
    }
}

/// Fault 2: an as-of past the data, and spine dates plus a label's horizon past the data,
/// are the same kind of refusal: the question is wrong for these sources (exit 2), not
/// data that breaks the contract (exit 4, which a spine naming an unknown customer keeps).
#[test]
fn label_horizon_past_the_data_exits_2_like_an_as_of_past_the_data() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = dir.path().join("store");
    let o = c360()
        .args([
            "features",
            "build",
            "rfm",
            "--as-of",
            "2030-01-01",
            "--store",
        ])
        .arg(&store)
        .arg("--source")
        .arg(edge())
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("after the sources' last event"));

    let train = |spine: &Path, label: &str| {
        c360()
            .args([
                "features",
                "training-set",
                "rfm",
                "--label",
                label,
                "--spine",
            ])
            .arg(spine)
            .arg("--out")
            .arg(dir.path().join("t.parquet"))
            .arg("--source")
            .arg(edge())
            .output()
            .expect("run")
    };
    let late = spine(dir.path(), "2024-11-30");
    let o = train(&late, "churned_90d");
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(
        e.contains("label churned_90d: needs data up to 2025-02-28") && e.contains("earlier as_of"),
        "{e}"
    );
    // An unknown label is a wrong argument too, and lists the set's labels.
    let ok = spine(dir.path(), "2024-03-31");
    let o = train(&ok, "churned_9d");
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("labels: churned_90d"), "{e}");
    // Spine dates are as-ofs: the last one past the data is refused like --as-of (exit 2),
    // unless asked for with the same flag as `features build`.
    let after = spine(dir.path(), "2026-01-01");
    let o = train(&after, "churned_90d");
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(
        e.contains(
            "the latest as_of: as-of 2026-01-01 is after the sources' last event (2024-12-31"
        ) && e.contains("Use spine dates of 2024-12-31 or earlier")
            && e.contains("--allow-as-of-past-data"),
        "{e}"
    );
    let o = c360()
        .args([
            "features",
            "training-set",
            "rfm",
            "--allow-as-of-past-data",
            "--spine",
        ])
        .arg(&after)
        .arg("--out")
        .arg(dir.path().join("late.csv"))
        .arg("--source")
        .arg(edge())
        .output()
        .expect("run");
    assert_ok(&o);
    let csv = std::fs::read_to_string(dir.path().join("late.csv")).expect("written");
    assert_eq!(csv.lines().count(), 2, "{csv}");
    assert!(csv.contains("\nC0001,2026-01-01,"), "{csv}");
    // Bad spine data stays exit 4.
    std::fs::write(&ok, "customer_id,as_of\nNOPE,2024-03-31\n").expect("spine");
    let o = train(&ok, "churned_90d");
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(!dir.path().join("t.parquet").exists());
}

/// Fault 3: outside a project folder the commands that need definitions say where c360
/// looked and how to point it at the project (--config), instead of only "./features:
/// cannot read the feature folder".
#[test]
fn outside_a_project_folder_the_error_says_where_to_run_or_config() {
    let dir = tempfile::tempdir().expect("tmp");
    let cwd = dir.path();
    let run = |args: &[&str]| c360().current_dir(cwd).args(args).output().expect("run");
    for args in [
        &["features", "list"][..],
        &["features", "show", "rfm"],
        &["features", "build", "rfm", "--as-of", "2024-06-30"],
        &[
            "features",
            "training-set",
            "rfm",
            "--spine",
            "s.csv",
            "--out",
            "t.csv",
        ],
        &["run", "churn_weekly", "--as-of", "2024-06-30"],
        &["demo"],
    ] {
        let o = run(args);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(3), "{args:?}: {e}");
        assert!(
            e.contains("no c360.toml there")
                && e.contains("--config")
                && e.contains("project folder"),
            "{args:?}: {e}"
        );
        assert!(!cwd.join(".c360").exists(), "{args:?} wrote a store");
    }
    let o = run(&["features", "list"]);
    let e = stderr(&o);
    assert!(e.contains("no features/ folder in"), "{e}");
    assert!(
        !e.contains("  ") && e.lines().count() == 1,
        "one line, no runs of spaces: {e}"
    );
    let o = run(&["validate"]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{e}");
    assert!(
        e.starts_with("error: 1 problem(s):") && e.contains("\nhint: no features/ folder"),
        "{e}"
    );
    let o = run(&["models", "fit", "clv_bgnbd", "--as-of", "2024-06-30"]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{e}");
    assert!(
        e.contains("no models/ folder") && e.contains("--config"),
        "{e}"
    );

    // With a c360.toml whose [paths] names a missing folder, the key is named.
    std::fs::write(cwd.join("c360.toml"), "[paths]\nfeatures = \"defs\"\n").expect("toml");
    let o = run(&["features", "list"]);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{e}");
    assert!(
        e.contains("[paths] features") && e.contains("defs") && !e.contains("  "),
        "{e}"
    );

    // The project folder passed to --config: the file to pass is named.
    let o = c360()
        .current_dir(cwd)
        .arg("--config")
        .arg(repo())
        .args(["features", "list"])
        .output()
        .expect("run");
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(3), "{e}");
    assert!(
        e.contains("is a folder: pass the c360.toml file")
            && e.contains(&repo().join("c360.toml").display().to_string()),
        "{e}"
    );
    // --config from elsewhere works.
    let o = c360()
        .current_dir(cwd)
        .arg("--config")
        .arg(repo().join("c360.toml"))
        .args(["features", "list"])
        .output()
        .expect("run");
    assert_ok(&o);
    assert!(stdout(&o).contains("churn_signals"));
}

/// Fault 4: `-q` ("only warnings and errors") prints no status or summary line in any
/// command; what a command is asked to show (a list, a set) still prints.
#[test]
fn quiet_prints_no_summary_lines() {
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let store = dir.path().join("store");
    let o = c360()
        .args(["-q", "generate", "--customers", "30", "--out"])
        .arg(&data)
        .output()
        .expect("run");
    assert_ok(&o);
    assert_eq!(stdout(&o), "");
    assert!(data.join("orders.parquet").is_file());
    let build = |quiet: bool| {
        let mut c = c360();
        if quiet {
            c.arg("-q");
        }
        c.args([
            "features",
            "build",
            "rfm",
            "--as-of",
            "2024-06-30",
            "--source",
        ])
        .arg(&data)
        .arg("--store")
        .arg(&store)
        .output()
        .expect("run")
    };
    let o = build(true);
    assert_ok(&o);
    assert_eq!(stdout(&o), "");
    assert!(store
        .join("features/rfm/v1/as_of=2024-06-30/_manifest.json")
        .is_file());
    let o = build(false);
    assert_ok(&o);
    assert!(
        stdout(&o).starts_with("rfm v1 as of 2024-06-30: "),
        "{}",
        stdout(&o)
    );
    let spine = spine(dir.path(), "2024-03-31");
    let o = c360()
        .args(["-q", "features", "training-set", "rfm", "--spine"])
        .arg(&spine)
        .arg("--out")
        .arg(dir.path().join("t.csv"))
        .arg("--source")
        .arg(edge())
        .output()
        .expect("run");
    assert_ok(&o);
    assert_eq!(stdout(&o), "");
    let csv = std::fs::read_to_string(dir.path().join("t.csv")).expect("written");
    assert!(csv.starts_with("customer_id,as_of,"), "{csv}");
    let o = c360().args(["-q", "validate"]).output().expect("run");
    assert_ok(&o);
    assert_eq!(stdout(&o), "");
    // Asked-for output is not a summary.
    let o = c360()
        .args(["-q", "features", "list"])
        .output()
        .expect("run");
    assert_ok(&o);
    assert!(stdout(&o).contains("churn_signals"), "{}", stdout(&o));
}

/// Fault 5: output paths follow one rule, said in --help and README: missing folders are
/// created (as `generate --out` and `score --output` always did); an --out that is a
/// folder, lies under a file, or is the spine itself is refused naming the path.
#[test]
fn output_paths_create_missing_folders_and_refuse_what_cannot_be_a_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let spine = spine(dir.path(), "2024-03-31");
    let train = |out: &Path| {
        c360()
            .args(["features", "training-set", "rfm", "--spine"])
            .arg(&spine)
            .arg("--out")
            .arg(out)
            .arg("--source")
            .arg(edge())
            .output()
            .expect("run")
    };
    let nested = dir.path().join("with space/a b/t.csv");
    let o = train(&nested);
    assert_ok(&o);
    let csv = std::fs::read_to_string(&nested).expect("written");
    assert!(
        csv.starts_with("customer_id,as_of,") && csv.contains("\nC0001,2024-03-31,"),
        "{csv}"
    );

    // A command that fails leaves no folder behind (created only to write the output).
    let o = c360()
        .args([
            "features",
            "training-set",
            "rfm",
            "--label",
            "nope",
            "--spine",
        ])
        .arg(&spine)
        .arg("--out")
        .arg(dir.path().join("never/t.csv"))
        .arg("--source")
        .arg(edge())
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(!dir.path().join("never").exists());

    let folder = dir.path().join("t.parquet");
    std::fs::create_dir(&folder).expect("dir");
    let o = train(&folder);
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("is a folder") && e.contains("t.parquet"), "{e}");

    let file = dir.path().join("plain");
    std::fs::write(&file, "x").expect("file");
    let o = train(&file.join("t.parquet"));
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("plain") && e.contains("not a folder"), "{e}");

    let o = train(&dir.path().join("spine.csv"));
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("is the spine"), "{e}");
    assert!(std::fs::read_to_string(&spine)
        .expect("spine")
        .starts_with("customer_id,as_of\n"));

    // No source table is written over (a training set named src/customers.parquet replaced
    // the customers table), however the path is spelled; a file beside them is fine.
    let src = dir.path().join("src");
    std::fs::create_dir(&src).expect("src");
    for t in ["customers", "orders", "interactions", "support_tickets"] {
        std::fs::copy(
            edge().join(format!("{t}.parquet")),
            src.join(format!("{t}.parquet")),
        )
        .expect("copy table");
    }
    let before = std::fs::read(src.join("customers.parquet")).expect("customers");
    std::fs::create_dir(src.join("orders")).expect("a table folder");
    for out in [
        src.join("customers.parquet"),
        src.join("orders/t.parquet"),
        src.join("nope/../customers.parquet"),
        src.join("interactions.csv"),
    ] {
        let o = c360()
            .args(["features", "training-set", "rfm", "--spine"])
            .arg(&spine)
            .arg("--out")
            .arg(&out)
            .arg("--source")
            .arg(&src)
            .output()
            .expect("run");
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{}: {e}", out.display());
        assert!(e.contains("is the source's") && e.contains("table"), "{e}");
    }
    assert_eq!(
        std::fs::read(src.join("customers.parquet")).expect("customers"),
        before
    );
    assert!(!src.join("orders/t.parquet").exists());
    std::fs::remove_dir(src.join("orders")).expect("empty table folder");
    // Beside the tables is fine.
    let o = c360()
        .args(["features", "training-set", "rfm", "--spine"])
        .arg(&spine)
        .arg("--out")
        .arg(src.join("train.parquet"))
        .arg("--source")
        .arg(&src)
        .output()
        .expect("run");
    assert_ok(&o);

    // A folder given as the spine (polars' message spoke of schemas and globs).
    let o = c360()
        .args(["features", "training-set", "rfm", "--spine"])
        .arg(dir.path())
        .arg("--out")
        .arg(dir.path().join("x.csv"))
        .arg("--source")
        .arg(edge())
        .output()
        .expect("run");
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("is a folder: name the spine file"), "{e}");

    // generate: a folder (created with its parents); a file there is refused by name.
    let o = c360()
        .args(["generate", "--customers", "5", "--out"])
        .arg(&file)
        .output()
        .expect("run");
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(e.contains("plain") && e.contains("not a folder"), "{e}");

    // score --output and demo --dir follow the same rule.
    let o = c360()
        .args(["score", "--model"])
        .arg(repo().join("models/churn_xgb"))
        .arg("--input")
        .arg(&spine)
        .arg("--output")
        .arg(file.join("out"))
        .output()
        .expect("run");
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(
        e.starts_with("error: --output ") && e.contains("not a folder"),
        "{e}"
    );
    let o = c360()
        .args(["demo", "--customers", "10", "--dir"])
        .arg(&file)
        .output()
        .expect("run");
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{e}");
    assert!(
        e.starts_with("error: --dir ") && e.contains("not a folder"),
        "{e}"
    );

    // Said in --help (clap wraps the lines).
    let help = |cmd: &[&str]| {
        let o = c360().args(cmd).arg("--help").output().expect("run");
        stdout(&o).split_whitespace().collect::<Vec<_>>().join(" ")
    };
    assert!(help(&["features", "training-set"]).contains("missing folders are created"));
    assert!(help(&["generate"]).contains("Output folder (created if missing"));
}

/// Found by the new user: an event table with no rows (a producer's first, empty
/// delivery) failed every snapshot with "computing failed: invalid series dtype: expected
/// `UInt32`, got `i32`" (exit 1). Now the sets build, with every customer at no orders.
#[test]
fn an_empty_event_table_builds_every_set() {
    use polars::prelude::*;
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("data");
    let o = c360()
        .args(["generate", "--customers", "40", "--out"])
        .arg(&data)
        .output()
        .expect("run");
    assert_ok(&o);
    let orders = data.join("orders.parquet");
    let mut empty = ParquetReader::new(std::fs::File::open(&orders).expect("orders"))
        .finish()
        .expect("read")
        .head(Some(0));
    ParquetWriter::new(std::fs::File::create(&orders).expect("orders"))
        .finish(&mut empty)
        .expect("write");
    let store = dir.path().join("store");
    let o = c360()
        .args([
            "features",
            "build",
            "rfm",
            "churn_signals",
            "--as-of",
            "2024-06-30",
        ])
        .arg("--source")
        .arg(&data)
        .arg("--store")
        .arg(&store)
        .output()
        .expect("run");
    assert_ok(&o);
    let part = |set: &str| {
        let root = store.join(format!("features/{set}/v1/as_of=2024-06-30"));
        let run = std::fs::read_dir(&root)
            .expect("snapshot")
            .filter_map(|e| e.ok())
            .find(|e| e.file_name().to_string_lossy().starts_with("run="))
            .expect("a run folder");
        ParquetReader::new(std::fs::File::open(run.path().join("part-0.parquet")).expect("part"))
            .finish()
            .expect("read")
    };
    let rfm = part("rfm");
    assert!(rfm.height() > 0);
    let orders = rfm.column("frequency_orders").expect("col");
    assert_eq!(
        orders.as_materialized_series().sum::<i64>().expect("sum"),
        0
    );
    assert_eq!(orders.null_count(), 0);
    assert_eq!(
        rfm.column("frequency").expect("col").null_count(),
        rfm.height()
    );
    assert_eq!(part("churn_signals").height(), rfm.height());
}
