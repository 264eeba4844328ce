//! Compiling a validated feature set into one polars lazy plan.
//!
//! Two modes share every expression, so a training set equals the snapshots row for row:
//! - a snapshot: one as-of date for every customer signed up by then; the date is a literal;
//! - a spine: `(customer_id, as_of)` rows; each event table is joined to the spine's keys
//!   (only the customers the spine names) and grouped by `(customer_id, as_of)`, so many
//!   dates cost one pass over the events of the spine's customers, not one full pass per
//!   date. Quantile scores are relative to the whole population at a date, so for them
//!   alone the spine mode computes a population snapshot per distinct date (restricted to
//!   the features the scores read).
//!
//! Timestamps arrive as UTC day numbers (see `source`); `days_ago` of a row is
//! `as_of - day`, and a window of N days is `0 <= days_ago < N` (the dates `(D-N, D]`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use polars::prelude::*;

use super::def::{Agg, AggFn, Feature, FeatureSet, Kind, Label};
use super::expr::{self, Scope, Ty};
use crate::source::{ColType, TableSpec, CUSTOMER_KEY};

/// Internal column names.
pub const AS_OF: &str = "_as_of";
const ROW: &str = "_row";

/// Which customers and dates to compute.
#[derive(Clone)]
pub enum Mode {
    /// One date (day number) for every customer signed up on or before it.
    Snapshot(i32),
    /// `customer_id` (String), `_as_of` (Int32 day number) rows.
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
        set: set.name.clone(),
        message: message.into(),
    }
}

/// Row expressions: table columns; `days_ago` is the feature's `_d_<ts>` column.
struct Rows<'a> {
    table: &'static TableSpec,
    ts: &'a str,
    as_of: Expr,
}

impl Scope for Rows<'_> {
    fn resolve(&self, name: &str) -> Result<(Ty, Expr), String> {
        if name == "days_ago" {
            return Ok((Ty::Int, days_ago(self.as_of.clone(), self.ts)));
        }
        let ty = match self.table.column(name).map(|c| c.ty) {
            Some(ColType::Str) => Ty::Str,
            Some(ColType::Float) => Ty::Float,
            Some(ColType::Int) => Ty::Int,
            Some(ColType::Bool) => Ty::Bool,
            Some(ColType::Timestamp) => Ty::Time,
            // Declared extra columns were type-checked at validation.
            None => Ty::Null,
        };
        Ok((ty, col(name)))
    }
    fn days_ago(&self, column: &str) -> Result<Expr, String> {
        Ok(days_ago(self.as_of.clone(), column))
    }
}

fn days_ago(as_of: Expr, ts: &str) -> Expr {
    (as_of.cast(DataType::Int64) - col(ts).cast(DataType::Int64)).cast(DataType::Int64)
}

struct Features;

impl Scope for Features {
    fn resolve(&self, name: &str) -> Result<(Ty, Expr), String> {
        // Types were checked at validation; here only the column matters.
        Ok((Ty::Null, col(name)))
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

/// The condition under which a row counts for an aggregation at the as-of date. `day` is
/// the as-of day when it is one literal (a snapshot): the window is then a comparison of
/// the Int32 day column with two constants, without computing `days_ago` (same rows).
fn agg_condition(
    set: &FeatureSet,
    a: &Agg,
    as_of: &Expr,
    day: Option<i32>,
) -> Result<Expr, CompileError> {
    let contract_ts = a
        .table
        .column(&a.ts)
        .is_some_and(|c| c.ty == ColType::Timestamp);
    let mut cond = match day {
        Some(day) if contract_ts => {
            // days_ago in [off, off + w)  <=>  ts in [day - off - w + 1, day - off].
            let (off, w) = match a.window {
                Some((w, off)) => (off as i64, Some(w as i64)),
                None => (0, None),
            };
            let hi = day as i64 - off;
            let ts = col(a.ts.as_str());
            if hi < i32::MIN as i64 {
                lit(false)
            } else {
                let mut c = ts.clone().lt_eq(lit(hi as i32));
                if let Some(w) = w {
                    let lo = hi - w + 1;
                    if lo > i32::MIN as i64 {
                        c = c.and(ts.gt_eq(lit(lo as i32)));
                    }
                }
                c
            }
        }
        _ => {
            let d = days_ago(as_of.clone(), &a.ts);
            let cond = d.clone().gt_eq(lit(0i64));
            if let Some((w, off)) = a.window {
                cond.and(
                    d.clone()
                        .gt_eq(lit(off as i64))
                        .and(d.lt(lit((off + w) as i64))),
                )
            } else {
                cond.and(lit(true))
            }
        }
    };
    if let Some(f) = &a.filter {
        let scope = Rows {
            table: a.table,
            ts: &a.ts,
            as_of: as_of.clone(),
        };
        cond = cond.and(compile_rows(set, f, &scope)?.fill_null(lit(false)));
    }
    Ok(cond.fill_null(lit(false)))
}

/// The rows a label counts: dated in (D, D + horizon] and matching its filter.
fn label_condition(set: &FeatureSet, l: &Label, as_of: &Expr) -> Result<Expr, CompileError> {
    let d = days_ago(as_of.clone(), l.table.ts);
    let mut cond = d
        .clone()
        .lt(lit(0i64))
        .and(d.gt_eq(lit(-(l.horizon_days as i64))));
    if let Some(w) = &l.filter {
        let scope = Rows {
            table: l.table,
            ts: l.table.ts,
            as_of: as_of.clone(),
        };
        cond = cond.and(compile_rows(set, w, &scope)?.fill_null(lit(false)));
    }
    Ok(cond.fill_null(lit(false)))
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

/// Aggregates of one table for the given features, keyed like `mode`.
fn table_aggregates(
    set: &FeatureSet,
    feats: &[&Feature],
    frame: LazyFrame,
    customers: &LazyFrame,
    mode: &Mode,
    label: Option<&Label>,
) -> Result<(Vec<LazyFrame>, Vec<Expr>), CompileError> {
    let as_of = mode.as_of();
    let day = match mode {
        Mode::Snapshot(d) => Some(*d),
        Mode::Spine(_) => None,
    };
    let keys = mode.keys();
    let mut frame = match mode {
        Mode::Snapshot(_) => frame,
        Mode::Spine(spine) => frame.join(
            spine
                .clone()
                .select([col("customer_id"), col(AS_OF)])
                .unique(None, UniqueKeepStrategy::Any)
                .join(
                    customers
                        .clone()
                        .select([col("customer_id"), col(CUSTOMER_KEY)]),
                    [col("customer_id")],
                    [col("customer_id")],
                    JoinArgs::new(JoinType::Inner),
                )
                .select([col(CUSTOMER_KEY), col(AS_OF)]),
            [col(CUSTOMER_KEY)],
            [col(CUSTOMER_KEY)],
            JoinArgs::new(JoinType::Inner),
        ),
    };
    // Keep only the rows some feature (or the label) counts: the union of their conditions
    // (point in time, window, filter). On event tables most rows are older than the
    // windows or of another kind, so the group-by sees a fraction of the table.
    let mut keep: Option<Expr> = None;
    for f in feats {
        if let Kind::Agg(a) = &f.kind {
            let c = agg_condition(set, a, &as_of, day)?;
            keep = Some(match keep {
                None => c,
                Some(k) => k.or(c),
            });
        }
    }
    if let Some(l) = label {
        let c = label_condition(set, l, &as_of)?;
        keep = Some(match keep {
            None => c,
            Some(k) => k.or(c),
        });
    }
    if let Some(k) = keep {
        frame = frame.filter(k);
    }

    // Aggregations read plain columns computed row by row beforehand (`pre`): polars
    // aggregates a plain column per group with its fast (streaming) kernels, whereas a
    // conditional expression inside `agg` is evaluated group by group, several times
    // slower. Distinct counts and per-day rollups group by (customer, value) first
    // (`subs`, one two-level group-by per condition and value, shared).
    let mut plain = Vec::new();
    let mut pre: Vec<Expr> = Vec::new();
    let mut subs: Vec<Subgroup> = Vec::new();
    let mut outs = Vec::new();
    // Features computed from hidden columns of several of `outs`, once they are joined.
    let mut post: Vec<Expr> = Vec::new();
    for (i, f) in feats.iter().enumerate() {
        let Kind::Agg(a) = &f.kind else { continue };
        let cond = agg_condition(set, a, &as_of, day)?;
        let scope = Rows {
            table: a.table,
            ts: &a.ts,
            as_of: as_of.clone(),
        };
        let value = match &a.column {
            // Text may be an Enum (see source::load_trimmed): aggregate the text itself,
            // so that min and max order it as text.
            Some(c) => Some(match expr::compile(c, &scope).map_err(|m| cerr(set, m))? {
                (Ty::Str, e) => e.cast(DataType::String),
                (_, e) => e,
            }),
            None => None,
        };
        let masked = |v: Expr| when(cond.clone()).then(v).otherwise(lit(NULL));
        let tmp = |what: &str| format!("_{what}{i}");
        // A row-wise column, and the plain column that reads it.
        let column = |what: &str, e: Expr, to: &mut Vec<Expr>| {
            let name = tmp(what);
            to.push(e.alias(name.as_str()));
            col(name.as_str())
        };
        if a.per_day && a.func == AggFn::Mean {
            // The mean of daily sums: roll up per (customer, day), then total over the
            // number of days (without the first day: minus that day's total, found with
            // max_by, over one day fewer).
            let v = value
                .clone()
                .ok_or_else(|| cerr(set, "per_day needs a column"))?;
            let by = day_value(a, day, &as_of);
            if matches!(by, SubValue::Day(_)) {
                // At one as-of date: the number of days and the first day's total (both
                // from the subgroup's pass over its sorted (customer, day) keys), and the
                // total of every row: no group per (customer, day), several times less
                // memory and time. Combined after the joins.
                let hidden = |what: &str| format!("_pd{i}_{what}");
                let g = subgroup(&mut subs, cond.clone(), by.clone());
                let n = g.count();
                g.second.push(n.alias(hidden("days").as_str()));
                plain.push(
                    exact_sum(masked(v.clone()), &tmp("t"), &mut pre)
                        .alias(hidden("total").as_str()),
                );
                let days = col(hidden("days").as_str()).cast(DataType::Float64);
                let total = col(hidden("total").as_str());
                let (num, den) = if a.exclude_first_day {
                    // The first day's total comes from the subgroup's sorted pass.
                    g.first_day.push((v, hidden("first")));
                    (total - col(hidden("first").as_str()), days - lit(1.0))
                } else {
                    (total, days)
                };
                post.push(
                    when(den.clone().gt(lit(0.0)))
                        .then(num / den)
                        .otherwise(lit(NULL))
                        .cast(f.ty.polars())
                        .alias(f.name.as_str()),
                );
                continue;
            }
            let g = subgroup(&mut subs, cond.clone(), by);
            let daily = exact_sum(v, &format!("_p{i}"), &mut g.rows_pre);
            let s = g.first(daily, i);
            let total = exact_sum(col(s.as_str()), &format!("_q{i}"), &mut g.mid);
            let days = len().cast(DataType::Float64);
            let (num, den) = if a.exclude_first_day {
                let first = g.first_day(col(s.as_str()));
                (total - first, days - lit(1.0))
            } else {
                (total, days)
            };
            let e = when(den.clone().gt(lit(0.0)))
                .then(num / den)
                .otherwise(lit(NULL));
            g.second.push(e.cast(f.ty.polars()).alias(f.name.as_str()));
            continue;
        }
        if a.per_day {
            // Roll up per (customer, day), then aggregate the days.
            let v = value
                .clone()
                .ok_or_else(|| cerr(set, "per_day needs a column"))?;
            let d = days_ago(as_of.clone(), &a.ts).alias("_d");
            let mut by = keys.clone();
            by.push(col("_d"));
            let mut parts = vec![d];
            let sum = if f.ty == Ty::Float {
                exact_sum(v, "_p", &mut parts)
            } else {
                v.sum()
            };
            let daily = frame
                .clone()
                .filter(cond.clone())
                .with_columns(parts)
                .group_by(by)
                .agg([sum.alias("_v")]);
            let days = if a.exclude_first_day {
                col("_v").filter(col("_d").neq(col("_d").max()))
            } else {
                col("_v")
            };
            let e = aggregate(a.func, days, col("_d"))?;
            outs.push(
                daily
                    .group_by(keys.clone())
                    .agg([e.cast(f.ty.polars()).alias(f.name.as_str())]),
            );
            continue;
        }
        let e = match a.func {
            AggFn::Count => {
                let counted = match value {
                    Some(v) => cond.clone().and(v.is_not_null()),
                    None => cond.clone(),
                };
                column("n", counted, &mut pre).sum()
            }
            AggFn::Any => {
                let hit = match value {
                    Some(v) => cond.clone().and(v.fill_null(lit(false))),
                    None => cond.clone(),
                };
                column("any", hit.cast(DataType::UInt32), &mut pre)
                    .max()
                    .gt(lit(0u32))
            }
            AggFn::DistinctCount => {
                // The number of (customer, value) groups of a customer.
                let v = value.ok_or_else(|| cerr(set, format!("{} needs a column", f.name)))?;
                let by = match &a.column {
                    Some(expr::Expr::Name(n)) if n == "days_ago" => day_value(a, day, &as_of),
                    _ => SubValue::Expr(v),
                };
                let g = subgroup(&mut subs, cond.clone(), by);
                let n = g.count();
                g.second.push(n.cast(f.ty.polars()).alias(f.name.as_str()));
                continue;
            }
            AggFn::Sum if f.ty == Ty::Float => {
                let v = value.ok_or_else(|| cerr(set, format!("{} needs a column", f.name)))?;
                exact_sum(masked(v), &tmp("p"), &mut pre)
            }
            AggFn::Mean => {
                let v = value.ok_or_else(|| cerr(set, format!("{} needs a column", f.name)))?;
                let n = column("n", cond.clone().and(v.clone().is_not_null()), &mut pre)
                    .sum()
                    .cast(DataType::Float64);
                let sum = exact_sum(masked(v), &tmp("p"), &mut pre);
                when(n.clone().gt(lit(0.0)))
                    .then(sum / n)
                    .otherwise(lit(NULL))
            }
            func => {
                let v = value.ok_or_else(|| cerr(set, format!("{} needs a column", f.name)))?;
                let v = column("v", masked(v), &mut pre);
                let order = match func {
                    AggFn::First | AggFn::Last => {
                        column("o", masked(days_ago(as_of.clone(), &a.ts)), &mut pre)
                    }
                    _ => lit(NULL),
                };
                aggregate(func, v, order)?
            }
        };
        plain.push(e.cast(f.ty.polars()).alias(f.name.as_str()));
    }
    if let Some(l) = label {
        let cond = label_condition(set, l, &as_of)?;
        let name = format!("_label_{}", l.name);
        pre.push(cond.fill_null(lit(false)).alias(name.as_str()));
        plain.push(col(name.as_str()).sum());
    }
    for mut g in subs {
        let only_count = g.first.is_empty();
        let first = if g.first.is_empty() {
            vec![len().alias("_rows")]
        } else {
            g.first
        };
        let mut rows = frame.clone().filter(g.rows);
        if !g.rows_pre.is_empty() {
            rows = rows.with_columns(g.rows_pre);
        }
        let per_value = match g.value {
            SubValue::Expr(v) => {
                let mut by = keys.clone();
                by.push(v.alias(SUB_VALUE));
                rows.group_by(by).agg(first)
            }
            // One UInt64 key, (customer << 32) + (day + 2^31): a single-column group-by
            // is several times faster than one over two columns.
            SubValue::Day(ts) => {
                let shift = lit(1u64 << 32);
                let pack = col(CUSTOMER_KEY).cast(DataType::UInt64) * shift.clone()
                    + (col(ts.as_str()).cast(DataType::Int64) + lit(1i64 << 31))
                        .cast(DataType::UInt64);
                // Only counting the (customer, day) pairs: sorting the packed keys and
                // keeping each first of a run is about twice as fast as hashing millions
                // of nearly unique keys.
                let grouped = if only_count {
                    let p = col(SUB_PACK);
                    let mut cols = vec![pack.alias(SUB_PACK)];
                    for (k, (v, _)) in g.first_day.iter().enumerate() {
                        cols.push(v.clone().alias(format!("_fd{k}").as_str()));
                    }
                    let sorted = rows
                        .select(cols)
                        .sort([SUB_PACK], SortMultipleOptions::default());
                    let new_day = p.clone().neq(p.clone().shift(lit(1))).fill_null(lit(true));
                    if g.first_day.is_empty() {
                        sorted
                            .with_column(new_day.alias(SUB_NEW))
                            .filter(col(SUB_NEW))
                    } else {
                        // The rows of each customer's earliest day lead its run: their
                        // key equals the key at the start of the run.
                        let cust = p.clone().floor_div(shift.clone());
                        let starts = cust.clone().neq(cust.shift(lit(1))).fill_null(lit(true));
                        let run_key = when(starts)
                            .then(p.clone())
                            .otherwise(lit(NULL))
                            .fill_null_with_strategy(FillNullStrategy::Forward(None));
                        let mut on_first = Vec::new();
                        for (k, (_, name)) in g.first_day.iter().enumerate() {
                            let v = when(col(SUB_FIRST))
                                .then(col(format!("_fd{k}").as_str()))
                                .otherwise(lit(NULL));
                            let sum = exact_sum(v, &format!("_fd{k}_"), &mut on_first);
                            g.second.push(sum.alias(name.as_str()));
                        }
                        sorted
                            .with_columns([new_day.alias(SUB_NEW), p.eq(run_key).alias(SUB_FIRST)])
                            .filter(col(SUB_NEW).or(col(SUB_FIRST)))
                            .with_columns(on_first)
                    }
                } else {
                    rows.group_by([pack.alias(SUB_PACK)])
                        .agg(first)
                        .with_column(lit(true).alias(SUB_NEW))
                };
                grouped.with_columns([
                    col(SUB_PACK)
                        .floor_div(shift.clone())
                        .cast(DataType::UInt32)
                        .alias(CUSTOMER_KEY),
                    ((col(SUB_PACK) - col(SUB_PACK).floor_div(shift.clone()) * shift)
                        .cast(DataType::Int64)
                        - lit(1i64 << 31))
                    .alias(SUB_DAY),
                ])
            }
        };
        let per_value = if g.mid.is_empty() {
            per_value
        } else {
            per_value.with_columns(g.mid)
        };
        outs.push(per_value.group_by(keys.clone()).agg(g.second));
    }
    if !plain.is_empty() {
        let frame = if pre.is_empty() {
            frame
        } else {
            frame.with_columns(pre)
        };
        outs.insert(0, frame.group_by(keys).agg(plain));
    }
    Ok((outs, post))
}

/// An exact, hence order-independent, sum of the Float64 row expression `x`, so that a
/// feature's value does not depend on how the streaming engine splits the rows among
/// threads. Each value is split into three parts that sum without rounding: its integer
/// part, then 33 fractional bits, then the rest (the parts of values in [2^-14, 2^33)
/// are multiples of 1, 2^-33 and 2^-66 below 2^33, 1 and 2^-33: sums of up to 2^20 of them
/// are exact in a double). The three sums are added in a fixed order. Adds the parts, named
/// after `name`, to `pre`; returns the aggregation.
fn exact_sum(x: Expr, name: &str, pre: &mut Vec<Expr>) -> Expr {
    const SCALE: f64 = 8_589_934_592.0; // 2^33
    let x = x.cast(DataType::Float64);
    let whole = x.clone().floor();
    let total = |n: &str| {
        col(format!("{n}a").as_str()).sum()
            + col(format!("{n}b").as_str()).sum()
            + col(format!("{n}c").as_str()).sum()
    };
    // The same sum asked for twice (e.g. a total and a per-day mean's total) reads the
    // same parts.
    for e in pre.iter() {
        if let Expr::Alias(inner, n) = e {
            if **inner == whole {
                if let Some(base) = n.strip_suffix('a') {
                    return total(base);
                }
            }
        }
    }
    // Infinities keep their sum (inf - inf would be NaN); NaN stays NaN.
    let frac = when(x.clone().is_infinite())
        .then(lit(0.0))
        .otherwise(x - whole.clone());
    let high = (frac.clone() * lit(SCALE)).floor() / lit(SCALE);
    let low = frac - high.clone();
    pre.push(whole.alias(format!("{name}a").as_str()));
    pre.push(high.alias(format!("{name}b").as_str()));
    pre.push(low.alias(format!("{name}c").as_str()));
    total(name)
}

/// The value column of a [`Subgroup`]'s first group-by (over an expression).
const SUB_VALUE: &str = "_sv";
/// The packed (customer, day) key of a [`Subgroup`] by day, and the day unpacked.
const SUB_PACK: &str = "_sp";
const SUB_DAY: &str = "_sd";
/// In a [`Subgroup`] by day: true on the first row of each (customer, day), and on the rows
/// of the customer's earliest day.
const SUB_NEW: &str = "_sn";
const SUB_FIRST: &str = "_sf";

/// What a [`Subgroup`] groups by besides the customer.
#[derive(Clone)]
enum SubValue {
    Expr(Expr),
    /// The (Int32) day column `ts` of a snapshot: at one as-of date, distinct days_ago are
    /// distinct days.
    Day(String),
}

/// The per-day value of an aggregation: its event day (a snapshot over a contract
/// timestamp), else days_ago.
fn day_value(a: &Agg, day: Option<i32>, as_of: &Expr) -> SubValue {
    let contract_ts = a
        .table
        .column(&a.ts)
        .is_some_and(|c| c.ty == ColType::Timestamp);
    match day {
        Some(_) if contract_ts => SubValue::Day(a.ts.clone()),
        _ => SubValue::Expr(days_ago(as_of.clone(), &a.ts)),
    }
}

/// Rows grouped by (customer, value) and then by customer.
struct Subgroup {
    id: String,
    rows: Expr,
    value: SubValue,
    /// Row-wise columns the first group-by reads.
    rows_pre: Vec<Expr>,
    /// Aggregations of the first group-by.
    first: Vec<Expr>,
    /// Columns computed on the first group-by's result, for the second.
    mid: Vec<Expr>,
    /// Aggregations of the second (per customer) group-by: the features.
    second: Vec<Expr>,
    /// By day only: values summed (exactly) over the customer's earliest day, and the
    /// names of those sums.
    first_day: Vec<(Expr, String)>,
}

impl Subgroup {
    /// Adds an aggregation to the first group-by; the name of its column.
    fn first(&mut self, e: Expr, i: usize) -> String {
        let name = format!("_s{i}");
        self.first.push(e.alias(name.as_str()));
        name
    }

    /// In the second group-by: the number of (customer, value) groups of the customer.
    fn count(&self) -> Expr {
        match &self.value {
            SubValue::Expr(_) => len(),
            SubValue::Day(_) => col(SUB_NEW).sum(),
        }
    }

    /// In the second group-by: `v` on the earliest day (largest days_ago).
    fn first_day(&self, v: Expr) -> Expr {
        match &self.value {
            SubValue::Expr(_) => v.max_by(col(SUB_VALUE)),
            SubValue::Day(_) => v.min_by(col(SUB_DAY)),
        }
    }
}

/// The subgroup of the rows where `cond` holds and `value` is not null, grouped by value
/// (shared by every feature with the same condition and value).
fn subgroup(subs: &mut Vec<Subgroup>, cond: Expr, value: SubValue) -> &mut Subgroup {
    let (id, not_null) = match &value {
        SubValue::Expr(v) => (format!("{cond:?} | {v:?}"), v.clone().is_not_null()),
        SubValue::Day(ts) => (
            format!("{cond:?} | day {ts}"),
            col(ts.as_str()).is_not_null(),
        ),
    };
    let at = match subs.iter().position(|g| g.id == id) {
        Some(at) => at,
        None => {
            subs.push(Subgroup {
                id,
                rows: cond.and(not_null),
                value,
                rows_pre: Vec::new(),
                first: Vec::new(),
                mid: Vec::new(),
                second: Vec::new(),
                first_day: Vec::new(),
            });
            subs.len() - 1
        }
    };
    &mut subs[at]
}

/// A superset of the rows of `table` that some aggregation of the set counts in a
/// snapshot at `day` (None: the set aggregates nothing over the table). Windowed
/// aggregations keep their timestamp's whole span of windows, without their filters:
/// one range test a row instead of every condition (the plan applies the exact ones).
pub fn snapshot_rows(
    set: &FeatureSet,
    table: &str,
    day: i32,
) -> Result<Option<Expr>, CompileError> {
    let as_of = lit(day);
    let mut keep: Option<Expr> = None;
    let mut spans: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for f in &set.features {
        if let Kind::Agg(a) = &f.kind {
            if a.table.name == table {
                let contract_ts = a
                    .table
                    .column(&a.ts)
                    .is_some_and(|c| c.ty == ColType::Timestamp);
                if let (true, Some((w, off))) = (contract_ts, a.window) {
                    let hi = day as i64 - off as i64;
                    let lo = hi - w as i64 + 1;
                    let span = spans.entry(a.ts.as_str()).or_insert((lo, hi));
                    *span = (span.0.min(lo), span.1.max(hi));
                    continue;
                }
                let c = agg_condition(set, a, &as_of, Some(day))?;
                keep = Some(match keep {
                    None => c,
                    Some(k) => k.or(c),
                });
            }
        }
    }
    for (ts, (lo, hi)) in spans {
        let (lo, hi) = (lo.max(i32::MIN as i64), hi.min(i32::MAX as i64));
        if lo > hi {
            continue;
        }
        let c = col(ts)
            .gt_eq(lit(lo as i32))
            .and(col(ts).lt_eq(lit(hi as i32)))
            .fill_null(lit(false));
        keep = Some(match keep {
            None => c,
            Some(k) => k.or(c),
        });
    }
    Ok(keep)
}

/// The columns of `table` that the set's aggregations and labels read.
pub fn columns_read(set: &FeatureSet, table: &str) -> BTreeSet<String> {
    fn names(e: &expr::Expr, out: &mut BTreeSet<String>) {
        use expr::Expr as E;
        match e {
            E::Name(n) => {
                out.insert(n.clone());
            }
            E::Neg(a) | E::Not(a) | E::IsNull(a, _) => names(a, out),
            E::In(a, list, _) => {
                names(a, out);
                list.iter().for_each(|x| names(x, out));
            }
            E::Bin(_, a, b) => {
                names(a, out);
                names(b, out);
            }
            E::Call(_, args) => args.iter().for_each(|x| names(x, out)),
            E::Int(_) | E::Float(_) | E::Str(_) | E::Bool(_) | E::Null => {}
        }
    }
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

/// The aggregation itself over an already-masked value (nulls where a row does not count).
fn aggregate(func: AggFn, v: Expr, order: Expr) -> Result<Expr, CompileError> {
    Ok(match func {
        AggFn::Count => v.count(),
        AggFn::Sum => v.sum(),
        AggFn::Mean => v.mean(),
        AggFn::Min => v.min(),
        AggFn::Max => v.max(),
        // n_unique counts null as a value; masked-out rows are null.
        AggFn::DistinctCount => {
            v.clone().n_unique().cast(DataType::Int64)
                - v.is_null().sum().gt(lit(0)).cast(DataType::Int64)
        }
        // Earliest / latest by date: rows further back have larger days_ago.
        AggFn::First => v.get(order.arg_max(), true),
        AggFn::Last => v.get(order.arg_min(), true),
        AggFn::Any => v.any(true),
    })
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
    let as_of = mode.as_of();
    let customers = inputs
        .get("customers")
        .cloned()
        .ok_or_else(|| cerr(set, "the customers table was not loaded"))?;

    let customers_all = customers.clone();
    // The base: one row per (customer, as_of).
    let mut base = match mode {
        Mode::Snapshot(d) => snapshot_base(customers, *d),
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
    for f in &feats {
        if let Kind::Entity { column, ts } = &f.kind {
            let table =
                crate::source::table_spec("customers").ok_or_else(|| cerr(set, "no customers"))?;
            let scope = Rows {
                table,
                ts,
                as_of: as_of.clone(),
            };
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
    base = base.select(keep);

    // Aggregates, one group-by per table (plus one per per-day feature).
    let mut by_table: BTreeMap<&'static str, Vec<&Feature>> = BTreeMap::new();
    for f in &feats {
        if let Kind::Agg(a) = &f.kind {
            by_table.entry(a.table.name).or_default().push(f);
        }
    }
    if let Some(l) = label {
        by_table.entry(l.table.name).or_default();
    }
    for (tname, tf) in &by_table {
        let frame = inputs
            .get(tname)
            .cloned()
            .ok_or_else(|| cerr(set, format!("the {tname} table was not loaded")))?;
        let l = label.filter(|l| l.table.name == *tname);
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
    let mut level: HashMap<&str, usize> = HashMap::new();
    let mut levels: BTreeMap<usize, Vec<Expr>> = BTreeMap::new();
    for f in &feats {
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
            Kind::Derived(e) => compile_rows(set, e, &Features)?.cast(f.ty.polars()),
            Kind::Quantile {
                of,
                bins,
                higher_is_better,
                among,
            } => {
                if matches!(mode, Mode::Spine(_)) {
                    // Joined from the population snapshots.
                    continue;
                }
                let v = col(of.as_str());
                let mut mask = v.clone().is_not_null();
                if let Some(a) = among {
                    mask = mask.and(compile_rows(set, a, &Features)?.fill_null(lit(false)));
                }
                let masked = when(mask.clone()).then(v).otherwise(lit(NULL));
                // Worst to best; ties share the lowest rank, so a better value never scores lower.
                let rank = masked
                    .rank(
                        RankOptions {
                            method: RankMethod::Min,
                            descending: !*higher_is_better,
                        },
                        None,
                    )
                    .cast(DataType::Int64);
                let n = mask.cast(DataType::Int64).sum();
                let score = (lit(*bins as i64) * (rank - lit(1i64))).floor_div(n) + lit(1i64);
                when(
                    col(of.as_str())
                        .is_not_null()
                        .and(masked_is_set(set, among)?),
                )
                .then(score)
                .otherwise(lit(NULL))
                .cast(DataType::Int64)
            }
            Kind::Case { cases, otherwise } => {
                let val = |v: &Option<String>| match v {
                    Some(s) => lit(s.clone()),
                    None => lit(NULL).cast(DataType::String),
                };
                // Nested from the last case back, so the first matching case wins.
                let mut acc = val(otherwise);
                for (w, t) in cases.iter().rev() {
                    acc = when(compile_rows(set, w, &Features)?.fill_null(lit(false)))
                        .then(val(t))
                        .otherwise(acc);
                }
                acc.cast(DataType::String)
            }
        };
        levels.entry(lv).or_default().push(e.alias(f.name.as_str()));
    }
    for (_, exprs) in levels {
        base = base.with_columns(exprs);
    }

    // Output columns.
    let mut out = vec![col("customer_id"), as_of_date(mode).alias("as_of")];
    match wanted {
        Some(w) => {
            for f in &feats {
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
    if matches!(mode, Mode::Spine(_)) {
        base = base.sort([ROW], SortMultipleOptions::default());
    }
    Ok(base.select(out))
}

fn masked_is_set(set: &FeatureSet, among: &Option<expr::Expr>) -> Result<Expr, CompileError> {
    Ok(match among {
        Some(a) => compile_rows(set, a, &Features)?.fill_null(lit(false)),
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
