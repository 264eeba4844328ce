//! Job definitions: `jobs/<name>.toml`, parsed then validated (purely) into a [`Job`].

use std::path::{Path, PathBuf};

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::features::DefError;

/// A job file as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct JobFile {
    /// The job's name (also its ledger folder); the file is `jobs/<name>.toml`.
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Cron schedule (5 fields, or 6 with seconds first), e.g. "0 6 * * MON".
    pub schedule: String,
    /// Time zone of the schedule (IANA name), default UTC.
    #[serde(default = "utc")]
    pub timezone: String,
    /// Which as-of date a run scores: "yesterday", "today", "last_month_end",
    /// "last_sunday", or a fixed date YYYY-MM-DD.
    #[serde(default = "yesterday")]
    pub as_of: String,
    /// What the service's scheduler does with fires missed while it was down: "skip"
    /// (default), "latest" (run the most recent missed fire once) or "all" (each, in order).
    /// Left out of the definition hash when "skip", so run ids stay as they were.
    #[serde(default, skip_serializing_if = "CatchUp::is_skip")]
    pub catch_up: CatchUp,
    /// The model folder under models/.
    pub model: String,
    /// "local" (embedded default) or "sagemaker".
    #[serde(default = "local")]
    pub backend: String,
    pub product: ProductFile,
    #[serde(default)]
    pub transform: TransformFile,
    #[serde(default)]
    pub gates: GatesFile,
}

/// The scheduler's catch-up policy after downtime (`catch_up` in a job file).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CatchUp {
    #[default]
    Skip,
    Latest,
    All,
}

impl CatchUp {
    pub fn is_skip(&self) -> bool {
        *self == CatchUp::Skip
    }
}

fn utc() -> String {
    "UTC".into()
}
fn yesterday() -> String {
    "yesterday".into()
}
fn local() -> String {
    "local".into()
}

/// `[product]`: the data product the job publishes.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProductFile {
    pub name: String,
    /// The owning domain of the data mesh.
    pub domain: String,
    /// The owning team (an email or group).
    pub owner: String,
    pub description: String,
    #[serde(default)]
    pub consumers: Vec<String>,
    /// How long versions are kept (days).
    #[serde(default = "retention")]
    pub retention_days: u32,
    /// The schema's major version.
    #[serde(default = "one")]
    pub major: u32,
    /// Name of the score column.
    #[serde(default = "score")]
    pub score_column: String,
    /// Feature columns copied into the product (e.g. rfm_segment); never PII.
    #[serde(default)]
    pub include: Vec<String>,
}

fn retention() -> u32 {
    365
}
fn one() -> u32 {
    1
}
fn score() -> String {
    "score".into()
}

/// `[transform]`: pins for the batch transform (unset = planned).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TransformFile {
    /// How many input part files to write.
    pub parts: Option<u32>,
    pub instance_type: Option<String>,
    pub instance_count: Option<u32>,
    pub max_payload_mb: Option<u32>,
    pub max_concurrent_transforms: Option<u32>,
    pub invocation_timeout_secs: Option<u32>,
    pub invocation_max_retries: Option<u32>,
}

/// `[gates]`: checks before publishing.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GatesFile {
    /// Scores must lie in [min_score, max_score].
    #[serde(default)]
    pub min_score: f64,
    #[serde(default = "one_f")]
    pub max_score: f64,
    /// At least this many distinct scores (a constant model output is a broken model).
    #[serde(default = "two")]
    pub min_distinct_scores: u64,
    /// Largest allowed change of the mean score against the previous version.
    #[serde(default)]
    pub max_mean_shift: Option<f64>,
}

impl Default for GatesFile {
    fn default() -> Self {
        GatesFile {
            min_score: 0.0,
            max_score: 1.0,
            min_distinct_scores: 2,
            max_mean_shift: None,
        }
    }
}

fn one_f() -> f64 {
    1.0
}
fn two() -> u64 {
    2
}

/// The as-of rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum AsOfRule {
    Today,
    Yesterday,
    LastMonthEnd,
    LastSunday,
    Fixed(NaiveDate),
}

impl AsOfRule {
    pub fn parse(s: &str) -> Option<AsOfRule> {
        Some(match s {
            "today" => AsOfRule::Today,
            "yesterday" => AsOfRule::Yesterday,
            "last_month_end" => AsOfRule::LastMonthEnd,
            "last_sunday" => AsOfRule::LastSunday,
            d => AsOfRule::Fixed(d.parse().ok()?),
        })
    }

    /// The as-of date for a run on `today`.
    pub fn resolve(&self, today: NaiveDate) -> NaiveDate {
        match self {
            AsOfRule::Today => today,
            AsOfRule::Yesterday => today.pred_opt().unwrap_or(today),
            AsOfRule::LastMonthEnd => today
                .with_day(1)
                .and_then(|d| d.pred_opt())
                .unwrap_or(today),
            AsOfRule::LastSunday => {
                let n = today.weekday().num_days_from_sunday();
                let back = if n == 0 { 7 } else { n };
                today - chrono::Duration::days(back as i64)
            }
            AsOfRule::Fixed(d) => *d,
        }
    }
}

/// A validated job.
#[derive(Debug, Clone)]
pub struct Job {
    pub file: PathBuf,
    pub def: JobFile,
    pub as_of: AsOfRule,
    /// `sha256:` of the canonical definition.
    pub hash: String,
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 48
        && s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Parses a cron expression as people write it: 5 fields (minute hour day-of-month month
/// day-of-week), or 6 with seconds first; the same parser the scheduler uses.
pub fn check_cron(s: &str) -> Result<(), String> {
    use croner::parser::{CronParser, Seconds, Year};
    let fields = s.split_whitespace().count();
    if fields != 5 && fields != 6 {
        return Err(format!(
            "{s:?} has {fields} fields; write minute hour day-of-month month day-of-week (optionally seconds first)"
        ));
    }
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
        .parse(s)
        .map(|_| ())
        .map_err(|e| format!("{s:?}: {e}"))
}

/// Loads and validates one job file.
pub fn load(path: &Path) -> Result<Job, Vec<DefError>> {
    let file = path.display().to_string();
    let err = |key: &str, reason: String| DefError {
        file: file.clone(),
        key: key.into(),
        reason,
    };
    let text = crate::project::read_definition(path)
        .map_err(|e| vec![err("(file)", format!("cannot read: {e}"))])?;
    let def: JobFile = toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map(|s| {
                format!(
                    "line {}",
                    text.as_bytes()[..s.start.min(text.len())]
                        .iter()
                        .filter(|&&b| b == b'\n')
                        .count()
                        + 1
                )
            })
            .unwrap_or_else(|| "(document)".into());
        vec![err(&line, crate::project::toml_reason(&e))]
    })?;
    let mut errs = Vec::new();
    if !valid_name(&def.name) {
        errs.push(err(
            "name",
            format!(
                "{:?}: lowercase letters, digits, '-' and '_', up to 48",
                def.name
            ),
        ));
    }
    if path.file_stem().and_then(|s| s.to_str()) != Some(def.name.as_str()) {
        errs.push(err(
            "name",
            format!(
                "the job is named {:?}: name its file {}.toml",
                def.name, def.name
            ),
        ));
    }
    if let Err(e) = check_cron(&def.schedule) {
        errs.push(err("schedule", e));
    }
    if <chrono_tz::Tz as std::str::FromStr>::from_str(&def.timezone).is_err() {
        errs.push(err(
            "timezone",
            format!(
                "{:?} is not an IANA time zone (e.g. UTC, Europe/Berlin)",
                def.timezone
            ),
        ));
    }
    let as_of = AsOfRule::parse(&def.as_of);
    if as_of.is_none() {
        errs.push(err(
            "as_of",
            format!(
                "{:?}: use yesterday, today, last_month_end, last_sunday or YYYY-MM-DD",
                def.as_of
            ),
        ));
    }
    if def.backend != "local" && def.backend != "sagemaker" {
        errs.push(err(
            "backend",
            format!("{:?}: use local or sagemaker", def.backend),
        ));
    }
    if !valid_name(&def.product.name) {
        errs.push(err(
            "product.name",
            format!("{:?} is not a valid product name", def.product.name),
        ));
    }
    if def.product.major == 0 {
        errs.push(err("product.major", "versions start at 1".into()));
    }
    // PII in product.include is refused by lineage where the feature sets are known
    // (`features::lineage::pii_includes`, from `c360 validate` and every run).
    let g = &def.gates;
    // NaN compares false with everything: a NaN bound would silently switch its gate off.
    for (key, v) in [
        ("gates.min_score", Some(g.min_score)),
        ("gates.max_score", Some(g.max_score)),
        ("gates.max_mean_shift", g.max_mean_shift),
    ] {
        if let Some(v) = v {
            if !v.is_finite() {
                errs.push(err(key, format!("{v} is not a finite number")));
            }
        }
    }
    if g.max_mean_shift.is_some_and(|m| m < 0.0) {
        errs.push(err("gates.max_mean_shift", "must be 0 or more".into()));
    }
    if g.min_score > g.max_score {
        errs.push(err(
            "gates.min_score",
            "must not exceed gates.max_score".into(),
        ));
    }
    if let Some(p) = def.transform.parts {
        if p == 0 || p > 10_000 {
            errs.push(err("transform.parts", "between 1 and 10000".into()));
        }
    }
    let t = &def.transform;
    if let Some(mb) = t.max_payload_mb {
        if mb == 0 || mb > 100 {
            errs.push(err(
                "transform.max_payload_mb",
                "between 1 and 100 (SageMaker's MaxPayloadInMB)".into(),
            ));
        }
        if let Some(c) = t.max_concurrent_transforms {
            if u64::from(c) * u64::from(mb) > 100 {
                errs.push(err(
                    "transform.max_concurrent_transforms",
                    format!("{c} x max_payload_mb {mb} is over SageMaker's limit of 100 (MaxConcurrentTransforms x MaxPayloadInMB)"),
                ));
            }
        }
    }
    if let Some(n) = t.instance_count {
        if !(1..=100).contains(&n) {
            errs.push(err(
                "transform.instance_count",
                format!("{n} is out of range: 1 to 100 (SageMaker's InstanceCount)"),
            ));
        }
    }
    if let Some(c) = t.max_concurrent_transforms {
        if c > 100 {
            errs.push(err(
                "transform.max_concurrent_transforms",
                format!("{c} is out of range: 0 (as the model says) to 100"),
            ));
        }
    }
    if let Some(r) = t.invocation_max_retries {
        if r > 3 {
            errs.push(err("transform.invocation_max_retries", "0 to 3".into()));
        }
    }
    if let Some(s) = t.invocation_timeout_secs {
        if !(1..=3600).contains(&s) {
            errs.push(err("transform.invocation_timeout_secs", "1 to 3600".into()));
        }
    }
    if !errs.is_empty() {
        return Err(errs);
    }
    let hash = {
        use sha2::{Digest, Sha256};
        let canonical = serde_json::to_vec(&def).unwrap_or_default();
        format!("sha256:{}", hex::encode(Sha256::digest(&canonical)))
    };
    Ok(Job {
        file: path.to_path_buf(),
        as_of: as_of.unwrap_or(AsOfRule::Yesterday),
        def,
        hash,
    })
}

/// Every job under `dir`.
pub fn load_all(dir: &Path) -> (Vec<Job>, Vec<DefError>) {
    let mut jobs = Vec::new();
    let mut errs = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return (jobs, errs);
    };
    let mut files: Vec<_> = rd
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    for f in files {
        match load(&f) {
            Ok(j) => jobs.push(j),
            Err(e) => errs.extend(e),
        }
    }
    (jobs, errs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_of_rules_resolve() {
        let d = |s: &str| s.parse::<NaiveDate>().unwrap();
        let thu = d("2024-10-03");
        assert_eq!(AsOfRule::Yesterday.resolve(thu), d("2024-10-02"));
        assert_eq!(AsOfRule::LastMonthEnd.resolve(thu), d("2024-09-30"));
        assert_eq!(AsOfRule::LastSunday.resolve(thu), d("2024-09-29"));
        assert_eq!(
            AsOfRule::LastSunday.resolve(d("2024-09-29")),
            d("2024-09-22")
        );
        assert_eq!(
            AsOfRule::parse("2024-01-31"),
            Some(AsOfRule::Fixed(d("2024-01-31")))
        );
        assert_eq!(AsOfRule::parse("next_week"), None);
    }

    #[test]
    fn cron_shape() {
        assert!(check_cron("0 6 * * MON").is_ok());
        assert!(check_cron("*/5 0 6 * * 1-5").is_ok());
        assert!(check_cron("0 6 * *").is_err());
        assert!(check_cron("0 6 * * $").is_err());
        assert!(check_cron("61 6 * * MON").is_err(), "minute out of range");
    }
}
