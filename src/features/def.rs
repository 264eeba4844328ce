//! Feature-set definitions: the TOML files under `features/`, parsed, then validated
//! (purely, without reading data) into a [`FeatureSet`] whose features are typed and in
//! dependency order. Every problem is reported with file, key and reason.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::expr::{self, Expr, Scope, Ty};
use crate::source::{self, ColType, TableSpec};

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

/// A problem in a definition file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefError {
    pub file: String,
    pub key: String,
    pub reason: String,
}

impl fmt::Display for DefError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.file, self.key, self.reason)
    }
}

/// All problems found in one or more files.
#[derive(Debug, Clone, thiserror::Error)]
pub struct DefErrors(pub Vec<DefError>);

impl fmt::Display for DefErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

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
    pub name: String,
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
    pub source: SetFile,
}

impl FeatureSet {
    pub fn feature(&self, name: &str) -> Option<&Feature> {
        self.features.iter().find(|f| f.name == name)
    }

    /// Output columns (not hidden), in definition order.
    pub fn outputs(&self) -> Vec<&Feature> {
        let order: HashMap<&str, usize> = self
            .source
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
        DefErrors(vec![DefError {
            file: file.clone(),
            key: "(file)".into(),
            reason: format!("cannot read: {e}"),
        }])
    })?;
    parse(&text, path)
}

/// Parses and validates a feature set from text (`path` names it in errors).
pub fn parse(text: &str, path: &Path) -> Result<FeatureSet, DefErrors> {
    let file = path.display().to_string();
    let set: SetFile = toml::from_str(text).map_err(|e| {
        DefErrors(vec![DefError {
            file: file.clone(),
            key: toml_key(text, &e),
            reason: crate::project::toml_reason(&e),
        }])
    })?;
    validate(set, path)
}

/// The key path (or line) of a TOML error, for the message.
fn toml_key(text: &str, e: &toml::de::Error) -> String {
    match e.span() {
        Some(span) => {
            // Bytes, not a str slice: a span inside a character must not panic.
            let end = span.start.min(text.len());
            let line = text.as_bytes()[..end]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1;
            let snippet = text
                .lines()
                .nth(line - 1)
                .unwrap_or("")
                .trim()
                .chars()
                .take(60)
                .collect::<String>();
            format!("line {line} ({snippet})")
        }
        None => "(document)".into(),
    }
}

struct Ctx {
    file: String,
    errors: Vec<DefError>,
}

impl Ctx {
    fn err(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.errors.push(DefError {
            file: self.file.clone(),
            key: key.into(),
            reason: reason.into(),
        });
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn valid_feature_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn col_ty(t: ColType) -> Option<Ty> {
    Some(match t {
        ColType::Str => Ty::Str,
        ColType::Float => Ty::Float,
        ColType::Int => Ty::Int,
        ColType::Bool => Ty::Bool,
        ColType::Timestamp => return None,
    })
}

/// Names in row expressions: the table's columns, `days_ago`, and `days_ago(col)`.
struct RowScope<'a> {
    table: &'static TableSpec,
    extra: &'a BTreeMap<String, Ty>,
    ts: String,
    /// Extra columns the expression used.
    used_extra: std::cell::RefCell<Vec<String>>,
}

impl Scope for RowScope<'_> {
    fn resolve(&self, name: &str) -> Result<(Ty, polars::prelude::Expr), String> {
        if name == "days_ago" {
            return Ok((Ty::Int, polars::prelude::col(self.ts.as_str())));
        }
        if let Some(c) = self.table.column(name) {
            return match col_ty(c.ty) {
                Some(t) => Ok((t, polars::prelude::col(name))),
                None => Ok((Ty::Time, polars::prelude::col(name))),
            };
        }
        if let Some(t) = self.extra.get(name) {
            self.used_extra.borrow_mut().push(name.to_string());
            return Ok((*t, polars::prelude::col(name)));
        }
        let cols: Vec<_> = self.table.columns.iter().map(|c| c.name).collect();
        Err(format!(
            "unknown column {name} in table {} (columns: {}, days_ago; declare other columns under [columns.{}])",
            self.table.name,
            cols.join(", "),
            self.table.name
        ))
    }

    fn days_ago(&self, column: &str) -> Result<polars::prelude::Expr, String> {
        match self.table.column(column) {
            Some(c) if c.ty == ColType::Timestamp => Ok(polars::prelude::col(column)),
            Some(_) => Err(format!("days_ago({column}): {column} is not a timestamp")),
            None => Err(format!(
                "days_ago({column}): no timestamp column {column} in table {}",
                self.table.name
            )),
        }
    }
}

/// Names in feature expressions: other features of the set.
struct FeatureScope<'a> {
    types: &'a HashMap<String, Ty>,
}

impl Scope for FeatureScope<'_> {
    fn resolve(&self, name: &str) -> Result<(Ty, polars::prelude::Expr), String> {
        self.types
            .get(name)
            .map(|t| (*t, polars::prelude::col(name)))
            .ok_or_else(|| format!("unknown feature {name}"))
    }
}

enum Pending {
    Agg {
        table: &'static TableSpec,
        func: AggFn,
        column: Option<Expr>,
        filter: Option<Expr>,
        ts: String,
        window: Option<(u32, u32)>,
        per_day: bool,
        exclude_first_day: bool,
    },
    Entity {
        column: Expr,
        ts: String,
    },
    Derived(Expr),
    Quantile {
        of: String,
        bins: u32,
        higher_is_better: bool,
        among: Option<Expr>,
    },
    Case {
        cases: Vec<(Expr, Option<String>)>,
        otherwise: Option<String>,
    },
}

/// Validates a parsed set: names, kinds, tables, columns, windows, dependencies (no
/// cycles), and types. Pure: reads no data.
pub fn validate(set: SetFile, path: &Path) -> Result<FeatureSet, DefErrors> {
    let mut cx = Ctx {
        file: path.display().to_string(),
        errors: Vec::new(),
    };
    // Dependency order and compilation walk the features recursively: bounded.
    for (what, n, max) in [
        ("feature", set.features.len(), MAX_FEATURES),
        ("label", set.labels.len(), MAX_FEATURES),
    ] {
        if n > max {
            cx.err(
                what,
                format!("{n} [[{what}]] entries; a set holds at most {max} (split it into several sets)"),
            );
            return Err(DefErrors(cx.errors));
        }
    }
    if !valid_name(&set.name) {
        cx.err(
            "name",
            format!(
                "{:?} is not a valid set name (lowercase letters, digits, '_'; starts with a letter)",
                set.name
            ),
        );
    }
    if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
        if stem != set.name && path.extension().is_some_and(|e| e == "toml") {
            cx.err(
                "name",
                format!("the set is named {:?} but its file is {stem}.toml; name the file after the set", set.name),
            );
        }
    }
    if set.version == 0 {
        cx.err("version", "versions start at 1");
    }
    if set.entity != "customer_id" {
        cx.err(
            "entity",
            format!(
                "unknown entity {:?}: only customer_id is supported",
                set.entity
            ),
        );
    }
    // Declared extra columns.
    let mut extra: BTreeMap<String, BTreeMap<String, Ty>> = BTreeMap::new();
    for (table, cols) in &set.columns {
        if source::table_spec(table).is_none() {
            cx.err(format!("columns.{table}"), format!("unknown table {table}"));
            continue;
        }
        for (c, t) in cols {
            let ty = match t.as_str() {
                "float" | "Float64" => Ty::Float,
                "int" | "Int64" => Ty::Int,
                "string" | "Utf8" => Ty::Str,
                "bool" | "Boolean" => Ty::Bool,
                _ => {
                    cx.err(
                        format!("columns.{table}.{c}"),
                        format!("unknown type {t:?} (float, int, string, bool)"),
                    );
                    continue;
                }
            };
            extra
                .entry(table.clone())
                .or_default()
                .insert(c.clone(), ty);
        }
    }
    let empty = BTreeMap::new();

    // First pass: kinds and syntax.
    let mut pending: Vec<(usize, Option<Pending>)> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, f) in set.features.iter().enumerate() {
        let key = format!("feature[{i}] ({})", f.name);
        if !valid_feature_name(&f.name) {
            cx.err(&key, format!("{:?} is not a valid feature name", f.name));
        }
        if f.name == "customer_id" || f.name == "as_of" {
            cx.err(&key, format!("{} is a reserved column name", f.name));
        }
        if let Some(j) = seen.insert(f.name.clone(), i) {
            cx.err(&key, format!("duplicate feature name (also feature[{j}])"));
        }
        let kinds = [
            f.agg.is_some(),
            f.expr.is_some(),
            f.quantile_of.is_some(),
            f.cases.is_some(),
        ];
        let n_kinds = kinds.iter().filter(|k| **k).count();
        if n_kinds != 1 {
            cx.err(
                &key,
                "say exactly one of agg (aggregation), expr (arithmetic over features), quantile_of (score) or cases (mapping table)",
            );
            pending.push((i, None));
            continue;
        }
        let p = pending_kind(&mut cx, &key, f);
        pending.push((i, p));
    }

    // Types in dependency order (also catches cycles and unknown names).
    let mut deps: HashMap<String, Vec<String>> = HashMap::new();
    for (i, p) in &pending {
        let f = &set.features[*i];
        let d = match p {
            Some(Pending::Derived(e)) => e.names(),
            Some(Pending::Quantile { of, among, .. }) => {
                let mut d = vec![of.clone()];
                if let Some(a) = among {
                    d.extend(a.names());
                }
                d
            }
            Some(Pending::Case { cases, .. }) => {
                let mut d = Vec::new();
                for (w, _) in cases {
                    for n in w.names() {
                        if !d.contains(&n) {
                            d.push(n);
                        }
                    }
                }
                d
            }
            _ => Vec::new(),
        };
        deps.insert(f.name.clone(), d);
    }
    let order = topo_order(&mut cx, &set, &deps);
    // Each link of a dependency chain is one step of the compiled plan, and polars runs the
    // steps recursively: bound the longest chain.
    let mut chain: HashMap<&str, usize> = HashMap::new();
    for name in &order {
        let d = deps.get(name).map_or(0, |ds| {
            ds.iter()
                .filter_map(|x| chain.get(x.as_str()).map(|v| v + 1))
                .max()
                .unwrap_or(0)
        });
        chain.insert(name.as_str(), d);
        if d > MAX_CHAIN {
            let idx = set
                .features
                .iter()
                .position(|f| &f.name == name)
                .unwrap_or(0);
            cx.err(
                format!("feature[{idx}] ({name})"),
                format!(
                    "ends a chain of {d} features computed from one another; at most {MAX_CHAIN}"
                ),
            );
            return Err(DefErrors(cx.errors));
        }
    }

    let mut types: HashMap<String, Ty> = HashMap::new();
    let mut features: Vec<Feature> = Vec::new();
    let mut by_name: HashMap<&str, usize> = HashMap::new();
    for (idx, (i, _)) in pending.iter().enumerate() {
        by_name.insert(set.features[*i].name.as_str(), idx);
    }
    let mut pending: Vec<Option<Pending>> = pending.into_iter().map(|(_, p)| p).collect();
    for name in order {
        let Some(&idx) = by_name.get(name.as_str()) else {
            continue;
        };
        let f = &set.features[idx];
        let key = format!("feature[{idx}] ({})", f.name);
        let Some(p) = pending[idx].take() else {
            continue;
        };
        let d = deps.get(&f.name).cloned().unwrap_or_default();
        if let Some(missing) = d.iter().find(|n| !types.contains_key(*n)) {
            if set.features.iter().any(|g| &g.name == missing) {
                // A dependency that failed validation: already reported.
            } else {
                cx.err(&key, format!("unknown feature {missing}"));
            }
            continue;
        }
        let scope = FeatureScope { types: &types };
        let typed = match p {
            Pending::Agg {
                table,
                func,
                column,
                filter,
                ts,
                window,
                per_day,
                exclude_first_day,
            } => {
                let extra_t = extra.get(table.name).unwrap_or(&empty);
                let rs = RowScope {
                    table,
                    extra: extra_t,
                    ts: ts.clone(),
                    used_extra: Default::default(),
                };
                let mut ok = true;
                if let Some(w) = &filter {
                    match expr::compile(w, &rs) {
                        Ok((Ty::Bool, _)) | Ok((Ty::Null, _)) => {}
                        Ok((t, _)) => {
                            cx.err(
                                format!("{key}.where"),
                                format!("must be a condition, but is {t}"),
                            );
                            ok = false;
                        }
                        Err(e) => {
                            cx.err(format!("{key}.where"), e);
                            ok = false;
                        }
                    }
                }
                let col_t = match &column {
                    Some(c) => match expr::compile(c, &rs) {
                        Ok((t, _)) => Some(t),
                        Err(e) => {
                            cx.err(format!("{key}.column"), e);
                            ok = false;
                            None
                        }
                    },
                    None => None,
                };
                if !ok {
                    continue;
                }
                if col_t == Some(Ty::Time) {
                    cx.err(
                        format!("{key}.column"),
                        "a timestamp cannot be a feature value: use days_ago or days_ago(column)",
                    );
                    continue;
                }
                let ty = match (func, col_t) {
                    (AggFn::Count | AggFn::DistinctCount, _) => Ty::Int,
                    (AggFn::Any, None | Some(Ty::Bool)) => Ty::Bool,
                    (AggFn::Any, Some(t)) => {
                        cx.err(
                            format!("{key}.column"),
                            format!("agg any needs a boolean column, got {t}"),
                        );
                        continue;
                    }
                    (AggFn::Mean, Some(t)) if t.is_numeric() => Ty::Float,
                    (AggFn::Sum, Some(t)) if t.is_numeric() => t,
                    (AggFn::Sum | AggFn::Mean, Some(t)) => {
                        cx.err(
                            format!("{key}.column"),
                            format!("agg {func:?} needs a number, got {t}").to_lowercase(),
                        );
                        continue;
                    }
                    (_, Some(t)) => t,
                    (_, None) => {
                        cx.err(
                            format!("{key}.column"),
                            format!("agg {:?} needs a column", func).to_lowercase(),
                        );
                        continue;
                    }
                };
                if per_day && !matches!(col_t, Some(Ty::Int | Ty::Float)) {
                    cx.err(
                        format!("{key}.per_day"),
                        "per_day sums a numeric column per day: set column",
                    );
                    continue;
                }
                let extra_columns = rs.used_extra.borrow().clone();
                Feature {
                    name: f.name.clone(),
                    description: f.description.clone(),
                    hidden: f.hidden,
                    ty,
                    kind: Kind::Agg(Agg {
                        table,
                        func,
                        column,
                        filter,
                        ts,
                        window,
                        per_day,
                        exclude_first_day,
                        extra_columns,
                    }),
                    deps: d,
                }
            }
            Pending::Entity { column, ts } => {
                let table = source::table_spec("customers").expect("contract has customers");
                let rs = RowScope {
                    table,
                    extra: extra.get("customers").unwrap_or(&empty),
                    ts: ts.clone(),
                    used_extra: Default::default(),
                };
                match expr::compile(&column, &rs) {
                    Ok((Ty::Time, _)) => {
                        cx.err(format!("{key}.column"), "a timestamp cannot be a feature value: use days_ago or days_ago(column)");
                        continue;
                    }
                    Ok((t, _)) => Feature {
                        name: f.name.clone(),
                        description: f.description.clone(),
                        hidden: f.hidden,
                        ty: t,
                        kind: Kind::Entity { column, ts },
                        deps: d,
                    },
                    Err(e) => {
                        cx.err(format!("{key}.column"), e);
                        continue;
                    }
                }
            }
            Pending::Derived(e) => match expr::compile(&e, &scope) {
                Ok((t, _)) => Feature {
                    name: f.name.clone(),
                    description: f.description.clone(),
                    hidden: f.hidden,
                    ty: if t == Ty::Null { Ty::Float } else { t },
                    kind: Kind::Derived(e),
                    deps: d,
                },
                Err(err) => {
                    cx.err(format!("{key}.expr"), err);
                    continue;
                }
            },
            Pending::Quantile {
                of,
                bins,
                higher_is_better,
                among,
            } => {
                let of_t = types.get(&of).copied();
                if !of_t.is_some_and(|t| matches!(t, Ty::Int | Ty::Float)) {
                    cx.err(
                        format!("{key}.quantile_of"),
                        format!(
                            "{of} must be numeric to be scored, but is {}",
                            of_t.unwrap_or(Ty::Null)
                        ),
                    );
                    continue;
                }
                if let Some(a) = &among {
                    match expr::compile(a, &scope) {
                        Ok((Ty::Bool, _)) => {}
                        Ok((t, _)) => {
                            cx.err(
                                format!("{key}.among"),
                                format!("must be a condition, but is {t}"),
                            );
                            continue;
                        }
                        Err(e) => {
                            cx.err(format!("{key}.among"), e);
                            continue;
                        }
                    }
                }
                Feature {
                    name: f.name.clone(),
                    description: f.description.clone(),
                    hidden: f.hidden,
                    ty: Ty::Int,
                    kind: Kind::Quantile {
                        of,
                        bins,
                        higher_is_better,
                        among,
                    },
                    deps: d,
                }
            }
            Pending::Case { cases, otherwise } => {
                let mut ok = true;
                for (j, (w, _)) in cases.iter().enumerate() {
                    match expr::compile(w, &scope) {
                        Ok((Ty::Bool, _)) => {}
                        Ok((t, _)) => {
                            cx.err(
                                format!("{key}.cases[{j}].when"),
                                format!("must be a condition, but is {t}"),
                            );
                            ok = false;
                        }
                        Err(e) => {
                            cx.err(format!("{key}.cases[{j}].when"), e);
                            ok = false;
                        }
                    }
                }
                if !ok {
                    continue;
                }
                Feature {
                    name: f.name.clone(),
                    description: f.description.clone(),
                    hidden: f.hidden,
                    ty: Ty::Str,
                    kind: Kind::Case { cases, otherwise },
                    deps: d,
                }
            }
        };
        types.insert(typed.name.clone(), typed.ty);
        features.push(typed);
    }

    // Labels.
    let mut labels = Vec::new();
    for (i, l) in set.labels.iter().enumerate() {
        let key = format!("label[{i}] ({})", l.name);
        if !valid_feature_name(&l.name) {
            cx.err(&key, format!("{:?} is not a valid label name", l.name));
        }
        if set.features.iter().any(|f| f.name == l.name) {
            cx.err(&key, "a label may not share a feature's name");
        }
        let Some(table) = source::table_spec(&l.table) else {
            cx.err(format!("{key}.table"), format!("unknown table {}", l.table));
            continue;
        };
        if l.table == "customers" {
            cx.err(
                format!("{key}.table"),
                "labels count events: use orders, interactions or support_tickets",
            );
            continue;
        }
        if l.horizon_days == 0 {
            cx.err(format!("{key}.horizon_days"), "must be at least 1");
        }
        let no_event = match l.kind.as_str() {
            "no_event" => true,
            "any_event" => false,
            other => {
                cx.err(
                    format!("{key}.kind"),
                    format!("unknown kind {other:?} (no_event, any_event)"),
                );
                continue;
            }
        };
        let filter = match &l.filter {
            Some(w) => match expr::parse(w) {
                Ok(e) => {
                    let rs = RowScope {
                        table,
                        extra: extra.get(table.name).unwrap_or(&empty),
                        ts: table.ts.into(),
                        used_extra: Default::default(),
                    };
                    if let Err(err) = expr::compile(&e, &rs) {
                        cx.err(format!("{key}.where"), err);
                        continue;
                    }
                    Some(e)
                }
                Err(e) => {
                    cx.err(format!("{key}.where"), e.to_string());
                    continue;
                }
            },
            None => None,
        };
        labels.push(Label {
            name: l.name.clone(),
            description: l.description.clone(),
            table,
            filter,
            horizon_days: l.horizon_days,
            no_event,
        });
    }

    if !cx.errors.is_empty() {
        return Err(DefErrors(cx.errors));
    }
    let canonical = serde_json::to_vec(&set).unwrap_or_default();
    let hash = format!("sha256:{}", hex::encode(Sha256::digest(&canonical)));
    let extra_columns = extra
        .into_iter()
        .map(|(t, cols)| (t, cols.into_keys().collect()))
        .collect();
    Ok(FeatureSet {
        name: set.name.clone(),
        version: set.version,
        description: set.description.clone(),
        owner: set.owner.clone(),
        path: path.to_path_buf(),
        hash,
        features,
        labels,
        extra_columns,
        source: set,
    })
}

fn parse_expr(cx: &mut Ctx, key: &str, src: &str) -> Option<Expr> {
    match expr::parse(src) {
        Ok(e) => Some(e),
        Err(e) => {
            // Quote the expression, cut (by characters) when long.
            let mut shown: String = src.chars().take(100).collect();
            if shown.len() < src.len() {
                shown.push('…');
            }
            cx.err(key, format!("{e} in {shown:?}"));
            None
        }
    }
}

fn pending_kind(cx: &mut Ctx, key: &str, f: &FeatureDef) -> Option<Pending> {
    let agg_only = [
        ("table", f.table.is_some()),
        ("column", f.column.is_some()),
        ("where", f.filter.is_some()),
        ("ts", f.ts.is_some()),
        ("window_days", f.window_days.is_some()),
        ("offset_days", f.offset_days.is_some()),
        ("per_day", f.per_day.is_some()),
        ("exclude_first_day", f.exclude_first_day),
    ];
    let quant_only = [
        ("bins", f.bins.is_some()),
        ("better", f.better.is_some()),
        ("among", f.among.is_some()),
    ];
    if f.agg.is_none() {
        for (k, set) in agg_only {
            if set {
                cx.err(
                    format!("{key}.{k}"),
                    format!("{k} only applies to aggregations (agg = ...)"),
                );
            }
        }
    }
    if f.quantile_of.is_none() {
        for (k, set) in quant_only {
            if set {
                cx.err(
                    format!("{key}.{k}"),
                    format!("{k} only applies to quantile scores (quantile_of = ...)"),
                );
            }
        }
    }
    if f.cases.is_none() && f.otherwise.is_some() {
        cx.err(
            format!("{key}.else"),
            "else only applies to mapping tables (cases = ...)",
        );
    }
    if let Some(agg) = &f.agg {
        let Some(func) = AggFn::parse(agg) else {
            cx.err(
                format!("{key}.agg"),
                format!("unknown aggregation {agg:?} (count, sum, mean, min, max, distinct_count, first, last, any)"),
            );
            return None;
        };
        let Some(table_name) = &f.table else {
            cx.err(format!("{key}.table"), "an aggregation needs table = \"orders\" (or interactions, support_tickets, customers)");
            return None;
        };
        let Some(table) = source::table_spec(table_name) else {
            let names: Vec<_> = source::CONTRACT.iter().map(|t| t.name).collect();
            cx.err(
                format!("{key}.table"),
                format!(
                    "unknown table {table_name:?} (tables: {})",
                    names.join(", ")
                ),
            );
            return None;
        };
        let ts = f.ts.clone().unwrap_or_else(|| table.ts.to_string());
        match table.column(&ts) {
            Some(c) if c.ty == ColType::Timestamp => {}
            _ => {
                cx.err(
                    format!("{key}.ts"),
                    format!("{ts} is not a timestamp column of {}", table.name),
                );
                return None;
            }
        }
        let column = match &f.column {
            Some(c) => Some(parse_expr(cx, &format!("{key}.column"), c)?),
            None => None,
        };
        let filter = match &f.filter {
            Some(w) => Some(parse_expr(cx, &format!("{key}.where"), w)?),
            None => None,
        };
        if table.name == "customers" {
            if func != AggFn::First && func != AggFn::Last {
                cx.err(
                    format!("{key}.agg"),
                    "customers has one row per customer: use agg = \"first\" to read a value of it",
                );
                return None;
            }
            if filter.is_some() || f.window_days.is_some() || f.per_day.is_some() {
                cx.err(
                    key,
                    "where, window_days and per_day do not apply to the customers table",
                );
                return None;
            }
            let Some(column) = column else {
                cx.err(
                    format!("{key}.column"),
                    "say which column of customers to read",
                );
                return None;
            };
            return Some(Pending::Entity { column, ts });
        }
        let window = match (f.window_days, f.offset_days) {
            (Some(0), _) => {
                cx.err(
                    format!("{key}.window_days"),
                    "a window must be at least 1 day",
                );
                return None;
            }
            (Some(w), o) => Some((w, o.unwrap_or(0))),
            (None, Some(_)) => {
                cx.err(
                    format!("{key}.offset_days"),
                    "offset_days needs window_days",
                );
                return None;
            }
            (None, None) => None,
        };
        if let Some((w, o)) = window {
            if w as u64 + o as u64 > 36_500 {
                cx.err(
                    format!("{key}.window_days"),
                    "window reaches back more than 100 years",
                );
                return None;
            }
        }
        let per_day = match f.per_day.as_deref() {
            None => false,
            Some("sum") => true,
            Some(other) => {
                cx.err(
                    format!("{key}.per_day"),
                    format!("unknown per_day rollup {other:?} (sum)"),
                );
                return None;
            }
        };
        if f.exclude_first_day && !per_day {
            cx.err(
                format!("{key}.exclude_first_day"),
                "exclude_first_day needs per_day = \"sum\"",
            );
            return None;
        }
        return Some(Pending::Agg {
            table,
            func,
            column,
            filter,
            ts,
            window,
            per_day,
            exclude_first_day: f.exclude_first_day,
        });
    }
    if let Some(e) = &f.expr {
        return Some(Pending::Derived(parse_expr(cx, &format!("{key}.expr"), e)?));
    }
    if let Some(of) = &f.quantile_of {
        let bins = f.bins.unwrap_or(5);
        if !(2..=100).contains(&bins) {
            cx.err(format!("{key}.bins"), "bins must be between 2 and 100");
            return None;
        }
        let higher_is_better = match f.better.as_deref() {
            None | Some("higher") => true,
            Some("lower") => false,
            Some(other) => {
                cx.err(
                    format!("{key}.better"),
                    format!("{other:?}: say \"higher\" or \"lower\""),
                );
                return None;
            }
        };
        let among = match &f.among {
            Some(a) => Some(parse_expr(cx, &format!("{key}.among"), a)?),
            None => None,
        };
        return Some(Pending::Quantile {
            of: of.clone(),
            bins,
            higher_is_better,
            among,
        });
    }
    if let Some(cases) = &f.cases {
        if cases.is_empty() {
            cx.err(
                format!("{key}.cases"),
                "a mapping table needs at least one case",
            );
            return None;
        }
        if cases.len() > MAX_CASES {
            // The cases compile to nested conditionals: bounded, like expressions.
            cx.err(
                format!("{key}.cases"),
                format!("{} cases; at most {MAX_CASES}", cases.len()),
            );
            return None;
        }
        let mut out = Vec::new();
        for (j, c) in cases.iter().enumerate() {
            out.push((
                parse_expr(cx, &format!("{key}.cases[{j}].when"), &c.when)?,
                c.then.clone(),
            ));
        }
        return Some(Pending::Case {
            cases: out,
            otherwise: f.otherwise.clone(),
        });
    }
    None
}

/// Dependency order of all features; reports cycles.
fn topo_order(cx: &mut Ctx, set: &SetFile, deps: &HashMap<String, Vec<String>>) -> Vec<String> {
    #[derive(Clone, Copy, PartialEq)]
    enum St {
        New,
        Active,
        Done,
    }
    let mut st: HashMap<&str, St> = set
        .features
        .iter()
        .map(|f| (f.name.as_str(), St::New))
        .collect();
    let mut order = Vec::new();
    let mut reported = BTreeSet::new();
    fn visit<'a>(
        n: &'a str,
        deps: &'a HashMap<String, Vec<String>>,
        st: &mut HashMap<&'a str, St>,
        stack: &mut Vec<&'a str>,
        order: &mut Vec<String>,
        cycles: &mut Vec<Vec<String>>,
    ) {
        match st.get(n) {
            Some(St::Done) | None => return,
            Some(St::Active) => {
                let start = stack.iter().position(|s| *s == n).unwrap_or(0);
                let mut cyc: Vec<String> = stack[start..].iter().map(|s| s.to_string()).collect();
                cyc.push(n.to_string());
                cycles.push(cyc);
                return;
            }
            Some(St::New) => {}
        }
        st.insert(n, St::Active);
        stack.push(n);
        if let Some(ds) = deps.get(n) {
            for d in ds {
                visit(d.as_str(), deps, st, stack, order, cycles);
            }
        }
        stack.pop();
        st.insert(n, St::Done);
        order.push(n.to_string());
    }
    let mut cycles = Vec::new();
    for f in &set.features {
        let mut stack = Vec::new();
        visit(
            f.name.as_str(),
            deps,
            &mut st,
            &mut stack,
            &mut order,
            &mut cycles,
        );
    }
    for cyc in cycles {
        let mut key = cyc.clone();
        key.sort();
        if reported.insert(key) {
            let first = &cyc[0];
            let idx = set
                .features
                .iter()
                .position(|f| &f.name == first)
                .unwrap_or(0);
            // Break the cycle so that validation can go on: its members get no type.
            order.retain(|n| !cyc.contains(n));
            cx.err(
                format!("feature[{idx}] ({first})"),
                format!("dependency cycle: {}", cyc.join(" -> ")),
            );
        }
    }
    order
}
