//! The run ledger (`runs/<job>/<run_id>/run.json`): its typed record ([`Ledger`],
//! [`StepRecord`], [`Step`], the two status enums), saving and loading it, and the
//! ownership rules that find runs left `running` by a process that died (owners, leases,
//! orphans).
//!
//! The JSON field names are those of every earlier release, so old ledgers still load;
//! fields this release does not know are kept in [`Ledger::extra`] and written back.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::record::StepDetail;
use super::{PipelineError, Result};
use crate::store::doc::{self, Document};
use crate::store::{layout, ObjectStore, StoreError};
use crate::transform::Backend;

/// The steps of a run, in order. Serialized as in `run.json` (`"transform_input"`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// Build or reuse each feature snapshot.
    Features,
    /// Write the id-first CSV parts the transform reads.
    TransformInput,
    /// The batch transform (local or SageMaker).
    Transform,
    /// Read the results back and apply the quality gates.
    Gates,
    /// Publish the data product (`latest.json` last).
    Publish,
}

impl Step {
    /// Every step, in run order.
    pub const ALL: [Step; 5] = [
        Step::Features,
        Step::TransformInput,
        Step::Transform,
        Step::Gates,
        Step::Publish,
    ];

    /// The step's name in `run.json` and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Features => "features",
            Step::TransformInput => "transform_input",
            Step::Transform => "transform",
            Step::Gates => "gates",
            Step::Publish => "publish",
        }
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

impl PartialEq<&str> for Step {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// Where one step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepStatus {
    Running,
    Done,
    Failed,
}

/// Where a whole run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Failed,
    Succeeded,
}

/// One step in the ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawStep", into = "RawStep")]
pub struct StepRecord {
    pub name: Step,
    pub status: StepStatus,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub seconds: Option<f64>,
    pub rows: Option<u64>,
    /// What the step did; [`StepDetail::None`] while it runs or when it failed.
    pub detail: StepDetail,
    pub error: Option<String>,
}

/// A step as stored: the detail's shape depends on the step's name.
#[derive(Serialize, Deserialize)]
struct RawStep {
    name: Step,
    status: StepStatus,
    started_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
    seconds: Option<f64>,
    rows: Option<u64>,
    #[serde(default)]
    detail: Value,
    error: Option<String>,
}

impl TryFrom<RawStep> for StepRecord {
    type Error = String;
    fn try_from(r: RawStep) -> std::result::Result<Self, String> {
        let detail = StepDetail::from_json(r.name, r.detail)
            .map_err(|e| format!("step {}: detail: {e}", r.name))?;
        Ok(StepRecord {
            name: r.name,
            status: r.status,
            started_at: r.started_at,
            finished_at: r.finished_at,
            seconds: r.seconds,
            rows: r.rows,
            detail,
            error: r.error,
        })
    }
}

impl From<StepRecord> for RawStep {
    fn from(r: StepRecord) -> RawStep {
        RawStep {
            name: r.name,
            status: r.status,
            started_at: r.started_at,
            finished_at: r.finished_at,
            seconds: r.seconds,
            rows: r.rows,
            detail: r.detail.to_json(),
            error: r.error,
        }
    }
}

/// `run.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ledger {
    pub job: crate::names::JobName,
    pub run_id: String,
    pub as_of: NaiveDate,
    pub status: RunStatus,
    pub backend: Backend,
    pub started_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// How many invocations worked on this run (more than 1 = resumed).
    pub attempts: u32,
    pub steps: Vec<StepRecord>,
    pub error: Option<String>,
    /// What the publish step published (set when the run succeeded).
    #[serde(default)]
    pub product: Option<super::PublishSummary>,
    pub created_by: String,
    /// The process working on the run (`host:pid:nonce`, see [`process_owner`]); absent in
    /// ledgers written before owners were recorded.
    #[serde(default)]
    pub owner: Option<String>,
    /// What happened to the run besides its steps (resumed after an interruption, a
    /// damaged published partition redone, marked failed as interrupted), oldest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Fields this release does not know (written by a newer one): kept and written back.
    #[serde(flatten)]
    pub extra: BTreeMap<String, Value>,
}

impl Ledger {
    /// Appends a timestamped note.
    pub(super) fn note(&mut self, n: String) {
        self.notes.push(format!("{}: {n}", Utc::now().to_rfc3339()));
    }

    /// The latest record of `step`, if the run has one.
    pub fn step(&self, step: Step) -> Option<&StepRecord> {
        self.steps.iter().rev().find(|s| s.name == step)
    }

    /// Whether `step` is done.
    pub fn done(&self, step: Step) -> bool {
        self.step(step)
            .is_some_and(|s| s.status == StepStatus::Done)
    }

    /// The steps done, in order.
    pub fn steps_done(&self) -> Vec<Step> {
        self.steps
            .iter()
            .filter(|s| s.status == StepStatus::Done)
            .map(|s| s.name)
            .collect()
    }
}

impl Document for Ledger {
    const WHAT: &'static str = "run ledger";
}

/// The store key of a run's ledger ([`layout::ledger`]).
pub fn ledger_key(job: &str, run_id: &str) -> String {
    layout::ledger(job, run_id)
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

/// What the ledger rules read of the job's lease (`runs/<job>/lease.json`, written by the
/// service as `service::runner::Lease`): its holder, the run it covers and its expiry.
#[derive(Debug, Serialize, Deserialize)]
struct LeaseHolder {
    owner: String,
    #[serde(default)]
    run_id: Option<String>,
    expires_at: DateTime<Utc>,
}

impl Document for LeaseHolder {
    const WHAT: &'static str = "job lease";
}

/// The job's lease (`runs/<job>/lease.json`, taken by the service) when it is live:
/// `(owner, run_id)`. A missing, damaged (logged) or unreadable lease is no live lease.
fn live_lease(store: &dyn ObjectStore, job: &str) -> Option<(String, Option<String>)> {
    let l = match doc::get_json::<LeaseHolder>(store, &layout::lease(job)) {
        Ok(l) => l?,
        Err(e @ StoreError::Corrupt { .. }) => {
            tracing::warn!(job, error = %e, "ignoring a damaged job lease");
            return None;
        }
        Err(e) => {
            tracing::debug!(job, error = %e, "cannot read the job's lease; taken as none");
            return None;
        }
    };
    (l.expires_at > Utc::now()).then_some((l.owner, l.run_id))
}

/// Whether a `running` ledger has no live owner.
fn is_orphaned(store: &dyn ObjectStore, l: &Ledger) -> bool {
    if l.status != RunStatus::Running {
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

/// Writes the ledger to its key.
pub(super) fn save_ledger(store: &dyn ObjectStore, l: &Ledger) -> Result<()> {
    let json = serde_json::to_vec_pretty(l).map_err(|e| PipelineError::EncodeLedger {
        run: l.run_id.clone(),
        source: e,
    })?;
    store.put(&ledger_key(&l.job, &l.run_id), &json)?;
    Ok(())
}

/// The ledger of a run: `None` when there is none, or when it cannot be read as a ledger
/// (a damaged file starts the run afresh, as before).
pub fn load_ledger(store: &dyn ObjectStore, job: &str, run_id: &str) -> Result<Option<Ledger>> {
    match doc::get_json(store, &ledger_key(job, run_id)) {
        Ok(l) => Ok(l),
        Err(e @ StoreError::Corrupt { .. }) => {
            tracing::warn!(error = %e, "unreadable run ledger; taken as absent");
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Records a run as failed with `reason` (its running step too), when its ledger still
/// says `running`. Returns whether it changed anything. Used where a run's task died
/// without recording its end (the service's join of a panicked task).
pub fn mark_failed(store: &dyn ObjectStore, job: &str, run_id: &str, reason: &str) -> Result<bool> {
    let Some(mut l) = load_ledger(store, job, run_id)? else {
        return Ok(false);
    };
    if l.status != RunStatus::Running {
        return Ok(false);
    }
    fail_ledger(&mut l, reason);
    save_ledger(store, &l)?;
    Ok(true)
}

/// Marks the run and its running step failed with `reason`.
pub(super) fn fail_ledger(l: &mut Ledger, reason: &str) {
    let now = Utc::now();
    let mut step = None;
    for s in l
        .steps
        .iter_mut()
        .filter(|s| s.status == StepStatus::Running)
    {
        s.status = StepStatus::Failed;
        s.error = Some(reason.to_string());
        s.finished_at = Some(now);
        step = Some(s.name);
    }
    l.status = RunStatus::Failed;
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

/// Every ledger of a job, newest first.
pub fn ledgers(store: &dyn ObjectStore, job: &str) -> Result<Vec<Ledger>> {
    let mut out = Vec::new();
    for o in store.list(&layout::job_runs(job))? {
        if !layout::is_ledger(&o.key) {
            continue;
        }
        match doc::get_json::<Ledger>(store, &o.key) {
            Ok(Some(l)) => out.push(l),
            // Deleted since the listing.
            Ok(None) => {}
            Err(e @ StoreError::Corrupt { .. }) => {
                tracing::warn!(key = %o.key, error = %e, "skipping an unreadable run ledger")
            }
            Err(e) => return Err(e.into()),
        }
    }
    out.sort_by_key(|l| std::cmp::Reverse(l.started_at));
    Ok(out)
}

#[cfg(test)]
mod tests;
