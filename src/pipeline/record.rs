//! What each step of a run records in its ledger entry ([`StepDetail`]): the snapshots
//! built, the transform input written (with the SageMaker plan), the transform job, the
//! score statistics the gates computed, and what was published. Field names are those of
//! `run.json` in every earlier release.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use super::ledger::Step;
use crate::transform::planner::Plan;
use crate::transform::Backend;

/// A step's detail, by step.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum StepDetail {
    /// Nothing recorded (the step runs, or failed).
    #[default]
    None,
    /// Feature set name -> its snapshot.
    Features(BTreeMap<String, SnapshotDetail>),
    TransformInput(TransformInputDetail),
    Transform(TransformDetail),
    Gates(GateStats),
    Publish(PublishSummary),
}

impl StepDetail {
    /// Reads the detail of step `step` from its JSON (`null` is [`StepDetail::None`]).
    pub fn from_json(step: Step, v: Value) -> Result<StepDetail, serde_json::Error> {
        if v.is_null() {
            return Ok(StepDetail::None);
        }
        Ok(match step {
            Step::Features => StepDetail::Features(serde_json::from_value(v)?),
            Step::TransformInput => StepDetail::TransformInput(serde_json::from_value(v)?),
            Step::Transform => StepDetail::Transform(serde_json::from_value(v)?),
            Step::Gates => StepDetail::Gates(serde_json::from_value(v)?),
            Step::Publish => StepDetail::Publish(serde_json::from_value(v)?),
        })
    }

    /// The detail as `run.json` has it.
    pub fn to_json(&self) -> Value {
        let v = match self {
            StepDetail::None => return Value::Null,
            StepDetail::Features(d) => serde_json::to_value(d),
            StepDetail::TransformInput(d) => serde_json::to_value(d),
            StepDetail::Transform(d) => serde_json::to_value(d),
            StepDetail::Gates(d) => serde_json::to_value(d),
            StepDetail::Publish(d) => serde_json::to_value(d),
        };
        // Plain data (strings, numbers, maps with string keys): encoding cannot fail.
        v.unwrap_or(Value::Null)
    }
}

/// One feature snapshot the `features` step built or reused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotDetail {
    pub snapshot: String,
    pub rows: u64,
    pub reused: bool,
    pub run_id: String,
    pub definition_hash: String,
    #[serde(default)]
    pub source_fingerprints: BTreeMap<String, String>,
    /// Why the central catalog could not register the snapshot, if it could not (the run
    /// goes on: the product is what consumers read; `c360 catalog sync` registers it later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_error: Option<String>,
}

/// One input part written by the `transform_input` step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputFile {
    pub key: String,
    pub rows: u64,
    pub bytes: u64,
}

/// What the `transform_input` step wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransformInputDetail {
    pub prefix: String,
    pub files: Vec<InputFile>,
    /// The SageMaker plan sized from the real rows (`null` for the local backend).
    #[serde(default)]
    pub plan: Option<Plan>,
}

/// What the `transform` step ran. The SageMaker-only fields are absent for the local
/// backend, `requests` absent for SageMaker (as in earlier releases).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransformDetail {
    pub backend: Backend,
    pub job_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_count: Option<u32>,
    pub max_concurrent_transforms: u32,
    #[serde(default)]
    pub max_payload_mb: Option<u32>,
    pub objects: u64,
    pub records: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<u64>,
    pub seconds: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_cost_usd: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_seconds: Option<f64>,
}

/// The score statistics the gates computed (also the product's `score_statistics`).
/// A statistic that is not a number (`NaN`) is written, and read back, as `null`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateStats {
    pub rows: u64,
    #[serde(deserialize_with = "nan_if_null")]
    pub mean: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub std: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub min: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub p10: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub p50: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub p90: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub max: f64,
    pub distinct: u64,
    /// The mean score of the previous published version, when there was one.
    pub previous_mean: Option<f64>,
    /// Risk band -> customers.
    #[serde(default)]
    pub risk_bands: BTreeMap<String, u64>,
}

fn nan_if_null<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// What the `publish` step published (also the ledger's `product`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublishSummary {
    pub product: String,
    pub partition: String,
    pub rows: u64,
    pub latest_moved: bool,
    pub score_statistics: GateStats,
    /// Why a partition this run had committed before was published again, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redone: Option<String>,
    /// What the central catalog (Glue) registered: database, table, partition location.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog: Option<Box<crate::mesh::CatalogRecord>>,
    /// The product event: delivered (its id) or not (why; the version stays published).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<Box<crate::mesh::EventRecord>>,
}
