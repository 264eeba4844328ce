//! Product events on Amazon EventBridge: [`EventBridgeSink`] puts one `PutEvents` entry per
//! [`ProductEvent`] on the project's event bus (`[events] bus_name`, `source`), retries what
//! EventBridge calls retryable, and never fails the publish that sent it: what became of
//! the event is an [`EventRecord`] for the run ledger, a `tracing` line, and the
//! process-wide counters [`counts`] that `/metrics` shows as `c360_events_sent_total` and
//! `c360_events_failed_total` (by `detail_type`).
//!
//! Retries, and how long a send can take:
//! - a failed request (throttled, 5xx, connection refused) is retried inside the SDK with
//!   the project's retry policy (`[aws] max_attempts`, exponential backoff with jitter);
//! - an entry EventBridge refuses (`FailedEntryCount` > 0 with an `ErrorCode`) is put again,
//!   at most [`MAX_CALLS`] `PutEvents` calls in all, after waits of 200 ms, 400 ms, 800 ms
//!   (full jitter: a random part of each), unless its code is one EventBridge documents as
//!   not retryable (`InvalidArgument`, `MalformedDetail`, `AccessDeniedException`,
//!   `NotAuthorizedForSourceException`, ...);
//! - the whole send, every call and wait included, is cut at [`SEND_DEADLINE`] (15 s).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use aws_sdk_eventbridge::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_eventbridge::primitives::DateTime;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use aws_sdk_eventbridge::Client;
use rand::Rng;
use tokio::sync::OnceCell;

use super::{EventRecord, EventSettings, MeshError, ProductEvent, Result};
use crate::aws::AwsSettings;

/// The largest `PutEvents` entry EventBridge takes: 256 KiB, counted as EventBridge counts
/// it ([`entry_size`]).
pub const MAX_ENTRY_BYTES: usize = 256 * 1024;
/// `PutEvents` calls per event at most: the first, and up to three puts of an entry
/// EventBridge refused with a retryable code.
pub const MAX_CALLS: u32 = 4;
/// The longest one [`EventBridgeSink::send`] takes, every call (with the SDK's own
/// retries) and wait included; past it the event is recorded as not delivered.
pub const SEND_DEADLINE: Duration = Duration::from_secs(15);
/// The wait before the second call; it doubles before each further call (full jitter).
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// The longest wait between two calls.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// Longest bus name (`Name` of an event bus) and source, in characters.
const MAX_NAME: usize = 256;

/// Entry error codes EventBridge documents as not retryable: putting the entry again
/// cannot succeed.
const PERMANENT_CODES: &[&str] = &[
    "AccessDeniedException",
    "InvalidAccountIdException",
    "InvalidArgument",
    "MalformedDetail",
    "RedactionFailure",
    "NotAuthorizedForSourceException",
    "NotAuthorizedForDetailTypeException",
];

/// How the sink retries refused entries (fixed for the product; short in unit tests).
#[derive(Debug, Clone, Copy)]
struct RetryPolicy {
    calls: u32,
    first: Duration,
    max: Duration,
    deadline: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            calls: MAX_CALLS,
            first: FIRST_BACKOFF,
            max: MAX_BACKOFF,
            deadline: SEND_DEADLINE,
        }
    }
}

impl RetryPolicy {
    /// The wait after the `call`-th call (1-based): a random duration up to
    /// `first * 2^(call-1)`, capped at `max` (full jitter).
    fn backoff(&self, call: u32) -> Duration {
        let ceiling = self
            .first
            .saturating_mul(1u32 << call.saturating_sub(1).min(16))
            .min(self.max);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::thread_rng().gen_range(0..=nanos))
    }
}

/// An EventBridge event bus that product events go to (`[events] kind = "eventbridge"`).
///
/// Cheap to create: the client is built at the first [`EventSink::send`](super::EventSink::send)
/// (and again after a failure to build it, e.g. no region).
pub struct EventBridgeSink {
    bus: String,
    source: String,
    aws: Arc<AwsSettings>,
    client: Arc<OnceCell<Client>>,
    retry: RetryPolicy,
}

impl fmt::Debug for EventBridgeSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The settings may hold credentials: only what names the bus.
        f.debug_struct("EventBridgeSink")
            .field("bus", &self.bus)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl EventBridgeSink {
    /// A sink over `[events]` and `[aws]`. Makes no call.
    ///
    /// Errors: [`MeshError::Settings`] naming `bus_name` when it is neither an event bus
    /// name (1 to 256 of `A-Z a-z 0-9 / . - _`) nor an event bus ARN
    /// (`arn:aws:events:REGION:ACCOUNT:event-bus/NAME`), or `source` when it is not 1 to
    /// 256 of `A-Z a-z 0-9 . - _` or starts with `aws.` (reserved for AWS services).
    pub fn new(settings: &EventSettings, aws: &AwsSettings) -> Result<EventBridgeSink> {
        check_bus(&settings.bus_name)?;
        check_source(&settings.source)?;
        Ok(EventBridgeSink {
            bus: settings.bus_name.clone(),
            source: settings.source.clone(),
            aws: Arc::new(aws.clone()),
            client: Arc::new(OnceCell::new()),
            retry: RetryPolicy::default(),
        })
    }

    /// The bus, as configured (name or ARN).
    pub fn bus(&self) -> &str {
        &self.bus
    }

    /// The events' `source`.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The `PutEvents` entry of `event`, and its size as EventBridge counts it.
    fn entry(&self, event: &ProductEvent) -> (PutEventsRequestEntry, usize) {
        let detail = event.detail().to_string();
        let size = entry_size(&self.source, event.detail_type(), &detail, &[]);
        let entry = PutEventsRequestEntry::builder()
            .time(DateTime::from(SystemTime::now()))
            .source(&self.source)
            .detail_type(event.detail_type())
            .detail(detail)
            .event_bus_name(&self.bus)
            .build();
        (entry, size)
    }

    fn record(&self, detail_type: &str, d: Delivery) -> EventRecord {
        EventRecord {
            detail_type: detail_type.to_string(),
            bus: self.bus.clone(),
            event_id: d.event_id,
            attempts: d.calls,
            error: d.error,
        }
    }
}

/// What one send came to.
#[derive(Debug, Default)]
struct Delivery {
    event_id: Option<String>,
    calls: u32,
    error: Option<String>,
}

impl super::EventSink for EventBridgeSink {
    fn kind(&self) -> &'static str {
        "eventbridge"
    }

    /// Puts the event on the bus (see the module's notes on retries and the deadline).
    /// The record's `attempts` counts `PutEvents` calls (0 when the event was refused
    /// before any call: an entry over [`MAX_ENTRY_BYTES`]); `error` says why it was not
    /// delivered and how to fix it.
    fn send(&self, event: &ProductEvent) -> Option<EventRecord> {
        let detail_type = event.detail_type();
        let (entry, size) = self.entry(event);
        let delivery = if size > MAX_ENTRY_BYTES {
            Delivery {
                error: Some(format!(
                    "EventBridge PutEvents on event bus {}: the {detail_type:?} entry is {size} bytes, over EventBridge's limit of {MAX_ENTRY_BYTES} bytes (256 KiB); not sent: keep the event's detail (score statistics, reason) smaller; the version stays as it is",
                    self.bus
                )),
                ..Delivery::default()
            }
        } else {
            let (aws, cell, bus, retry) = (
                self.aws.clone(),
                self.client.clone(),
                self.bus.clone(),
                self.retry,
            );
            crate::aws::block_on(async move {
                let client = match cell
                    .get_or_try_init(|| crate::aws::eventbridge_client(&aws))
                    .await
                {
                    Ok(c) => c.clone(),
                    Err(e) => {
                        return Delivery {
                            error: Some(format!(
                                "EventBridge PutEvents on event bus {bus}: {e}; the version stays as it is"
                            )),
                            ..Delivery::default()
                        }
                    }
                };
                put(&client, entry, &bus, retry).await
            })
        };
        count(detail_type, delivery.error.is_none());
        let record = self.record(detail_type, delivery);
        match &record.error {
            None => tracing::info!(
                bus = %record.bus,
                detail_type,
                event_id = record.event_id.as_deref().unwrap_or(""),
                attempts = record.attempts,
                "product event sent"
            ),
            Some(e) => tracing::warn!(
                bus = %record.bus,
                detail_type,
                attempts = record.attempts,
                error = %e,
                "product event not delivered"
            ),
        }
        Some(record)
    }

    fn plan(&self, detail_type: &str) -> Vec<String> {
        vec![format!(
            "eventbridge: PutEvents to bus {}: source {}, detail-type {detail_type}",
            self.bus, self.source
        )]
    }
}

/// Puts `entry` until it is taken, refused for good, out of calls, or out of time.
async fn put(
    client: &Client,
    entry: PutEventsRequestEntry,
    bus: &str,
    retry: RetryPolicy,
) -> Delivery {
    let started = Instant::now();
    let mut calls = 0u32;
    let mut last_error: Option<String> = None;
    let attempt = async {
        loop {
            calls += 1;
            let out = match client.put_events().entries(entry.clone()).send().await {
                Ok(out) => out,
                Err(e) => return Err(request_error(&e, bus)),
            };
            let first = out.entries().first();
            match first.and_then(|r| r.error_code()) {
                None if out.failed_entry_count() == 0 => {
                    return match first.and_then(|r| r.event_id()) {
                        Some(id) => Ok(id.to_string()),
                        None => Err(format!(
                            "EventBridge PutEvents on event bus {bus}: the answer has no event id for the entry (FailedEntryCount 0); the event may or may not be on the bus"
                        )),
                    };
                }
                code => {
                    let code = code.unwrap_or("(no ErrorCode)").to_string();
                    let message = first.and_then(|r| r.error_message()).unwrap_or("");
                    let text = format!(
                        "EventBridge PutEvents on event bus {bus} refused the entry: {code}: {message}{}",
                        entry_hint(&code, bus)
                    );
                    if PERMANENT_CODES.contains(&code.as_str()) || calls >= retry.calls {
                        return Err(text);
                    }
                    let wait = retry.backoff(calls);
                    if started.elapsed() + wait > retry.deadline {
                        return Err(text);
                    }
                    tracing::debug!(bus, code = %code, call = calls, "PutEvents entry refused; putting it again");
                    last_error = Some(text);
                    tokio::time::sleep(wait).await;
                }
            }
        }
    };
    let result = tokio::time::timeout(retry.deadline, attempt).await;
    let (event_id, error) = match result {
        Ok(Ok(id)) => (Some(id), None),
        Ok(Err(e)) => (None, Some(e)),
        Err(_) => (
            None,
            Some(format!(
                "EventBridge PutEvents on event bus {bus}: no answer within {} s{}; check [aws] events_endpoint_url (or endpoint_url, AWS_ENDPOINT_URL_EVENTBRIDGE) and the network path to it",
                retry.deadline.as_secs_f64(),
                last_error.map(|e| format!(" (last: {e})")).unwrap_or_default()
            )),
        ),
    };
    Delivery {
        event_id,
        calls,
        error: error.map(|e| {
            format!(
                "{e} (after {calls} PutEvents call{}); the version stays as it is",
                if calls == 1 { "" } else { "s" }
            )
        }),
    }
}

/// A failed request (after the SDK's retries), with what to do about it.
fn request_error<E, R>(e: &SdkError<E, R>, bus: &str) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug,
{
    let hint = match e.code() {
        Some("ResourceNotFoundException") => format!(
            "; create the bus {bus} (aws events create-event-bus --name NAME) or set [events] bus_name to a bus that exists in this account and region"
        ),
        Some(c) if c.starts_with("AccessDenied") || c == "UnrecognizedClientException" => {
            format!("; allow events:PutEvents on the bus {bus} to the role c360 runs as")
        }
        _ if matches!(
            e,
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_)
        ) =>
        {
            "; check [aws] events_endpoint_url (or endpoint_url, AWS_ENDPOINT_URL_EVENTBRIDGE) and the network path to it".into()
        }
        _ => String::new(),
    };
    MeshError::Aws {
        service: "EventBridge",
        operation: "PutEvents",
        resource: format!("event bus {bus}"),
        message: format!("{}{hint}", crate::aws::error_text(e)),
    }
    .to_string()
}

/// What to do about an entry EventBridge refused with `code`.
fn entry_hint(code: &str, bus: &str) -> String {
    match code {
        "NotAuthorizedForSourceException" | "NotAuthorizedForDetailTypeException"
        | "AccessDeniedException" => format!(
            "; allow events:PutEvents on the bus {bus} for this source and detail-type (events:source / events:detail-type conditions) to the role c360 runs as, or set [events] source"
        ),
        "InvalidArgument" | "MalformedDetail" => {
            "; this is a bug in c360's event: report it with this message".into()
        }
        _ => String::new(),
    }
}

/// The size of a `PutEvents` entry as EventBridge counts it against [`MAX_ENTRY_BYTES`]:
/// 14 bytes for `Time`, plus the UTF-8 bytes of `Source`, `DetailType`, `Detail` and each
/// of `Resources` (the bus name does not count).
pub fn entry_size(source: &str, detail_type: &str, detail: &str, resources: &[&str]) -> usize {
    14 + source.len()
        + detail_type.len()
        + detail.len()
        + resources.iter().map(|r| r.len()).sum::<usize>()
}

fn name_chars(s: &str, extra: &[u8]) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b) || extra.contains(&b))
}

/// `arn:PARTITION:events:REGION:ACCOUNT:event-bus/NAME`.
fn is_bus_arn(s: &str) -> bool {
    let p: Vec<&str> = s.splitn(6, ':').collect();
    p.len() == 6
        && p[0] == "arn"
        && p[1].starts_with("aws")
        && p[2] == "events"
        && !p[3].is_empty()
        && p[3]
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && p[4].len() == 12
        && p[4].bytes().all(|b| b.is_ascii_digit())
        && p[5]
            .strip_prefix("event-bus/")
            .is_some_and(|n| name_chars(n, b"/"))
}

/// At most 80 characters of a bad value, quoted, for a message.
fn shown(s: &str) -> String {
    let cut: String = s.chars().take(80).collect();
    if cut.len() < s.len() {
        format!("{cut:?}... ({} characters)", s.chars().count())
    } else {
        format!("{cut:?}")
    }
}

fn check_bus(bus: &str) -> Result<()> {
    if name_chars(bus, b"/") || is_bus_arn(bus) {
        return Ok(());
    }
    Err(MeshError::Settings {
        section: "events",
        message: format!(
            "bus_name = {} is neither an event bus name (1 to {MAX_NAME} of A-Z a-z 0-9 / . - _) nor an event bus ARN (arn:aws:events:REGION:ACCOUNT:event-bus/NAME): set bus_name to the bus's name or ARN (default \"default\")",
            shown(bus)
        ),
    })
}

fn check_source(source: &str) -> Result<()> {
    let reason = if !name_chars(source, b"") {
        format!("is not 1 to {MAX_NAME} of A-Z a-z 0-9 . - _")
    } else if source.to_ascii_lowercase().starts_with("aws.") {
        "starts with \"aws.\", which EventBridge reserves for AWS services".to_string()
    } else {
        return Ok(());
    };
    Err(MeshError::Settings {
        section: "events",
        message: format!(
            "source = {} {reason}: set source to your own, e.g. \"c360\" (the default) or \"com.example.c360\"",
            shown(source)
        ),
    })
}

/// Events sent and not delivered by this process, for one `detail-type`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventCounts {
    /// Delivered (EventBridge gave an event id).
    pub sent: u64,
    /// Not delivered after every attempt (or refused before any call).
    pub failed: u64,
}

static COUNTS: Mutex<BTreeMap<&'static str, EventCounts>> = Mutex::new(BTreeMap::new());

fn count(detail_type: &'static str, delivered: bool) {
    // A panic elsewhere while holding the lock leaves plain integers: still usable.
    let mut m = COUNTS.lock().unwrap_or_else(|e| e.into_inner());
    let c = m.entry(detail_type).or_default();
    if delivered {
        c.sent += 1;
    } else {
        c.failed += 1;
    }
}

/// Every product event this process sent through an [`EventBridgeSink`], by `detail-type`
/// (what `/metrics` shows as `c360_events_sent_total` and `c360_events_failed_total`).
pub fn counts() -> BTreeMap<&'static str, EventCounts> {
    COUNTS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

#[cfg(test)]
mod tests;
