//! The steps of a run and the machinery that runs each once: [`Run::step`] skips a step
//! the ledger has done, records its start, end, rows and detail, and stops at a step
//! boundary when the run is cancelled. The step bodies: `features` here, the transform
//! input in [`super::input`], the transform in [`super::transform_step`], the gates in
//! [`super::gates`], and `publish` here.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::Utc;

use super::ledger::{Ledger, RunStatus, Step, StepRecord, StepStatus};
use super::prepare::Prepared;
use super::record::{PublishSummary, SnapshotDetail, StepDetail};
use super::{Observer, PipelineError, Result};
use crate::features;
use crate::product::{self, Lineage, ProductSpec};
use polars::prelude::DataFrame;

/// A run in progress: its prepared inputs, its ledger and who watches it.
pub(super) struct Run<'a> {
    pub(super) p: &'a Prepared,
    pub(super) ledger: Ledger,
    pub(super) obs: &'a dyn Observer,
}

/// What a step body returns: its value, the rows it handled, and its ledger detail.
pub(super) type StepOutput<T> = (T, Option<u64>, StepDetail);

impl Run<'_> {
    /// Writes the ledger (with a fresh `updated_at`).
    pub(super) fn save(&mut self) -> Result<()> {
        self.ledger.updated_at = Utc::now();
        super::ledger::save_ledger(self.p.store.as_ref(), &self.ledger)
    }

    /// Runs `f` as step `name` unless the ledger already has it done.
    pub(super) fn step<T>(
        &mut self,
        name: Step,
        what: &str,
        f: impl FnOnce(&mut Self) -> Result<StepOutput<T>>,
    ) -> Result<Option<T>> {
        if self.ledger.done(name) {
            tracing::info!(run_id = %self.ledger.run_id, step = %name, "already done; skipping");
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
            tracing::warn!(run_id = %self.ledger.run_id, step = %name, "run stopped at a step boundary");
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
            name,
            status: StepStatus::Running,
            started_at: started,
            finished_at: None,
            seconds: None,
            rows: None,
            detail: StepDetail::None,
            error: None,
        });
        self.save()?;
        let span = tracing::info_span!("step", run_id = %self.ledger.run_id, job = %self.ledger.job, step = %name);
        let _g = span.enter();
        failpoint(name);
        let out = f(self);
        let idx = self.ledger.steps.len() - 1;
        let rec = &mut self.ledger.steps[idx];
        rec.finished_at = Some(Utc::now());
        rec.seconds = Some(t.elapsed().as_secs_f64());
        match out {
            Ok((v, rows, detail)) => {
                rec.status = StepStatus::Done;
                rec.rows = rows;
                rec.detail = detail;
                tracing::info!(rows, secs = rec.seconds, "step done");
                let rec = rec.clone();
                self.save()?;
                self.obs.step_finished(&rec);
                Ok(Some(v))
            }
            Err(e) => {
                rec.status = StepStatus::Failed;
                rec.error = Some(e.to_string());
                let rec = rec.clone();
                self.ledger.status = RunStatus::Failed;
                self.ledger.error = Some(format!("{name}: {e}"));
                self.ledger.finished_at = Some(Utc::now());
                self.save()?;
                self.obs.step_finished(&rec);
                Err(e)
            }
        }
    }
}

/// Debug builds only: `C360_FAILPOINT=panic:<step>` / `sleep:<step>:<ms>` (see the module).
fn failpoint(step: Step) {
    crate::failpoint::hit(step.as_str())
}

/// Step `features`: builds each snapshot, or reuses it when committed with the same
/// definition and source; the sets built are computed from one read and check of the
/// tables they read ([`features::build_snapshots`]).
pub(super) fn features(r: &mut Run<'_>) -> Result<StepOutput<()>> {
    let mut detail = BTreeMap::new();
    let mut rows = 0;
    let sets: Vec<&features::FeatureSet> = r.p.sets.iter().collect();
    let built =
        features::build_snapshots(&sets, &r.p.source_uri, r.p.store.as_ref(), r.p.as_of, false)?;
    for (s, b) in r.p.sets.iter().zip(built) {
        // Registered after the commit (and again when reused: repairs a missed registration).
        // A catalog that cannot take it does not stop the run: recorded, repaired later.
        let catalog_error = match r
            .p
            .mesh
            .catalog
            .register_snapshot(r.p.store.as_ref(), &b.manifest)
        {
            Ok(Some(c)) => {
                tracing::info!(database = %c.database, table = %c.table, location = %c.location, actions = ?c.actions, "snapshot registered");
                None
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(set = %s.name, error = %e, "the snapshot is committed but not registered in the catalog; `c360 catalog sync` registers it once the catalog answers");
                Some(e.to_string())
            }
        };
        rows = b.manifest.rows;
        detail.insert(
            s.name.to_string(),
            SnapshotDetail {
                snapshot: b.prefix,
                rows: b.manifest.rows,
                reused: b.reused,
                run_id: b.manifest.run_id,
                definition_hash: s.hash.clone(),
                source_fingerprints: b.manifest.source_fingerprints,
                catalog_error,
            },
        );
    }
    Ok(((), Some(rows), StepDetail::Features(detail)))
}

/// Step `publish`: the product's partition, contract, catalog entry and `latest.json`.
pub(super) fn publish(
    r: &mut Run<'_>,
    scores: &DataFrame,
    stats: &super::GateStats,
) -> Result<StepOutput<PublishSummary>> {
    let (spec, df) = product_frame(r.p, scores)?;
    let lineage = lineage(r);
    // Plain numbers and strings: encoding cannot fail (a NaN statistic becomes null).
    let stats_json = serde_json::to_value(stats).unwrap_or_default();
    let pubd = product::publish_to(
        r.p.store.as_ref(),
        &r.p.mesh,
        &spec,
        &df,
        r.p.as_of,
        &lineage,
        stats_json,
    )?;
    let summary = PublishSummary {
        product: spec.name.to_string(),
        partition: pubd.prefix,
        rows: pubd.manifest.rows,
        latest_moved: pubd.latest_moved,
        score_statistics: stats.clone(),
        redone: pubd.redone,
        catalog: pubd.catalog.map(Box::new),
        event: pubd.event.map(Box::new),
    };
    Ok((
        summary.clone(),
        Some(pubd.manifest.rows),
        StepDetail::Publish(summary),
    ))
}

/// For a finished run whose product event was not delivered: sends it again and records
/// what became of it in the ledger (the run's `product` summary and its publish step).
pub(super) fn announce_again(p: &Prepared, l: &mut Ledger) -> Result<()> {
    let Some(summary) = l.product.clone() else {
        return Ok(());
    };
    if summary.event.as_ref().is_none_or(|e| e.error.is_none()) {
        return Ok(());
    }
    let Some(m) = crate::offline::read_manifest(p.store.as_ref(), &summary.partition)? else {
        return Ok(());
    };
    let spec = product::product_spec(&scored_run(p));
    let event = crate::mesh::ProductEvent::Published(product::version_published(
        p.store.as_ref(),
        &spec,
        &m,
        summary.catalog.as_deref(),
        summary.latest_moved,
    ));
    let Some(rec) = p.mesh.events.send(&event) else {
        return Ok(());
    };
    tracing::info!(
        delivered = rec.error.is_none(),
        "the product event of a finished run sent again"
    );
    let mut summary = summary;
    summary.event = Some(Box::new(rec));
    if let Some(s) = l.steps.iter_mut().find(|s| s.name == Step::Publish) {
        s.detail = StepDetail::Publish(summary.clone());
    }
    l.product = Some(summary);
    l.updated_at = Utc::now();
    super::ledger::save_ledger(p.store.as_ref(), l)
}

/// Where the published data came from, from the ledger's `features` and `transform`.
fn lineage(r: &Run) -> Lineage {
    let mut fps = BTreeMap::new();
    let mut sets = BTreeMap::new();
    if let Some(StepDetail::Features(f)) = r.ledger.step(Step::Features).map(|s| &s.detail) {
        for (k, v) in f {
            fps.extend(v.source_fingerprints.clone());
            sets.insert(k.clone(), serde_json::to_value(v).unwrap_or_default());
        }
    }
    let transform = r
        .ledger
        .step(Step::Transform)
        .map(|s| s.detail.to_json())
        .unwrap_or_default();
    Lineage {
        job: r.p.job.name.to_string(),
        run_id: r.p.run_id.clone(),
        source: r.p.source_uri.clone(),
        source_fingerprints: fps,
        feature_sets: sets,
        model: serde_json::to_value(&r.p.plan.model).unwrap_or_default(),
        transform,
    }
}

/// The product's rows and spec for a run's scores ([`product::product_frame`]).
pub(super) fn product_frame(p: &Prepared, scores: &DataFrame) -> Result<(ProductSpec, DataFrame)> {
    let scored = scored_run(p);
    product::product_frame(&scored, scores, super::input::joined_snapshots(p)?).map_err(|e| {
        PipelineError::Polars {
            run: p.run_id.clone(),
            context: "building the product's rows".into(),
            source: e,
        }
    })
}

/// What the product's standard columns are computed from, for a prepared run.
pub(super) fn scored_run(p: &Prepared) -> product::ScoredRun<'_> {
    product::ScoredRun {
        product: &p.job.product,
        schedule: &p.job.schedule,
        model_name: &p.model_name,
        model: &p.spec,
        model_version: super::prepare::file_sha256(&p.model.artifact)
            .chars()
            .skip(7)
            .take(12)
            .collect(),
        sets: &p.sets,
        as_of: p.as_of,
        score_range: (p.job.gates.min_score, p.job.gates.max_score),
    }
}
