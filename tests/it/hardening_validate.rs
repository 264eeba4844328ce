//! Validation that neither misses nor misleads (issue 19, kinds 3 and 7): PII judged by
//! lineage, non-finite and overflowing settings, `[service]` checked by `c360 validate`, one
//! broken file reported once, and as-of dates the sources cannot support.

use crate::pipeline::TestProject;

fn output(cmd: &mut std::process::Command) -> (i32, String) {
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

/// A project whose `features/` is its own copy of the shipped sets, plus `extra` files.
fn project_with_features(
    extra: &[(&str, &str)],
    job_edit: impl Fn(String) -> String,
) -> TestProject {
    let p = TestProject::new(job_edit);
    let dir = p.path().join("features");
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["rfm.toml", "churn_signals.toml"] {
        std::fs::copy(
            crate::features::repo().join("features").join(f),
            dir.join(f),
        )
        .unwrap();
    }
    for (name, text) in extra {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let cfg = std::fs::read_to_string(p.path().join("c360.toml")).unwrap();
    let cfg = cfg.replace(
        &format!(
            "features = \"{}\"",
            crate::features::repo().join("features").display()
        ),
        "features = \"features\"",
    );
    std::fs::write(p.path().join("c360.toml"), cfg).unwrap();
    p
}

/// A churn_signals copy with a feature that reads an email under an innocent name, and one
/// derived from it.
fn churn_with_contact() -> String {
    let base = std::fs::read_to_string(crate::features::repo().join("features/churn_signals.toml"))
        .unwrap();
    let (head, labels) = base.split_once("[[label]]").unwrap();
    format!(
        "{head}\n[[feature]]\nname = \"contact\"\ntable = \"customers\"\nagg = \"first\"\ncolumn = \"email\"\n\n[[feature]]\nname = \"reachable\"\nexpr = \"contact is not null\"\n\n[[label]]{labels}"
    )
}

#[test]
fn pii_is_judged_by_lineage_in_validate_run_and_show() {
    let p = project_with_features(&[], |j| {
        j.replace(
            "include = [\"rfm_segment\"",
            "include = [\"reachable\", \"rfm_segment\"",
        )
    });
    std::fs::write(
        p.path().join("features/churn_signals.toml"),
        churn_with_contact(),
    )
    .unwrap();
    // validate: refused, with the job file, the key and the PII source named.
    let (code, text) = output(p.cmd().arg("validate"));
    assert_eq!(code, 3, "{text}");
    assert!(
        text.contains("churn_weekly.toml: product.include[0]")
            && text.contains("reachable")
            && text.contains("customers.email"),
        "{text}"
    );
    assert!(text.contains("1 problem(s)"), "exactly one problem: {text}");
    // `features show` marks both PII features with their source.
    let (code, text) = output(p.cmd().args(["features", "show", "churn_signals"]));
    assert_eq!(code, 0, "{text}");
    let marked = text.split("PII by lineage").nth(1).unwrap_or_default();
    assert!(
        marked.contains("contact ")
            && marked.contains("reachable ")
            && marked.contains("from customers.email"),
        "{text}"
    );
    assert!(!marked.contains("orders_90d"), "{text}");
    // A run refuses before computing anything; nothing is published.
    p.generate(100);
    let (code, text) = p.run("2024-06-30");
    assert_eq!(code, 3, "{text}");
    assert!(text.contains("customers.email"), "{text}");
    assert!(p.latest().is_none());
    assert!(!p.store().join("products").exists());
}

#[test]
fn non_finite_and_overflowing_job_settings_are_refused() {
    let cases: Vec<(&str, &str)> = vec![
        ("[gates]\nmin_score = nan\n", "gates.min_score"),
        ("[gates]\nmax_score = inf\n", "gates.max_score"),
        ("[gates]\nmax_mean_shift = nan\n", "gates.max_mean_shift"),
        ("[gates]\nmax_mean_shift = -0.1\n", "gates.max_mean_shift"),
        (
            "[transform]\nmax_payload_mb = 2\nmax_concurrent_transforms = 2147483648\n",
            "transform.max_concurrent_transforms",
        ),
        (
            "[transform]\nmax_concurrent_transforms = 101\n",
            "transform.max_concurrent_transforms",
        ),
        (
            "[transform]\ninstance_count = 0\n",
            "transform.instance_count",
        ),
    ];
    for (table, key) in cases {
        let p = TestProject::new(|j| {
            // Replace the job's own [gates]/[transform] table with the case's.
            let name = table.lines().next().unwrap();
            let mut out = String::new();
            let mut skip = false;
            for line in j.lines() {
                if line.starts_with('[') {
                    skip = line == name;
                }
                if !skip {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            out + "\n" + table
        });
        let (code, text) = output(p.cmd().arg("validate"));
        assert_eq!(code, 3, "{key}: {text}");
        assert!(
            text.contains(&format!("churn_weekly.toml: {key}")),
            "{key}: {text}"
        );
    }
}

#[test]
fn validate_checks_the_service_section() {
    let cases = [
        ("[service]\nreload_seconds = nan\n", "reload_seconds"),
        (
            "[service]\n[[service.tokens]]\nname = \"ci\"\nsha256 = \"not-a-hash\"\nrole = \"admin\"\n",
            "tokens[0]",
        ),
        (
            "[service]\n[[service.tokens]]\nname = \"ci\"\nsha256 = \"2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae\"\nrole = \"superuser\"\n",
            "tokens[0].role",
        ),
    ];
    for (section, needle) in cases {
        let p = TestProject::new(|j| j);
        let cfg = std::fs::read_to_string(p.path().join("c360.toml")).unwrap();
        std::fs::write(p.path().join("c360.toml"), cfg + section).unwrap();
        let (code, text) = output(p.cmd().arg("validate").env_remove("C360_SERVICE_TOKENS"));
        assert_eq!(code, 3, "{section}: {text}");
        assert!(
            text.contains("c360.toml: ") && text.contains(needle),
            "{section}: {text}"
        );
    }
}

#[test]
fn one_broken_feature_file_is_reported_once() {
    let p = project_with_features(
        &[("experiment.toml", "name = \"experiment\"\nversion = 1\n[[feature]]\nname = \"x\"\ntable = \"orders\"\nagg = \"median\"\n")],
        |j| j,
    );
    // And one set file that does not parse at all.
    std::fs::write(
        p.path().join("features/broken.toml"),
        "name = \"broken\"\nversion = \n",
    )
    .unwrap();
    let (code, text) = output(p.cmd().arg("validate"));
    assert_eq!(code, 3, "{text}");
    let problems: Vec<&str> = text.lines().filter(|l| l.starts_with("  ")).collect();
    assert_eq!(
        problems.len(),
        2,
        "only the two broken files' problems: {text}"
    );
    assert!(
        problems.iter().any(|l| l.contains("experiment.toml")),
        "{text}"
    );
    assert!(problems.iter().any(|l| l.contains("broken.toml")), "{text}");
    assert!(
        !text.contains("model.toml"),
        "no follow-on errors about the models: {text}"
    );
}

#[test]
fn as_of_outside_the_data_is_refused_with_the_reason() {
    let p = TestProject::new(|j| j);
    p.generate(100);
    // Before the first customer: nobody to score (used to fail a gate with `"score" not found`).
    let (code, text) = p.run("1999-01-01");
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("before the first customer signed up"),
        "{text}"
    );
    assert!(!text.contains("not found"), "{text}");
    assert!(p.latest().is_none());
    // After the sources' last event: refused unless asked explicitly.
    let (code, text) = p.run("2999-12-31");
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("after the sources' last event") && text.contains("--allow-as-of-past-data"),
        "{text}"
    );
    assert!(p.latest().is_none(), "nothing published");
    assert!(!p.store().join("products").exists());
    // The dry run says the same before touching anything.
    let (code, text) =
        output(
            p.cmd()
                .args(["run", "churn_weekly", "--as-of", "2999-12-31", "--dry-run"]),
        );
    assert_eq!(code, 2, "{text}");
    // The flag lets a deliberate late as-of through (and it publishes).
    let (code, text) = output(p.cmd().args([
        "run",
        "churn_weekly",
        "--as-of",
        "2025-01-15",
        "--allow-as-of-past-data",
    ]));
    assert_eq!(code, 0, "{text}");
    assert_eq!(p.latest().unwrap()["as_of"], "2025-01-15");
}

/// Runs `cmd`, killing it after `secs` (a definition read without bounds would hang or eat
/// the machine's memory: that is a failure, not a wait).
fn output_within(cmd: &mut std::process::Command, secs: u64) -> (i32, String) {
    use std::process::Stdio;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if t0.elapsed().as_secs() > secs {
            let _ = child.kill();
            let _ = child.wait();
            panic!("still running after {secs} s: unbounded read");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    output_from(child.wait_with_output().unwrap())
}

fn output_from(out: std::process::Output) -> (i32, String) {
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn definition_files_are_read_with_bounds() {
    // Too big, a device and a pipe: refused before reading, naming the file.
    let p = project_with_features(&[], |j| j);
    let big = "# padding\n".repeat(500_000); // 5 MB of comments: valid TOML, too big
    std::fs::write(p.path().join("features/big.toml"), big).unwrap();
    std::os::unix::fs::symlink("/dev/zero", p.path().join("features/zero.toml")).unwrap();
    let (code, text) = output_within(p.cmd().arg("validate"), 60);
    assert_eq!(code, 3, "{text}");
    assert!(
        text.contains("big.toml") && text.contains("over the limit"),
        "{text}"
    );
    assert!(
        text.contains("zero.toml") && text.contains("not a regular file"),
        "{text}"
    );
    // A model artifact that never ends.
    let q = TestProject::new(|j| j);
    q.use_local_model();
    let artifact = q.path().join("models/churn_xgb/xgboost-model.json");
    std::fs::remove_file(&artifact).unwrap();
    std::os::unix::fs::symlink("/dev/urandom", &artifact).unwrap();
    let (code, text) = output_within(q.cmd().arg("validate"), 60);
    assert_eq!(code, 3, "{text}");
    assert!(
        text.contains("xgboost-model.json") && text.contains("not a regular file"),
        "{text}"
    );
}

#[test]
fn a_broken_set_file_is_reported_once_by_every_model_kind() {
    // The set the shipped xgboost and CLV models all use is the broken one.
    let p = project_with_features(&[], |j| j);
    std::fs::write(
        p.path().join("features/rfm.toml"),
        format!("x = {}\n", "[".repeat(100_000)),
    )
    .unwrap();
    let (code, text) = output(p.cmd().arg("validate"));
    assert_eq!(code, 3, "{text}");
    assert!(
        text.contains("1 problem(s)") && text.contains("rfm.toml"),
        "{text}"
    );
}

#[test]
fn features_build_refuses_as_of_dates_the_data_cannot_support() {
    let p = TestProject::new(|j| j);
    p.generate(100);
    let build = |as_of: &str, extra: &[&str]| {
        output(
            p.cmd()
                .args(["features", "build", "rfm", "--as-of", as_of])
                .args(extra),
        )
    };
    let (code, text) = build("9999-12-31", &[]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("after the sources' last event"), "{text}");
    let (code, text) = build("1000-01-01", &[]);
    assert_eq!(code, 2, "{text}");
    assert!(
        text.contains("before the first customer signed up"),
        "{text}"
    );
    assert!(!p.store().join("features").exists(), "nothing committed");
    let (code, text) = build("2025-01-15", &["--allow-as-of-past-data"]);
    assert_eq!(code, 0, "{text}");
    // `models fit` builds the same snapshot: the same refusal, before anything is written.
    let fitted = crate::features::repo().join("models/clv_bgnbd/fitted.json");
    let before = std::fs::read(&fitted).unwrap();
    let (code, text) = output(
        p.cmd().args([
            "models",
            "fit",
            &crate::features::repo()
                .join("models/clv_bgnbd")
                .display()
                .to_string(),
            "--as-of",
            "2025-06-30",
        ]),
    );
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("after the sources' last event"), "{text}");
    assert_eq!(
        std::fs::read(&fitted).unwrap(),
        before,
        "fitted.json untouched"
    );
}

#[test]
fn output_piped_into_a_reader_that_stops_early_ends_quietly() {
    use std::process::Stdio;
    let mut child = crate::features::c360()
        .current_dir(crate::features::repo())
        .args(["features", "show", "churn_signals"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // the reader is gone before the first line
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        matches!(out.status.code(), Some(0) | Some(141)),
        "{:?} {err}",
        out.status
    );
}

#[test]
fn settings_validate_used_to_pass_are_refused_with_their_key() {
    let cases: Vec<(&str, &str)> = vec![
        ("[service]\ntokens_env = \"\"\n", "tokens_env"),
        (
            "[aws.sagemaker]\nprices = \"no-such-prices.toml\"\n",
            "aws.sagemaker.prices",
        ),
        (
            "[aws.sagemaker]\nthroughput_rows_per_vcpu = 1e-300\n",
            "throughput_rows_per_vcpu",
        ),
        (
            "[aws.sagemaker]\nthroughput_rows_per_vcpu = 1e308\n",
            "throughput_rows_per_vcpu",
        ),
        (
            "[aws.sagemaker]\nmax_poll_seconds = -1.0\n",
            "max_poll_seconds",
        ),
    ];
    for (section, key) in cases {
        let p = TestProject::new(|j| j);
        let cfg = std::fs::read_to_string(p.path().join("c360.toml")).unwrap();
        std::fs::write(p.path().join("c360.toml"), cfg + section).unwrap();
        let (code, text) = output(p.cmd().arg("validate").env_remove("C360_SERVICE_TOKENS"));
        assert_eq!(code, 3, "{section}: {text}");
        assert!(text.contains(key), "{section}: {text}");
    }
    for t in ["", "ml.bogus.99xlarge", "ml.m5.xlarge\u{202e}"] {
        let p = TestProject::new(|j| {
            j.replace(
                "[transform]\n",
                &format!("[transform]\ninstance_type = \"{t}\"\n"),
            )
        });
        let (code, text) = output(p.cmd().arg("validate"));
        assert_eq!(code, 3, "{t:?}: {text}");
        assert!(
            text.contains("churn_weekly.toml: transform.instance_type"),
            "{t:?}: {text}"
        );
    }
}

/// The 1-based line of the `nth` (0-based) line of `text` starting with `prefix`.
fn line_of(text: &str, prefix: &str, nth: usize) -> usize {
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.starts_with(prefix))
        .nth(nth)
        .map(|(i, _)| i + 1)
        .unwrap()
}

#[test]
fn every_problem_of_a_model_toml_is_reported_with_its_line() {
    let p = TestProject::new(|j| j);
    p.use_local_model();
    let spec = p.path().join("models/churn_xgb/model.toml");
    let text = std::fs::read_to_string(&spec)
        .unwrap()
        .replace(
            "objective = \"binary:logistic\"",
            "objective = \"binary:nope\"",
        )
        .replace(
            "content_type = \"text/csv\"",
            "content_type = \"application/json\"",
        )
        .replace("below = 0.9916", "below = 0.5");
    std::fs::write(&spec, &text).unwrap();
    let (code, out) = output(p.cmd().arg("validate"));
    assert_eq!(code, 3, "{out}");
    let file = "models/churn_xgb/model.toml";
    for (key, line) in [
        ("content_type", line_of(&text, "content_type", 0)),
        ("objective", line_of(&text, "objective", 0)),
        ("risk_bands[1].below", line_of(&text, "below", 1)),
    ] {
        let found = out
            .lines()
            .find(|l| l.contains(&format!("{file}: {key}: ")))
            .unwrap_or_else(|| panic!("no {key} problem in: {out}"));
        assert!(found.ends_with(&format!("(line {line})")), "{key}: {found}");
    }
    assert!(out.contains("3 problem(s)"), "{out}");
}

#[test]
fn validate_job_reports_what_validate_all_reports_for_that_job() {
    use c360::project::Project;
    let p = TestProject::new(|j| j);
    let project = Project::load(Some(&p.path().join("c360.toml"))).unwrap();
    let all = project.validate_all();
    assert!(all.problems.is_empty(), "{:?}", all.problems);
    let job = &all.jobs[0];
    assert!(project.validate_job(job).is_empty());
    let p = TestProject::new(|j| j.replace("model = \"churn_xgb\"", "model = \"no_such_model\""));
    let project = Project::load(Some(&p.path().join("c360.toml"))).unwrap();
    let all = project.validate_all();
    let job = &all.jobs[0];
    let mine = project.validate_job(job);
    assert_eq!(mine.len(), 1, "{mine:?}");
    assert_eq!(mine[0].key, "model");
    assert!(
        mine[0]
            .reason
            .starts_with("no model no_such_model under models/"),
        "{mine:?}"
    );
    let keys = |d: &[c360::diagnostic::Diagnostic]| {
        d.iter()
            .map(|d| (d.file.clone(), d.key.clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&all.problems), keys(&mine));
}
