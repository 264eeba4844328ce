//! Compiling a validated feature set into one polars lazy plan.
//!
//! Two modes share every expression, so a training set equals the snapshots row for row:
//! - a snapshot: one as-of date for every customer signed up by then; the date is a literal;
//! - a spine: `(customer_id, as_of)` rows; each event table is joined to the spine's keys
//!   (only the customers the spine names) and grouped by `(customer_id, as_of)`, so many
//!   dates cost one pass over the events of the spine's customers, not one full pass per
//!   date. Quantile scores are relative to the whole population at a date, so for them
//!   alone the spine mode computes a population snapshot per distinct date (restricted to
//!   the features the scores read). The aggregations exact in integers (counts, `any`,
//!   distinct event days, days since the last / first event, labels) and exact float
//!   sums and means, over any timestamp column and with filters that test timestamps'
//!   ages, skip the join: an event sweep (`sweep`) computes them from one sorted pass
//!   over the table's rows. A keyed spine (a training set's batch) gets its base rows by
//!   gathers instead of joins (`keyed`).
//!
//! Timestamps arrive as UTC day numbers (see `source`); `days_ago` of a row is
//! `as_of - day`, and a window of N days is `0 <= days_ago < N` (the dates `(D-N, D]`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use polars::prelude::*;

use super::def::{AggFn, Feature, FeatureSet, Kind, Label};
use super::expr::{self, Scope, Ty};
use super::rows::RowScope;
use crate::source::CUSTOMER_KEY;

mod aggregates;
mod conditions;
mod keyed;
mod subgroup;
mod sweep;

use aggregates::table_aggregates;
pub use conditions::{or_all, snapshot_rows};
pub(crate) use sweep::env_switch;
pub use sweep::SWEEP_ENV;

/// Internal column names.
pub const AS_OF: &str = "_as_of";
const ROW: &str = "_row";

/// Which customers and dates to compute.
#[derive(Clone)]
pub enum Mode {
    /// One date (day number) for every customer signed up on or before it.
    Snapshot(i32),
    /// `customer_id` (String), `_as_of` (Int32 day number) rows; optionally with their
    /// `CUSTOMER_KEY` (UInt32: the key of the customers' row of that `customer_id`, every
    /// row's customer known), which the plan then joins on instead of the id.
    Spine(Box<LazyFrame>),
}

impl Mode {
    fn as_of(&self) -> Expr {
        match self {
            Mode::Snapshot(d) => lit(*d),
            Mode::Spine(_) => col(AS_OF),
        }
    }
    /// Group-by and join keys: the integer customer key (see `source::CUSTOMER_KEY`).
    fn keys(&self) -> Vec<Expr> {
        match self {
            Mode::Snapshot(_) => vec![col(CUSTOMER_KEY)],
            Mode::Spine(_) => vec![col(CUSTOMER_KEY), col(AS_OF)],
        }
    }
}

/// The normalised input tables by name.
pub type Inputs = HashMap<&'static str, LazyFrame>;

#[derive(Debug, thiserror::Error)]
#[error("feature set {set}: {message}")]
pub struct CompileError {
    pub set: String,
    pub message: String,
}

fn cerr(set: &FeatureSet, message: impl Into<String>) -> CompileError {
    CompileError {
        set: set.name.to_string(),
        message: message.into(),
    }
}

/// The set's features as names in expressions, with the types validation gave them: an
/// operation's type follows its operands' (a float feature minus 100 stays a float).
struct Features<'a>(&'a FeatureSet);

impl Scope for Features<'_> {
    fn resolve(&self, name: &str) -> Result<(Ty, Expr), String> {
        let ty = self.0.feature(name).map_or(Ty::Null, |f| f.ty);
        Ok((ty, col(name)))
    }
}

fn compile_rows(set: &FeatureSet, e: &expr::Expr, scope: &dyn Scope) -> Result<Expr, CompileError> {
    expr::compile(e, scope)
        .map(|(_, e)| e)
        .map_err(|m| cerr(set, m))
}

/// Every feature `names` need, with their dependencies.
pub fn closure(set: &FeatureSet, names: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut stack: Vec<String> = names.iter().cloned().collect();
    while let Some(n) = stack.pop() {
        if out.insert(n.clone()) {
            if let Some(f) = set.feature(&n) {
                stack.extend(f.deps.iter().cloned());
            }
        }
    }
    out
}

fn fill_value(f: &Feature) -> Option<Expr> {
    match &f.kind {
        Kind::Agg(a) => match a.func {
            AggFn::Count | AggFn::DistinctCount => Some(lit(0i64)),
            AggFn::Sum if !a.per_day => Some(lit(0).cast(f.ty.polars())),
            AggFn::Any => Some(lit(false)),
            _ => None,
        },
        _ => None,
    }
}

/// The columns of `table` that the set's aggregations and labels read.
pub fn columns_read(set: &FeatureSet, table: &str) -> BTreeSet<String> {
    let names = |e: &expr::Expr, out: &mut BTreeSet<String>| out.extend(e.names());
    let mut out = BTreeSet::new();
    for f in &set.features {
        if let Kind::Agg(a) = &f.kind {
            if a.table.name == table {
                out.insert(a.ts.clone());
                out.extend(a.extra_columns.iter().cloned());
                for e in a.filter.iter().chain(a.column.iter()) {
                    names(e, &mut out);
                }
            }
        }
    }
    if table == "customers" {
        for f in &set.features {
            if let Kind::Entity { column, ts } = &f.kind {
                out.insert(ts.clone());
                names(column, &mut out);
            }
        }
    }
    for l in &set.labels {
        if l.table.name == table {
            out.insert(l.table.ts.to_string());
            if let Some(e) = &l.filter {
                names(e, &mut out);
            }
        }
    }
    out
}

/// A snapshot's base rows: the customers signed up on or before `day`, in table order
/// (the order [`Aggregated::Aligned`] columns follow).
pub fn snapshot_base(customers: LazyFrame, day: i32) -> LazyFrame {
    customers.filter(col("signup_ts").lt_eq(lit(day)))
}

/// A per-table aggregate (keyed by the mode's keys), as [`plan`]'s hook returns it.
pub enum Aggregated {
    /// To be joined to the base.
    Join(Box<LazyFrame>),
    /// Computed already, one value per base row in the base's order (a snapshot's base:
    /// the customers signed up by its day, in table order), so it is added as columns.
    Aligned(Vec<Column>),
}

/// The plain [`plan`] hook: every aggregate is joined, so the plan is one lazy query.
pub fn joined(lf: LazyFrame) -> Result<Aggregated, CompileError> {
    Ok(Aggregated::Join(Box::new(lf)))
}

/// Builds the plan: `customer_id`, `as_of` (Date), the set's output features (or every
/// feature in `wanted` when given), and the label when asked. In spine mode the spine's
/// row order is kept. Each per-table aggregate passes through `aggregate` before it is
/// added to the base: [`joined`] keeps it lazy; `features::snapshot` computes it there
/// and then.
pub fn plan(
    set: &FeatureSet,
    inputs: &Inputs,
    mode: &Mode,
    wanted: Option<&BTreeSet<String>>,
    label: Option<&Label>,
    population: Option<LazyFrame>,
    aggregate: &dyn Fn(LazyFrame) -> Result<Aggregated, CompileError>,
) -> Result<LazyFrame, CompileError> {
    let all: BTreeSet<String> = match wanted {
        Some(w) => closure(set, w),
        None => set.features.iter().map(|f| f.name.clone()).collect(),
    };
    let feats: Vec<&Feature> = set
        .features
        .iter()
        .filter(|f| all.contains(&f.name))
        .collect();
    let customers = inputs
        .get("customers")
        .cloned()
        .ok_or_else(|| cerr(set, "the customers table was not loaded"))?;

    let customers_all = customers.clone();
    // Over a spine, the aggregations the event sweep computes exactly (and the label)
    // come from it, every table's at once; the rest keep the join path below.
    let mut swept = sweep::sweep_all(set, &feats, inputs, &customers_all, mode, label)?;
    let mut base = match mode {
        // A keyed spine's rows, the customers' columns and the sweep's, by gathers.
        Mode::Spine(spine) if keyed(spine) => {
            let frame = swept.frame.take();
            let df = keyed::base(
                set,
                spine,
                &customers,
                &Vec::from_iter(columns_read(set, "customers")),
                frame.as_ref().map(|f| (f, swept.pairs.as_slice())),
            )?;
            let extra: Vec<Expr> = frame
                .iter()
                .flat_map(|f| f.get_column_names_owned())
                .filter(|c| c != CUSTOMER_KEY && c != AS_OF)
                .map(col)
                .collect();
            base_rows(set, &feats, df.lazy(), mode, extra)?
        }
        _ => base_rows(set, &feats, customers, mode, Vec::new())?,
    };
    let joined_label = label.filter(|_| !swept.label);
    // Aggregates, one group-by per table (plus one per per-day feature).
    let mut by_table: BTreeMap<&'static str, Vec<&Feature>> = BTreeMap::new();
    for f in &feats {
        if let Kind::Agg(a) = &f.kind {
            if !swept.features.contains(&f.name) {
                by_table.entry(a.table.name).or_default().push(f);
            }
        }
    }
    if let Some(l) = joined_label {
        by_table.entry(l.table.name).or_default();
    }
    for (tname, tf) in &by_table {
        let frame = inputs
            .get(tname)
            .cloned()
            .ok_or_else(|| cerr(set, format!("the {tname} table was not loaded")))?;
        let l = joined_label.filter(|l| l.table.name == *tname);
        let (aggs, post) = table_aggregates(set, tf, frame, &customers_all, mode, l)?;
        for agg in aggs {
            base = match aggregate(agg)? {
                Aggregated::Join(agg) => base.join(*agg, mode.keys(), mode.keys(), left_join()),
                Aggregated::Aligned(columns) => base.with_columns(
                    columns
                        .into_iter()
                        .map(|c| {
                            let name = c.name().clone();
                            lit(c.take_materialized_series()).alias(name)
                        })
                        .collect::<Vec<_>>(),
                ),
            };
        }
        if !post.is_empty() {
            base = base.with_columns(post);
        }
    }
    if let Some(df) = swept.frame {
        base = base.join(df.lazy(), mode.keys(), mode.keys(), left_join());
    }
    let fills: Vec<Expr> = feats
        .iter()
        .filter_map(|f| {
            fill_value(f).map(|v| col(f.name.as_str()).fill_null(v).alias(f.name.as_str()))
        })
        .collect();
    if !fills.is_empty() {
        base = base.with_columns(fills);
    }
    if let Some(pop) = population {
        base = base.join(pop, mode.keys(), mode.keys(), left_join());
    }

    // Derived features, level by level (a level reads only earlier levels).
    let levels = derived_levels(set, &feats, mode)?;
    for (_, exprs) in levels {
        base = base.with_columns(exprs);
    }

    let out = output_columns(set, &feats, mode, wanted, label);
    // A keyed spine's base is in spine order already, and every later join keeps the
    // left side's order; the customers' join of an unkeyed spine does not.
    if matches!(mode, Mode::Spine(spine) if !keyed(spine)) {
        base = base.sort([ROW], SortMultipleOptions::default());
    }
    Ok(base.select(out))
}

/// Whether a spine carries the customer key (see [`Mode::Spine`]).
fn keyed(spine: &LazyFrame) -> bool {
    spine
        .clone()
        .collect_schema()
        .is_ok_and(|s| s.contains(CUSTOMER_KEY))
}

/// The base: one row per (customer, as_of) with the keys, `customer_id`, the spine's row
/// number (over a spine), the entity features and the `extra` columns. For a keyed spine
/// `customers` is [`keyed::base`]'s frame, which has the customers' columns already.
fn base_rows(
    set: &FeatureSet,
    feats: &[&Feature],
    customers: LazyFrame,
    mode: &Mode,
    extra: Vec<Expr>,
) -> Result<LazyFrame, CompileError> {
    let as_of = mode.as_of();
    let base = match mode {
        Mode::Snapshot(d) => snapshot_base(customers, *d),
        // Assembled already (`keyed::base`).
        Mode::Spine(spine) if keyed(spine) => customers,
        Mode::Spine(spine) => spine
            .clone()
            .select([col("customer_id"), col(AS_OF)])
            .with_row_index(ROW, None)
            .join(
                customers,
                [col("customer_id")],
                [col("customer_id")],
                JoinArgs::new(JoinType::Left),
            ),
    };
    let mut entity_cols = Vec::new();
    for f in feats {
        if let Kind::Entity { column, ts } = &f.kind {
            let table =
                crate::source::table_spec("customers").ok_or_else(|| cerr(set, "no customers"))?;
            let scope = RowScope::compiling(table, ts, as_of.clone(), set.extra_types(table.name));
            entity_cols.push(
                compile_rows(set, column, &scope)?
                    .cast(f.ty.polars())
                    .alias(f.name.as_str()),
            );
        }
    }
    let mut keep = mode.keys();
    keep.push(col("customer_id"));
    if matches!(mode, Mode::Spine(_)) {
        keep.push(col(ROW));
    }
    keep.extend(entity_cols);
    keep.extend(extra);
    Ok(base.select(keep))
}

/// The derived features (arithmetic, quantile scores, mapping tables) as columns, by
/// level: a level reads only the features of earlier levels.
fn derived_levels(
    set: &FeatureSet,
    feats: &[&Feature],
    mode: &Mode,
) -> Result<BTreeMap<usize, Vec<Expr>>, CompileError> {
    let mut level: HashMap<&str, usize> = HashMap::new();
    let mut levels: BTreeMap<usize, Vec<Expr>> = BTreeMap::new();
    for f in feats {
        let lv = match &f.kind {
            Kind::Agg(_) | Kind::Entity { .. } => 0,
            _ => {
                1 + f
                    .deps
                    .iter()
                    .map(|d| level.get(d.as_str()).copied().unwrap_or(0))
                    .max()
                    .unwrap_or(0)
            }
        };
        level.insert(f.name.as_str(), lv);
        let e = match &f.kind {
            Kind::Agg(_) | Kind::Entity { .. } => continue,
            Kind::Derived(e) => compile_rows(set, e, &Features(set))?.cast(f.ty.polars()),
            Kind::Quantile { .. } if matches!(mode, Mode::Spine(_)) => {
                // Joined from the population snapshots.
                continue;
            }
            Kind::Quantile {
                of,
                bins,
                higher_is_better,
                among,
            } => quantile_score(set, of, *bins, *higher_is_better, among)?,
            Kind::Case { cases, otherwise } => case_value(set, cases, otherwise)?,
        };
        levels.entry(lv).or_default().push(e.alias(f.name.as_str()));
    }
    Ok(levels)
}

/// A 1..=`bins` quantile score of the feature `of` over the rows (of one date) where it is
/// set and `among` holds.
fn quantile_score(
    set: &FeatureSet,
    of: &str,
    bins: u32,
    higher_is_better: bool,
    among: &Option<expr::Expr>,
) -> Result<Expr, CompileError> {
    let v = col(of);
    let mut mask = v.clone().is_not_null();
    if let Some(a) = among {
        mask = mask.and(compile_rows(set, a, &Features(set))?.fill_null(lit(false)));
    }
    let masked = when(mask.clone()).then(v).otherwise(lit(NULL));
    // Worst to best; ties share the lowest rank, so a better value never scores lower.
    let rank = masked
        .rank(
            RankOptions {
                method: RankMethod::Min,
                descending: !higher_is_better,
            },
            None,
        )
        .cast(DataType::Int64);
    let n = mask.cast(DataType::Int64).sum();
    let score = (lit(bins as i64) * (rank - lit(1i64))).floor_div(n) + lit(1i64);
    Ok(when(col(of).is_not_null().and(masked_is_set(set, among)?))
        .then(score)
        .otherwise(lit(NULL))
        .cast(DataType::Int64))
}

/// A mapping table's value: the first matching case's, else `otherwise` (null if none).
fn case_value(
    set: &FeatureSet,
    cases: &[(expr::Expr, Option<String>)],
    otherwise: &Option<String>,
) -> Result<Expr, CompileError> {
    let val = |v: &Option<String>| match v {
        Some(s) => lit(s.clone()),
        None => lit(NULL).cast(DataType::String),
    };
    // Nested from the last case back, so the first matching case wins.
    let mut acc = val(otherwise);
    for (w, t) in cases.iter().rev() {
        acc = when(compile_rows(set, w, &Features(set))?.fill_null(lit(false)))
            .then(val(t))
            .otherwise(acc);
    }
    Ok(acc.cast(DataType::String))
}

/// The plan's output columns: `customer_id`, `as_of` (Date), the features (`wanted`, with
/// the keys, or the set's outputs), and the label.
fn output_columns(
    set: &FeatureSet,
    feats: &[&Feature],
    mode: &Mode,
    wanted: Option<&BTreeSet<String>>,
    label: Option<&Label>,
) -> Vec<Expr> {
    let mut out = vec![col("customer_id"), as_of_date(mode).alias("as_of")];
    match wanted {
        Some(w) => {
            for f in feats {
                if w.contains(&f.name) {
                    out.push(col(f.name.as_str()));
                }
            }
            if matches!(mode, Mode::Spine(_)) {
                out.push(col(AS_OF));
            }
            out.push(col(CUSTOMER_KEY));
        }
        None => {
            for f in set.outputs() {
                out.push(col(f.name.as_str()));
            }
        }
    }
    if let Some(l) = label {
        let n = col(format!("_label_{}", l.name)).fill_null(lit(0));
        let v = if l.no_event {
            n.eq(lit(0))
        } else {
            n.gt(lit(0))
        };
        out.push(v.cast(DataType::Int64).alias(l.name.as_str()));
    }
    out
}

fn masked_is_set(set: &FeatureSet, among: &Option<expr::Expr>) -> Result<Expr, CompileError> {
    Ok(match among {
        Some(a) => compile_rows(set, a, &Features(set))?.fill_null(lit(false)),
        None => lit(true),
    })
}

/// A left join that keeps the left side's row order (the base's order: customers, or the
/// spine) on every engine.
fn left_join() -> JoinArgs {
    let mut args = JoinArgs::new(JoinType::Left);
    args.maintain_order = MaintainOrderJoin::Left;
    args
}

fn as_of_date(mode: &Mode) -> Expr {
    mode.as_of().cast(DataType::Int32).cast(DataType::Date)
}

/// The set's quantile-score features (their values depend on the whole population).
pub fn quantile_features(set: &FeatureSet) -> BTreeSet<String> {
    set.features
        .iter()
        .filter(|f| matches!(f.kind, Kind::Quantile { .. }))
        .map(|f| f.name.clone())
        .collect()
}
