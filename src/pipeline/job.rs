//! Job definitions: `jobs/<name>.toml`, parsed ([`JobFile`], only here) then validated
//! (purely, every problem with its line) into a [`Job`] of typed fields.

use std::path::{Path, PathBuf};

use chrono::{Datelike, NaiveDate};
use serde::{Deserialize, Serialize};

use crate::diagnostic::{toml_error, Collector, Diagnostic};
use crate::names::{JobName, ModelName, ProductName};
use crate::schedule::CronSchedule;
use crate::transform::planner::Pins;

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

/// `[product]`: the data product the job publishes. As written the name is text; a
/// validated [`Job`] holds it as a [`ProductName`].
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProductFile<N = String> {
    pub name: N,
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
    /// The product's sensitivity (`public`, `internal`, `confidential`): the contract's
    /// and the Lake Formation tag `classification` of the table and of every column not in
    /// `column_classification`. Default `internal`.
    #[serde(default)]
    pub classification: crate::mesh::Classification,
    /// Column -> its classification, overriding `classification`. `customer_id` is
    /// `confidential` unless given here.
    #[serde(default)]
    pub column_classification: std::collections::BTreeMap<String, crate::mesh::Classification>,
    /// More Lake Formation tags (key = value) on the product's database and table, beside
    /// the ones c360 sets (`domain`, `data_product`, `classification`).
    #[serde(default)]
    pub lf_tags: std::collections::BTreeMap<String, String>,
}

impl ProductFile {
    /// The same section with its name parsed.
    fn with_name(self, name: ProductName) -> ProductFile<ProductName> {
        ProductFile {
            name,
            domain: self.domain,
            owner: self.owner,
            description: self.description,
            consumers: self.consumers,
            retention_days: self.retention_days,
            major: self.major,
            score_column: self.score_column,
            include: self.include,
            classification: self.classification,
            column_classification: self.column_classification,
            lf_tags: self.lf_tags,
        }
    }
}

impl<N> ProductFile<N> {
    /// A column's classification: `column_classification`, else `confidential` for the
    /// identifier `customer_id`, else the product's `classification`.
    pub fn column_classification_of(&self, column: &str) -> crate::mesh::Classification {
        match self.column_classification.get(column) {
            Some(c) => *c,
            None if column == "customer_id" => crate::mesh::Classification::Confidential,
            None => self.classification,
        }
    }
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
///
/// Serialized (for the definition hash) with the fields in their historical order and
/// names, so that run ids stay as they were.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TransformFile {
    /// What the planner would otherwise choose: type, count, parts, concurrency, payload.
    #[serde(flatten)]
    pub pins: Pins,
    /// Seconds one invocation may take (SageMaker's InvocationsTimeoutInSeconds), 1 to 3600.
    #[serde(
        rename(serialize = "invocation_timeout_secs"),
        alias = "invocation_timeout_secs"
    )]
    pub invocation_timeout_seconds: Option<u32>,
    /// Retries of a failed invocation, 0 to 3.
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

impl std::fmt::Display for AsOfRule {
    /// The rule as written in a job file (`yesterday`, `last_month_end`, `2024-01-31`).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AsOfRule::Today => f.pad("today"),
            AsOfRule::Yesterday => f.pad("yesterday"),
            AsOfRule::LastMonthEnd => f.pad("last_month_end"),
            AsOfRule::LastSunday => f.pad("last_sunday"),
            AsOfRule::Fixed(d) => f.pad(&d.to_string()),
        }
    }
}

/// A validated job: the job file's settings, parsed into their types.
#[derive(Debug, Clone)]
pub struct Job {
    /// The job file (`jobs/<name>.toml`).
    pub file: PathBuf,
    /// The job's name (also its ledger folder).
    pub name: JobName,
    /// Free text.
    pub description: String,
    /// When it runs (`schedule` in `timezone`).
    pub schedule: CronSchedule,
    /// Which as-of date a run scores.
    pub as_of: AsOfRule,
    /// What the scheduler does with fires missed while it was down.
    pub catch_up: CatchUp,
    /// The model folder under models/.
    pub model: ModelName,
    /// `local` or `sagemaker`.
    pub backend: String,
    /// The data product it publishes.
    pub product: ProductFile<ProductName>,
    /// Pins for the batch transform.
    pub transform: TransformFile,
    /// Checks before publishing.
    pub gates: GatesFile,
    /// `sha256:` of the canonical definition.
    pub hash: String,
}

/// Loads and validates one job file: every problem of the file, each with its key and line.
pub fn load(path: &Path) -> Result<Job, Vec<Diagnostic>> {
    let file = path.display().to_string();
    let text = crate::project::read_definition(path).map_err(|e| {
        vec![Diagnostic::new(
            &file,
            "(file)",
            format!("cannot read: {e}"),
        )]
    })?;
    let def: JobFile = toml::from_str(&text).map_err(|e| vec![toml_error(&file, &text, &e)])?;
    validate(def, path, &text)
}

/// Checks a parsed job file (pure): `text` places each problem on its line.
pub fn validate(def: JobFile, path: &Path, text: &str) -> Result<Job, Vec<Diagnostic>> {
    let mut errs = Collector::new(path, Some(text));
    let name = JobName::parse(def.name.as_str())
        .map_err(|e| errs.push("name", e.to_string()))
        .ok();
    if path.file_stem().and_then(|s| s.to_str()) != Some(def.name.as_str()) {
        errs.push(
            "name",
            format!(
                "the job is named {:?}: name its file {}.toml",
                def.name, def.name
            ),
        );
    }
    // Both keys are checked, so that a bad zone is reported with a bad expression.
    let schedule = CronSchedule::parse(&def.schedule, &def.timezone);
    if let Err(e) = &schedule {
        errs.push(e.key(), e.to_string());
        if e.key() == "schedule" {
            if let Err(tz) = CronSchedule::parse("0 0 * * *", &def.timezone) {
                errs.push(tz.key(), tz.to_string());
            }
        }
    }
    let as_of = AsOfRule::parse(&def.as_of);
    if as_of.is_none() {
        errs.push(
            "as_of",
            format!(
                "{:?}: use yesterday, today, last_month_end, last_sunday or YYYY-MM-DD",
                def.as_of
            ),
        );
    }
    if def.backend != "local" && def.backend != "sagemaker" {
        errs.push(
            "backend",
            format!("{:?}: use local or sagemaker", def.backend),
        );
    }
    let product_name = ProductName::parse(def.product.name.as_str())
        .map_err(|e| errs.push("product.name", e.to_string()))
        .ok();
    let model = ModelName::parse(def.model.as_str())
        .map_err(|e| errs.push("model", e.to_string()))
        .ok();
    if def.product.major == 0 {
        errs.push("product.major", "versions start at 1");
    }
    // PII in product.include is refused by lineage where the feature sets are known
    // (`features::lineage::pii_includes`, from `c360 validate` and every run).
    check_gates(&def.gates, &mut errs);
    check_transform(&def.transform, &mut errs);
    let (Ok(schedule), Some(as_of), Some(name), Some(product_name), Some(model), true) =
        (schedule, as_of, name, product_name, model, errs.is_empty())
    else {
        return Err(errs.into_vec());
    };
    let hash = {
        use sha2::{Digest, Sha256};
        let canonical = serde_json::to_vec(&def).unwrap_or_default();
        format!("sha256:{}", hex::encode(Sha256::digest(&canonical)))
    };
    Ok(Job {
        file: path.to_path_buf(),
        name,
        description: def.description,
        schedule,
        as_of,
        catch_up: def.catch_up,
        model,
        backend: def.backend,
        product: def.product.with_name(product_name),
        transform: def.transform,
        gates: def.gates,
        hash,
    })
}

/// `[gates]`: finite bounds, in order.
fn check_gates(g: &GatesFile, errs: &mut Collector) {
    // NaN compares false with everything: a NaN bound would silently switch its gate off.
    for (key, v) in [
        ("gates.min_score", Some(g.min_score)),
        ("gates.max_score", Some(g.max_score)),
        ("gates.max_mean_shift", g.max_mean_shift),
    ] {
        if let Some(v) = v {
            if !v.is_finite() {
                errs.push(key, format!("{v} is not a finite number"));
            }
        }
    }
    if g.max_mean_shift.is_some_and(|m| m < 0.0) {
        errs.push("gates.max_mean_shift", "must be 0 or more");
    }
    if g.min_score > g.max_score {
        errs.push("gates.min_score", "must not exceed gates.max_score");
    }
}

/// `[transform]`: SageMaker's ranges.
fn check_transform(t: &TransformFile, errs: &mut Collector) {
    let p = &t.pins;
    if let Some(n) = p.parts {
        if n == 0 || n > 10_000 {
            errs.push("transform.parts", "between 1 and 10000");
        }
    }
    if let Some(mb) = p.max_payload_mb {
        if mb == 0 || mb > 100 {
            errs.push(
                "transform.max_payload_mb",
                "between 1 and 100 (SageMaker's MaxPayloadInMB)",
            );
        }
        if let Some(c) = p.max_concurrent_transforms {
            if u64::from(c) * u64::from(mb) > 100 {
                errs.push(
                    "transform.max_concurrent_transforms",
                    format!("{c} x max_payload_mb {mb} is over SageMaker's limit of 100 (MaxConcurrentTransforms x MaxPayloadInMB)"),
                );
            }
        }
    }
    if let Some(n) = p.instance_count {
        if !(1..=100).contains(&n) {
            errs.push(
                "transform.instance_count",
                format!("{n} is out of range: 1 to 100 (SageMaker's InstanceCount)"),
            );
        }
    }
    if let Some(c) = p.max_concurrent_transforms {
        if c > 100 {
            errs.push(
                "transform.max_concurrent_transforms",
                format!("{c} is out of range: 0 (as the model says) to 100"),
            );
        }
    }
    if let Some(r) = t.invocation_max_retries {
        if r > 3 {
            errs.push("transform.invocation_max_retries", "0 to 3");
        }
    }
    if let Some(s) = t.invocation_timeout_seconds {
        if !(1..=3600).contains(&s) {
            errs.push("transform.invocation_timeout_seconds", "1 to 3600");
        }
    }
}

/// Every job under `dir`, and every problem of the files that did not load.
pub fn load_all(dir: &Path) -> (Vec<Job>, Vec<Diagnostic>) {
    crate::diagnostic::load_folder(dir, "toml", load)
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

    const JOB: &str = "name = \"j\"\nschedule = \"0 6 1 * *\"\nmodel = \"m\"\n[product]\nname = \"p\"\ndomain = \"d\"\nowner = \"o\"\ndescription = \"x\"\n";

    fn parse(text: &str) -> Result<Job, Vec<Diagnostic>> {
        let def: JobFile =
            toml::from_str(text).map_err(|e| vec![toml_error("j.toml", text, &e)])?;
        validate(def, Path::new("jobs/j.toml"), text)
    }

    #[test]
    fn transform_keys_keep_their_serialized_names_and_old_spellings() {
        let t: TransformFile = toml::from_str(
            "parts = 2\ninstance_type = \"ml.m5.xlarge\"\ninvocation_timeout_secs = 30\n",
        )
        .unwrap();
        assert_eq!(t.pins.parts, Some(2));
        assert_eq!(t.invocation_timeout_seconds, Some(30));
        let t: TransformFile = toml::from_str("invocation_timeout_seconds = 31\n").unwrap();
        assert_eq!(t.invocation_timeout_seconds, Some(31));
        // The definition hash reads this JSON: the historical names, in the historical order.
        assert_eq!(
            serde_json::to_string(&TransformFile::default()).unwrap(),
            "{\"parts\":null,\"instance_type\":null,\"instance_count\":null,\"max_payload_mb\":null,\"max_concurrent_transforms\":null,\"invocation_timeout_secs\":null,\"invocation_max_retries\":null}"
        );
        assert!(toml::from_str::<TransformFile>("bogus = 1\n").is_err());
    }

    #[test]
    fn a_job_has_typed_fields_and_every_problem_has_its_line() {
        let j = parse(JOB).unwrap();
        assert_eq!(j.schedule.expr, "0 6 1 * *");
        assert_eq!(j.schedule.freshness_days(), 31);
        assert_eq!(j.as_of, AsOfRule::Yesterday);
        assert_eq!(j.as_of.to_string(), "yesterday");
        let bad =
            JOB.replace("0 6 1 * *", "61 6 1 * *") + "[transform]\nparts = 0\ninstance_count = 0\n";
        let errs = parse(&bad).unwrap_err();
        let keys: Vec<(&str, Option<usize>)> =
            errs.iter().map(|e| (e.key.as_str(), e.line)).collect();
        assert_eq!(
            keys,
            vec![
                ("schedule", Some(2)),
                ("transform.parts", Some(10)),
                ("transform.instance_count", Some(11)),
            ]
        );
        let errs =
            parse(&JOB.replace("model = ", "timezone = \"Mars/Olympus\"\nmodel = ")).unwrap_err();
        assert_eq!(errs[0].key, "timezone");
        assert!(errs[0].to_string().contains("(line 3)"), "{}", errs[0]);
    }

    /// The rule pads like a string in tables (`{:<14}`), the fixed date too.
    #[test]
    fn as_of_rules_pad() {
        assert_eq!(format!("{:<10}|", AsOfRule::Today), "today     |");
        let d = AsOfRule::Fixed(chrono::NaiveDate::from_ymd_opt(2024, 1, 31).unwrap());
        assert_eq!(format!("{d:>12}|"), "  2024-01-31|");
    }
}
