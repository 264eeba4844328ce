//! `c360 models ...`: fit the customer lifetime value models (BG/NBD, Gamma-Gamma).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use clap::Subcommand;
use polars::prelude::*;

use super::{exit, Failure};
use crate::features::{self, DefError};
use crate::model::btyd::{self, BtydData, ClvError, ClvKind, ClvSpec, FitOptions, Fitted};
use crate::project::Project;
use crate::{offline, store};

#[derive(Debug, Subcommand)]
pub enum ModelsCmd {
    /// Fit a customer lifetime value model (kind bg_nbd or gamma_gamma) on a feature snapshot.
    #[command(after_help = FIT_HELP)]
    Fit(FitArgs),
}

const FIT_HELP: &str = "\
Examples:
  c360 models fit clv_bgnbd --as-of 2024-06-30 --source data/c360
  c360 models fit clv_gamma_gamma --as-of 2024-06-30 --source data/c360 --json
  c360 models fit clv_bgnbd --as-of 2024-06-30 --penalizer 0.001

MODEL is a folder under models/ (or a path to one) whose model.toml says
  kind = \"bg_nbd\" (or \"gamma_gamma\"), feature_set = \"rfm\", feature_set_version = 1.
The command builds the feature set's snapshot as of the date (or reuses the committed one),
fits by maximum likelihood on its BTYD columns frequency, recency, T and monetary_value
(time in days; customers without a purchase are left out; Gamma-Gamma uses only customers
with frequency > 0 and monetary_value > 0), exactly as lifetimes' BetaGeoFitter and
GammaGammaFitter do, and writes the parameters, the as-of date and the snapshot's source
fingerprints to fitted.json beside model.toml. --json prints the same object (lifetimes'
names: r, alpha, a, b or p, q, v; alpha in days).

Exit codes: 3 the model or feature set definition is wrong, 4 the data cannot be fitted
(a bad value, too few customers, no repeat buyers), 1 the fit did not converge.";

/// `c360 models fit`
#[derive(Debug, clap::Args)]
pub struct FitArgs {
    /// The model folder's name under models/ (or a path to the folder).
    pub model: String,
    /// The as-of date of the snapshot to fit on (YYYY-MM-DD, UTC).
    #[arg(long, value_parser = crate::names::AsOf::parse_date)]
    pub as_of: NaiveDate,
    /// Customer 360 source folder or URI (default: [source] uri in c360.toml).
    #[arg(long)]
    pub source: Option<String>,
    /// Store folder or URI (default: [store] uri in c360.toml).
    #[arg(long)]
    pub store: Option<String>,
    /// L2 penalty on the parameters, as lifetimes' penalizer_coef (default: [clv] penalizer
    /// in model.toml, else 0).
    #[arg(long, allow_negative_numbers = true)]
    pub penalizer: Option<f64>,
    /// Print the fitted parameters as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Fit even when --as-of is after the sources' last event (refused by default: the
    /// BTYD summary would count days with no data as days without purchases).
    #[arg(long)]
    pub allow_as_of_past_data: bool,
}

pub fn run(config: Option<&Path>, cmd: ModelsCmd) -> Result<(), Failure> {
    let project = Project::load(config)?;
    match cmd {
        ModelsCmd::Fit(a) => {
            let fitted = fit(&project, &a)?;
            if a.json {
                println!(
                    "{}",
                    serde_json::to_string(&fitted).map_err(anyhow::Error::from)?
                );
            } else {
                let params = fitted
                    .params
                    .iter()
                    .map(|(k, v)| format!("{k} = {v}"))
                    .collect::<Vec<_>>()
                    .join(", ");
                say!(
                    "{} ({}) fitted on {} customers of {} v{} as of {} in {} iterations: {params} (time in days) -> {}",
                    fitted.model,
                    fitted.kind.name(),
                    fitted.customers,
                    fitted.feature_set,
                    fitted.feature_set_version,
                    fitted.as_of,
                    fitted.iterations,
                    model_dir(&project, &a.model).join(btyd::FITTED_FILE).display()
                );
            }
            Ok(())
        }
    }
}

fn fail(code: i32, error: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code,
        error: error.into(),
    }
}

fn model_dir(project: &Project, model: &str) -> PathBuf {
    let p = PathBuf::from(model);
    if model.contains('/') || (p.is_dir() && !project.models_dir().join(model).is_dir()) {
        p
    } else {
        project.models_dir().join(model)
    }
}

/// Fits the model and writes `fitted.json`; returns what was written.
pub fn fit(project: &Project, a: &FitArgs) -> Result<Fitted, Failure> {
    let dir = model_dir(project, &a.model);
    let spec_file = dir.join(crate::model::SPEC_FILE);
    if !spec_file.is_file() {
        return Err(fail(
            exit::INVALID_DEFINITION,
            anyhow::anyhow!(
                "no model {}: {} does not exist (models: {}){}",
                a.model,
                spec_file.display(),
                list_models(&project.models_dir()).join(", "),
                super::missing_folder_hint(project, super::Folder::Models)
                    .map(|h| format!("; {h}"))
                    .unwrap_or_default()
            ),
        ));
    }
    let spec = match btyd::read_clv_dir(&dir) {
        None => {
            return Err(fail(
                exit::INVALID_DEFINITION,
                anyhow::anyhow!(
                    "{}: `models fit` fits customer lifetime value models; this model.toml has no kind = \"bg_nbd\" or \"gamma_gamma\" (an XGBoost model is trained outside c360, e.g. scripts/train_churn_model.py)",
                    spec_file.display()
                ),
            ))
        }
        Some(Err(e)) => return Err(fail(exit::INVALID_DEFINITION, e)),
        Some(Ok((spec, _))) => spec,
    };
    let penalizer = a.penalizer.unwrap_or(spec.penalizer);
    if !(penalizer.is_finite() && penalizer >= 0.0) {
        return Err(fail(
            exit::USAGE,
            anyhow::anyhow!(
                "--penalizer {penalizer}: must be a finite number >= 0 (0 = no penalty)"
            ),
        ));
    }
    let set = features::find_set(&project.features_dir(), &spec.feature_set).map_err(|e| {
        fail(
            exit::INVALID_DEFINITION,
            anyhow::anyhow!("{}: feature_set: {e}", spec.file.display()),
        )
    })?;
    if set.version != spec.feature_set_version {
        return Err(fail(
            exit::INVALID_DEFINITION,
            anyhow::anyhow!(
                "{}: feature_set_version: the model says {} v{}, but {} is v{}",
                spec.file.display(),
                spec.feature_set,
                spec.feature_set_version,
                set.path.display(),
                set.version
            ),
        ));
    }
    if let Some(missing) = missing_btyd_columns(&set).first() {
        return Err(fail(
            exit::INVALID_DEFINITION,
            anyhow::anyhow!(
                "{}: feature_set: {} has no column {missing}; a CLV model needs {}",
                spec.file.display(),
                spec.feature_set,
                btyd::BTYD_COLUMNS.join(", ")
            ),
        ));
    }
    let source_uri = a.source.clone().unwrap_or_else(|| project.source_uri());
    let store_uri = a.store.clone().unwrap_or_else(|| project.store_uri());
    // The as-of checks `run` and `features build` apply (exit 2, nothing written).
    let src = crate::source::Source::open(&source_uri).map_err(features::FeatureError::from)?;
    let tables: Vec<&str> = set.tables().into_iter().collect();
    features::check_data_reach(
        &src,
        &source_uri,
        &tables,
        a.as_of,
        a.allow_as_of_past_data,
        "",
    )
    .map_err(|m| fail(exit::USAGE, anyhow::anyhow!(m)))?;
    let st = store::open(&store_uri)?;
    let pb = crate::telemetry::spinner(&format!("building {} as of {}", set.name, a.as_of));
    let built = features::build_snapshot(&set, &source_uri, st.as_ref(), a.as_of, false)?;
    let df = offline::read_partition(st.as_ref(), &built.prefix, &built.manifest)?;
    pb.finish_and_clear();
    let data = btyd_data(&df).map_err(|e| {
        fail(
            exit::FAILURE,
            anyhow::anyhow!("{}/{}: {e}", st.uri(), built.prefix),
        )
    })?;
    tracing::info!(model = %a.model, customers = data.len(), "fitting");
    let opts = FitOptions { penalizer };
    let clv_fail = |e: ClvError| {
        let code = match e {
            ClvError::NoConvergence { .. } => exit::FAILURE,
            ClvError::Setting { .. } => exit::USAGE,
            _ => exit::BAD_INPUT,
        };
        fail(
            code,
            anyhow::anyhow!(
                "{} as of {} (snapshot {}/{}): {e}",
                a.model,
                a.as_of,
                st.uri(),
                built.prefix
            ),
        )
    };
    let (params, objective, customers, iterations) = match spec.kind {
        ClvKind::BgNbd => {
            let f = btyd::fit_bg_nbd(&data, &opts).map_err(clv_fail)?;
            let p = f.params;
            (
                BTreeMap::from([
                    ("r".to_string(), p.r),
                    ("alpha".to_string(), p.alpha),
                    ("a".to_string(), p.a),
                    ("b".to_string(), p.b),
                ]),
                f.objective,
                f.customers,
                f.iterations,
            )
        }
        ClvKind::GammaGamma => {
            let f = btyd::fit_gamma_gamma(&data, &opts).map_err(clv_fail)?;
            let p = f.params;
            (
                BTreeMap::from([
                    ("p".to_string(), p.p),
                    ("q".to_string(), p.q),
                    ("v".to_string(), p.v),
                ]),
                f.objective,
                f.customers,
                f.iterations,
            )
        }
    };
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| a.model.clone());
    let fitted = Fitted {
        model: name,
        kind: spec.kind,
        params,
        time_unit: "days".into(),
        penalizer,
        objective,
        customers,
        iterations,
        feature_set: set.name.to_string(),
        feature_set_version: set.version,
        as_of: a.as_of,
        snapshot: built.prefix.clone(),
        definition_hash: built.manifest.definition_hash.clone(),
        source_fingerprints: built.manifest.source_fingerprints.clone(),
    };
    write_fitted(&dir, &fitted)?;
    Ok(fitted)
}

/// Writes `fitted.json` atomically (a temporary file renamed over it).
fn write_fitted(dir: &Path, fitted: &Fitted) -> Result<(), Failure> {
    let file = dir.join(btyd::FITTED_FILE);
    let mut text = serde_json::to_string_pretty(fitted).map_err(anyhow::Error::from)?;
    text.push('\n');
    let tmp = dir.join(format!(".{}.tmp", btyd::FITTED_FILE));
    std::fs::write(&tmp, text)
        .and_then(|_| std::fs::rename(&tmp, &file))
        .map_err(|e| {
            fail(
                exit::FAILURE,
                anyhow::anyhow!("cannot write {}: {e}", file.display()),
            )
        })
}

/// The BTYD columns of the snapshot, customers with a purchase only (non-null BTYD columns),
/// in customer id order so the fit does not depend on the part files' order.
pub fn btyd_data(df: &DataFrame) -> anyhow::Result<BtydData> {
    let mut cols = vec![col("customer_id").cast(DataType::String)];
    for c in btyd::BTYD_COLUMNS {
        cols.push(col(c).cast(DataType::Float64));
    }
    let pred = btyd::BTYD_COLUMNS
        .iter()
        .map(|c| col(*c).is_not_null())
        .reduce(|a, b| a.and(b))
        .unwrap_or(lit(true));
    let df = df
        .clone()
        .lazy()
        .select(cols)
        .filter(pred)
        .sort(["customer_id"], Default::default())
        .collect()?;
    let f64s = |name: &str| -> anyhow::Result<Vec<f64>> {
        Ok(df
            .column(name)?
            .f64()?
            .iter()
            .map(|v| v.unwrap_or(f64::NAN))
            .collect())
    };
    Ok(BtydData {
        customer_id: df
            .column("customer_id")?
            .str()?
            .iter()
            .map(|v| v.unwrap_or("(null)").to_string())
            .collect(),
        frequency: f64s("frequency")?,
        recency: f64s("recency")?,
        t: f64s("T")?,
        monetary_value: f64s("monetary_value")?,
    })
}

fn missing_btyd_columns(set: &features::FeatureSet) -> Vec<&'static str> {
    let outs = set.outputs();
    btyd::BTYD_COLUMNS
        .iter()
        .copied()
        .filter(|c| !outs.iter().any(|o| o.name == *c))
        .collect()
}

fn list_models(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter(|e| e.path().join(crate::model::SPEC_FILE).is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// `c360 validate` for a CLV model folder: None when `dir` is not one (an XGBoost model);
/// else the problems found (an empty list when it is fine). A model whose spec is broken is
/// reported once, as `(model)`.
/// `sets_broken`: some feature-set file failed to load (reported on its own), so a set
/// missing from `sets` may be that file and is not reported again here.
pub fn validate_clv(
    dir: &Path,
    sets: &[features::FeatureSet],
    sets_broken: bool,
) -> Option<(bool, Vec<DefError>)> {
    let res = btyd::read_clv_dir(dir)?;
    let file = dir.join(crate::model::SPEC_FILE).display().to_string();
    let err = |key: &str, reason: String| DefError::new(file.clone(), key, reason);
    let (spec, fitted): (ClvSpec, Option<Fitted>) = match res {
        Err(e) => return Some((false, vec![err("(model)", e.to_string())])),
        Ok(v) => v,
    };
    let mut errs = Vec::new();
    if let Some(f) = fitted {
        if f.feature_set != spec.feature_set || f.feature_set_version != spec.feature_set_version {
            errs.push(DefError::new(
                dir.join(btyd::FITTED_FILE).display().to_string(),
                "feature_set",
                format!(
                    "fitted on {} v{}, but model.toml says {} v{}: re-fit with `c360 models fit {} --as-of DATE`",
                    f.feature_set,
                    f.feature_set_version,
                    spec.feature_set,
                    spec.feature_set_version,
                    dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
                ),
            ));
        }
    }
    match sets.iter().find(|s| s.name == spec.feature_set) {
        None if sets_broken => {}
        None => errs.push(err(
            "feature_set",
            format!("no feature set {} under features/", spec.feature_set),
        )),
        Some(s) if s.version != spec.feature_set_version => errs.push(err(
            "feature_set_version",
            format!(
                "fitted on {} v{}, but features/{}.toml is v{}",
                spec.feature_set, spec.feature_set_version, s.name, s.version
            ),
        )),
        Some(s) => {
            for c in missing_btyd_columns(s) {
                errs.push(err(
                    "feature_set",
                    format!(
                        "{} has no column {c}; a CLV model needs {}",
                        s.name,
                        btyd::BTYD_COLUMNS.join(", ")
                    ),
                ));
            }
        }
    }
    Some((true, errs))
}
