//! Schedules in the published product: the contract's freshness follows the job's cron
//! schedule (its nominal interval), not a guess from the number of fields.

use crate::pipeline::TestProject;

/// The contract's `frequency` SLA property: (value in days, description).
fn frequency(p: &TestProject) -> (u64, String) {
    let text = std::fs::read_to_string(
        p.store()
            .join("products/customer_churn_scores/contract.yaml"),
    )
    .unwrap();
    let doc: serde_json::Value = yaml_serde::from_str(&text).unwrap();
    let f = doc["slaProperties"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["property"] == "frequency")
        .unwrap_or_else(|| panic!("no frequency in {text}"));
    assert_eq!(f["unit"], "d");
    (
        f["value"].as_u64().unwrap(),
        f["description"].as_str().unwrap().to_string(),
    )
}

#[test]
fn a_monthly_job_publishes_a_monthly_freshness() {
    let p =
        TestProject::new(|j| j.replace("schedule = \"0 6 * * MON\"", "schedule = \"0 6 1 * *\""));
    p.generate(300);
    let (code, out) = p.run("2024-09-30");
    assert_eq!(code, 0, "{out}");
    // The longest gap between two fires of "on the 1st" is a 31-day month.
    assert_eq!(
        frequency(&p),
        (31, "A new version every 31 day(s) (cron 0 6 1 * *)".into())
    );
}

#[test]
fn a_weekly_job_keeps_its_weekly_freshness() {
    let p = TestProject::new(|j| j);
    p.generate(300);
    let (code, out) = p.run("2024-09-29");
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        frequency(&p),
        (7, "A new version every 7 day(s) (cron 0 6 * * MON)".into())
    );
}
