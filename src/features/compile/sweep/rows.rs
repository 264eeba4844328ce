//! The inputs of a sweep: the spine's distinct `(customer key, as_of)` pairs, and one
//! table's rows of those customers as sorted `(key, day, mask bits)` with the values,
//! filter leaves and ages the specs read.

use polars::prelude::*;

use super::super::conditions::or_all;
use super::super::{cerr, CompileError, AS_OF};
use super::build::Sweep;
use super::dated::RowInputs;
use super::sums;
use crate::features::def::FeatureSet;
use crate::source::CUSTOMER_KEY;

/// Internal column names of the rows read for the sweep.
const DAY: &str = "_sweep_day";
const MASK: &str = "_sweep_m";

/// One table row for the sweep.
#[derive(Clone, Copy)]
pub(crate) struct Row {
    pub key: u32,
    pub day: i32,
    pub bits: u64,
    /// The row's position in the collected frame (to read its values).
    pub idx: u32,
}

/// A sweep's rows, sorted by (key, day), and what its specs read of them, in that order.
#[derive(Default)]
pub(crate) struct Rows {
    pub rows: Vec<Row>,
    /// Each of [`Sweep::values`] (0.0 where null: never read, as every mask that reads a
    /// value requires it).
    pub values: Vec<Vec<f64>>,
    /// Each of the date-dependent filters' leaves: 0 false, 1 true, 2 null.
    pub leaves: Vec<Vec<u8>>,
    /// Each of their age columns' day.
    pub ages: Vec<Vec<Option<i32>>>,
}

/// Row `i` of [`Rows`], as the date-dependent filters read it.
pub(crate) struct At<'a>(pub &'a Rows, pub usize);

impl RowInputs for At<'_> {
    fn leaf(&self, j: usize) -> Option<bool> {
        match self.0.leaves[j][self.1] {
            0 => Some(false),
            1 => Some(true),
            _ => None,
        }
    }
    fn day(&self, j: usize) -> Option<i32> {
        self.0.ages[j][self.1]
    }
}

/// The customer key column of a spine: its own `CUSTOMER_KEY` when it has one (a training
/// set's batches), else `customer_id` joined to the customers' keys (inner: ids the
/// customers do not name are dropped). The frame has `CUSTOMER_KEY` and `_as_of`.
pub(crate) fn spine_keys(spine: &LazyFrame, customers: &LazyFrame) -> LazyFrame {
    let keyed = spine
        .clone()
        .collect_schema()
        .map(|s| s.contains(CUSTOMER_KEY))
        .unwrap_or(false);
    if keyed {
        return spine.clone().select([col(CUSTOMER_KEY), col(AS_OF)]);
    }
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
}

/// The spine's distinct `(customer key, as_of day)` pairs, sorted.
pub(crate) fn spine_pairs(
    set: &FeatureSet,
    spine: &LazyFrame,
    customers: &LazyFrame,
) -> Result<Vec<(u32, i32)>, CompileError> {
    let perr = |e: PolarsError| cerr(set, format!("reading the spine's customers: {e}"));
    let df = spine_keys(spine, customers)
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
pub(crate) fn day_bounds(sw: &Sweep, pairs: &[(u32, i32)]) -> Option<(i32, i32)> {
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

/// The table's rows of the spine's customers (`keys`, sorted) that some mask selects,
/// dated in `[lo, hi]`, as sorted [`Rows`].
pub(crate) fn read_rows(
    set: &FeatureSet,
    sw: &Sweep,
    frame: &LazyFrame,
    keys: &[u32],
    (lo, hi): (i32, i32),
) -> Result<Rows, CompileError> {
    let table = sw.table.name;
    let perr = |e: PolarsError| cerr(set, format!("sweeping table {table}: {e}"));
    let mut cols = vec![
        col(CUSTOMER_KEY).strict_cast(DataType::UInt32),
        col(sw.ts.as_str()).strict_cast(DataType::Int32).alias(DAY),
    ];
    let names: Vec<String> = (0..sw.masks.len()).map(|j| format!("{MASK}{j}")).collect();
    for (m, n) in sw.masks.iter().zip(&names) {
        cols.push(m.clone().alias(n.as_str()));
    }
    let named_cols = |what: &str, n: usize| -> Vec<String> {
        (0..n).map(|j| format!("{DAY}_{what}{j}")).collect()
    };
    let vnames = named_cols("v", sw.values.len());
    for (v, n) in sw.values.iter().zip(&vnames) {
        cols.push(v.clone().alias(n.as_str()));
    }
    let lnames = named_cols("l", sw.dated.leaves.len());
    for (v, n) in sw.dated.leaves.iter().zip(&lnames) {
        cols.push(v.clone().alias(n.as_str()));
    }
    let anames = named_cols("a", sw.dated.ages.len());
    for (v, n) in sw.dated.ages.iter().zip(&anames) {
        cols.push(
            col(v.as_str())
                .strict_cast(DataType::Int32)
                .alias(n.as_str()),
        );
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
        let bit = 1u64 << j;
        if m.null_count() == 0 {
            for (arr, chunk) in m.downcast_iter().zip(chunks_of(&mut bits, m)) {
                for (b, v) in chunk.iter_mut().zip(arr.values_iter()) {
                    *b |= bit * u64::from(v);
                }
            }
        } else {
            for (b, v) in bits.iter_mut().zip(m.iter()) {
                if v == Some(true) {
                    *b |= bit;
                }
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
    let mut out = Rows::default();
    for n in &vnames {
        let v = df.column(n).and_then(|c| c.f64()).map_err(perr)?;
        out.values.push(
            rows.iter()
                .map(|r| v.get(r.idx as usize).unwrap_or(0.0))
                .collect(),
        );
    }
    for n in &lnames {
        let v = df.column(n).and_then(|c| c.bool()).map_err(perr)?;
        out.leaves.push(
            rows.iter()
                .map(|r| match v.get(r.idx as usize) {
                    Some(b) => u8::from(b),
                    None => 2,
                })
                .collect(),
        );
    }
    for n in &anames {
        let v = df.column(n).and_then(|c| c.i32()).map_err(perr)?;
        out.ages
            .push(rows.iter().map(|r| v.get(r.idx as usize)).collect());
    }
    drop(df);
    out.rows = rows;
    Ok(out)
}

/// `bits` cut into consecutive pieces as long as `m`'s chunks.
fn chunks_of<'a>(bits: &'a mut [u64], m: &BooleanChunked) -> Vec<&'a mut [u64]> {
    let mut out = Vec::with_capacity(m.chunks().len());
    let mut rest = bits;
    for arr in m.downcast_iter() {
        let (a, b) = rest.split_at_mut(arr.len().min(rest.len()));
        out.push(a);
        rest = b;
    }
    out
}

/// The specs whose values this batch cannot sum exactly ([`sums::in_range`] fails for a
/// row their mask selects, or a customer has more than [`sums::MAX_ROWS`] rows).
pub(crate) fn out_of_range(sw: &Sweep, rows: &Rows) -> Vec<bool> {
    let rs = &rows.rows;
    let mut longest = 0usize;
    let mut start = 0usize;
    for i in 1..=rs.len() {
        if i == rs.len() || rs[i].key != rs[start].key {
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
                    || rs
                        .iter()
                        .zip(&rows.values[v])
                        .any(|(r, &x)| r.bits & m != 0 && !sums::in_range(x))
            }
        })
        .collect()
}
