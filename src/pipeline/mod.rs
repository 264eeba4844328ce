//! A job run, step by step, with a ledger (`runs/<job>/<run_id>/run.json`) that makes
//! re-runs idempotent and killed runs resumable.
//!
//! Steps: `features` (build or reuse each snapshot) → `transform_input` (id-first CSV
//! parts) → `transform` (batch transform) → `gates` (read the `.out` results back and
//! check them) → `publish` (the data product; `latest.json` last).
//!
//! The run id is the as-of date plus a hash of everything the output depends on (job,
//! model artifact, feature definitions, source fingerprints): the same inputs give the
//! same run id, so a second invocation resumes (or, when finished, reuses) the first
//! one's work instead of duplicating it; changed inputs give a new run.
//!
//! No run is left `running` without an owner. A panic inside a run is caught at the run
//! boundary and recorded (run and step `failed`, the panic message as the reason). A ledger
//! names its owner (`host:pid:nonce` of the process working on it); a `running` ledger
//! whose owner is gone (a process on this host that no longer exists, or on another host
//! with no live lease and no ledger update for [`STALE_UNKNOWN_OWNER`]) is marked failed
//! ("interrupted") by the next run of its job, or resumed when the next run has its run id.
//! A finished run that is reused first verifies its published partition (sizes and
//! checksums); a damaged one is published again and the ledger notes it.
//!
//! Testing aid, debug builds only: `C360_FAILPOINT=panic:<step>` panics at the start of
//! that step, `C360_FAILPOINT=sleep:<step>:<ms>` sleeps there (to kill a run mid-step).
//! Release builds ignore the variable.

pub mod job;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, NaiveDate, Utc};
use polars::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::features::{self, FeatureSet};
use crate::model::{self, LoadedModel};
use crate::offline;
use crate::product::{self, ColumnDoc, Lineage, ProductSpec};
use crate::project::Project;
use crate::source::Source;
use crate::store::{self, DynStore, ObjectStore};
use crate::transform::{self, BatchTransform, JobStatus, TransformJobSpec};

pub use job::Job;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("{0}")]
    Definition(String),
    #[error(transparent)]
    Features(#[from] features::FeatureError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Offline(#[from] offline::OfflineError),
    #[error(transparent)]
    Product(#[from] product::ProductError),
    #[error("transform failed: {0}")]
    Transform(String),
    #[error("quality gate failed, nothing published (the previous version stays latest): {0}")]
    Gate(String),
    #[error("run {run}: {message}")]
    Run { run: String, message: String },
    /// The as-of date is outside what the sources cover (before the first customer, or
    /// after the last event without `allow_as_of_past_data`).
    #[error("{0}")]
    AsOf(String),
}

pub type Result<T, E = PipelineError> = std::result::Result<T, E>;

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    pub as_of: Option<NaiveDate>,
    pub backend: Option<String>,
    pub dry_run: bool,
    pub source: Option<String>,
    pub store: Option<String>,
    /// "Today" for the as-of rule (default: the UTC date now).
    pub today: Option<NaiveDate>,
    /// SageMaker backend: called once the transform job exists (tests play SageMaker's data
    /// plane with it; see [`transform::sagemaker::DataPlaneHook`]).
    pub data_plane: Option<transform::sagemaker::DataPlaneHook>,
    /// Score even when the as-of date is after the sources' last event (`--allow-as-of-past-data`).
    pub allow_as_of_past_data: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Running,
    Done,
    Failed,
    Succeeded,
}

/// One step in the ledger.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRecord {
    pub name: String,
    pub status: Status,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub seconds: Option<f64>,
    pub rows: Option<u64>,
    #[serde(default)]
    pub detail: Value,
    pub error: Option<String>,
}

/// `run.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Ledger {
    pub job: String,
    pub run_id: String,
    pub as_of: NaiveDate,
    pub status: Status,
    pub backend: String,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// How many invocations worked on this run (more than 1 = resumed).
    pub attempts: u32,
    pub steps: Vec<StepRecord>,
    pub error: Option<String>,
    #[serde(default)]
    pub product: Option<Value>,
    pub created_by: String,
    /// The process working on the run (`host:pid:nonce`, see [`process_owner`]); absent in
    /// ledgers written before owners were recorded.
    #[serde(default)]
    pub owner: Option<String>,
    /// What happened to the run besides its steps (resumed after an interruption, a
    /// damaged published partition redone, marked failed as interrupted), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Ledger {
    /// A fresh ledger for a prepared run.
    fn new(p: &Prepared, attempts: u32) -> Ledger {
        Ledger {
            job: p.job.name.clone(),
            run_id: p.run_id.clone(),
            as_of: p.as_of,
            status: Status::Running,
            backend: p.backend.clone(),
            started_at: Utc::now(),
            updated_at: Utc::now(),
            finished_at: None,
            attempts,
            steps: vec![],
            error: None,
            product: None,
            created_by: offline::c360_version(),
            owner: Some(process_owner().to_string()),
            notes: vec![],
        }
    }

    fn note(&mut self, n: String) {
        self.notes.push(format!("{}: {n}", Utc::now().to_rfc3339()));
    }

    fn step(&self, name: &str) -> Option<&StepRecord> {
        self.steps.iter().rev().find(|s| s.name == name)
    }
    fn done(&self, name: &str) -> bool {
        self.step(name).is_some_and(|s| s.status == Status::Done)
    }
}

pub fn ledger_key(job: &str, run_id: &str) -> String {
    format!("runs/{job}/{run_id}/run.json")
}

/// A `running` ledger whose owner runs on another host (which cannot be probed) is taken
/// as interrupted when no live lease holds its job and it was not updated for this long.
pub const STALE_UNKNOWN_OWNER: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "host".into())
}

/// This process as a ledger owner: `host:pid:nonce` (the nonce tells two processes that
/// got the same pid apart).
pub fn process_owner() -> &'static str {
    static OWNER: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    OWNER.get_or_init(|| {
        use rand::Rng;
        let nonce: u32 = rand::thread_rng().gen();
        format!("{}:{}:{nonce:08x}", hostname(), std::process::id())
    })
}

/// Whether the owner of a `running` ledger is gone: `Some(true)` gone, `Some(false)`
/// alive, `None` when it cannot be told (another host, or no owner recorded).
fn owner_gone(owner: Option<&str>) -> Option<bool> {
    let owner = owner?;
    if owner == process_owner() {
        return Some(false);
    }
    let mut it = owner.rsplitn(3, ':');
    let (_nonce, pid, host) = (it.next()?, it.next()?, it.next()?);
    let pid: u32 = pid.parse().ok()?;
    if host != hostname() {
        return None;
    }
    if pid == std::process::id() {
        // This process, an earlier run in it: it is not working on that run any more
        // (a run in progress here carries this process's own owner string).
        return Some(true);
    }
    let proc = Path::new("/proc");
    if !proc.join("self").exists() {
        return None; // no procfs: cannot probe
    }
    Some(!proc.join(pid.to_string()).exists())
}

/// The job's lease (`runs/<job>/lease.json`, taken by the service) when it is live:
/// `(owner, run_id)`.
fn live_lease(store: &dyn ObjectStore, job: &str) -> Option<(String, Option<String>)> {
    let raw = store.get(&format!("runs/{job}/lease.json")).ok()?;
    let v: Value = serde_json::from_slice(&raw).ok()?;
    let expires: DateTime<Utc> = v.get("expires_at")?.as_str()?.parse().ok()?;
    if expires <= Utc::now() {
        return None;
    }
    Some((
        v.get("owner")?.as_str()?.to_string(),
        v.get("run_id").and_then(|r| r.as_str()).map(String::from),
    ))
}

/// Whether a `running` ledger has no live owner.
fn is_orphaned(store: &dyn ObjectStore, l: &Ledger) -> bool {
    if l.status != Status::Running {
        return false;
    }
    if let Some((owner, run)) = live_lease(store, &l.job) {
        if run.as_deref() == Some(l.run_id.as_str()) || Some(owner.as_str()) == l.owner.as_deref() {
            return false; // a live lease holder works on it
        }
    }
    match owner_gone(l.owner.as_deref()) {
        Some(gone) => gone,
        None => {
            let idle = Utc::now() - l.updated_at;
            live_lease(store, &l.job).is_none()
                && idle.to_std().is_ok_and(|d| d > STALE_UNKNOWN_OWNER)
        }
    }
}

fn save_ledger(store: &dyn ObjectStore, l: &Ledger) -> Result<()> {
    let json = serde_json::to_vec_pretty(l).map_err(|e| PipelineError::Run {
        run: l.run_id.clone(),
        message: e.to_string(),
    })?;
    store.put(&ledger_key(&l.job, &l.run_id), &json)?;
    Ok(())
}

/// Records a run as failed with `reason` (its running step too), when its ledger still
/// says `running`. Returns whether it changed anything. Used where a run's task died
/// without recording its end (the service's join of a panicked task).
pub fn mark_failed(store: &dyn ObjectStore, job: &str, run_id: &str, reason: &str) -> Result<bool> {
    let mut l: Ledger = match store.get(&ledger_key(job, run_id)) {
        Ok(b) => match serde_json::from_slice(&b) {
            Ok(l) => l,
            Err(_) => return Ok(false),
        },
        Err(store::StoreError::NotFound { .. }) => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    if l.status != Status::Running {
        return Ok(false);
    }
    fail_ledger(&mut l, reason);
    save_ledger(store, &l)?;
    Ok(true)
}

fn fail_ledger(l: &mut Ledger, reason: &str) {
    let now = Utc::now();
    let mut step = None;
    for s in l.steps.iter_mut().filter(|s| s.status == Status::Running) {
        s.status = Status::Failed;
        s.error = Some(reason.to_string());
        s.finished_at = Some(now);
        step = Some(s.name.clone());
    }
    l.status = Status::Failed;
    l.error = Some(match step {
        Some(s) => format!("{s}: {reason}"),
        None => reason.to_string(),
    });
    l.finished_at = Some(now);
    l.updated_at = now;
}

/// Marks every `running` ledger of `job` other than `keep` whose owner is gone as failed
/// (interrupted). Returns the run ids marked.
pub fn reap_orphans(store: &dyn ObjectStore, job: &str, keep: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for mut l in ledgers(store, job)? {
        if l.run_id == keep || !is_orphaned(store, &l) {
            continue;
        }
        let reason = format!(
            "interrupted: no live owner (its process {} is gone); marked failed by run {keep} ({})",
            l.owner.as_deref().unwrap_or("unrecorded"),
            process_owner()
        );
        tracing::warn!(job, run_id = %l.run_id, %reason, "a run was left running by a process that died");
        fail_ledger(&mut l, &reason);
        l.note(reason);
        save_ledger(store, &l)?;
        out.push(l.run_id.clone());
    }
    Ok(out)
}

/// The panic payload as text.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_string()
    }
}

/// Debug builds only: `C360_FAILPOINT=panic:<step>` / `sleep:<step>:<ms>` (see the module).
fn failpoint(step: &str) {
    if !cfg!(debug_assertions) {
        return;
    }
    let Ok(v) = std::env::var("C360_FAILPOINT") else {
        return;
    };
    let mut it = v.splitn(3, ':');
    match (it.next(), it.next(), it.next()) {
        (Some("panic"), Some(s), None) if s == step => {
            panic!("failpoint: panic at step {step}")
        }
        (Some("sleep"), Some(s), Some(ms)) if s == step => {
            std::thread::sleep(std::time::Duration::from_millis(ms.parse().unwrap_or(0)));
        }
        _ => {}
    }
}

/// Every ledger of a job, newest first.
pub fn ledgers(store: &dyn ObjectStore, job: &str) -> Result<Vec<Ledger>> {
    let mut out = Vec::new();
    for o in store.list(&format!("runs/{job}"))? {
        if o.key.ends_with("/run.json") {
            if let Ok(l) = serde_json::from_slice::<Ledger>(&store.get(&o.key)?) {
                out.push(l);
            }
        }
    }
    out.sort_by_key(|l| std::cmp::Reverse(l.started_at));
    Ok(out)
}

/// Things the CLI shows while a run goes.
pub trait Observer {
    fn step_started(&self, _name: &str, _what: &str) {}
    fn step_finished(&self, _record: &StepRecord) {}
    fn transform_progress(&self) -> Option<&dyn transform::Progress> {
        None
    }
    /// A flag that, once set, stops the run at the next step boundary (and stops a running
    /// SageMaker job); the run stays resumable.
    fn cancel_flag(&self) -> Option<Arc<std::sync::atomic::AtomicBool>> {
        None
    }
}

pub struct Quiet;
impl Observer for Quiet {}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub ledger: Ledger,
    pub store_uri: String,
    /// True when the run had already succeeded and nothing was redone.
    pub reused: bool,
    pub plan: Value,
    pub summary: Option<Value>,
}

/// Everything a run needs, resolved.
pub struct Prepared {
    pub job: Job,
    pub model: LoadedModel,
    pub model_name: String,
    pub sets: Vec<FeatureSet>,
    pub as_of: NaiveDate,
    pub run_id: String,
    pub backend: String,
    pub source_uri: String,
    pub store: DynStore,
    pub plan: Value,
    /// The SageMaker backend's settings (None for the local backend).
    pub cloud: Option<CloudPrep>,
    pub data_plane: Option<transform::sagemaker::DataPlaneHook>,
}

/// What the SageMaker backend needs, resolved from `c360.toml`, the job and the model.
#[derive(Debug, Clone)]
pub struct CloudPrep {
    pub settings: crate::aws::AwsSettings,
    pub model: transform::sagemaker::ModelTarget,
    pub prices: transform::planner::PriceTable,
    pub planner: transform::planner::PlannerSettings,
    pub pins: transform::planner::Pins,
    pub model_bytes: u64,
}

fn prepare_cloud(
    project: &Project,
    job: &Job,
    model_name: &str,
    spec: &model::ModelSpec,
    artifact: &Path,
    artifact_hash: &str,
    store_uri: &str,
) -> Result<CloudPrep> {
    use transform::planner;
    use transform::sagemaker::ModelTarget;
    let def = |m: String| PipelineError::Definition(m);
    if !store_uri.starts_with("s3://") {
        return Err(def(format!(
            "backend sagemaker: the store is {store_uri}, but SageMaker reads its input from and writes its output to S3: set [store] uri = \"s3://bucket/prefix\" (or C360_STORE)"
        )));
    }
    let settings = (*crate::aws::settings()).clone();
    let sm = spec.sagemaker.clone().ok_or_else(|| {
        def(format!(
            "backend sagemaker: models/{model_name}/model.toml has no [sagemaker] section (image + model_data, or model_name of an existing model)"
        ))
    })?;
    let target = match sm {
        model::SageMakerModel::Create { image, model_data } => {
            let errs = settings.validate_for_sagemaker(true);
            if let Some(e) = errs.first() {
                return Err(def(format!("{}: {}", e.key, e.reason)));
            }
            let name = job_name_for(model_name, &hash8(&[&image, &model_data, artifact_hash]));
            ModelTarget::Create {
                name,
                image,
                model_data,
                role_arn: settings.sagemaker.role_arn.clone().unwrap_or_default(),
                subnets: settings.sagemaker.subnets.clone(),
                security_groups: settings.sagemaker.security_groups.clone(),
                network_isolation: settings.sagemaker.network_isolation,
            }
        }
        model::SageMakerModel::Existing { model_name } => ModelTarget::Existing(model_name),
    };
    let prices = planner::load_prices(project.prices_file().as_deref())
        .map_err(|e| def(format!("price table: {e}")))?;
    let ps = planner::PlannerSettings::from_config(&settings.sagemaker);
    let t = &job.transform;
    let pins = t.pins.clone();
    let model_bytes = std::fs::metadata(artifact).map(|m| m.len()).unwrap_or(0);
    Ok(CloudPrep {
        settings,
        model: target,
        prices,
        planner: ps,
        pins,
        model_bytes,
    })
}

fn hash8(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..4])
}

fn file_sha256(path: &Path) -> String {
    crate::project::read_bounded(path, crate::project::MAX_MODEL_BYTES)
        .map(|b| format!("sha256:{}", hex::encode(Sha256::digest(&b))))
        .unwrap_or_default()
}

/// Loads the job, its model and feature sets, and resolves dates, paths and the run id.
pub fn prepare(project: &Project, job_name: &str, opts: &RunOptions) -> Result<Prepared> {
    let path = project.jobs_dir().join(format!("{job_name}.toml"));
    if !path.is_file() {
        let (jobs, _) = job::load_all(&project.jobs_dir());
        return Err(PipelineError::Definition(format!(
            "no job {job_name} ({} not found; jobs: {})",
            path.display(),
            jobs.iter()
                .map(|j| j.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let job = job::load(&path).map_err(|e| {
        PipelineError::Definition(
            e.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })?;
    let model_dir = project.models_dir().join(&job.model);
    let model = model::load(&model_dir)
        .map_err(|e| PipelineError::Definition(format!("model {}: {e}", job.model)))?;
    let spec = model.spec.clone().ok_or_else(|| {
        PipelineError::Definition(format!(
            "model {}: a job's model needs a model.toml",
            job.model
        ))
    })?;
    let mut sets = Vec::new();
    for (name, version) in &spec.feature_sets {
        let s = features::find_set(&project.features_dir(), name)?;
        if s.version != *version {
            return Err(PipelineError::Definition(format!(
                "model {} was trained on {name} v{version}, but features/{name}.toml is v{}",
                job.model, s.version
            )));
        }
        sets.push(s);
    }
    check_columns(&job, &spec.features, &sets)?;
    let backend = opts.backend.clone().unwrap_or_else(|| job.backend.clone());
    if backend != "local" && backend != "sagemaker" {
        return Err(PipelineError::Definition(format!(
            "backend {backend}: unknown (use local or sagemaker)"
        )));
    }
    let today = opts.today.unwrap_or_else(|| Utc::now().date_naive());
    let as_of = opts.as_of.unwrap_or_else(|| job.as_of.resolve(today));
    let source_uri = opts.source.clone().unwrap_or_else(|| project.source_uri());
    let store_uri = opts.store.clone().unwrap_or_else(|| project.store_uri());
    let st = store::open(&store_uri)?;
    // Source fingerprints are file metadata: cheap, and part of the run's identity.
    let src = Source::open(&source_uri).map_err(features::FeatureError::from)?;
    let mut fps = Vec::new();
    let mut tables: Vec<&str> = sets.iter().flat_map(|s| s.tables()).collect();
    tables.sort();
    tables.dedup();
    for t in &tables {
        if let Some(spec) = crate::source::table_spec(t) {
            let loc = src.locate(spec).map_err(features::FeatureError::from)?;
            fps.push(src.fingerprint(&loc));
        }
    }
    check_data_reach(
        &src,
        &source_uri,
        &tables,
        as_of,
        opts.allow_as_of_past_data,
        &job,
    )?;
    let artifact_hash = file_sha256(&model.artifact);
    let cloud = if backend == "sagemaker" {
        Some(prepare_cloud(
            project,
            &job,
            &job.model,
            &spec,
            &model.artifact,
            &artifact_hash,
            &st.uri(),
        )?)
    } else {
        None
    };
    let mut parts: Vec<&str> = vec![&job.hash, &artifact_hash];
    let set_hashes: Vec<String> = sets.iter().map(|s| s.hash.clone()).collect();
    parts.extend(set_hashes.iter().map(|s| s.as_str()));
    parts.extend(fps.iter().map(|s| s.as_str()));
    let model_toml =
        crate::project::read_definition(&model_dir.join(model::SPEC_FILE)).unwrap_or_default();
    parts.push(&model_toml);
    let run_id = format!("{as_of}-{}", hash8(&parts));
    let n_parts = job.transform.pins.parts.unwrap_or(4);
    let plan = json!({
        "job": job.name,
        "run_id": run_id,
        "as_of": as_of,
        "backend": backend,
        "source": source_uri,
        "store": st.uri(),
        "model": {"name": job.model, "artifact": model.artifact.display().to_string(), "artifact_sha256": artifact_hash, "objective": format!("{:?}", spec.objective), "features": spec.features.len()},
        "feature_sets": sets.iter().map(|s| json!({
            "name": s.name, "version": s.version, "definition_hash": s.hash,
            "snapshot": offline::partition_prefix(&s.name, s.version, as_of),
        })).collect::<Vec<_>>(),
        "transform_input": {"prefix": format!("runs/{}/{run_id}/transform-input", job.name), "parts": n_parts, "format": "text/csv, no header, customer_id first"},
        "transform": transform_settings(&job, cloud.as_ref()),
        "transform_output": format!("runs/{}/{run_id}/transform-output", job.name),
        "product": {
            "name": job.product.name,
            "partition": product::partition_prefix(&job.product.name, job.product.major, as_of),
            "contract": format!("products/{}/contract.yaml", job.product.name),
            "latest": format!("products/{}/latest.json", job.product.name),
        },
        "gates": job.gates,
    });
    Ok(Prepared {
        model_name: job.model.clone(),
        job,
        model,
        sets,
        as_of,
        run_id,
        backend,
        source_uri,
        store: st,
        plan,
        cloud,
        data_plane: opts.data_plane.clone(),
    })
}

fn transform_settings(job: &Job, cloud: Option<&CloudPrep>) -> Value {
    let t = &job.transform;
    let mut v = json!({
        "split_type": "Line",
        "batch_strategy": "MultiRecord",
        "max_payload_mb": t.pins.max_payload_mb.unwrap_or(6),
        "max_concurrent_transforms": t.pins.max_concurrent_transforms.unwrap_or(0),
        "instance_count": t.pins.instance_count.unwrap_or(1),
        "input_filter": "$[1:]",
        "join_source": "Input",
        "output_filter": "$[0,-1]",
        "assemble_with": "Line",
    });
    if let Some(c) = cloud {
        v["sagemaker"] = json!({
            "model": c.model.name(),
            "creates_model": matches!(c.model, transform::sagemaker::ModelTarget::Create { .. }),
            "output_kms_key_id": c.settings.output_kms_key(),
            "volume_kms_key_id": c.settings.volume_kms_key(),
            "vpc": {"subnets": c.settings.sagemaker.subnets, "security_groups": c.settings.sagemaker.security_groups},
            "network_isolation": c.settings.sagemaker.network_isolation,
            "pins": {"instance_type": c.pins.instance_type, "instance_count": c.pins.instance_count, "parts": c.pins.parts, "max_concurrent_transforms": c.pins.max_concurrent_transforms, "max_payload_mb": c.pins.max_payload_mb},
        });
    }
    v
}

/// [`features::check_data_reach`] for a run: the product's `latest.json` never moves
/// backwards, so a run past the data would also strand it.
fn check_data_reach(
    src: &Source,
    source_uri: &str,
    tables: &[&str],
    as_of: NaiveDate,
    allow_past_data: bool,
    job: &Job,
) -> Result<()> {
    let why = format!(
        ", and product {}'s latest version could then never move back to a real date",
        job.product.name
    );
    features::check_data_reach(src, source_uri, tables, as_of, allow_past_data, &why)
        .map_err(PipelineError::AsOf)
}

/// Checks that every model input and included column exists in the model's sets.
fn check_columns(job: &Job, model_features: &[String], sets: &[FeatureSet]) -> Result<()> {
    let have = |c: &str| sets.iter().any(|s| s.outputs().iter().any(|f| f.name == c));
    for c in model_features {
        if !have(c) {
            return Err(PipelineError::Definition(format!(
                "model {}: feature {c} is not an output of its feature sets ({})",
                job.model,
                sets.iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    if let Some((i, reason)) = crate::features::lineage::pii_includes(&job.product.include, sets)
        .into_iter()
        .next()
    {
        return Err(PipelineError::Definition(format!(
            "{}: product.include[{i}]: {reason}",
            job.file.display()
        )));
    }
    for c in &job.product.include {
        if !have(c) {
            return Err(PipelineError::Definition(format!(
                "{}: product.include names {c}, which no feature set of the model outputs",
                job.file.display()
            )));
        }
    }
    Ok(())
}

struct Run<'a> {
    p: &'a Prepared,
    ledger: Ledger,
    key: String,
    obs: &'a dyn Observer,
}

impl Run<'_> {
    fn save(&mut self) -> Result<()> {
        self.ledger.updated_at = Utc::now();
        let json = serde_json::to_vec_pretty(&self.ledger).map_err(|e| PipelineError::Run {
            run: self.ledger.run_id.clone(),
            message: e.to_string(),
        })?;
        self.p.store.put(&self.key, &json)?;
        Ok(())
    }

    /// Runs `f` as step `name` unless the ledger already has it done.
    fn step<T>(
        &mut self,
        name: &str,
        what: &str,
        f: impl FnOnce(&mut Self) -> Result<(T, Option<u64>, Value)>,
    ) -> Result<Option<T>> {
        if self.ledger.done(name) {
            tracing::info!(run_id = %self.ledger.run_id, step = name, "already done; skipping");
            return Ok(None);
        }
        if self
            .obs
            .cancel_flag()
            .is_some_and(|c| c.load(std::sync::atomic::Ordering::SeqCst))
        {
            let msg = format!(
                "stopped before step {name} (cancelled); the next invocation resumes from here"
            );
            tracing::warn!(run_id = %self.ledger.run_id, step = name, "run stopped at a step boundary");
            // Left `running` (interrupted, not failed): the next start of the service, or
            // the next invocation, resumes it from this step.
            self.ledger.error = Some(msg.clone());
            self.save()?;
            return Err(PipelineError::Run {
                run: self.ledger.run_id.clone(),
                message: msg,
            });
        }
        self.obs.step_started(name, what);
        let started = Utc::now();
        let t = Instant::now();
        self.ledger.steps.push(StepRecord {
            name: name.into(),
            status: Status::Running,
            started_at: started,
            finished_at: None,
            seconds: None,
            rows: None,
            detail: Value::Null,
            error: None,
        });
        self.save()?;
        let span = tracing::info_span!("step", run_id = %self.ledger.run_id, job = %self.ledger.job, step = name);
        let _g = span.enter();
        failpoint(name);
        let out = f(self);
        let idx = self.ledger.steps.len() - 1;
        let rec = &mut self.ledger.steps[idx];
        rec.finished_at = Some(Utc::now());
        rec.seconds = Some(t.elapsed().as_secs_f64());
        match out {
            Ok((v, rows, detail)) => {
                rec.status = Status::Done;
                rec.rows = rows;
                rec.detail = detail;
                tracing::info!(rows, secs = rec.seconds, "step done");
                let rec = rec.clone();
                self.save()?;
                self.obs.step_finished(&rec);
                Ok(Some(v))
            }
            Err(e) => {
                rec.status = Status::Failed;
                rec.error = Some(e.to_string());
                let rec = rec.clone();
                self.ledger.status = Status::Failed;
                self.ledger.error = Some(format!("{name}: {e}"));
                self.ledger.finished_at = Some(Utc::now());
                self.save()?;
                self.obs.step_finished(&rec);
                Err(e)
            }
        }
    }
}

/// Runs (or resumes, or reuses) a job.
pub fn run(
    project: &Project,
    job_name: &str,
    opts: &RunOptions,
    obs: &dyn Observer,
) -> Result<RunReport> {
    let p = prepare(project, job_name, opts)?;
    let store_uri = p.store.uri();
    if opts.dry_run {
        let existing = p.store.get(&ledger_key(&p.job.name, &p.run_id)).ok();
        let mut plan = p.plan.clone();
        plan["existing_run"] = existing
            .and_then(|b| serde_json::from_slice::<Ledger>(&b).ok())
            .map(|l| json!({"status": l.status, "steps_done": l.steps.iter().filter(|s| s.status == Status::Done).map(|s| s.name.clone()).collect::<Vec<_>>()}))
            .unwrap_or(Value::Null);
        let mut known_rows: Option<(u64, &str)> = None;
        for (i, s) in p.sets.iter().enumerate() {
            let prefix = offline::partition_prefix(&s.name, s.version, p.as_of);
            let committed = offline::read_manifest(p.store.as_ref(), &prefix)?;
            if let (Some(m), None) = (&committed, known_rows) {
                known_rows = Some((m.rows, "the committed feature snapshot"));
            }
            plan["feature_sets"][i]["committed"] = json!(committed.map(|m| json!({"rows": m.rows, "run_id": m.run_id, "definition_matches": m.definition_hash == s.hash})));
        }
        if let Some(c) = &p.cloud {
            let (rows, from) = match known_rows {
                Some(k) => k,
                None => {
                    let src = Source::open(&p.source_uri).map_err(features::FeatureError::from)?;
                    let n = src
                        .row_count(crate::source::table_spec("customers").ok_or_else(|| {
                            PipelineError::Definition("the contract has no customers table".into())
                        })?)
                        .map_err(features::FeatureError::from)?;
                    (n, "the customers table (one row per customer)")
                }
            };
            let n_features = p
                .model
                .spec
                .as_ref()
                .map(|s| s.features.len())
                .unwrap_or(30) as u64;
            // CSV width: an id and ~10 characters per numeric feature.
            let bytes = rows * (12 + 10 * n_features);
            let chosen = cloud_plan(&p, c, rows, bytes)?;
            let w = transform::planner::Workload {
                rows,
                bytes,
                model_bytes: c.model_bytes,
            };
            let default = transform::planner::baseline(&w, &c.planner, &c.prices);
            plan["transform_input"]["parts"] = json!(chosen.parts);
            plan["transform"]["plan"] = chosen.to_json();
            plan["transform"]["plan"]["rows"] = json!(rows);
            plan["transform"]["plan"]["rows_from"] = json!(from);
            plan["transform"]["plan"]["estimated_input_bytes"] = json!(bytes);
            plan["transform"]["default_plan"] = default.to_json();
        }
        return Ok(RunReport {
            ledger: Ledger::new(&p, 0),
            store_uri,
            reused: false,
            plan,
            summary: None,
        });
    }
    let key = ledger_key(&p.job.name, &p.run_id);
    let previous: Option<Ledger> = match p.store.get(&key) {
        Ok(b) => serde_json::from_slice(&b).ok(),
        Err(_) => None,
    };
    // Runs of this job left `running` by a process that died are marked failed.
    match reap_orphans(p.store.as_ref(), &p.job.name, &p.run_id) {
        Ok(reaped) if !reaped.is_empty() => {
            tracing::warn!(job = %p.job.name, runs = ?reaped, "marked interrupted runs failed")
        }
        Ok(_) => {}
        Err(e) => {
            tracing::warn!(job = %p.job.name, error = %e, "could not check for interrupted runs")
        }
    }
    let mut redo: Option<String> = None;
    if let Some(l) = &previous {
        if l.status == Status::Succeeded {
            // Reuse verifies: the published partition must still hold what was committed.
            match verify_published(&p, l)? {
                None => {
                    return Ok(RunReport {
                        summary: l.product.clone(),
                        ledger: l.clone(),
                        store_uri,
                        reused: true,
                        plan: p.plan.clone(),
                    })
                }
                Some(damage) => {
                    tracing::warn!(run_id = %p.run_id, %damage, "the finished run's published data is damaged; publishing it again");
                    redo = Some(damage);
                }
            }
        }
    }
    let ledger = match previous {
        Some(mut l) => {
            if l.status == Status::Running {
                let note = format!(
                    "resumed by {} after an interruption (previous owner {})",
                    process_owner(),
                    l.owner.as_deref().unwrap_or("unrecorded")
                );
                tracing::info!(run_id = %p.run_id, %note, "resuming an interrupted run");
                l.note(note);
            }
            l.attempts += 1;
            l.status = Status::Running;
            l.error = None;
            l.finished_at = None;
            l.owner = Some(process_owner().to_string());
            // Failed or interrupted steps are redone.
            l.steps.retain(|s| s.status == Status::Done);
            if let Some(damage) = &redo {
                // The snapshots are verified again (rebuilt if damaged), then published again.
                l.steps
                    .retain(|s| s.name != "features" && s.name != "publish");
                l.note(format!("redone: {damage}"));
            }
            l
        }
        None => Ledger::new(&p, 1),
    };
    let mut run = Run {
        p: &p,
        ledger,
        key,
        obs,
    };
    run.save()?;
    // A panic anywhere in the steps is caught here and recorded: the run and its step end
    // `failed` with the panic message, never `running` without an owner.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_steps(&mut run)));
    match outcome {
        Ok(Ok(summary)) => Ok(RunReport {
            ledger: run.ledger,
            store_uri,
            reused: false,
            plan: p.plan.clone(),
            summary,
        }),
        Ok(Err(e)) => Err(e),
        Err(payload) => {
            let msg = panic_message(payload.as_ref());
            let reason =
                format!("panicked: {msg} (a bug in c360; please report it with this run's log)");
            tracing::error!(run_id = %p.run_id, %reason, "the run panicked");
            fail_ledger(&mut run.ledger, &reason);
            let err = run.ledger.error.clone().unwrap_or_else(|| reason.clone());
            run.save()?;
            Err(PipelineError::Run {
                run: p.run_id.clone(),
                message: err,
            })
        }
    }
}

/// Why a finished run's published partition cannot be trusted any more, if it cannot.
fn verify_published(p: &Prepared, l: &Ledger) -> Result<Option<String>> {
    let prefix = l
        .product
        .as_ref()
        .and_then(|v| v.get("partition"))
        .and_then(|v| v.as_str())
        .map(String::from)
        .unwrap_or_else(|| {
            product::partition_prefix(&p.job.product.name, p.job.product.major, p.as_of)
        });
    let m = match offline::read_manifest(p.store.as_ref(), &prefix) {
        Ok(Some(m)) => m,
        Ok(None) => return Ok(Some(format!("{prefix} has no committed manifest"))),
        Err(offline::OfflineError::BadManifest { key, message }) => {
            return Ok(Some(format!("manifest {key} is unreadable: {message}")))
        }
        Err(e) => return Err(e.into()),
    };
    if m.run_id != p.run_id {
        return Ok(None); // published again since by another run: that one is not ours to check
    }
    if let Some(damage) = offline::verify_partition(p.store.as_ref(), &prefix, &m)? {
        return Ok(Some(damage));
    }
    // The contract and latest.json are part of what was published.
    Ok(product::publish_damage(
        p.store.as_ref(),
        &p.job.product.name,
        m.as_of,
    )?)
}

/// The steps of a run (each skipped when the ledger has it done); the product summary.
fn run_steps(run: &mut Run<'_>) -> Result<Option<Value>> {
    let p = run.p;
    tracing::info!(run_id = %p.run_id, job = %p.job.name, as_of = %p.as_of, "run started");
    let job_name = p.job.name.clone();
    let run_prefix = format!("runs/{job_name}/{}", p.run_id);
    let input_prefix = format!("{run_prefix}/transform-input");
    let output_prefix = format!("{run_prefix}/transform-output");

    // 1. Feature snapshots (each reused when committed with the same definition and source).
    run.step("features", "building feature snapshots", |r| {
        let mut detail = serde_json::Map::new();
        let mut rows = 0;
        for s in &r.p.sets {
            let b = features::build_snapshot(s, &r.p.source_uri, r.p.store.as_ref(), r.p.as_of, false)?;
            rows = b.manifest.rows;
            detail.insert(
                s.name.clone(),
                json!({"snapshot": b.prefix, "rows": b.manifest.rows, "reused": b.reused, "run_id": b.manifest.run_id, "definition_hash": s.hash, "source_fingerprints": b.manifest.source_fingerprints}),
            );
        }
        Ok(((), Some(rows), Value::Object(detail)))
    })?;

    // 2. Transform input: id first, the model's features in order, no header.
    run.step("transform_input", "writing the transform input", |r| {
        let frame = model_input(r.p)?;
        let n = frame.height();
        r.p.store.delete_prefix(&input_prefix)?;
        let encode = |part: &mut DataFrame| -> Result<Vec<u8>> {
            let mut buf = Vec::new();
            CsvWriter::new(&mut buf)
                .include_header(false)
                .with_null_value(PlSmallStr::from_static(""))
                .finish(part)
                .map_err(|e| PipelineError::Run {
                    run: r.p.run_id.clone(),
                    message: format!("encoding the transform input: {e}"),
                })?;
            Ok(buf)
        };
        // SageMaker: the planner sizes the job from the real row count and row width.
        let plan = match &r.p.cloud {
            None => None,
            Some(c) => {
                let sample = n.min(2000);
                let sample_bytes = encode(&mut frame.slice(0, sample))?.len() as u64;
                let bytes = if sample == 0 {
                    0
                } else {
                    sample_bytes * n as u64 / sample as u64
                };
                Some(cloud_plan(r.p, c, n as u64, bytes)?)
            }
        };
        let parts = match &plan {
            Some(p) => p.parts as usize,
            None => r.p.job.transform.pins.parts.unwrap_or(4) as usize,
        }
        .clamp(1, n.max(1));
        let mut files = Vec::new();
        for i in 0..parts {
            let lo = n * i / parts;
            let hi = n * (i + 1) / parts;
            let buf = encode(&mut frame.slice(lo as i64, hi - lo))?;
            let key = format!("{input_prefix}/part-{i}.csv");
            r.p.store.put(&key, &buf)?;
            files.push(json!({"key": key, "rows": hi - lo, "bytes": buf.len()}));
        }
        Ok((
            (),
            Some(n as u64),
            json!({"prefix": input_prefix, "files": files, "plan": plan.map(|p| p.to_json())}),
        ))
    })?;

    // 3. Batch transform.
    run.step("transform", "scoring (batch transform)", |r| {
        if let Some(c) = &r.p.cloud {
            return run_sagemaker(r, c, &input_prefix, &output_prefix);
        }
        r.p.store.delete_prefix(&output_prefix)?;
        let spec = transform_spec(r.p, &input_prefix, &output_prefix);
        let invoker = Arc::new(transform::invoker::InProcessInvoker::new(Arc::new(r.p.model.booster.clone())));
        let runner = transform::local::LocalTransform::new(invoker);
        let progress: &dyn transform::Progress = r.obs.transform_progress().unwrap_or(&transform::NoProgress);
        let res = runner
            .run(&spec, progress)
            .map_err(|e| PipelineError::Transform(e.to_string()))?;
        if res.status != JobStatus::Completed {
            return Err(PipelineError::Transform(
                res.failure_reason.unwrap_or_else(|| "the job did not complete".into()),
            ));
        }
        Ok((
            (),
            Some(res.records),
            json!({"backend": "local", "job_name": spec.job_name, "objects": res.objects.len(), "records": res.records, "requests": res.requests, "seconds": res.elapsed.as_secs_f64(), "max_payload_mb": res.effective.max_payload_mb, "max_concurrent_transforms": res.effective.max_concurrent_transforms}),
        ))
    })?;

    // 4. Read the results back and check them.
    let mut checked: Option<(DataFrame, Value)> = None;
    run.step("gates", "checking the scores", |r| {
        let (df, stats) = collect_and_gate(r.p, &input_prefix, &output_prefix)?;
        let n = df.height() as u64;
        checked = Some((df, stats.clone()));
        Ok(((), Some(n), stats))
    })?;
    let (scores, stats) = match checked {
        Some(c) => c,
        // Gates were done by an earlier attempt: read the results again (cheap, deterministic).
        None => collect_and_gate(p, &input_prefix, &output_prefix)?,
    };

    // 5. Publish.
    let published = run.step("publish", "publishing the data product", |r| {
        let (spec, df) = product_frame(r.p, &scores)?;
        let lineage = lineage(r);
        let pubd = product::publish(
            r.p.store.as_ref(),
            &spec,
            &df,
            r.p.as_of,
            &lineage,
            stats.clone(),
        )?;
        let mut summary = json!({
            "product": spec.name,
            "partition": pubd.prefix,
            "rows": pubd.manifest.rows,
            "latest_moved": pubd.latest_moved,
            "score_statistics": stats,
        });
        if let Some(d) = &pubd.redone {
            summary["redone"] = json!(d);
        }
        Ok((summary.clone(), Some(pubd.manifest.rows), summary))
    })?;
    let summary = published.or_else(|| run.ledger.step("publish").map(|s| s.detail.clone()));
    run.ledger.status = Status::Succeeded;
    run.ledger.finished_at = Some(Utc::now());
    run.ledger.product = summary.clone();
    run.save()?;
    tracing::info!(run_id = %p.run_id, "run succeeded");
    Ok(summary)
}

/// The planner's choice for `rows` rows of `bytes` CSV.
fn cloud_plan(
    p: &Prepared,
    c: &CloudPrep,
    rows: u64,
    bytes: u64,
) -> Result<transform::planner::Plan> {
    let w = transform::planner::Workload {
        rows,
        bytes,
        model_bytes: c.model_bytes,
    };
    transform::planner::plan(&w, &c.planner, &c.pins, &c.prices).map_err(|e| {
        PipelineError::Definition(format!("{}: [transform]: {e}", p.job.file.display()))
    })
}

/// The SageMaker transform step: the plan recorded by the input step, one job per run
/// (created or re-attached), outputs read back through the store.
fn run_sagemaker(
    r: &mut Run<'_>,
    c: &CloudPrep,
    input_prefix: &str,
    output_prefix: &str,
) -> Result<((), Option<u64>, Value)> {
    use transform::sagemaker::{CloudResources, SageMakerTransform};
    let p = r.p;
    let plan = r
        .ledger
        .step("transform_input")
        .map(|s| s.detail["plan"].clone())
        .unwrap_or(Value::Null);
    let instance_type = plan["instance_type"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| PipelineError::Run {
            run: p.run_id.clone(),
            message: "the transform input step recorded no SageMaker plan; delete the run's ledger to start it again".into(),
        })?;
    let mut spec = transform_spec(p, input_prefix, output_prefix);
    spec.instance_count = plan["instance_count"].as_u64().unwrap_or(1) as u32;
    spec.max_concurrent_transforms = plan["max_concurrent_transforms"].as_u64().unwrap_or(0) as u32;
    spec.max_payload_mb = Some(plan["max_payload_mb"].as_u64().unwrap_or(6) as u32);
    let mut tags = vec![
        ("c360:job".to_string(), p.job.name.clone()),
        ("c360:run-id".to_string(), p.run_id.clone()),
        ("c360:product".to_string(), p.job.product.name.clone()),
    ];
    tags.extend(
        c.settings
            .sagemaker
            .tags
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    let client = SageMakerTransform::client_from_settings(&c.settings)
        .map_err(|e| PipelineError::Transform(e.to_string()))?;
    let mut sm = SageMakerTransform::new(
        client,
        c.model.clone(),
        CloudResources {
            instance_type: instance_type.clone(),
            output_kms_key_id: c.settings.output_kms_key().map(str::to_string),
            volume_kms_key_id: c.settings.volume_kms_key().map(str::to_string),
            tags,
        },
    );
    sm.poll = (
        std::time::Duration::from_secs_f64(c.settings.sagemaker.poll_seconds),
        std::time::Duration::from_secs_f64(c.settings.sagemaker.max_poll_seconds),
    );
    sm.store = Some(p.store.clone());
    sm.cancel = r.obs.cancel_flag();
    sm.data_plane = p.data_plane.clone();
    let progress: &dyn transform::Progress =
        r.obs.transform_progress().unwrap_or(&transform::NoProgress);
    let res = sm
        .run(&spec, progress)
        .map_err(|e| PipelineError::Transform(e.to_string()))?;
    if res.status != JobStatus::Completed {
        return Err(PipelineError::Transform(
            res.failure_reason
                .unwrap_or_else(|| "the job did not complete".into()),
        ));
    }
    Ok((
        (),
        Some(res.records),
        json!({"backend": "sagemaker", "job_name": spec.job_name, "model": c.model.name(), "instance_type": instance_type, "instance_count": spec.instance_count, "max_concurrent_transforms": spec.max_concurrent_transforms, "max_payload_mb": spec.max_payload_mb, "objects": res.objects.len(), "records": res.records, "seconds": res.elapsed.as_secs_f64(), "estimated_cost_usd": plan["est_cost_usd"], "estimated_seconds": plan["est_seconds"]}),
    ))
}

fn transform_spec(p: &Prepared, input_prefix: &str, output_prefix: &str) -> TransformJobSpec {
    let base = p.store.uri();
    let t = &p.job.transform;
    let name = job_name_for(&p.job.name, &p.run_id);
    let mut spec = TransformJobSpec::new(
        &name,
        &format!("{base}/{input_prefix}"),
        &format!("{base}/{output_prefix}"),
    );
    spec.content_type = "text/csv".into();
    spec.split_type = transform::SplitType::Line;
    spec.batch_strategy = Some(transform::BatchStrategy::MultiRecord);
    spec.max_payload_mb = Some(t.pins.max_payload_mb.unwrap_or(6));
    spec.max_concurrent_transforms = t.pins.max_concurrent_transforms.unwrap_or(0);
    spec.instance_count = t.pins.instance_count.unwrap_or(1);
    spec.data_processing.input_filter = "$[1:]".into();
    spec.data_processing.join_source = transform::JoinSource::Input;
    spec.data_processing.output_filter = "$[0,-1]".into();
    spec.assemble_with = transform::AssembleWith::Line;
    if let Some(s) = t.invocation_timeout_seconds {
        spec.invocation_timeout_secs = s;
    }
    if let Some(r) = t.invocation_max_retries {
        spec.invocation_max_retries = r;
    }
    spec
}

/// A SageMaker-valid job name (63 characters, alphanumerics and '-'), deterministic.
pub fn job_name_for(job: &str, run_id: &str) -> String {
    let raw = format!("c360-{job}-{run_id}");
    let mut s: String = raw
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    while s.contains("--") {
        s = s.replace("--", "-");
    }
    if s.len() > 63 {
        let h = hash8(&[&raw]);
        s = format!("{}-{h}", &s[..54].trim_end_matches('-'));
    }
    s.trim_end_matches('-').to_string()
}

/// The committed snapshots joined and cut to the model's inputs (id first).
fn model_input(p: &Prepared) -> Result<DataFrame> {
    let spec = p
        .model
        .spec
        .as_ref()
        .ok_or_else(|| PipelineError::Definition("model has no spec".into()))?;
    let joined = joined_snapshots(p)?;
    let mut cols = vec![col("customer_id")];
    for f in &spec.features {
        let c = col(f.as_str());
        let dt = joined
            .column(f)
            .map(|c| c.dtype().clone())
            .unwrap_or(DataType::Float64);
        cols.push(if dt == DataType::Boolean {
            c.cast(DataType::Int32)
        } else {
            c
        });
    }
    joined
        .lazy()
        .select(cols)
        .collect()
        .map_err(|e| PipelineError::Run {
            run: p.run_id.clone(),
            message: e.to_string(),
        })
}

fn joined_snapshots(p: &Prepared) -> Result<DataFrame> {
    let mut joined: Option<LazyFrame> = None;
    for s in &p.sets {
        let prefix = offline::partition_prefix(&s.name, s.version, p.as_of);
        let m = offline::read_manifest(p.store.as_ref(), &prefix)?.ok_or_else(|| {
            PipelineError::Run {
                run: p.run_id.clone(),
                message: format!("snapshot {prefix} is not committed"),
            }
        })?;
        let df = offline::read_partition(p.store.as_ref(), &prefix, &m)?.lazy();
        joined = Some(match joined {
            None => df,
            Some(j) => j.join(
                df.drop(cols(["as_of"])),
                [col("customer_id")],
                [col("customer_id")],
                JoinArgs::new(JoinType::Inner),
            ),
        });
    }
    joined
        .ok_or_else(|| PipelineError::Definition("the model names no feature set".into()))?
        .sort(["customer_id"], Default::default())
        .collect()
        .map_err(|e| PipelineError::Run {
            run: p.run_id.clone(),
            message: e.to_string(),
        })
}

/// Reads the `.out` files (`id,score` lines) and applies the quality gates.
fn collect_and_gate(
    p: &Prepared,
    input_prefix: &str,
    output_prefix: &str,
) -> Result<(DataFrame, Value)> {
    let st = p.store.as_ref();
    let gate = |m: String| PipelineError::Gate(m);
    let inputs: Vec<_> = st
        .list(input_prefix)?
        .into_iter()
        .filter(|o| o.key.ends_with(".csv"))
        .collect();
    let mut frames = Vec::new();
    let mut expected = 0usize;
    for i in &inputs {
        let rel = i
            .key
            .strip_prefix(input_prefix)
            .unwrap_or(&i.key)
            .trim_start_matches('/');
        let out_key = format!("{output_prefix}/{rel}.out");
        let in_rows = st.get(&i.key)?.iter().filter(|b| **b == b'\n').count();
        expected += in_rows;
        let bytes = match st.get(&out_key) {
            Ok(b) => b,
            Err(store::StoreError::NotFound { .. }) => {
                return Err(gate(format!("no result {out_key} for input {}", i.key)))
            }
            Err(e) => return Err(e.into()),
        };
        if bytes.is_empty() {
            continue;
        }
        let df = CsvReadOptions::default()
            .with_has_header(false)
            .with_schema(Some(Arc::new(Schema::from_iter([
                Field::new("customer_id".into(), DataType::String),
                Field::new("score".into(), DataType::Float64),
            ]))))
            .into_reader_with_file_handle(std::io::Cursor::new(bytes))
            .finish()
            .map_err(|e| gate(format!("{out_key} is not id,score lines: {e}")))?;
        frames.push(df);
    }
    let mut df = frames
        .into_iter()
        .reduce(|mut a, b| {
            let _ = a.vstack_mut(&b);
            a
        })
        .unwrap_or_default();
    df.rechunk_mut();
    let n = df.height();
    if n == 0 {
        // Nothing to gate (and no score column to read): say so instead of a polars error.
        return Err(gate(format!(
            "no customer was scored ({expected} input rows): the feature snapshot as of {} is empty",
            p.as_of
        )));
    }
    if n != expected {
        return Err(gate(format!("{n} scores for {expected} input rows")));
    }
    let snapshot_rows = joined_snapshots(p)?.height();
    if n != snapshot_rows {
        return Err(gate(format!(
            "{n} scores for {snapshot_rows} customers in the feature snapshot"
        )));
    }
    let score = df
        .column("score")
        .map_err(|e| gate(e.to_string()))?
        .f64()
        .map_err(|e| gate(e.to_string()))?
        .clone();
    let nulls = score.null_count();
    if nulls > 0 {
        return Err(gate(format!("{nulls} null or unparsable scores")));
    }
    let g = &p.job.gates;
    let bad = score
        .into_no_null_iter()
        .filter(|v| !v.is_finite() || *v < g.min_score || *v > g.max_score)
        .count();
    if bad > 0 {
        return Err(gate(format!(
            "{bad} scores outside [{}, {}] or not finite",
            g.min_score, g.max_score
        )));
    }
    let dups = n - df
        .column("customer_id")
        .map_err(|e| gate(e.to_string()))?
        .n_unique()
        .unwrap_or(n);
    if dups > 0 {
        return Err(gate(format!("{dups} customers scored more than once")));
    }
    let distinct = score.n_unique().unwrap_or(0) as u64;
    if distinct < g.min_distinct_scores {
        return Err(gate(format!(
            "only {distinct} distinct score(s); the model output looks constant"
        )));
    }
    let mean = score.mean().unwrap_or(f64::NAN);
    let std = score.std(1).unwrap_or(f64::NAN);
    let q = |x: f64| {
        score
            .quantile(x, QuantileMethod::Linear)
            .ok()
            .flatten()
            .unwrap_or(f64::NAN)
    };
    // An unreadable or disagreeing latest.json has no trusted previous version (the
    // publish rebuilds or repairs it); the gate then has nothing to compare with.
    let previous_mean = match product::resolve_latest(p.store.as_ref(), &p.job.product.name) {
        Ok(l) => l.map(|(_, m)| m),
        Err(product::ProductError::Read { message, .. }) => {
            tracing::warn!(%message, "no previous version to compare the mean score with");
            None
        }
        Err(e) => return Err(e.into()),
    }
    .filter(|m| m.run_id != p.run_id)
    .and_then(|m| {
        m.extra
            .get("score_statistics")
            .and_then(|s| s.get("mean"))
            .and_then(|v| v.as_f64())
    });
    if let (Some(max), Some(prev)) = (g.max_mean_shift, previous_mean) {
        if (mean - prev).abs() > max {
            return Err(gate(format!(
                "mean score moved from {prev:.4} to {mean:.4} (more than max_mean_shift {max})"
            )));
        }
    }
    let spec = p.model.spec.as_ref();
    let mut bands: BTreeMap<String, u64> = BTreeMap::new();
    if let Some(spec) = spec {
        for v in score.into_no_null_iter() {
            if let Some(b) = spec.risk_band(v) {
                *bands.entry(b.to_string()).or_default() += 1;
            }
        }
    }
    let stats = json!({
        "rows": n, "mean": mean, "std": std, "min": q(0.0), "p10": q(0.1), "p50": q(0.5), "p90": q(0.9), "max": q(1.0),
        "distinct": distinct, "previous_mean": previous_mean, "risk_bands": bands,
    });
    Ok((df, stats))
}

fn product_frame(p: &Prepared, scores: &DataFrame) -> Result<(ProductSpec, DataFrame)> {
    let def = &p.job.product;
    let mspec = p
        .model
        .spec
        .as_ref()
        .ok_or_else(|| PipelineError::Definition("model has no spec".into()))?;
    let snap = joined_snapshots(p)?;
    let mut keep = vec![col("customer_id")];
    keep.extend(def.include.iter().map(|c| col(c.as_str())));
    let extra = snap.lazy().select(keep);
    let bands: Vec<(String, Option<f64>)> = mspec
        .risk_bands
        .iter()
        .map(|b| (b.name.clone(), b.below))
        .collect();
    let mut band = lit(NULL).cast(DataType::String);
    for (name, below) in bands.iter().rev() {
        band = match below {
            Some(b) => when(col("score").lt(lit(*b)))
                .then(lit(name.clone()))
                .otherwise(band),
            None => lit(name.clone()),
        };
    }
    let set_versions = p
        .sets
        .iter()
        .map(|s| format!("{} v{}", s.name, s.version))
        .collect::<Vec<_>>()
        .join(", ");
    let scored_at = Utc::now().timestamp_micros();
    let mut select = vec![
        col("customer_id"),
        col("score").alias(def.score_column.as_str()),
        band.alias("risk_band"),
    ];
    select.extend(def.include.iter().map(|c| col(c.as_str())));
    select.extend([
        lit(crate::source::day_number(p.as_of))
            .cast(DataType::Date)
            .alias("as_of"),
        lit(scored_at)
            .cast(DataType::Datetime(
                TimeUnit::Microseconds,
                Some(polars::prelude::TimeZone::UTC),
            ))
            .alias("scored_at"),
        lit(p.model_name.clone()).alias("model"),
        lit(file_sha256(&p.model.artifact)
            .chars()
            .skip(7)
            .take(12)
            .collect::<String>())
        .alias("model_version"),
        lit(set_versions).alias("feature_sets"),
    ]);
    let df = scores
        .clone()
        .lazy()
        .join(
            extra,
            [col("customer_id")],
            [col("customer_id")],
            JoinArgs::new(JoinType::Left),
        )
        .select(select)
        .sort(["customer_id"], Default::default())
        .collect()
        .map_err(|e| PipelineError::Run {
            run: p.run_id.clone(),
            message: e.to_string(),
        })?;
    let desc = |c: &str| -> String {
        p.sets
            .iter()
            .find_map(|s| s.feature(c).map(|f| f.description.clone()))
            .unwrap_or_default()
    };
    let mut columns = vec![
        ColumnDoc {
            name: "customer_id".into(),
            description: "The customer (Customer 360 id)".into(),
            logical_type: "string".into(),
            required: true,
            allowed: vec![],
            range: None,
        },
        ColumnDoc {
            name: def.score_column.clone(),
            description: mspec
                .description
                .clone()
                .unwrap_or_else(|| "Model score".into()),
            logical_type: "number".into(),
            required: true,
            allowed: vec![],
            range: Some((p.job.gates.min_score, p.job.gates.max_score)),
        },
        ColumnDoc {
            name: "risk_band".into(),
            description: format!(
                "Band of the score: {}",
                bands
                    .iter()
                    .map(|(n, b)| match b {
                        Some(b) => format!("{n} below {b}"),
                        None => format!("{n} otherwise"),
                    })
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            logical_type: "string".into(),
            required: !bands.is_empty(),
            allowed: bands.iter().map(|b| b.0.clone()).collect(),
            range: None,
        },
    ];
    for c in &def.include {
        let ty = snap_type(p, c);
        columns.push(ColumnDoc {
            name: c.clone(),
            description: desc(c),
            logical_type: ty,
            required: false,
            allowed: vec![],
            range: None,
        });
    }
    columns.extend([
        ColumnDoc {
            name: "as_of".into(),
            description: "Features are as of this date (UTC); no later event influenced the score"
                .into(),
            logical_type: "date".into(),
            required: true,
            allowed: vec![],
            range: None,
        },
        ColumnDoc {
            name: "scored_at".into(),
            description: "When the score was computed (UTC)".into(),
            logical_type: "timestamp".into(),
            required: true,
            allowed: vec![],
            range: None,
        },
        ColumnDoc {
            name: "model".into(),
            description: "The model's name".into(),
            logical_type: "string".into(),
            required: true,
            allowed: vec![],
            range: None,
        },
        ColumnDoc {
            name: "model_version".into(),
            description: "First 12 hex digits of the model artifact's SHA-256".into(),
            logical_type: "string".into(),
            required: true,
            allowed: vec![],
            range: None,
        },
        ColumnDoc {
            name: "feature_sets".into(),
            description: "Feature sets and versions the score was computed from".into(),
            logical_type: "string".into(),
            required: true,
            allowed: vec![],
            range: None,
        },
    ]);
    // A new version is due every nominal interval of the schedule (a monthly job: 31 days).
    let cadence = p.job.schedule.freshness_days();
    let spec = ProductSpec {
        name: def.name.clone(),
        major: def.major,
        domain: def.domain.clone(),
        owner: def.owner.clone(),
        description: def.description.clone(),
        consumers: def.consumers.clone(),
        retention_days: def.retention_days,
        freshness_days: cadence,
        schedule: p.job.schedule.expr.clone(),
        columns,
    };
    Ok((spec, df))
}

fn snap_type(p: &Prepared, c: &str) -> String {
    use crate::features::expr::Ty;
    let ty = p
        .sets
        .iter()
        .find_map(|s| s.feature(c).map(|f| f.ty))
        .unwrap_or(Ty::Str);
    match ty {
        Ty::Int => "integer",
        Ty::Float | Ty::Null => "number",
        Ty::Bool => "boolean",
        Ty::Str | Ty::Time => "string",
    }
    .into()
}

fn lineage(r: &Run) -> Lineage {
    let f = r
        .ledger
        .step("features")
        .map(|s| s.detail.clone())
        .unwrap_or_default();
    let t = r
        .ledger
        .step("transform")
        .map(|s| s.detail.clone())
        .unwrap_or_default();
    let mut fps = BTreeMap::new();
    let mut sets = BTreeMap::new();
    if let Value::Object(m) = &f {
        for (k, v) in m {
            if let Some(Value::Object(fp)) = v.get("source_fingerprints") {
                for (t, h) in fp {
                    fps.insert(t.clone(), h.as_str().unwrap_or_default().to_string());
                }
            }
            sets.insert(k.clone(), v.clone());
        }
    }
    Lineage {
        job: r.p.job.name.clone(),
        run_id: r.p.run_id.clone(),
        source: r.p.source_uri.clone(),
        source_fingerprints: fps,
        feature_sets: sets,
        model: r.p.plan["model"].clone(),
        transform: t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ledger(run_id: &str, owner: Option<String>, idle_secs: i64) -> Ledger {
        let t = Utc::now() - chrono::Duration::seconds(idle_secs);
        Ledger {
            job: "j".into(),
            run_id: run_id.into(),
            as_of: NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
            status: Status::Running,
            backend: "local".into(),
            started_at: t,
            updated_at: t,
            finished_at: None,
            attempts: 1,
            steps: vec![StepRecord {
                name: "transform".into(),
                status: Status::Running,
                started_at: t,
                finished_at: None,
                seconds: None,
                rows: None,
                detail: Value::Null,
                error: None,
            }],
            error: None,
            product: None,
            created_by: "c360".into(),
            owner,
            notes: vec![],
        }
    }

    fn dead_pid() -> u32 {
        let mut c = std::process::Command::new("true").spawn().unwrap();
        let pid = c.id();
        c.wait().unwrap();
        pid
    }

    #[test]
    fn only_running_ledgers_without_a_live_owner_are_reaped() {
        let dir = tempfile::tempdir().unwrap();
        let st = store::LocalStore::new(dir.path());
        let host = hostname();
        let dead = format!("{host}:{}:0000abcd", dead_pid());
        let cases = [
            ("dead", Some(dead.clone()), 0, true),
            ("mine", Some(process_owner().to_string()), 0, false),
            ("alive", Some(format!("{host}:1:0000abcd")), 0, false),
            (
                "elsewhere-fresh",
                Some("other-host:7:0000abcd".into()),
                60,
                false,
            ),
            (
                "elsewhere-stale",
                Some("other-host:7:0000abcd".into()),
                7 * 3600,
                true,
            ),
            ("unrecorded-stale", None, 7 * 3600, true),
            ("keep", Some(dead.clone()), 0, false),
        ];
        for (id, owner, idle, _) in &cases {
            save_ledger(&st, &ledger(id, owner.clone(), *idle)).unwrap();
        }
        let mut reaped = reap_orphans(&st, "j", "keep").unwrap();
        reaped.sort();
        let mut want: Vec<String> = cases
            .iter()
            .filter(|c| c.3)
            .map(|c| c.0.to_string())
            .collect();
        want.sort();
        assert_eq!(reaped, want);
        let l: Ledger = serde_json::from_slice(&st.get(&ledger_key("j", "dead")).unwrap()).unwrap();
        assert_eq!(l.status, Status::Failed);
        assert_eq!(l.steps[0].status, Status::Failed);
        let e = l.error.unwrap();
        assert!(
            e.starts_with("transform: interrupted: no live owner") && e.contains(&dead),
            "{e}"
        );
        // A live lease naming the run protects it even when its owner cannot be probed.
        save_ledger(
            &st,
            &ledger("leased", Some("other-host:7:0000abcd".into()), 7 * 3600),
        )
        .unwrap();
        let lease = json!({"owner": "other-host:7:0000abcd", "job": "j", "run_id": "leased",
            "acquired_at": Utc::now(), "expires_at": Utc::now() + chrono::Duration::seconds(60)});
        st.put("runs/j/lease.json", lease.to_string().as_bytes())
            .unwrap();
        assert!(reap_orphans(&st, "j", "keep").unwrap().is_empty());
    }

    #[test]
    fn a_dead_run_is_marked_failed_once_with_its_reason() {
        let dir = tempfile::tempdir().unwrap();
        let st = store::LocalStore::new(dir.path());
        save_ledger(&st, &ledger("r", None, 0)).unwrap();
        assert!(mark_failed(&st, "j", "r", "the run's task panicked: boom").unwrap());
        assert!(
            !mark_failed(&st, "j", "r", "again").unwrap(),
            "already ended"
        );
        assert!(!mark_failed(&st, "j", "nope", "x").unwrap());
        let l: Ledger = serde_json::from_slice(&st.get(&ledger_key("j", "r")).unwrap()).unwrap();
        assert_eq!(
            l.error.as_deref(),
            Some("transform: the run's task panicked: boom")
        );
    }
}
