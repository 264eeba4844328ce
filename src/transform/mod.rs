//! Batch transform: one interface ([`BatchTransform`]) over the local runner (here) and
//! SageMaker (the AWS backend), with a job spec mirroring `CreateTransformJob`.
//!
//! The local runner ([`local::LocalTransform`]) reproduces SageMaker's data-plane semantics
//! (`docs`: semantics.md, "SageMaker batch transform"); the choices where SageMaker's
//! documentation is silent are listed on [`local`]. Models are called through an
//! [`invoker::Invoker`]: in process, or over HTTP against a container.

pub mod filter;
pub mod invoker;
pub mod local;
pub mod planner;
pub mod sagemaker;

use std::time::Duration;

pub use filter::{Filter, FilterError};
pub use invoker::{HttpInvoker, InProcessInvoker, InvokeError, Invoker};
pub use local::LocalTransform;

/// Bytes in SageMaker's megabyte.
pub const MB: u64 = 1_048_576;

/// Where a job's batch transform runs. Written as `local` / `sagemaker` (job files, the
/// `--backend` flag, `run.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Backend {
    /// In this process ([`LocalTransform`]).
    #[serde(rename = "local")]
    Local,
    /// A SageMaker batch transform job ([`sagemaker::SageMakerTransform`]).
    #[serde(rename = "sagemaker")]
    SageMaker,
}

impl Backend {
    /// The backend's name as written in job files and ledgers.
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Local => "local",
            Backend::SageMaker => "sagemaker",
        }
    }
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// A backend name that is neither `local` nor `sagemaker`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("backend {0}: unknown (use local or sagemaker)")]
pub struct UnknownBackend(pub String);

impl std::str::FromStr for Backend {
    type Err = UnknownBackend;
    fn from_str(s: &str) -> Result<Backend, UnknownBackend> {
        match s {
            "local" => Ok(Backend::Local),
            "sagemaker" => Ok(Backend::SageMaker),
            _ => Err(UnknownBackend(s.to_string())),
        }
    }
}

/// `TransformInput.SplitType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SplitType {
    /// The whole object is one record (SageMaker's default).
    #[default]
    None,
    /// Records are lines.
    Line,
}

/// `BatchStrategy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchStrategy {
    /// As many whole records as fit in `MaxPayloadInMB` per request.
    MultiRecord,
    /// One record per request.
    SingleRecord,
}

/// `DataProcessing.JoinSource`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JoinSource {
    #[default]
    None,
    /// Append the model's output to the input record.
    Input,
}

/// `TransformOutput.AssembleWith`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AssembleWith {
    /// Responses are concatenated as they are (SageMaker's default).
    #[default]
    None,
    /// One output record per line, in input order.
    Line,
}

/// `DataProcessing`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataProcessing {
    /// JSONPath-like selection of the fields sent to the model (`$`: all).
    pub input_filter: String,
    pub join_source: JoinSource,
    /// Selection of the fields written out (applied after the join).
    pub output_filter: String,
}

impl Default for DataProcessing {
    fn default() -> Self {
        DataProcessing {
            input_filter: "$".into(),
            join_source: JoinSource::None,
            output_filter: "$".into(),
        }
    }
}

/// A transform job, field for field what `CreateTransformJob` takes (minus resources that
/// only the cloud has, like instance types and KMS keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransformJobSpec {
    /// The job's name (for logs and results).
    pub job_name: String,
    /// `TransformInput.DataSource.S3DataSource.S3Uri`: a prefix (folder) or one object.
    pub input_uri: String,
    /// `TransformOutput.S3OutputPath`.
    pub output_uri: String,
    /// `TransformInput.ContentType`, sent with every request.
    pub content_type: String,
    pub split_type: SplitType,
    /// `None`: what the model's `/execution-parameters` says, else multi-record.
    pub batch_strategy: Option<BatchStrategy>,
    /// `None`: what the model's `/execution-parameters` says, else 6.
    pub max_payload_mb: Option<u32>,
    /// 0: what the model's `/execution-parameters` says, else 1.
    pub max_concurrent_transforms: u32,
    /// `TransformResources.InstanceCount`.
    pub instance_count: u32,
    pub data_processing: DataProcessing,
    pub assemble_with: AssembleWith,
    /// `ModelClientConfig.InvocationsTimeoutInSeconds` (1..=3600).
    pub invocation_timeout_secs: u32,
    /// `ModelClientConfig.InvocationsMaxRetries` (0..=3).
    pub invocation_max_retries: u32,
}

impl TransformJobSpec {
    /// A job with SageMaker's defaults.
    pub fn new(job_name: &str, input_uri: &str, output_uri: &str) -> TransformJobSpec {
        TransformJobSpec {
            job_name: job_name.to_string(),
            input_uri: input_uri.to_string(),
            output_uri: output_uri.to_string(),
            content_type: "text/csv".into(),
            split_type: SplitType::None,
            batch_strategy: None,
            max_payload_mb: None,
            max_concurrent_transforms: 0,
            instance_count: 1,
            data_processing: DataProcessing::default(),
            assemble_with: AssembleWith::None,
            invocation_timeout_secs: 600,
            invocation_max_retries: 0,
        }
    }

    /// Checks the spec against SageMaker's limits (pure; no I/O).
    pub fn validate(&self) -> Result<ValidFilters, TransformError> {
        let bad = |field: &str, reason: String| TransformError::InvalidSpec {
            field: field.to_string(),
            reason,
        };
        if self.job_name.is_empty() {
            return Err(bad("TransformJobName", "empty".into()));
        }
        if self.input_uri.is_empty() {
            return Err(bad("TransformInput.S3Uri", "empty".into()));
        }
        if self.output_uri.is_empty() {
            return Err(bad("TransformOutput.S3OutputPath", "empty".into()));
        }
        if let Some(p) = self.max_payload_mb {
            if p == 0 {
                return Err(bad(
                    "MaxPayloadInMB",
                    "0 (unbounded, chunked streaming) is not supported by the local runner; use 1..=100".into(),
                ));
            }
            if p > 100 {
                return Err(bad("MaxPayloadInMB", format!("{p} exceeds 100")));
            }
            if self.max_concurrent_transforms > 0
                && u64::from(self.max_concurrent_transforms) * u64::from(p) > 100
            {
                return Err(bad(
                    "MaxConcurrentTransforms",
                    format!(
                        "MaxConcurrentTransforms ({}) * MaxPayloadInMB ({p}) exceeds 100",
                        self.max_concurrent_transforms
                    ),
                ));
            }
        } else if self.max_concurrent_transforms > 100 {
            return Err(bad(
                "MaxConcurrentTransforms",
                format!("{} exceeds 100", self.max_concurrent_transforms),
            ));
        }
        if !(1..=100).contains(&self.instance_count) {
            return Err(bad(
                "TransformResources.InstanceCount",
                format!("{} is not in 1..=100", self.instance_count),
            ));
        }
        if !(1..=3600).contains(&self.invocation_timeout_secs) {
            return Err(bad(
                "ModelClientConfig.InvocationsTimeoutInSeconds",
                format!("{} is not in 1..=3600", self.invocation_timeout_secs),
            ));
        }
        if self.invocation_max_retries > 3 {
            return Err(bad(
                "ModelClientConfig.InvocationsMaxRetries",
                format!("{} is not in 0..=3", self.invocation_max_retries),
            ));
        }
        let dp = &self.data_processing;
        let input = Filter::parse(&dp.input_filter)
            .map_err(|e| bad("DataProcessing.InputFilter", e.to_string()))?;
        let output = Filter::parse(&dp.output_filter)
            .map_err(|e| bad("DataProcessing.OutputFilter", e.to_string()))?;
        let per_record = dp.join_source == JoinSource::Input || !output.is_all();
        if per_record && self.assemble_with != AssembleWith::Line {
            return Err(bad(
                "TransformOutput.AssembleWith",
                "JoinSource=Input and OutputFilter work record by record: set AssembleWith=Line"
                    .into(),
            ));
        }
        Ok(ValidFilters { input, output })
    }
}

/// The parsed filters of a validated spec.
#[derive(Debug, Clone)]
pub struct ValidFilters {
    pub input: Filter,
    pub output: Filter,
}

/// How a job ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Completed,
    Failed,
}

/// The outcome of one input object.
#[derive(Debug, Clone, PartialEq)]
pub struct ObjectResult {
    /// The input key, relative to the input location.
    pub input: String,
    /// The output key written (relative to the output location); `None` when it failed.
    pub output: Option<String>,
    /// The simulated instance that processed it (0-based).
    pub instance: u32,
    pub records: u64,
    /// Requests that succeeded.
    pub requests: u64,
    /// Attempts that failed and were retried or gave up.
    pub failed_attempts: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub elapsed: Duration,
    /// Why the object failed.
    pub error: Option<String>,
}

/// The outcome of a job (what `DescribeTransformJob` would say, plus per-object detail).
#[derive(Debug, Clone, PartialEq)]
pub struct TransformResult {
    pub job_name: String,
    pub status: JobStatus,
    /// Names the first failed object and why.
    pub failure_reason: Option<String>,
    pub objects: Vec<ObjectResult>,
    pub records: u64,
    pub requests: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub elapsed: Duration,
    /// The settings in force after asking the model's `/execution-parameters`.
    pub effective: EffectiveSettings,
}

/// Settings resolved at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EffectiveSettings {
    pub batch_strategy: BatchStrategy,
    pub max_payload_mb: u32,
    pub max_concurrent_transforms: u32,
}

/// Progress of a running job; every method may be called from several threads.
pub trait Progress: Send + Sync {
    /// An object was read and split into `records` records.
    fn object_started(&self, _input: &str, _records: u64) {}
    /// `n` more records were scored.
    fn records_done(&self, _n: u64) {}
    /// An object finished (well or not).
    fn object_finished(&self, _result: &ObjectResult) {}
}

/// Reports nothing.
pub struct NoProgress;
impl Progress for NoProgress {}

/// Why a job could not run at all (an object's failure is not one: it fails the job's
/// result instead).
#[derive(Debug, thiserror::Error)]
pub enum TransformError {
    #[error("invalid transform job: {field}: {reason}")]
    InvalidSpec { field: String, reason: String },
    #[error("cannot open {uri}: {source}")]
    Store {
        uri: String,
        #[source]
        source: crate::store::StoreError,
    },
    #[error("no input objects under {uri}")]
    NoInput { uri: String },
    #[error("SageMaker {operation}: {message}")]
    Cloud { operation: String, message: String },
}

/// A batch-transform backend: the local runner, or SageMaker.
pub trait BatchTransform {
    /// Runs the job to the end. `Err` only when it cannot start; failed objects give
    /// `Ok` with [`JobStatus::Failed`].
    fn run(
        &self,
        job: &TransformJobSpec,
        progress: &dyn Progress,
    ) -> Result<TransformResult, TransformError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_enforces_sagemaker_limits() {
        let ok = TransformJobSpec::new("j", "in", "out");
        assert!(ok.validate().is_ok());
        let field = |f: &dyn Fn(&mut TransformJobSpec)| {
            let mut s = ok.clone();
            f(&mut s);
            match s.validate() {
                Err(TransformError::InvalidSpec { field, .. }) => field,
                other => panic!("expected an error, got {other:?}"),
            }
        };
        assert_eq!(field(&|s| s.max_payload_mb = Some(101)), "MaxPayloadInMB");
        assert_eq!(field(&|s| s.max_payload_mb = Some(0)), "MaxPayloadInMB");
        assert_eq!(
            field(&|s| {
                s.max_payload_mb = Some(6);
                s.max_concurrent_transforms = 17
            }),
            "MaxConcurrentTransforms"
        );
        assert_eq!(
            field(&|s| s.invocation_max_retries = 4),
            "ModelClientConfig.InvocationsMaxRetries"
        );
        assert_eq!(
            field(&|s| s.invocation_timeout_secs = 0),
            "ModelClientConfig.InvocationsTimeoutInSeconds"
        );
        assert_eq!(
            field(&|s| s.data_processing.input_filter = "$[x]".into()),
            "DataProcessing.InputFilter"
        );
        assert_eq!(
            field(&|s| s.data_processing.join_source = JoinSource::Input),
            "TransformOutput.AssembleWith"
        );
        let mut s = ok.clone();
        s.max_payload_mb = Some(6);
        s.max_concurrent_transforms = 16;
        assert!(s.validate().is_ok());
    }
}
