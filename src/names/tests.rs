//! Unit tests of the name types: accepted and refused values, messages, conversions and
//! serde, and the validators they replace (kept here, verbatim, as oracles).

use std::collections::HashMap;

use super::*;

/// `features::def::valid_name`, as it was (feature-set names).
fn old_set_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// `features::def::valid_feature_name`, as it was (feature and label names).
fn old_feature_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `pipeline::job::valid_name`, as it was (job and product names).
fn old_job_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 48
        && s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// `model::is_identifier`, as it was (the columns a model reads), without a length limit.
fn old_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

/// `service::api::valid_name`'s rule, as it was (names in HTTP paths).
fn old_api_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !s.starts_with('-')
}

/// Names that probe every rule: edges of each length limit, each character class, path
/// tricks, Unicode.
fn samples() -> Vec<String> {
    let mut v: Vec<String> = [
        "",
        "a",
        "z",
        "A",
        "Z",
        "0",
        "9",
        "_",
        "-",
        ".",
        "..",
        "a.",
        ".a",
        "_a",
        "-a",
        "1a",
        "a1",
        "a_b",
        "a-b",
        "a.b",
        "a/b",
        "a\\b",
        "a b",
        " a",
        "a\n",
        "a\0",
        "é",
        "aé",
        "ß",
        "rfm",
        "churn_weekly",
        "churn-weekly",
        "Churn",
        "cHURN",
        "churn_xgb",
        "clv_bgnbd",
        "2024-06-30-1a2b3c4d",
        "..%2Fetc",
        "%2e%2e",
        "a%b",
        "a:b",
        "a*b",
        "a@b",
        "a+b",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for n in [47, 48, 49, 63, 64, 65, 127, 128, 129, 255, 256, 257] {
        v.push("a".repeat(n));
        v.push(format!("_{}", "a".repeat(n - 1)));
        v.push(format!("{}-", "a".repeat(n - 1)));
    }
    v
}

#[test]
fn set_feature_job_product_and_api_names_keep_their_rules() {
    for s in samples() {
        assert_eq!(SetName::parse(&*s).is_ok(), old_set_name(&s), "set {s:?}");
        assert_eq!(
            FeatureName::parse(&*s).is_ok(),
            old_feature_name(&s),
            "feature {s:?}"
        );
        assert_eq!(JobName::parse(&*s).is_ok(), old_job_name(&s), "job {s:?}");
        assert_eq!(
            ProductName::parse(&*s).is_ok(),
            old_job_name(&s),
            "product {s:?}"
        );
        assert_eq!(
            KeySegment::parse(&*s).is_ok(),
            old_api_name(&s),
            "api {s:?}"
        );
        // Columns: the old rule up to the new 256-character limit.
        assert_eq!(
            ColumnName::parse(&*s).is_ok(),
            old_identifier(&s) && s.len() <= 256,
            "column {s:?}"
        );
    }
}

#[test]
fn model_names_are_one_folder_name_under_models() {
    // Whatever folder name worked before still works (nothing checked model names then).
    for ok in [
        "churn_xgb",
        "clv_bgnbd",
        "m",
        "7",
        "Churn.v2-b",
        "Churn XGB",
        ".hidden",
        "-rf",
        "_x",
        "é",
        &"m".repeat(255),
    ] {
        assert_eq!(ModelName::parse(ok).unwrap().as_str(), ok);
    }
    // Nothing that leads out of models/ or is not one name.
    for bad in [
        "",
        ".",
        "..",
        "a/b",
        "../x",
        "a\\b",
        "a\nb",
        &"m".repeat(256),
    ] {
        let e = ModelName::parse(bad).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("{bad:?} is not a valid model name: one folder name under models/ (1-255 bytes; not '.' or '..'; no '/', '\\' or control characters)")
        );
    }
}

/// Names line up in tables: `{:<8}` pads them like any string.
#[test]
fn names_pad_in_formatted_tables() {
    assert_eq!(format!("{:<6}|", SetName::parse("rfm").unwrap()), "rfm   |");
    assert_eq!(
        format!("{:>6}|", JobName::parse("churn").unwrap()),
        " churn|"
    );
    // Every string-like type of this module, not only the name macro's.
    let day: AsOf = "2024-06-30".parse().unwrap();
    assert_eq!(format!("{day:<12}|"), "2024-06-30  |");
    let uri: StoreUri = "s3://bkt/p".parse().unwrap();
    assert_eq!(format!("{uri:<12}|"), "s3://bkt/p  |");
    let name = SageMakerName::derive("c360", &["churn", "r1"]);
    assert_eq!(
        format!("{name:>w$}|", w = name.len() + 2),
        format!("  {name}|")
    );
}

#[test]
fn every_type_states_its_rule_in_the_error() {
    let cases: [(Result<(), NameError>, &str); 7] = [
        (
            SetName::parse("Rfm").map(|_| ()),
            "\"Rfm\" is not a valid feature set name: 1-64 lowercase letters, digits and '_', starting with a letter",
        ),
        (
            FeatureName::parse("1st").map(|_| ()),
            "\"1st\" is not a valid feature name: 1-64 letters, digits and '_', not starting with a digit",
        ),
        (
            ColumnName::parse("a b").map(|_| ()),
            "\"a b\" is not a valid column name: 1-256 letters, digits, '_', '-' and '.'",
        ),
        (
            JobName::parse("Churn").map(|_| ()),
            "\"Churn\" is not a valid job name: 1-48 lowercase letters, digits, '-' and '_', starting with a letter",
        ),
        (
            ProductName::parse("churn scores").map(|_| ()),
            "\"churn scores\" is not a valid product name: 1-48 lowercase letters, digits, '-' and '_', starting with a letter",
        ),
        (
            ModelName::parse("..").map(|_| ()),
            "\"..\" is not a valid model name: one folder name under models/ (1-255 bytes; not '.' or '..'; no '/', '\\' or control characters)",
        ),
        (
            KeySegment::parse("..%2Fetc").map_err(|e| e.with_kind("job")).map(|_| ()),
            "\"..%2Fetc\" is not a valid job: 1-128 letters, digits, '_' and '-', not starting with '-'",
        ),
    ];
    for (got, want) in cases {
        assert_eq!(got.unwrap_err().to_string(), want);
    }
    let e = JobName::parse("Churn").unwrap_err();
    assert_eq!(
        (e.kind, e.value.as_str(), e.rule),
        ("job name", "Churn", JobName::RULE)
    );
}

#[test]
fn names_convert_compare_and_show_as_their_text() {
    let j: JobName = "churn_weekly".parse().unwrap();
    assert_eq!(j, "churn_weekly");
    assert_eq!("churn_weekly", j);
    assert_eq!(j, String::from("churn_weekly"));
    assert_eq!(String::from("churn_weekly"), j);
    assert_eq!(j.to_string(), "churn_weekly");
    assert_eq!(j.as_str(), "churn_weekly");
    assert_eq!(j.len(), 12, "derefs to str");
    assert_eq!(format!("jobs/{j}.toml"), "jobs/churn_weekly.toml");
    let p: &std::path::Path = j.as_ref();
    assert_eq!(p, std::path::Path::new("churn_weekly"));
    assert_eq!(JobName::try_from(String::from("churn_weekly")).unwrap(), j);
    assert_eq!(JobName::try_from("churn_weekly").unwrap(), j);
    assert_eq!(String::from(j.clone()), "churn_weekly");
    assert_eq!(j.clone().into_string(), "churn_weekly");
    // Borrow<str>: maps keyed by a name are looked up by text.
    let m: HashMap<SetName, u32> = [(SetName::parse("rfm").unwrap(), 1)].into();
    assert_eq!(m.get("rfm"), Some(&1));
    let mut v = vec![SetName::parse("b").unwrap(), SetName::parse("a").unwrap()];
    v.sort();
    assert_eq!(v, ["a", "b"]);
}

#[test]
fn serde_writes_the_text_and_refuses_bad_names_when_reading() {
    #[derive(Debug, serde::Serialize, serde::Deserialize)]
    struct File {
        name: JobName,
        sets: Vec<SetName>,
        product: ProductName,
        model: ModelName,
    }
    let json = r#"{"name":"churn_weekly","sets":["rfm","churn_signals"],"product":"churn-scores","model":"churn_xgb"}"#;
    let f: File = serde_json::from_str(json).unwrap();
    assert_eq!(f.sets[1], "churn_signals");
    assert_eq!(
        serde_json::to_string(&f).unwrap(),
        json,
        "the format is unchanged"
    );

    let e = toml::from_str::<File>("name = \"Churn\"\nsets = []\nproduct = \"p\"\nmodel = \"m\"\n")
        .unwrap_err();
    assert!(
        e.to_string().contains("\"Churn\" is not a valid job name"),
        "{e}"
    );
    let e = serde_json::from_str::<File>(
        r#"{"name":"j","sets":["rfm","../x"],"product":"p","model":"m"}"#,
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("\"../x\" is not a valid feature set name"),
        "{e}"
    );
    assert!(serde_json::from_str::<KeySegment>("\"run-1\"").is_ok());
    assert!(serde_json::from_str::<KeySegment>("\"run/1\"").is_err());
}
