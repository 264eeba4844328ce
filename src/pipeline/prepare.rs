//! Resolving a run before it starts: the job, its model and feature sets, dates, the
//! store and source, the SageMaker settings, the run id (a hash of everything the output
//! depends on) and the [`RunPlan`].

use std::path::Path;

use chrono::{NaiveDate, Utc};
use sha2::{Digest, Sha256};

use super::job::{self, Job};
use super::plan::{
    InputPlan, ModelPlan, PinsPlan, ProductPlan, RunPlan, SageMakerPlan, SetPlan, TransformPlan,
    VpcPlan,
};
use super::{PipelineError, Result};
use crate::features::{self, FeatureSet};
use crate::model::{self, LoadedModel};
use crate::names::{SageMakerName, StoreUri};
use crate::offline;
use crate::product;
use crate::project::Project;
use crate::source::Source;
use crate::store::{self, layout, DynStore};
use crate::transform::{self, Backend};

/// How to run.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Score as of this date instead of the job's rule.
    pub as_of: Option<NaiveDate>,
    /// Override the job's backend.
    pub backend: Option<Backend>,
    /// Return the plan and touch nothing.
    pub dry_run: bool,
    /// The Customer 360 source (default: the project's).
    pub source: Option<String>,
    /// The store (default: the project's).
    pub store: Option<String>,
    /// "Today" for the as-of rule (default: the UTC date now).
    pub today: Option<NaiveDate>,
    /// SageMaker backend: called once the transform job exists (tests play SageMaker's data
    /// plane with it; see [`transform::sagemaker::DataPlaneHook`]).
    pub data_plane: Option<transform::sagemaker::DataPlaneHook>,
    /// Score even when the as-of date is after the sources' last event (`--allow-as-of-past-data`).
    pub allow_as_of_past_data: bool,
}

/// Everything a run needs, resolved.
pub struct Prepared {
    pub job: Job,
    pub model: LoadedModel,
    /// The model's spec (a job's model always has one).
    pub spec: model::ModelSpec,
    pub model_name: String,
    pub sets: Vec<FeatureSet>,
    pub as_of: NaiveDate,
    pub run_id: String,
    pub backend: Backend,
    pub source_uri: String,
    pub store: DynStore,
    pub plan: RunPlan,
    /// The SageMaker backend's settings (None for the local backend).
    pub cloud: Option<CloudPrep>,
    pub data_plane: Option<transform::sagemaker::DataPlaneHook>,
    /// The central catalog and the event bus (`[catalog]`, `[events]`).
    pub mesh: std::sync::Arc<crate::mesh::Mesh>,
}

/// What the SageMaker backend needs, resolved from `c360.toml`, the job and the model.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
pub struct CloudPrep {
    pub settings: crate::aws::AwsSettings,
    pub model: transform::sagemaker::ModelTarget,
    pub prices: transform::planner::PriceTable,
    pub planner: transform::planner::PlannerSettings,
    pub pins: transform::planner::Pins,
    pub model_bytes: u64,
}

fn prepare_cloud(
    project: &Project,
    job: &Job,
    model_name: &str,
    spec: &model::ModelSpec,
    artifact: &Path,
    artifact_hash: &str,
    store_uri: &str,
) -> Result<CloudPrep> {
    use transform::planner;
    use transform::sagemaker::ModelTarget;
    let def = |m: String| PipelineError::Definition(m);
    if !StoreUri::is_s3_uri(store_uri) {
        return Err(def(format!(
            "backend sagemaker: the store is {store_uri}, but SageMaker reads its input from and writes its output to S3: set [store] uri = \"s3://bucket/prefix\" (or C360_STORE)"
        )));
    }
    let settings = (*crate::aws::settings()).clone();
    let sm = spec.sagemaker.clone().ok_or_else(|| {
        def(format!(
            "backend sagemaker: models/{model_name}/model.toml has no [sagemaker] section (image + model_data, or model_name of an existing model)"
        ))
    })?;
    let target = match sm {
        model::SageMakerModel::Create { image, model_data } => {
            let errs = settings.validate_for_sagemaker(true);
            if let Some(e) = errs.first() {
                return Err(def(format!("{}: {}", e.key, e.reason)));
            }
            let content = hash8(&[&image, &model_data, artifact_hash]);
            let name = SageMakerName::derive("c360", &[model_name, &content]);
            ModelTarget::Create {
                name,
                image,
                model_data,
                role_arn: settings.sagemaker.role_arn.clone().unwrap_or_default(),
                subnets: settings.sagemaker.subnets.clone(),
                security_groups: settings.sagemaker.security_groups.clone(),
                network_isolation: settings.sagemaker.network_isolation,
            }
        }
        model::SageMakerModel::Existing { model_name } => ModelTarget::Existing(model_name),
    };
    let prices = planner::load_prices(project.prices_file().as_deref())
        .map_err(|e| def(format!("price table: {e}")))?;
    let ps = planner::PlannerSettings::from_config(&settings.sagemaker);
    let pins = job.transform.pins.clone();
    let model_bytes = std::fs::metadata(artifact).map(|m| m.len()).unwrap_or(0);
    Ok(CloudPrep {
        settings,
        model: target,
        prices,
        planner: ps,
        pins,
        model_bytes,
    })
}

/// The first 8 hex digits of the SHA-256 of `parts` (each followed by a zero byte).
pub(super) fn hash8(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    hex::encode(&h.finalize()[..4])
}

/// `sha256:<hex>` of a file (empty when it cannot be read).
pub(super) fn file_sha256(path: &Path) -> String {
    crate::project::read_bounded(path, crate::project::MAX_MODEL_BYTES)
        .map(|b| format!("sha256:{}", hex::encode(Sha256::digest(&b))))
        .unwrap_or_default()
}

/// Loads the job, its model and feature sets, and resolves dates, paths and the run id.
pub fn prepare(project: &Project, job_name: &str, opts: &RunOptions) -> Result<Prepared> {
    let path = project.jobs_dir().join(format!("{job_name}.toml"));
    if !path.is_file() {
        let (jobs, _) = job::load_all(&project.jobs_dir());
        return Err(PipelineError::Definition(format!(
            "no job {job_name} ({} not found; jobs: {})",
            path.display(),
            jobs.iter()
                .map(|j| j.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let job = job::load(&path).map_err(|e| {
        PipelineError::Definition(
            e.iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        )
    })?;
    let model_dir = project.models_dir().join(&job.model);
    let model = model::load(&model_dir)
        .map_err(|e| PipelineError::Definition(format!("model {}: {e}", job.model)))?;
    let spec = model.spec.clone().ok_or_else(|| {
        PipelineError::Definition(format!(
            "model {}: a job's model needs a model.toml",
            job.model
        ))
    })?;
    let mut sets = Vec::new();
    for (name, version) in &spec.feature_sets {
        let s = features::find_set(&project.features_dir(), name)?;
        if s.version != *version {
            return Err(PipelineError::Definition(format!(
                "model {} was trained on {name} v{version}, but features/{name}.toml is v{}",
                job.model, s.version
            )));
        }
        sets.push(s);
    }
    check_columns(&job, &spec.features, &sets)?;
    let backend: Backend = match opts.backend {
        Some(b) => b,
        None => job
            .backend
            .parse()
            .map_err(|e: transform::UnknownBackend| PipelineError::Definition(e.to_string()))?,
    };
    let today = opts.today.unwrap_or_else(|| Utc::now().date_naive());
    let as_of = opts.as_of.unwrap_or_else(|| job.as_of.resolve(today));
    let source_uri = opts.source.clone().unwrap_or_else(|| project.source_uri());
    let store_uri = opts.store.clone().unwrap_or_else(|| project.store_uri());
    let st = store::open(&store_uri)?;
    let mesh = std::sync::Arc::new(crate::mesh::Mesh::open(&project.config, &st.uri())?);
    // A column the latest version of this major has and this job's product would drop:
    // refused before any work (the publish checks the types too).
    let planned: Vec<offline::ColumnInfo> = product::standard_columns(&job.product)
        .into_iter()
        .map(|name| offline::ColumnInfo {
            name,
            dtype: String::new(),
        })
        .collect();
    if let Some(e) =
        product::breaking_change(st.as_ref(), &job.product.name, job.product.major, &planned)?
    {
        return Err(PipelineError::Definition(format!(
            "{}: [product]: {e}",
            job.file.display()
        )));
    }
    // Source fingerprints are file metadata: cheap, and part of the run's identity.
    let src = Source::open(&source_uri).map_err(features::FeatureError::from)?;
    let mut fps = Vec::new();
    let mut tables: Vec<&str> = sets.iter().flat_map(|s| s.tables()).collect();
    tables.sort();
    tables.dedup();
    for t in &tables {
        if let Some(spec) = crate::source::table_spec(t) {
            let loc = src.locate(spec).map_err(features::FeatureError::from)?;
            fps.push(src.fingerprint(&loc));
        }
    }
    check_data_reach(
        &src,
        &source_uri,
        &tables,
        as_of,
        opts.allow_as_of_past_data,
        &job,
    )?;
    let artifact_hash = file_sha256(&model.artifact);
    let cloud = if backend == Backend::SageMaker {
        Some(prepare_cloud(
            project,
            &job,
            &job.model,
            &spec,
            &model.artifact,
            &artifact_hash,
            &st.uri(),
        )?)
    } else {
        None
    };
    let mut parts: Vec<&str> = vec![&job.hash, &artifact_hash];
    let set_hashes: Vec<String> = sets.iter().map(|s| s.hash.clone()).collect();
    parts.extend(set_hashes.iter().map(|s| s.as_str()));
    parts.extend(fps.iter().map(|s| s.as_str()));
    let model_toml =
        crate::project::read_definition(&model_dir.join(model::SPEC_FILE)).unwrap_or_default();
    parts.push(&model_toml);
    let run_id = format!("{as_of}-{}", hash8(&parts));
    let n_parts = job.transform.pins.parts.unwrap_or(4);
    let plan = RunPlan {
        job: job.name.to_string(),
        run_id: run_id.clone(),
        as_of,
        backend,
        source: source_uri.clone(),
        store: st.uri(),
        model: ModelPlan {
            name: job.model.to_string(),
            artifact: model.artifact.display().to_string(),
            artifact_sha256: artifact_hash.clone(),
            objective: format!("{:?}", spec.objective),
            features: spec.features.len(),
        },
        feature_sets: sets
            .iter()
            .map(|s| SetPlan {
                name: s.name.to_string(),
                version: s.version,
                definition_hash: s.hash.clone(),
                snapshot: offline::partition_prefix(&s.name, s.version, as_of),
                committed: None,
            })
            .collect(),
        transform_input: InputPlan {
            prefix: layout::transform_input(&job.name, &run_id),
            parts: n_parts,
            format: "text/csv, no header, customer_id first".into(),
        },
        transform: transform_settings(&job, cloud.as_ref()),
        transform_output: layout::transform_output(&job.name, &run_id),
        product: ProductPlan {
            name: job.product.name.to_string(),
            partition: product::partition_prefix(&job.product.name, job.product.major, as_of),
            contract: layout::product_contract(&job.product.name),
            latest: layout::product_latest(&job.product.name),
            catalog: vec![],
            events: vec![],
        },
        gates: job.gates.clone(),
        existing_run: None,
    };
    Ok(Prepared {
        model_name: job.model.to_string(),
        spec,
        job,
        model,
        sets,
        as_of,
        run_id,
        backend,
        source_uri,
        store: st,
        plan,
        cloud,
        data_plane: opts.data_plane.clone(),
        mesh,
    })
}

fn transform_settings(job: &Job, cloud: Option<&CloudPrep>) -> TransformPlan {
    let t = &job.transform;
    TransformPlan {
        split_type: "Line".into(),
        batch_strategy: "MultiRecord".into(),
        max_payload_mb: t.pins.max_payload_mb.unwrap_or(6),
        max_concurrent_transforms: t.pins.max_concurrent_transforms.unwrap_or(0),
        instance_count: t.pins.instance_count.unwrap_or(1),
        input_filter: "$[1:]".into(),
        join_source: "Input".into(),
        output_filter: "$[0,-1]".into(),
        assemble_with: "Line".into(),
        sagemaker: cloud.map(|c| SageMakerPlan {
            model: c.model.name().to_string(),
            creates_model: matches!(c.model, transform::sagemaker::ModelTarget::Create { .. }),
            output_kms_key_id: c.settings.output_kms_key().map(str::to_string),
            volume_kms_key_id: c.settings.volume_kms_key().map(str::to_string),
            vpc: VpcPlan {
                subnets: c.settings.sagemaker.subnets.clone(),
                security_groups: c.settings.sagemaker.security_groups.clone(),
            },
            network_isolation: c.settings.sagemaker.network_isolation,
            pins: PinsPlan {
                instance_type: c.pins.instance_type.clone(),
                instance_count: c.pins.instance_count,
                parts: c.pins.parts,
                max_concurrent_transforms: c.pins.max_concurrent_transforms,
                max_payload_mb: c.pins.max_payload_mb,
            },
        }),
        plan: None,
        default_plan: None,
    }
}

/// [`features::check_data_reach`] for a run: the product's `latest.json` never moves
/// backwards, so a run past the data would also strand it.
fn check_data_reach(
    src: &Source,
    source_uri: &str,
    tables: &[&str],
    as_of: NaiveDate,
    allow_past_data: bool,
    job: &Job,
) -> Result<()> {
    let why = format!(
        ", and product {}'s latest version could then never move back to a real date",
        job.product.name
    );
    features::check_data_reach(src, source_uri, tables, as_of, allow_past_data, &why)
        .map_err(PipelineError::AsOf)
}

/// Checks that every model input and included column exists in the model's sets.
fn check_columns(job: &Job, model_features: &[String], sets: &[FeatureSet]) -> Result<()> {
    let have = |c: &str| sets.iter().any(|s| s.outputs().iter().any(|f| f.name == c));
    for c in model_features {
        if !have(c) {
            return Err(PipelineError::Definition(format!(
                "model {}: feature {c} is not an output of its feature sets ({})",
                job.model,
                sets.iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    if let Some((i, reason)) = crate::features::lineage::pii_includes(&job.product.include, sets)
        .into_iter()
        .next()
    {
        return Err(PipelineError::Definition(format!(
            "{}: product.include[{i}]: {reason}",
            job.file.display()
        )));
    }
    for c in &job.product.include {
        if !have(c) {
            return Err(PipelineError::Definition(format!(
                "{}: product.include names {c}, which no feature set of the model outputs",
                job.file.display()
            )));
        }
    }
    Ok(())
}
