//! SageMaker batch transform behind the [`BatchTransform`] interface.
//!
//! The control plane is a small state machine over `DescribeTransformJob`:
//!
//! ```text
//! DescribeModel ── not found ──> CreateModel (image + model.tar.gz, role, VpcConfig, isolation)
//! DescribeTransformJob(name)
//!   ├─ not found ──> CreateTransformJob (ResourceInUse from a racing writer = attach)
//!   └─ found ──────> re-attach (a restarted run never launches a second job)
//! poll: InProgress/Stopping ─ wait (doubling, jitter, capped) ─> again
//!       Completed ──> read the outputs back through the store
//!       Failed ─────> FailureReason into the result (and the ledger)
//!       Stopped ────> failed: "stopped"
//! cancel flag set ──> StopTransformJob once, keep polling until Stopped
//! ```
//!
//! Job names are deterministic per run ([`crate::names::SageMakerName::derive`]), which is what
//! makes the re-attach safe. Throttling and 5xx are retried by the SDK (standard mode); a
//! poll that still fails is retried by the loop a few times before the run gives up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_sdk_sagemaker::error::ProvideErrorMetadata;
use aws_sdk_sagemaker::types::{
    self as sm, ContainerDefinition, DataProcessing as SmDataProcessing, ModelClientConfig,
    S3DataType, Tag, TransformDataSource, TransformInput, TransformJobStatus, TransformOutput,
    TransformResources, TransformS3DataSource, VpcConfig,
};
use aws_sdk_sagemaker::Client;

use super::{
    AssembleWith, BatchStrategy, BatchTransform, EffectiveSettings, JobStatus, JoinSource,
    ObjectResult, Progress, SplitType, TransformError, TransformJobSpec, TransformResult,
};
use crate::aws;
use crate::names::SageMakerName;
use crate::store::DynStore;

/// The model the jobs run.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelTarget {
    /// Create it (once) when missing.
    Create {
        name: SageMakerName,
        image: String,
        model_data: String,
        role_arn: String,
        subnets: Vec<String>,
        security_groups: Vec<String>,
        network_isolation: bool,
    },
    /// A SageMaker model that already exists.
    Existing(SageMakerName),
}

impl ModelTarget {
    pub fn name(&self) -> &str {
        match self {
            ModelTarget::Create { name, .. } => name,
            ModelTarget::Existing(n) => n,
        }
    }
}

/// What only the cloud has: instance type, KMS keys, tags.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudResources {
    pub instance_type: String,
    pub output_kms_key_id: Option<String>,
    pub volume_kms_key_id: Option<String>,
    pub tags: Vec<(String, String)>,
}

/// Called once the job exists (created or re-attached), before polling. Tests use it to
/// play SageMaker's data plane (moto completes jobs without running them).
#[derive(Clone)]
pub struct DataPlaneHook(pub Arc<DataPlaneFn>);

/// The data-plane callback: runs the job's records somewhere, writes its outputs.
pub type DataPlaneFn = dyn Fn(&TransformJobSpec) -> Result<(), String> + Send + Sync;

impl std::fmt::Debug for DataPlaneHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataPlaneHook")
    }
}

/// How the control plane ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: TransformJobStatus,
    pub failure_reason: Option<String>,
    /// Whether this call created the job (false: re-attached to an existing one).
    pub created: bool,
    pub model_created: bool,
    pub polls: u32,
}

/// The SageMaker backend.
#[derive(Debug, Clone)]
pub struct SageMakerTransform {
    client: Client,
    pub model: ModelTarget,
    pub resources: CloudResources,
    /// First and longest wait between polls.
    pub poll: (Duration, Duration),
    /// Set to stop the job (StopTransformJob) at the next poll.
    pub cancel: Option<Arc<AtomicBool>>,
    pub data_plane: Option<DataPlaneHook>,
    /// The store the input and output prefixes live in (outputs are read back through it).
    pub store: Option<DynStore>,
}

fn is_not_found<E: ProvideErrorMetadata>(e: &E) -> bool {
    let msg = e.message().unwrap_or_default().to_ascii_lowercase();
    matches!(
        e.code(),
        Some("ResourceNotFound") | Some("ResourceNotFoundException")
    ) || (e.code() == Some("ValidationException")
        && (msg.contains("could not find")
            || msg.contains("not found")
            || msg.contains("does not exist")))
}

fn sdk_err<E, R>(op: &str, e: &aws_sdk_sagemaker::error::SdkError<E, R>) -> TransformError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    TransformError::Cloud {
        operation: op.to_string(),
        message: aws::error_text(e),
    }
}

impl SageMakerTransform {
    pub fn new(
        client: Client,
        model: ModelTarget,
        resources: CloudResources,
    ) -> SageMakerTransform {
        SageMakerTransform {
            client,
            model,
            resources,
            poll: (Duration::from_secs(5), Duration::from_secs(60)),
            cancel: None,
            data_plane: None,
            store: None,
        }
    }

    /// A client from the process's `[aws]` settings.
    pub fn client_from_settings(settings: &aws::AwsSettings) -> Result<Client, TransformError> {
        let s = settings.clone();
        aws::block_on(async move { aws::sagemaker_client(&s).await }).map_err(|m| {
            TransformError::Cloud {
                operation: "configure".into(),
                message: m,
            }
        })
    }

    /// DescribeModel, and CreateModel when it is missing. `Ok(true)` when created.
    pub async fn ensure_model(&self) -> Result<bool, TransformError> {
        let name = self.model.name().to_string();
        match self.client.describe_model().model_name(&name).send().await {
            Ok(_) => return Ok(false),
            Err(e) if e.as_service_error().is_some_and(is_not_found) => {}
            Err(e) => return Err(sdk_err("DescribeModel", &e)),
        }
        let ModelTarget::Create {
            image,
            model_data,
            role_arn,
            subnets,
            security_groups,
            network_isolation,
            ..
        } = &self.model
        else {
            return Err(TransformError::Cloud {
                operation: "DescribeModel".into(),
                message: format!(
                    "the SageMaker model {name} does not exist (model.toml names it as existing)"
                ),
            });
        };
        let mut req = self
            .client
            .create_model()
            .model_name(&name)
            .execution_role_arn(role_arn)
            .primary_container(
                ContainerDefinition::builder()
                    .image(image)
                    .model_data_url(model_data)
                    .build(),
            )
            .enable_network_isolation(*network_isolation)
            .set_tags(Some(self.tags()));
        if !subnets.is_empty() {
            req = req.vpc_config(
                VpcConfig::builder()
                    .set_subnets(Some(subnets.clone()))
                    .set_security_group_ids(Some(security_groups.clone()))
                    .build(),
            );
        }
        match req.send().await {
            Ok(_) => {
                tracing::info!(model = %name, "created the SageMaker model");
                Ok(true)
            }
            // Another writer created it between our two calls.
            Err(e)
                if e.as_service_error()
                    .is_some_and(|s| s.message().unwrap_or_default().contains("already exist")) =>
            {
                Ok(false)
            }
            Err(e) => Err(sdk_err("CreateModel", &e)),
        }
    }

    fn tags(&self) -> Vec<Tag> {
        self.resources
            .tags
            .iter()
            .map(|(k, v)| Tag::builder().key(k).value(v).build())
            .collect()
    }

    /// The CreateTransformJob request for a spec (every field the spec and resources set).
    pub fn create_request(
        &self,
        job: &TransformJobSpec,
    ) -> aws_sdk_sagemaker::operation::create_transform_job::builders::CreateTransformJobFluentBuilder
    {
        let input_uri = format!("{}/", job.input_uri.trim_end_matches('/'));
        let output_uri = format!("{}/", job.output_uri.trim_end_matches('/'));
        let mut req = self
            .client
            .create_transform_job()
            .transform_job_name(&job.job_name)
            .model_name(self.model.name())
            .model_client_config(
                ModelClientConfig::builder()
                    .invocations_timeout_in_seconds(job.invocation_timeout_secs as i32)
                    .invocations_max_retries(job.invocation_max_retries as i32)
                    .build(),
            )
            .transform_input(
                TransformInput::builder()
                    .data_source(
                        TransformDataSource::builder()
                            .s3_data_source(
                                TransformS3DataSource::builder()
                                    .s3_data_type(S3DataType::S3Prefix)
                                    .s3_uri(input_uri)
                                    .build(),
                            )
                            .build(),
                    )
                    .content_type(&job.content_type)
                    .split_type(match job.split_type {
                        SplitType::Line => sm::SplitType::Line,
                        SplitType::None => sm::SplitType::None,
                    })
                    .compression_type(sm::CompressionType::None)
                    .build(),
            )
            .transform_output({
                let mut o = TransformOutput::builder()
                    .s3_output_path(output_uri)
                    .accept(&job.content_type)
                    .assemble_with(match job.assemble_with {
                        AssembleWith::Line => sm::AssemblyType::Line,
                        AssembleWith::None => sm::AssemblyType::None,
                    });
                if let Some(k) = &self.resources.output_kms_key_id {
                    o = o.kms_key_id(k);
                }
                o.build()
            })
            .transform_resources({
                let mut r = TransformResources::builder()
                    .instance_type(sm::TransformInstanceType::from(
                        self.resources.instance_type.as_str(),
                    ))
                    .instance_count(job.instance_count as i32);
                if let Some(k) = &self.resources.volume_kms_key_id {
                    r = r.volume_kms_key_id(k);
                }
                r.build()
            })
            .data_processing(
                SmDataProcessing::builder()
                    .input_filter(&job.data_processing.input_filter)
                    .output_filter(&job.data_processing.output_filter)
                    .join_source(match job.data_processing.join_source {
                        JoinSource::Input => sm::JoinSource::Input,
                        JoinSource::None => sm::JoinSource::None,
                    })
                    .build(),
            )
            .set_tags(Some(self.tags()));
        if job.max_concurrent_transforms > 0 {
            req = req.max_concurrent_transforms(job.max_concurrent_transforms as i32);
        }
        if let Some(p) = job.max_payload_mb {
            req = req.max_payload_in_mb(p as i32);
        }
        if let Some(b) = job.batch_strategy {
            req = req.batch_strategy(match b {
                BatchStrategy::MultiRecord => sm::BatchStrategy::MultiRecord,
                BatchStrategy::SingleRecord => sm::BatchStrategy::SingleRecord,
            });
        }
        req
    }

    /// The control plane: model, create or re-attach, data-plane hook, poll to the end.
    pub async fn submit_and_wait(&self, job: &TransformJobSpec) -> Result<Outcome, TransformError> {
        let model_created = self.ensure_model().await?;
        let name = job.job_name.clone();
        let created = match self
            .client
            .describe_transform_job()
            .transform_job_name(&name)
            .send()
            .await
        {
            Ok(d) => {
                tracing::info!(job = %name, status = ?d.transform_job_status(), "re-attaching to the existing transform job");
                false
            }
            Err(e) if e.as_service_error().is_some_and(is_not_found) => {
                match self.create_request(job).send().await {
                    Ok(_) => {
                        tracing::info!(job = %name, instance_type = %self.resources.instance_type, instances = job.instance_count, "created the transform job");
                        true
                    }
                    Err(e)
                        if e.as_service_error()
                            .is_some_and(|s| s.code() == Some("ResourceInUse")) =>
                    {
                        tracing::info!(job = %name, "the transform job was created concurrently; attaching");
                        false
                    }
                    Err(e) => return Err(sdk_err("CreateTransformJob", &e)),
                }
            }
            Err(e) => return Err(sdk_err("DescribeTransformJob", &e)),
        };
        if let Some(h) = &self.data_plane {
            let (h, j) = (h.clone(), job.clone());
            tokio::task::spawn_blocking(move || (h.0)(&j))
                .await
                .map_err(|source| TransformError::Task {
                    operation: "data plane".into(),
                    source,
                })?
                .map_err(|m| TransformError::Cloud {
                    operation: "data plane".into(),
                    message: m,
                })?;
        }
        let mut wait = self.poll.0;
        let mut polls = 0u32;
        let mut transient = 0u32;
        let mut stop_sent = false;
        loop {
            if !stop_sent
                && self
                    .cancel
                    .as_ref()
                    .is_some_and(|c| c.load(Ordering::SeqCst))
            {
                match self
                    .client
                    .stop_transform_job()
                    .transform_job_name(&name)
                    .send()
                    .await
                {
                    Ok(_) => tracing::warn!(job = %name, "stop requested (StopTransformJob)"),
                    Err(e) => {
                        tracing::warn!(job = %name, error = %aws::error_text(&e), "StopTransformJob failed; will poll and retry")
                    }
                }
                stop_sent = true;
            }
            polls += 1;
            match self
                .client
                .describe_transform_job()
                .transform_job_name(&name)
                .send()
                .await
            {
                Ok(d) => {
                    transient = 0;
                    let status = d
                        .transform_job_status()
                        .cloned()
                        .unwrap_or(TransformJobStatus::InProgress);
                    match status {
                        TransformJobStatus::Completed
                        | TransformJobStatus::Failed
                        | TransformJobStatus::Stopped => {
                            let failure_reason = match &status {
                                TransformJobStatus::Stopped => Some(
                                    d.failure_reason()
                                        .map(str::to_string)
                                        .unwrap_or_else(|| "the transform job was stopped".into()),
                                ),
                                TransformJobStatus::Failed => {
                                    Some(d.failure_reason().map(str::to_string).unwrap_or_else(
                                        || "failed (SageMaker gave no FailureReason)".into(),
                                    ))
                                }
                                _ => None,
                            };
                            return Ok(Outcome {
                                status,
                                failure_reason,
                                created,
                                model_created,
                                polls,
                            });
                        }
                        _ => {}
                    }
                }
                Err(e) => {
                    transient += 1;
                    let text = aws::error_text(&e);
                    if transient > 5 {
                        return Err(TransformError::Cloud {
                            operation: "DescribeTransformJob".into(),
                            message: format!("{text} (after {transient} polls in a row)"),
                        });
                    }
                    tracing::warn!(job = %name, error = %text, "polling failed; retrying");
                }
            }
            tokio::time::sleep(jitter(wait)).await;
            wait = (wait * 2).min(self.poll.1);
        }
    }
}

/// Full jitter between half and all of `d`.
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    let f = 0.5 + (nanos % 1000) as f64 / 2000.0;
    d.mul_f64(f)
}

impl BatchTransform for SageMakerTransform {
    fn run(
        &self,
        job: &TransformJobSpec,
        progress: &dyn Progress,
    ) -> Result<TransformResult, TransformError> {
        job.validate()?;
        let store = self
            .store
            .clone()
            .ok_or_else(|| TransformError::InvalidSpec {
                field: "store".into(),
                reason: "the SageMaker backend reads outputs back through an S3 store".into(),
            })?;
        let base = store.uri();
        let rel = |uri: &str, field: &str| -> Result<String, TransformError> {
            uri.strip_prefix(&base)
                .map(|r| r.trim_matches('/').to_string())
                .ok_or_else(|| TransformError::InvalidSpec {
                    field: field.into(),
                    reason: format!("{uri} is not inside the store {base}"),
                })
        };
        let in_prefix = rel(&job.input_uri, "TransformInput.S3Uri")?;
        let out_prefix = rel(&job.output_uri, "TransformOutput.S3OutputPath")?;
        let started = Instant::now();
        let me = self.clone();
        let j = job.clone();
        let outcome = aws::block_on(async move { me.submit_and_wait(&j).await })?;
        let inputs = store
            .list(&in_prefix)
            .map_err(|source| TransformError::Store {
                uri: job.input_uri.clone(),
                source,
            })?;
        let mut result = TransformResult {
            job_name: job.job_name.clone(),
            status: JobStatus::Completed,
            failure_reason: None,
            objects: vec![],
            records: 0,
            requests: 0,
            bytes_in: 0,
            bytes_out: 0,
            elapsed: Duration::ZERO,
            effective: EffectiveSettings {
                batch_strategy: job.batch_strategy.unwrap_or(BatchStrategy::MultiRecord),
                max_payload_mb: job.max_payload_mb.unwrap_or(6),
                max_concurrent_transforms: job.max_concurrent_transforms,
            },
        };
        if outcome.status != TransformJobStatus::Completed {
            result.status = JobStatus::Failed;
            result.failure_reason = Some(format!(
                "SageMaker transform job {} {}: {}",
                job.job_name,
                outcome.status.as_str(),
                outcome.failure_reason.unwrap_or_default()
            ));
            result.elapsed = started.elapsed();
            return Ok(result);
        }
        let n_instances = job.instance_count.max(1);
        for (i, o) in inputs.iter().enumerate() {
            let name = o
                .key
                .strip_prefix(&in_prefix)
                .unwrap_or(&o.key)
                .trim_start_matches('/');
            let out_key = format!("{out_prefix}/{name}.out");
            let mut r = ObjectResult {
                input: name.to_string(),
                output: None,
                instance: (i as u32) % n_instances,
                records: 0,
                requests: 0,
                failed_attempts: 0,
                bytes_in: o.size,
                bytes_out: 0,
                elapsed: Duration::ZERO,
                error: None,
            };
            match store.get(&out_key) {
                Ok(b) => {
                    r.records = b.split(|c| *c == b'\n').filter(|l| !l.is_empty()).count() as u64;
                    r.bytes_out = b.len() as u64;
                    r.output = Some(format!("{name}.out"));
                }
                Err(e) => {
                    r.error = Some(format!(
                        "the job Completed but {out_key} cannot be read: {e}"
                    ));
                    if result.failure_reason.is_none() {
                        result.status = JobStatus::Failed;
                        result.failure_reason = r.error.clone();
                    }
                }
            }
            result.records += r.records;
            result.bytes_in += r.bytes_in;
            result.bytes_out += r.bytes_out;
            progress.records_done(r.records);
            progress.object_finished(&r);
            result.objects.push(r);
        }
        if inputs.is_empty() {
            return Err(TransformError::NoInput {
                uri: job.input_uri.clone(),
            });
        }
        result.elapsed = started.elapsed();
        tracing::info!(job = %job.job_name, created = outcome.created, polls = outcome.polls, records = result.records, "transform job finished");
        Ok(result)
    }
}

#[cfg(test)]
mod tests;
