//! Starting runs from the service: never two runs of one job at once (an in-process guard
//! plus a lease object `runs/<job>/lease.json` created with a conditional put, so two
//! replicas on one store cannot both start), the blocking pipeline on the blocking pool,
//! metrics and spans per run.
//!
//! A lease holds its owner and expiry; the owner renews it while the run goes and deletes
//! it at the end. A replica that died leaves a lease that expires, and the next one takes
//! it over. The run ledger stays the source of truth: a run killed mid-way is resumed by
//! the next invocation with the same inputs (the run id is the same).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::pipeline::{
    self, Observer, PipelineError, RunOptions, Step, StepDetail, StepRecord, StepStatus,
};
use crate::store::{DynStore, StoreError};

use super::{AppState, ServiceError};

/// `runs/<job>/lease.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Lease {
    pub owner: String,
    pub job: String,
    pub run_id: Option<String>,
    pub acquired_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

pub fn lease_key(job: &str) -> String {
    format!("runs/{job}/lease.json")
}

fn read_lease(store: &DynStore, job: &str) -> Result<Option<Lease>, StoreError> {
    match store.get(&lease_key(job)) {
        Ok(b) => Ok(serde_json::from_slice(&b).ok()),
        Err(StoreError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Takes the job's lease for `owner`, or says who holds it (blocking).
pub fn acquire_lease(
    store: &DynStore,
    job: &str,
    owner: &str,
    ttl: Duration,
) -> Result<Result<Lease, Lease>, StoreError> {
    let now = Utc::now();
    let lease = Lease {
        owner: owner.into(),
        job: job.into(),
        run_id: None,
        acquired_at: now,
        expires_at: now + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::seconds(60)),
    };
    let body = serde_json::to_vec_pretty(&lease).unwrap_or_default();
    let key = lease_key(job);
    if store.put_if_absent(&key, &body)? {
        return Ok(Ok(lease));
    }
    // Someone holds it: read it with its version; an expired lease is replaced only if it
    // is still the version we read (S3 If-Match), so of two replicas taking over at once
    // exactly one wins, and a renewal that lands first keeps the lease with its owner.
    let (raw, version) = match store.get_versioned(&key) {
        Ok(v) => v,
        // Released between our two calls: create it again, conditionally.
        Err(StoreError::NotFound { .. }) => {
            return if store.put_if_absent(&key, &body)? {
                Ok(Ok(lease))
            } else {
                Ok(Err(read_lease(store, job)?.unwrap_or(lease)))
            };
        }
        Err(e) => return Err(e),
    };
    let cur: Option<Lease> = serde_json::from_slice(&raw).ok();
    match cur {
        Some(cur) if cur.expires_at > now && cur.owner != owner => Ok(Err(cur)),
        cur => {
            if let Some(c) = &cur {
                if c.owner != owner {
                    tracing::warn!(job, previous_owner = %c.owner, expired_at = %c.expires_at, "taking over an expired lease");
                }
            }
            if store.put_if_version(&key, &body, &version)? {
                Ok(Ok(lease))
            } else {
                Ok(Err(read_lease(store, job)?.unwrap_or(lease)))
            }
        }
    }
}

/// Extends our lease; `false` when it is no longer ours (taken over after expiring), in
/// which case the run must stop at the next step boundary.
fn renew_lease(store: &DynStore, job: &str, owner: &str, run_id: &str, ttl: Duration) -> bool {
    let Ok((raw, version)) = store.get_versioned(&lease_key(job)) else {
        return true; // unreadable now (network): try again at the next renewal
    };
    let Ok(mut l) = serde_json::from_slice::<Lease>(&raw) else {
        return false;
    };
    if l.owner != owner {
        return false;
    }
    l.run_id = Some(run_id.into());
    l.expires_at =
        Utc::now() + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::seconds(60));
    match serde_json::to_vec_pretty(&l) {
        Ok(b) => !matches!(
            store.put_if_version(&lease_key(job), &b, &version),
            Ok(false)
        ),
        Err(_) => true,
    }
}

/// Deletes the job's lease when `owner` holds it (blocking).
pub fn release_lease(store: &DynStore, job: &str, owner: &str) {
    if let Ok(Some(l)) = read_lease(store, job) {
        if l.owner == owner {
            let _ = store.delete(&lease_key(job));
        }
    }
}

/// Who started a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Api,
    Schedule,
    CatchUp,
    Resume,
}

impl Trigger {
    fn as_str(&self) -> &'static str {
        match self {
            Trigger::Api => "api",
            Trigger::Schedule => "schedule",
            Trigger::CatchUp => "catch_up",
            Trigger::Resume => "resume",
        }
    }
}

/// A run the service started.
#[derive(Debug, Clone, Serialize)]
pub struct Started {
    pub job: String,
    pub run_id: String,
    pub as_of: NaiveDate,
    pub trigger: Trigger,
}

/// How a run ended.
#[derive(Debug, Clone, Serialize)]
pub struct Finished {
    pub status: String,
    pub error: Option<String>,
}

/// The runs this process is working on.
#[derive(Debug)]
pub struct Runner {
    /// This process's lease owner id.
    pub owner: String,
    pub lease_ttl: Duration,
    running: Mutex<HashMap<String, Option<String>>>,
    /// Per job: set to stop its run at the next step boundary (lease lost, or shutdown).
    cancels: Mutex<HashMap<String, Arc<AtomicBool>>>,
    idle: Notify,
    /// Slows every step (testing aid: `C360_SERVICE_STEP_DELAY_MS`).
    step_delay: Duration,
}

impl Runner {
    pub fn new(lease_ttl: Duration) -> Runner {
        let step_delay = std::env::var("C360_SERVICE_STEP_DELAY_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .map(Duration::from_millis)
            .unwrap_or_default();
        Runner {
            // The same owner string the run ledgers carry, so a lease and the runs it
            // covers name one owner.
            owner: pipeline::process_owner().to_string(),
            lease_ttl,
            running: Mutex::new(HashMap::new()),
            cancels: Mutex::new(HashMap::new()),
            idle: Notify::new(),
            step_delay,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Option<String>>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Jobs running here, with their run ids once known.
    pub fn running(&self) -> HashMap<String, Option<String>> {
        self.lock().clone()
    }

    pub fn is_running(&self, job: &str) -> bool {
        self.lock().contains_key(job)
    }

    fn claim(&self, job: &str) -> Result<(), ServiceError> {
        let mut m = self.lock();
        if let Some(r) = m.get(job) {
            return Err(ServiceError::Conflict(format!(
                "a run of {job} is in progress{}",
                r.as_ref().map(|r| format!(" ({r})")).unwrap_or_default()
            )));
        }
        m.insert(job.into(), None);
        Ok(())
    }

    fn unclaim(&self, job: &str) {
        self.lock().remove(job);
        self.cancels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(job);
        self.idle.notify_waiters();
    }

    /// The cancel flag of a job's run (created on first use).
    fn cancel_flag(&self, job: &str) -> Arc<AtomicBool> {
        self.cancels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(job.to_string())
            .or_default()
            .clone()
    }

    /// Asks every run in progress to stop at its next step boundary (SageMaker jobs are
    /// stopped); their ledgers stay resumable.
    pub fn cancel_all(&self) {
        for f in self
            .cancels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
        {
            f.store(true, Ordering::SeqCst);
        }
    }

    /// Waits until no run is in progress, at most `grace`; true when idle.
    pub async fn drain(&self, grace: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + grace;
        loop {
            let notified = self.idle.notified();
            if self.lock().is_empty() {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.lock().is_empty();
            }
        }
    }
}

/// Step timing and rows scored into metrics (and the testing delay).
struct ServiceObserver {
    state: Arc<AppState>,
    job: String,
    delay: Duration,
    cancel: Arc<AtomicBool>,
}

impl Observer for ServiceObserver {
    fn step_started(&self, _name: Step, _what: &str) {
        if !self.delay.is_zero() {
            std::thread::sleep(self.delay);
        }
    }
    fn cancel_flag(&self) -> Option<Arc<AtomicBool>> {
        Some(self.cancel.clone())
    }
    fn step_finished(&self, r: &StepRecord) {
        let m = &self.state.metrics;
        if let (StepStatus::Done, StepDetail::TransformInput(d)) = (r.status, &r.detail) {
            if let Some(plan) = &d.plan {
                let (usd, t) = (plan.est_cost_usd, plan.instance_type.as_str());
                m.set(
                    "c360_transform_cost_estimate_usd",
                    &[("job", &self.job), ("instance_type", t)],
                    usd,
                );
                m.inc(
                    "c360_transform_cost_estimate_usd_total",
                    &[("job", &self.job)],
                    usd,
                );
            }
        }
        if let Some(s) = r.seconds {
            m.step(&self.job, r.name.as_str(), s);
        }
        if r.name == Step::Transform && r.status == StepStatus::Done {
            m.inc(
                "c360_rows_scored_total",
                &[("job", &self.job)],
                r.rows.unwrap_or(0) as f64,
            );
        }
    }
}

fn pipeline_error(e: PipelineError) -> ServiceError {
    match e {
        PipelineError::Definition(m) | PipelineError::AsOf(m) => ServiceError::Unprocessable(m),
        e => ServiceError::Internal(e.to_string()),
    }
}

/// Starts a run of `job` (as of `as_of`, or the job's rule on `today`) in the background;
/// 409 when one is in progress here or under another replica's live lease. Returns once
/// the run id is known, with a handle that ends with the run.
pub async fn start(
    state: &Arc<AppState>,
    job: &str,
    as_of: Option<NaiveDate>,
    today: Option<NaiveDate>,
    trigger: Trigger,
) -> Result<(Started, tokio::task::JoinHandle<Finished>), ServiceError> {
    let runner = &state.runner;
    runner.claim(job)?;
    let opts = RunOptions {
        as_of,
        today,
        ..Default::default()
    };
    let st = state.clone();
    let j = job.to_string();
    let o = opts.clone();
    let prepared = tokio::task::spawn_blocking(move || -> Result<_, ServiceError> {
        match acquire_lease(&st.store, &j, &st.runner.owner, st.runner.lease_ttl)? {
            Ok(_) => {}
            Err(held) => {
                return Err(ServiceError::Conflict(format!(
                    "a run of {j} is in progress under {} (lease until {})",
                    held.owner, held.expires_at
                )))
            }
        }
        match pipeline::prepare(&st.project, &j, &o) {
            Ok(p) => Ok((p.run_id, p.as_of)),
            Err(e) => {
                release_lease(&st.store, &j, &st.runner.owner);
                Err(pipeline_error(e))
            }
        }
    })
    .await;
    let (run_id, as_of) = match prepared {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => {
            runner.unclaim(job);
            return Err(e);
        }
        Err(e) => {
            runner.unclaim(job);
            return Err(e.into());
        }
    };
    runner.lock().insert(job.to_string(), Some(run_id.clone()));
    let started = Started {
        job: job.into(),
        run_id: run_id.clone(),
        as_of,
        trigger,
    };
    tracing::info!(job, run_id, %as_of, trigger = trigger.as_str(), "run starting");
    let st = state.clone();
    let job = job.to_string();
    let handle = tokio::spawn(async move {
        st.metrics
            .add_gauge("c360_runs_in_progress", &[("job", &job)], 1.0);
        // Renew the lease while the run goes.
        let (stop_renewing, mut stop) = tokio::sync::oneshot::channel::<()>();
        let renew = {
            let st = st.clone();
            let job = job.clone();
            let run_id = run_id.clone();
            tokio::spawn(async move {
                let every = (st.runner.lease_ttl / 3).max(Duration::from_millis(200));
                loop {
                    tokio::select! {
                        _ = tokio::time::sleep(every) => {}
                        _ = &mut stop => return,
                    }
                    let st2 = st.clone();
                    let (j, r) = (job.clone(), run_id.clone());
                    let ours = tokio::task::spawn_blocking(move || {
                        renew_lease(&st2.store, &j, &st2.runner.owner, &r, st2.runner.lease_ttl)
                    })
                    .await
                    .unwrap_or(true);
                    if !ours {
                        tracing::error!(job = %job, run_id = %run_id, "the job's lease was taken over by another replica; stopping this run at the next step boundary");
                        st.runner.cancel_flag(&job).store(true, Ordering::SeqCst);
                        return;
                    }
                }
            })
        };
        let st2 = st.clone();
        let j = job.clone();
        let rid = run_id.clone();
        let res = tokio::task::spawn_blocking(move || {
            let span =
                tracing::info_span!("run", job = %j, run_id = %rid, trigger = trigger.as_str());
            let _g = span.enter();
            let obs = ServiceObserver {
                state: st2.clone(),
                job: j.clone(),
                delay: st2.runner.step_delay,
                cancel: st2.runner.cancel_flag(&j),
            };
            pipeline::run(&st2.project, &j, &opts, &obs)
                .map(|rep| rep.reused)
                .map_err(|e| e.to_string())
        })
        .await;
        // Stop renewing (and wait for a renewal in flight) before releasing, so that a late
        // renewal cannot bring the lease back.
        let _ = stop_renewing.send(());
        let _ = renew.await;
        let st2 = st.clone();
        let j = job.clone();
        let _ =
            tokio::task::spawn_blocking(move || release_lease(&st2.store, &j, &st2.runner.owner))
                .await;
        let fin = match res {
            Ok(Ok(reused)) => Finished {
                status: if reused { "reused" } else { "succeeded" }.into(),
                error: None,
            },
            Ok(Err(e)) => Finished {
                status: "failed".into(),
                error: Some(e),
            },
            Err(e) => {
                // The pipeline records its own panics; this is the backstop for a task that
                // died anyway: its ledger must not stay `running`.
                let reason = if e.is_panic() {
                    format!(
                        "the run's task panicked: {}",
                        pipeline::panic_message(e.into_panic().as_ref())
                    )
                } else {
                    format!("the run's task died: {e}")
                };
                let st2 = st.clone();
                let (j, r, why) = (job.clone(), run_id.clone(), reason.clone());
                let marked = tokio::task::spawn_blocking(move || {
                    pipeline::mark_failed(st2.store.as_ref(), &j, &r, &why)
                })
                .await;
                if !matches!(marked, Ok(Ok(_))) {
                    tracing::error!(
                        job,
                        run_id,
                        "could not record the dead run as failed in its ledger"
                    );
                }
                Finished {
                    status: "failed".into(),
                    error: Some(reason),
                }
            }
        };
        match &fin.error {
            None => tracing::info!(job, run_id, status = %fin.status, "run finished"),
            Some(e) => tracing::error!(job, run_id, error = %e, "run failed"),
        }
        // Free the job before counting, so that whoever sees the count may start the next.
        st.runner.unclaim(&job);
        st.metrics.inc(
            "c360_runs_total",
            &[
                ("job", &job),
                ("status", &fin.status),
                ("trigger", trigger.as_str()),
            ],
            1.0,
        );
        st.metrics
            .add_gauge("c360_runs_in_progress", &[("job", &job)], -1.0);
        fin
    });
    Ok((started, handle))
}

/// Releases every lease this process still holds (at shutdown, so that the next process
/// resumes the interrupted runs without waiting for the leases to expire).
pub fn release_all(state: &AppState) {
    for job in state.runner.running().keys() {
        release_lease(&state.store, job, &state.runner.owner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expired_lease_is_taken_over_by_exactly_one_replica() {
        let dir = tempfile::tempdir().unwrap();
        let store: DynStore = Arc::new(crate::store::LocalStore::new(dir.path()));
        let ttl = Duration::from_secs(30);
        // A live lease is respected; our own is renewed.
        assert!(acquire_lease(&store, "j", "a", ttl).unwrap().is_ok());
        assert_eq!(
            acquire_lease(&store, "j", "b", ttl)
                .unwrap()
                .unwrap_err()
                .owner,
            "a"
        );
        assert!(renew_lease(&store, "j", "a", "r1", ttl));
        assert!(
            !renew_lease(&store, "j", "b", "r1", ttl),
            "b does not hold it"
        );
        // Expire it, then let 8 replicas race to take it over.
        let (raw, _) = store.get_versioned(&lease_key("j")).unwrap();
        let mut l: Lease = serde_json::from_slice(&raw).unwrap();
        l.expires_at = Utc::now() - chrono::Duration::seconds(1);
        store
            .put(&lease_key("j"), &serde_json::to_vec(&l).unwrap())
            .unwrap();
        let winners: Vec<String> = (0..8)
            .map(|i| {
                let store = store.clone();
                std::thread::spawn(move || {
                    acquire_lease(&store, "j", &format!("r{i}"), ttl)
                        .unwrap()
                        .ok()
                        .map(|l| l.owner)
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .filter_map(|h| h.join().unwrap())
            .collect();
        assert_eq!(winners.len(), 1, "{winners:?}");
        // The previous owner learns it lost the lease at its next renewal.
        assert!(!renew_lease(&store, "j", "a", "r1", ttl));
        let now: Lease = serde_json::from_slice(&store.get(&lease_key("j")).unwrap()).unwrap();
        assert_eq!(now.owner, winners[0]);
    }
}
