//! Product events on EventBridge against moto's server mode: a bus with a rule whose target
//! is an SQS queue; the events c360 puts are read back from the queue, envelope and detail.
//! Then what goes wrong: an unreachable endpoint, a bus that does not exist, bad settings.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use c360::aws::{self, AwsSettings, StaticCredentials};
use c360::mesh::events::{counts, EventBridgeSink};
use c360::mesh::{
    EventSettings, EventSink, EventsKind, ProductEvent, VersionPublished, VersionRefused,
    VERSION_PUBLISHED, VERSION_REFUSED,
};
use chrono::NaiveDate;
use serde_json::{json, Value};

use crate::aws::moto;

fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn events(bus: &str) -> EventSettings {
    EventSettings {
        kind: EventsKind::Eventbridge,
        bus_name: bus.into(),
        source: "c360".into(),
    }
}

fn published() -> VersionPublished {
    VersionPublished {
        product: "churn_scores".into(),
        major: 1,
        as_of: NaiveDate::from_ymd_opt(2024, 6, 30).unwrap(),
        run_id: "churn_weekly-2024-06-30-0a1b2c3d".into(),
        location: "s3://mesh-bucket/c360/products/churn_scores/v1/as_of=2024-06-30/run=churn_weekly-2024-06-30-0a1b2c3d-9f8e/".into(),
        glue_database: Some("c360_products".into()),
        glue_table: Some("churn_scores_v1".into()),
        rows: 4321,
        contract_version: "1.0.0".into(),
        latest: true,
        score_statistics: json!({"mean": 0.231, "p50": 0.18, "p90": 0.61, "distinct": 3987}),
    }
}

fn refused() -> VersionRefused {
    VersionRefused {
        product: "churn_scores".into(),
        major: 1,
        as_of: NaiveDate::from_ymd_opt(2024, 7, 7).unwrap(),
        run_id: "churn_weekly-2024-07-07-1c2d3e4f".into(),
        reason: "gate max_mean_shift: mean 0.52 moved 0.29 from 0.23 (limit 0.1)".into(),
        score_statistics: json!({"mean": 0.52, "distinct": 12}),
    }
}

/// The sent and failed counts of `detail_type` as `/metrics` renders them.
fn metric(name: &str, detail_type: &str) -> f64 {
    let text = c360::service::metrics::Metrics::default().render();
    let prefix = format!("{name}{{detail_type=\"{detail_type}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// The bus, a queue, and a rule on the bus sending c360's two detail-types to the queue.
/// Returns the queue URL.
pub fn bus_with_queue(s: &AwsSettings, bus: &str) -> String {
    let (s, bus) = (s.clone(), bus.to_string());
    aws::block_on(async move {
        let eb = aws::eventbridge_client(&s).await.unwrap();
        let sqs = aws_sdk_sqs::Client::new(&aws::sdk_config(&s).await.unwrap());
        eb.create_event_bus().name(&bus).send().await.unwrap();
        let url = sqs
            .create_queue()
            .queue_name(format!("{bus}-q"))
            .send()
            .await
            .unwrap()
            .queue_url()
            .unwrap()
            .to_string();
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes()
            .and_then(|a| a.get(&aws_sdk_sqs::types::QueueAttributeName::QueueArn))
            .cloned()
            .unwrap();
        let pattern = json!({
            "source": ["c360"],
            "detail-type": [VERSION_PUBLISHED, VERSION_REFUSED],
        });
        eb.put_rule()
            .name("c360-products")
            .event_bus_name(&bus)
            .event_pattern(pattern.to_string())
            .send()
            .await
            .unwrap();
        eb.put_targets()
            .rule("c360-products")
            .event_bus_name(&bus)
            .targets(
                aws_sdk_eventbridge::types::Target::builder()
                    .id("queue")
                    .arn(arn)
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
        url
    })
}

/// Messages from the queue until `n` arrived or 20 s passed (long polls of 1 s).
fn receive(s: &AwsSettings, url: &str, n: usize) -> Vec<Value> {
    let (s, url) = (s.clone(), url.to_string());
    aws::block_on(async move {
        let sqs = aws_sdk_sqs::Client::new(&aws::sdk_config(&s).await.unwrap());
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut got = Vec::new();
        while got.len() < n && Instant::now() < deadline {
            let out = sqs
                .receive_message()
                .queue_url(&url)
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            for m in out.messages() {
                got.push(serde_json::from_str(m.body().unwrap()).unwrap());
            }
        }
        got
    })
}

#[test]
fn events_reach_an_sqs_target_with_every_field() {
    let Some(m) = moto() else { return };
    let s = m.settings();
    let bus = unique("c360-mesh-bus");
    let url = bus_with_queue(&s, &bus);
    let sink = EventBridgeSink::new(&events(&bus), &s).unwrap();
    let sent_before = (
        metric("c360_events_sent_total", VERSION_PUBLISHED),
        metric("c360_events_sent_total", VERSION_REFUSED),
    );

    let p = sink.send(&ProductEvent::Published(published())).unwrap();
    let r = sink.send(&ProductEvent::Refused(refused())).unwrap();
    for (rec, dt) in [(&p, VERSION_PUBLISHED), (&r, VERSION_REFUSED)] {
        assert_eq!(rec.detail_type, dt);
        assert_eq!(rec.bus, bus);
        assert_eq!((rec.attempts, rec.error.as_deref()), (1, None), "{rec:?}");
        assert!(
            rec.event_id.as_ref().is_some_and(|id| id.len() >= 32),
            "{rec:?}"
        );
    }
    assert_ne!(p.event_id, r.event_id);

    let got = receive(&s, &url, 2);
    assert_eq!(got.len(), 2, "{got:#?}");
    let by_type = |dt: &str| got.iter().find(|e| e["detail-type"] == dt).unwrap();

    let e = by_type(VERSION_PUBLISHED);
    assert_eq!(e["source"], "c360");
    assert_eq!(e["id"].as_str(), p.event_id.as_deref());
    assert_eq!(e["resources"], json!([]));
    let time = chrono::DateTime::parse_from_rfc3339(e["time"].as_str().unwrap()).unwrap();
    let skew = (chrono::Utc::now() - time.with_timezone(&chrono::Utc)).num_seconds();
    assert!((-5..=60).contains(&skew), "event time {time} is not now");
    let d = &e["detail"];
    assert_eq!(d["product"], "churn_scores");
    assert_eq!(d["major"], 1);
    assert_eq!(d["as_of"], "2024-06-30");
    assert_eq!(d["run_id"], "churn_weekly-2024-06-30-0a1b2c3d");
    assert_eq!(d["location"], published().location.as_str());
    assert_eq!(d["glue_database"], "c360_products");
    assert_eq!(d["glue_table"], "churn_scores_v1");
    assert_eq!(d["rows"], 4321);
    assert_eq!(d["contract_version"], "1.0.0");
    assert_eq!(d["latest"], true);
    assert_eq!(
        d["score_statistics"],
        json!({"mean": 0.231, "p50": 0.18, "p90": 0.61, "distinct": 3987})
    );
    // Nothing more, nothing less: the detail reads back as the event that was sent.
    let back: VersionPublished = serde_json::from_value(d.clone()).unwrap();
    assert_eq!(back, published());

    let e = by_type(VERSION_REFUSED);
    assert_eq!(e["source"], "c360");
    assert_eq!(e["id"].as_str(), r.event_id.as_deref());
    let d = &e["detail"];
    assert_eq!(d["product"], "churn_scores");
    assert_eq!(d["major"], 1);
    assert_eq!(d["as_of"], "2024-07-07");
    assert_eq!(d["run_id"], "churn_weekly-2024-07-07-1c2d3e4f");
    assert_eq!(
        d["reason"],
        "gate max_mean_shift: mean 0.52 moved 0.29 from 0.23 (limit 0.1)"
    );
    assert_eq!(d["score_statistics"], json!({"mean": 0.52, "distinct": 12}));
    let back: VersionRefused = serde_json::from_value(d.clone()).unwrap();
    assert_eq!(back, refused());

    // Counted, and shown on /metrics.
    assert!(counts()[VERSION_PUBLISHED].sent >= 1);
    assert!(metric("c360_events_sent_total", VERSION_PUBLISHED) > sent_before.0);
    assert!(metric("c360_events_sent_total", VERSION_REFUSED) > sent_before.1);

    // The bus given by ARN reaches the same queue.
    let arn = format!("arn:aws:events:us-east-1:123456789012:event-bus/{bus}");
    let by_arn = EventBridgeSink::new(&events(&arn), &s).unwrap();
    let rec = by_arn.send(&ProductEvent::Refused(refused())).unwrap();
    assert_eq!((rec.attempts, rec.error.as_deref()), (1, None), "{rec:?}");
    assert_eq!(rec.bus, arn);
    let got = receive(&s, &url, 1);
    assert_eq!(got.len(), 1, "{got:#?}");
    assert_eq!(got[0]["id"].as_str(), rec.event_id.as_deref());
}

#[test]
fn an_unreachable_endpoint_is_recorded_and_counted_within_seconds() {
    let secret = "wJalrXUtnFEMI-very-secret-K7MDENG";
    let s = AwsSettings {
        region: Some("us-east-1".into()),
        events_endpoint_url: Some("http://127.0.0.1:1".into()),
        max_attempts: 1,
        credentials: Some(StaticCredentials {
            access_key_id: "AKIAC360TEST".into(),
            secret_access_key: secret.into(),
        }),
        ..AwsSettings::default()
    };
    let sink = EventBridgeSink::new(&events("mesh-products"), &s).unwrap();
    let failed_before = metric("c360_events_failed_total", VERSION_PUBLISHED);
    let t = Instant::now();
    let rec = sink.send(&ProductEvent::Published(published())).unwrap();
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert_eq!(rec.detail_type, VERSION_PUBLISHED);
    assert_eq!(rec.bus, "mesh-products");
    assert_eq!((rec.attempts, rec.event_id.as_deref()), (1, None));
    let e = rec.error.unwrap();
    assert!(
        e.starts_with(
            "EventBridge PutEvents on event bus mesh-products: could not reach the endpoint"
        ) && e.contains("events_endpoint_url")
            && e.contains("the version stays as it is"),
        "{e}"
    );
    assert!(!e.contains(secret), "{e}");
    let failed_after = metric("c360_events_failed_total", VERSION_PUBLISHED);
    assert!(
        failed_after >= failed_before + 1.0,
        "{failed_before} -> {failed_after}"
    );

    // Too large for EventBridge: refused before any call.
    let mut big = published();
    big.score_statistics = json!({"histogram": vec![0.5f64; 80_000]});
    let rec = sink.send(&ProductEvent::Published(big)).unwrap();
    assert_eq!((rec.attempts, rec.event_id.as_deref()), (0, None));
    let e = rec.error.unwrap();
    assert!(
        e.contains("over EventBridge's limit of 262144 bytes"),
        "{e}"
    );
    assert!(metric("c360_events_failed_total", VERSION_PUBLISHED) >= failed_after + 1.0);
}

#[test]
fn a_bus_that_does_not_exist_is_named_in_the_record() {
    let Some(m) = moto() else { return };
    let bus = unique("c360-no-such-bus");
    let sink = EventBridgeSink::new(&events(&bus), &m.settings()).unwrap();
    let rec = sink.send(&ProductEvent::Refused(refused())).unwrap();
    assert_eq!((rec.attempts, rec.event_id.as_deref()), (1, None));
    // moto 5.2 answers ResourceNotFoundException (HTTP 400) for the whole request.
    let e = rec.error.unwrap();
    assert!(
        e.starts_with(&format!(
            "EventBridge PutEvents on event bus {bus}: ResourceNotFoundException: Event bus {bus} does not exist."
        )) && e.contains("create-event-bus")
            && e.contains("[events] bus_name"),
        "{e}"
    );
}

#[test]
fn bad_event_settings_name_the_key() {
    let s = AwsSettings::default();
    let e = EventBridgeSink::new(&events("products bus"), &s)
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "[events] in c360.toml: bus_name = \"products bus\" is neither an event bus name (1 to 256 of A-Z a-z 0-9 / . - _) nor an event bus ARN (arn:aws:events:REGION:ACCOUNT:event-bus/NAME): set bus_name to the bus's name or ARN (default \"default\")"
    );
    let mut ev = events("default");
    ev.source = "aws.c360".into();
    let e = EventBridgeSink::new(&ev, &s).unwrap_err().to_string();
    assert_eq!(
        e,
        "[events] in c360.toml: source = \"aws.c360\" starts with \"aws.\", which EventBridge reserves for AWS services: set source to your own, e.g. \"c360\" (the default) or \"com.example.c360\""
    );
    ev.source = "c360 scores".into();
    let e = EventBridgeSink::new(&ev, &s).unwrap_err().to_string();
    assert!(
        e.starts_with("[events] in c360.toml: source = \"c360 scores\" is not 1 to 256 of"),
        "{e}"
    );
    // A good one makes no call and plans one line.
    let sink = EventBridgeSink::new(&events("mesh-products"), &s).unwrap();
    assert_eq!(
        sink.plan(VERSION_PUBLISHED),
        ["eventbridge: PutEvents to bus mesh-products: source c360, detail-type Data Product Version Published"]
    );
}
