//! The event sweep of a training set: the aggregations that are exact in integers,
//! computed for every `(customer, as_of)` pair of a spine from one sorted pass over the
//! table's rows, instead of joining every row to each of its customer's dates.
//!
//! **Which features** ([`sweep_all`], [`build`]): over any timestamp column of the
//! table's contract (its event time, or another such as `resolved_ts`; one sweep per
//! table and column), without a per-day rollup: `count`, `any`, `distinct_count` of
//! `days_ago` (distinct event days), `min` / `max` of `days_ago` (as-of minus the last /
//! first event day), labels (counted over `(D, D + horizon]`), and float `sum` / `mean` of
//! a value that does not read the as-of date, summed exactly as a snapshot's `exact_sum`
//! does (see [`sums`]: bit for bit the snapshot's value; a batch whose values fall outside
//! the exact range sends that feature to the join path for that batch). A filter may read
//! the as-of date through age tests of timestamp columns (`days_ago(resolved_ts) < 0`,
//! see [`dated`]): those are tested per (row, D) on the rows of the pair's span. Everything
//! else (integer sums, per-day rollups, other distinct counts, min/max of other columns,
//! other uses of the date) stays on the join path of `aggregates`, unchanged, and is
//! named in the debug log.
//!
//! **How** ([`run`]): the table's rows become `(customer key, event day, mask bits)`, one
//! bit per distinct date-independent filter (nulls count as false); rows no bit selects
//! are dropped and the rest sorted by (key, day). For each customer's slice, per filter:
//! prefix counts of masked rows, prefix counts of "first masked row of a day", and the
//! previous / next masked row of every position. For each of the customer's dates D and
//! each distinct day range two binary searches give the slice's rows in the range (ranges
//! start and end at day boundaries), then each feature is O(1) (a date-dependent filter:
//! O(rows in the range)). Time O(rows x filters + pairs x (ranges x log rows +
//! features)); memory: the batch's rows (24 bytes each, plus 8 a summed value), the
//! output, and one customer's prefix arrays. The sweeps of a batch run on up to
//! `rayon::current_num_threads()` threads, one table-and-column each.
//!
//! The output is keyed `(CUSTOMER_KEY, _as_of)` with one row per distinct spine pair and
//! the features' own names and types; pairs without rows get what the join path gives
//! after `plan`'s fill (counts 0, `any` false, min/max null).
//!
//! [`SWEEP_ENV`]`=off` forces the join path for every feature (a diagnostic, used by the
//! tests to compare the two).

mod build;
mod dated;
mod index;
mod rows;
mod sums;

pub(crate) use index::MaskIndex;
pub(super) use rows::spine_keys;

use std::collections::HashSet;
use std::time::Instant;

use polars::prelude::*;

use super::{cerr, CompileError, Inputs, Mode, AS_OF};
use crate::features::def::{Feature, FeatureSet, Kind, Label};
#[cfg(test)]
use crate::features::expr;
use crate::source::CUSTOMER_KEY;
pub(crate) use build::reads_as_of;
use build::{sweep_ts, Sweep};
use dated::eval;
use rows::{At, Rows};

/// Diagnostic switch: `off` (or `0`, `false`) computes every training-set feature on the
/// join path, as before the sweep; unset, `on` (`1`, `true`) uses the sweep where exact.
pub const SWEEP_ENV: &str = "C360_TRAINING_SWEEP";

/// The most distinct filters one table's sweep carries (one bit each of a `u64`); the
/// features of further filters stay on the join path.
pub const MAX_MASKS: usize = 64;

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
pub(crate) enum Measure {
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

/// What [`sweep_all`] computed for a spine plan.
pub(super) struct Swept {
    /// Keyed `(CUSTOMER_KEY, _as_of)`, one row per distinct spine pair, a column per swept
    /// feature (and `_label_<name>` for a swept label); None when nothing was swept.
    pub frame: Option<DataFrame>,
    /// The swept features' names (the rest take the join path).
    pub features: HashSet<String>,
    /// Whether the label was swept.
    pub label: bool,
    /// The spine's distinct `(customer key, as_of)` pairs, sorted: the frame's rows.
    pub pairs: Vec<(u32, i32)>,
}

impl Swept {
    fn nothing() -> Swept {
        Swept {
            frame: None,
            features: HashSet::new(),
            label: false,
            pairs: Vec::new(),
        }
    }
}

/// Over a spine (and unless [`SWEEP_ENV`] is off): sweeps every feature of `feats` (and
/// the label) that the sweep computes exactly, one sweep per table and timestamp column,
/// in parallel, from the tables of `inputs`; logs the aggregations left to the join path.
/// In snapshot mode, or with nothing to sweep, nothing is swept.
pub(super) fn sweep_all(
    set: &FeatureSet,
    feats: &[&Feature],
    inputs: &Inputs,
    customers: &LazyFrame,
    mode: &Mode,
    label: Option<&Label>,
) -> Result<Swept, CompileError> {
    let Mode::Spine(spine) = mode else {
        return Ok(Swept::nothing());
    };
    if !enabled().map_err(|m| cerr(set, m))? {
        return Ok(Swept::nothing());
    }
    let t0 = Instant::now();
    let mut sweeps: Vec<Sweep> = Vec::new();
    let at =
        |sweeps: &mut Vec<Sweep>, table: &'static crate::source::TableSpec, ts: &str| match sweeps
            .iter()
            .position(|s| s.table.name == table.name && s.ts == ts)
        {
            Some(i) => i,
            None => {
                sweeps.push(Sweep::new(table, ts));
                sweeps.len() - 1
            }
        };
    let mut joined: Vec<&str> = Vec::new();
    for f in feats {
        let Kind::Agg(a) = &f.kind else { continue };
        let swept = match sweep_ts(a) {
            Some(ts) => {
                let i = at(&mut sweeps, a.table, ts);
                sweeps[i].add_feature(set, f, a)?
            }
            None => false,
        };
        if !swept {
            joined.push(f.name.as_str());
        }
    }
    let mut label_swept = false;
    if let Some(l) = label {
        let i = at(&mut sweeps, l.table, l.table.ts);
        label_swept = sweeps[i].add_label(set, l)?;
    }
    sweeps.retain(|s| !s.specs.is_empty());
    if sweeps.is_empty() {
        return Ok(Swept::nothing());
    }
    let pairs = rows::spine_pairs(set, spine, customers)?;
    let pairs_secs = t0.elapsed().as_secs_f64();
    let mut keys: Vec<u32> = pairs.iter().map(|p| p.0).collect();
    keys.dedup();
    let mut jobs = Vec::with_capacity(sweeps.len());
    for sw in &sweeps {
        let frame = inputs
            .get(sw.table.name)
            .ok_or_else(|| cerr(set, format!("the {} table was not loaded", sw.table.name)))?;
        jobs.push((sw, frame));
    }
    // The largest tables first, so that the last job to start is a short one.
    let size = |lf: &LazyFrame| {
        lf.clone()
            .select([len()])
            .collect()
            .ok()
            .and_then(|df| df.column("len").ok()?.get(0).ok()?.extract::<u64>())
            .unwrap_or(0)
    };
    let mut sized: Vec<(u64, usize)> = jobs
        .iter()
        .enumerate()
        .map(|(i, j)| (size(j.1), i))
        .collect();
    sized.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let order: Vec<usize> = sized.into_iter().map(|s| s.1).collect();
    let results = in_parallel(&order, |i| {
        let (sw, frame) = jobs[i];
        run(set, sw, frame, &pairs, &keys)
    })
    .map_err(|m| cerr(set, m))?;
    let n = pairs.len();
    let mut cols = vec![
        UInt32Chunked::from_iter_values(CUSTOMER_KEY.into(), pairs.iter().map(|p| p.0))
            .into_column(),
        Int32Chunked::from_iter_values(AS_OF.into(), pairs.iter().map(|p| p.1)).into_column(),
    ];
    let mut features = HashSet::new();
    let mut fallen: Vec<String> = Vec::new();
    for (sw, r) in sweeps.iter().zip(results) {
        let (c, fell) = r?;
        cols.extend(c);
        for (s, fell) in sw.specs.iter().zip(fell) {
            match (&s.feat, fell) {
                (Some(f), false) => {
                    features.insert(f.clone());
                }
                (Some(f), true) => fallen.push(f.clone()),
                (None, _) => {}
            }
        }
    }
    let perr = |e: PolarsError| cerr(set, format!("assembling the sweeps: {e}"));
    let frame = DataFrame::new(n, cols).map_err(perr)?;
    if !joined.is_empty() || !fallen.is_empty() || (label.is_some() && !label_swept) {
        tracing::debug!(
            set = %set.name,
            features = %joined.join(", "),
            out_of_exact_range = %fallen.join(", "),
            label = label.filter(|_| !label_swept).map(|l| l.name.as_str()).unwrap_or(""),
            "training-set aggregations on the join path"
        );
    }
    tracing::debug!(
        set = %set.name,
        sweeps = sweeps.len(),
        pairs = n,
        pairs_secs,
        secs = t0.elapsed().as_secs_f64(),
        "training-set sweeps"
    );
    Ok(Swept {
        frame: Some(frame),
        features,
        label: label_swept,
        pairs,
    })
}

/// `job(i)` for every `i` of `order`, started in that order on up to
/// `rayon::current_num_threads()` threads; the results by `i` (index into a vector as
/// long as the largest `i` + 1; never-started slots cannot occur). An error names a
/// worker thread that panicked.
fn in_parallel<T: Send>(
    order: &[usize],
    job: impl Fn(usize) -> T + Sync,
) -> Result<Vec<T>, String> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    let len = order.iter().max().map_or(0, |m| m + 1);
    let workers = rayon::current_num_threads().clamp(1, order.len().max(1));
    let slots: Mutex<Vec<Option<T>>> = Mutex::new((0..len).map(|_| None).collect());
    let next = AtomicUsize::new(0);
    let work = || loop {
        let k = next.fetch_add(1, Ordering::Relaxed);
        let Some(&i) = order.get(k) else { break };
        let r = job(i);
        if let Ok(mut s) = slots.lock() {
            s[i] = Some(r);
        }
    };
    if workers == 1 {
        work();
    } else {
        std::thread::scope(|scope| -> Result<(), String> {
            let handles: Vec<_> = (1..workers).map(|_| scope.spawn(work)).collect();
            work();
            for h in handles {
                h.join()
                    .map_err(|_| "a training-set sweep thread panicked (a bug: report it)")?;
            }
            Ok(())
        })?;
    }
    let slots = slots
        .into_inner()
        .map_err(|_| "a training-set sweep thread panicked (a bug: report it)".to_string())?;
    let mut out = Vec::with_capacity(order.len());
    for (i, s) in slots.into_iter().enumerate() {
        if order.contains(&i) {
            out.push(s.ok_or("a training-set sweep did not run (a bug: report it)")?);
        }
    }
    Ok(out)
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

/// What a date-dependent filter selects of one pair's span, from a scan of its rows.
#[derive(Default)]
struct Scan {
    count: usize,
    days: usize,
    first: Option<i32>,
    last: Option<i32>,
    parts: [i64; 3],
}

/// One sweep: its spec columns for every pair (`pairs`, sorted; `keys` their distinct
/// customers), and whether each spec fell back to the join path in this batch (sums whose
/// values are out of the exact range; those have no column).
fn run(
    set: &FeatureSet,
    sw: &Sweep,
    frame: &LazyFrame,
    pairs: &[(u32, i32)],
    keys: &[u32],
) -> Result<(Vec<Column>, Vec<bool>), CompileError> {
    let t0 = Instant::now();
    let table = sw.table.name;
    let rs = match rows::day_bounds(sw, pairs) {
        Some(bounds) => rows::read_rows(set, sw, frame, keys, bounds)?,
        None => Rows {
            rows: Vec::new(),
            values: vec![Vec::new(); sw.values.len()],
            leaves: vec![Vec::new(); sw.dated.leaves.len()],
            ages: vec![Vec::new(); sw.dated.ages.len()],
        },
    };
    let fallen = rows::out_of_range(sw, &rs);
    let read_secs = t0.elapsed().as_secs_f64();
    let (rows, values) = (&rs.rows, &rs.values);
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
        // Pairs and rows are sorted by key and visited once, in order: linear steps
        // (a customer has few), not binary searches over the rest of the batch.
        let key = pairs[p0].0;
        let mut p1 = p0 + 1;
        while p1 < n && pairs[p1].0 == key {
            p1 += 1;
        }
        while r0 < rows.len() && rows[r0].key < key {
            r0 += 1;
        }
        let mut r1 = r0;
        while r1 < rows.len() && rows[r1].key == key {
            r1 += 1;
        }
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
            let m = 1u64 << bit;
            if specs.iter().any(|&i| sw.specs[i].filter.is_none()) {
                index.build(&days, |i| slice[i].bits & m != 0);
            }
            for &i in specs {
                let (s, out) = (&sw.specs[i], &mut outs[i]);
                if matches!(out, Out::None) {
                    continue;
                }
                if let Some(fi) = s.filter {
                    // A date-dependent filter: a scan of the span's rows per pair.
                    let node = &sw.filters[fi];
                    for (k, &(_, d)) in pairs[p0..p1].iter().enumerate() {
                        let (a, b) = ranges[k * nspans + s.span];
                        let mut sc = Scan::default();
                        for (j, r) in slice.iter().enumerate().take(b).skip(a) {
                            if r.bits & m == 0 || eval(node, &At(&rs, r0 + j), d) != Some(true) {
                                continue;
                            }
                            sc.count += 1;
                            if sc.last != Some(r.day) {
                                sc.days += 1;
                            }
                            sc.first.get_or_insert(r.day);
                            sc.last = Some(r.day);
                            if let Some(v) = s.value {
                                let p = sums::parts(values[v][r0 + j]);
                                for (acc, x) in sc.parts.iter_mut().zip(p) {
                                    *acc += x;
                                }
                            }
                        }
                        put(s.measure, out, p0 + k, d, &sc);
                    }
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
    let mut cols = Vec::with_capacity(outs.len());
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
    tracing::debug!(
        set = %set.name,
        table,
        ts = %sw.ts,
        features = sw.specs.len(),
        filters = sw.masks.len(),
        dated_filters = sw.filters.len(),
        rows = rows.len(),
        pairs = n,
        fallback = fallen.iter().filter(|f| **f).count(),
        read_secs,
        secs = t0.elapsed().as_secs_f64(),
        "training-set sweep"
    );
    Ok((cols, fallen))
}

/// Writes a scanned pair's value of `measure` at `at` (as-of day `d`).
fn put(measure: Measure, out: &mut Out, at: usize, d: i32, sc: &Scan) {
    let since = |t: Option<i32>| t.map(|t| i64::from(d) - i64::from(t));
    match (measure, out) {
        (Measure::Count, Out::Int(v)) => v[at] = sc.count as i64,
        (Measure::DistinctDays, Out::Int(v)) => v[at] = sc.days as i64,
        (Measure::Any, Out::Bool(v)) => v[at] = sc.count > 0,
        (Measure::SinceLast, Out::OptInt(v)) => v[at] = since(sc.last),
        (Measure::SinceFirst, Out::OptInt(v)) => v[at] = since(sc.first),
        (Measure::Sum, Out::Float(v)) => v[at] = sums::from_parts(sc.parts),
        (Measure::Mean, Out::OptFloat(v)) => {
            v[at] = (sc.count > 0).then(|| sums::from_parts(sc.parts) / sc.count as f64)
        }
        _ => {}
    }
}

#[cfg(test)]
#[path = "sweep_tests.rs"]
mod tests;
