//! Names and values parsed at the edge (`c360::names`): what a user sees when one is wrong.

use crate::features::c360;
use crate::pipeline::TestProject;

fn output(c: &mut std::process::Command) -> (i32, String) {
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn a_bad_as_of_names_the_form_to_write() {
    for (arg, why) in [
        ("2024-13-01", "input is out of range"),
        ("30/06/2024", "input contains invalid characters"),
    ] {
        let (code, text) = output(c360().args(["run", "churn_weekly", "--as-of", arg]));
        assert_eq!(code, 2, "{text}");
        assert!(
            text.contains(&format!(
                "\"{arg}\" is not a date ({why}): write it as YYYY-MM-DD, e.g. 2024-06-30"
            )),
            "{text}"
        );
    }
}

#[test]
fn every_bad_name_of_a_job_is_reported_with_its_rule() {
    let p = TestProject::new(|j| {
        j.replace("model = \"churn_xgb\"", "model = \"../churn_xgb\"")
            .replace(
                "name = \"customer_churn_scores\"",
                "name = \"Customer Churn Scores\"",
            )
    });
    let (code, text) = output(p.cmd().arg("validate"));
    assert_eq!(code, 3, "{text}");
    assert!(
        text.contains("\"../churn_xgb\" is not a valid model name: one folder name under models/ (1-255 bytes; not '.' or '..'; no '/', '\\' or control characters)"),
        "{text}"
    );
    assert!(
        text.contains("\"Customer Churn Scores\" is not a valid product name: 1-48 lowercase letters, digits, '-' and '_', starting with a letter"),
        "{text}"
    );
}

#[test]
fn a_store_uri_with_an_unknown_scheme_or_bad_bucket_fails_validate() {
    for (uri, reason) in [
        (
            "ftp://host/x",
            "unknown scheme ftp:// (use a path, file:// or s3://)",
        ),
        (
            "s3://My_Bucket/x",
            "the bucket name must be 3-63 lowercase letters, digits, '-' or '.'",
        ),
    ] {
        let p = TestProject::new(|j| j);
        let toml = std::fs::read_to_string(p.path().join("c360.toml")).unwrap();
        std::fs::write(
            p.path().join("c360.toml"),
            toml.replace("uri = \"store\"", &format!("uri = \"{uri}\"")),
        )
        .unwrap();
        let (code, text) = output(p.cmd().arg("validate"));
        assert_ne!(code, 0, "{text}");
        assert!(
            text.contains("store.uri") && text.contains(reason),
            "{uri}: {text}"
        );
    }
}
