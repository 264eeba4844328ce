//! The sink against aws-smithy-mocks (real SDK clients: serialisation, retries, error
//! parsing; canned EventBridge answers): what moto cannot answer, entry-level refusals.
//! The delivery itself is tested against moto in `tests/it/mesh_events.rs`.
use super::*;
use crate::mesh::{EventSink, ProductEvent, VersionRefused, VERSION_REFUSED};
use aws_sdk_eventbridge::operation::put_events::PutEventsOutput;
use aws_sdk_eventbridge::types::PutEventsResultEntry;
use aws_smithy_mocks::{mock, Rule};
use chrono::NaiveDate;

fn fast() -> RetryPolicy {
    RetryPolicy {
        calls: MAX_CALLS,
        first: Duration::from_millis(1),
        max: Duration::from_millis(4),
        deadline: Duration::from_secs(5),
    }
}

fn sink(rules: &[&Rule], retry: RetryPolicy) -> EventBridgeSink {
    let conf = crate::aws::mocked_config!(aws_sdk_eventbridge, rules, 2);
    let settings = EventSettings {
        kind: crate::mesh::EventsKind::Eventbridge,
        bus_name: "mesh-products".into(),
        source: "c360".into(),
    };
    let mut s = EventBridgeSink::new(&settings, &AwsSettings::default()).unwrap();
    s.client = Arc::new(OnceCell::new_with(Some(Client::from_conf(conf))));
    s.retry = retry;
    s
}

fn refused() -> ProductEvent {
    ProductEvent::Refused(VersionRefused {
        product: "churn_scores".into(),
        major: 2,
        as_of: NaiveDate::from_ymd_opt(2024, 6, 30).unwrap(),
        run_id: "r-0a1b".into(),
        reason: "gate mean_score: 0.91 above 0.6".into(),
        score_statistics: serde_json::json!({"mean": 0.91}),
    })
}

fn taken(id: &str) -> PutEventsOutput {
    PutEventsOutput::builder()
        .failed_entry_count(0)
        .entries(PutEventsResultEntry::builder().event_id(id).build())
        .build()
}

fn refused_with(code: &str) -> PutEventsOutput {
    PutEventsOutput::builder()
        .failed_entry_count(1)
        .entries(
            PutEventsResultEntry::builder()
                .error_code(code)
                .error_message("nope")
                .build(),
        )
        .build()
}

#[test]
fn the_entry_carries_source_detail_type_detail_bus_and_time() {
    let put = mock!(Client::put_events)
        .match_requests(|r| {
            let e = &r.entries()[0];
            let detail: serde_json::Value =
                serde_json::from_str(e.detail().unwrap_or("")).unwrap_or_default();
            r.entries().len() == 1
                && e.source() == Some("c360")
                && e.detail_type() == Some(VERSION_REFUSED)
                && e.event_bus_name() == Some("mesh-products")
                && e.resources().is_empty()
                && e.time().is_some_and(|t| t.secs() > 1_700_000_000)
                && detail["product"] == "churn_scores"
                && detail["major"] == 2
                && detail["as_of"] == "2024-06-30"
                && detail["reason"] == "gate mean_score: 0.91 above 0.6"
                && detail["score_statistics"]["mean"] == 0.91
        })
        .then_output(|| taken("ev-1"));
    let s = sink(&[&put], fast());
    let r = s.send(&refused()).unwrap();
    assert_eq!(
        r,
        EventRecord {
            detail_type: VERSION_REFUSED.into(),
            bus: "mesh-products".into(),
            event_id: Some("ev-1".into()),
            attempts: 1,
            error: None,
        }
    );
    assert_eq!(put.num_calls(), 1);
}

#[test]
fn a_throttled_entry_is_put_again_until_taken() {
    let put = mock!(Client::put_events)
        .sequence()
        .output(|| refused_with("ThrottlingException"))
        .output(|| refused_with("InternalFailure"))
        .output(|| taken("ev-3"))
        .build();
    let s = sink(&[&put], fast());
    let r = s.send(&refused()).unwrap();
    assert_eq!(r.event_id.as_deref(), Some("ev-3"));
    assert_eq!((r.attempts, r.error), (3, None));
    assert_eq!(put.num_calls(), 3);
}

#[test]
fn a_permanent_refusal_is_not_put_again() {
    let put = mock!(Client::put_events)
        .sequence()
        .output(|| refused_with("NotAuthorizedForSourceException"))
        .repeatedly()
        .build();
    let s = sink(&[&put], fast());
    let r = s.send(&refused()).unwrap();
    assert_eq!((r.attempts, r.event_id.as_deref()), (1, None));
    let e = r.error.unwrap();
    assert!(
        e.contains(
            "event bus mesh-products refused the entry: NotAuthorizedForSourceException: nope"
        ) && e.contains("allow events:PutEvents")
            && e.contains("after 1 PutEvents call)")
            && e.contains("stays as it is"),
        "{e}"
    );
    assert_eq!(put.num_calls(), 1);
}

#[test]
fn retries_stop_after_max_calls_and_name_the_last_code() {
    let put = mock!(Client::put_events)
        .sequence()
        .output(|| refused_with("ThrottlingException"))
        .repeatedly()
        .build();
    let s = sink(&[&put], fast());
    let before = counts().get(VERSION_REFUSED).copied().unwrap_or_default();
    let r = s.send(&refused()).unwrap();
    assert_eq!(r.attempts, MAX_CALLS);
    assert_eq!(put.num_calls(), MAX_CALLS as usize);
    let e = r.error.unwrap();
    assert!(
        e.contains("ThrottlingException") && e.contains("after 4 PutEvents calls"),
        "{e}"
    );
    let after = counts()[VERSION_REFUSED];
    assert!(after.failed > before.failed, "{before:?} -> {after:?}");
}

#[test]
fn the_retries_stop_at_the_deadline() {
    // Waits of up to 10 s against a deadline of 300 ms: the send gives up in time.
    let put = mock!(Client::put_events)
        .sequence()
        .output(|| refused_with("ThrottlingException"))
        .repeatedly()
        .build();
    let retry = RetryPolicy {
        calls: 50,
        first: Duration::from_secs(10),
        max: Duration::from_secs(10),
        deadline: Duration::from_millis(300),
    };
    let s = sink(&[&put], retry);
    let t = Instant::now();
    let r = s.send(&refused()).unwrap();
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert!(r.attempts >= 1 && r.attempts < 50, "{r:?}");
    assert!(r.error.unwrap().contains("ThrottlingException"));
}

#[test]
fn a_request_error_is_not_retried_by_the_sink() {
    let put = mock!(Client::put_events)
        .sequence()
        .http_status(
            400,
            Some(
                r#"{"__type":"ResourceNotFoundException","message":"Event bus mesh-products does not exist."}"#
                    .into(),
            ),
        )
        .repeatedly()
        .build();
    let s = sink(&[&put], fast());
    let r = s.send(&refused()).unwrap();
    assert_eq!(r.attempts, 1);
    assert_eq!(put.num_calls(), 1, "a 400 is not retried by the SDK either");
    let e = r.error.unwrap();
    assert!(
        e.starts_with("EventBridge PutEvents on event bus mesh-products: ResourceNotFoundException: Event bus mesh-products does not exist.; create the bus mesh-products")
            && e.contains("create-event-bus"),
        "{e}"
    );
}

#[test]
fn an_entry_over_256_kib_is_refused_without_a_call() {
    let put = mock!(Client::put_events).then_output(|| taken("never"));
    let s = sink(&[&put], fast());
    let mut ev = refused();
    if let ProductEvent::Refused(r) = &mut ev {
        r.reason = "x".repeat(MAX_ENTRY_BYTES);
    }
    let r = s.send(&ev).unwrap();
    assert_eq!((r.attempts, r.event_id.as_deref()), (0, None));
    let e = r.error.unwrap();
    assert!(e.contains("262144 bytes (256 KiB)"), "{e}");
    assert_eq!(put.num_calls(), 0);
}

#[test]
fn entry_size_counts_as_eventbridge_does() {
    assert_eq!(entry_size("c360", "T", "{}", &[]), 14 + 4 + 1 + 2);
    assert_eq!(entry_size("c", "T", "é", &["arn:x"]), 14 + 1 + 1 + 2 + 5);
}

#[test]
fn backoff_grows_and_is_capped() {
    let p = RetryPolicy::default();
    for _ in 0..50 {
        assert!(p.backoff(1) <= Duration::from_millis(200));
        assert!(p.backoff(3) <= Duration::from_millis(800));
        assert!(p.backoff(40) <= MAX_BACKOFF);
    }
}

#[test]
fn settings_are_checked_and_named() {
    let ok = |bus: &str, source: &str| {
        EventBridgeSink::new(
            &EventSettings {
                kind: crate::mesh::EventsKind::Eventbridge,
                bus_name: bus.into(),
                source: source.into(),
            },
            &AwsSettings::default(),
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
    };
    assert_eq!(ok("default", "c360"), Ok(()));
    assert_eq!(
        ok("aws.partner/example.com/123/bus", "com.example.c360"),
        Ok(())
    );
    assert_eq!(
        ok(
            "arn:aws:events:eu-west-1:123456789012:event-bus/mesh-products",
            "c360"
        ),
        Ok(())
    );
    for bad in [
        "",
        "mesh products",
        "bus!",
        &"b".repeat(257),
        "arn:aws:events:eu-west-1:1234:event-bus/x",
        "arn:aws:sqs:eu-west-1:123456789012:event-bus/x",
    ] {
        let e = ok(bad, "c360").unwrap_err();
        assert!(
            e.starts_with("[events] in c360.toml: bus_name = ") && e.contains("event bus ARN"),
            "{bad}: {e}"
        );
    }
    let e = ok(&"b".repeat(300), "c360").unwrap_err();
    assert!(e.contains("... (300 characters)") && e.len() < 400, "{e}");
    let e = ok("default", "aws.c360").unwrap_err();
    assert!(
        e.starts_with("[events] in c360.toml: source = \"aws.c360\" starts with \"aws.\""),
        "{e}"
    );
    for bad in ["", "c 360", "c360/x", &"c".repeat(257)] {
        let e = ok("default", bad).unwrap_err();
        assert!(e.starts_with("[events] in c360.toml: source = "), "{e}");
    }
}

#[test]
fn plan_names_bus_source_and_detail_type() {
    let s = sink(&[], fast());
    assert_eq!(
        s.plan(VERSION_REFUSED),
        ["eventbridge: PutEvents to bus mesh-products: source c360, detail-type Data Product Version Refused"]
    );
    assert_eq!(s.kind(), "eventbridge");
    assert!(!format!("{s:?}").contains("credentials"));
}
