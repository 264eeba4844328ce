//! Customer lifetime value (issue 14, acceptance item 2): BG/NBD and Gamma-Gamma on CDNOW
//! against lifetimes 0.11.3 (fixtures made by scripts/oracle/make_clv_fixture.py), and
//! `c360 models fit` on generated data.

use std::path::Path;

use c360::model::btyd::{self, BgNbdParams, BtydData, FitOptions, GammaGammaParams};

use crate::features::{assert_ok, c360, repo};

fn cdnow() -> std::path::PathBuf {
    repo().join("tests/fixtures/cdnow")
}

/// A plain CSV with a header row and no quoting (what pandas wrote); ids stay text.
fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header = lines.next().unwrap().split(',').map(String::from).collect();
    let rows = lines
        .filter(|l| !l.is_empty())
        .map(|l| l.split(',').map(String::from).collect())
        .collect();
    (header, rows)
}

fn column(header: &[String], rows: &[Vec<String>], name: &str) -> Vec<f64> {
    let i = header.iter().position(|h| h == name).unwrap();
    rows.iter().map(|r| r[i].parse::<f64>().unwrap()).collect()
}

fn summary() -> BtydData {
    let (h, rows) = read_csv(&cdnow().join("expected_btyd_1998-06-30.csv"));
    BtydData {
        customer_id: rows.iter().map(|r| r[0].clone()).collect(),
        frequency: column(&h, &rows, "frequency"),
        recency: column(&h, &rows, "recency"),
        t: column(&h, &rows, "T"),
        monetary_value: column(&h, &rows, "monetary_value"),
    }
}

fn oracle_params() -> (BgNbdParams, GammaGammaParams, serde_json::Value) {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cdnow().join("clv_params.json")).unwrap()).unwrap();
    let bg: BgNbdParams = serde_json::from_value(v["bg_nbd"].clone()).unwrap();
    let gg: GammaGammaParams = serde_json::from_value(v["gamma_gamma"].clone()).unwrap();
    (bg, gg, v)
}

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs()
}

#[test]
fn clv_cdnow_fitted_parameters_match_lifetimes() {
    let data = summary();
    assert_eq!(data.len(), 23_570);
    let (bg, gg, v) = oracle_params();

    let fit = btyd::fit_bg_nbd(&data, &FitOptions::default()).unwrap();
    assert_eq!(fit.customers, 23_570);
    let pairs = [
        ("r", fit.params.r, bg.r),
        ("alpha", fit.params.alpha, bg.alpha),
        ("a", fit.params.a, bg.a),
        ("b", fit.params.b, bg.b),
    ];
    for (name, got, want) in pairs {
        eprintln!(
            "bg_nbd {name}: c360 {got:.10} lifetimes {want:.10} rel {:.2e}",
            rel(got, want)
        );
        assert!(
            rel(got, want) <= 1e-3,
            "bg_nbd {name}: {got} vs lifetimes {want}"
        );
    }
    // The optimum is at least as good as lifetimes' (same objective, scaled time).
    let nll = v["bg_nbd_mean_negative_log_likelihood"].as_f64().unwrap();
    assert!(fit.objective <= nll + 1e-9, "{} vs {nll}", fit.objective);

    let fit = btyd::fit_gamma_gamma(&data, &FitOptions::default()).unwrap();
    assert_eq!(
        fit.customers,
        v["gamma_gamma_customers"].as_u64().unwrap() as usize
    );
    let pairs = [
        ("p", fit.params.p, gg.p),
        ("q", fit.params.q, gg.q),
        ("v", fit.params.v, gg.v),
    ];
    for (name, got, want) in pairs {
        eprintln!(
            "gamma_gamma {name}: c360 {got:.10} lifetimes {want:.10} rel {:.2e}",
            rel(got, want)
        );
        assert!(
            rel(got, want) <= 1e-3,
            "gamma_gamma {name}: {got} vs lifetimes {want}"
        );
    }
    let nll = v["gamma_gamma_mean_negative_log_likelihood"]
        .as_f64()
        .unwrap();
    assert!(fit.objective <= nll + 1e-9, "{} vs {nll}", fit.objective);

    // A penalizer shrinks the parameters (lifetimes' L2 term on the parameters).
    let pen = btyd::fit_gamma_gamma(&data, &FitOptions { penalizer: 0.01 }).unwrap();
    let norm = |p: &GammaGammaParams| p.p * p.p + p.q * p.q + p.v * p.v;
    assert!(norm(&pen.params) < norm(&fit.params));
}

/// Every per-customer value within 1e-6 of lifetimes' given lifetimes' parameters: absolute
/// for values up to 1 in magnitude, relative above (|got - want| <= 1e-6 * max(1, |want|)).
#[test]
fn clv_cdnow_predictions_match_lifetimes_given_its_parameters() {
    let (bg, gg, v) = oracle_params();
    let rate = v["discount_rate"].as_f64().unwrap();
    let (h, rows) = read_csv(&cdnow().join("clv_expected.csv"));
    assert!(rows.len() > 1000, "{} rows", rows.len());
    let x = column(&h, &rows, "frequency");
    let r = column(&h, &rows, "recency");
    let t = column(&h, &rows, "T");
    let m = column(&h, &rows, "monetary_value");
    let mut worst: Vec<(String, f64)> = Vec::new();
    let mut check = |name: &str, got: &dyn Fn(usize) -> f64| {
        let want = column(&h, &rows, name);
        let mut max_err = 0.0f64;
        for i in 0..rows.len() {
            let g = got(i);
            let err = (g - want[i]).abs() / want[i].abs().max(1.0);
            assert!(
                err <= 1e-6,
                "{name} of customer {}: c360 {g} vs lifetimes {}",
                rows[i][0],
                want[i]
            );
            max_err = max_err.max(err);
        }
        worst.push((name.to_string(), max_err));
    };
    check("p_alive", &|i| bg.p_alive(x[i], r[i], t[i]));
    for hd in [30.0, 90.0, 365.0] {
        check(&format!("expected_purchases_{hd}d"), &|i| {
            bg.expected_purchases(hd, x[i], r[i], t[i])
        });
    }
    check("expected_average_profit", &|i| {
        gg.expected_average_profit(x[i], m[i])
    });
    for hd in [30.0, 90.0, 365.0] {
        check(&format!("clv_{hd}d"), &|i| {
            btyd::customer_lifetime_value(&bg, &gg, x[i], r[i], t[i], m[i], hd, rate)
        });
    }
    eprintln!("largest scaled differences: {worst:?}");
    // Frequency 0 gets the population mean p*v/(q-1) and p_alive 1.
    let zero = (0..rows.len()).find(|&i| x[i] == 0.0).unwrap();
    assert_eq!(
        gg.expected_average_profit(0.0, m[zero]),
        gg.p * gg.v / (gg.q - 1.0)
    );
    assert_eq!(bg.p_alive(0.0, 0.0, t[zero]), 1.0);
}

/// A project using the repo's features and a copy of the shipped CLV models.
fn clv_project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("c360.toml"),
        format!(
            "[store]\nuri = \"store\"\n[source]\nuri = \"data\"\n[paths]\nfeatures = \"{}\"\nmodels = \"models\"\njobs = \"jobs\"\n",
            repo().join("features").display()
        ),
    )
    .unwrap();
    for m in ["clv_bgnbd", "clv_gamma_gamma", "churn_xgb"] {
        let dst = dir.path().join("models").join(m);
        std::fs::create_dir_all(&dst).unwrap();
        for f in ["model.toml", "xgboost-model.json"] {
            let src = repo().join("models").join(m).join(f);
            if src.exists() {
                std::fs::copy(src, dst.join(f)).unwrap();
            }
        }
    }
    std::fs::create_dir_all(dir.path().join("jobs")).unwrap();
    let out = c360()
        .args(["generate", "--customers", "1500", "--seed", "5", "--out"])
        .arg(dir.path().join("data"))
        .output()
        .unwrap();
    assert_ok(&out);
    dir
}

fn fit_json(dir: &Path, model: &str) -> serde_json::Value {
    let out = c360()
        .current_dir(dir)
        .args(["models", "fit", model, "--as-of", "2024-06-30", "--json"])
        .output()
        .unwrap();
    assert_ok(&out);
    let text = String::from_utf8(out.stdout).unwrap();
    assert_eq!(text.lines().count(), 1, "one JSON object: {text}");
    serde_json::from_str(&text).unwrap()
}

#[test]
fn clv_models_fit_on_generated_data_is_finite_and_repeatable() {
    let p = clv_project();
    for (model, kind, names) in [
        ("clv_bgnbd", "bg_nbd", &["r", "alpha", "a", "b"][..]),
        ("clv_gamma_gamma", "gamma_gamma", &["p", "q", "v"][..]),
    ] {
        let first = fit_json(p.path(), model);
        assert_eq!(first["kind"], kind);
        assert_eq!(first["model"], model);
        assert_eq!(first["time_unit"], "days");
        assert_eq!(first["as_of"], "2024-06-30");
        assert_eq!(first["feature_set"], "rfm");
        assert_eq!(first["snapshot"], "features/rfm/v1/as_of=2024-06-30");
        assert!(
            first["source_fingerprints"]["orders"].is_string(),
            "{first}"
        );
        assert!(first["customers"].as_u64().unwrap() >= 100, "{first}");
        for n in names {
            let v = first[*n].as_f64().unwrap_or(f64::NAN);
            assert!(v.is_finite() && v > 0.0, "{model} {n} = {v}: {first}");
        }
        // fitted.json holds the same object.
        let file = p.path().join("models").join(model).join("fitted.json");
        let saved: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(saved, first);
        // Re-running (the snapshot is reused) gives identical parameters.
        let again = fit_json(p.path(), model);
        for n in names {
            assert_eq!(again[*n], first[*n], "{model} {n}");
        }
    }
    // validate accepts the fitted CLV models next to the xgboost one.
    let out = c360()
        .current_dir(p.path())
        .arg("validate")
        .output()
        .unwrap();
    assert_ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("clv_bgnbd") && text.contains("clv_gamma_gamma"),
        "{text}"
    );

    // Errors: an xgboost model cannot be fitted here (3), a bad penalizer is usage (2),
    // an unknown model is named (3), a broken fitted.json is caught by validate (3).
    let run = |args: &[&str]| {
        let out = c360().current_dir(p.path()).args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let (code, err) = run(&["models", "fit", "churn_xgb", "--as-of", "2024-06-30"]);
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains("churn_xgb/model.toml") && err.contains("bg_nbd"),
        "{err}"
    );
    let (code, err) = run(&[
        "models",
        "fit",
        "clv_bgnbd",
        "--as-of",
        "2024-06-30",
        "--penalizer",
        "-1",
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--penalizer -1"), "{err}");
    let (code, err) = run(&["models", "fit", "nope", "--as-of", "2024-06-30"]);
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains("no model nope") && err.contains("clv_bgnbd"),
        "{err}"
    );
    let fitted = p.path().join("models/clv_gamma_gamma/fitted.json");
    let text = std::fs::read_to_string(&fitted).unwrap();
    std::fs::write(
        &fitted,
        text.replace("\"feature_set_version\": 1", "\"feature_set_version\": 7"),
    )
    .unwrap();
    let (code, err) = run(&["validate"]);
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains("clv_gamma_gamma/fitted.json: feature_set: fitted on rfm v7, but model.toml says rfm v1"),
        "{err}"
    );
    let fitted = p.path().join("models/clv_bgnbd/fitted.json");
    let text = std::fs::read_to_string(&fitted).unwrap();
    std::fs::write(&fitted, text.replacen("\"alpha\":", "\"alpha_typo\":", 1)).unwrap();
    let (code, err) = run(&["validate"]);
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains("clv_bgnbd/fitted.json") && err.contains("alpha"),
        "{err}"
    );
    let spec = p.path().join("models/clv_gamma_gamma/model.toml");
    let text = std::fs::read_to_string(&spec).unwrap();
    std::fs::write(&spec, text.replace("\"gamma_gamma\"", "\"gama_gama\"")).unwrap();
    let (code, err) = run(&["validate"]);
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains("clv_gamma_gamma/model.toml: kind") && err.contains("gama_gama"),
        "{err}"
    );
    // A job cannot score a CLV model (yet): validate says so instead of the run failing.
    let job = std::fs::read_to_string(repo().join("jobs/churn_weekly.toml")).unwrap();
    assert!(job.contains("model = \"churn_xgb\""));
    std::fs::write(
        p.path().join("jobs/churn_weekly.toml"),
        job.replace("model = \"churn_xgb\"", "model = \"clv_bgnbd\""),
    )
    .unwrap();
    std::fs::copy(
        repo().join("models/clv_bgnbd/fitted.json"),
        p.path().join("models/clv_bgnbd/fitted.json"),
    )
    .unwrap();
    let (code, err) = run(&["validate"]);
    assert_eq!(code, Some(3), "{err}");
    assert!(
        err.contains("churn_weekly.toml: model: clv_bgnbd is a customer lifetime value model"),
        "{err}"
    );
}

#[test]
fn clv_models_fit_help_teaches() {
    let out = c360().args(["models", "fit", "--help"]).output().unwrap();
    assert_ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        "c360 models fit clv_bgnbd --as-of 2024-06-30",
        "--penalizer",
        "--json",
        "fitted.json",
        "kind = \"bg_nbd\"",
    ] {
        assert!(text.contains(want), "{want}: {text}");
    }
}
