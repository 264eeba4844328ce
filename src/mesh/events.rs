//! Product events on Amazon EventBridge: [`EventBridgeSink`]. Not built yet.

use super::{EventSettings, MeshError, Result};
use crate::aws::AwsSettings;

/// An EventBridge bus.
#[derive(Debug)]
pub struct EventBridgeSink {}

impl EventBridgeSink {
    /// A sink over `[events]` and `[aws]`. Makes no call.
    pub fn new(_settings: &EventSettings, _aws: &AwsSettings) -> Result<EventBridgeSink> {
        Err(MeshError::Settings {
            section: "events",
            message: "kind = \"eventbridge\" is not built yet".into(),
        })
    }
}

impl super::EventSink for EventBridgeSink {
    fn kind(&self) -> &'static str {
        "eventbridge"
    }
    fn send(&self, _: &super::ProductEvent) -> Option<super::EventRecord> {
        None
    }
    fn plan(&self, _: &str) -> Vec<String> {
        vec![]
    }
}
