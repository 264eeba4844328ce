//! Schedules in the published product: the contract's freshness follows the job's cron
//! schedule (its nominal interval), not a guess from the number of fields.

use crate::pipeline::TestProject;

#[test]
fn a_monthly_job_publishes_a_monthly_freshness() {
    let p =
        TestProject::new(|j| j.replace("schedule = \"0 6 * * MON\"", "schedule = \"0 6 1 * *\""));
    p.generate(300);
    let (code, out) = p.run("2024-09-30");
    assert_eq!(code, 0, "{out}");
    let contract = p
        .store()
        .join("products/customer_churn_scores/contract.yaml");
    let text = std::fs::read_to_string(&contract).unwrap();
    // The longest gap between two fires of "on the 1st" is a 31-day month.
    assert!(
        text.contains("A new version every 31 day(s) (cron 0 6 1 * *)"),
        "{text}"
    );
    assert!(!text.contains("every 1 day(s)"), "{text}");
}

#[test]
fn a_weekly_job_keeps_its_weekly_freshness() {
    let p = TestProject::new(|j| j);
    p.generate(300);
    let (code, out) = p.run("2024-09-29");
    assert_eq!(code, 0, "{out}");
    let text = std::fs::read_to_string(
        p.store()
            .join("products/customer_churn_scores/contract.yaml"),
    )
    .unwrap();
    assert!(
        text.contains("A new version every 7 day(s) (cron 0 6 * * MON)"),
        "{text}"
    );
}
