//! AWS settings (`[aws]` in `c360.toml`), SDK configuration, and the small runtime the
//! synchronous store and transform interfaces use to drive the async AWS SDK.
//!
//! Credentials and region come from the standard AWS chain (environment, profiles, SSO,
//! instance and task roles); `c360.toml` adds what the chain cannot know: the VPC interface
//! endpoints, the KMS key every write carries, and how SageMaker runs inside the VPC.
//! Nothing here ever logs or stores a secret.

use std::future::Future;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_credential_types::Credentials;
use serde::{Deserialize, Serialize};

/// `[aws]`: every key is optional; the S3 store and the SageMaker backend read them.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AwsSettings {
    /// Region (`eu-west-1`). Default: the standard chain (`AWS_REGION`, the profile).
    /// polars and the SDK never probe a public endpoint to find it when it is set.
    #[serde(default)]
    pub region: Option<String>,
    /// A named profile from `~/.aws/config` (default: `AWS_PROFILE`, else `default`).
    #[serde(default)]
    pub profile: Option<String>,
    /// An endpoint for every AWS service (tests, or a private API gateway).
    #[serde(default)]
    pub endpoint_url: Option<String>,
    /// The S3 VPC interface endpoint (`https://bucket.vpce-0a1b...s3.eu-west-1.vpce.amazonaws.com`).
    /// `AWS_ENDPOINT_URL_S3` works too; this key wins.
    #[serde(default)]
    pub s3_endpoint_url: Option<String>,
    /// The SageMaker API VPC interface endpoint (`AWS_ENDPOINT_URL_SAGEMAKER` works too).
    #[serde(default)]
    pub sagemaker_endpoint_url: Option<String>,
    /// The Glue VPC interface endpoint (`AWS_ENDPOINT_URL_GLUE` works too).
    #[serde(default)]
    pub glue_endpoint_url: Option<String>,
    /// The Lake Formation VPC interface endpoint (`AWS_ENDPOINT_URL_LAKEFORMATION` works too).
    #[serde(default)]
    pub lakeformation_endpoint_url: Option<String>,
    /// The EventBridge VPC interface endpoint (`AWS_ENDPOINT_URL_EVENTBRIDGE` works too).
    #[serde(default)]
    pub events_endpoint_url: Option<String>,
    /// Path-style S3 addressing (`endpoint/bucket/key`), needed by some endpoints and by
    /// test servers. Default false (virtual-hosted style).
    #[serde(default)]
    pub s3_force_path_style: bool,
    /// The KMS key (id, ARN or `alias/...`) every S3 write is encrypted with (SSE-KMS).
    #[serde(default)]
    pub kms_key_id: Option<String>,
    /// S3 Bucket Keys for SSE-KMS (fewer KMS calls, lower cost). Default true.
    #[serde(default = "yes")]
    pub bucket_key: bool,
    /// Refuse to write to S3 without `kms_key_id`. Default true. With false and no key,
    /// writes still ask for SSE-KMS, with the account's AWS-managed key (`aws/s3`).
    #[serde(default = "yes")]
    pub require_kms: bool,
    /// Objects larger than this go up as multipart uploads (MiB, default 16).
    #[serde(default = "default_multipart_threshold")]
    pub multipart_threshold_mb: u64,
    /// Multipart part size (MiB, 5..=5120, default 8).
    #[serde(default = "default_part_size")]
    pub multipart_part_mb: u64,
    /// Attempts per request, throttling and 5xx included, with exponential backoff and
    /// jitter (default 8).
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// Local folder for copies of S3 source tables (default: the OS cache folder).
    #[serde(default)]
    pub cache_dir: Option<String>,
    /// `[aws.sagemaker]`: how batch transform runs.
    #[serde(default)]
    pub sagemaker: SageMakerSettings,
    /// Programmatic credentials (tests, embedding). Never read from or written to a file.
    #[serde(skip)]
    pub credentials: Option<StaticCredentials>,
}

impl Default for AwsSettings {
    fn default() -> Self {
        AwsSettings {
            region: None,
            profile: None,
            endpoint_url: None,
            s3_endpoint_url: None,
            sagemaker_endpoint_url: None,
            glue_endpoint_url: None,
            lakeformation_endpoint_url: None,
            events_endpoint_url: None,
            s3_force_path_style: false,
            kms_key_id: None,
            bucket_key: true,
            require_kms: true,
            multipart_threshold_mb: default_multipart_threshold(),
            multipart_part_mb: default_part_size(),
            max_attempts: default_attempts(),
            cache_dir: None,
            sagemaker: SageMakerSettings::default(),
            credentials: None,
        }
    }
}

/// Credentials given in code; `Debug` never shows the secret.
#[derive(Clone, PartialEq)]
pub struct StaticCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl std::fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .finish()
    }
}

/// `[aws.sagemaker]`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SageMakerSettings {
    /// Execution role SageMaker assumes (`arn:aws:iam::123456789012:role/NAME`); needed to
    /// create models.
    #[serde(default)]
    pub role_arn: Option<String>,
    /// VPC subnets for the model containers (`subnet-...`, 1..=16); with security groups.
    #[serde(default)]
    pub subnets: Vec<String>,
    /// Security groups (`sg-...`, 1..=5); with subnets.
    #[serde(default)]
    pub security_groups: Vec<String>,
    /// No outbound network from the model container (default true).
    #[serde(default = "yes")]
    pub network_isolation: bool,
    /// KMS key for the transform output (default: `kms_key_id`).
    #[serde(default)]
    pub output_kms_key_id: Option<String>,
    /// KMS key for the instances' storage volumes (default: `kms_key_id`).
    #[serde(default)]
    pub volume_kms_key_id: Option<String>,
    /// First and longest wait between DescribeTransformJob polls, seconds (defaults 5 and
    /// 60; the wait doubles, with jitter).
    #[serde(default = "default_poll")]
    pub poll_seconds: f64,
    #[serde(default = "default_poll_max")]
    pub max_poll_seconds: f64,
    /// Planner: scored rows per second per vCPU of the model container (default 20000,
    /// replace with a measured figure). `c360 plan --rows-per-second-per-vcpu`.
    #[serde(default, alias = "throughput_rows_per_vcpu")]
    pub rows_per_second_per_vcpu: Option<f64>,
    /// Planner: a run's transform should finish within this (default 1h), written as
    /// `c360 plan --deadline` takes it: `90m`, `1h30m`, `3600` (seconds).
    #[serde(default)]
    pub deadline: Option<String>,
    /// The former spelling of `deadline`, in minutes (e.g. 90.0); give one or the other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_minutes: Option<f64>,
    /// Planner: the most instances one job may use (SageMaker's cap is 100; your quota may
    /// be lower).
    #[serde(default)]
    pub max_instances: Option<u32>,
    /// Planner: instance types it may choose from (default: every type in the price table).
    /// `c360 plan --allowed-types`.
    #[serde(default, alias = "instance_types")]
    pub allowed_types: Option<Vec<String>>,
    /// Planner: a price table replacing the one shipped in `pricing/` (path relative to
    /// c360.toml).
    #[serde(default)]
    pub prices: Option<String>,
    /// Extra tags on models and transform jobs (c360 adds job, run id and product).
    #[serde(default)]
    pub tags: std::collections::BTreeMap<String, String>,
}

impl Default for SageMakerSettings {
    fn default() -> Self {
        SageMakerSettings {
            role_arn: None,
            subnets: vec![],
            security_groups: vec![],
            network_isolation: true,
            output_kms_key_id: None,
            volume_kms_key_id: None,
            poll_seconds: default_poll(),
            max_poll_seconds: default_poll_max(),
            rows_per_second_per_vcpu: None,
            deadline: None,
            deadline_minutes: None,
            max_instances: None,
            allowed_types: None,
            prices: None,
            tags: Default::default(),
        }
    }
}

fn yes() -> bool {
    true
}
fn default_multipart_threshold() -> u64 {
    16
}
fn default_part_size() -> u64 {
    8
}
fn default_attempts() -> u32 {
    8
}
fn default_poll() -> f64 {
    5.0
}
fn default_poll_max() -> f64 {
    60.0
}

/// One problem with the `[aws]` settings: a [`crate::diagnostic::Diagnostic`] whose file is
/// `c360.toml` until the project, which knows the file's path and text, names it and places
/// it on its line.
pub type SettingError = crate::diagnostic::Diagnostic;

/// The file `[aws]` problems name before the project places them.
const SETTINGS_FILE: &str = "c360.toml";

fn is_account(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// `arn:aws:iam::123456789012:role/path/name`.
pub fn is_role_arn(s: &str) -> bool {
    let parts: Vec<&str> = s.splitn(6, ':').collect();
    parts.len() == 6
        && parts[0] == "arn"
        && parts[1].starts_with("aws")
        && parts[2] == "iam"
        && parts[3].is_empty()
        && is_account(parts[4])
        && parts[5]
            .strip_prefix("role/")
            .is_some_and(|n| !n.is_empty() && n.len() <= 512)
}

/// A KMS key id (UUID or `mrk-...`), key ARN, alias name or alias ARN.
pub fn is_kms_key(s: &str) -> bool {
    let uuid = |k: &str| {
        let g: Vec<&str> = k.split('-').collect();
        g.len() == 5
            && [8, 4, 4, 4, 12]
                .iter()
                .zip(&g)
                .all(|(n, p)| p.len() == *n && p.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    let mrk = |k: &str| {
        k.strip_prefix("mrk-")
            .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    let alias = |k: &str| {
        k.strip_prefix("alias/").is_some_and(|n| {
            !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/_-".contains(&b))
        })
    };
    if let Some(rest) = s.strip_prefix("arn:") {
        let p: Vec<&str> = rest.splitn(5, ':').collect();
        return p.len() == 5
            && p[0].starts_with("aws")
            && p[1] == "kms"
            && !p[2].is_empty()
            && is_account(p[3])
            && (p[4].strip_prefix("key/").is_some_and(|k| uuid(k) || mrk(k)) || alias(p[4]));
    }
    uuid(s) || mrk(s) || alias(s)
}

fn is_aws_id(s: &str, prefix: &str) -> bool {
    s.strip_prefix(prefix).is_some_and(|h| {
        (h.len() == 8 || h.len() == 17) && h.bytes().all(|b| b.is_ascii_hexdigit())
    })
}

fn is_endpoint(s: &str) -> bool {
    (s.starts_with("https://") || s.starts_with("http://")) && s.len() > "http://".len() + 1
}

impl AwsSettings {
    /// Checks formats and combinations (pure). `s3_in_use`: the store or source is on S3,
    /// so the KMS rule applies.
    pub fn validate(&self, s3_in_use: bool) -> Vec<SettingError> {
        let mut errs = Vec::new();
        let mut bad = |key: &str, reason: String| {
            errs.push(SettingError::new(
                SETTINGS_FILE,
                format!("aws.{key}"),
                reason,
            ))
        };
        if let Some(r) = &self.region {
            let ok = r.split('-').count() >= 3
                && r.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !ok {
                bad(
                    "region",
                    format!("{r:?} is not a region name like eu-west-1"),
                );
            }
        }
        for (k, v) in [
            ("endpoint_url", &self.endpoint_url),
            ("s3_endpoint_url", &self.s3_endpoint_url),
            ("sagemaker_endpoint_url", &self.sagemaker_endpoint_url),
            ("glue_endpoint_url", &self.glue_endpoint_url),
            (
                "lakeformation_endpoint_url",
                &self.lakeformation_endpoint_url,
            ),
            ("events_endpoint_url", &self.events_endpoint_url),
        ] {
            if let Some(v) = v {
                if !is_endpoint(v) {
                    bad(k, format!("{v:?} is not an https:// (or http://) URL"));
                }
            }
        }
        let sm = &self.sagemaker;
        for (k, v) in [
            ("kms_key_id", &self.kms_key_id),
            ("sagemaker.output_kms_key_id", &sm.output_kms_key_id),
            ("sagemaker.volume_kms_key_id", &sm.volume_kms_key_id),
        ] {
            if let Some(v) = v {
                if !is_kms_key(v) {
                    bad(
                        k,
                        format!("{v:?} is not a KMS key id, key ARN or alias (alias/NAME)"),
                    );
                }
            }
        }
        if s3_in_use && self.require_kms && self.kms_key_id.is_none() {
            bad(
                "kms_key_id",
                "the store or source is on S3 and require_kms = true (the default), but no KMS key is set: set kms_key_id = \"arn:aws:kms:REGION:ACCOUNT:key/ID\" (or require_kms = false to use the AWS-managed aws/s3 key)".into(),
            );
        }
        if !(5..=5120).contains(&self.multipart_part_mb) {
            bad(
                "multipart_part_mb",
                format!(
                    "{} is not in 5..=5120 (S3's part size limits)",
                    self.multipart_part_mb
                ),
            );
        }
        if self.multipart_threshold_mb < self.multipart_part_mb {
            bad(
                "multipart_threshold_mb",
                format!(
                    "{} is below multipart_part_mb ({})",
                    self.multipart_threshold_mb, self.multipart_part_mb
                ),
            );
        }
        if !(1..=20).contains(&self.max_attempts) {
            bad(
                "max_attempts",
                format!("{} is not in 1..=20", self.max_attempts),
            );
        }
        if let Some(r) = &sm.role_arn {
            if !is_role_arn(r) {
                bad(
                    "sagemaker.role_arn",
                    format!("{r:?} is not an IAM role ARN (arn:aws:iam::123456789012:role/NAME)"),
                );
            }
        }
        if sm.subnets.is_empty() != sm.security_groups.is_empty() {
            bad(
                "sagemaker.subnets",
                "subnets and security_groups go together: give both (VpcConfig) or neither".into(),
            );
        }
        if sm.subnets.len() > 16 {
            bad(
                "sagemaker.subnets",
                format!("{} subnets; at most 16", sm.subnets.len()),
            );
        }
        if sm.security_groups.len() > 5 {
            bad(
                "sagemaker.security_groups",
                format!("{} security groups; at most 5", sm.security_groups.len()),
            );
        }
        for s in &sm.subnets {
            if !is_aws_id(s, "subnet-") {
                bad(
                    "sagemaker.subnets",
                    format!("{s:?} is not a subnet id (subnet-0123abcd...)"),
                );
            }
        }
        for s in &sm.security_groups {
            if !is_aws_id(s, "sg-") {
                bad(
                    "sagemaker.security_groups",
                    format!("{s:?} is not a security group id (sg-0123abcd...)"),
                );
            }
        }
        // Finite and at most a day: the poller builds Durations from them.
        // Each key named on its own: finite, positive, poll <= max_poll <= 3600.
        if !(sm.max_poll_seconds > 0.0 && sm.max_poll_seconds <= 3600.0) {
            bad(
                "sagemaker.max_poll_seconds",
                format!(
                    "{} is out of range: more than 0, at most 3600",
                    sm.max_poll_seconds
                ),
            );
        } else if !(sm.poll_seconds > 0.0 && sm.poll_seconds <= sm.max_poll_seconds) {
            bad(
                "sagemaker.poll_seconds",
                format!(
                    "{} is out of range: more than 0, at most max_poll_seconds ({})",
                    sm.poll_seconds, sm.max_poll_seconds
                ),
            );
        }
        if let Some(t) = sm.rows_per_second_per_vcpu {
            // 0.001 (one row in 17 minutes) to a billion rows a second per vCPU: outside it
            // the planner's arithmetic is meaningless.
            if !(t.is_finite() && (0.001..=1e9).contains(&t)) {
                bad(
                    "sagemaker.rows_per_second_per_vcpu",
                    format!("{t} is out of range: 0.001 to 1e9 rows per second per vCPU (rows_per_second_per_vcpu, formerly throughput_rows_per_vcpu)"),
                );
            }
        }
        if let Some(d) = sm.deadline_minutes {
            if !(d.is_finite() && d > 0.0 && d <= 10_080.0) {
                bad(
                    "sagemaker.deadline_minutes",
                    format!("{d} is out of range: more than 0, at most 10080 (a week)"),
                );
            }
            if sm.deadline.is_some() {
                bad(
                    "sagemaker.deadline_minutes",
                    "give deadline (e.g. \"90m\") or its former spelling deadline_minutes, not both".into(),
                );
            }
        }
        if let Some(d) = &sm.deadline {
            match crate::transform::planner::parse_duration(d) {
                Err(e) => bad("sagemaker.deadline", e),
                Ok(t) if t.is_zero() || t.as_secs_f64() > 10_080.0 * 60.0 => bad(
                    "sagemaker.deadline",
                    format!("{d:?} is out of range: more than 0, at most a week (168h)"),
                ),
                Ok(_) => {}
            }
        }
        if let Some(m) = sm.max_instances {
            if !(1..=100).contains(&m) {
                bad("sagemaker.max_instances", format!("{m} is not in 1..=100"));
            }
        }
        if sm.tags.len() > 40 {
            bad(
                "sagemaker.tags",
                "at most 40 tags (c360 adds its own)".into(),
            );
        }
        errs
    }

    /// Checks what a SageMaker run needs beyond formats.
    pub fn validate_for_sagemaker(&self, needs_role: bool) -> Vec<SettingError> {
        let mut errs = Vec::new();
        if needs_role && self.sagemaker.role_arn.is_none() {
            errs.push(SettingError::new(
                SETTINGS_FILE,
                "aws.sagemaker.role_arn",
                "creating the SageMaker model needs an execution role: set role_arn = \"arn:aws:iam::ACCOUNT:role/NAME\" (or name an existing model with [sagemaker] model_name in model.toml)",
            ));
        }
        errs
    }

    /// The output KMS key of transform jobs.
    pub fn output_kms_key(&self) -> Option<&str> {
        self.sagemaker
            .output_kms_key_id
            .as_deref()
            .or(self.kms_key_id.as_deref())
    }

    /// The volume KMS key of transform jobs.
    pub fn volume_kms_key(&self) -> Option<&str> {
        self.sagemaker
            .volume_kms_key_id
            .as_deref()
            .or(self.kms_key_id.as_deref())
    }
}

static SETTINGS: RwLock<Option<Arc<AwsSettings>>> = RwLock::new(None);

/// Installs the process's AWS settings (from `c360.toml`); stores opened afterwards use them.
pub fn configure(settings: AwsSettings) {
    if let Ok(mut g) = SETTINGS.write() {
        *g = Some(Arc::new(settings));
    }
}

/// The process's AWS settings (defaults when none were configured).
pub fn settings() -> Arc<AwsSettings> {
    SETTINGS
        .read()
        .ok()
        .and_then(|g| g.clone())
        .unwrap_or_default()
}

/// The runtime the AWS clients run on: two worker threads, separate from any caller's
/// runtime, so synchronous code (and `spawn_blocking` threads of the service) can wait on
/// it safely.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("c360-aws")
            .enable_all()
            .build()
            .expect("cannot start the AWS I/O runtime (threads)")
    })
}

/// Runs a future on the AWS runtime and waits for it, from any thread (including threads
/// of another tokio runtime).
pub fn block_on<F>(f: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime().spawn(async move {
        let _ = tx.send(f.await);
    });
    rx.recv()
        .expect("the AWS runtime dropped a request (it panicked); see the log above")
}

/// The SDK configuration: the standard chain, plus region, profile, endpoint, retries and
/// timeouts from the settings.
pub async fn sdk_config(s: &AwsSettings) -> Result<SdkConfig, String> {
    // HTTPS through rustls with ring (the SDK's default TLS stack is aws-lc, a C build).
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
            aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
        ))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(s.max_attempts.max(1))
                .with_initial_backoff(Duration::from_millis(200))
                .with_max_backoff(Duration::from_secs(20)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(10))
                .read_timeout(Duration::from_secs(120))
                .build(),
        );
    if let Some(r) = &s.region {
        loader = loader.region(Region::new(r.clone()));
    }
    if let Some(p) = &s.profile {
        loader = loader.profile_name(p);
    }
    if let Some(e) = &s.endpoint_url {
        loader = loader.endpoint_url(e);
    }
    if let Some(c) = &s.credentials {
        loader = loader.credentials_provider(Credentials::new(
            c.access_key_id.clone(),
            c.secret_access_key.clone(),
            None,
            None,
            "c360-static",
        ));
    }
    let cfg = loader.load().await;
    if cfg.region().is_none() {
        return Err("no AWS region: set [aws] region in c360.toml, or AWS_REGION (without it the SDK would try a public endpoint a VPC cannot reach)".into());
    }
    Ok(cfg)
}

/// An S3 client for the settings (VPC endpoint and path style applied).
pub async fn s3_client(s: &AwsSettings) -> Result<aws_sdk_s3::Client, String> {
    let cfg = sdk_config(s).await?;
    let mut b = aws_sdk_s3::config::Builder::from(&cfg).force_path_style(s.s3_force_path_style);
    if let Some(e) = &s.s3_endpoint_url {
        b = b.endpoint_url(e);
    }
    Ok(aws_sdk_s3::Client::from_conf(b.build()))
}

/// A SageMaker client for the settings.
pub async fn sagemaker_client(s: &AwsSettings) -> Result<aws_sdk_sagemaker::Client, String> {
    let cfg = sdk_config(s).await?;
    let mut b = aws_sdk_sagemaker::config::Builder::from(&cfg);
    if let Some(e) = &s.sagemaker_endpoint_url {
        b = b.endpoint_url(e);
    }
    Ok(aws_sdk_sagemaker::Client::from_conf(b.build()))
}

/// A Glue client for the settings (`glue_endpoint_url` applied).
pub async fn glue_client(s: &AwsSettings) -> Result<aws_sdk_glue::Client, String> {
    let cfg = sdk_config(s).await?;
    let mut b = aws_sdk_glue::config::Builder::from(&cfg);
    if let Some(e) = &s.glue_endpoint_url {
        b = b.endpoint_url(e);
    }
    Ok(aws_sdk_glue::Client::from_conf(b.build()))
}

/// A Lake Formation client for the settings (`lakeformation_endpoint_url` applied).
pub async fn lakeformation_client(
    s: &AwsSettings,
) -> Result<aws_sdk_lakeformation::Client, String> {
    let cfg = sdk_config(s).await?;
    let mut b = aws_sdk_lakeformation::config::Builder::from(&cfg);
    if let Some(e) = &s.lakeformation_endpoint_url {
        b = b.endpoint_url(e);
    }
    Ok(aws_sdk_lakeformation::Client::from_conf(b.build()))
}

/// An EventBridge client for the settings (`events_endpoint_url` applied).
pub async fn eventbridge_client(s: &AwsSettings) -> Result<aws_sdk_eventbridge::Client, String> {
    let cfg = sdk_config(s).await?;
    let mut b = aws_sdk_eventbridge::config::Builder::from(&cfg);
    if let Some(e) = &s.events_endpoint_url {
        b = b.endpoint_url(e);
    }
    Ok(aws_sdk_eventbridge::Client::from_conf(b.build()))
}

/// The message of an SDK error with its service code, without request details that could
/// carry signed headers.
pub fn error_text<E, R>(e: &aws_sdk_s3::error::SdkError<E, R>) -> String
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_s3::error::SdkError;
    match e {
        SdkError::ServiceError(se) => {
            let err = se.err();
            match (err.code(), err.message()) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(c), None) => c.to_string(),
                _ => {
                    let raw = format!("{:?}", se.raw());
                    let status = raw
                        .split("status: StatusCode(")
                        .nth(1)
                        .and_then(|r| r.split(')').next())
                        .unwrap_or("?");
                    format!("{err} (HTTP {status})")
                }
            }
        }
        // Each cause's message: no request headers (signatures, keys), no `Debug` dump.
        SdkError::DispatchFailure(_) | SdkError::ConstructionFailure(_) => {
            let causes = std::iter::successors(Some(e as &dyn std::error::Error), |c| c.source());
            let mut chain: Vec<String> = causes.map(|c| c.to_string()).collect();
            chain.dedup_by(|cur, prev| prev.ends_with(cur.as_str()));
            let chain = chain.join(": ");
            if chain.contains("credentials") {
                format!("no usable AWS credentials (set AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, or run where an instance/task role is available): {chain}")
            } else {
                format!("could not reach the endpoint: {chain}")
            }
        }
        SdkError::TimeoutError(_) => "the request timed out".into(),
        other => format!("{other}"),
    }
}

/// Tests: an SDK client config over `aws-smithy-mocks` rules (real serialisation, retries
/// and error parsing; canned answers), with millisecond backoff.
#[cfg(test)]
macro_rules! mocked_config {
    ($krate:ident, $rules:expr, $attempts:expr) => {{
        let mut i = aws_smithy_mocks::MockResponseInterceptor::new()
            .rule_mode(aws_smithy_mocks::RuleMode::MatchAny);
        for r in $rules {
            i = i.with_rule(r);
        }
        $krate::Config::builder()
            .behavior_version($krate::config::BehaviorVersion::latest())
            .region($krate::config::Region::new("us-east-1"))
            .credentials_provider($krate::config::Credentials::new(
                "AKIDTEST", "secret", None, None, "test",
            ))
            .http_client(aws_smithy_mocks::create_mock_http_client())
            .interceptor(i)
            .retry_config(
                aws_config::retry::RetryConfig::standard()
                    .with_max_attempts($attempts)
                    .with_initial_backoff(std::time::Duration::from_millis(1))
                    .with_max_backoff(std::time::Duration::from_millis(5)),
            )
            .build()
    }};
}
#[cfg(test)]
pub(crate) use mocked_config;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert!(is_role_arn("arn:aws:iam::123456789012:role/c360-sagemaker"));
        assert!(!is_role_arn("arn:aws:iam::12345:role/x"));
        assert!(!is_role_arn("arn:aws:iam::123456789012:user/x"));
        assert!(is_kms_key("1234abcd-12ab-34cd-56ef-1234567890ab"));
        assert!(is_kms_key(
            "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
        ));
        assert!(is_kms_key("alias/c360"));
        assert!(is_kms_key("arn:aws:kms:eu-west-1:123456789012:alias/c360"));
        assert!(!is_kms_key("my-key"));
        assert!(!is_kms_key("arn:aws:kms:eu-west-1:1234:key/x"));
    }

    #[test]
    fn validation_names_keys() {
        let mut s: AwsSettings = toml::from_str(
            r#"
            region = "eu-west-1"
            kms_key_id = "not-a-key"
            [sagemaker]
            role_arn = "arn:aws:iam::123456789012:role/r"
            subnets = ["subnet-0123abcd"]
            "#,
        )
        .unwrap();
        let keys: Vec<String> = s.validate(true).into_iter().map(|e| e.key).collect();
        assert_eq!(keys, ["aws.kms_key_id", "aws.sagemaker.subnets"]);
        s.kms_key_id = None;
        let keys: Vec<String> = s.validate(true).into_iter().map(|e| e.key).collect();
        assert_eq!(keys, ["aws.kms_key_id", "aws.sagemaker.subnets"]);
        s.sagemaker.security_groups = vec!["sg-0123abcd".into()];
        s.require_kms = false;
        assert!(s.validate(true).is_empty());
        s.sagemaker.subnets = vec!["subnet-xyz".into()];
        assert_eq!(s.validate(true)[0].key, "aws.sagemaker.subnets");
    }

    #[test]
    fn defaults() {
        let s: AwsSettings = toml::from_str("").unwrap();
        assert_eq!(s, AwsSettings::default());
        assert!(s.require_kms && s.bucket_key && s.sagemaker.network_isolation);
        assert_eq!(
            (
                s.multipart_threshold_mb,
                s.multipart_part_mb,
                s.max_attempts
            ),
            (16, 8, 8)
        );
        assert!(s.validate(false).is_empty());
        assert_eq!(s.validate(true).len(), 1);
        let c = StaticCredentials {
            access_key_id: "AKIA".into(),
            secret_access_key: "very-secret".into(),
        };
        assert!(!format!("{c:?}").contains("very-secret"));
    }
}
