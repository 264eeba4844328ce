//! [`RunPlan`]: what a run will read, write and run (`c360 run --dry-run` prints it; a
//! run's lineage takes its model from it). The JSON is the same as in earlier releases:
//! the dry run adds each snapshot's `committed` state, the existing run, and (SageMaker)
//! the planner's choice next to the common default.

use chrono::NaiveDate;
use serde::{Deserialize, Deserializer, Serialize};

use super::job::GatesFile;
use super::ledger::{RunStatus, Step};
use super::prepare::{CloudPrep, Prepared};
use super::{PipelineError, Result};
use crate::features;
use crate::offline;
use crate::product;
use crate::source::Source;
use crate::transform::{self, planner::Plan, Backend};

/// The plan of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunPlan {
    pub job: String,
    pub run_id: String,
    pub as_of: NaiveDate,
    pub backend: Backend,
    pub source: String,
    pub store: String,
    pub model: ModelPlan,
    pub feature_sets: Vec<SetPlan>,
    pub transform_input: InputPlan,
    pub transform: TransformPlan,
    pub transform_output: String,
    pub product: ProductPlan,
    pub gates: GatesFile,
    /// Dry run only: the run's ledger when it exists (`null` when it does not).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub existing_run: Option<Option<ExistingRun>>,
}

/// The model a run scores with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelPlan {
    pub name: String,
    pub artifact: String,
    pub artifact_sha256: String,
    pub objective: String,
    /// How many input features.
    pub features: usize,
}

/// One feature set a run reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetPlan {
    pub name: String,
    pub version: u32,
    pub definition_hash: String,
    pub snapshot: String,
    /// Dry run only: the committed snapshot (`null` when none is).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub committed: Option<Option<CommittedSnapshot>>,
}

/// A committed feature snapshot, as the dry run sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommittedSnapshot {
    pub rows: u64,
    pub run_id: String,
    /// Whether it was built from the feature set's current definition.
    pub definition_matches: bool,
}

/// The run's existing ledger, as the dry run sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExistingRun {
    pub status: RunStatus,
    pub steps_done: Vec<Step>,
}

/// The transform input a run writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputPlan {
    pub prefix: String,
    pub parts: u32,
    pub format: String,
}

/// The batch transform's settings (SageMaker's `CreateTransformJob` names).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransformPlan {
    pub split_type: String,
    pub batch_strategy: String,
    pub max_payload_mb: u32,
    pub max_concurrent_transforms: u32,
    pub instance_count: u32,
    pub input_filter: String,
    pub join_source: String,
    pub output_filter: String,
    pub assemble_with: String,
    /// The SageMaker backend's resources.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sagemaker: Option<SageMakerPlan>,
    /// Dry run, SageMaker: the planner's choice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<SizedPlan>,
    /// Dry run, SageMaker: what the common default would do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_plan: Option<Plan>,
}

/// The SageMaker resources of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SageMakerPlan {
    pub model: String,
    pub creates_model: bool,
    pub output_kms_key_id: Option<String>,
    pub volume_kms_key_id: Option<String>,
    pub vpc: VpcPlan,
    pub network_isolation: bool,
    pub pins: PinsPlan,
}

/// VPC settings of the model containers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VpcPlan {
    pub subnets: Vec<String>,
    pub security_groups: Vec<String>,
}

/// What the job's `[transform]` pins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PinsPlan {
    pub instance_type: Option<String>,
    pub instance_count: Option<u32>,
    pub parts: Option<u32>,
    pub max_concurrent_transforms: Option<u32>,
    pub max_payload_mb: Option<u32>,
}

/// The planner's choice for the rows the dry run counted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SizedPlan {
    #[serde(flatten)]
    pub plan: Plan,
    pub rows: u64,
    /// Where the row count came from.
    pub rows_from: String,
    pub estimated_input_bytes: u64,
}

/// What a run publishes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProductPlan {
    pub name: String,
    pub partition: String,
    pub contract: String,
    pub latest: String,
    /// What the central catalog would do (`[catalog]`; empty without one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub catalog: Vec<String>,
    /// The events the run would send (`[events]`; empty without a bus).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<String>,
}

/// A field that is either absent (`None`) or present, `null` included (`Some(None)`).
fn present<'de, D, T>(d: D) -> std::result::Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// The planner's choice for `rows` rows of `bytes` CSV.
pub(super) fn cloud_plan(
    p: &Prepared,
    c: &CloudPrep,
    rows: u64,
    bytes: u64,
) -> Result<transform::planner::Plan> {
    let w = transform::planner::Workload {
        rows,
        bytes,
        model_bytes: c.model_bytes,
    };
    transform::planner::plan(&w, &c.planner, &c.pins, &c.prices).map_err(|e| {
        PipelineError::Definition(format!("{}: [transform]: {e}", p.job.file.display()))
    })
}

/// The plan a dry run shows: what exists already (the run's ledger, the committed
/// snapshots) and, for SageMaker, the planner's choice next to the common default.
pub(super) fn dry_run_plan(p: &Prepared) -> Result<RunPlan> {
    let mut plan = p.plan.clone();
    let spec = product::product_spec(&super::steps::scored_run(p));
    plan.product.catalog = p.mesh.catalog.plan_product(&spec, p.as_of);
    plan.product.events = p.mesh.events.plan(crate::mesh::VERSION_PUBLISHED);
    plan.product
        .events
        .extend(p.mesh.events.plan(crate::mesh::VERSION_REFUSED));
    plan.existing_run = Some(
        super::ledger::load_ledger(p.store.as_ref(), &p.job.name, &p.run_id)
            .ok()
            .flatten()
            .map(|l| ExistingRun {
                status: l.status,
                steps_done: l.steps_done(),
            }),
    );
    let mut known_rows: Option<(u64, &str)> = None;
    for (s, sp) in p.sets.iter().zip(plan.feature_sets.iter_mut()) {
        let prefix = offline::partition_prefix(&s.name, s.version, p.as_of);
        let committed = offline::read_manifest(p.store.as_ref(), &prefix)?;
        if let (Some(m), None) = (&committed, known_rows) {
            known_rows = Some((m.rows, "the committed feature snapshot"));
        }
        sp.committed = Some(committed.map(|m| CommittedSnapshot {
            rows: m.rows,
            definition_matches: m.definition_hash == s.hash,
            run_id: m.run_id,
        }));
    }
    if let Some(c) = &p.cloud {
        let (rows, from) = match known_rows {
            Some(k) => k,
            None => {
                let src = Source::open(&p.source_uri).map_err(features::FeatureError::from)?;
                let n = src
                    .row_count(crate::source::table_spec("customers").ok_or_else(|| {
                        PipelineError::Definition("the contract has no customers table".into())
                    })?)
                    .map_err(features::FeatureError::from)?;
                (n, "the customers table (one row per customer)")
            }
        };
        let n_features = p.spec.features.len() as u64;
        // CSV width: an id and ~10 characters per numeric feature.
        let bytes = rows * (12 + 10 * n_features);
        let chosen = cloud_plan(p, c, rows, bytes)?;
        let w = transform::planner::Workload {
            rows,
            bytes,
            model_bytes: c.model_bytes,
        };
        let default = transform::planner::baseline(&w, &c.planner, &c.prices);
        plan.transform_input.parts = chosen.parts;
        plan.transform.plan = Some(SizedPlan {
            plan: chosen,
            rows,
            rows_from: from.to_string(),
            estimated_input_bytes: bytes,
        });
        plan.transform.default_plan = Some(default);
    }
    Ok(plan)
}
