//! Models: the `models/<name>/model.toml` spec (parsed, then validated, then built into a
//! loaded model) and the native XGBoost evaluator that scores with it.
//!
//! A model directory holds `model.toml` and the artifact it names. A directory without
//! `model.toml` (what SageMaker unpacks into `/opt/ml/model`) holds the artifact alone:
//! `xgboost-model`, or any single file. A bare file is an artifact too.
//!
//! Example `model.toml`:
//!
//! ```text
//! description = "Churn in the next 90 days"
//! feature_set = "churn_signals"          # or, for several sets:
//! feature_set_version = 1                 # feature_sets = { rfm = 1, churn_signals = 1 }
//! features = ["days_since_last_order", "orders_90d", "spend_365d"]
//! content_type = "text/csv"
//! objective = "binary:logistic"
//!
//! [artifact]
//! path = "xgboost-model.json"        # relative to the model directory
//!
//! [sagemaker]                         # optional: how to run it in the cloud
//! image = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
//! model_data = "s3://bucket/models/churn/model.tar.gz"
//! # or: model_name = "existing-model"
//!
//! [[risk_bands]]
//! name = "low"
//! below = 0.3
//! [[risk_bands]]
//! name = "medium"
//! below = 0.7
//! [[risk_bands]]
//! name = "high"                       # the last band may omit `below`: everything else
//! ```

pub mod btyd;
pub mod csv;
pub mod ubjson;
pub mod xgb;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use crate::names::{ColumnName, SageMakerName, SetName, StoreUri};
use serde::Deserialize;

pub use csv::{parse_csv, CsvError};
pub use xgb::{Booster, DenseMatrix, ModelFormat, Objective, XgbError};

/// The spec file's name inside a model directory.
pub const SPEC_FILE: &str = "model.toml";
/// The artifact name SageMaker's built-in XGBoost uses.
pub const SAGEMAKER_ARTIFACT: &str = "xgboost-model";

/// Why a model could not be read, validated or loaded.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read {file}: {source}")]
    Io {
        file: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: {reason}")]
    Parse { file: String, reason: String },
    #[error("{file}: {key}: {reason}")]
    Invalid {
        file: String,
        key: String,
        reason: String,
    },
    /// Every problem of a `model.toml`, each with its key and line.
    #[error(transparent)]
    Spec(#[from] crate::diagnostic::Diagnostics),
    #[error(transparent)]
    Xgb(#[from] XgbError),
    #[error("{dir}: no model found: {reason}")]
    NoArtifact { dir: String, reason: String },
}

/// `model.toml` as written (parse step; see [`ModelSpec::validate`]).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpecFile {
    /// The model kind: `xgboost` (the default; `bg_nbd` and `gamma_gamma` are read by
    /// [`btyd`]).
    #[serde(default)]
    pub kind: Option<String>,
    /// Free text shown in listings.
    #[serde(default)]
    pub description: Option<String>,
    /// The feature set whose columns the model reads (`features/<name>.toml`).
    #[serde(default)]
    pub feature_set: Option<String>,
    /// The feature set's version the model was trained on.
    #[serde(default)]
    pub feature_set_version: Option<u32>,
    /// Several feature sets: name -> version (instead of feature_set/feature_set_version).
    #[serde(default)]
    pub feature_sets: std::collections::BTreeMap<String, u32>,
    /// The feature columns in the order the model expects them (the CSV column order).
    pub features: Vec<String>,
    /// The request content type; only `text/csv` for XGBoost models.
    #[serde(default = "default_content_type")]
    pub content_type: String,
    /// The xgboost objective (checked against the artifact), e.g. `binary:logistic`.
    pub objective: String,
    /// Where the model file is.
    pub artifact: ArtifactFile,
    /// How SageMaker runs the model (optional).
    #[serde(default)]
    pub sagemaker: Option<SageMakerFile>,
    /// Named score bands, in increasing order of `below`.
    #[serde(default)]
    pub risk_bands: Vec<RiskBandFile>,
}

fn default_content_type() -> String {
    "text/csv".into()
}

/// `[artifact]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArtifactFile {
    /// The model file, relative to the model directory (JSON or UBJSON from `save_model`).
    pub path: String,
}

/// `[sagemaker]`: either an image with a `model.tar.gz`, or an existing SageMaker model.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SageMakerFile {
    /// The inference image URI (ECR).
    #[serde(default)]
    pub image: Option<String>,
    /// `s3://.../model.tar.gz` holding the artifact.
    #[serde(default)]
    pub model_data: Option<String>,
    /// The name of a SageMaker model that already exists.
    #[serde(default)]
    pub model_name: Option<String>,
}

/// `[[risk_bands]]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RiskBandFile {
    /// The band's name, e.g. `high`.
    pub name: String,
    /// Scores strictly below this fall in the band (if not in an earlier one); omitted on the
    /// last band only.
    #[serde(default)]
    pub below: Option<f64>,
}

/// Where the model runs in SageMaker.
#[derive(Debug, Clone, PartialEq)]
pub enum SageMakerModel {
    /// Create a model from an image and a `model.tar.gz`.
    Create { image: String, model_data: String },
    /// Use an existing SageMaker model.
    Existing { model_name: SageMakerName },
}

/// A named score band.
#[derive(Debug, Clone, PartialEq)]
pub struct RiskBand {
    pub name: String,
    /// `None` on the last band: no upper bound.
    pub below: Option<f64>,
}

/// A validated `model.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSpec {
    /// The spec file, for messages.
    pub file: PathBuf,
    pub description: Option<String>,
    /// The first (or only) feature set.
    pub feature_set: SetName,
    pub feature_set_version: u32,
    /// Every feature set the model reads, with its version.
    pub feature_sets: Vec<(SetName, u32)>,
    pub features: Vec<String>,
    pub content_type: String,
    pub objective: Objective,
    /// The artifact's path, resolved against the spec's directory.
    pub artifact: PathBuf,
    pub sagemaker: Option<SageMakerModel>,
    pub risk_bands: Vec<RiskBand>,
}

/// The model's feature sets and versions (`feature_set` + `feature_set_version`, or
/// `feature_sets`); empty when they are not given right (the problems are recorded).
fn feature_sets(
    raw: &ModelSpecFile,
    errs: &mut crate::diagnostic::Collector,
) -> Vec<(SetName, u32)> {
    let mut sets: Vec<(String, u32)> = Vec::new();
    match (&raw.feature_set, raw.feature_set_version, raw.feature_sets.is_empty()) {
        (Some(s), Some(v), true) => sets.push((s.clone(), v)),
        (None, None, false) => sets.extend(raw.feature_sets.iter().map(|(k, v)| (k.clone(), *v))),
        (Some(_), None, true) => errs.push(
            "feature_set_version",
            "say which version of the feature set the model was trained on",
        ),
        _ => errs.push(
            "feature_set",
            "name the model's feature set: feature_set = \"NAME\" with feature_set_version = N, or feature_sets = { NAME = N, ... }",
        ),
    }
    let before = sets.len();
    let parsed: Vec<(SetName, u32)> = sets
        .into_iter()
        .filter_map(|(name, version)| {
            // `feature_sets = { NAME = N }` names the key itself; `feature_set` the single one.
            let (set_key, version_key) = if raw.feature_sets.is_empty() {
                ("feature_set".to_string(), "feature_set_version".to_string())
            } else {
                let k = format!("feature_sets.{name}");
                (k.clone(), k)
            };
            let name = SetName::parse(name)
                .map_err(|e| errs.push(set_key, e.to_string()))
                .ok()?;
            if version == 0 {
                errs.push(version_key, "versions start at 1");
                return None;
            }
            Some((name, version))
        })
        .collect();
    if parsed.len() != before {
        return Vec::new();
    }
    parsed
}

/// `features`: at least one, each a column name, none twice.
fn check_features(features: &[String], errs: &mut crate::diagnostic::Collector) {
    if features.is_empty() {
        errs.push("features", "list at least one feature column");
    }
    let mut seen = HashSet::new();
    for (i, f) in features.iter().enumerate() {
        if let Err(e) = ColumnName::parse(f.as_str()) {
            errs.push(format!("features[{i}]"), e.to_string());
        } else if !seen.insert(f.as_str()) {
            errs.push(format!("features[{i}]"), format!("{f:?} is listed twice"));
        }
    }
}

/// `[sagemaker]`: an image with a `model.tar.gz`, or an existing model's name.
fn sagemaker_model(
    s: SageMakerFile,
    errs: &mut crate::diagnostic::Collector,
) -> Option<SageMakerModel> {
    match (s.image, s.model_data, s.model_name) {
        (Some(image), Some(model_data), None) => {
            let mut ok = true;
            if !StoreUri::is_s3_uri(&model_data) {
                errs.push(
                    "sagemaker.model_data",
                    format!("{model_data:?} must be an s3:// URI of a model.tar.gz"),
                );
                ok = false;
            }
            if image.trim().is_empty() {
                errs.push("sagemaker.image", "empty image URI");
                ok = false;
            }
            ok.then_some(SageMakerModel::Create { image, model_data })
        }
        (None, None, Some(model_name)) => match SageMakerName::parse(model_name) {
            Ok(model_name) => Some(SageMakerModel::Existing { model_name }),
            Err(e) => {
                errs.push(
                    "sagemaker.model_name",
                    e.with_kind("SageMaker model name").to_string(),
                );
                None
            }
        },
        _ => {
            errs.push(
                "sagemaker",
                "give either `image` and `model_data`, or `model_name` alone",
            );
            None
        }
    }
}

/// `[[risk_bands]]`: named, distinct, `below` increasing, only the last one open.
fn risk_bands(bands: Vec<RiskBandFile>, errs: &mut crate::diagnostic::Collector) -> Vec<RiskBand> {
    let mut out = Vec::with_capacity(bands.len());
    let mut names = HashSet::new();
    let mut last: Option<f64> = None;
    let n = bands.len();
    for (i, b) in bands.into_iter().enumerate() {
        let key = format!("risk_bands[{i}]");
        if let Err(e) = ColumnName::parse(b.name.as_str()) {
            errs.push(
                format!("{key}.name"),
                e.with_kind("risk band name").to_string(),
            );
        } else if !names.insert(b.name.clone()) {
            errs.push(format!("{key}.name"), format!("{:?} is used twice", b.name));
        }
        match b.below {
            None if i + 1 != n => errs.push(
                format!("{key}.below"),
                "only the last band may omit `below`",
            ),
            Some(v) if !v.is_finite() => {
                errs.push(format!("{key}.below"), format!("{v} is not finite"))
            }
            Some(v) if last.is_some_and(|l| v <= l) => errs.push(
                format!("{key}.below"),
                format!(
                    "{v} must be greater than the previous band's {}",
                    last.unwrap_or_default()
                ),
            ),
            Some(v) => last = Some(v),
            None => {}
        }
        out.push(RiskBand {
            name: b.name,
            below: b.below,
        });
    }
    out
}

impl ModelSpec {
    /// Reads and validates `file` (no artifact I/O).
    pub fn read(file: &Path) -> Result<ModelSpec, ModelError> {
        let text = crate::project::read_definition(file).map_err(|source| ModelError::Io {
            file: file.display().to_string(),
            source,
        })?;
        ModelSpec::parse(&text, file)
    }

    /// Parses and validates spec text; `file` names it in errors and anchors the artifact path.
    pub fn parse(text: &str, file: &Path) -> Result<ModelSpec, ModelError> {
        let raw: ModelSpecFile = toml::from_str(text).map_err(|e| ModelError::Parse {
            file: file.display().to_string(),
            reason: e.to_string(),
        })?;
        ModelSpec::check(raw, file, Some(text)).map_err(ModelError::Spec)
    }

    /// Checks a parsed spec: pure, no I/O. Every problem is reported
    /// ([`ModelError::Spec`]), without lines (see [`ModelSpec::check`]).
    pub fn validate(raw: ModelSpecFile, file: &Path) -> Result<ModelSpec, ModelError> {
        ModelSpec::check(raw, file, None).map_err(ModelError::Spec)
    }

    /// Checks a parsed spec (pure, no I/O): every problem, each placed on its line of `text`
    /// (the file's text) when it is given.
    pub fn check(
        raw: ModelSpecFile,
        file: &Path,
        text: Option<&str>,
    ) -> Result<ModelSpec, crate::diagnostic::Diagnostics> {
        let mut errs = crate::diagnostic::Collector::new(file, text);
        if let Some(k) = raw.kind.as_deref().filter(|k| *k != "xgboost") {
            errs.push(
                "kind",
                format!("{k:?}: use xgboost (or leave it out), bg_nbd or gamma_gamma"),
            );
        }
        let sets = feature_sets(&raw, &mut errs);
        check_features(&raw.features, &mut errs);
        let ct = raw.content_type.split(';').next().unwrap_or("").trim();
        if !ct.eq_ignore_ascii_case("text/csv") {
            errs.push(
                "content_type",
                format!(
                    "{:?} is not supported; XGBoost models take \"text/csv\"",
                    raw.content_type
                ),
            );
        }
        let objective = Objective::parse(&raw.objective);
        if objective.is_none() {
            errs.push(
                "objective",
                format!(
                    "{:?} is not supported (one of: {})",
                    raw.objective,
                    Objective::NAMES.join(", ")
                ),
            );
        }
        let ap = Path::new(&raw.artifact.path);
        if raw.artifact.path.is_empty()
            || ap.is_absolute()
            || ap
                .components()
                .any(|c| !matches!(c, std::path::Component::Normal(_)))
        {
            errs.push(
                "artifact.path",
                format!(
                    "{:?} must be a relative path inside the model directory",
                    raw.artifact.path
                ),
            );
        }
        let sagemaker = raw.sagemaker.and_then(|s| sagemaker_model(s, &mut errs));
        let risk_bands = risk_bands(raw.risk_bands, &mut errs);
        let objective = match objective {
            Some(o) if errs.is_empty() && !sets.is_empty() => o,
            _ => return Err(crate::diagnostic::Diagnostics(errs.into_vec())),
        };
        let dir = file.parent().unwrap_or(Path::new("."));
        Ok(ModelSpec {
            file: file.to_path_buf(),
            description: raw.description,
            feature_set: sets[0].0.clone(),
            feature_set_version: sets[0].1,
            feature_sets: sets,
            features: raw.features,
            content_type: "text/csv".into(),
            objective,
            artifact: dir.join(ap),
            sagemaker,
            risk_bands,
        })
    }

    /// The band a score falls in: the first whose `below` exceeds it; `None` past the last
    /// bounded band when every band is bounded (or for NaN).
    pub fn risk_band(&self, score: f64) -> Option<&str> {
        if score.is_nan() {
            return None;
        }
        self.risk_bands
            .iter()
            .find(|b| b.below.is_none_or(|v| score < v))
            .map(|b| b.name.as_str())
    }
}

/// A model ready to score: the evaluator and, when there was one, its spec.
#[derive(Debug, Clone)]
pub struct LoadedModel {
    pub spec: Option<ModelSpec>,
    pub booster: Booster,
    /// The artifact file that was loaded.
    pub artifact: PathBuf,
}

/// Loads a model from a directory (with `model.toml`, or holding the artifact alone) or from a
/// bare artifact file, and checks the spec against the artifact.
pub fn load(path: &Path) -> Result<LoadedModel, ModelError> {
    if path.is_file() {
        let booster = Booster::load(path)?;
        return Ok(LoadedModel {
            spec: None,
            booster,
            artifact: path.to_path_buf(),
        });
    }
    if !path.is_dir() {
        return Err(ModelError::NoArtifact {
            dir: path.display().to_string(),
            reason: "no such file or directory".into(),
        });
    }
    let spec_file = path.join(SPEC_FILE);
    if spec_file.is_file() {
        let spec = ModelSpec::read(&spec_file)?;
        let booster = Booster::load(&spec.artifact)?;
        check_against(&spec, &booster)?;
        let artifact = spec.artifact.clone();
        return Ok(LoadedModel {
            spec: Some(spec),
            booster,
            artifact,
        });
    }
    let artifact = find_artifact(path)?;
    let booster = Booster::load(&artifact)?;
    Ok(LoadedModel {
        spec: None,
        booster,
        artifact,
    })
}

/// The spec must describe the artifact: same objective, one column per model feature.
fn check_against(spec: &ModelSpec, b: &Booster) -> Result<(), ModelError> {
    let invalid = |key: &str, reason: String| ModelError::Invalid {
        file: spec.file.display().to_string(),
        key: key.to_string(),
        reason,
    };
    if spec.objective != b.objective() {
        return Err(invalid(
            "objective",
            format!(
                "says {} but {} was trained with {}",
                spec.objective.name(),
                spec.artifact.display(),
                b.objective().name()
            ),
        ));
    }
    if spec.features.len() != b.num_feature() {
        return Err(invalid(
            "features",
            format!(
                "lists {} columns but {} expects {}",
                spec.features.len(),
                spec.artifact.display(),
                b.num_feature()
            ),
        ));
    }
    Ok(())
}

/// `xgboost-model`, else the directory's only visible regular file.
fn find_artifact(dir: &Path) -> Result<PathBuf, ModelError> {
    let p = dir.join(SAGEMAKER_ARTIFACT);
    if p.is_file() {
        return Ok(p);
    }
    let entries = std::fs::read_dir(dir).map_err(|source| ModelError::Io {
        file: dir.display().to_string(),
        source,
    })?;
    let mut files = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && e.path().is_file() {
            files.push(e.path());
        }
    }
    files.sort();
    match files.len() {
        1 => Ok(files.remove(0)),
        0 => Err(ModelError::NoArtifact {
            dir: dir.display().to_string(),
            reason: format!("expected {SPEC_FILE}, {SAGEMAKER_ARTIFACT} or a single model file"),
        }),
        _ => Err(ModelError::NoArtifact {
            dir: dir.display().to_string(),
            reason: format!(
                "{} files and no {SPEC_FILE} or {SAGEMAKER_ARTIFACT}: add a {SPEC_FILE} naming the artifact",
                files.len()
            ),
        }),
    }
}

/// Formats predictions as `text/csv`: one line per row, `width` comma-separated values per
/// line. Each value is the f32 prediction widened to f64 and written as the shortest decimal
/// of that f64 (what the SageMaker XGBoost container writes: Python's `repr` of
/// `preds.tolist()`), so a reader parsing in f64 gets xgboost's value exactly, at any scale.
pub fn format_predictions(preds: &[f32], width: usize, out: &mut Vec<u8>) {
    use std::io::Write;
    let width = width.max(1);
    out.reserve(preds.len() * 12);
    for row in preds.chunks(width) {
        for (i, v) in row.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            // Writing to a Vec cannot fail.
            let _ = write!(out, "{}", *v as f64);
        }
        out.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"
feature_set = "churn_signals"
feature_set_version = 2
features = ["a", "b"]
objective = "binary:logistic"
[artifact]
path = "m.json"
[sagemaker]
model_name = "churn-v2"
[[risk_bands]]
name = "low"
below = 0.3
[[risk_bands]]
name = "high"
"#;

    fn parse(s: &str) -> Result<ModelSpec, ModelError> {
        ModelSpec::parse(s, Path::new("models/churn/model.toml"))
    }

    #[test]
    fn every_problem_is_reported_with_its_line() {
        let text = SPEC
            .replace("feature_set_version = 2", "feature_set_version = 0")
            .replace("features = [\"a\", \"b\"]", "features = [\"a\", \"a\"]")
            .replace("model_name = \"churn-v2\"", "model_name = \"-churn\"");
        let Err(ModelError::Spec(found)) = parse(&text) else {
            panic!("three problems expected");
        };
        let got: Vec<(&str, Option<usize>)> =
            found.0.iter().map(|d| (d.key.as_str(), d.line)).collect();
        assert_eq!(
            got,
            vec![
                ("feature_set_version", Some(3)),
                ("features[1]", Some(4)),
                ("sagemaker.model_name", Some(9)),
            ]
        );
        assert!(found.to_string().contains("(line 9)"), "{found}");
    }

    #[test]
    fn kind_xgboost_may_be_written_and_other_kinds_are_named() {
        let explicit = parse(&format!("kind = \"xgboost\"\n{SPEC}")).unwrap();
        assert_eq!(explicit, parse(SPEC).unwrap());
        let e = parse(&format!("kind = \"svm\"\n{SPEC}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("kind") && e.contains("svm"), "{e}");
    }

    #[test]
    fn parses_a_full_spec_and_bands_scores() {
        let s = parse(SPEC).unwrap();
        assert_eq!(s.feature_set_version, 2);
        assert_eq!(s.artifact, Path::new("models/churn/m.json"));
        assert_eq!(s.objective, Objective::BinaryLogistic);
        assert_eq!(
            s.sagemaker,
            Some(SageMakerModel::Existing {
                model_name: "churn-v2".parse().unwrap()
            })
        );
        assert_eq!(s.risk_band(0.29), Some("low"));
        assert_eq!(s.risk_band(0.3), Some("high"));
        assert_eq!(s.risk_band(f64::NAN), None);
    }

    #[test]
    fn errors_name_file_and_key() {
        let cases = [
            (SPEC.replace("objective", "objectiv"), "objectiv"),
            (
                SPEC.replace("[\"a\", \"b\"]", "[\"a\", \"a\"]"),
                "features[1]",
            ),
            (SPEC.replace("m.json", "../m.json"), "artifact.path"),
            (SPEC.replace("below = 0.3", ""), "risk_bands[0].below"),
            (SPEC.replace("binary:logistic", "binary:hinge"), "objective"),
            (
                SPEC.replace("model_name = \"churn-v2\"", "image = \"x\""),
                "sagemaker",
            ),
            (
                SPEC.replace("feature_set_version = 2", "feature_set_version = 0"),
                "feature_set_version",
            ),
        ];
        for (text, key) in cases {
            let msg = parse(&text).unwrap_err().to_string();
            assert!(
                msg.contains("models/churn/model.toml") && msg.contains(key),
                "{key}: {msg}"
            );
        }
    }

    #[test]
    fn formats_shortest_round_trip_decimals() {
        let mut out = Vec::new();
        format_predictions(&[0.1, 0.25, 1.0 / 3.0, 2.0], 2, &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "0.10000000149011612,0.25\n0.3333333432674408,2\n"
        );
    }

    #[test]
    fn finds_a_lone_artifact_or_says_what_is_missing() {
        let d = tempfile::tempdir().unwrap();
        let e = load(d.path()).unwrap_err().to_string();
        assert!(e.contains("xgboost-model"), "{e}");
        std::fs::write(d.path().join("a.json"), "{}").unwrap();
        std::fs::write(d.path().join("b.json"), "{}").unwrap();
        assert!(load(d.path()).unwrap_err().to_string().contains("2 files"));
    }
}
