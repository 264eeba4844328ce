//! Starting a run's attempt from what the store has: a finished run is reused once its
//! published partition verifies (or published again when damaged), an interrupted or
//! failed run is resumed from its first step not done, and anything else starts afresh.

use chrono::Utc;

use super::ledger::{
    load_ledger, process_owner, reap_orphans, Ledger, RunStatus, Step, StepStatus,
};
use super::prepare::Prepared;
use super::Result;
use crate::offline;
use crate::product;
use crate::store::ObjectStore;

/// How an invocation starts.
pub(super) enum Start {
    /// The run already succeeded and its published data verifies: nothing to do.
    Reuse(Ledger),
    /// The ledger this attempt works on (new, or resumed).
    Work(Ledger),
}

/// A fresh ledger for a prepared run.
pub(super) fn new_ledger(p: &Prepared, attempts: u32) -> Ledger {
    Ledger {
        job: p.job.name.clone(),
        run_id: p.run_id.clone(),
        as_of: p.as_of,
        status: RunStatus::Running,
        backend: p.backend,
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
        extra: Default::default(),
    }
}

/// Reads the run's ledger (reaping the job's orphaned runs on the way) and decides how
/// this invocation starts.
pub(super) fn start(p: &Prepared) -> Result<Start> {
    let store: &dyn ObjectStore = p.store.as_ref();
    // An unreadable ledger, or a store that cannot be read, starts the run afresh.
    let previous = load_ledger(store, &p.job.name, &p.run_id).ok().flatten();
    // Runs of this job left `running` by a process that died are marked failed.
    match reap_orphans(store, &p.job.name, &p.run_id) {
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
        if l.status == RunStatus::Succeeded {
            // Reuse verifies: the published partition must still hold what was committed.
            match verify_published(p, l)? {
                None => return Ok(Start::Reuse(l.clone())),
                Some(damage) => {
                    tracing::warn!(run_id = %p.run_id, %damage, "the finished run's published data is damaged; publishing it again");
                    redo = Some(damage);
                }
            }
        }
    }
    Ok(Start::Work(match previous {
        Some(mut l) => {
            if l.status == RunStatus::Running {
                let note = format!(
                    "resumed by {} after an interruption (previous owner {})",
                    process_owner(),
                    l.owner.as_deref().unwrap_or("unrecorded")
                );
                tracing::info!(run_id = %p.run_id, %note, "resuming an interrupted run");
                l.note(note);
            }
            l.attempts += 1;
            l.status = RunStatus::Running;
            l.error = None;
            l.finished_at = None;
            l.owner = Some(process_owner().to_string());
            // Failed or interrupted steps are redone.
            l.steps.retain(|s| s.status == StepStatus::Done);
            if let Some(damage) = &redo {
                // The snapshots are verified again (rebuilt if damaged), then published again.
                l.steps
                    .retain(|s| s.name != Step::Features && s.name != Step::Publish);
                l.note(format!("redone: {damage}"));
            }
            l
        }
        None => new_ledger(p, 1),
    }))
}

/// Why a finished run's published partition cannot be trusted any more, if it cannot.
fn verify_published(p: &Prepared, l: &Ledger) -> Result<Option<String>> {
    let prefix = l
        .product
        .as_ref()
        .map(|s| s.partition.clone())
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
        // Published again since by another run (another model, say): this run's version is
        // not what the partition holds, so running it again publishes it again (a rollback).
        return Ok(Some(format!(
            "{prefix} now holds run {}'s version, not this run's",
            m.run_id
        )));
    }
    if let Some(damage) = offline::verify_partition(p.store.as_ref(), &prefix, &m)? {
        return Ok(Some(damage));
    }
    // The same as-of served from another version (another major published since, say):
    // running this run again publishes its version again, as for another run in its own
    // partition. (An unreadable latest.json is publish_damage's, below.)
    if let Ok(Some(l)) = product::latest(p.store.as_ref(), &p.job.product.name) {
        if l.as_of == m.as_of && (l.path != prefix || l.run_id != p.run_id) {
            return Ok(Some(format!(
                "latest.json serves run {} ({}) for {}, not this run's version",
                l.run_id, l.path, l.as_of
            )));
        }
    }
    // The contract and latest.json are part of what was published.
    Ok(product::publish_damage(
        p.store.as_ref(),
        &p.job.product.name,
        m.as_of,
    )?)
}
