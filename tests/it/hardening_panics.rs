//! Issue 19, kind 2: the reproducers of "a panic or abort reachable from input", each with
//! the clear error (file, key, position, allowed range) and the documented exit code:
//! non-ASCII text in expressions, expressions nested 20,000 deep or summing 100,000 terms
//! (through `validate` and through `c360 serve`'s `GET /feature-sets`), model counts like
//! `num_class = "1e19"`, `shutdown_grace_seconds = 9223372036854775807`, and numeric
//! command-line arguments out of range.

use std::path::Path;
use std::process::Output;

use c360::model::Booster;
use serde_json::Value;

use crate::features::{c360, repo};
use crate::pipeline::TestProject;
use crate::service::{configure, Http, Service, ADMIN};

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr)
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

/// A project whose features folder holds the shipped sets plus `extra` files, with no
/// models or jobs (so `validate` reports only what the test is about).
fn project_with_sets(extra: &[(&str, String)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let features = dir.path().join("features");
    std::fs::create_dir_all(&features).unwrap();
    for f in ["rfm.toml", "churn_signals.toml"] {
        std::fs::copy(repo().join("features").join(f), features.join(f)).unwrap();
    }
    for (name, body) in extra {
        std::fs::write(features.join(name), body).unwrap();
    }
    std::fs::create_dir_all(dir.path().join("models")).unwrap();
    std::fs::create_dir_all(dir.path().join("jobs")).unwrap();
    std::fs::write(
        dir.path().join("c360.toml"),
        "[store]\nuri = \"store\"\n[source]\nuri = \"data\"\n",
    )
    .unwrap();
    dir
}

fn validate(dir: &Path) -> Output {
    c360().current_dir(dir).arg("validate").output().unwrap()
}

/// `where` filters with a typographic quote and a euro sign (the examples).
fn quotes_set() -> String {
    "name = \"quotes\"\nversion = 1\n\n\
     [[feature]]\nname = \"completed_orders\"\ntable = \"orders\"\nagg = \"count\"\nwhere = \"status == ‘completed’\"\n\n\
     [[feature]]\nname = \"big_orders\"\ntable = \"orders\"\nagg = \"count\"\nwhere = \"amount > 5€\"\n\n\
     [[feature]]\nname = \"accented\"\ntable = \"orders\"\nagg = \"count\"\nwhere = \"status == 'complété ✓'\"\n"
        .to_string()
}

/// A filter nested `depth` levels deep, and one summing `terms` terms.
fn deep_set(depth: usize, terms: usize) -> String {
    let nested = format!(
        "{}status == 'completed'{}",
        "(".repeat(depth),
        ")".repeat(depth)
    );
    let sum = vec!["1"; terms].join(" + ");
    format!(
        "name = \"deep\"\nversion = 1\n\n\
         [[feature]]\nname = \"nested\"\ntable = \"orders\"\nagg = \"count\"\nwhere = \"{nested}\"\n\n\
         [[feature]]\nname = \"orders_all\"\ntable = \"orders\"\nagg = \"count\"\n\n\
         [[feature]]\nname = \"flat_sum\"\nexpr = \"orders_all + {sum}\"\n"
    )
}

#[test]
fn validate_reports_non_ascii_expressions_with_file_key_and_position() {
    let dir = project_with_sets(&[("quotes.toml", quotes_set())]);
    let out = validate(dir.path());
    let t = text(&out);
    assert_eq!(code(&out), 3, "{t}");
    assert!(t.contains("quotes.toml: feature[0] (completed_orders).where: unexpected character '‘' (U+2018, a typographic quote: write strings in straight quotes ' or \")"), "{t}");
    assert!(t.contains("(at character 10)"), "{t}");
    assert!(
        t.contains("quotes.toml: feature[1] (big_orders).where: unexpected character '€' (U+20AC"),
        "{t}"
    );
    // Non-ASCII inside a quoted string is just text: no error for the third feature.
    assert!(!t.contains("feature[2]"), "{t}");
    assert!(!t.contains("panicked"), "{t}");
}

#[test]
fn validate_refuses_expressions_too_deep_or_too_long_without_crashing() {
    // The sizes: 20,000 levels, 100,000 terms. Both are past the length limit.
    let dir = project_with_sets(&[("deep.toml", deep_set(20_000, 100_000))]);
    let out = validate(dir.path());
    let t = text(&out);
    assert_eq!(code(&out), 3, "{t}");
    assert!(t.contains("deep.toml: feature[0] (nested).where: expression too long: 40021 characters, at most 10000"), "{t}");
    assert!(
        t.contains("deep.toml: feature[2] (flat_sum).expr: expression too long"),
        "{t}"
    );
    // Within the length limit, the nesting and chain limits speak.
    let dir = project_with_sets(&[("deep.toml", deep_set(1_000, 200))]);
    let out = validate(dir.path());
    let t = text(&out);
    assert_eq!(code(&out), 3, "{t}");
    assert!(t.contains("feature[0] (nested).where: expression nested too deeply: more than 64 levels of parentheses, calls, 'not' or '-' (at character 64)"), "{t}");
    assert!(
        t.contains(
            "feature[2] (flat_sum).expr: expression too deep: more than 128 chained operators"
        ),
        "{t}"
    );
    // At the limits, the set is valid.
    let dir = project_with_sets(&[("deep.toml", deep_set(60, 100))]);
    let out = validate(dir.path());
    assert_eq!(code(&out), 0, "{}", text(&out));
}

#[test]
fn validate_explains_toml_errors_the_parser_gives_no_text_for() {
    // A lone carriage return (an old Mac line end, or pasted text) in a set and in a job.
    let dir = project_with_sets(&[("cr.toml", "\r# cr\nname = \"cr\"\nversion = 1\n".into())]);
    std::fs::write(
        dir.path().join("jobs/j.toml"),
        "# a job\r\n#\rname = \"j\"\n",
    )
    .unwrap();
    let out = validate(dir.path());
    let t = text(&out);
    assert_eq!(code(&out), 3, "{t}");
    let why = "not valid TOML here: look for a control character (e.g. a carriage return without a newline) and save the file as plain text";
    assert!(t.contains(&format!("cr.toml: line 1 (# cr): {why}")), "{t}");
    assert!(t.contains(&format!("j.toml: line 2: {why}")), "{t}");
}

#[test]
fn validate_bounds_the_number_of_features_in_a_set() {
    let mut set = String::from("name = \"many\"\nversion = 1\n\n[[feature]]\nname = \"f0\"\ntable = \"orders\"\nagg = \"count\"\n");
    for i in 1..=600 {
        set.push_str(&format!(
            "\n[[feature]]\nname = \"f{i}\"\nexpr = \"f{} + 1\"\n",
            i - 1
        ));
    }
    let dir = project_with_sets(&[("many.toml", set)]);
    let out = validate(dir.path());
    let t = text(&out);
    assert_eq!(code(&out), 3, "{t}");
    assert!(
        t.contains("many.toml: feature: 601 [[feature]] entries; a set holds at most 500"),
        "{t}"
    );
}

#[test]
fn validate_bounds_chains_of_features_computed_from_one_another() {
    let chain = |n: usize| {
        let mut set = String::from("name = \"chain\"\nversion = 1\n\n[[feature]]\nname = \"f0\"\ntable = \"orders\"\nagg = \"count\"\n");
        for i in 1..=n {
            set.push_str(&format!(
                "\n[[feature]]\nname = \"f{i}\"\nexpr = \"f{} + 1\"\n",
                i - 1
            ));
        }
        set
    };
    let dir = project_with_sets(&[("chain.toml", chain(40))]);
    let out = validate(dir.path());
    let t = text(&out);
    assert_eq!(code(&out), 3, "{t}");
    assert!(
        t.contains("chain.toml: feature[33] (f33): ends a chain of 33 features computed from one another; at most 32"),
        "{t}"
    );
    let dir = project_with_sets(&[("chain.toml", chain(32))]);
    let out = validate(dir.path());
    assert_eq!(code(&out), 0, "{}", text(&out));
}

#[test]
fn serve_answers_422_for_bad_expressions_and_stays_up() {
    let p = TestProject::new(|j| j);
    let features = p.path().join("features");
    std::fs::create_dir_all(&features).unwrap();
    for f in ["rfm.toml", "churn_signals.toml"] {
        std::fs::copy(repo().join("features").join(f), features.join(f)).unwrap();
    }
    std::fs::write(features.join("quotes.toml"), quotes_set()).unwrap();
    std::fs::write(features.join("deep.toml"), deep_set(20_000, 100_000)).unwrap();
    let cfg = p.path().join("c360.toml");
    let toml = std::fs::read_to_string(&cfg).unwrap().replace(
        &format!("features = \"{}\"", repo().join("features").display()),
        "features = \"features\"",
    );
    std::fs::write(&cfg, toml).unwrap();
    configure(&p, "scheduler = false");
    let s = Service::start(&p, &[]);
    let h = Http::new();
    let r = h.get(&s.url("/feature-sets"), Some(ADMIN));
    assert_eq!(r.status, 422, "{}", r.body);
    let body: Value = r.json();
    let msg = body["message"].as_str().unwrap_or_default();
    assert!(msg.contains("feature[0] (completed_orders).where: unexpected character '‘' (U+2018, a typographic quote"), "{msg}");
    assert!(
        msg.contains("feature[0] (nested).where: expression too long"),
        "{msg}"
    );
    // The process is alive and answers.
    assert_eq!(h.get(&s.url("/healthz"), None).status, 200);
    // Fixed files: the sets list again.
    std::fs::remove_file(features.join("quotes.toml")).unwrap();
    std::fs::write(features.join("deep.toml"), deep_set(60, 100)).unwrap();
    let r = h.get(&s.url("/feature-sets"), Some(ADMIN));
    assert_eq!(r.status, 200, "{}", r.body);
    let mut names: Vec<String> = r.json()["feature_sets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap_or_default().to_string())
        .collect();
    names.sort();
    assert_eq!(names, ["churn_signals", "deep", "rfm"]);
    s.stop();
}

fn churn_model() -> Value {
    let b = std::fs::read(repo().join("models/churn_xgb/xgboost-model.json")).unwrap();
    serde_json::from_slice(&b).unwrap()
}

fn load_with(param: &str, v: Value, objective: Option<&str>) -> String {
    let mut m = churn_model();
    m["learner"]["learner_model_param"][param] = v;
    if let Some(o) = objective {
        m["learner"]["objective"]["name"] = Value::String(o.into());
    }
    match Booster::from_bytes(&serde_json::to_vec(&m).unwrap(), "model.json") {
        Ok(_) => "loaded".into(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn model_counts_are_bounded_before_they_size_anything() {
    for (v, objective) in [
        ("1e19", None),
        ("1000000000000", None),
        ("1e19", Some("multi:softprob")),
        ("1000000000000", Some("multi:softmax")),
    ] {
        assert_eq!(
            load_with("num_class", Value::String(v.into()), objective),
            format!("model.json: learner.learner_model_param.num_class: \"{v}\" is out of range (at most 10000)"),
        );
    }
    assert_eq!(
        load_with("num_class", serde_json::json!(1e19), None),
        "model.json: learner.learner_model_param.num_class: 1e+19 is out of range (at most 10000)"
    );
    assert_eq!(
        load_with("num_feature", Value::String("1e19".into()), None),
        "model.json: learner.learner_model_param.num_feature: \"1e19\" is out of range (at most 1048576)"
    );
    assert_eq!(
        load_with("num_feature", Value::String("0".into()), None),
        "model.json: learner.learner_model_param.num_feature: 0: a model reads at least one feature"
    );
    assert_eq!(
        load_with("num_class", Value::String("-1".into()), None),
        "model.json: learner.learner_model_param.num_class: not a count: \"-1\""
    );
    // A count within the bound loads.
    assert_eq!(
        load_with(
            "num_class",
            Value::String("3".into()),
            Some("multi:softprob")
        ),
        "loaded"
    );
    // The same file through `c360 validate`: exit 3, the file and the key named.
    let p = TestProject::new(|j| j);
    p.use_local_model();
    let mut m = churn_model();
    m["learner"]["learner_model_param"]["num_class"] = Value::String("1e19".into());
    let f = p.path().join("models/churn_xgb/xgboost-model.json");
    std::fs::write(&f, serde_json::to_vec(&m).unwrap()).unwrap();
    let out = p.cmd().arg("validate").output().unwrap();
    let t = text(&out);
    assert_eq!(code(&out), 3, "{t}");
    assert!(t.contains("xgboost-model.json: learner.learner_model_param.num_class: \"1e19\" is out of range (at most 10000)"), "{t}");
}

#[test]
fn service_durations_out_of_range_are_refused_at_load() {
    for (key, value, range) in [
        (
            "shutdown_grace_seconds",
            "9223372036854775807",
            "0 to 86400 seconds",
        ),
        ("lease_seconds", "0", "1 to 86400 seconds"),
        ("lease_seconds", "9223372036854775807", "1 to 86400 seconds"),
        ("reload_seconds", "nan", "0.05 to 3600 seconds"),
        ("reload_seconds", "inf", "0.05 to 3600 seconds"),
    ] {
        let p = TestProject::new(|j| j);
        let cfg = p.path().join("c360.toml");
        let mut toml = std::fs::read_to_string(&cfg).unwrap();
        toml.push_str(&format!("\n[service]\n{key} = {value}\n"));
        std::fs::write(&cfg, toml).unwrap();
        let want =
            format!("c360.toml: [service]: service.{key} = {value} is out of range: {range}");
        let want = want.replace("= nan", "= NaN");
        for args in [&["validate"][..], &["serve", "--bind", "127.0.0.1:0"][..]] {
            let out = p.cmd().args(args).output().unwrap();
            let t = text(&out);
            assert_eq!(code(&out), 3, "{args:?} {key}={value}: {t}");
            assert!(t.contains(&want), "{args:?}: want {want:?} in {t}");
        }
    }
}

#[test]
fn job_counts_out_of_range_are_refused_at_load() {
    let p = TestProject::new(|j| {
        j.replace(
            "# max_concurrent_transforms = 8",
            "max_concurrent_transforms = 2147483648\nmax_payload_mb = 2\ninstance_count = 4294967295",
        )
    });
    let out = p.cmd().arg("validate").output().unwrap();
    let t = text(&out);
    assert_eq!(code(&out), 3, "{t}");
    assert!(t.contains("transform.max_concurrent_transforms: 2147483648 x max_payload_mb 2 is over SageMaker's limit of 100"), "{t}");
    assert!(t.contains("transform.max_concurrent_transforms: 2147483648 is out of range: 0 (as the model says) to 100"), "{t}");
    assert!(
        t.contains("transform.instance_count: 4294967295 is out of range: 1 to 100"),
        "{t}"
    );
}

#[test]
fn numeric_arguments_out_of_range_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["generate", "--customers", "18446744073709551615", "--out"],
            "18446744073709551615 is out of range: the allowed range is 1 to 100000000",
        ),
        (
            vec!["generate", "--customers", "0", "--out"],
            "0 is out of range: the allowed range is 1 to 100000000",
        ),
        (
            vec!["generate", "--customers=-5", "--out"],
            "the allowed range is 1 to 100000000",
        ),
        (
            vec![
                "generate",
                "--customers",
                "10",
                "--start",
                "0001-01-01",
                "--out",
            ],
            "--start 0001-01-01 is out of range: the allowed range is 1970-01-01 to 2199-12-31",
        ),
        (
            vec![
                "generate",
                "--customers",
                "10",
                "--start",
                "1970-01-01",
                "--end",
                "2199-01-01",
                "--out",
            ],
            "more than 7305 days (20 years)",
        ),
        (
            vec!["demo", "--customers", "18446744073709551615", "--dir"],
            "the allowed range is 1 to 100000000",
        ),
    ];
    for (args, want) in cases {
        let out = c360().args(&args).arg(&out_dir).output().unwrap();
        let t = text(&out);
        assert_eq!(code(&out), 2, "{args:?}: {t}");
        assert!(t.contains(want), "{args:?}: want {want:?} in {t}");
        assert!(!out_dir.join("customers.parquet").exists());
    }
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["plan", "--rows", "99999999999999999999"],
            "is not a count",
        ),
        (
            vec!["plan", "--rows", "10000000000001"],
            "10000000000001 is out of range: the allowed range is 0 to 10000000000000",
        ),
        (
            vec!["plan", "--rows", "10M", "--throughput", "nan"],
            "a number of rows per second above 0 and at most 1000000000",
        ),
        (
            vec!["plan", "--rows", "10M", "--max-instances", "4294967295"],
            "4294967295 is not in 1..=100",
        ),
        (
            vec![
                "score",
                "--model",
                "m",
                "--input",
                "i",
                "--output",
                "o",
                "--instance-count",
                "0",
            ],
            "0 is not in 1..=100",
        ),
        (
            vec![
                "score",
                "--model",
                "m",
                "--input",
                "i",
                "--output",
                "o",
                "--invocation-timeout",
                "4294967295",
            ],
            "4294967295 is not in 1..=3600",
        ),
        (
            vec!["serve-model", "--port", "70000"],
            "70000 is not in 0..=65535",
        ),
    ];
    for (args, want) in cases {
        let out = c360().args(&args).output().unwrap();
        let t = text(&out);
        assert_eq!(code(&out), 2, "{args:?}: {t}");
        assert!(t.contains(want), "{args:?}: want {want:?} in {t}");
    }
}
