//! Integration tests of scoring: XGBoost parity, the container contract, the local runner.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use c360::model::{self, parse_csv, Booster, ModelFormat};
use c360::serving::{self, ExecutionParameters, ServeConfig};
use c360::transform::{
    AssembleWith, BatchStrategy, BatchTransform, HttpInvoker, InProcessInvoker, InvokeError,
    Invoker, JobStatus, JoinSource, LocalTransform, NoProgress, Progress, SplitType,
    TransformJobSpec, TransformResult,
};

use crate::common::fixture_dir;

// ---------------------------------------------------------------- fixtures and helpers

#[derive(serde::Deserialize)]
struct Manifest {
    xgboost_version: String,
    fixtures: Vec<Fixture>,
}

#[derive(serde::Deserialize, Clone)]
struct Fixture {
    name: String,
    model: String,
    format: String,
    input: String,
    expected: String,
    objective: String,
    num_feature: usize,
    rows: usize,
    outputs_per_row: usize,
}

fn xgb_dir() -> PathBuf {
    fixture_dir().join("xgb")
}

fn manifest() -> Manifest {
    let text = std::fs::read_to_string(xgb_dir().join("fixtures.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn fixture(name: &str) -> Fixture {
    manifest()
        .fixtures
        .into_iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no fixture {name}"))
}

/// Rows of comma-separated numbers (empty lines skipped).
fn read_rows(text: &str) -> Vec<Vec<f64>> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| l.split(',').map(|v| v.parse::<f64>().unwrap()).collect())
        .collect()
}

fn max_abs_diff(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
    assert_eq!(a.len(), b.len(), "row counts differ");
    let mut m = 0f64;
    for (ra, rb) in a.iter().zip(b) {
        assert_eq!(ra.len(), rb.len(), "row widths differ");
        for (x, y) in ra.iter().zip(rb) {
            m = m.max((x - y).abs());
        }
    }
    m
}

/// xgboost's predictions: the file holds each f32 with 9 significant digits, which reads
/// back (as f32) to exactly xgboost's value.
fn expected(f: &Fixture) -> Vec<Vec<f64>> {
    std::fs::read_to_string(xgb_dir().join(&f.expected))
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            l.split(',')
                .map(|v| v.parse::<f32>().unwrap() as f64)
                .collect()
        })
        .collect()
}

fn load_booster(f: &Fixture) -> Booster {
    Booster::load(&xgb_dir().join(&f.model)).unwrap()
}

fn job(input: &Path, output: &Path) -> TransformJobSpec {
    let mut j = TransformJobSpec::new(
        "test-job",
        &input.display().to_string(),
        &output.display().to_string(),
    );
    j.split_type = SplitType::Line;
    j.assemble_with = AssembleWith::Line;
    j
}

fn write(path: &Path, data: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
}

/// A scriptable model: answers each payload line with its first field, records payload
/// sizes, can sleep, fail on a marker, or fail a number of times first.
#[derive(Debug, Default)]
struct EchoInvoker {
    sizes: Mutex<Vec<usize>>,
    calls: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    fail_marker: Option<&'static str>,
    fail_first: usize,
    jitter: bool,
    params: Option<ExecutionParameters>,
}

impl Invoker for EchoInvoker {
    fn invoke(&self, payload: &[u8], _ct: &str, _t: Duration) -> Result<Vec<u8>, InvokeError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        self.sizes.lock().unwrap().push(payload.len());
        let text = std::str::from_utf8(payload).unwrap();
        if self.jitter {
            // Later requests finish first more often than not.
            let id: u64 = text
                .split(',')
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            std::thread::sleep(Duration::from_micros((7919 * id) % 3000));
        }
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        if n < self.fail_first {
            return Err(InvokeError::Status {
                status: 500,
                message: "flaky".into(),
            });
        }
        if let Some(m) = self.fail_marker {
            if text.contains(m) {
                return Err(InvokeError::Status {
                    status: 500,
                    message: "boom".into(),
                });
            }
        }
        let mut out = String::new();
        for l in text.split('\n') {
            out.push_str(l.split(',').next().unwrap_or(""));
            out.push('\n');
        }
        Ok(out.into_bytes())
    }

    fn execution_parameters(&self) -> Option<ExecutionParameters> {
        self.params
    }
}

fn run_job(inv: Arc<dyn Invoker>, j: &TransformJobSpec) -> TransformResult {
    LocalTransform::new(inv).run(j, &NoProgress).unwrap()
}

// ---------------------------------------------------------------- parity with xgboost

#[test]
fn evaluator_matches_xgboost_on_every_fixture() {
    let m = manifest();
    assert!(m.fixtures.len() >= 10, "expected the full fixture set");
    let mut objectives = std::collections::BTreeSet::new();
    let mut formats = std::collections::BTreeSet::new();
    println!("fixtures made with xgboost {}", m.xgboost_version);
    for f in &m.fixtures {
        let b = load_booster(f);
        assert_eq!(b.objective().name(), f.objective, "{}", f.name);
        assert_eq!(b.num_feature(), f.num_feature, "{}", f.name);
        let fmt = match b.format() {
            ModelFormat::Json => "json",
            ModelFormat::Ubjson => "ubjson",
        };
        assert_eq!(fmt, f.format, "{}", f.name);
        let csv = std::fs::read(xgb_dir().join(&f.input)).unwrap();
        let x = parse_csv(&csv, Some(b.num_feature())).unwrap();
        assert_eq!(x.rows, f.rows);
        let p = b.predict(&x).unwrap();
        let got: Vec<Vec<f64>> = p
            .chunks(b.output_width())
            .map(|r| r.iter().map(|v| *v as f64).collect())
            .collect();
        assert_eq!(b.output_width(), f.outputs_per_row, "{}", f.name);
        let want = expected(f);
        let d = max_abs_diff(&got, &want);
        // The contract path (text/csv body) must say the same thing.
        let body = match serving::invoke(&b, Some("text/csv"), &csv).unwrap() {
            serving::Invocation::Predictions { body, rows } => {
                assert_eq!(rows, f.rows);
                body
            }
            other => panic!("{other:?}"),
        };
        let text_d = max_abs_diff(&read_rows(std::str::from_utf8(&body).unwrap()), &want);
        println!(
            "parity {:<30} {:<18} {:<6} rows={} max_abs_diff={d:.3e} (text {text_d:.3e})",
            f.name, f.objective, f.format, f.rows
        );
        assert!(d <= 1e-6, "{}: max abs diff {d}", f.name);
        assert!(text_d <= 1e-6, "{}: text max abs diff {text_d}", f.name);
        objectives.insert(f.objective.clone());
        formats.insert(f.format.clone());
    }
    for o in [
        "binary:logistic",
        "reg:squarederror",
        "reg:logistic",
        "multi:softprob",
    ] {
        assert!(objectives.contains(o), "no fixture for {o}");
    }
    assert_eq!(formats.len(), 2, "both JSON and UBJSON fixtures");
}

#[test]
fn large_scale_regression_is_bit_exact() {
    // Outputs near 5000 have an f32 spacing of ~0.0005: only xgboost's f32 order passes.
    let f = fixture("reg_squarederror_large_scale");
    let b = load_booster(&f);
    let x = parse_csv(&std::fs::read(xgb_dir().join(&f.input)).unwrap(), None).unwrap();
    let p = b.predict(&x).unwrap();
    let want = expected(&f);
    assert!(want.iter().any(|r| r[0].abs() > 1000.0));
    let exact = p
        .iter()
        .zip(&want)
        .filter(|(a, b)| (**a as f64) == b[0])
        .count();
    assert_eq!(exact, p.len(), "every prediction bit-identical");
}

#[test]
fn model_dir_with_spec_checks_the_artifact() {
    let f = fixture("binary_shallow");
    let d = tempfile::tempdir().unwrap();
    std::fs::copy(xgb_dir().join(&f.model), d.path().join("m.json")).unwrap();
    let cols: Vec<String> = (0..f.num_feature).map(|i| format!("\"f{i}\"")).collect();
    let spec = format!(
        "feature_set = \"churn_signals\"\nfeature_set_version = 1\nfeatures = [{}]\nobjective = \"binary:logistic\"\n[artifact]\npath = \"m.json\"\n",
        cols.join(", ")
    );
    std::fs::write(d.path().join("model.toml"), &spec).unwrap();
    let m = model::load(d.path()).unwrap();
    assert_eq!(m.spec.as_ref().unwrap().features.len(), f.num_feature);
    // One column short: the spec no longer describes the artifact.
    let short = spec.replace("\"f0\", ", "");
    std::fs::write(d.path().join("model.toml"), short).unwrap();
    let e = model::load(d.path()).unwrap_err().to_string();
    assert!(e.contains("model.toml") && e.contains("features"), "{e}");
    // SageMaker layout: the artifact alone, named xgboost-model (UBJSON inside).
    let sm = tempfile::tempdir().unwrap();
    std::fs::copy(
        xgb_dir().join("binary_deep_nan.ubj"),
        sm.path().join("xgboost-model"),
    )
    .unwrap();
    let m = model::load(sm.path()).unwrap();
    assert_eq!(m.booster.format(), ModelFormat::Ubjson);
    // Legacy binary: a clear error.
    std::fs::write(sm.path().join("xgboost-model"), b"binf\x00\x00\x00\x3f").unwrap();
    let e = model::load(sm.path()).unwrap_err().to_string();
    assert!(
        e.contains("legacy binary") && e.contains("save_model"),
        "{e}"
    );
}

// ---------------------------------------------------------------- runner semantics

#[test]
fn multi_record_packs_exactly_up_to_the_payload_limit() {
    let d = tempfile::tempdir().unwrap();
    // 1024 records: 1023 of 1023 bytes and one of 1024, joined by 1023 newlines =
    // 1,048,576 bytes: exactly 1 MB. Then 10 more records.
    let mut data = Vec::new();
    for i in 0..1034 {
        let len = if i == 1023 { 1024 } else { 1023 };
        let id = format!("{i},");
        data.extend_from_slice(id.as_bytes());
        data.extend(std::iter::repeat_n(b'x', len - id.len()));
        data.push(b'\n');
    }
    write(&d.path().join("in/at_limit.csv"), &data);
    // Same, one byte more in record 1024: the 1024th record no longer fits.
    let mut over = data.clone();
    let pos = 1023 * 1024 + 5;
    over.insert(pos, b'y');
    write(&d.path().join("in/over_limit.csv"), &over);
    let mut j = job(&d.path().join("in/at_limit.csv"), &d.path().join("out"));
    j.max_payload_mb = Some(1);
    j.max_concurrent_transforms = 1;
    j.batch_strategy = Some(BatchStrategy::MultiRecord);
    let inv = Arc::new(EchoInvoker::default());
    let r = run_job(inv.clone(), &j);
    assert_eq!(r.status, JobStatus::Completed, "{:?}", r.failure_reason);
    assert_eq!(*inv.sizes.lock().unwrap(), vec![1_048_576, 10 * 1024 - 1]);
    assert_eq!(r.requests, 2);

    j.input_uri = d.path().join("in/over_limit.csv").display().to_string();
    let inv = Arc::new(EchoInvoker::default());
    let r = run_job(inv.clone(), &j);
    assert_eq!(r.status, JobStatus::Completed);
    assert_eq!(
        *inv.sizes.lock().unwrap(),
        vec![1023 * 1024 - 1, 1025 + 10 * 1024]
    );
    let out = std::fs::read_to_string(d.path().join("out/over_limit.csv.out")).unwrap();
    let ids: Vec<usize> = out.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(ids, (0..1034).collect::<Vec<_>>());
}

#[test]
fn a_record_over_the_limit_fails_only_its_object() {
    let d = tempfile::tempdir().unwrap();
    write(&d.path().join("in/a.csv"), b"1,x\n2,y\n");
    let mut big = b"1,ok\n2,".to_vec();
    big.extend(std::iter::repeat_n(b'z', 1_048_576));
    big.extend_from_slice(b"\n3,ok\n");
    write(&d.path().join("in/b.csv"), &big);
    write(&d.path().join("in/c.csv"), b"7,x\n");
    let mut j = job(&d.path().join("in"), &d.path().join("out"));
    j.max_payload_mb = Some(1);
    let r = run_job(Arc::new(EchoInvoker::default()), &j);
    assert_eq!(r.status, JobStatus::Failed);
    let reason = r.failure_reason.unwrap();
    assert!(
        reason.contains("b.csv") && reason.contains("record 2"),
        "{reason}"
    );
    assert_eq!(
        std::fs::read_to_string(d.path().join("out/a.csv.out")).unwrap(),
        "1\n2\n"
    );
    assert_eq!(
        std::fs::read_to_string(d.path().join("out/c.csv.out")).unwrap(),
        "7\n"
    );
    assert!(!d.path().join("out/b.csv.out").exists());
    let b = r.objects.iter().find(|o| o.input == "b.csv").unwrap();
    assert!(b.output.is_none() && b.error.is_some());
}

#[test]
fn order_is_preserved_across_concurrent_requests() {
    let d = tempfile::tempdir().unwrap();
    let mut data = String::new();
    for i in 0..600 {
        data.push_str(&format!("{i},{}\n", i * 3));
    }
    write(&d.path().join("in.csv"), data.as_bytes());
    let mut j = job(&d.path().join("in.csv"), &d.path().join("out"));
    j.batch_strategy = Some(BatchStrategy::SingleRecord);
    j.max_payload_mb = Some(1);
    j.max_concurrent_transforms = 8;
    let inv = Arc::new(EchoInvoker {
        jitter: true,
        ..Default::default()
    });
    let r = run_job(inv.clone(), &j);
    assert_eq!(r.status, JobStatus::Completed);
    assert_eq!(inv.calls.load(Ordering::SeqCst), 600);
    let m = inv.max_in_flight.load(Ordering::SeqCst);
    assert!(
        m > 1 && m <= 8,
        "requests in flight: {m} (must be concurrent, at most 8)"
    );
    let out = std::fs::read_to_string(d.path().join("out/in.csv.out")).unwrap();
    let ids: Vec<usize> = out.lines().map(|l| l.parse().unwrap()).collect();
    assert_eq!(ids, (0..600).collect::<Vec<_>>());
}

#[test]
fn zero_concurrency_asks_the_model_and_caps_by_payload() {
    let d = tempfile::tempdir().unwrap();
    let data: String = (0..200).map(|i| format!("{i}\n")).collect();
    write(&d.path().join("in.csv"), data.as_bytes());
    let mut j = job(&d.path().join("in.csv"), &d.path().join("out"));
    j.batch_strategy = None;
    j.max_payload_mb = Some(50);
    j.max_concurrent_transforms = 0;
    let inv = Arc::new(EchoInvoker {
        params: Some(ExecutionParameters {
            max_concurrent_transforms: 7,
            batch_strategy: serving::ContractBatchStrategy::SingleRecord,
            max_payload_in_mb: 6,
        }),
        ..Default::default()
    });
    let r = run_job(inv.clone(), &j);
    assert_eq!(r.effective.max_concurrent_transforms, 2, "100 MB / 50 MB");
    assert_eq!(r.effective.batch_strategy, BatchStrategy::SingleRecord);
    assert_eq!(r.requests, 200);
}

#[test]
fn filters_and_join_give_id_score_lines() {
    let f = fixture("binary_deep_nan");
    let d = tempfile::tempdir().unwrap();
    let csv = std::fs::read_to_string(xgb_dir().join(&f.input)).unwrap();
    let with_ids: String = csv
        .lines()
        .enumerate()
        .map(|(i, l)| format!("cust-{i:04},{l}\n"))
        .collect();
    write(&d.path().join("in/scores.csv"), with_ids.as_bytes());
    let mut j = job(&d.path().join("in"), &d.path().join("out"));
    j.data_processing.input_filter = "$[1:]".into();
    j.data_processing.join_source = JoinSource::Input;
    j.data_processing.output_filter = "$[0,-1]".into();
    j.max_payload_mb = Some(1);
    j.max_concurrent_transforms = 3;
    let b = Arc::new(load_booster(&f));
    let r = run_job(Arc::new(InProcessInvoker::new(b)), &j);
    assert_eq!(r.status, JobStatus::Completed, "{:?}", r.failure_reason);
    let out = std::fs::read_to_string(d.path().join("out/scores.csv.out")).unwrap();
    let want = expected(&f);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), want.len());
    let mut maxd = 0f64;
    for (i, (l, w)) in lines.iter().zip(&want).enumerate() {
        let (id, score) = l.split_once(',').unwrap();
        assert_eq!(id, format!("cust-{i:04}"));
        assert!(!score.contains(','), "only id and score: {l}");
        maxd = maxd.max((score.parse::<f64>().unwrap() - w[0]).abs());
    }
    assert!(maxd <= 1e-6, "{maxd}");
}

#[test]
fn nested_paths_are_mirrored_and_empty_objects_give_empty_outputs() {
    let d = tempfile::tempdir().unwrap();
    let input = d.path().join("in");
    write(&input.join("a/part-0.csv"), b"1\n2\n");
    write(&input.join("a/b/part-1.csv"), b"3\n");
    write(&input.join("top.csv"), b"4\r\n\r\n5");
    write(&input.join("z/empty.csv"), b"");
    let mut j = job(&input, &d.path().join("out"));
    j.instance_count = 2;
    let inv = Arc::new(EchoInvoker::default());
    let r = run_job(inv.clone(), &j);
    assert_eq!(r.status, JobStatus::Completed);
    let read = |p: &str| std::fs::read_to_string(d.path().join("out").join(p)).unwrap();
    assert_eq!(read("a/part-0.csv.out"), "1\n2\n");
    assert_eq!(read("a/b/part-1.csv.out"), "3\n");
    assert_eq!(read("top.csv.out"), "4\n5\n");
    assert_eq!(read("z/empty.csv.out"), "");
    let keys: Vec<(&str, u32)> = r
        .objects
        .iter()
        .map(|o| (o.input.as_str(), o.instance))
        .collect();
    // Key order, round-robin over 2 instances.
    assert_eq!(
        keys,
        vec![
            ("a/b/part-1.csv", 0),
            ("a/part-0.csv", 1),
            ("top.csv", 0),
            ("z/empty.csv", 1)
        ]
    );
    assert_eq!(r.records, 5);
    assert_eq!(
        inv.calls.load(Ordering::SeqCst),
        3,
        "no request for the empty object"
    );
}

#[test]
fn split_none_sends_each_object_whole_in_one_request() {
    let d = tempfile::tempdir().unwrap();
    write(&d.path().join("in/a.csv"), b"1,x\n2,y");
    let mut big = b"3,".to_vec();
    big.extend(std::iter::repeat_n(b'z', 1_048_575));
    write(&d.path().join("in/big.csv"), &big);
    let mut j = job(&d.path().join("in"), &d.path().join("out"));
    j.split_type = SplitType::None;
    j.assemble_with = AssembleWith::None;
    j.max_payload_mb = Some(1);
    let inv = Arc::new(EchoInvoker::default());
    let r = run_job(inv.clone(), &j);
    assert_eq!(
        *inv.sizes.lock().unwrap(),
        vec![7],
        "a.csv as is, one request"
    );
    assert_eq!(
        std::fs::read_to_string(d.path().join("out/a.csv.out")).unwrap(),
        "1\n2\n"
    );
    assert_eq!(r.status, JobStatus::Failed);
    let reason = r.failure_reason.unwrap();
    assert!(
        reason.contains("big.csv") && reason.contains("SplitType=None"),
        "{reason}"
    );
    assert!(!d.path().join("out/big.csv.out").exists());
}

#[test]
fn failed_requests_are_retried_then_fail_the_object_without_output() {
    let d = tempfile::tempdir().unwrap();
    write(&d.path().join("in/good.csv"), b"1\n2\n");
    write(&d.path().join("in/bad.csv"), b"3\nFAIL\n");
    let mut j = job(&d.path().join("in"), &d.path().join("out"));
    j.invocation_max_retries = 2;
    j.batch_strategy = Some(BatchStrategy::SingleRecord);
    j.max_concurrent_transforms = 1;
    let inv = Arc::new(EchoInvoker {
        fail_marker: Some("FAIL"),
        ..Default::default()
    });
    let r = run_job(inv.clone(), &j);
    assert_eq!(r.status, JobStatus::Failed);
    let reason = r.failure_reason.unwrap();
    assert!(
        reason.contains("bad.csv") && reason.contains("3 attempt"),
        "{reason}"
    );
    assert!(!d.path().join("out/bad.csv.out").exists());
    assert!(d.path().join("out/good.csv.out").exists());
    let bad = r.objects.iter().find(|o| o.input == "bad.csv").unwrap();
    assert_eq!(bad.failed_attempts, 3);
    // 2 good + 1 good in bad.csv + 3 attempts on FAIL.
    assert_eq!(inv.calls.load(Ordering::SeqCst), 6);

    // A flaky model that fails twice then answers: retries save the object.
    let inv = Arc::new(EchoInvoker {
        fail_first: 2,
        ..Default::default()
    });
    j.input_uri = d.path().join("in/good.csv").display().to_string();
    let r = run_job(inv, &j);
    assert_eq!(r.status, JobStatus::Completed);
    assert_eq!(r.objects[0].failed_attempts, 2);
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn invocation_timeouts_are_retried_then_fail_the_job() {
    use axum::routing::post;
    let rt = runtime();
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let addr = rt.block_on(async move {
        let app = axum::Router::new().route(
            "/invocations",
            post(move || {
                let h = h.clone();
                async move {
                    h.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    "late\n"
                }
            }),
        );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(l, app).await });
        addr
    });
    let d = tempfile::tempdir().unwrap();
    write(&d.path().join("in/slow.csv"), b"1\n");
    let mut j = job(&d.path().join("in"), &d.path().join("out"));
    j.invocation_timeout_secs = 1;
    j.invocation_max_retries = 1;
    j.max_concurrent_transforms = 1;
    j.max_payload_mb = Some(6);
    j.batch_strategy = Some(BatchStrategy::MultiRecord);
    let inv = Arc::new(HttpInvoker::new(&format!("http://{addr}")).unwrap());
    let t = Instant::now();
    let r = run_job(inv, &j);
    let took = t.elapsed();
    assert_eq!(r.status, JobStatus::Failed);
    let reason = r.failure_reason.unwrap();
    assert!(
        reason.contains("slow.csv") && reason.contains("no answer within"),
        "{reason}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 2, "1 try + 1 retry");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert!(!d.path().join("out/slow.csv.out").exists());
}

#[test]
fn http_invoker_and_in_process_invoker_write_the_same_bytes() {
    let f = fixture("multi_softprob_nan");
    let b = Arc::new(load_booster(&f));
    let rt = runtime();
    let bb = b.clone();
    let handle = rt.block_on(async move {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        serving::start(l, bb, ServeConfig::default()).unwrap()
    });
    let d = tempfile::tempdir().unwrap();
    let input = xgb_dir().join(&f.input);
    let mut j = job(&input, &d.path().join("http"));
    j.max_concurrent_transforms = 0; // ask /execution-parameters
    j.batch_strategy = None;
    j.max_payload_mb = None;
    let http = Arc::new(HttpInvoker::new(&format!("http://{}", handle.addr)).unwrap());
    let r = run_job(http, &j);
    assert_eq!(r.status, JobStatus::Completed, "{:?}", r.failure_reason);
    assert_eq!(r.effective.batch_strategy, BatchStrategy::MultiRecord);
    assert_eq!(r.effective.max_payload_mb, 6);
    j.output_uri = d.path().join("local").display().to_string();
    let r2 = run_job(Arc::new(InProcessInvoker::new(b)), &j);
    assert_eq!(r2.status, JobStatus::Completed);
    let name = format!("{}.out", f.input);
    let a = std::fs::read(d.path().join("http").join(&name)).unwrap();
    let c = std::fs::read(d.path().join("local").join(&name)).unwrap();
    assert_eq!(a, c);
    let rows = read_rows(std::str::from_utf8(&a).unwrap());
    assert_eq!(rows[0].len(), 3, "one probability per class");
    assert!(max_abs_diff(&rows, &expected(&f)) <= 1e-6);
    rt.block_on(handle.shutdown()).unwrap();
}

#[test]
fn progress_reports_every_record() {
    #[derive(Default)]
    struct Count(AtomicUsize, AtomicUsize);
    impl Progress for Count {
        fn object_started(&self, _: &str, records: u64) {
            self.0.fetch_add(records as usize, Ordering::SeqCst);
        }
        fn records_done(&self, n: u64) {
            self.1.fetch_add(n as usize, Ordering::SeqCst);
        }
    }
    let d = tempfile::tempdir().unwrap();
    write(&d.path().join("in/a.csv"), b"1\n2\n3\n");
    write(&d.path().join("in/b.csv"), b"4\n5\n");
    let j = job(&d.path().join("in"), &d.path().join("out"));
    let c = Count::default();
    let r = LocalTransform::new(Arc::new(EchoInvoker::default()))
        .run(&j, &c)
        .unwrap();
    assert_eq!(r.records, 5);
    assert_eq!(c.0.load(Ordering::SeqCst), 5);
    assert_eq!(c.1.load(Ordering::SeqCst), 5);
}

// ---------------------------------------------------------------- the container contract

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn contract_server_answers_a_real_client() {
    let f = fixture("binary_lossguide_nan");
    let b = Arc::new(load_booster(&f));
    let cfg = ServeConfig {
        max_body_bytes: 200_000,
        ..ServeConfig::default()
    };
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let h = serving::start(l, b, cfg).unwrap();
    let base = format!("http://{}", h.addr);
    let c = reqwest::Client::new();

    let r = c.get(format!("{base}/ping")).send().await.unwrap();
    assert_eq!(r.status(), 200);

    let r = c
        .get(format!("{base}/execution-parameters"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert_eq!(
        v,
        serde_json::json!({"MaxConcurrentTransforms": cpus, "BatchStrategy": "MULTI_RECORD", "MaxPayloadInMB": 6})
    );

    let csv = std::fs::read(xgb_dir().join(&f.input)).unwrap();
    let post = |body: Vec<u8>, ct: &'static str| {
        c.post(format!("{base}/invocations"))
            .header("Content-Type", ct)
            .body(body)
            .send()
    };
    let r = post(csv.clone(), "text/csv").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/csv");
    let text = r.text().await.unwrap();
    assert_eq!(text.lines().count(), f.rows);
    let d = max_abs_diff(&read_rows(&text), &expected(&f));
    assert!(d <= 1e-6, "{d}");

    let r = post(Vec::new(), "text/csv").await.unwrap();
    assert_eq!(r.status(), 204);
    assert!(r.bytes().await.unwrap().is_empty());

    let r = post(b"1,2,oops\n".to_vec(), "text/csv").await.unwrap();
    assert_eq!(r.status(), 415);
    assert!(r.text().await.unwrap().contains("line 1"));

    let r = post(csv.clone(), "application/json").await.unwrap();
    assert_eq!(r.status(), 415);

    let r = post(vec![b'1'; 250_000], "text/csv").await.unwrap();
    assert_eq!(r.status(), 413);

    // 50 concurrent requests, each a different slice of rows, each answered correctly.
    let lines: Vec<&str> = std::str::from_utf8(&csv).unwrap().lines().collect();
    let want = expected(&f);
    let mut tasks = Vec::new();
    for k in 0..50usize {
        let start = (k * 37) % (lines.len() - 60);
        let body = lines[start..start + 60].join("\n").into_bytes();
        let c = c.clone();
        let url = format!("{base}/invocations");
        tasks.push(tokio::spawn(async move {
            let r = c
                .post(url)
                .header("Content-Type", "text/csv")
                .body(body)
                .send()
                .await
                .unwrap();
            (start, r.status().as_u16(), r.text().await.unwrap())
        }));
    }
    for t in tasks {
        let (start, status, text) = t.await.unwrap();
        assert_eq!(status, 200);
        let d = max_abs_diff(&read_rows(&text), &want[start..start + 60]);
        assert!(d <= 1e-6);
    }
    h.shutdown().await.unwrap();
}

// ---------------------------------------------------------------- the CLI

#[test]
fn cli_score_writes_id_score_lines_and_fails_naming_the_object() {
    let f = fixture("binary_shallow");
    let d = tempfile::tempdir().unwrap();
    let csv = std::fs::read_to_string(xgb_dir().join(&f.input)).unwrap();
    let with_ids: String = csv
        .lines()
        .enumerate()
        .map(|(i, l)| format!("{i},{l}\n"))
        .collect();
    write(&d.path().join("in/part-0.csv"), with_ids.as_bytes());
    let out = d.path().join("out");
    let run = |input: &Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_c360"))
            .current_dir(d.path())
            .args(["score", "--model"])
            .arg(xgb_dir().join(&f.model))
            .arg("--input")
            .arg(input)
            .arg("--output")
            .arg(&out)
            .args([
                "--input-filter",
                "$[1:]",
                "--join-source",
                "input",
                "--output-filter",
                "$[0,-1]",
                "--max-payload-mb",
                "1",
            ])
            .output()
            .unwrap()
    };
    let o = run(&d.path().join("in"));
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains("Completed") && stderr.contains("300 records"),
        "{stderr}"
    );
    let text = std::fs::read_to_string(out.join("part-0.csv.out")).unwrap();
    let want = expected(&f);
    let got: Vec<Vec<f64>> = read_rows(&text);
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g[0], i as f64);
        assert!((g[1] - w[0]).abs() <= 1e-6);
    }
    // A bad record: the object fails, exit code non-zero, message names the object.
    write(&d.path().join("bad/part-9.csv"), b"1,2,3\n");
    let o = run(&d.path().join("bad"));
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("part-9.csv") && stderr.contains("415"),
        "{stderr}"
    );
    assert!(!out.join("part-9.csv.out").exists());

    // The benchmark's hidden in-process mode: one JSON line with the evaluator's timing.
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_c360"))
        .args([
            "score",
            "--bench-in-process",
            "--bench-repeat",
            "1",
            "--model",
        ])
        .arg(xgb_dir().join(&f.model))
        .arg("--input")
        .arg(xgb_dir().join(&f.input))
        .arg("--output")
        .arg(d.path().join("unused"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["rows"], 300);
    assert!(v["predict_s"].as_f64().unwrap() > 0.0);
    let sum: f64 = expected(&f).iter().map(|r| r[0]).sum();
    assert!((v["checksum"].as_f64().unwrap() - sum).abs() < 1e-3);
    assert!(
        !d.path().join("unused").exists(),
        "benchmark mode writes nothing"
    );
}
