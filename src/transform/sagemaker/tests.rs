//! The control plane's state machine against aws-smithy-mocks: real SDK clients (real
//! serialisation, retries and error parsing), canned SageMaker answers.
use super::*;
use aws_sdk_sagemaker::operation::create_model::CreateModelOutput;
use aws_sdk_sagemaker::operation::create_transform_job::CreateTransformJobOutput;
use aws_sdk_sagemaker::operation::describe_model::DescribeModelOutput;
use aws_sdk_sagemaker::operation::describe_transform_job::DescribeTransformJobOutput;
use aws_sdk_sagemaker::operation::stop_transform_job::StopTransformJobOutput;
use aws_smithy_mocks::{mock, Rule};

const JOB: &str = "c360-churn-weekly-2024-06-30-0a1b2c3d";

fn client(rules: &[&Rule]) -> Client {
    let conf = crate::aws::mocked_config!(aws_sdk_sagemaker, rules, 3);
    Client::from_conf(conf)
}

fn backend(c: Client, model: ModelTarget) -> SageMakerTransform {
    let mut t = SageMakerTransform::new(
        c,
        model,
        CloudResources {
            instance_type: "ml.c5.2xlarge".into(),
            output_kms_key_id: Some("alias/c360".into()),
            volume_kms_key_id: Some("alias/c360".into()),
            tags: vec![("c360:job".into(), "churn_weekly".into())],
        },
    );
    t.poll = (Duration::from_millis(1), Duration::from_millis(4));
    t
}

fn spec() -> TransformJobSpec {
    let mut s = TransformJobSpec::new(JOB, "s3://b/c360/runs/in", "s3://b/c360/runs/out");
    s.split_type = SplitType::Line;
    s.batch_strategy = Some(BatchStrategy::MultiRecord);
    s.max_payload_mb = Some(6);
    s.max_concurrent_transforms = 8;
    s.instance_count = 2;
    s.data_processing.input_filter = "$[1:]".into();
    s.data_processing.join_source = JoinSource::Input;
    s.data_processing.output_filter = "$[0,-1]".into();
    s.assemble_with = AssembleWith::Line;
    s
}

fn status(s: TransformJobStatus) -> DescribeTransformJobOutput {
    DescribeTransformJobOutput::builder()
        .transform_job_name(JOB)
        .transform_job_status(s)
        .build()
}

fn not_found(what: &str) -> Option<String> {
    Some(format!(
        r#"{{"__type":"ValidationException","message":"Could not find {what}"}}"#
    ))
}

fn model_exists() -> Rule {
    mock!(Client::describe_model)
        .then_output(|| DescribeModelOutput::builder().model_name("m").build())
}

fn run(t: &SageMakerTransform) -> Result<Outcome, TransformError> {
    let t = t.clone();
    crate::aws::block_on(async move { t.submit_and_wait(&spec()).await })
}

#[test]
fn creates_the_job_once_and_polls_until_completed() {
    let dm = model_exists();
    let describe = mock!(Client::describe_transform_job)
        .sequence()
        .http_status(400, not_found("requested job"))
        .output(|| status(TransformJobStatus::InProgress))
        .times(2)
        .output(|| status(TransformJobStatus::Completed))
        .build();
    let create = mock!(Client::create_transform_job)
        .match_requests(|r| {
            // Every field the job needs travels in the request.
            r.transform_job_name() == Some(JOB)
                && r.model_name() == Some("m")
                && r.max_concurrent_transforms() == Some(8)
                && r.max_payload_in_mb() == Some(6)
                && r.batch_strategy() == Some(&sm::BatchStrategy::MultiRecord)
                && r.transform_input().and_then(|i| i.split_type()) == Some(&sm::SplitType::Line)
                && r.transform_input()
                    .and_then(|i| i.data_source())
                    .and_then(|d| d.s3_data_source())
                    .and_then(|s| s.s3_uri())
                    == Some("s3://b/c360/runs/in/")
                && r.transform_output().and_then(|o| o.kms_key_id()) == Some("alias/c360")
                && r.transform_resources().and_then(|o| o.volume_kms_key_id()) == Some("alias/c360")
                && r.transform_resources().and_then(|o| o.instance_count()) == Some(2)
                && r.data_processing().and_then(|d| d.join_source()) == Some(&sm::JoinSource::Input)
                && r.tags().iter().any(|t| t.key() == Some("c360:job"))
        })
        .then_output(|| {
            CreateTransformJobOutput::builder()
                .transform_job_arn("arn")
                .build()
        });
    let t = backend(
        client(&[&dm, &describe, &create]),
        ModelTarget::Existing("m".parse().unwrap()),
    );
    let o = run(&t).unwrap();
    assert_eq!(o.status, TransformJobStatus::Completed);
    assert!(o.created && !o.model_created);
    assert_eq!(o.polls, 3);
    assert_eq!(create.num_calls(), 1);
    assert_eq!(describe.num_calls(), 4);
}

#[test]
fn a_restarted_run_reattaches_without_a_second_create() {
    let dm = model_exists();
    let describe = mock!(Client::describe_transform_job)
        .sequence()
        .output(|| status(TransformJobStatus::InProgress))
        .times(2)
        .output(|| status(TransformJobStatus::Completed))
        .build();
    let create = mock!(Client::create_transform_job).then_output(|| {
        CreateTransformJobOutput::builder()
            .transform_job_arn("arn")
            .build()
    });
    let t = backend(
        client(&[&dm, &describe, &create]),
        ModelTarget::Existing("m".parse().unwrap()),
    );
    let o = run(&t).unwrap();
    assert_eq!(o.status, TransformJobStatus::Completed);
    assert!(!o.created);
    assert_eq!(
        create.num_calls(),
        0,
        "no second CreateTransformJob for the same run"
    );
}

#[test]
fn a_failed_job_surfaces_its_failure_reason() {
    let dm = model_exists();
    let describe = mock!(Client::describe_transform_job)
        .sequence()
        .output(|| status(TransformJobStatus::InProgress))
        .output(|| {
            DescribeTransformJobOutput::builder()
                .transform_job_name(JOB)
                .transform_job_status(TransformJobStatus::Failed)
                .failure_reason("ClientError: See job logs for more information")
                .build()
        })
        .build();
    let t = backend(
        client(&[&dm, &describe]),
        ModelTarget::Existing("m".parse().unwrap()),
    );
    let o = run(&t).unwrap();
    assert_eq!(o.status, TransformJobStatus::Failed);
    assert_eq!(
        o.failure_reason.as_deref(),
        Some("ClientError: See job logs for more information")
    );
}

#[test]
fn cancel_stops_the_job_once() {
    let dm = model_exists();
    let describe = mock!(Client::describe_transform_job)
        .sequence()
        .output(|| status(TransformJobStatus::InProgress))
        .output(|| status(TransformJobStatus::Stopping))
        .times(2)
        .output(|| status(TransformJobStatus::Stopped))
        .build();
    let stop = mock!(Client::stop_transform_job)
        .match_requests(|r| r.transform_job_name() == Some(JOB))
        .then_output(|| StopTransformJobOutput::builder().build());
    let mut t = backend(
        client(&[&dm, &describe, &stop]),
        ModelTarget::Existing("m".parse().unwrap()),
    );
    t.cancel = Some(Arc::new(AtomicBool::new(true)));
    let o = run(&t).unwrap();
    assert_eq!(o.status, TransformJobStatus::Stopped);
    assert_eq!(
        o.failure_reason.as_deref(),
        Some("the transform job was stopped")
    );
    assert_eq!(stop.num_calls(), 1);
}

#[test]
fn throttling_is_retried_with_backoff() {
    let dm = model_exists();
    let throttled =
        Some(r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#.to_string());
    // 4 throttles: the SDK's 3 attempts give up once, the poll loop tries again.
    let describe = mock!(Client::describe_transform_job)
        .sequence()
        .output(|| status(TransformJobStatus::InProgress))
        .http_status(400, throttled.clone())
        .times(4)
        .http_status(503, None)
        .output(|| status(TransformJobStatus::Completed))
        .build();
    let t = backend(
        client(&[&dm, &describe]),
        ModelTarget::Existing("m".parse().unwrap()),
    );
    let o = run(&t).unwrap();
    assert_eq!(o.status, TransformJobStatus::Completed);
    assert_eq!(describe.num_calls(), 7);
    // Persistent failure: the loop gives up with the error, naming the operation.
    let dm = model_exists();
    let always = mock!(Client::describe_transform_job)
        .sequence()
        .output(|| status(TransformJobStatus::InProgress))
        .http_status(400, throttled)
        .repeatedly()
        .build();
    let t = backend(
        client(&[&dm, &always]),
        ModelTarget::Existing("m".parse().unwrap()),
    );
    let e = run(&t).unwrap_err().to_string();
    assert!(
        e.contains("DescribeTransformJob") && e.contains("ThrottlingException"),
        "{e}"
    );
}

#[test]
fn a_missing_model_is_created_in_the_vpc() {
    let dm = mock!(Client::describe_model)
        .sequence()
        .http_status(400, not_found("model c360-churn-xgb-1234abcd"))
        .build();
    let cm = mock!(Client::create_model)
        .match_requests(|r| {
            r.model_name() == Some("c360-churn-xgb-1234abcd")
                && r.execution_role_arn() == Some("arn:aws:iam::123456789012:role/sm")
                && r.enable_network_isolation() == Some(true)
                && r.vpc_config()
                    .map(|v| (v.subnets().len(), v.security_group_ids().len()))
                    == Some((2, 1))
                && r.primary_container().and_then(|c| c.model_data_url())
                    == Some("s3://artifacts/churn/model.tar.gz")
        })
        .then_output(|| CreateModelOutput::builder().model_arn("arn").build());
    let describe =
        mock!(Client::describe_transform_job).then_output(|| status(TransformJobStatus::Completed));
    let model = ModelTarget::Create {
        name: "c360-churn-xgb-1234abcd".parse().unwrap(),
        image: "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1".into(),
        model_data: "s3://artifacts/churn/model.tar.gz".into(),
        role_arn: "arn:aws:iam::123456789012:role/sm".into(),
        subnets: vec!["subnet-0a1b2c3d".into(), "subnet-0e1f2a3b".into()],
        security_groups: vec!["sg-0123abcd".into()],
        network_isolation: true,
    };
    let t = backend(client(&[&dm, &cm, &describe]), model);
    let o = run(&t).unwrap();
    assert!(o.model_created);
    assert_eq!(cm.num_calls(), 1);
    // An existing model that is missing is an error that names it.
    let dm = mock!(Client::describe_model)
        .sequence()
        .http_status(400, not_found("model gone"))
        .build();
    let t = backend(
        client(&[&dm]),
        ModelTarget::Existing("gone".parse().unwrap()),
    );
    let e = run(&t).unwrap_err().to_string();
    assert!(e.contains("gone") && e.contains("does not exist"), "{e}");
}
