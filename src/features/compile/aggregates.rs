//! One table's aggregates for the features that aggregate it, keyed like the mode: the
//! rows some feature (or the label) counts are kept, then each feature joins one of the
//! aggregation families below.
//!
//! - plain ([`Table::plain`]): count, any, sum, mean, min, max, first, last, read from
//!   row-wise columns by one group-by per customer (polars aggregates a plain column per
//!   group with its fast streaming kernels, whereas a conditional expression inside `agg`
//!   is evaluated group by group, several times slower);
//! - per day ([`Table::per_day`], [`Table::per_day_mean`]): rows rolled up per
//!   (customer, day), then the days aggregated;
//! - distinct counts ([`Table::distinct_count`]): the number of (customer, value) groups.
//!
//! Per-day means and distinct counts share two-level group-bys (see `subgroup`).

use polars::prelude::*;

use super::conditions::{agg_condition, label_condition, or_all};
use super::subgroup::{day_value, subgroup, SubValue, Subgroup};
use super::{cerr, CompileError, Mode};
use crate::features::def::{Agg, AggFn, Feature, FeatureSet, Kind, Label};
use crate::features::expr::{self, Ty};
use crate::features::rows::{days_ago, RowScope};
use crate::source::CUSTOMER_KEY;

/// Aggregates of one table for the given features, keyed like `mode`: the aggregate
/// frames to join to the base, and the columns to compute once they are joined.
pub(super) fn table_aggregates(
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
        Mode::Spine(spine) => spine_rows(frame, spine, customers),
    };
    // Keep only the rows some feature (or the label) counts: the union of their conditions
    // (point in time, window, filter). On event tables most rows are older than the
    // windows or of another kind, so the group-by sees a fraction of the table.
    let mut conds = Vec::new();
    for f in feats {
        if let Kind::Agg(a) = &f.kind {
            conds.push(agg_condition(set, a, &as_of, day)?);
        }
    }
    if let Some(l) = label {
        conds.push(label_condition(set, l, &as_of)?);
    }
    if let Some(k) = or_all(conds) {
        frame = frame.filter(k);
    }
    let t = Table {
        set,
        as_of,
        day,
        keys,
        frame,
    };

    // Aggregations read plain columns computed row by row beforehand (`pre`). Distinct
    // counts and per-day rollups group by (customer, value) first (`subs`, one two-level
    // group-by per condition and value, shared).
    let mut p = Parts::default();
    for (i, f) in feats.iter().enumerate() {
        let Kind::Agg(a) = &f.kind else { continue };
        let one = t.one(i, f, a)?;
        if a.per_day && a.func == AggFn::Mean {
            t.per_day_mean(&mut p, &one)?;
        } else if a.per_day {
            t.per_day(&mut p, &one)?;
        } else if a.func == AggFn::DistinctCount {
            t.distinct_count(&mut p, &one)?;
        } else {
            t.plain(&mut p, &one)?;
        }
    }
    if let Some(l) = label {
        let cond = label_condition(set, l, &t.as_of)?;
        let name = format!("_label_{}", l.name);
        p.pre.push(cond.fill_null(lit(false)).alias(name.as_str()));
        p.plain.push(col(name.as_str()).sum());
    }
    let Parts {
        plain,
        pre,
        subs,
        mut outs,
        post,
    } = p;
    for g in subs {
        outs.push(g.finish(&t.frame, &t.keys));
    }
    if !plain.is_empty() {
        let frame = if pre.is_empty() {
            t.frame
        } else {
            t.frame.with_columns(pre)
        };
        outs.insert(0, frame.group_by(t.keys).agg(plain));
    }
    Ok((outs, post))
}

/// The rows of an event table whose customer the spine names, once per spine date: the
/// table joined to the spine's distinct (customer key, as-of) pairs.
fn spine_rows(frame: LazyFrame, spine: &LazyFrame, customers: &LazyFrame) -> LazyFrame {
    frame.join(
        super::sweep::spine_keys(spine, customers).unique(None, UniqueKeepStrategy::Any),
        [col(CUSTOMER_KEY)],
        [col(CUSTOMER_KEY)],
        JoinArgs::new(JoinType::Inner),
    )
}

/// One table's aggregation at the mode's dates, shared by its features.
struct Table<'a> {
    set: &'a FeatureSet,
    as_of: Expr,
    /// The as-of day when it is one literal (a snapshot).
    day: Option<i32>,
    /// Group-by keys: the customer key (and the as-of date over a spine).
    keys: Vec<Expr>,
    /// The table's rows that some feature (or the label) counts.
    frame: LazyFrame,
}

/// What the features of a table add to its aggregation, family by family.
#[derive(Default)]
struct Parts {
    /// Aggregations of the one plain group-by per customer.
    plain: Vec<Expr>,
    /// Row-wise columns the plain group-by reads.
    pre: Vec<Expr>,
    /// Two-level group-bys (distinct counts, per-day means).
    subs: Vec<Subgroup>,
    /// Aggregate frames of their own (other per-day rollups).
    outs: Vec<LazyFrame>,
    /// Features computed from hidden columns of several of `outs`, once they are joined.
    post: Vec<Expr>,
}

/// One aggregation feature: its position (for temporary column names), the feature, its
/// aggregation, the condition under which a row counts, and the aggregated value.
struct One<'a> {
    i: usize,
    f: &'a Feature,
    a: &'a Agg,
    cond: Expr,
    value: Option<Expr>,
}

impl One<'_> {
    /// `v` where the row counts, else null.
    fn masked(&self, v: Expr) -> Expr {
        when(self.cond.clone()).then(v).otherwise(lit(NULL))
    }

    /// A temporary column name of this feature.
    fn tmp(&self, what: &str) -> String {
        format!("_{what}{}", self.i)
    }

    /// A row-wise column (added to `to`), and the plain column that reads it.
    fn column(&self, what: &str, e: Expr, to: &mut Vec<Expr>) -> Expr {
        let name = self.tmp(what);
        to.push(e.alias(name.as_str()));
        col(name.as_str())
    }

    /// The aggregated value, which validation made sure of.
    fn value(&self, set: &FeatureSet, missing: String) -> Result<Expr, CompileError> {
        self.value.clone().ok_or_else(|| cerr(set, missing))
    }

    /// The feature's output column, of its type.
    fn output(&self, e: Expr) -> Expr {
        e.cast(self.f.ty.polars()).alias(self.f.name.as_str())
    }
}

impl Table<'_> {
    /// The condition and value of the aggregation `a` of feature `f`.
    fn one<'f>(&self, i: usize, f: &'f Feature, a: &'f Agg) -> Result<One<'f>, CompileError> {
        let cond = agg_condition(self.set, a, &self.as_of, self.day)?;
        let scope = RowScope::compiling(
            a.table,
            &a.ts,
            self.as_of.clone(),
            self.set.extra_types(a.table.name),
        );
        let value = match &a.column {
            // Text may be an Enum (see source::load_trimmed): aggregate the text itself,
            // so that min and max order it as text.
            Some(c) => Some(
                match expr::compile(c, &scope).map_err(|m| cerr(self.set, m))? {
                    (Ty::Str, e) => e.cast(DataType::String),
                    (_, e) => e,
                },
            ),
            None => None,
        };
        Ok(One {
            i,
            f,
            a,
            cond,
            value,
        })
    }

    /// The mean of daily sums: roll up per (customer, day), then total over the number of
    /// days (without the first day: minus that day's total, found with max_by, over one
    /// day fewer).
    fn per_day_mean(&self, p: &mut Parts, one: &One) -> Result<(), CompileError> {
        let (i, a) = (one.i, one.a);
        let v = one.value(self.set, "per_day needs a column".into())?;
        let by = day_value(a, self.day, &self.as_of);
        if matches!(by, SubValue::Day(_)) {
            // At one as-of date: the number of days and the first day's total (both
            // from the subgroup's pass over its sorted (customer, day) keys), and the
            // total of every row: no group per (customer, day), several times less
            // memory and time. Combined after the joins.
            let hidden = |what: &str| format!("_pd{i}_{what}");
            let g = subgroup(&mut p.subs, one.cond.clone(), by.clone());
            let n = g.count();
            g.second.push(n.alias(hidden("days").as_str()));
            p.plain.push(
                exact_sum(one.masked(v.clone()), &one.tmp("t"), &mut p.pre)
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
            p.post.push(
                one.output(
                    when(den.clone().gt(lit(0.0)))
                        .then(num / den)
                        .otherwise(lit(NULL)),
                ),
            );
            return Ok(());
        }
        // Over a spine: the same three parts as at one date, so that a training set's
        // value equals the snapshot's to the last bit. The total is summed over the rows
        // (as above), not over the rounded daily sums; the days and the first day's
        // total come from the (customer, as_of, days_ago) groups.
        let hidden = |what: &str| format!("_pd{i}_{what}");
        let g = subgroup(&mut p.subs, one.cond.clone(), by);
        g.second.push(g.count().alias(hidden("days").as_str()));
        let days = col(hidden("days").as_str()).cast(DataType::Float64);
        let total = col(hidden("total").as_str());
        let (num, den) = if a.exclude_first_day {
            let daily = exact_sum(v.clone(), &format!("_p{i}"), &mut g.rows_pre);
            let s = g.first(daily, i);
            let first = g.first_day(col(s.as_str()));
            g.second.push(first.alias(hidden("first").as_str()));
            (total - col(hidden("first").as_str()), days - lit(1.0))
        } else {
            (total, days)
        };
        p.plain.push(
            exact_sum(one.masked(v), &one.tmp("t"), &mut p.pre).alias(hidden("total").as_str()),
        );
        p.post.push(
            one.output(
                when(den.clone().gt(lit(0.0)))
                    .then(num / den)
                    .otherwise(lit(NULL)),
            ),
        );
        Ok(())
    }

    /// Other per-day rollups: sum per (customer, day), then aggregate the days.
    fn per_day(&self, p: &mut Parts, one: &One) -> Result<(), CompileError> {
        let (f, a) = (one.f, one.a);
        let v = one.value(self.set, "per_day needs a column".into())?;
        let d = days_ago(self.as_of.clone(), &a.ts).alias("_d");
        let mut by = self.keys.clone();
        by.push(col("_d"));
        let mut parts = vec![d];
        let sum = if f.ty == Ty::Float {
            exact_sum(v, "_p", &mut parts)
        } else {
            v.sum()
        };
        let daily = self
            .frame
            .clone()
            .filter(one.cond.clone())
            .with_columns(parts)
            .group_by(by)
            .agg([sum.alias("_v")]);
        let days = if a.exclude_first_day {
            col("_v").filter(col("_d").neq(col("_d").max()))
        } else {
            col("_v")
        };
        let e = aggregate(a.func, days, col("_d"))?;
        p.outs
            .push(daily.group_by(self.keys.clone()).agg([one.output(e)]));
        Ok(())
    }

    /// A distinct count: the number of (customer, value) groups of a customer.
    fn distinct_count(&self, p: &mut Parts, one: &One) -> Result<(), CompileError> {
        let (f, a) = (one.f, one.a);
        let v = one.value(self.set, format!("{} needs a column", f.name))?;
        let by = match &a.column {
            Some(expr::Expr::Name(n)) if n == "days_ago" => day_value(a, self.day, &self.as_of),
            _ => SubValue::Expr(v),
        };
        let g = subgroup(&mut p.subs, one.cond.clone(), by);
        let n = g.count();
        g.second.push(one.output(n));
        Ok(())
    }

    /// A plain aggregation, read from row-wise columns by the table's one group-by.
    fn plain(&self, p: &mut Parts, one: &One) -> Result<(), CompileError> {
        let (f, a, cond) = (one.f, one.a, &one.cond);
        let missing = || format!("{} needs a column", f.name);
        let pre = &mut p.pre;
        let e = match a.func {
            AggFn::Count => {
                let counted = match one.value.clone() {
                    Some(v) => cond.clone().and(v.is_not_null()),
                    None => cond.clone(),
                };
                one.column("n", counted, pre).sum()
            }
            AggFn::Any => {
                let hit = match one.value.clone() {
                    Some(v) => cond.clone().and(v.fill_null(lit(false))),
                    None => cond.clone(),
                };
                one.column("any", hit.cast(DataType::UInt32), pre)
                    .max()
                    .gt(lit(0u32))
            }
            AggFn::Sum if f.ty == Ty::Float => {
                let v = one.value(self.set, missing())?;
                exact_sum(one.masked(v), &one.tmp("p"), pre)
            }
            AggFn::Mean => {
                let v = one.value(self.set, missing())?;
                let n = one
                    .column("n", cond.clone().and(v.clone().is_not_null()), pre)
                    .sum()
                    .cast(DataType::Float64);
                let sum = exact_sum(one.masked(v), &one.tmp("p"), pre);
                when(n.clone().gt(lit(0.0)))
                    .then(sum / n)
                    .otherwise(lit(NULL))
            }
            func => {
                let v = one.value(self.set, missing())?;
                let v = one.column("v", one.masked(v), pre);
                let order = match func {
                    AggFn::First | AggFn::Last => {
                        one.column("o", one.masked(days_ago(self.as_of.clone(), &a.ts)), pre)
                    }
                    _ => lit(NULL),
                };
                aggregate(func, v, order)?
            }
        };
        p.plain.push(one.output(e));
        Ok(())
    }
}

/// An exact, hence order-independent, sum of the Float64 row expression `x`, so that a
/// feature's value does not depend on how the streaming engine splits the rows among
/// threads. Each value is split into three parts that sum without rounding: its integer
/// part, then 33 fractional bits, then the rest (the parts of values in [2^-14, 2^33)
/// are multiples of 1, 2^-33 and 2^-66 below 2^33, 1 and 2^-33: sums of up to 2^20 of them
/// are exact in a double). The three sums are added in a fixed order. Adds the parts, named
/// after `name`, to `pre`; returns the aggregation.
pub(super) fn exact_sum(x: Expr, name: &str, pre: &mut Vec<Expr>) -> Expr {
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
