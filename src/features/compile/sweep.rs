//! The event sweep of a training set: the aggregations that are exact in integers,
//! computed for every `(customer, as_of)` pair of a spine from one sorted pass over the
//! table's rows, instead of joining every row to each of its customer's dates.
//!
//! **Which features** ([`split`]): over the table's event-time column, with a filter (and
//! value) that does not read the as-of date (no `days_ago` in it), without a per-day
//! rollup: `count`, `any`, `distinct_count` of `days_ago` (distinct event days), `min` /
//! `max` of `days_ago` (as-of minus the last / first event day), labels (counted
//! over `(D, D + horizon]`), and float `sum` / `mean` of a value that does not read the
//! as-of date, summed exactly as a snapshot's `exact_sum` does (see [`sums`]: bit for bit
//! the snapshot's value; a batch whose values fall outside the exact range sends that
//! feature to the join path for that batch). Everything else (integer sums, per-day
//! rollups, other distinct counts, min/max of other columns, date-dependent filters,
//! other timestamp columns) stays on the join path of `aggregates`, unchanged.
//!
//! **How** ([`run`]): the table's rows become `(customer key, event day, mask bits)`, one
//! bit per distinct filter (nulls count as false); rows no bit selects are dropped and the
//! rest sorted by (key, day). For each customer's slice, per filter: prefix counts of
//! masked rows, prefix counts of "first masked row of a day", and the previous / next
//! masked row of every position. For each of the customer's dates D and each distinct day
//! range two binary searches give the slice's rows in the range (ranges start and end at
//! day boundaries), then each feature is O(1). Time O(rows x filters + pairs x (ranges x
//! log rows + features)); memory: the batch's rows (24 bytes each, plus 8 a summed
//! value), the output, and one customer's prefix arrays.
//!
//! The output is keyed `(CUSTOMER_KEY, _as_of)` with one row per distinct spine pair and
//! the features' own names and types; pairs without rows get what the join path gives
//! after `plan`'s fill (counts 0, `any` false, min/max null).
//!
//! [`SWEEP_ENV`]`=off` forces the join path for every feature (a diagnostic, used by the
//! tests to compare the two).

mod index;
mod sums;

pub(crate) use index::MaskIndex;

use std::time::Instant;

use polars::prelude::*;

use super::conditions::or_all;
use super::{cerr, compile_rows, CompileError, Mode, AS_OF};
use crate::features::def::{Agg, AggFn, Feature, FeatureSet, Kind, Label};
use crate::features::expr::{self, Ty};
use crate::features::rows::RowScope;
use crate::source::CUSTOMER_KEY;

/// Diagnostic switch: `off` (or `0`, `false`) computes every training-set feature on the
/// join path, as before the sweep; unset, `on` (`1`, `true`) uses the sweep where exact.
pub const SWEEP_ENV: &str = "C360_TRAINING_SWEEP";

/// The most distinct filters one table's sweep carries (one bit each of a `u64`); the
/// features of further filters stay on the join path.
pub const MAX_MASKS: usize = 64;

/// Internal column names of the rows read for the sweep.
const DAY: &str = "_sweep_day";
const MASK: &str = "_sweep_m";

/// Whether the sweep is on, from [`SWEEP_ENV`]; an unknown value is an error naming it.
pub fn enabled() -> Result<bool, String> {
    env_switch(SWEEP_ENV, "join path only")
}

/// An on/off diagnostic switch read from the environment variable `var`: unset, empty,
/// `on`, `1`, `true` -> `Ok(true)`; `off`, `0`, `false` -> `Ok(false)` (any case, spaces
/// trimmed); anything else is an error naming the variable, its value and `off_means`.
pub(crate) fn env_switch(var: &str, off_means: &str) -> Result<bool, String> {
    switch(var, std::env::var(var), off_means)
}

/// [`env_switch`] from the variable's value.
fn switch(
    var: &str,
    v: Result<String, std::env::VarError>,
    off_means: &str,
) -> Result<bool, String> {
    match v {
        Err(std::env::VarError::NotPresent) => Ok(true),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!(
            "{var} is not valid text; unset it, or set it to off (diagnostic: {off_means})"
        )),
        Ok(v) => match v.trim().to_ascii_lowercase().as_str() {
            "" | "on" | "1" | "true" => Ok(true),
            "off" | "0" | "false" => Ok(false),
            _ => Err(format!(
                "{var}={v:?} is not on or off; unset it (the default, on), or set it to off (diagnostic: {off_means})"
            )),
        },
    }
}

/// What a swept feature computes from its masked rows in its day range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Measure {
    /// The number of rows (`count`, and a label's count of events).
    Count,
    /// Whether there is one (`any`).
    Any,
    /// The number of distinct event days (`distinct_count` of `days_ago`).
    DistinctDays,
    /// D minus the last event day (`min` of `days_ago`); null without rows.
    SinceLast,
    /// D minus the first event day (`max` of `days_ago`); null without rows.
    SinceFirst,
    /// The exact sum of the value ([`sums`]); 0.0 without rows.
    Sum,
    /// That sum over the number of rows (the snapshot's `sum / n`); null without rows.
    Mean,
}

/// The event days a feature reads at an as-of day D.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Span {
    /// `days_ago` in `[off, off + w)`, i.e. the days `(D - off - w, D - off]`; `w` None:
    /// every day on or before `D - off`.
    Back { off: u32, w: Option<u32> },
    /// The days `(D, D + h]` (a label's horizon).
    Ahead { h: u32 },
}

impl Span {
    /// The inclusive day bounds `(lo, hi)` at `d`, in i64 (no overflow for any i32 day
    /// and u32 window); `lo` is `i64::MIN` when unbounded. An empty span has `lo > hi`.
    pub(crate) fn bounds(self, d: i32) -> (i64, i64) {
        let d = i64::from(d);
        match self {
            Span::Back { off, w } => {
                let hi = d - i64::from(off);
                let lo = match w {
                    Some(w) => hi - i64::from(w) + 1,
                    None => i64::MIN,
                };
                (lo, hi)
            }
            Span::Ahead { h } => (d + 1, d + i64::from(h)),
        }
    }
}

/// The rows `[a, b)` of `days` (sorted ascending) whose day lies in `[lo, hi]`; `a` and
/// `b` fall on day boundaries. Empty (`a == b`) when no day does or `lo > hi`.
pub(crate) fn day_range(days: &[i32], lo: i64, hi: i64) -> (usize, usize) {
    let a = days.partition_point(|&t| i64::from(t) < lo);
    let b = days.partition_point(|&t| i64::from(t) <= hi);
    (a, b.max(a))
}

/// One swept output column.
struct Spec {
    /// The output column: the feature's name, or `_label_<name>`.
    name: String,
    measure: Measure,
    /// Index into [`Sweep::spans`].
    span: usize,
    /// Bit of the row masks.
    mask: usize,
    /// The output type (the feature's), or Int64 for a label's count.
    ty: DataType,
    /// Index into [`Sweep::values`] (sums and means).
    value: Option<usize>,
    /// The feature's position in `split`'s `feats` (None: the label).
    feat: Option<usize>,
}

/// A table's swept features: their specs, distinct day spans and filters.
pub(super) struct Sweep {
    specs: Vec<Spec>,
    spans: Vec<Span>,
    /// One boolean row expression per bit (nulls false).
    masks: Vec<Expr>,
    /// Their debug text, to share a bit between features with the same filter.
    mask_ids: Vec<String>,
    /// Float64 row expressions that sums and means read.
    values: Vec<Expr>,
    /// The event-time column.
    ts: String,
}

/// Whether a row expression reads the as-of date (`days_ago` or `days_ago(col)`), or
/// calls anything this module does not know to be date-independent. Recursion is
/// bounded by the parser's height limit (`expr::MAX_HEIGHT`).
fn reads_as_of(e: &expr::Expr) -> bool {
    use expr::Expr as E;
    match e {
        E::Name(n) => n == "days_ago",
        E::Int(_) | E::Float(_) | E::Str(_) | E::Bool(_) | E::Null => false,
        E::Neg(x) | E::Not(x) | E::IsNull(x, _) => reads_as_of(x),
        E::In(x, items, _) => reads_as_of(x) || items.iter().any(reads_as_of),
        E::Bin(_, a, b) => reads_as_of(a) || reads_as_of(b),
        E::Call(name, args) => {
            let known = ["max", "min", "abs", "coalesce", "if", "is_null"];
            !known.contains(&name.as_str()) || args.iter().any(reads_as_of)
        }
    }
}

fn is_days_ago(e: &Option<expr::Expr>) -> bool {
    matches!(e, Some(expr::Expr::Name(n)) if n == "days_ago")
}

impl Sweep {
    fn new(ts: &str) -> Sweep {
        Sweep {
            specs: Vec::new(),
            spans: Vec::new(),
            masks: Vec::new(),
            mask_ids: Vec::new(),
            values: Vec::new(),
            ts: ts.to_string(),
        }
    }

    /// The bit of `mask` (shared with an equal one), None when [`MAX_MASKS`] are taken.
    fn mask(&mut self, mask: Expr) -> Option<usize> {
        let id = format!("{mask:?}");
        if let Some(i) = self.mask_ids.iter().position(|m| *m == id) {
            return Some(i);
        }
        if self.masks.len() >= MAX_MASKS {
            return None;
        }
        self.masks.push(mask);
        self.mask_ids.push(id);
        Some(self.masks.len() - 1)
    }

    fn span(&mut self, s: Span) -> usize {
        match self.spans.iter().position(|x| *x == s) {
            Some(i) => i,
            None => {
                self.spans.push(s);
                self.spans.len() - 1
            }
        }
    }

    /// The row filter of an aggregation or label (`filter`, plus `extra` when given),
    /// compiled without an as-of date (it reads none), nulls false.
    fn row_mask(
        set: &FeatureSet,
        table: &'static crate::source::TableSpec,
        ts: &str,
        filter: &Option<expr::Expr>,
        extra: Option<Expr>,
    ) -> Result<Expr, CompileError> {
        let scope = RowScope::compiling(table, ts, lit(0i32));
        let mut m = match filter {
            Some(f) => compile_rows(set, f, &scope)?.fill_null(lit(false)),
            None => lit(true),
        };
        if let Some(x) = extra {
            m = m.and(x);
        }
        Ok(m.fill_null(lit(false)))
    }

    /// Adds feature `f` (aggregation `a`) when the sweep computes it exactly; false
    /// otherwise (it stays on the join path).
    fn add_feature(
        &mut self,
        set: &FeatureSet,
        at: usize,
        f: &Feature,
        a: &Agg,
    ) -> Result<bool, CompileError> {
        if a.per_day
            || a.exclude_first_day
            || a.ts != a.table.ts
            || a.filter.as_ref().is_some_and(reads_as_of)
        {
            return Ok(false);
        }
        let scope = RowScope::compiling(a.table, &a.ts, lit(0i32));
        // The value's part of the condition, as `aggregates::Table::plain` adds it.
        let value_part = |v: &expr::Expr| -> Result<Option<(Ty, Expr)>, CompileError> {
            if reads_as_of(v) {
                return Ok(None);
            }
            expr::compile(v, &scope).map(Some).map_err(|m| cerr(set, m))
        };
        let mut value = None;
        let (measure, extra) = match (a.func, &a.column) {
            (AggFn::Count, None) => (Measure::Count, None),
            (AggFn::Count, Some(v)) => match value_part(v)? {
                Some((_, e)) => (Measure::Count, Some(e.is_not_null())),
                None => return Ok(false),
            },
            (AggFn::Any, None) => (Measure::Any, None),
            (AggFn::Any, Some(v)) => match value_part(v)? {
                Some((Ty::Bool, e)) => (Measure::Any, Some(e.fill_null(lit(false)))),
                _ => return Ok(false),
            },
            (AggFn::DistinctCount, c) if is_days_ago(c) => (Measure::DistinctDays, None),
            (AggFn::Min, c) if is_days_ago(c) => (Measure::SinceLast, None),
            (AggFn::Max, c) if is_days_ago(c) => (Measure::SinceFirst, None),
            // As `plain` builds them: a float sum's and a mean's exact sum (and a mean's
            // count) read the rows where the value is not null.
            (AggFn::Sum | AggFn::Mean, Some(v)) if a.func == AggFn::Mean || f.ty == Ty::Float => {
                match value_part(v)? {
                    Some((Ty::Int | Ty::Float, e)) => {
                        value = Some(e.clone().cast(DataType::Float64));
                        let m = if a.func == AggFn::Sum {
                            Measure::Sum
                        } else {
                            Measure::Mean
                        };
                        (m, Some(e.is_not_null()))
                    }
                    _ => return Ok(false),
                }
            }
            _ => return Ok(false),
        };
        let m = Self::row_mask(set, a.table, &a.ts, &a.filter, extra)?;
        let Some(mask) = self.mask(m) else {
            return Ok(false);
        };
        let span = self.span(match a.window {
            Some((w, off)) => Span::Back { off, w: Some(w) },
            None => Span::Back { off: 0, w: None },
        });
        let value = value.map(|v| {
            self.values.push(v);
            self.values.len() - 1
        });
        self.specs.push(Spec {
            name: f.name.clone(),
            measure,
            span,
            mask,
            ty: f.ty.polars(),
            value,
            feat: Some(at),
        });
        Ok(true)
    }

    /// Adds the label when its filter does not read the as-of date.
    fn add_label(&mut self, set: &FeatureSet, l: &Label) -> Result<bool, CompileError> {
        if l.filter.as_ref().is_some_and(reads_as_of) || l.table.ts != self.ts {
            return Ok(false);
        }
        let m = Self::row_mask(set, l.table, l.table.ts, &l.filter, None)?;
        let Some(mask) = self.mask(m) else {
            return Ok(false);
        };
        let span = self.span(Span::Ahead { h: l.horizon_days });
        self.specs.push(Spec {
            name: format!("_label_{}", l.name),
            measure: Measure::Count,
            span,
            mask,
            ty: DataType::Int64,
            value: None,
            feat: None,
        });
        Ok(true)
    }
}

/// What [`split`] leaves to the join path, and the sweep's aggregate frame.
pub(super) type Split<'f> = (Vec<&'f Feature>, Option<&'f Label>, Option<LazyFrame>);

/// Over a spine (and unless [`SWEEP_ENV`] is off): sweeps the features of one table (and
/// its label) that the sweep computes exactly, and returns the rest for the join path
/// with the sweep's frame (keyed `CUSTOMER_KEY`, `_as_of`). In snapshot mode, or with
/// nothing to sweep, everything is returned unchanged.
pub(super) fn split<'f>(
    set: &FeatureSet,
    feats: &[&'f Feature],
    frame: &LazyFrame,
    customers: &LazyFrame,
    mode: &Mode,
    label: Option<&'f Label>,
) -> Result<Split<'f>, CompileError> {
    let Mode::Spine(spine) = mode else {
        return Ok((feats.to_vec(), label, None));
    };
    if !enabled().map_err(|m| cerr(set, m))? {
        return Ok((feats.to_vec(), label, None));
    }
    let table = feats
        .iter()
        .find_map(|f| match &f.kind {
            Kind::Agg(a) => Some(a.table),
            _ => None,
        })
        .or(label.map(|l| l.table));
    let Some(table) = table else {
        return Ok((feats.to_vec(), label, None));
    };
    let mut sw = Sweep::new(table.ts);
    let mut swept = vec![false; feats.len()];
    for (i, f) in feats.iter().enumerate() {
        swept[i] = match &f.kind {
            Kind::Agg(a) if a.table.name == table.name => sw.add_feature(set, i, f, a)?,
            _ => false,
        };
    }
    let rest_label = match label {
        Some(l) if l.table.name == table.name && sw.add_label(set, l)? => None,
        other => other,
    };
    if sw.specs.is_empty() {
        return Ok((feats.to_vec(), label, None));
    }
    let (out, fallen) = run(set, table.name, &sw, frame, spine, customers)?;
    for i in fallen {
        swept[i] = false;
    }
    let rest: Vec<&Feature> = feats
        .iter()
        .zip(&swept)
        .filter(|(_, s)| !**s)
        .map(|(f, _)| *f)
        .collect();
    let out = (out.width() > 2).then(|| out.lazy());
    Ok((rest, rest_label, out))
}

/// One table row for the sweep.
#[derive(Clone, Copy)]
struct Row {
    key: u32,
    day: i32,
    bits: u64,
    /// The row's position in the collected frame (to read its values).
    idx: u32,
}

/// The spine's distinct `(customer key, as_of day)` pairs, sorted.
fn spine_pairs(
    set: &FeatureSet,
    spine: &LazyFrame,
    customers: &LazyFrame,
) -> Result<Vec<(u32, i32)>, CompileError> {
    let perr = |e: PolarsError| cerr(set, format!("reading the spine's customers: {e}"));
    // A spine that carries the customer key already (a training set's batches) needs
    // no join to the customers.
    let keyed = spine
        .clone()
        .collect_schema()
        .map(|s| s.contains(CUSTOMER_KEY))
        .unwrap_or(false);
    let keys = if keyed {
        spine.clone().select([col(CUSTOMER_KEY), col(AS_OF)])
    } else {
        spine
            .clone()
            .select([col("customer_id"), col(AS_OF)])
            .join(
                customers
                    .clone()
                    .select([col("customer_id"), col(CUSTOMER_KEY)]),
                [col("customer_id")],
                [col("customer_id")],
                JoinArgs::new(JoinType::Inner),
            )
            .select([col(CUSTOMER_KEY), col(AS_OF)])
    };
    let df = keys
        .select([
            col(CUSTOMER_KEY).strict_cast(DataType::UInt32),
            col(AS_OF).strict_cast(DataType::Int32),
        ])
        .collect()
        .map_err(perr)?;
    let keys = df
        .column(CUSTOMER_KEY)
        .and_then(|c| c.u32())
        .map_err(perr)?;
    let days = df.column(AS_OF).and_then(|c| c.i32()).map_err(perr)?;
    let mut pairs: Vec<(u32, i32)> = keys
        .iter()
        .zip(days.iter())
        .filter_map(|(k, d)| Some((k?, d?)))
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    Ok(pairs)
}

/// A superset of the event days any pair's spans read: `(lo, hi)` clamped to i32.
fn day_bounds(sw: &Sweep, pairs: &[(u32, i32)]) -> Option<(i32, i32)> {
    let min_d = pairs.iter().map(|p| p.1).min()?;
    let max_d = pairs.iter().map(|p| p.1).max()?;
    let mut lo = i64::MAX;
    let mut hi = i64::MIN;
    for s in &sw.spans {
        lo = lo.min(s.bounds(min_d).0);
        hi = hi.max(s.bounds(max_d).1);
    }
    let clamp = |v: i64| v.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32;
    Some((clamp(lo), clamp(hi)))
}

/// The table's rows of the spine's customers that some mask selects, as sorted [`Row`]s,
/// and each of [`Sweep::values`] in that order (0.0 where null: never read, as every
/// mask that reads a value requires it).
fn read_rows(
    set: &FeatureSet,
    table: &str,
    sw: &Sweep,
    frame: &LazyFrame,
    keys: &[u32],
    (lo, hi): (i32, i32),
) -> Result<(Vec<Row>, Vec<Vec<f64>>), CompileError> {
    let perr = |e: PolarsError| cerr(set, format!("sweeping table {table}: {e}"));
    let mut cols = vec![
        col(CUSTOMER_KEY).strict_cast(DataType::UInt32),
        col(sw.ts.as_str()).strict_cast(DataType::Int32).alias(DAY),
    ];
    let names: Vec<String> = (0..sw.masks.len()).map(|j| format!("{MASK}{j}")).collect();
    for (m, n) in sw.masks.iter().zip(&names) {
        cols.push(m.clone().alias(n.as_str()));
    }
    let vnames: Vec<String> = (0..sw.values.len())
        .map(|j| format!("{DAY}_v{j}"))
        .collect();
    for (v, n) in sw.values.iter().zip(&vnames) {
        cols.push(v.clone().alias(n.as_str()));
    }
    let any = or_all(names.iter().map(|n| col(n.as_str()))).unwrap_or(lit(false));
    let day = col(DAY);
    let keep = any
        .and(day.clone().gt_eq(lit(lo)))
        .and(day.lt_eq(lit(hi)))
        .fill_null(lit(false));
    let df = crate::features::collect(frame.clone().select(cols).filter(keep)).map_err(perr)?;
    let key = df
        .column(CUSTOMER_KEY)
        .and_then(|c| c.u32())
        .map_err(perr)?;
    let days = df.column(DAY).and_then(|c| c.i32()).map_err(perr)?;
    let mut bits = vec![0u64; df.height()];
    for (j, n) in names.iter().enumerate() {
        let m = df.column(n).and_then(|c| c.bool()).map_err(perr)?;
        for (b, v) in bits.iter_mut().zip(m.iter()) {
            if v == Some(true) {
                *b |= 1u64 << j;
            }
        }
    }
    if u32::try_from(df.height()).is_err() {
        return Err(cerr(
            set,
            format!(
                "sweeping table {table}: {} rows in one batch (more than 2^32); set {} to fewer customers per batch",
                df.height(),
                crate::features::training_set::BATCH_ENV
            ),
        ));
    }
    // Whether a key is the spine's: a table of the keys' range when it is at most 64
    // entries a key (a batch's keys are one dense range), else a binary search.
    let (first, last) = (
        keys.first().copied().unwrap_or(0),
        keys.last().copied().unwrap_or(0),
    );
    let span = (last - first) as usize + 1;
    let dense: Option<Vec<bool>> = (span <= keys.len().saturating_mul(64)).then(|| {
        let mut t = vec![false; span];
        for &k in keys {
            t[(k - first) as usize] = true;
        }
        t
    });
    let named = |k: u32| match &dense {
        Some(t) => k >= first && t.get((k - first) as usize).copied().unwrap_or(false),
        None => keys.binary_search(&k).is_ok(),
    };
    let mut rows: Vec<Row> = key
        .iter()
        .zip(days.iter())
        .zip(bits)
        .enumerate()
        .filter_map(|(i, ((k, d), bits))| {
            let (key, day) = (k?, d?);
            (bits != 0 && named(key)).then_some(Row {
                key,
                day,
                bits,
                idx: i as u32,
            })
        })
        .collect();
    rows.sort_unstable_by_key(|r| (r.key, r.day));
    let mut values = Vec::with_capacity(vnames.len());
    for n in &vnames {
        let v = df.column(n).and_then(|c| c.f64()).map_err(perr)?;
        values.push(
            rows.iter()
                .map(|r| v.get(r.idx as usize).unwrap_or(0.0))
                .collect(),
        );
    }
    drop(df);
    Ok((rows, values))
}

/// The specs whose values this batch cannot sum exactly ([`sums::in_range`] fails for a
/// row their mask selects, or a customer has more than [`sums::MAX_ROWS`] rows).
fn out_of_range(sw: &Sweep, rows: &[Row], values: &[Vec<f64>]) -> Vec<bool> {
    let mut longest = 0usize;
    let mut start = 0usize;
    for i in 1..=rows.len() {
        if i == rows.len() || rows[i].key != rows[start].key {
            longest = longest.max(i - start);
            start = i;
        }
    }
    sw.specs
        .iter()
        .map(|s| match s.value {
            None => false,
            Some(v) => {
                let m = 1u64 << s.mask;
                longest > sums::MAX_ROWS
                    || rows
                        .iter()
                        .zip(&values[v])
                        .any(|(r, &x)| r.bits & m != 0 && !sums::in_range(x))
            }
        })
        .collect()
}

/// One output column under construction.
enum Out {
    Int(Vec<i64>),
    Bool(Vec<bool>),
    OptInt(Vec<Option<i64>>),
    Float(Vec<f64>),
    OptFloat(Vec<Option<f64>>),
    /// A spec that falls back to the join path in this batch.
    None,
}

/// The sweep of one table: the aggregate frame, one row per distinct spine pair, and the
/// `feats` positions of the features left to the join path in this batch (sums whose
/// values are out of the exact range).
fn run(
    set: &FeatureSet,
    table: &str,
    sw: &Sweep,
    frame: &LazyFrame,
    spine: &LazyFrame,
    customers: &LazyFrame,
) -> Result<(DataFrame, Vec<usize>), CompileError> {
    let t0 = Instant::now();
    let pairs = spine_pairs(set, spine, customers)?;
    let pairs_secs = t0.elapsed().as_secs_f64();
    let mut keys: Vec<u32> = pairs.iter().map(|p| p.0).collect();
    keys.dedup();
    let (rows, values) = match day_bounds(sw, &pairs) {
        Some(bounds) => read_rows(set, table, sw, frame, &keys, bounds)?,
        None => (Vec::new(), vec![Vec::new(); sw.values.len()]),
    };
    let fallen = out_of_range(sw, &rows, &values);
    let read_secs = t0.elapsed().as_secs_f64();
    let n = pairs.len();
    let mut outs: Vec<Out> = sw
        .specs
        .iter()
        .zip(&fallen)
        .map(|(s, &fell)| match s.measure {
            _ if fell => Out::None,
            Measure::Count | Measure::DistinctDays => Out::Int(vec![0; n]),
            Measure::Any => Out::Bool(vec![false; n]),
            Measure::SinceLast | Measure::SinceFirst => Out::OptInt(vec![None; n]),
            Measure::Sum => Out::Float(vec![0.0; n]),
            Measure::Mean => Out::OptFloat(vec![None; n]),
        })
        .collect();
    // Per customer: its rows' days, each (pair, span)'s row range, one filter's index.
    let mut days: Vec<i32> = Vec::new();
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    let mut index = MaskIndex::default();
    let mut part_sums = sums::PartSums::default();
    let nspans = sw.spans.len();
    let by_bit: Vec<Vec<usize>> = (0..sw.masks.len())
        .map(|bit| {
            (0..sw.specs.len())
                .filter(|&i| sw.specs[i].mask == bit)
                .collect()
        })
        .collect();
    let (mut r0, mut p0) = (0usize, 0usize);
    while p0 < n {
        let key = pairs[p0].0;
        let p1 = p0 + pairs[p0..].partition_point(|p| p.0 == key);
        r0 += rows[r0..].partition_point(|r| r.key < key);
        let r1 = r0 + rows[r0..].partition_point(|r| r.key == key);
        let slice = &rows[r0..r1];
        days.clear();
        days.extend(slice.iter().map(|r| r.day));
        ranges.clear();
        for &(_, d) in &pairs[p0..p1] {
            for s in &sw.spans {
                let (lo, hi) = s.bounds(d);
                ranges.push(day_range(&days, lo, hi));
            }
        }
        for (bit, specs) in by_bit.iter().enumerate() {
            if specs.is_empty() {
                continue;
            }
            let m = 1u64 << bit;
            index.build(&days, |i| slice[i].bits & m != 0);
            for &i in specs {
                let (s, out) = (&sw.specs[i], &mut outs[i]);
                if matches!(out, Out::None) {
                    continue;
                }
                if let Some(v) = s.value {
                    let vals = &values[v][r0..r1];
                    part_sums.build(days.len(), |i| slice[i].bits & m != 0, |i| vals[i]);
                }
                for (k, &(_, d)) in pairs[p0..p1].iter().enumerate() {
                    let (a, b) = ranges[k * nspans + s.span];
                    let at = p0 + k;
                    let since = |t: Option<i32>| t.map(|t| i64::from(d) - i64::from(t));
                    match (s.measure, &mut *out) {
                        (Measure::Count, Out::Int(v)) => v[at] = index.count(a, b) as i64,
                        (Measure::DistinctDays, Out::Int(v)) => {
                            v[at] = index.distinct_days(a, b) as i64
                        }
                        (Measure::Any, Out::Bool(v)) => v[at] = index.count(a, b) > 0,
                        (Measure::SinceLast, Out::OptInt(v)) => {
                            v[at] = since(index.last_day(&days, a, b))
                        }
                        (Measure::SinceFirst, Out::OptInt(v)) => {
                            v[at] = since(index.first_day(&days, a, b))
                        }
                        (Measure::Sum, Out::Float(v)) => v[at] = part_sums.sum(a, b),
                        (Measure::Mean, Out::OptFloat(v)) => {
                            let c = index.count(a, b);
                            v[at] = (c > 0).then(|| part_sums.sum(a, b) / c as f64)
                        }
                        _ => {}
                    }
                }
            }
        }
        r0 = r1;
        p0 = p1;
    }
    let perr = |e: PolarsError| cerr(set, format!("sweeping table {table}: {e}"));
    let mut cols = vec![
        UInt32Chunked::from_iter_values(CUSTOMER_KEY.into(), pairs.iter().map(|p| p.0))
            .into_column(),
        Int32Chunked::from_iter_values(AS_OF.into(), pairs.iter().map(|p| p.1)).into_column(),
    ];
    for (s, out) in sw.specs.iter().zip(outs) {
        let name: PlSmallStr = s.name.as_str().into();
        let c = match out {
            Out::Int(v) => Int64Chunked::from_vec(name, v).into_column(),
            Out::Bool(v) => BooleanChunked::from_iter_values(name, v.into_iter()).into_column(),
            Out::OptInt(v) => Int64Chunked::from_iter_options(name, v.into_iter()).into_column(),
            Out::Float(v) => Float64Chunked::from_vec(name, v).into_column(),
            Out::OptFloat(v) => {
                Float64Chunked::from_iter_options(name, v.into_iter()).into_column()
            }
            Out::None => continue,
        };
        cols.push(c.cast(&s.ty).map_err(perr)?);
    }
    let df = DataFrame::new(n, cols).map_err(perr)?;
    tracing::debug!(
        set = %set.name,
        table,
        features = sw.specs.len(),
        filters = sw.masks.len(),
        rows = rows.len(),
        pairs = n,
        fallback = fallen.iter().filter(|f| **f).count(),
        pairs_secs,
        read_secs,
        secs = t0.elapsed().as_secs_f64(),
        "training-set sweep"
    );
    let fallen = sw
        .specs
        .iter()
        .zip(&fallen)
        .filter_map(|(s, &fell)| if fell { s.feat } else { None })
        .collect();
    Ok((df, fallen))
}

#[cfg(test)]
#[path = "sweep_tests.rs"]
mod tests;
