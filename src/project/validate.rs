//! `Project::validate_all`: every check that needs no data — `c360.toml` (`[service]` as
//! `c360 serve` takes it, the planner's price table), every feature set, model and job, and
//! the checks across them (a model's feature sets and columns, a job's model, PII in a
//! product, pinned instance types). `c360 validate` prints it; [`check_job`] is the part
//! about one job, for `pipeline::prepare`.

use std::path::Path;

use crate::diagnostic::{sorted_entries, Diagnostic};
use crate::features::{self, FeatureSet};
use crate::model::{self, ModelError, ModelSpec};
use crate::pipeline::job::{self, Job};
use crate::transform::planner::{self, PriceTable};

use super::Project;

/// What [`Project::validate_all`] found: what loaded, and every problem.
#[derive(Debug)]
pub struct Validation {
    /// The feature sets that loaded.
    pub sets: Vec<FeatureSet>,
    /// The model folders that loaded (XGBoost and CLV), in name order.
    pub models: Vec<String>,
    /// The jobs that loaded.
    pub jobs: Vec<Job>,
    /// Every problem, file by file.
    pub problems: Vec<Diagnostic>,
}

/// The models of a project, as far as the checks across files need them.
#[derive(Debug, Default)]
pub struct ModelIndex {
    /// Folders whose model loaded.
    pub ok: Vec<String>,
    /// Folders whose model did not load (reported with the model, not again by its jobs).
    pub broken: Vec<String>,
    /// Customer lifetime value models (no artifact; a job cannot score one).
    pub clv: Vec<String>,
}

impl Project {
    /// The name of `c360.toml` in messages.
    fn config_name(&self) -> String {
        self.config_file
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "c360.toml".into())
    }

    /// Checks everything that can be checked without reading data; returns every problem
    /// (a file whose own problems are reported is not reported again by what refers to it).
    pub fn validate_all(&self) -> Validation {
        let mut problems: Vec<Diagnostic> = Vec::new();
        let (sets, set_errs, sets_broken) = features::load_sets_partial(&self.features_dir());
        problems.extend(set_errs);
        // `[service]` (and the tokens variable) exactly as `c360 serve` would take them.
        if let Err(e) = crate::service::ServiceConfig::from_project(self, None) {
            problems.push(Diagnostic::new(
                self.config_name(),
                "service",
                e.to_string(),
            ));
        }
        // The planner's price table (the embedded one, or `[aws.sagemaker] prices`).
        let prices = match planner::load_prices(self.prices_file().as_deref()) {
            Ok(p) => Some(p),
            Err(e) => {
                problems.push(Diagnostic::new(
                    self.config_name(),
                    "aws.sagemaker.prices",
                    e.to_string(),
                ));
                None
            }
        };
        let models = self.validate_models(&sets, sets_broken, &mut problems);
        let (jobs, job_errs) = job::load_all(&self.jobs_dir());
        problems.extend(job_errs);
        for j in &jobs {
            problems.extend(check_job(j, &sets, prices.as_ref(), &models));
        }
        problems.extend(check_table_names(&jobs));
        Validation {
            sets,
            models: models.ok,
            jobs,
            problems,
        }
    }

    /// The checks of [`Project::validate_all`] that concern one job, for `pipeline::prepare`:
    /// the job's model (its spec, artifact, feature sets and columns) and [`check_job`]
    /// (PII in the product, the pinned instance type, the model's kind). Empty: fine.
    pub fn validate_job(&self, job: &Job) -> Vec<Diagnostic> {
        let mut problems = Vec::new();
        let (sets, _, sets_broken) = features::load_sets_partial(&self.features_dir());
        let prices = planner::load_prices(self.prices_file().as_deref()).ok();
        let mut models = ModelIndex::default();
        let dir = self.models_dir().join(&job.model);
        if dir.is_dir() {
            let only = |p: &Path| p == dir;
            models = self.validate_models_where(&sets, sets_broken, &mut problems, &only);
        }
        problems.extend(check_job(job, &sets, prices.as_ref(), &models));
        problems
    }

    /// Each model folder: its spec parses, its artifact loads, its features exist.
    fn validate_models(
        &self,
        sets: &[FeatureSet],
        sets_broken: bool,
        problems: &mut Vec<Diagnostic>,
    ) -> ModelIndex {
        self.validate_models_where(sets, sets_broken, problems, &|_| true)
    }

    /// [`Project::validate_models`] for the model folders `keep` accepts.
    fn validate_models_where(
        &self,
        sets: &[FeatureSet],
        sets_broken: bool,
        problems: &mut Vec<Diagnostic>,
        keep: &dyn Fn(&Path) -> bool,
    ) -> ModelIndex {
        let mut index = ModelIndex::default();
        for d in sorted_entries(&self.models_dir(), |p| p.is_dir() && keep(p)) {
            let spec_file = d.join(model::SPEC_FILE).display().to_string();
            let dir_name = d
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            // CLV models (kind = "bg_nbd" / "gamma_gamma") have no artifact to load.
            if let Some((ok, e)) = crate::cli::models::validate_clv(&d, sets, sets_broken) {
                problems.extend(e);
                if ok {
                    index.clv.push(dir_name.clone());
                    index.ok.push(dir_name)
                } else {
                    index.broken.push(dir_name)
                }
                continue;
            }
            match model::load(&d) {
                // Every problem of the spec, each on its line.
                Err(ModelError::Spec(found)) => {
                    problems.extend(found.0);
                    index.broken.push(dir_name);
                }
                Err(e) => {
                    problems.push(Diagnostic::new(spec_file, "(model)", e.to_string()));
                    index.broken.push(dir_name);
                }
                Ok(m) => {
                    if let Some(spec) = &m.spec {
                        problems.extend(check_model(spec, sets, sets_broken));
                    }
                    index.ok.push(dir_name);
                }
            }
        }
        index
    }
}

/// A model's spec against the feature sets that loaded: each set exists in the version the
/// model was trained on, and each feature is a numeric output of them. `sets_broken`: a set
/// file failed to load (reported on its own), so a missing set is not reported again.
pub fn check_model(spec: &ModelSpec, sets: &[FeatureSet], sets_broken: bool) -> Vec<Diagnostic> {
    let file = spec.file.display().to_string();
    let err = |key: &str, reason: String| Diagnostic::new(&file, key, reason);
    let mut errs = Vec::new();
    let mut unknown_set = false;
    for (name, version) in &spec.feature_sets {
        match sets.iter().find(|s| &s.name == name) {
            None => {
                unknown_set = true;
                if !sets_broken {
                    errs.push(err(
                        "feature_sets",
                        format!("no feature set {name} under features/"),
                    ));
                }
            }
            Some(s) if s.version != *version => errs.push(err(
                "feature_sets",
                format!(
                    "trained on {name} v{version}, but features/{name}.toml is v{}",
                    s.version
                ),
            )),
            Some(_) => {}
        }
    }
    for (i, f) in spec.features.iter().enumerate() {
        let found = sets
            .iter()
            .filter(|s| spec.feature_sets.iter().any(|(n, _)| n == &s.name))
            .any(|s| s.outputs().iter().any(|o| &o.name == f));
        // A feature of a set that did not load is not checked further.
        if !found && !unknown_set {
            errs.push(err(
                &format!("features[{i}]"),
                format!("{f} is not an output of the model's feature sets"),
            ));
        }
        let text = sets.iter().any(|s| {
            s.outputs()
                .iter()
                .any(|o| &o.name == f && o.ty == features::expr::Ty::Str)
        });
        if text {
            errs.push(err(
                &format!("features[{i}]"),
                format!("{f} is text; a text/csv XGBoost model takes numbers (encode it as a numeric feature)"),
            ));
        }
    }
    errs
}

/// One job against the rest of the project: its product includes no PII (judged by lineage,
/// see `features::lineage`), its pinned instance type is in the price table (when it loaded),
/// and it names a model that loaded and that a job can score.
pub fn check_job(
    j: &Job,
    sets: &[FeatureSet],
    prices: Option<&PriceTable>,
    models: &ModelIndex,
) -> Vec<Diagnostic> {
    let file = j.file.display().to_string();
    let mut errs = Vec::new();
    for (i, reason) in features::lineage::pii_includes(&j.product.include, sets) {
        errs.push(Diagnostic::new(
            &file,
            format!("product.include[{i}]"),
            reason,
        ));
    }
    errs.extend(check_product_tags(j));
    if let (Some(t), Some(prices)) = (&j.transform.pins.instance_type, prices) {
        if prices.get(t).is_none() {
            errs.push(Diagnostic::new(
                &file,
                "transform.instance_type",
                format!(
                    "{:?} is not a transform instance type of the price table (e.g. {})",
                    t.escape_debug().to_string(),
                    prices
                        .types()
                        .into_iter()
                        .take(6)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    if models.broken.iter().any(|m| j.model == *m) {
        return errs; // reported with the model
    }
    if models.clv.iter().any(|m| j.model == *m) {
        errs.push(Diagnostic::new(&file, "model", format!("{} is a customer lifetime value model (fitted by `c360 models fit`); a job scores an XGBoost model", j.model)));
    } else if !models.ok.iter().any(|m| j.model == *m) {
        errs.push(Diagnostic::new(
            &file,
            "model",
            format!(
                "no model {} under models/ (models: {})",
                j.model,
                models.ok.join(", ")
            ),
        ));
    }
    errs
}

/// The job's Lake Formation tag set: `[product.lf_tags]` keys and values in Lake
/// Formation's alphabet and not one of the keys c360 sets itself; `[product.column_classification]`
/// names only columns the product has.
fn check_product_tags(j: &Job) -> Vec<Diagnostic> {
    use crate::mesh::settings::{is_lf_tag_text, RESERVED_TAG_KEYS};
    let file = j.file.display().to_string();
    let mut errs = Vec::new();
    for (k, v) in &j.product.lf_tags {
        let key = format!("product.lf_tags.{k}");
        if RESERVED_TAG_KEYS.contains(&k.as_str()) {
            errs.push(Diagnostic::new(
                &file,
                key,
                format!("c360 sets the tag {k:?} itself (from [product] domain, name and classification): remove it here"),
            ));
        } else if !is_lf_tag_text(k, 128) {
            errs.push(Diagnostic::new(
                &file,
                key,
                format!("{:?} is not a Lake Formation tag key: 1 to 128 letters, digits, spaces and _ . : / = + - @ %", k.escape_debug().to_string()),
            ));
        } else if !is_lf_tag_text(v, 256) {
            errs.push(Diagnostic::new(
                &file,
                key,
                format!("{:?} is not a Lake Formation tag value: 1 to 256 letters, digits, spaces and _ . : / = + - @ %", v.escape_debug().to_string()),
            ));
        }
    }
    for (k, v) in [
        ("domain", &j.product.domain),
        ("name", &j.product.name.to_string()),
    ] {
        if !is_lf_tag_text(v, 256) {
            errs.push(Diagnostic::new(
                &file,
                format!("product.{k}"),
                format!("{:?} cannot be a Lake Formation tag value (tag {}): 1 to 256 letters, digits, spaces and _ . : / = + - @ %", v.escape_debug().to_string(), if k == "name" { "data_product" } else { "domain" }),
            ));
        }
    }
    let columns = crate::product::standard_columns(&j.product);
    for c in j.product.column_classification.keys() {
        if !columns.iter().any(|x| x == c) {
            errs.push(Diagnostic::new(
                &file,
                format!("product.column_classification.{c}"),
                format!(
                    "the product has no column {:?}; its columns are {}",
                    c.escape_debug().to_string(),
                    columns.join(", ")
                ),
            ));
        }
    }
    errs
}

/// Two products whose names differ but map to one Glue table name (`churn-scores` and
/// `churn_scores` both become `churn_scores_v1`): the catalog would refuse the second one's
/// publish, so validation says so first, naming both jobs.
fn check_table_names(jobs: &[Job]) -> Vec<Diagnostic> {
    use crate::mesh::glue::schema::table_name;
    let mut seen: std::collections::BTreeMap<String, &Job> = Default::default();
    let mut errs = Vec::new();
    for j in jobs {
        let t = table_name(&j.product.name, j.product.major);
        match seen.get(&t) {
            Some(other) if other.product.name != j.product.name => errs.push(Diagnostic::new(
                j.file.display().to_string(),
                "product.name",
                format!(
                    "product {} maps to the Glue table {t}, as product {} of {} does: rename one (Glue table names are lowercase letters, digits and _)",
                    j.product.name,
                    other.product.name,
                    other.file.display()
                ),
            )),
            Some(_) => {}
            None => {
                seen.insert(t, j);
            }
        }
    }
    errs
}
