//! The price table the planner reads: on-demand prices of SageMaker batch-transform
//! instance types in one region (`pricing/sagemaker-transform-us-east-1.toml`, embedded as
//! the default, or `[aws.sagemaker] prices`), parsed and checked.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::PlanError;

/// The default price table (on-demand, us-east-1), embedded in the binary.
pub const DEFAULT_PRICES_TOML: &str =
    include_str!("../../../pricing/sagemaker-transform-us-east-1.toml");
/// Where [`DEFAULT_PRICES_TOML`] lives in the repository (for messages).
pub const DEFAULT_PRICES_PATH: &str = "pricing/sagemaker-transform-us-east-1.toml";
/// Types SageMaker does not offer for batch transform; a price table listing one is wrong.
const NOT_FOR_TRANSFORM: &[&str] = &["ml.c5.large"];

/// A price table: on-demand prices of transform instance types in one region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceTable {
    /// Where the prices come from, honestly (a page, a third-party table, an API call).
    pub source: String,
    /// When they were read (YYYY-MM-DD).
    pub date: String,
    /// The AWS region the prices are for.
    pub region: String,
    /// Must be USD: the planner reports `usd_per_hour` and `est_cost_usd`.
    pub currency: String,
    /// One `[[instance]]` entry per instance type.
    #[serde(rename = "instance")]
    pub instances: Vec<InstancePrice>,
}

/// One instance type and its on-demand price.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstancePrice {
    /// E.g. `ml.m5.xlarge`.
    #[serde(rename = "type")]
    pub instance_type: String,
    pub vcpus: u32,
    /// Memory in GiB, as AWS publishes it.
    pub memory_gib: f64,
    /// On-demand price of one instance for one hour.
    pub usd_per_hour: f64,
}

impl PriceTable {
    /// Parses and checks a price table; `origin` names it in errors (a path, or the
    /// embedded default).
    pub fn parse(text: &str, origin: &str) -> Result<PriceTable, PlanError> {
        let bad = |field: &str, reason: String| PlanError::Prices {
            origin: origin.to_string(),
            field: field.to_string(),
            reason,
        };
        let t: PriceTable = toml::from_str(text).map_err(|source| PlanError::PricesToml {
            origin: origin.to_string(),
            source,
        })?;
        if t.source.trim().is_empty() {
            return Err(bad(
                "source",
                "empty: say where the prices come from".into(),
            ));
        }
        if chrono::NaiveDate::parse_from_str(&t.date, "%Y-%m-%d").is_err() {
            return Err(bad(
                "date",
                format!("{:?} is not a YYYY-MM-DD date", t.date),
            ));
        }
        if t.region.trim().is_empty() {
            return Err(bad("region", "empty".into()));
        }
        if t.currency != "USD" {
            return Err(bad(
                "currency",
                format!("{:?}: prices must be in USD (usd_per_hour)", t.currency),
            ));
        }
        if t.instances.is_empty() {
            return Err(bad("instance", "no [[instance]] entries".into()));
        }
        for (i, p) in t.instances.iter().enumerate() {
            let field = |f: &str| format!("instance[{i}].{f}");
            if !p.instance_type.starts_with("ml.") {
                return Err(bad(
                    &field("type"),
                    format!(
                        "{:?} is not a SageMaker instance type (ml.*)",
                        p.instance_type
                    ),
                ));
            }
            if NOT_FOR_TRANSFORM.contains(&p.instance_type.as_str()) {
                return Err(bad(
                    &field("type"),
                    format!("{} is not offered for batch transform", p.instance_type),
                ));
            }
            if t.instances[..i]
                .iter()
                .any(|q| q.instance_type == p.instance_type)
            {
                return Err(bad(
                    &field("type"),
                    format!("{} is listed twice", p.instance_type),
                ));
            }
            if p.vcpus == 0 {
                return Err(bad(&field("vcpus"), "must be at least 1".into()));
            }
            if !(p.memory_gib.is_finite() && p.memory_gib > 0.0) {
                return Err(bad(&field("memory_gib"), "must be above 0".into()));
            }
            if !(p.usd_per_hour.is_finite() && p.usd_per_hour > 0.0) {
                return Err(bad(&field("usd_per_hour"), "must be above 0".into()));
            }
        }
        Ok(t)
    }

    /// The embedded default table (`pricing/sagemaker-transform-us-east-1.toml`).
    pub fn embedded() -> Result<PriceTable, PlanError> {
        PriceTable::parse(DEFAULT_PRICES_TOML, DEFAULT_PRICES_PATH)
    }

    /// The entry of one instance type.
    pub fn get(&self, instance_type: &str) -> Option<&InstancePrice> {
        self.instances
            .iter()
            .find(|p| p.instance_type == instance_type)
    }

    /// Every instance type, in the table's order.
    pub fn types(&self) -> Vec<&str> {
        self.instances
            .iter()
            .map(|p| p.instance_type.as_str())
            .collect()
    }
}

/// Loads a price table: the file at `path`, or the embedded default when `None`.
pub fn load_prices(path: Option<&Path>) -> Result<PriceTable, PlanError> {
    match path {
        None => PriceTable::embedded(),
        Some(p) => {
            let text =
                crate::project::read_definition(p).map_err(|error| PlanError::ReadPrices {
                    path: p.display().to_string(),
                    error,
                })?;
            PriceTable::parse(&text, &p.display().to_string())
        }
    }
}
