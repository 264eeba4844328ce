//! The cron scheduler: every job in `jobs/` on its schedule (crontab as people write it,
//! 5 fields, or 6 with seconds first) in the job's time zone.
//!
//! State lives in the store, next to the run ledgers: `runs/<job>/schedule.json` holds the
//! last fire time handled, and each fire claims `runs/<job>/ticks/<time>.json` with a
//! conditional create, so a tick fires once even with two replicas. A fire while a run of
//! the job is in progress is recorded as `busy` (never a second run). After downtime the
//! job's `catch_up` policy decides: `skip`, `latest` (the most recent missed fire once) or
//! `all` (each missed fire in order). A run's as-of date is the job's rule resolved on the
//! fire's date in the job's time zone.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::pipeline::job::{self, CatchUp, Job};
use crate::pipeline::{self, RunStatus};
use crate::schedule::CronSchedule;
use crate::store::doc::{self, Document};
use crate::store::{layout, DynStore, StoreError};

use super::runner::{self, Trigger};
use super::{AppState, ServiceError};

/// A job's schedule, as the scheduler runs it (the cron expression and its zone are parsed
/// once, by the job: [`CronSchedule`]).
#[derive(Debug, Clone)]
pub struct Schedule {
    pub job: String,
    pub cron: CronSchedule,
    pub tz: Tz,
    pub catch_up: CatchUp,
    pub as_of: job::AsOfRule,
}

impl Schedule {
    pub fn of(job: &Job) -> Result<Schedule, String> {
        Ok(Schedule {
            job: job.name.to_string(),
            cron: job.schedule.clone(),
            tz: job.schedule.tz,
            catch_up: job.catch_up,
            as_of: job.as_of.clone(),
        })
    }

    /// The first fire strictly after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.next_after(t)
    }

    /// Fires in `(after, until]`, at most `cap` (the most recent ones).
    pub fn between(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
        cap: usize,
    ) -> Vec<DateTime<Utc>> {
        let mut out = std::collections::VecDeque::new();
        let mut t = after;
        while let Some(n) = self.next_after(t) {
            if n > until {
                break;
            }
            out.push_back(n);
            if out.len() > cap {
                out.pop_front();
            }
            t = n;
        }
        out.into()
    }

    /// The date the as-of rule sees for a fire at `t`.
    pub fn local_date(&self, t: DateTime<Utc>) -> chrono::NaiveDate {
        t.with_timezone(&self.tz).date_naive()
    }
}

/// `runs/<job>/schedule.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScheduleState {
    pub job: String,
    /// The last fire time handled (fired, found busy, or skipped by catch-up).
    pub last_fire: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub owner: String,
}

/// `runs/<job>/ticks/<time>.json`: one fire.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fire {
    pub job: String,
    pub tick: DateTime<Utc>,
    pub fired_at: DateTime<Utc>,
    pub owner: String,
    /// `started`, `busy` (a run was in progress) or `failed` (could not start).
    pub outcome: String,
    pub catch_up: bool,
    pub run_id: Option<String>,
    pub as_of: Option<chrono::NaiveDate>,
    pub error: Option<String>,
}

impl Document for ScheduleState {
    const WHAT: &'static str = "schedule state";
}

impl Document for Fire {
    const WHAT: &'static str = "scheduled fire";
}

/// The job's schedule state ([`layout::schedule_state`]).
pub fn state_key(job: &str) -> String {
    layout::schedule_state(job)
}

/// The record of one fire of the job ([`layout::tick`]).
pub fn tick_key(job: &str, tick: DateTime<Utc>) -> String {
    layout::tick(job, tick)
}

/// The job's schedule state; `None` when there is none, or when it is damaged (the
/// scheduler then starts afresh and rewrites it at its next fire).
pub fn load_state(store: &DynStore, job: &str) -> Result<Option<ScheduleState>, StoreError> {
    match doc::get_json(store.as_ref(), &state_key(job)) {
        Err(e @ StoreError::Corrupt { .. }) => {
            tracing::warn!(job, error = %e, "ignoring an unreadable schedule state");
            Ok(None)
        }
        r => r,
    }
}

/// The most recent fires of a job, newest first.
pub fn recent_fires(store: &DynStore, job: &str, n: usize) -> Result<Vec<Fire>, StoreError> {
    let mut keys: Vec<String> = store
        .list(&layout::ticks(job))?
        .into_iter()
        .map(|o| o.key)
        .filter(|k| k.ends_with(".json"))
        .collect();
    keys.sort();
    keys.reverse();
    let mut out = Vec::new();
    for k in keys.into_iter().take(n) {
        // A damaged record hides that one fire, not the job's history.
        match doc::get_json::<Fire>(store.as_ref(), &k) {
            Ok(Some(f)) => out.push(f),
            Ok(None) | Err(StoreError::Corrupt { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, ServiceError> {
    Ok(tokio::task::spawn_blocking(f).await??)
}

async fn save_state(state: &Arc<AppState>, job: &str, last_fire: DateTime<Utc>) {
    let s = ScheduleState {
        job: job.into(),
        last_fire,
        updated_at: Utc::now(),
        owner: state.runner.owner.clone(),
    };
    let store = state.store.clone();
    let key = state_key(job);
    if let Err(e) = blocking(move || doc::put_json(store.as_ref(), &key, &s)).await {
        tracing::error!(job, error = %e, "cannot save the schedule state");
    }
}

/// Claims a tick (conditional create); false when another fire (here or in another
/// replica) already took it.
async fn claim(state: &Arc<AppState>, fire: &Fire) -> Result<bool, ServiceError> {
    let store = state.store.clone();
    let key = tick_key(&fire.job, fire.tick);
    let body = fire.clone();
    blocking(move || doc::create_json(store.as_ref(), &key, &body)).await
}

async fn record(state: &Arc<AppState>, fire: &Fire) {
    let store = state.store.clone();
    let key = tick_key(&fire.job, fire.tick);
    let body = fire.clone();
    let _ = blocking(move || doc::put_json(store.as_ref(), &key, &body)).await;
}

/// Fires one tick; with `wait`, also waits for the run to end (catch-up runs go in order).
async fn fire(
    state: &Arc<AppState>,
    s: &Schedule,
    tick: DateTime<Utc>,
    catch_up: bool,
    wait: bool,
) {
    let mut f = Fire {
        job: s.job.clone(),
        tick,
        fired_at: Utc::now(),
        owner: state.runner.owner.clone(),
        outcome: "claimed".into(),
        catch_up,
        run_id: None,
        as_of: None,
        error: None,
    };
    match claim(state, &f).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::debug!(job = %s.job, %tick, "tick already fired");
            return;
        }
        Err(e) => {
            tracing::error!(job = %s.job, %tick, error = %e, "cannot claim the tick");
            return;
        }
    }
    let trigger = if catch_up {
        Trigger::CatchUp
    } else {
        Trigger::Schedule
    };
    let today = Some(s.local_date(tick));
    f.as_of = today.map(|d| s.as_of.resolve(d));
    let mut handle = None;
    if state.runner.is_running(&s.job) {
        f.outcome = "busy".into();
    } else {
        match runner::start(state, &s.job, None, today, trigger).await {
            Ok((started, h)) => {
                f.outcome = "started".into();
                f.run_id = Some(started.run_id);
                f.as_of = Some(started.as_of);
                handle = Some(h);
            }
            Err(ServiceError::Conflict(m)) => {
                f.outcome = "busy".into();
                f.error = Some(m);
            }
            Err(e) => {
                f.outcome = "failed".into();
                f.error = Some(e.to_string());
            }
        }
    }
    tracing::info!(job = %s.job, tick = %tick.to_rfc3339(), outcome = %f.outcome, run_id = ?f.run_id, catch_up, "scheduler fire");
    state.metrics.inc(
        "c360_scheduler_fires_total",
        &[("job", &s.job), ("outcome", &f.outcome)],
        1.0,
    );
    record(state, &f).await;
    if let (true, Some(h)) = (wait, handle) {
        let _ = h.await;
    }
}

/// How many missed fires `all` catches up at most.
const CATCH_UP_CAP: usize = 1000;

async fn job_loop(state: Arc<AppState>, s: Schedule, mut shutdown: watch::Receiver<bool>) {
    let job = s.job.clone();
    let st = state.store.clone();
    let j = job.clone();
    let now = Utc::now();
    let mut last = match blocking(move || load_state(&st, &j)).await {
        Ok(Some(x)) => x.last_fire,
        Ok(None) => {
            save_state(&state, &job, now).await;
            now
        }
        Err(e) => {
            tracing::error!(job, error = %e, "cannot read the schedule state; starting from now");
            now
        }
    };
    let missed = s.between(last, now, CATCH_UP_CAP);
    if let Some(latest) = missed.last().copied() {
        tracing::info!(job, missed = missed.len(), policy = ?s.catch_up, "fires missed while down");
        match s.catch_up {
            CatchUp::Skip => {
                state.metrics.inc(
                    "c360_scheduler_fires_total",
                    &[("job", &job), ("outcome", "catch_up_skipped")],
                    missed.len() as f64,
                );
            }
            CatchUp::Latest => fire(&state, &s, latest, true, true).await,
            CatchUp::All => {
                for t in &missed {
                    if *shutdown.borrow() {
                        return;
                    }
                    fire(&state, &s, *t, true, true).await;
                    save_state(&state, &job, *t).await;
                }
            }
        }
        last = latest;
        save_state(&state, &job, last).await;
    }
    loop {
        let Some(next) = s.next_after(last) else {
            tracing::warn!(job, "the schedule has no next fire");
            return;
        };
        // Never early: sleep again if the wall clock is behind the tick.
        loop {
            let wait = (next - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            if wait.is_zero() {
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
        }
        if *shutdown.borrow() {
            return;
        }
        fire(&state, &s, next, false, false).await;
        last = next;
        save_state(&state, &job, last).await;
    }
}

/// Starts one scheduler task per valid job; invalid jobs are logged and left out.
pub fn start(
    state: &Arc<AppState>,
    shutdown: &watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let (jobs, errs) = job::load_all(&state.project.jobs_dir());
    for e in errs {
        tracing::error!(error = %e, "job not scheduled");
    }
    let mut handles = Vec::new();
    for j in jobs {
        match Schedule::of(&j) {
            Ok(s) => {
                tracing::info!(job = %s.job, schedule = %j.schedule.expr, timezone = %s.tz, catch_up = ?s.catch_up, "scheduled");
                handles.push(tokio::spawn(job_loop(state.clone(), s, shutdown.clone())));
            }
            Err(e) => tracing::error!(job = %j.name, error = %e, "job not scheduled"),
        }
    }
    handles
}

/// Resumes runs a previous process left `running` (killed mid-run): retries while another
/// holder's lease is live, until the run is resumed, finished elsewhere, or shutdown.
pub fn resume_interrupted(
    state: &Arc<AppState>,
    shutdown: &watch::Receiver<bool>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let (jobs, _) = job::load_all(&state.project.jobs_dir());
    let mut handles = Vec::new();
    for j in jobs {
        let state = state.clone();
        let mut shutdown = shutdown.clone();
        let job = j.name.clone();
        handles.push(tokio::spawn(async move {
            loop {
                let st = state.store.clone();
                let jn = job.clone();
                let newest =
                    tokio::task::spawn_blocking(move || pipeline::ledgers(st.as_ref(), &jn).ok())
                        .await
                        .ok()
                        .flatten()
                        .and_then(|l| l.into_iter().next());
                let Some(l) = newest.filter(|l| l.status == RunStatus::Running) else {
                    return;
                };
                if !state.runner.is_running(&job) {
                    match runner::start(&state, &job, Some(l.as_of), None, Trigger::Resume).await {
                        Ok((s, _)) => {
                            tracing::info!(job = %job, run_id = %s.run_id, "resuming an interrupted run");
                            return;
                        }
                        Err(ServiceError::Conflict(_)) => {}
                        Err(e) => {
                            tracing::error!(job = %job, error = %e, "cannot resume the interrupted run");
                            // Not resumable: it must not stay `running` without an owner.
                            let st = state.store.clone();
                            let jn = job.clone();
                            let _ = tokio::task::spawn_blocking(move || {
                                pipeline::reap_orphans(st.as_ref(), &jn, "")
                            })
                            .await;
                            return;
                        }
                    }
                }
                let wait = (state.runner.lease_ttl / 2).max(Duration::from_millis(500));
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => return,
                }
            }
        }));
    }
    handles
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sched(expr: &str, tz: &str) -> Schedule {
        let cron = CronSchedule::parse(expr, tz).unwrap();
        Schedule {
            job: "j".into(),
            tz: cron.tz,
            cron,
            catch_up: CatchUp::Skip,
            as_of: job::AsOfRule::Yesterday,
        }
    }

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn crontab_as_people_write_it_in_a_time_zone() {
        // Mondays 06:00 in Berlin (UTC+1 in winter, UTC+2 in summer).
        let s = sched("0 6 * * MON", "Europe/Berlin");
        assert_eq!(
            s.next_after(t("2024-01-03T00:00:00Z")),
            Some(t("2024-01-08T05:00:00Z"))
        );
        assert_eq!(
            s.next_after(t("2024-07-03T00:00:00Z")),
            Some(t("2024-07-08T04:00:00Z"))
        );
        // Seconds first, six fields.
        let s = sched("*/2 * * * * *", "UTC");
        assert_eq!(
            s.next_after(t("2024-01-01T00:00:01Z")),
            Some(t("2024-01-01T00:00:02Z"))
        );
        assert_eq!(
            s.next_after(t("2024-01-01T00:00:02Z")),
            Some(t("2024-01-01T00:00:04Z"))
        );
        assert_eq!(
            s.next_after(t("2024-01-01T00:00:02.97Z")),
            Some(t("2024-01-01T00:00:04Z"))
        );
        assert_eq!(
            s.next_after(t("2024-01-01T00:00:01.5Z")),
            Some(t("2024-01-01T00:00:02Z"))
        );
    }

    #[test]
    fn missed_fires_between() {
        let s = sched("0 0 * * *", "UTC");
        let m = s.between(t("2024-01-01T00:00:00Z"), t("2024-01-04T12:00:00Z"), 100);
        assert_eq!(
            m,
            vec![
                t("2024-01-02T00:00:00Z"),
                t("2024-01-03T00:00:00Z"),
                t("2024-01-04T00:00:00Z")
            ]
        );
        let m = s.between(t("2024-01-01T00:00:00Z"), t("2024-01-04T12:00:00Z"), 2);
        assert_eq!(
            m,
            vec![t("2024-01-03T00:00:00Z"), t("2024-01-04T00:00:00Z")]
        );
        // The as-of rule sees the local date: 23:30 UTC is the next day in Tokyo.
        let s = sched("30 23 * * *", "Asia/Tokyo");
        assert_eq!(
            s.local_date(t("2024-01-01T23:30:00Z")).to_string(),
            "2024-01-02"
        );
    }
}
