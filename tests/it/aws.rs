//! S3 and SageMaker against moto's server mode on loopback (installed from PyPI by
//! scripts/test.sh). moto completes transform jobs without running them, so the whole-run
//! test plays SageMaker's data plane with the local runner on the same S3 prefixes: the
//! orchestration, the requests, the read-back and the publishing are all real.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use c360::aws::{self, AwsSettings, StaticCredentials};
use c360::store::{ObjectStore, S3Store};
use polars::prelude::SerReader;

use crate::pipeline::TestProject;

pub const KMS_KEY: &str =
    "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
pub const ROLE: &str = "arn:aws:iam::123456789012:role/c360-sagemaker";

/// A moto server on a free loopback port, shared by the AWS tests of this binary. It is
/// started through a shell that kills it when our stdin pipe closes (when the tests exit).
pub struct Moto {
    pub endpoint: String,
    _child: Mutex<Child>,
}

fn moto_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("C360_MOTO_SERVER").map(PathBuf::from) {
        if p.exists() {
            return Some(p);
        }
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("moto_server"))
            .find(|p| p.is_file())
    })
}

/// The shared moto server, or None (with a loud note) when moto is not installed. Under CI
/// or with C360_REQUIRE_MOTO=1 a missing moto is a failure.
pub fn moto() -> Option<&'static Moto> {
    static MOTO: OnceLock<Option<Moto>> = OnceLock::new();
    MOTO.get_or_init(|| {
        let Some(bin) = moto_binary() else {
            let required = std::env::var_os("CI").is_some()
                || std::env::var_os("C360_REQUIRE_MOTO").is_some_and(|v| v == "1");
            assert!(
                !required,
                "moto_server not found (C360_MOTO_SERVER or PATH): run the tests with scripts/test.sh, which installs moto[server] into .venv-test"
            );
            eprintln!(
                "\n*** SKIPPING the S3/SageMaker tests: moto_server not found. Install it with `python3 -m venv .venv-test && .venv-test/bin/pip install 'moto[server]'` and set C360_MOTO_SERVER=.venv-test/bin/moto_server (scripts/test.sh does both). ***\n"
            );
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free loopback port");
        let script = format!(
            "'{}' -H 127.0.0.1 -p {port} >/dev/null 2>&1 & pid=$!; read _; kill $pid",
            bin.display()
        );
        let child = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "moto_server did not start on port {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        // The in-process AWS clients find credentials through the standard chain.
        std::env::set_var("AWS_ACCESS_KEY_ID", "testing");
        std::env::set_var("AWS_SECRET_ACCESS_KEY", "testing");
        std::env::set_var("AWS_REGION", "us-east-1");
        Some(Moto {
            endpoint: format!("http://127.0.0.1:{port}"),
            _child: Mutex::new(child),
        })
    })
    .as_ref()
}

impl Moto {
    pub fn settings(&self) -> AwsSettings {
        AwsSettings {
            region: Some("us-east-1".into()),
            endpoint_url: Some(self.endpoint.clone()),
            s3_force_path_style: true,
            kms_key_id: Some(KMS_KEY.into()),
            credentials: Some(StaticCredentials {
                access_key_id: "testing".into(),
                secret_access_key: "testing".into(),
            }),
            ..AwsSettings::default()
        }
    }

    /// The `[aws]` section for a c360.toml (`extra`: more `[aws]` keys).
    pub fn toml(&self, extra: &str) -> String {
        format!(
            "[aws]\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\ns3_force_path_style = true\nkms_key_id = \"{KMS_KEY}\"\n{extra}\n[aws.sagemaker]\nrole_arn = \"{ROLE}\"\nsubnets = [\"subnet-0a1b2c3d\", \"subnet-0e1f2a3b\"]\nsecurity_groups = [\"sg-0123abcd\"]\npoll_seconds = 0.05\nmax_poll_seconds = 0.2\ntags = {{ team = \"marketing-analytics\" }}\n",
            self.endpoint
        )
    }

    pub fn create_bucket(&self, bucket: &str) {
        let s = self.settings();
        let b = bucket.to_string();
        aws::block_on(async move {
            let c = aws::s3_client(&s).await.unwrap();
            c.create_bucket().bucket(b).send().await.unwrap();
        });
    }

    pub fn sagemaker(&self) -> aws_sdk_sagemaker::Client {
        let s = self.settings();
        aws::block_on(async move { aws::sagemaker_client(&s).await.unwrap() })
    }
}

pub fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The S3 store passes the store contract suite (the one `LocalStore` passes in the unit
/// tests), built with a 6 MiB multipart threshold so the suite's 13 MiB object goes up in
/// parts; then what only S3 has: SSE-KMS on every write and multipart ETags.
#[test]
fn s3_store_meets_the_store_contract_and_encrypts_every_write() {
    let Some(m) = moto() else { return };
    let bucket = unique("c360-store");
    m.create_bucket(&bucket);
    let mut s = m.settings();
    s.multipart_threshold_mb = 6;
    s.multipart_part_mb = 5;
    let st = S3Store::open(&format!("s3://{bucket}/team/store"), &s).unwrap();

    c360::store::suite::store_contract(&st);

    // Small and large objects: the large one went up in 3 parts.
    st.put("a/small.json", b"{\"x\":1}").unwrap();
    let big = c360::store::suite::big_object();
    st.put("a/big.bin", &big).unwrap();
    let listed = st.list("a").unwrap();
    let big_meta = &listed[0];
    assert_eq!(big_meta.key, "a/big.bin");
    assert_eq!(big_meta.size, big.len() as u64);
    assert!(
        big_meta.version.trim_matches('"').ends_with("-3"),
        "a 13 MiB object in 5 MiB parts has a 3-part multipart ETag, got {}",
        big_meta.version
    );
    // The suite's keys are below the store's prefix in the bucket.
    assert_eq!(st.full_key("a/big.bin"), "team/store/a/big.bin");

    // Every write carries SSE-KMS with our key and a bucket key.
    for k in ["a/small.json", "a/big.bin"] {
        let (sse, key, bucket_key) = st.encryption_of(k).unwrap();
        assert_eq!(sse.as_deref(), Some("aws:kms"), "{k}");
        assert_eq!(key.as_deref(), Some(KMS_KEY), "{k}");
        // moto 5.2 keeps the bucket-key flag of single puts only (not of multipart uploads).
        assert!(bucket_key || k == "a/big.bin", "{k}");
    }

    // Racing commits through the offline store's commit point: one manifest wins, the
    // others get an error that says so.
    let st = Arc::new(st);
    let results: Vec<Result<(), String>> = (0..6)
        .map(|i| {
            let st = st.clone();
            std::thread::spawn(move || {
                c360::offline::commit_manifest(
                    st.as_ref(),
                    "features/rfm/v1/as_of=2024-06-30",
                    format!("{{\"writer\":{i}}}").as_bytes(),
                    None,
                )
                .map_err(|e| e.to_string())
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    for e in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(
            e.contains("another writer committed features/rfm/v1/as_of=2024-06-30/_manifest.json"),
            "{e}"
        );
    }

    // No KMS key and require_kms (the default): the store refuses to open.
    let mut no_key = m.settings();
    no_key.kms_key_id = None;
    let e = S3Store::open(&format!("s3://{bucket}/x"), &no_key).unwrap_err();
    assert!(e.to_string().contains("kms_key_id"), "{e}");
}

/// Uploads a local source folder to S3 through the store (so it is encrypted too).
/// SageMaker's data plane, played by the local runner with the model in `model_dir` on the
/// job's own S3 prefixes (moto completes transform jobs without running them); `plays`
/// counts the jobs played.
pub fn local_data_plane(
    model_dir: &std::path::Path,
    plays: &Arc<AtomicUsize>,
) -> c360::transform::sagemaker::DataPlaneHook {
    let model = c360::model::load(model_dir).unwrap();
    let booster = Arc::new(model.booster.clone());
    let plays = plays.clone();
    c360::transform::sagemaker::DataPlaneHook(Arc::new(move |spec| {
        plays.fetch_add(1, Ordering::SeqCst);
        let inv = Arc::new(c360::transform::InProcessInvoker::new(booster.clone()));
        let r = c360::transform::BatchTransform::run(
            &c360::transform::LocalTransform::new(inv),
            spec,
            &c360::transform::NoProgress,
        )
        .map_err(|e| e.to_string())?;
        assert_eq!(r.status, c360::transform::JobStatus::Completed);
        Ok(())
    }))
}

pub fn upload_dir(st: &dyn ObjectStore, dir: &std::path::Path) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().to_string();
        if p.is_file() {
            st.put(&name, &std::fs::read(&p).unwrap()).unwrap();
        }
    }
}

#[test]
fn whole_run_on_s3_and_sagemaker() {
    let Some(m) = moto() else { return };
    let bucket = unique("c360-run");
    m.create_bucket(&bucket);
    let t = TestProject::new(|j| j.replace("backend = \"local\"", "backend = \"sagemaker\""));
    t.generate(400);
    let settings = m.settings();
    let source_uri = format!("s3://{bucket}/domains/customer360");
    let store_uri = format!("s3://{bucket}/c360");
    let src = S3Store::open(&source_uri, &settings).unwrap();
    upload_dir(&src, &t.path().join("data"));
    let cfg = std::fs::read_to_string(t.path().join("c360.toml")).unwrap();
    let cfg = cfg
        .replace("uri = \"store\"", &format!("uri = \"{store_uri}\""))
        .replace("uri = \"data\"", &format!("uri = \"{source_uri}\""))
        + &m.toml(&format!(
            "cache_dir = \"{}\"\n",
            t.path().join("cache").display()
        ));
    std::fs::write(t.path().join("c360.toml"), &cfg).unwrap();
    let _aws_settings = crate::common::in_process_project();
    let project = c360::project::Project::load(Some(&t.path().join("c360.toml"))).unwrap();

    let plays = Arc::new(AtomicUsize::new(0));
    let hook = local_data_plane(&crate::features::repo().join("models/churn_xgb"), &plays);
    let opts = c360::pipeline::RunOptions {
        as_of: Some("2024-06-30".parse().unwrap()),
        data_plane: Some(hook),
        ..Default::default()
    };
    // The dry run shows the planner's choice and its cost.
    let dry = c360::pipeline::run(
        &project,
        "churn_weekly",
        &c360::pipeline::RunOptions {
            dry_run: true,
            ..opts.clone()
        },
        &c360::pipeline::Quiet,
    )
    .unwrap();
    let dry_plan = serde_json::to_value(&dry.plan).unwrap();
    let plan = &dry_plan["transform"]["plan"];
    assert_eq!(plan["rows"], 400, "{plan}");
    assert!(plan["est_cost_usd"].as_f64().unwrap() > 0.0, "{plan}");

    let report =
        c360::pipeline::run(&project, "churn_weekly", &opts, &c360::pipeline::Quiet).unwrap();
    assert_eq!(report.ledger.status, c360::pipeline::RunStatus::Succeeded);
    assert_eq!(plays.load(Ordering::SeqCst), 1);
    // One score per customer signed up by the as-of date (the snapshot's rows).
    let features = report
        .ledger
        .steps
        .iter()
        .find(|s| s.name == "features")
        .unwrap();
    let customers = features.rows.unwrap();
    assert!(customers > 100 && customers < 400, "{customers}");
    let summary = serde_json::to_value(report.summary.clone().unwrap()).unwrap();
    assert_eq!(summary["rows"], customers, "{summary}");

    // What SageMaker was asked to do, read back from it.
    let transform = report
        .ledger
        .steps
        .iter()
        .find(|s| s.name == "transform")
        .unwrap();
    let job_name = transform.detail.to_json()["job_name"]
        .as_str()
        .unwrap()
        .to_string();
    let model_name = transform.detail.to_json()["model"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(job_name.len() <= 63 && job_name.starts_with("c360-churn-weekly-2024-06-30-"));
    let plan = report
        .ledger
        .steps
        .iter()
        .find(|s| s.name == "transform_input")
        .unwrap()
        .detail
        .to_json()["plan"]
        .clone();
    let sm = m.sagemaker();
    let (jn, mn) = (job_name.clone(), model_name.clone());
    let (job, model, tags) = aws::block_on(async move {
        let job = sm
            .describe_transform_job()
            .transform_job_name(&jn)
            .send()
            .await
            .unwrap();
        let model = sm.describe_model().model_name(&mn).send().await.unwrap();
        let tags = sm
            .list_tags()
            .resource_arn(job.transform_job_arn().unwrap_or_default())
            .send()
            .await
            .expect("ListTags on the transform job")
            .tags()
            .iter()
            .map(|t| {
                (
                    t.key().unwrap_or_default().to_string(),
                    t.value().unwrap_or_default().to_string(),
                )
            })
            .collect::<Vec<_>>();
        (job, model, tags)
    });
    assert_eq!(model.execution_role_arn(), Some(ROLE));
    let pc = model.primary_container().unwrap();
    assert_eq!(
        pc.image(),
        Some("683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1")
    );
    assert_eq!(
        pc.model_data_url(),
        Some("s3://example-ml-artifacts/models/churn_xgb/model.tar.gz")
    );
    let vpc = model.vpc_config().unwrap();
    assert_eq!(vpc.subnets(), ["subnet-0a1b2c3d", "subnet-0e1f2a3b"]);
    assert_eq!(vpc.security_group_ids(), ["sg-0123abcd"]);

    assert_eq!(job.model_name(), Some(model_name.as_str()));
    assert_eq!(
        job.max_concurrent_transforms(),
        plan["max_concurrent_transforms"].as_i64().map(|v| v as i32)
    );
    assert_eq!(
        job.max_payload_in_mb(),
        plan["max_payload_mb"].as_i64().map(|v| v as i32)
    );
    assert_eq!(
        job.batch_strategy().map(|b| b.as_str()),
        Some("MultiRecord")
    );
    let input = job.transform_input().unwrap();
    assert_eq!(input.content_type(), Some("text/csv"));
    assert_eq!(input.split_type().map(|s| s.as_str()), Some("Line"));
    let s3 = input.data_source().unwrap().s3_data_source().unwrap();
    assert_eq!(s3.s3_data_type().map(|t| t.as_str()), Some("S3Prefix"));
    assert_eq!(
        s3.s3_uri(),
        Some(
            format!(
                "{store_uri}/runs/churn_weekly/{}/transform-input/",
                report.ledger.run_id
            )
            .as_str()
        )
    );
    let out = job.transform_output().unwrap();
    assert_eq!(out.kms_key_id(), Some(KMS_KEY));
    assert_eq!(out.assemble_with().map(|a| a.as_str()), Some("Line"));
    assert!(out
        .s3_output_path()
        .unwrap()
        .ends_with("/transform-output/"));
    let res = job.transform_resources().unwrap();
    assert_eq!(
        res.instance_type().map(|t| t.as_str()),
        plan["instance_type"].as_str()
    );
    assert_eq!(
        res.instance_count(),
        plan["instance_count"].as_i64().map(|v| v as i32)
    );
    assert_eq!(res.volume_kms_key_id(), Some(KMS_KEY));
    let dp = job.data_processing().unwrap();
    assert_eq!(dp.input_filter(), Some("$[1:]"));
    assert_eq!(dp.output_filter(), Some("$[0,-1]"));
    assert_eq!(dp.join_source().map(|j| j.as_str()), Some("Input"));
    let mc = job.model_client_config().unwrap();
    assert_eq!(mc.invocations_timeout_in_seconds(), Some(600));
    {
        for (k, v) in [
            ("c360:job", "churn_weekly"),
            ("c360:run-id", report.ledger.run_id.as_str()),
            ("c360:product", "customer_churn_scores"),
            ("team", "marketing-analytics"),
        ] {
            assert!(
                tags.iter().any(|(a, b)| a == k && b == v),
                "tag {k}={v} in {tags:?}"
            );
        }
    }

    // Every object c360 (and the played data plane) wrote is SSE-KMS with our key.
    let store = S3Store::open(&store_uri, &settings).unwrap();
    let objects = store.list("").unwrap();
    assert!(objects.len() >= 10, "{objects:?}");
    for o in &objects {
        let (sse, key, _) = store.encryption_of(&o.key).unwrap();
        assert_eq!(sse.as_deref(), Some("aws:kms"), "{}", o.key);
        assert_eq!(key.as_deref(), Some(KMS_KEY), "{}", o.key);
    }
    // The product is there, readable, with one row per customer.
    let latest: serde_json::Value = serde_json::from_slice(
        &store
            .get("products/customer_churn_scores/latest.json")
            .unwrap(),
    )
    .unwrap();
    let manifest_key = format!(
        "{}/_manifest.json",
        latest["partition"].as_str().unwrap_or_default()
    );
    let parts: Vec<_> = objects
        .iter()
        .filter(|o| {
            o.key.starts_with("products/customer_churn_scores/") && o.key.ends_with(".parquet")
        })
        .collect();
    assert!(!parts.is_empty(), "{latest}");
    let mut rows = 0;
    for p in &parts {
        let bytes = store.get(&p.key).unwrap();
        let df = polars::prelude::ParquetReader::new(std::io::Cursor::new(bytes))
            .finish()
            .unwrap();
        let scores = df.column("churn_score").unwrap().f64().unwrap();
        assert_eq!(scores.null_count(), 0);
        assert!(scores
            .iter()
            .all(|s| s.is_some_and(|s| (0.0..=1.0).contains(&s))));
        rows += df.height();
    }
    assert_eq!(rows as u64, customers, "{manifest_key}");

    // A second invocation reuses the finished run: no new job, no new data-plane play.
    let again =
        c360::pipeline::run(&project, "churn_weekly", &opts, &c360::pipeline::Quiet).unwrap();
    assert!(again.reused);
    assert_eq!(plays.load(Ordering::SeqCst), 1);
}

#[test]
fn validate_names_every_bad_aws_setting() {
    let dir = tempfile::tempdir().unwrap();
    // `c360 validate` on a c360.toml: exit code 3 and stderr.
    let validate = |toml: &str| {
        std::fs::write(dir.path().join("c360.toml"), toml).unwrap();
        let out = crate::features::c360()
            .current_dir(dir.path())
            .arg("validate")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(3), "{err}");
        err
    };
    let err = validate(
        "[store]\nuri = \"s3://my-bucket/c360\"\n[aws]\nregion = \"eu-west-1\"\nkms_key_id = \"my-key\"\n[aws.sagemaker]\nrole_arn = \"arn:aws:iam::123:role/x\"\nsubnets = [\"subnet-0a1b2c3d\"]\nsecurity_groups = [\"default\"]\n",
    );
    for needle in [
        "aws.kms_key_id: \"my-key\" is not a KMS key",
        "aws.sagemaker.role_arn: \"arn:aws:iam::123:role/x\" is not an IAM role ARN",
        "aws.sagemaker.security_groups: \"default\" is not a security group id",
    ] {
        assert!(err.contains(needle), "{needle} in {err}");
    }
    // An S3 store without a KMS key is refused up front, with the fix.
    let err = validate("[store]\nuri = \"s3://my-bucket/c360\"\n[aws]\nregion = \"eu-west-1\"\n");
    assert!(
        err.contains("aws.kms_key_id") && err.contains("require_kms = false"),
        "{err}"
    );
}

#[test]
fn service_on_s3_checks_sagemaker_reports_cost_and_records_failure_reasons() {
    use crate::service::{configure, wait_for, Http, Service, ADMIN, OPS};
    let Some(m) = moto() else { return };
    let bucket = unique("c360-svc");
    m.create_bucket(&bucket);
    // A schedule that never fires during the test: runs come from the API.
    let t = TestProject::new(|j| {
        j.replace("backend = \"local\"", "backend = \"sagemaker\"")
            .replace("schedule = \"0 6 * * MON\"", "schedule = \"0 6 29 2 *\"")
    });
    t.generate(150);
    let settings = m.settings();
    let source_uri = format!("s3://{bucket}/src");
    let store_uri = format!("s3://{bucket}/c360");
    upload_dir(
        &S3Store::open(&source_uri, &settings).unwrap(),
        &t.path().join("data"),
    );
    let base = std::fs::read_to_string(t.path().join("c360.toml")).unwrap();
    let base = base
        .replace("uri = \"store\"", &format!("uri = \"{store_uri}\""))
        .replace("uri = \"data\"", &format!("uri = \"{source_uri}\""));
    let cache = format!("cache_dir = \"{}\"\n", t.path().join("cache").display());
    std::fs::write(t.path().join("c360.toml"), base.clone() + &m.toml(&cache)).unwrap();
    configure(&t, "");
    let env = [
        ("AWS_ACCESS_KEY_ID", "testing"),
        ("AWS_SECRET_ACCESS_KEY", "testing"),
        ("AWS_REGION", "us-east-1"),
    ];
    let s = Service::start(&t, &env);
    let h = Http::new();
    let ready = h.get(&s.url("/readyz"), None);
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert_eq!(ready.json()["sagemaker"], "ready", "{}", ready.body);

    // A run: moto completes the transform job at once but writes no output, so the run
    // fails at the transform step, and the ledger says which output is missing.
    let r = h.send(
        "POST",
        &s.url("/jobs/churn_weekly/runs"),
        Some(OPS),
        Some(r#"{"as_of":"2024-06-30"}"#),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let run_id = r.json()["run_id"].as_str().unwrap().to_string();
    let ledger = wait_for("the run to end", 120, || {
        let l = h
            .get(
                &s.url(&format!("/jobs/churn_weekly/runs/{run_id}")),
                Some(OPS),
            )
            .json();
        (l["status"] == "failed").then_some(l)
    });
    let step = ledger["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "transform")
        .unwrap()
        .clone();
    let err = step["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("Completed but") && err.contains("transform-output/part-0.csv.out"),
        "{ledger}"
    );
    // The planner's cost estimate is a metric.
    let metrics = h.get(&s.url("/metrics"), Some(ADMIN)).body;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("c360_transform_cost_estimate_usd{"))
        .unwrap_or_else(|| panic!("no cost estimate in\n{metrics}"));
    assert!(
        line.contains("job=\"churn_weekly\"") && line.contains("instance_type=\"ml."),
        "{line}"
    );
    let usd: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(usd > 0.0 && usd < 1.0, "{line}");
    s.stop();

    // SageMaker unreachable: not ready, and the answer says why.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let extra =
        format!("{cache}sagemaker_endpoint_url = \"http://127.0.0.1:{dead}\"\nmax_attempts = 1\n");
    std::fs::write(t.path().join("c360.toml"), base + &m.toml(&extra)).unwrap();
    configure(&t, "");
    let s = Service::start(&t, &env);
    let ready = h.get(&s.url("/readyz"), None);
    assert_eq!(ready.status, 503, "{}", ready.body);
    assert!(ready.body.contains("SageMaker"), "{}", ready.body);
    s.stop();
}
