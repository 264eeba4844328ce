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
//!
//! Layout: [`ledger`] (the typed `run.json` and its ownership rules), [`record`] (each
//! step's detail), [`plan`] (the dry run's plan), [`prepare`] (resolving a run), `resume`
//! (reuse or resume), `steps` (running a step once; `features`, `publish`), `input`,
//! `transform_step` and `gates` (the other step bodies), [`job`] (job files), `observer`
//! (what a caller sees of a run).

pub mod job;
pub mod ledger;
pub mod plan;
pub mod prepare;
pub mod record;

mod gates;
mod input;
mod observer;
mod resume;
mod steps;
mod transform_step;

use chrono::Utc;

use crate::features;
use crate::offline;
use crate::product;
use crate::project::Project;
use crate::store;
use crate::transform;

pub use job::Job;
pub use ledger::{
    ledger_key, ledgers, load_ledger, mark_failed, panic_message, process_owner, reap_orphans,
    Ledger, RunStatus, Step, StepRecord, StepStatus, STALE_UNKNOWN_OWNER,
};
pub use observer::{Observer, Quiet};
pub use plan::RunPlan;
pub use prepare::{prepare, CloudPrep, Prepared, RunOptions};
pub use record::{
    GateStats, InputFile, PublishSummary, SnapshotDetail, StepDetail, TransformDetail,
    TransformInputDetail,
};

/// Why a run could not start or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("{0}")]
    Definition(String),
    /// Boxed: feature errors carry source context (large) and pass through every step.
    #[error(transparent)]
    Features(Box<features::FeatureError>),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Offline(#[from] offline::OfflineError),
    #[error(transparent)]
    Product(#[from] product::ProductError),
    /// The central catalog or event bus (`[catalog]`, `[events]`).
    #[error(transparent)]
    Mesh(#[from] crate::mesh::MeshError),
    /// The transform ran but did not complete (the first failed object and why).
    #[error("transform failed: {0}")]
    Transform(String),
    /// The transform could not start or be followed (bad spec, unreachable backend).
    #[error("transform failed: {0}")]
    TransformRun(#[from] transform::TransformError),
    #[error("quality gate failed, nothing published (any previous version stays latest): {0}")]
    Gate(String),
    #[error("run {run}: {message}")]
    Run { run: String, message: String },
    /// A ledger could not be encoded as JSON.
    #[error("run {run}: encoding its ledger: {source}")]
    EncodeLedger {
        run: String,
        #[source]
        source: serde_json::Error,
    },
    /// A data frame operation of a run failed (`context` says which).
    #[error("run {run}: {context}: {source}")]
    Polars {
        run: String,
        context: String,
        #[source]
        source: polars::prelude::PolarsError,
    },
    /// The as-of date is outside what the sources cover (before the first customer, or
    /// after the last event without `allow_as_of_past_data`).
    #[error("{0}")]
    AsOf(String),
}

/// A pipeline result.
pub type Result<T, E = PipelineError> = std::result::Result<T, E>;

impl From<features::FeatureError> for PipelineError {
    fn from(e: features::FeatureError) -> Self {
        PipelineError::Features(Box::new(e))
    }
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct RunReport {
    pub ledger: Ledger,
    pub store_uri: String,
    /// True when the run had already succeeded and nothing was redone.
    pub reused: bool,
    pub plan: RunPlan,
    pub summary: Option<PublishSummary>,
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
        return Ok(RunReport {
            plan: plan::dry_run_plan(&p)?,
            ledger: resume::new_ledger(&p, 0),
            store_uri,
            reused: false,
            summary: None,
        });
    }
    let ledger = match resume::start(&p)? {
        resume::Start::Reuse(mut l) => {
            // A version whose event was never delivered is announced now (the bus may be
            // back): consumers hear of every published version at least once.
            steps::announce_again(&p, &mut l)?;
            return Ok(RunReport {
                summary: l.product.clone(),
                ledger: l,
                store_uri,
                reused: true,
                plan: p.plan.clone(),
            });
        }
        resume::Start::Work(l) => l,
    };
    let mut run = steps::Run { p: &p, ledger, obs };
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
            ledger::fail_ledger(&mut run.ledger, &reason);
            let err = run.ledger.error.clone().unwrap_or_else(|| reason.clone());
            run.save()?;
            Err(PipelineError::Run {
                run: p.run_id.clone(),
                message: err,
            })
        }
    }
}

/// The steps of a run (each skipped when the ledger has it done); the product summary.
fn run_steps(run: &mut steps::Run<'_>) -> Result<Option<PublishSummary>> {
    let p = run.p;
    tracing::info!(run_id = %p.run_id, job = %p.job.name, as_of = %p.as_of, "run started");
    let input = p.plan.transform_input.prefix.clone();
    let output = p.plan.transform_output.clone();
    run.step(
        Step::Features,
        "building feature snapshots",
        steps::features,
    )?;
    run.step(Step::TransformInput, "writing the transform input", |r| {
        input::transform_input(r, &input)
    })?;
    run.step(Step::Transform, "scoring (batch transform)", |r| {
        transform_step::transform(r, &input, &output)
    })?;
    let mut checked = None;
    run.step(Step::Gates, "checking the scores", |r| {
        let (df, stats) = gates::collect_and_gate(r.p, &input, &output)?;
        let n = df.height() as u64;
        checked = Some((df, stats.clone()));
        Ok(((), Some(n), StepDetail::Gates(stats)))
    })?;
    let (scores, stats) = match checked {
        Some(c) => c,
        // Gates were done by an earlier attempt: read the results again (cheap, deterministic).
        None => gates::collect_and_gate(p, &input, &output)?,
    };
    let published = run.step(Step::Publish, "publishing the data product", |r| {
        steps::publish(r, &scores, &stats)
    })?;
    let summary = published.or_else(|| match run.ledger.step(Step::Publish).map(|s| &s.detail) {
        Some(StepDetail::Publish(s)) => Some(s.clone()),
        _ => None,
    });
    run.ledger.status = RunStatus::Succeeded;
    run.ledger.finished_at = Some(Utc::now());
    run.ledger.product = summary.clone();
    run.save()?;
    tracing::info!(run_id = %p.run_id, "run succeeded");
    Ok(summary)
}
