//! Feature-set definitions: the TOML files under `features/`, parsed, then validated
//! (purely, without reading data) into a [`FeatureSet`] whose features are typed and in
//! dependency order. Every problem is reported with file, key and reason.
//!
//! This module owns the validated types ([`FeatureSet`], [`Feature`], [`Kind`], [`Label`])
//! and the errors; its parts are the file as written (`file`), each feature's kind read
//! from its fields (`kind`), the dependency order (`deps`), and the typed pass (`validate`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::expr::{Expr, Ty};
use crate::names::SetName;
use crate::source::TableSpec;

mod deps;
mod file;
mod kind;
mod validate;

pub use file::{CaseDef, FeatureDef, LabelDef, SetFile};
pub use validate::validate;

/// A problem in a definition file: the crate's one diagnostic type.
pub use crate::diagnostic::Diagnostic as DefError;
/// All problems found in one or more files.
pub use crate::diagnostic::Diagnostics as DefErrors;

/// An aggregation function (`agg = "..."`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AggFn {
    Count,
    Sum,
    Mean,
    Min,
    Max,
    DistinctCount,
    First,
    Last,
    Any,
}

impl AggFn {
    fn parse(s: &str) -> Option<AggFn> {
        Some(match s {
            "count" => AggFn::Count,
            "sum" => AggFn::Sum,
            "mean" | "avg" => AggFn::Mean,
            "min" => AggFn::Min,
            "max" => AggFn::Max,
            "distinct_count" | "count_distinct" => AggFn::DistinctCount,
            "first" => AggFn::First,
            "last" => AggFn::Last,
            "any" => AggFn::Any,
            _ => return None,
        })
    }
}

/// A validated aggregation.
#[derive(Debug, Clone)]
pub struct Agg {
    pub table: &'static TableSpec,
    pub func: AggFn,
    pub column: Option<Expr>,
    pub filter: Option<Expr>,
    /// The event-time column.
    pub ts: String,
    /// Rows with `days_ago` in `[offset, offset + days)`; None = all history.
    pub window: Option<(u32, u32)>,
    pub per_day: bool,
    pub exclude_first_day: bool,
    /// Extra (non-contract) columns this aggregation reads.
    pub extra_columns: Vec<String>,
}

/// What a feature computes. [`kind`] reads it from the file's fields with
/// `Agg::extra_columns` empty; the typed pass ([`validate`]) fills them in.
#[derive(Debug, Clone)]
pub enum Kind {
    /// Aggregation over an event table, grouped by customer.
    Agg(Agg),
    /// A value of the customer's own row (the entity table).
    Entity { column: Expr, ts: String },
    /// Arithmetic over other features.
    Derived(Expr),
    /// 1..bins quantile score of another feature.
    Quantile {
        of: String,
        bins: u32,
        higher_is_better: bool,
        among: Option<Expr>,
    },
    /// First matching case wins.
    Case {
        cases: Vec<(Expr, Option<String>)>,
        otherwise: Option<String>,
    },
}

/// A validated, typed feature.
#[derive(Debug, Clone)]
pub struct Feature {
    pub name: String,
    pub description: String,
    pub hidden: bool,
    pub ty: Ty,
    pub kind: Kind,
    /// Features this one reads.
    pub deps: Vec<String>,
}

/// A validated label.
#[derive(Debug, Clone)]
pub struct Label {
    pub name: String,
    pub description: String,
    pub table: &'static TableSpec,
    pub filter: Option<Expr>,
    pub horizon_days: u32,
    pub no_event: bool,
}

/// A validated feature set: features in dependency order.
#[derive(Debug, Clone)]
pub struct FeatureSet {
    pub name: SetName,
    pub version: u32,
    pub description: String,
    pub owner: String,
    pub path: PathBuf,
    /// `sha256:` of the canonical definition (formatting and comments do not count).
    pub hash: String,
    pub features: Vec<Feature>,
    pub labels: Vec<Label>,
    /// Extra columns per table.
    pub extra_columns: BTreeMap<String, Vec<String>>,
    /// The declared type of each extra column, per table (`[columns.orders] discount =
    /// "float"`): compiled expressions type them as validation did.
    pub extra_types: BTreeMap<String, BTreeMap<String, Ty>>,
    /// The definition as written (and parsed).
    pub definition: SetFile,
}

impl FeatureSet {
    /// The declared extra columns of `table` and their types, if any.
    pub fn extra_types(&self, table: &str) -> Option<&BTreeMap<String, Ty>> {
        self.extra_types.get(table)
    }

    pub fn feature(&self, name: &str) -> Option<&Feature> {
        self.features.iter().find(|f| f.name == name)
    }

    /// Output columns (not hidden), in definition order.
    pub fn outputs(&self) -> Vec<&Feature> {
        let order: HashMap<&str, usize> = self
            .definition
            .features
            .iter()
            .enumerate()
            .map(|(i, f)| (f.name.as_str(), i))
            .collect();
        let mut out: Vec<&Feature> = self.features.iter().filter(|f| !f.hidden).collect();
        out.sort_by_key(|f| order.get(f.name.as_str()).copied().unwrap_or(usize::MAX));
        out
    }

    /// The tables the set reads (customers always).
    pub fn tables(&self) -> BTreeSet<&'static str> {
        let mut t = BTreeSet::from(["customers"]);
        for f in &self.features {
            if let Kind::Agg(a) = &f.kind {
                t.insert(a.table.name);
            }
        }
        t
    }

    pub fn label(&self, name: &str) -> Option<&Label> {
        self.labels.iter().find(|l| l.name == name)
    }
}

/// The most features (and labels) one set may define.
pub const MAX_FEATURES: usize = 500;
/// The longest chain of features computed from one another (`a` from `b` from `c` ...).
pub const MAX_CHAIN: usize = 32;
/// The most cases one mapping table may have.
pub const MAX_CASES: usize = 128;

/// Loads and validates one feature-set file.
pub fn load(path: &Path) -> Result<FeatureSet, DefErrors> {
    let file = path.display().to_string();
    let text = crate::project::read_definition(path).map_err(|e| {
        DefErrors(vec![DefError::new(
            file.clone(),
            "(file)",
            format!("cannot read: {e}"),
        )])
    })?;
    parse(&text, path)
}

/// Parses and validates a feature set from text (`path` names it in errors).
pub fn parse(text: &str, path: &Path) -> Result<FeatureSet, DefErrors> {
    let file = path.display().to_string();
    let set: SetFile = toml::from_str(text)
        .map_err(|e| DefErrors(vec![crate::diagnostic::toml_error_quoted(&file, text, &e)]))?;
    validate(set, path)
}

/// The problems found so far in one file.
struct Ctx {
    file: String,
    errors: Vec<DefError>,
}

impl Ctx {
    fn err(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.errors
            .push(DefError::new(self.file.clone(), key, reason));
    }
}
