//! End-to-end runs: the demo, the run ledger, kills and resumes, gates, the data product
//! and its contract, read back by independent tools.

use std::path::{Path, PathBuf};
use std::process::Command;

use polars::prelude::*;

use crate::features::{assert_ok, c360, repo};
use c360::pipeline::{Ledger, RunStatus, Step, StepDetail, StepStatus};

/// The tests' Python (with DuckDB and the ODCS validator), or None with a loud note.
/// Under CI (or C360_REQUIRE_PYTHON=1) a missing one is a failure.
pub fn python() -> Option<PathBuf> {
    let p = std::env::var_os("C360_PYTHON").map(PathBuf::from);
    match p {
        Some(p) if p.exists() => Some(p),
        _ => {
            let required = std::env::var_os("CI").is_some()
                || std::env::var_os("C360_REQUIRE_PYTHON").is_some();
            assert!(
                !required,
                "C360_PYTHON is not set: run the tests with scripts/test.sh, which prepares .venv-test"
            );
            eprintln!(
                "\n*** SKIPPING the independent-reader checks: C360_PYTHON is not set. Run scripts/test.sh (it installs DuckDB and the ODCS validator into .venv-test). ***\n"
            );
            None
        }
    }
}

/// A project folder using the repo's features and models and a job copied (and edited).
pub struct TestProject {
    pub dir: tempfile::TempDir,
}

impl TestProject {
    pub fn new(job_edit: impl Fn(String) -> String) -> TestProject {
        let dir = tempfile::tempdir().unwrap();
        let root = repo();
        std::fs::write(
            dir.path().join("c360.toml"),
            format!(
                "[store]\nuri = \"store\"\n[source]\nuri = \"data\"\n[paths]\nfeatures = \"{}\"\nmodels = \"{}\"\njobs = \"jobs\"\n",
                root.join("features").display(),
                root.join("models").display()
            ),
        )
        .unwrap();
        std::fs::create_dir_all(dir.path().join("jobs")).unwrap();
        let job = std::fs::read_to_string(root.join("jobs/churn_weekly.toml")).unwrap();
        std::fs::write(dir.path().join("jobs/churn_weekly.toml"), job_edit(job)).unwrap();
        TestProject { dir }
    }

    /// Copies the sample model into the project (so a test may edit it).
    pub fn use_local_model(&self) {
        let dst = self.path().join("models/churn_xgb");
        std::fs::create_dir_all(&dst).unwrap();
        for f in ["model.toml", "xgboost-model.json"] {
            std::fs::copy(repo().join("models/churn_xgb").join(f), dst.join(f)).unwrap();
        }
        let toml = std::fs::read_to_string(self.path().join("c360.toml")).unwrap();
        let toml = toml.replace(
            &format!("models = \"{}\"", repo().join("models").display()),
            "models = \"models\"",
        );
        std::fs::write(self.path().join("c360.toml"), toml).unwrap();
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn generate(&self, customers: u32) {
        let out = c360()
            .args([
                "generate",
                "--customers",
                &customers.to_string(),
                "--seed",
                "5",
                "--out",
            ])
            .arg(self.path().join("data"))
            .output()
            .unwrap();
        assert_ok(&out);
    }

    pub fn cmd(&self) -> Command {
        let mut c = c360();
        c.current_dir(self.path());
        c
    }

    pub fn run(&self, as_of: &str) -> (i32, String) {
        let out = self
            .cmd()
            .args(["run", "churn_weekly", "--as-of", as_of])
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }

    pub fn store(&self) -> PathBuf {
        self.path().join("store")
    }

    pub fn latest(&self) -> Option<serde_json::Value> {
        let p = self
            .store()
            .join("products/customer_churn_scores/latest.json");
        std::fs::read(p)
            .ok()
            .map(|b| serde_json::from_slice(&b).unwrap())
    }

    /// Every run ledger of `churn_weekly`, read as the typed ledger.
    pub fn ledgers(&self) -> Vec<Ledger> {
        let mut out = Vec::new();
        let dir = self.store().join("runs/churn_weekly");
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                if let Ok(b) = std::fs::read(e.path().join("run.json")) {
                    out.push(serde_json::from_slice(&b).unwrap());
                }
            }
        }
        out
    }
}

/// The first part file a committed partition's manifest lists.
fn first_part(partition: &Path) -> std::path::PathBuf {
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(partition.join("_manifest.json")).unwrap()).unwrap();
    partition.join(m["files"][0].as_str().unwrap())
}

fn read_parquet(p: &Path) -> DataFrame {
    ParquetReader::new(std::fs::File::open(p).unwrap())
        .finish()
        .unwrap()
}

/// Checks that latest.json names a committed partition whose files hold its rows.
fn assert_latest_is_whole(store: &Path, latest: &serde_json::Value) {
    let part = store.join(latest["path"].as_str().unwrap());
    let m: serde_json::Value = serde_json::from_slice(
        &std::fs::read(part.join("_manifest.json")).expect("latest names a committed partition"),
    )
    .unwrap();
    let rows: usize = m["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| read_parquet(&part.join(f.as_str().unwrap())).height())
        .sum();
    assert_eq!(rows as u64, m["rows"].as_u64().unwrap());
    assert_eq!(latest["rows"], m["rows"]);
}

#[test]
fn demo_publishes_a_product_that_independent_readers_read() {
    let dir = tempfile::tempdir().unwrap();
    let out = c360()
        .current_dir(repo())
        .args(["demo", "--customers", "3000", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("published customer_churn_scores"), "{text}");
    assert!(
        text.contains("risk bands:") && text.contains("top segments:"),
        "{text}"
    );
    let store = dir.path().join("store");
    let latest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(store.join("products/customer_churn_scores/latest.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(latest["as_of"], "2024-09-30");
    assert_latest_is_whole(&store, &latest);
    let part = first_part(&store.join(latest["path"].as_str().unwrap()));
    let df = read_parquet(&part);
    let names: Vec<String> = df
        .get_column_names()
        .iter()
        .map(|s| s.to_string())
        .collect();
    for c in [
        "customer_id",
        "churn_score",
        "risk_band",
        "rfm_segment",
        "as_of",
        "scored_at",
        "model",
        "model_version",
        "feature_sets",
    ] {
        assert!(names.contains(&c.to_string()), "{c} in {names:?}");
    }
    assert!(
        !names.iter().any(|c| c.contains("email")),
        "no PII: {names:?}"
    );
    let n = df.height();
    let sum: f64 = df
        .column("churn_score")
        .unwrap()
        .f64()
        .unwrap()
        .sum()
        .unwrap();
    // Scores are probabilities and bands follow the model's thresholds.
    let bad = df
        .clone()
        .lazy()
        .filter(
            col("churn_score")
                .lt(lit(0.0))
                .or(col("churn_score").gt(lit(1.0)))
                .or(col("risk_band").is_null()),
        )
        .collect()
        .unwrap();
    assert_eq!(bad.height(), 0);
    // One row per customer of the snapshot.
    let snap = read_parquet(&first_part(
        &store.join("features/churn_signals/v1/as_of=2024-09-30"),
    ));
    assert_eq!(n, snap.height());

    // DuckDB and polars (Python) read the same rows.
    let Some(py) = python() else { return };
    let script = format!(
        r#"
import duckdb, json, polars as pl
p = {part:?}
con = duckdb.connect()
n, s, bands, t = con.execute("select count(*), sum(churn_score), count(distinct risk_band), typeof(any_value(as_of)) from read_parquet(?)", [p]).fetchone()
df = pl.read_parquet(p)
print(json.dumps({{"duckdb_rows": n, "duckdb_sum": s, "bands": bands, "as_of_type": t, "polars_rows": df.height, "polars_sum": df["churn_score"].sum()}}))
"#,
        part = part.display().to_string()
    );
    let out = Command::new(&py).args(["-c", &script]).output().unwrap();
    assert_ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["duckdb_rows"].as_u64().unwrap() as usize, n);
    assert_eq!(v["polars_rows"].as_u64().unwrap() as usize, n);
    assert!((v["duckdb_sum"].as_f64().unwrap() - sum).abs() < 1e-6 * n as f64);
    assert!((v["polars_sum"].as_f64().unwrap() - sum).abs() < 1e-6 * n as f64);
    assert_eq!(v["bands"], 3);
    assert_eq!(v["as_of_type"], "DATE");
}

#[test]
fn the_contract_validates_against_the_odcs_v3_schema() {
    let p = TestProject::new(|j| j);
    p.generate(1500);
    let (code, out) = p.run("2024-09-30");
    assert_eq!(code, 0, "{out}");
    let contract = p
        .store()
        .join("products/customer_churn_scores/contract.yaml");
    let text = std::fs::read_to_string(&contract).unwrap();
    let doc: serde_json::Value = yaml_serde::from_str(&text).unwrap();
    assert_eq!(doc["apiVersion"], "v3.0.2", "{text}");
    assert_eq!(doc["kind"], "DataContract", "{text}");
    assert!(!text.contains("email:"), "no PII column in the contract");
    let Some(py) = python() else { return };
    let out = Command::new(&py)
        .arg(repo().join("scripts/validate_contract.py"))
        .arg(&contract)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ODCS validation failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(report.contains("valid against ODCS"), "{report}");
    // A broken contract is refused by the same validator (the check can fail).
    let broken = p.path().join("broken.yaml");
    let with_extra = format!("{}\nflavour: vanilla\n", text.trim_end());
    let extra: serde_json::Value = yaml_serde::from_str(&with_extra).unwrap();
    assert_eq!(extra["flavour"], "vanilla", "a top-level key was added");
    std::fs::write(&broken, with_extra).unwrap();
    let out = Command::new(&py)
        .arg(repo().join("scripts/validate_contract.py"))
        .arg(&broken)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "an unknown top-level key must be refused"
    );
}

#[test]
fn reruns_are_idempotent_and_latest_only_moves_forward() {
    let p = TestProject::new(|j| j.replace("max_mean_shift = 0.15", "max_mean_shift = 0.5"));
    p.generate(2000);
    let (code, out) = p.run("2024-09-29");
    assert_eq!(code, 0, "{out}");
    let first = p.latest().unwrap();
    let (code, out) = p.run("2024-09-29");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("already published"), "{out}");
    assert_eq!(
        p.latest().unwrap(),
        first,
        "an identical re-run changes nothing"
    );
    assert_eq!(
        p.ledgers().len(),
        1,
        "one ledger for the same job, as-of and inputs"
    );
    let (code, out) = p.run("2024-09-30");
    assert_eq!(code, 0, "{out}");
    let second = p.latest().unwrap();
    assert_eq!(second["as_of"], "2024-09-30");
    // An older date re-run (new inputs: forced by a different job file) does not move latest back.
    let (code, _) = p.run("2024-09-22");
    assert_eq!(code, 0);
    assert_eq!(p.latest().unwrap()["as_of"], "2024-09-30");
    assert_latest_is_whole(&p.store(), &p.latest().unwrap());
    // The ledger records each step with timings and rows.
    let l = p
        .ledgers()
        .into_iter()
        .find(|l| l.as_of.to_string() == "2024-09-30")
        .unwrap();
    assert_eq!(l.status, RunStatus::Succeeded);
    let steps: Vec<Step> = l.steps.iter().map(|s| s.name).collect();
    assert_eq!(
        steps,
        [
            Step::Features,
            Step::TransformInput,
            Step::Transform,
            Step::Gates,
            Step::Publish
        ]
    );
    for s in &l.steps {
        assert_eq!(s.status, StepStatus::Done);
        assert!(s.seconds.unwrap() >= 0.0);
        assert!(s.rows.unwrap() > 0);
    }
    // The transform input is several similar-sized header-less parts, id first.
    let Some(StepDetail::TransformInput(input)) = l.step(Step::TransformInput).map(|s| &s.detail)
    else {
        panic!("no transform input detail: {l:?}")
    };
    let files = &input.files;
    assert_eq!(files.len(), 4);
    let rows: Vec<u64> = files.iter().map(|f| f.rows).collect();
    assert!(
        rows.iter().max().unwrap() - rows.iter().min().unwrap() <= 1,
        "{rows:?}"
    );
    let part0 = p.store().join(&files[0].key);
    let first_line = std::fs::read_to_string(part0)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    assert!(
        first_line.starts_with('C'),
        "id first, no header: {first_line}"
    );
    assert_eq!(first_line.split(',').count(), 31, "id + 30 model features");
    // products get answers from the latest version.
    let out = p
        .cmd()
        .args(["products", "get", "customer_churn_scores", "C0000002"])
        .output()
        .unwrap();
    assert_ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["as_of"], "2024-09-30");
    assert_eq!(v["customer_id"], "C0000002");
    assert!(v["churn_score"]
        .as_f64()
        .is_some_and(|s| (0.0..=1.0).contains(&s)));
    let out = p
        .cmd()
        .args(["products", "get", "customer_churn_scores", "NOPE"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("customer NOPE not in the latest version")
    );
}

#[test]
fn a_failed_gate_publishes_nothing_and_keeps_the_previous_latest() {
    let p = TestProject::new(|j| j);
    p.generate(1500);
    let (code, out) = p.run("2024-09-30");
    assert_eq!(code, 0, "{out}");
    let before = p.latest().unwrap();
    // The same job with an impossible gate, on another date.
    std::fs::write(
        p.path().join("jobs/churn_weekly.toml"),
        std::fs::read_to_string(p.path().join("jobs/churn_weekly.toml"))
            .unwrap()
            .replace("min_distinct_scores = 10", "min_distinct_scores = 1000000"),
    )
    .unwrap();
    let (code, out) = p.run("2024-09-29");
    assert_eq!(code, 5, "exit 5 for a failed gate: {out}");
    assert!(
        out.contains("quality gate failed")
            && out.contains("distinct score(s), fewer than min_distinct_scores 1000000")
            && !out.contains("constant"),
        "{out}"
    );
    assert_eq!(p.latest().unwrap(), before, "latest unchanged");
    assert!(!p
        .store()
        .join("products/customer_churn_scores/v1/as_of=2024-09-29/_manifest.json")
        .exists());
    let failed = p
        .ledgers()
        .into_iter()
        .find(|l| l.as_of.to_string() == "2024-09-29")
        .unwrap();
    assert_eq!(failed.status, RunStatus::Failed);
    assert!(
        failed.error.as_deref().unwrap().contains("gates:"),
        "{failed:?}"
    );
    let gate = failed.step(Step::Gates).unwrap();
    assert_eq!(gate.status, StepStatus::Failed);
    assert!(gate.error.as_deref().unwrap().contains("distinct"));
}

#[test]
fn bad_job_and_model_definitions_fail_validate() {
    type Edit = Box<dyn Fn(String) -> String>;
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|j: String| j.replace("model = \"churn_xgb\"", "model = \"nope\"")),
            "no model nope",
        ),
        (
            Box::new(|j: String| j.replace("schedule = \"0 6 * * MON\"", "schedule = \"0 6 * *\"")),
            "schedule",
        ),
        (
            Box::new(|j: String| j.replace("as_of = \"last_sunday\"", "as_of = \"soonish\"")),
            "as_of",
        ),
        (
            Box::new(|j: String| {
                j.replace(
                    "include = [\"rfm_segment\"",
                    "include = [\"email\", \"rfm_segment\"",
                )
            }),
            "PII",
        ),
        (
            Box::new(|j: String| j.replace("backend = \"local\"", "backend = \"lambda\"")),
            "backend",
        ),
        (
            Box::new(|j: String| j + "\nsurprise = 1\n"),
            "unknown field `surprise`",
        ),
    ];
    for (edit, needle) in cases {
        let p = TestProject::new(edit);
        let out = p.cmd().arg("validate").output().unwrap();
        let text = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{text}");
        assert!(
            text.contains("churn_weekly.toml") && text.contains(needle),
            "{needle}: {text}"
        );
    }
    // A model whose features are not in its sets.
    let p = TestProject::new(|j| j);
    let models = p.path().join("models/m");
    std::fs::create_dir_all(&models).unwrap();
    std::fs::copy(
        repo().join("models/churn_xgb/xgboost-model.json"),
        models.join("xgboost-model.json"),
    )
    .unwrap();
    let spec = std::fs::read_to_string(repo().join("models/churn_xgb/model.toml"))
        .unwrap()
        .replace("\"tenure_days\"", "\"tenure_months\"");
    std::fs::write(models.join("model.toml"), spec).unwrap();
    p.use_local_model();
    std::fs::remove_dir_all(p.path().join("models/churn_xgb")).unwrap();
    std::fs::rename(&models, p.path().join("models/churn_xgb")).unwrap();
    let out = p.cmd().arg("validate").output().unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{text}");
    assert!(
        text.contains("model.toml") && text.contains("tenure_months is not an output"),
        "{text}"
    );
}

#[test]
fn dry_run_prints_the_plan_and_writes_nothing() {
    let p = TestProject::new(|j| j);
    p.generate(500);
    let out = p
        .cmd()
        .args(["run", "churn_weekly", "--as-of", "2024-09-30", "--dry-run"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_ok(&out);
    for needle in [
        "\"run_id\"",
        "transform-input",
        "\"parts\": 4",
        "\"input_filter\": \"$[1:]\"",
        "customer_churn_scores/v1/as_of=2024-09-30",
    ] {
        assert!(text.contains(needle), "{needle} in {text}");
    }
    assert!(!p.store().exists(), "a dry run writes nothing");
}

#[test]
fn a_run_killed_at_any_moment_never_shows_a_partial_product() {
    let p = TestProject::new(|j| j.replace("max_mean_shift = 0.15", "max_mean_shift = 0.5"));
    p.generate(15000);
    // A first good version.
    let t0 = std::time::Instant::now();
    let (code, out) = p.run("2024-09-22");
    assert_eq!(code, 0, "{out}");
    let full = t0.elapsed();
    let first = p.latest().unwrap();
    let mut moved = 0;
    for i in 0..12u32 {
        let mut child = p
            .cmd()
            .args(["run", "churn_weekly", "--as-of", "2024-09-30"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(full.mul_f64(0.09 * i as f64 + 0.03));
        let _ = child.kill();
        let _ = child.wait();
        let latest = p.latest().unwrap();
        assert_latest_is_whole(&p.store(), &latest);
        if latest != first {
            assert_eq!(
                latest["as_of"], "2024-09-30",
                "latest moves only to a complete new version"
            );
            moved += 1;
        }
    }
    let (code, out) = p.run("2024-09-30");
    assert_eq!(code, 0, "the next run completes: {out}");
    let latest = p.latest().unwrap();
    assert_eq!(latest["as_of"], "2024-09-30");
    assert_latest_is_whole(&p.store(), &latest);
    // Resumed rather than redone from scratch, and never duplicated.
    let l = p
        .ledgers()
        .into_iter()
        .find(|l| l.as_of.to_string() == "2024-09-30")
        .unwrap();
    assert_eq!(l.status, RunStatus::Succeeded);
    assert!(l.attempts >= 1);
    assert_eq!(p.ledgers().len(), 2, "one run per as-of date");
    // The committed manifest lists one part, alone in its attempt directory (killed
    // attempts leave their own directories, unreferenced, for garbage collection).
    let part = p.store().join(latest["path"].as_str().unwrap());
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(part.join("_manifest.json")).unwrap()).unwrap();
    assert_eq!(m["files"].as_array().unwrap().len(), 1, "{m}");
    let attempt = first_part(&part).parent().unwrap().to_path_buf();
    let n: usize = std::fs::read_dir(&attempt)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "parquet"))
        .count();
    assert_eq!(n, 1, "no duplicated part files");
    eprintln!(
        "run kill test: latest moved during {moved} of 12 killed attempts; attempts on the run: {}",
        l.attempts
    );
}

#[test]
fn a_failed_transform_publishes_nothing_and_records_the_reason() {
    let p = TestProject::new(|j| j);
    p.use_local_model();
    p.generate(1000);
    let (code, out) = p.run("2024-09-30");
    assert_eq!(code, 0, "{out}");
    let before = p.latest().unwrap();
    // A model spec that feeds a text column to the model: the container answers 415.
    let spec = p.path().join("models/churn_xgb/model.toml");
    let text = std::fs::read_to_string(&spec)
        .unwrap()
        .replace("\"tenure_days\"", "\"rfm_segment\"");
    std::fs::write(&spec, text).unwrap();
    let out = p.cmd().arg("validate").output().unwrap();
    assert_eq!(out.status.code(), Some(3), "validate catches it first");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("rfm_segment is text"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (code, out) = p.run("2024-09-29");
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("transform failed") && out.contains("part-"),
        "{out}"
    );
    assert_eq!(p.latest().unwrap(), before);
    let failed = p
        .ledgers()
        .into_iter()
        .find(|l| l.as_of.to_string() == "2024-09-29")
        .unwrap();
    assert_eq!(failed.status, RunStatus::Failed);
    let step = failed.step(Step::Transform).unwrap();
    assert_eq!(step.status, StepStatus::Failed);
    assert!(step.error.as_deref().unwrap().contains("part-"), "{step:?}");
    assert!(!p
        .store()
        .join("products/customer_churn_scores/v1/as_of=2024-09-29")
        .exists());
}

/// Sets its cancel flag once a given step has finished.
struct CancelAfter {
    step: Step,
    flag: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl c360::pipeline::Observer for CancelAfter {
    fn step_finished(&self, r: &c360::pipeline::StepRecord) {
        if r.name == self.step {
            self.flag.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
    fn cancel_flag(&self) -> Option<std::sync::Arc<std::sync::atomic::AtomicBool>> {
        Some(self.flag.clone())
    }
}

#[test]
fn a_cancelled_run_stops_at_a_step_boundary_and_resumes() {
    let t = TestProject::new(|j| j);
    t.generate(200);
    let _aws_settings = crate::common::in_process_project();
    let project = c360::project::Project::load(Some(&t.path().join("c360.toml"))).unwrap();
    let opts = c360::pipeline::RunOptions {
        as_of: Some("2024-06-30".parse().unwrap()),
        ..Default::default()
    };
    let obs = CancelAfter {
        step: Step::TransformInput,
        flag: Default::default(),
    };
    let e = c360::pipeline::run(&project, "churn_weekly", &opts, &obs)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("stopped before step transform (cancelled)"),
        "{e}"
    );
    assert!(t.latest().is_none(), "nothing published");
    // Interrupted, not failed: a restarted service resumes `running` ledgers.
    let st = c360::store::open(&project.store_uri()).unwrap();
    let ledgers = c360::pipeline::ledgers(st.as_ref(), "churn_weekly").unwrap();
    assert_eq!(ledgers[0].status, RunStatus::Running);
    assert!(ledgers[0]
        .error
        .as_deref()
        .unwrap_or_default()
        .contains("cancelled"));
    let report =
        c360::pipeline::run(&project, "churn_weekly", &opts, &c360::pipeline::Quiet).unwrap();
    assert_eq!(report.ledger.status, RunStatus::Succeeded);
    assert_eq!(report.ledger.attempts, 2);
    // The resumed attempt did not redo the two steps finished before the stop.
    let names: Vec<Step> = report.ledger.steps.iter().map(|s| s.name).collect();
    assert_eq!(names, Step::ALL);
    assert!(t.latest().is_some());
}

/// A ledger of release 0.1 (`tests/fixtures/ledger_v0_1/`).
fn old_ledger_fixture(name: &str) -> String {
    std::fs::read_to_string(repo().join("tests/fixtures/ledger_v0_1").join(name)).unwrap()
}

#[test]
fn ledgers_written_by_release_0_1_load_as_the_typed_ledger() {
    let l: Ledger = serde_json::from_str(&old_ledger_fixture("run_sagemaker.json")).unwrap();
    assert_eq!(l.status, RunStatus::Succeeded);
    assert_eq!(l.backend, c360::transform::Backend::SageMaker);
    assert_eq!(l.steps_done(), Step::ALL);
    let Some(StepDetail::TransformInput(input)) = l.step(Step::TransformInput).map(|s| &s.detail)
    else {
        panic!("no transform input detail: {l:?}")
    };
    let plan = input.plan.as_ref().unwrap();
    assert_eq!(plan.instance_type, "ml.m5.large");
    assert_eq!(input.files[0].rows, 256);
    let Some(StepDetail::Transform(t)) = l.step(Step::Transform).map(|s| &s.detail) else {
        panic!("no transform detail: {l:?}")
    };
    assert_eq!(t.job_name, "c360-churn-weekly-2024-06-30-63466ab0");
    assert_eq!(t.instance_type.as_deref(), Some("ml.m5.large"));
    assert_eq!(l.product.unwrap().rows, 256);
}

#[test]
fn a_run_started_by_release_0_1_resumes_under_this_release() {
    let t = TestProject::new(|j| j);
    t.generate(200);
    // The store as an interrupted run leaves it: snapshots and transform input written.
    // (Through the binary: an in-process run would install this project's AWS settings
    // in the test process while the S3 tests run.)
    let out = t
        .cmd()
        .env("C360_FAILPOINT", "panic:transform")
        .args(["run", "churn_weekly", "--as-of", "2024-06-30"])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let run_id = t.ledgers()[0].run_id.clone();
    // ... and its ledger as release 0.1 wrote it: two steps done, still running, its owner
    // a process that is gone.
    let text = old_ledger_fixture("run_local.json")
        .replace("2024-09-30-fc653c2e", &run_id)
        .replace("2024-09-30", "2024-06-30");
    let mut old: serde_json::Value = serde_json::from_str(&text).unwrap();
    old["status"] = "running".into();
    old["finished_at"] = serde_json::Value::Null;
    old["product"] = serde_json::Value::Null;
    old["owner"] = "gone-host:1:00000000".into();
    old["steps"].as_array_mut().unwrap().truncate(2);
    let key = c360::pipeline::ledger_key("churn_weekly", &run_id);
    std::fs::write(
        t.store().join(key),
        serde_json::to_vec_pretty(&old).unwrap(),
    )
    .unwrap();

    let (code, out) = t.run("2024-06-30");
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("run {run_id} succeeded")), "{out}");
    let l = t
        .ledgers()
        .into_iter()
        .find(|l| l.run_id == run_id)
        .unwrap();
    assert_eq!(l.status, RunStatus::Succeeded);
    assert_eq!(l.attempts, 2, "the old attempt and this one");
    assert_eq!(l.steps_done(), Step::ALL);
    // The two steps the old release did were skipped, not redone: their records are its own.
    for (i, step) in [Step::Features, Step::TransformInput]
        .into_iter()
        .enumerate()
    {
        let s = l.step(step).unwrap();
        assert_eq!(
            serde_json::to_value(s).unwrap()["started_at"],
            old["steps"][i]["started_at"],
            "{step}"
        );
    }
    assert!(
        l.notes.iter().any(|n| n.contains("resumed by")),
        "{:?}",
        l.notes
    );
    let summary = l.product.clone().unwrap();
    assert_eq!(summary.rows, l.step(Step::Publish).unwrap().rows.unwrap());
    assert!(t.latest().is_some());
}
