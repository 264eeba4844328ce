//! Unit tests of the ledger: orphan reaping, marking dead runs failed, and loading the
//! ledgers earlier releases wrote.

use super::*;
use crate::pipeline::record::{GateStats, StepDetail};
use crate::store;
use serde_json::json;

fn ledger(run_id: &str, owner: Option<String>, idle_secs: i64) -> Ledger {
    let t = Utc::now() - chrono::Duration::seconds(idle_secs);
    Ledger {
        job: "j".parse().unwrap(),
        run_id: run_id.into(),
        as_of: NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
        status: RunStatus::Running,
        backend: Backend::Local,
        started_at: t,
        updated_at: t,
        finished_at: None,
        attempts: 1,
        steps: vec![StepRecord {
            name: Step::Transform,
            status: StepStatus::Running,
            started_at: t,
            finished_at: None,
            seconds: None,
            rows: None,
            detail: StepDetail::None,
            error: None,
        }],
        error: None,
        product: None,
        created_by: "c360".into(),
        owner,
        notes: vec![],
        extra: BTreeMap::new(),
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
    let l: Ledger = doc::get_json(&st, &ledger_key("j", "dead"))
        .unwrap()
        .unwrap();
    assert_eq!(l.status, RunStatus::Failed);
    assert_eq!(l.steps[0].status, StepStatus::Failed);
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
    st.put(&layout::lease("j"), lease.to_string().as_bytes())
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
    let l: Ledger = doc::get_json(&st, &ledger_key("j", "r")).unwrap().unwrap();
    assert_eq!(
        l.error.as_deref(),
        Some("transform: the run's task panicked: boom")
    );
}

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ledger_v0_1")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The ledger's JSON written again equals the file it was read from, field for field.
fn assert_round_trip(raw: &[u8], l: &Ledger) {
    let before: Value = serde_json::from_slice(raw).unwrap();
    let after = serde_json::to_value(l).unwrap();
    assert_eq!(before, after);
}

#[test]
fn a_local_run_json_of_release_0_1_loads_typed() {
    let raw = fixture("run_local.json");
    let l: Ledger = serde_json::from_slice(&raw).unwrap();
    assert_eq!(l.job, "churn_weekly");
    assert_eq!(l.run_id, "2024-09-30-fc653c2e");
    assert_eq!(l.as_of, NaiveDate::from_ymd_opt(2024, 9, 30).unwrap());
    assert_eq!(l.status, RunStatus::Succeeded);
    assert_eq!(l.backend, Backend::Local);
    assert_eq!(l.attempts, 1);
    assert_eq!(l.steps_done(), Step::ALL.to_vec());
    assert!(l.extra.is_empty(), "{:?}", l.extra);
    let Some(StepDetail::Features(f)) = l.step(Step::Features).map(|s| &s.detail) else {
        panic!("features detail: {:?}", l.step(Step::Features))
    };
    assert_eq!(f["rfm"].snapshot, "features/rfm/v1/as_of=2024-09-30");
    assert_eq!(f["churn_signals"].rows, 248);
    assert_eq!(f["churn_signals"].source_fingerprints.len(), 4);
    let Some(StepDetail::TransformInput(i)) = l.step(Step::TransformInput).map(|s| &s.detail)
    else {
        panic!("transform_input detail")
    };
    assert_eq!(i.files.len(), 4);
    assert_eq!(i.files.iter().map(|f| f.rows).sum::<u64>(), 248);
    assert!(i.plan.is_none());
    let Some(StepDetail::Transform(t)) = l.step(Step::Transform).map(|s| &s.detail) else {
        panic!("transform detail")
    };
    assert_eq!(t.backend, Backend::Local);
    assert_eq!(t.job_name, "c360-churn-weekly-2024-09-30-fc653c2e");
    assert_eq!(
        (t.records, t.requests, t.max_payload_mb),
        (248, Some(4), Some(6))
    );
    let Some(StepDetail::Gates(g)) = l.step(Step::Gates).map(|s| &s.detail) else {
        panic!("gates detail")
    };
    assert_eq!((g.rows, g.distinct, g.previous_mean), (248, 246, None));
    assert_eq!(g.risk_bands["high"], 52);
    let product = l.product.as_ref().unwrap();
    assert_eq!(
        product.partition,
        "products/customer_churn_scores/v1/as_of=2024-09-30"
    );
    assert_eq!(&product.score_statistics, g);
    assert_round_trip(&raw, &l);
}

#[test]
fn a_sagemaker_run_json_of_release_0_1_loads_typed_with_its_plan() {
    let raw = fixture("run_sagemaker.json");
    let l: Ledger = serde_json::from_slice(&raw).unwrap();
    assert_eq!(l.backend, Backend::SageMaker);
    assert_eq!(l.status, RunStatus::Succeeded);
    let Some(StepDetail::TransformInput(i)) = l.step(Step::TransformInput).map(|s| &s.detail)
    else {
        panic!("transform_input detail")
    };
    let plan = i.plan.as_ref().expect("the SageMaker plan");
    assert_eq!(plan.instance_type, "ml.m5.large");
    assert_eq!(
        (plan.instance_count, plan.parts, plan.max_payload_mb),
        (1, 1, 6)
    );
    assert!(plan.est_cost_usd > 0.0 && plan.meets_deadline);
    let Some(StepDetail::Transform(t)) = l.step(Step::Transform).map(|s| &s.detail) else {
        panic!("transform detail")
    };
    assert_eq!(t.backend, Backend::SageMaker);
    assert_eq!(t.model.as_deref(), Some("c360-churn-xgb-89c9f3cc"));
    assert_eq!(t.instance_type.as_deref(), Some("ml.m5.large"));
    assert_eq!(t.estimated_cost_usd, Some(plan.est_cost_usd));
    assert_eq!(t.requests, None);
    assert_round_trip(&raw, &l);
}

#[test]
fn unknown_fields_are_kept_and_a_nan_statistic_is_null() {
    let mut v: Value = serde_json::from_slice(&fixture("run_local.json")).unwrap();
    v["written_by_a_newer_release"] = json!({"x": 1});
    v["steps"][3]["detail"]["mean"] = Value::Null;
    let l: Ledger = serde_json::from_value(v.clone()).unwrap();
    assert_eq!(l.extra["written_by_a_newer_release"], json!({"x": 1}));
    let Some(StepDetail::Gates(GateStats { mean, .. })) = l.step(Step::Gates).map(|s| &s.detail)
    else {
        panic!("gates detail")
    };
    assert!(mean.is_nan());
    assert_eq!(serde_json::to_value(&l).unwrap(), v);
}

#[test]
fn steps_and_statuses_keep_their_json_names() {
    for s in Step::ALL {
        assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
    }
    assert_eq!(serde_json::to_value(StepStatus::Done).unwrap(), "done");
    assert_eq!(
        serde_json::to_value(RunStatus::Succeeded).unwrap(),
        "succeeded"
    );
    assert_eq!(
        serde_json::to_value(Backend::SageMaker).unwrap(),
        "sagemaker"
    );
    assert_eq!("sagemaker".parse::<Backend>().unwrap(), Backend::SageMaker);
    assert_eq!(
        "gpu".parse::<Backend>().unwrap_err().to_string(),
        "backend gpu: unknown (use local or sagemaker)"
    );
}

#[test]
fn dry_run_plans_of_release_0_1_read_and_write_the_same_json() {
    for name in ["plan_local_dry_run.json", "plan_sagemaker_dry_run.json"] {
        let raw = fixture(name);
        let plan: crate::pipeline::RunPlan = serde_json::from_slice(&raw).unwrap();
        let before: Value = serde_json::from_slice(&raw).unwrap();
        assert_eq!(serde_json::to_value(&plan).unwrap(), before, "{name}");
        // Same text, key order included (`c360 run --dry-run` prints it).
        assert_eq!(
            serde_json::to_string_pretty(&plan).unwrap(),
            serde_json::to_string_pretty(&before).unwrap(),
            "{name}"
        );
    }
}

#[test]
fn a_damaged_ledger_is_absent_and_a_damaged_lease_is_no_lease() {
    let dir = tempfile::tempdir().unwrap();
    let st = store::LocalStore::new(dir.path());
    save_ledger(&st, &ledger("good", None, 0)).unwrap();
    st.put(&ledger_key("j", "bad"), b"{not json").unwrap();
    assert_eq!(load_ledger(&st, "j", "bad").unwrap(), None);
    assert_eq!(load_ledger(&st, "j", "missing").unwrap(), None);
    let all: Vec<String> = ledgers(&st, "j")
        .unwrap()
        .into_iter()
        .map(|l| l.run_id)
        .collect();
    assert_eq!(all, ["good"]);
    // A live lease is read; a damaged or expired one holds nothing.
    let live = json!({"owner": "o", "job": "j", "run_id": "good",
        "acquired_at": Utc::now(), "expires_at": Utc::now() + chrono::Duration::seconds(60)});
    st.put(&layout::lease("j"), live.to_string().as_bytes())
        .unwrap();
    assert_eq!(
        live_lease(&st, "j"),
        Some(("o".to_string(), Some("good".to_string())))
    );
    st.put(&layout::lease("j"), b"[]").unwrap();
    assert_eq!(live_lease(&st, "j"), None);
    let expired = json!({"owner": "o", "job": "j", "run_id": null,
        "acquired_at": Utc::now(), "expires_at": Utc::now() - chrono::Duration::seconds(1)});
    st.put(&layout::lease("j"), expired.to_string().as_bytes())
        .unwrap();
    assert_eq!(live_lease(&st, "j"), None);
}
