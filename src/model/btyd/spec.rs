//! CLV model folders: the `kind` a `model.toml` declares, its spec file, and the
//! `fitted.json` that `c360 models fit` writes beside it.

use serde::{Deserialize, Serialize};

use super::{check_penalizer, BgNbdParams, GammaGammaParams};

/// The CLV model kinds (`kind = "..."` in `model.toml`; a `model.toml` without `kind` is an
/// XGBoost model).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClvKind {
    /// BG/NBD: purchases while alive, and the chance of being alive.
    BgNbd,
    /// Gamma-Gamma: the spend per purchase.
    GammaGamma,
}

impl ClvKind {
    pub const NAMES: [&'static str; 2] = ["bg_nbd", "gamma_gamma"];

    pub fn name(self) -> &'static str {
        match self {
            ClvKind::BgNbd => "bg_nbd",
            ClvKind::GammaGamma => "gamma_gamma",
        }
    }

    pub fn parse(s: &str) -> Option<ClvKind> {
        match s {
            "bg_nbd" => Some(ClvKind::BgNbd),
            "gamma_gamma" => Some(ClvKind::GammaGamma),
            _ => None,
        }
    }
}

/// The file `c360 models fit` writes beside `model.toml`.
pub const FITTED_FILE: &str = "fitted.json";

/// The BTYD columns a CLV model reads from its feature set.
pub const BTYD_COLUMNS: [&str; 4] = ["frequency", "recency", "T", "monetary_value"];

/// `model.toml` of a CLV model, as written.
///
/// ```text
/// kind = "bg_nbd"                 # or "gamma_gamma"
/// description = "Repeat purchases and the chance a customer is still active"
/// feature_set = "rfm"             # the set with frequency, recency, T, monetary_value
/// feature_set_version = 1
///
/// [clv]
/// penalizer = 0.0                 # lifetimes' penalizer_coef (default 0)
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClvSpecFile {
    pub kind: String,
    #[serde(default)]
    pub description: Option<String>,
    pub feature_set: String,
    pub feature_set_version: u32,
    #[serde(default)]
    pub clv: ClvSettingsFile,
}

/// `[clv]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClvSettingsFile {
    #[serde(default)]
    pub penalizer: f64,
}

/// A validated CLV `model.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClvSpec {
    pub file: std::path::PathBuf,
    pub kind: ClvKind,
    pub description: Option<String>,
    pub feature_set: crate::names::SetName,
    pub feature_set_version: u32,
    pub penalizer: f64,
}

/// The fitted parameters, as `fitted.json` holds them and `models fit --json` prints them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fitted {
    pub model: String,
    pub kind: ClvKind,
    /// `r, alpha, a, b` (bg_nbd) or `p, q, v` (gamma_gamma), lifetimes' names.
    #[serde(flatten)]
    pub params: std::collections::BTreeMap<String, f64>,
    /// Always "days".
    pub time_unit: String,
    pub penalizer: f64,
    /// lifetimes' `_negative_log_likelihood_` at the optimum.
    pub objective: f64,
    pub customers: usize,
    pub iterations: u64,
    pub feature_set: String,
    pub feature_set_version: u32,
    pub as_of: chrono::NaiveDate,
    /// The snapshot's partition in the store.
    pub snapshot: String,
    /// The snapshot's definition hash and source fingerprints: the data the fit saw.
    pub definition_hash: String,
    pub source_fingerprints: std::collections::BTreeMap<String, String>,
}

impl Fitted {
    pub fn bg_nbd(&self) -> Option<BgNbdParams> {
        let g = |k: &str| self.params.get(k).copied();
        (self.kind == ClvKind::BgNbd).then_some(())?;
        Some(BgNbdParams {
            r: g("r")?,
            alpha: g("alpha")?,
            a: g("a")?,
            b: g("b")?,
        })
    }

    pub fn gamma_gamma(&self) -> Option<GammaGammaParams> {
        let g = |k: &str| self.params.get(k).copied();
        (self.kind == ClvKind::GammaGamma).then_some(())?;
        Some(GammaGammaParams {
            p: g("p")?,
            q: g("q")?,
            v: g("v")?,
        })
    }
}

/// The `kind` a `model.toml` text declares, if any (None: an XGBoost model).
pub fn declared_kind(text: &str) -> Option<String> {
    let v: toml::Value = toml::from_str(text).ok()?;
    v.get("kind")?.as_str().map(String::from)
}

/// Whether the model folder `dir` holds a CLV model (its `model.toml` has a `kind`); then
/// its validated spec (and its `fitted.json`, when it has one).
pub fn read_clv_dir(
    dir: &std::path::Path,
) -> Option<Result<(ClvSpec, Option<Fitted>), super::ModelError>> {
    let file = dir.join(super::SPEC_FILE);
    let text = crate::project::read_definition(&file).ok()?;
    // No kind, or `xgboost`: not a CLV model.
    declared_kind(&text).filter(|k| k != "xgboost")?;
    Some(ClvSpec::parse(&text, &file).and_then(|spec| {
        let fitted = read_fitted(&spec)?;
        Ok((spec, fitted))
    }))
}

/// Reads and checks `fitted.json` beside the spec (None when the model was never fitted).
pub fn read_fitted(spec: &ClvSpec) -> Result<Option<Fitted>, super::ModelError> {
    let dir = spec.file.parent().unwrap_or(std::path::Path::new("."));
    let file = dir.join(FITTED_FILE);
    let bytes = match crate::project::read_bounded(&file, crate::project::MAX_DEFINITION_BYTES) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(super::ModelError::Io {
                file: file.display().to_string(),
                source,
            })
        }
    };
    let invalid = |key: &str, reason: String| super::ModelError::Invalid {
        file: file.display().to_string(),
        key: key.into(),
        reason,
    };
    let f: Fitted = serde_json::from_slice(&bytes).map_err(|e| super::ModelError::Parse {
        file: file.display().to_string(),
        reason: format!("{e} (re-create it with `c360 models fit`)"),
    })?;
    if f.kind != spec.kind {
        return Err(invalid(
            "kind",
            format!(
                "{} but model.toml says {}: re-fit with `c360 models fit`",
                f.kind.name(),
                spec.kind.name()
            ),
        ));
    }
    let names: &[&str] = match f.kind {
        ClvKind::BgNbd => &["r", "alpha", "a", "b"],
        ClvKind::GammaGamma => &["p", "q", "v"],
    };
    for k in names {
        match f.params.get(*k) {
            Some(v) if v.is_finite() && *v > 0.0 => {}
            Some(v) => {
                return Err(invalid(
                    k,
                    format!("{v} is not a finite positive parameter"),
                ))
            }
            None => return Err(invalid(k, "missing".into())),
        }
    }
    if let Some(k) = f.params.keys().find(|k| !names.contains(&k.as_str())) {
        return Err(invalid(
            k,
            format!("not a {} parameter ({})", f.kind.name(), names.join(", ")),
        ));
    }
    Ok(Some(f))
}

impl ClvSpec {
    /// Parses and validates a CLV `model.toml` text; `file` names it in errors.
    pub fn parse(text: &str, file: &std::path::Path) -> Result<ClvSpec, super::ModelError> {
        let f = file.display().to_string();
        let invalid = |key: &str, reason: String| super::ModelError::Invalid {
            file: f.clone(),
            key: key.into(),
            reason,
        };
        // The kind first, so a wrong kind is named as such rather than as an unknown key.
        if let Some(kind) = declared_kind(text) {
            if ClvKind::parse(&kind).is_none() {
                return Err(invalid(
                    "kind",
                    format!(
                        "{kind:?} is not a model kind (one of: {}; leave `kind` out for an XGBoost model)",
                        ClvKind::NAMES.join(", ")
                    ),
                ));
            }
        }
        let raw: ClvSpecFile = toml::from_str(text).map_err(|e| super::ModelError::Parse {
            file: f.clone(),
            reason: e.to_string(),
        })?;
        let kind = ClvKind::parse(&raw.kind)
            .ok_or_else(|| invalid("kind", format!("{:?} is not a CLV model kind", raw.kind)))?;
        let feature_set = crate::names::SetName::parse(raw.feature_set)
            .map_err(|e| invalid("feature_set", e.to_string()))?;
        if raw.feature_set_version == 0 {
            return Err(invalid("feature_set_version", "versions start at 1".into()));
        }
        check_penalizer(raw.clv.penalizer).map_err(|e| invalid("clv.penalizer", e.to_string()))?;
        Ok(ClvSpec {
            file: file.to_path_buf(),
            kind,
            description: raw.description,
            feature_set,
            feature_set_version: raw.feature_set_version,
            penalizer: raw.clv.penalizer,
        })
    }
}
