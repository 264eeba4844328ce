//! Step `transform`: one batch transform per run through [`BatchTransform`], whichever the
//! backend. The local backend scores in process; SageMaker runs the job the plan recorded
//! by the `transform_input` step sized (created, or re-attached after an interruption) and
//! its outputs are read back through the store. The completion check is the same for both.

use std::sync::Arc;

use super::prepare::{CloudPrep, Prepared};
use super::record::{StepDetail, TransformDetail};
use super::steps::{Run, StepOutput};
use super::{PipelineError, Result, Step};
use crate::names::SageMakerName;
use crate::transform::{self, Backend, BatchTransform, JobStatus, TransformJobSpec};

/// Step `transform`: scores `input_prefix` into `output_prefix`.
pub(super) fn transform(
    r: &mut Run<'_>,
    input_prefix: &str,
    output_prefix: &str,
) -> Result<StepOutput<()>> {
    let p = r.p;
    let mut spec = transform_spec(p, input_prefix, output_prefix);
    let (runner, sized): (Box<dyn BatchTransform>, Option<Sized>) = match &p.cloud {
        None => {
            // The local runner writes every output again; SageMaker's outputs belong to
            // its job (re-attached on resume), so only the local ones are cleared.
            p.store.delete_prefix(output_prefix)?;
            let invoker = Arc::new(transform::invoker::InProcessInvoker::new(Arc::new(
                p.model.booster.clone(),
            )));
            (
                Box::new(transform::local::LocalTransform::new(invoker)),
                None,
            )
        }
        Some(c) => {
            let sized = recorded_plan(r)?;
            spec.instance_count = sized.plan.instance_count;
            spec.max_concurrent_transforms = sized.plan.max_concurrent_transforms;
            spec.max_payload_mb = Some(sized.plan.max_payload_mb);
            (
                Box::new(sagemaker(r, c, &sized.plan.instance_type)?),
                Some(sized),
            )
        }
    };
    let progress: &dyn transform::Progress =
        r.obs.transform_progress().unwrap_or(&transform::NoProgress);
    let res = runner.run(&spec, progress)?;
    if res.status != JobStatus::Completed {
        return Err(PipelineError::Transform(
            res.failure_reason
                .unwrap_or_else(|| "the job did not complete".into()),
        ));
    }
    let detail = match sized {
        None => TransformDetail {
            backend: Backend::Local,
            job_name: spec.job_name.clone(),
            model: None,
            instance_type: None,
            instance_count: None,
            max_concurrent_transforms: res.effective.max_concurrent_transforms,
            max_payload_mb: Some(res.effective.max_payload_mb),
            objects: res.objects.len() as u64,
            records: res.records,
            requests: Some(res.requests),
            seconds: res.elapsed.as_secs_f64(),
            estimated_cost_usd: None,
            estimated_seconds: None,
        },
        Some(s) => TransformDetail {
            backend: Backend::SageMaker,
            job_name: spec.job_name.clone(),
            model: Some(s.model),
            instance_type: Some(s.plan.instance_type),
            instance_count: Some(spec.instance_count),
            max_concurrent_transforms: spec.max_concurrent_transforms,
            max_payload_mb: spec.max_payload_mb,
            objects: res.objects.len() as u64,
            records: res.records,
            requests: None,
            seconds: res.elapsed.as_secs_f64(),
            estimated_cost_usd: Some(s.plan.est_cost_usd),
            estimated_seconds: Some(s.plan.est_seconds),
        },
    };
    Ok(((), Some(res.records), StepDetail::Transform(detail)))
}

/// The SageMaker plan the `transform_input` step recorded, and the model it runs.
struct Sized {
    plan: transform::planner::Plan,
    model: String,
}

fn recorded_plan(r: &Run<'_>) -> Result<Sized> {
    let plan = match r.ledger.step(Step::TransformInput).map(|s| &s.detail) {
        Some(StepDetail::TransformInput(d)) => d.plan.clone(),
        _ => None,
    };
    let plan = plan.ok_or_else(|| PipelineError::Run {
        run: r.p.run_id.clone(),
        message: "the transform input step recorded no SageMaker plan; delete the run's ledger to start it again".into(),
    })?;
    let model =
        r.p.cloud
            .as_ref()
            .map(|c| c.model.name().to_string())
            .unwrap_or_default();
    Ok(Sized { plan, model })
}

/// The SageMaker backend for a run: its model, instance type, keys and tags.
fn sagemaker(
    r: &Run<'_>,
    c: &CloudPrep,
    instance_type: &str,
) -> Result<transform::sagemaker::SageMakerTransform> {
    use transform::sagemaker::{CloudResources, SageMakerTransform};
    let p = r.p;
    let mut tags = vec![
        ("c360:job".to_string(), p.job.name.to_string()),
        ("c360:run-id".to_string(), p.run_id.clone()),
        ("c360:product".to_string(), p.job.product.name.to_string()),
    ];
    tags.extend(
        c.settings
            .sagemaker
            .tags
            .iter()
            .map(|(k, v)| (k.clone(), v.clone())),
    );
    let client = SageMakerTransform::client_from_settings(&c.settings)?;
    let mut sm = SageMakerTransform::new(
        client,
        c.model.clone(),
        CloudResources {
            instance_type: instance_type.to_string(),
            output_kms_key_id: c.settings.output_kms_key().map(str::to_string),
            volume_kms_key_id: c.settings.volume_kms_key().map(str::to_string),
            tags,
        },
    );
    sm.poll = (
        std::time::Duration::from_secs_f64(c.settings.sagemaker.poll_seconds),
        std::time::Duration::from_secs_f64(c.settings.sagemaker.max_poll_seconds),
    );
    sm.store = Some(p.store.clone());
    sm.cancel = r.obs.cancel_flag();
    sm.data_plane = p.data_plane.clone();
    Ok(sm)
}

/// The job spec of a run's transform (SageMaker's `CreateTransformJob` settings).
fn transform_spec(p: &Prepared, input_prefix: &str, output_prefix: &str) -> TransformJobSpec {
    let base = p.store.uri();
    let t = &p.job.transform;
    let name = SageMakerName::derive("c360", &[&p.job.name, &p.run_id]);
    let mut spec = TransformJobSpec::new(
        &name,
        &format!("{base}/{input_prefix}"),
        &format!("{base}/{output_prefix}"),
    );
    spec.content_type = "text/csv".into();
    spec.split_type = transform::SplitType::Line;
    spec.batch_strategy = Some(transform::BatchStrategy::MultiRecord);
    spec.max_payload_mb = Some(t.pins.max_payload_mb.unwrap_or(6));
    spec.max_concurrent_transforms = t.pins.max_concurrent_transforms.unwrap_or(0);
    spec.instance_count = t.pins.instance_count.unwrap_or(1);
    spec.data_processing.input_filter = "$[1:]".into();
    spec.data_processing.join_source = transform::JoinSource::Input;
    spec.data_processing.output_filter = "$[0,-1]".into();
    spec.assemble_with = transform::AssembleWith::Line;
    if let Some(s) = t.invocation_timeout_seconds {
        spec.invocation_timeout_secs = s;
    }
    if let Some(r) = t.invocation_max_retries {
        spec.invocation_max_retries = r;
    }
    spec
}
