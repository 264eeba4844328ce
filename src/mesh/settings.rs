//! `[catalog]` and `[events]` in `c360.toml`, and the classification of product columns.

use serde::{Deserialize, Serialize};

/// `[catalog] kind`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CatalogKind {
    /// No central catalog (the embedded default): c360's own `catalog/<p>.json` only.
    #[default]
    None,
    /// The AWS Glue Data Catalog (needs the store on S3).
    Glue,
}

/// `[catalog]`: where products and feature snapshots are registered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogSettings {
    #[serde(default)]
    pub kind: CatalogKind,
    /// The Glue database of the data products (created when missing). Default
    /// `<project name>_products`.
    #[serde(default)]
    pub products_database: Option<String>,
    /// The Glue database of the feature snapshots (created when missing). Default
    /// `<project name>_features`.
    #[serde(default)]
    pub features_database: Option<String>,
    /// The Data Catalog's id (the owning account, for a central catalog in another
    /// account). Default: the caller's account.
    #[serde(default)]
    pub catalog_id: Option<String>,
    /// The databases' owner (an email or group), written as database parameter `owner`.
    #[serde(default)]
    pub owner: Option<String>,
    /// Tag databases, tables and columns with Lake Formation tags (`domain`,
    /// `data_product`, `classification`), creating the tag keys when missing.
    #[serde(default)]
    pub lf_tags: bool,
}

/// Whether `s` is a Glue database name (1 to 255 of lowercase letters, digits, `_`).
pub fn is_database_name(s: &str) -> bool {
    (1..=255).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Whether `s` can be a Lake Formation tag key (1..=128) or value (1..=256): letters,
/// digits, spaces and `_ . : / = + - @ %`.
pub fn is_lf_tag_text(s: &str, max: usize) -> bool {
    (1..=max).contains(&s.chars().count())
        && s.chars()
            .all(|c| c.is_alphanumeric() || c == ' ' || "_.:/=+-@%".contains(c))
}

/// The tag keys c360 sets itself (a job's `[product.lf_tags]` may not set them).
pub const RESERVED_TAG_KEYS: [&str; 3] = ["domain", "data_product", "classification"];

impl CatalogSettings {
    /// Checks formats (pure): `(key, reason)` per problem.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errs = Vec::new();
        for (k, v) in [
            ("catalog.products_database", &self.products_database),
            ("catalog.features_database", &self.features_database),
        ] {
            if let Some(v) = v {
                if !is_database_name(v) {
                    errs.push((
                        k.to_string(),
                        format!("{v:?} is not a Glue database name: 1 to 255 lowercase letters, digits and _"),
                    ));
                }
            }
        }
        if let Some(id) = &self.catalog_id {
            if !(id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit())) {
                errs.push((
                    "catalog.catalog_id".into(),
                    format!("{id:?} is not an AWS account id (12 digits)"),
                ));
            }
        }
        if self.kind == CatalogKind::None && self.lf_tags {
            errs.push((
                "catalog.lf_tags".into(),
                "Lake Formation tags need a catalog: set kind = \"glue\" (or remove lf_tags)"
                    .into(),
            ));
        }
        errs
    }
}

impl Default for CatalogSettings {
    fn default() -> Self {
        CatalogSettings {
            kind: CatalogKind::None,
            products_database: None,
            features_database: None,
            catalog_id: None,
            owner: None,
            lf_tags: false,
        }
    }
}

/// `[events] kind`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventsKind {
    /// No events (the embedded default).
    #[default]
    None,
    /// Amazon EventBridge `PutEvents`.
    Eventbridge,
}

/// `[events]`: where product events go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSettings {
    #[serde(default)]
    pub kind: EventsKind,
    /// The event bus's name or ARN (default `default`).
    #[serde(default = "default_bus")]
    pub bus_name: String,
    /// The events' `source` (default `c360`).
    #[serde(default = "default_source")]
    pub source: String,
}

impl Default for EventSettings {
    fn default() -> Self {
        EventSettings {
            kind: EventsKind::None,
            bus_name: default_bus(),
            source: default_source(),
        }
    }
}

fn default_bus() -> String {
    "default".into()
}
fn default_source() -> String {
    "c360".into()
}

/// A column's (or table's) sensitivity: ODCS's `classification`, and the value of the Lake
/// Formation tag `classification`.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Classification {
    Public,
    #[default]
    Internal,
    /// Identifiers (`customer_id`): joinable to personal data inside authorised systems.
    Confidential,
}

impl Classification {
    /// Every value, least sensitive first.
    pub const ALL: [Classification; 3] = [
        Classification::Public,
        Classification::Internal,
        Classification::Confidential,
    ];

    /// As written in contracts and tags (`public`, `internal`, `confidential`).
    pub fn as_str(self) -> &'static str {
        match self {
            Classification::Public => "public",
            Classification::Internal => "internal",
            Classification::Confidential => "confidential",
        }
    }
}

impl std::fmt::Display for Classification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}
