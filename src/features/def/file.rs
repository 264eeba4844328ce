//! The feature-set file as written: the TOML structs `features/*.toml` deserialize into,
//! before any validation (see `validate` for what the fields must hold).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A feature set file as written.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SetFile {
    /// The set's name (also the store folder): lowercase letters, digits and `_`.
    pub name: String,
    /// Bumped by hand when the meaning of a feature changes; part of the store path.
    pub version: u32,
    #[serde(default)]
    pub description: String,
    /// The owning team, for the catalog.
    #[serde(default)]
    pub owner: String,
    /// The entity; only `customer_id` (one row per customer) today.
    #[serde(default = "default_entity")]
    pub entity: String,
    /// Columns beyond the contract that this set reads: `[columns.orders] discount = "float"`.
    #[serde(default)]
    pub columns: BTreeMap<String, BTreeMap<String, String>>,
    #[serde(default, rename = "feature")]
    pub features: Vec<FeatureDef>,
    #[serde(default, rename = "label")]
    pub labels: Vec<LabelDef>,
}

fn default_entity() -> String {
    "customer_id".into()
}

/// One feature as written. Exactly one of `agg`, `expr`, `quantile_of`, `cases` says its kind.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FeatureDef {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Computed for other features but not written to the store.
    #[serde(default, skip_serializing_if = "is_false")]
    pub hidden: bool,
    // --- aggregation over a table's rows on or before the as-of date
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    /// count, sum, mean, min, max, distinct_count, first, last, any
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agg: Option<String>,
    /// The aggregated value: a column or a row expression (e.g. `days_ago`, `amount * 2`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    /// Row filter.
    #[serde(rename = "where", skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// The event-time column (default: the table's, e.g. `order_ts`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ts: Option<String>,
    /// Only rows dated in the N days ending with the as-of date (minus `offset_days`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window_days: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub offset_days: Option<u32>,
    /// Roll rows up per calendar day first ("sum" of `column`), then aggregate the days.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_day: Option<String>,
    /// With `per_day`: leave out the first day (BTYD's repeat purchases).
    #[serde(default, skip_serializing_if = "is_false")]
    pub exclude_first_day: bool,
    // --- arithmetic over other features
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expr: Option<String>,
    // --- quantile score
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantile_of: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bins: Option<u32>,
    /// "higher" or "lower": which values earn the top score.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub better: Option<String>,
    /// Only rows where this holds are ranked (and scored); others get null.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub among: Option<String>,
    // --- mapping table
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cases: Option<Vec<CaseDef>>,
    #[serde(rename = "else", skip_serializing_if = "Option::is_none")]
    pub otherwise: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CaseDef {
    pub when: String,
    /// The value; omitted means null.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub then: Option<String>,
}

/// A label: whether something happens in the `horizon_days` after the as-of date.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LabelDef {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub table: String,
    #[serde(rename = "where", skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    pub horizon_days: u32,
    /// "no_event": 1 when no matching row in (D, D+horizon]; "any_event": 1 when some row.
    pub kind: String,
}
