//! Customer batches of a training-set spine, so that peak memory follows the batch and
//! not the whole spine times its dates.
//!
//! A batch is a set of customers with *all* their spine rows: every feature of a
//! `(customer, as_of)` row reads only that customer's rows of the tables (aggregations
//! group by the customer key) plus, for quantile scores, the population scores at the
//! date, which are computed once for the whole spine and sliced per batch. So a batch's
//! rows are exactly the rows an unbatched computation gives, and the batches' outputs,
//! put back in spine order, equal it cell for cell.
//!
//! Batches are ranges of the integer customer key ([`CUSTOMER_KEY`], the customers
//! table's row number): the distinct keys the spine names, sorted, cut every
//! `batch_customers` keys. Each table's rows are grouped by range once ([`Grouped`]: one
//! binary search a row, 4 bytes a row), and a batch gathers its own rows.

use polars::prelude::*;

use crate::source::CUSTOMER_KEY;

/// The environment variable that sets the batch size (customers per batch) of
/// [`super::training_set`]: a positive whole number, or `0` / `all` for one batch.
pub const BATCH_ENV: &str = "C360_TRAINING_BATCH_CUSTOMERS";

/// The default batch size: 50 000 customers. At 12 monthly dates that is 600 000 spine
/// rows; with about 9 orders and 40 interactions a customer, the events joined to their
/// dates stay near 25M rows a batch (streamed through the filters and group-bys, never
/// all held), whatever the number of customers. With the event sweep (`compile::sweep`),
/// 100 000 and 200 000 were measured no faster (1M customers, 12 dates: 17.2 s and 17.8 s
/// against 16.3 s, peaks 2.8-2.9 GB against 2.7 GB), so the default stays.
pub const DEFAULT_BATCH_CUSTOMERS: usize = 50_000;

/// The batch size from [`BATCH_ENV`]: `Ok(Some(n))` for n customers a batch, `Ok(None)`
/// for one batch (`0` or `all`), the default when unset; `Err` (a message naming the
/// variable and its value) when it is set to anything else.
pub fn batch_size_from_env() -> Result<Option<usize>, String> {
    match std::env::var(BATCH_ENV) {
        Err(std::env::VarError::NotPresent) => Ok(Some(DEFAULT_BATCH_CUSTOMERS)),
        Err(std::env::VarError::NotUnicode(_)) => Err(format!(
            "{BATCH_ENV} is not valid text; unset it or set a number of customers per batch (e.g. {DEFAULT_BATCH_CUSTOMERS}), or 0 for one batch"
        )),
        Ok(v) => {
            let t = v.trim();
            if t == "0" || t.eq_ignore_ascii_case("all") {
                return Ok(None);
            }
            match t.parse::<usize>() {
                Ok(n) => Ok(Some(n)),
                Err(_) => Err(format!(
                    "{BATCH_ENV}={v:?} is not a number of customers per batch; unset it or set a whole number (e.g. {DEFAULT_BATCH_CUSTOMERS}), or 0 for one batch"
                )),
            }
        }
    }
}

/// One batch: the inclusive customer-key range it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyRange {
    pub lo: u32,
    pub hi: u32,
}

impl KeyRange {
    /// Whether a row's customer key lies in the range (null keys never do).
    pub fn contains(&self) -> Expr {
        col(CUSTOMER_KEY)
            .gt_eq(lit(self.lo))
            .and(col(CUSTOMER_KEY).lt_eq(lit(self.hi)))
    }
}

/// Cuts the sorted distinct `keys` into ranges of at most `per_batch` distinct keys
/// (at least one). `keys` in any order, with repeats; empty gives no range.
pub fn key_ranges(keys: &[u32], per_batch: usize) -> Vec<KeyRange> {
    let mut k: Vec<u32> = keys.to_vec();
    k.sort_unstable();
    k.dedup();
    k.chunks(per_batch.max(1))
        .filter_map(|c| {
            Some(KeyRange {
                lo: *c.first()?,
                hi: *c.last()?,
            })
        })
        .collect()
}

/// Keeps the rows of `lf` whose customer key lies in `r`; a frame without the key
/// column (a table not keyed by customer) is kept whole. The reference [`Grouped`] is
/// tested against (batches gather their rows from a [`Grouped`] instead).
#[cfg(test)]
pub fn slice(lf: &LazyFrame, r: KeyRange) -> LazyFrame {
    let keyed = lf
        .clone()
        .collect_schema()
        .map(|s| s.contains(CUSTOMER_KEY))
        .unwrap_or(false);
    if keyed {
        lf.clone().filter(r.contains())
    } else {
        lf.clone()
    }
}

/// A keyed table's rows grouped by batch once: the batch of every row found by one
/// binary search over the ranges, row positions counted into one array (4 bytes a row,
/// each batch's positions ascending), so that a batch gathers its own rows instead of
/// filtering the whole table ([`slice`]) once per batch. Rows in no range (or with a
/// null key) are in no batch. Gives the same rows in the same order as [`slice`].
pub struct Grouped {
    frame: DataFrame,
    /// Row positions, batch after batch.
    rows: Vec<IdxSize>,
    /// `starts[b]..starts[b + 1]`: batch `b`'s part of `rows`.
    starts: Vec<usize>,
}

impl Grouped {
    /// Groups `lf`'s rows by `ranges` (sorted, disjoint, as [`key_ranges`] gives); None
    /// for a frame without the key column (kept whole by every batch). Errors are
    /// polars' (collecting the frame, reading its keys as UInt32).
    pub fn new(lf: &LazyFrame, ranges: &[KeyRange]) -> PolarsResult<Option<Grouped>> {
        if !lf.clone().collect_schema()?.contains(CUSTOMER_KEY) {
            return Ok(None);
        }
        Grouped::from_frame(lf.clone().collect()?, ranges).map(Some)
    }

    /// [`Grouped::new`] of a frame already computed; it must have the key column.
    pub fn from_frame(frame: DataFrame, ranges: &[KeyRange]) -> PolarsResult<Grouped> {
        let keys = frame.column(CUSTOMER_KEY)?.strict_cast(&DataType::UInt32)?;
        let keys = keys.u32()?;
        if IdxSize::try_from(frame.height()).is_err() {
            polars_bail!(ComputeError: "{} rows: more than the row index holds", frame.height());
        }
        let batch_of = |k: Option<u32>| -> Option<usize> {
            let k = k?;
            let b = ranges.partition_point(|r| r.hi < k);
            (b < ranges.len() && ranges[b].lo <= k).then_some(b)
        };
        let mut starts = vec![0usize; ranges.len() + 1];
        for k in keys.iter() {
            if let Some(b) = batch_of(k) {
                starts[b + 1] += 1;
            }
        }
        for b in 0..ranges.len() {
            starts[b + 1] += starts[b];
        }
        let mut next = starts.clone();
        let mut rows = vec![0 as IdxSize; starts[ranges.len()]];
        for (i, k) in keys.iter().enumerate() {
            if let Some(b) = batch_of(k) {
                rows[next[b]] = i as IdxSize;
                next[b] += 1;
            }
        }
        Ok(Grouped {
            frame,
            rows,
            starts,
        })
    }

    /// The row positions of every batch, batch after batch (each batch's ascending).
    pub fn rows(&self) -> &[IdxSize] {
        &self.rows
    }

    /// Batch `b`'s rows (in table order); empty past the last batch.
    pub fn batch(&self, b: usize) -> PolarsResult<LazyFrame> {
        let (lo, hi) = match (self.starts.get(b), self.starts.get(b + 1)) {
            (Some(&lo), Some(&hi)) => (lo, hi),
            _ => (0, 0),
        };
        let idx = IdxCa::from_vec("".into(), self.rows[lo..hi].to_vec());
        Ok(self.frame.take(&idx)?.lazy())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_cover_distinct_sorted_keys() {
        let r = key_ranges(&[9, 3, 3, 7, 1, 9, 4], 2);
        assert_eq!(
            r,
            [
                KeyRange { lo: 1, hi: 3 },
                KeyRange { lo: 4, hi: 7 },
                KeyRange { lo: 9, hi: 9 }
            ]
        );
        assert_eq!(key_ranges(&[5, 5], 0), [KeyRange { lo: 5, hi: 5 }]);
        assert!(key_ranges(&[], 10).is_empty());
        assert_eq!(key_ranges(&[2, 1], 10), [KeyRange { lo: 1, hi: 2 }]);
    }

    #[test]
    fn grouped_batches_equal_sliced_ones() {
        let keys: Vec<Option<u32>> = vec![
            Some(9),
            Some(3),
            None,
            Some(7),
            Some(1),
            Some(9),
            Some(4),
            Some(2),
            Some(12),
        ];
        let n = keys.len();
        let df = df!(
            CUSTOMER_KEY => keys,
            "v" => (0..n as i64).collect::<Vec<_>>()
        )
        .expect("frame");
        let lf = df.lazy();
        let ranges = key_ranges(&[1, 3, 4, 7, 9], 2);
        let g = Grouped::new(&lf, &ranges).expect("group").expect("keyed");
        for (b, r) in ranges.iter().enumerate() {
            let want = slice(&lf, *r).collect().expect("slice");
            let got = g.batch(b).expect("batch").collect().expect("gather");
            assert!(got.equals_missing(&want), "batch {b}: {got} vs {want}");
            assert!(got.height() > 0);
        }
        assert_eq!(
            g.batch(ranges.len())
                .expect("past")
                .collect()
                .expect("empty")
                .height(),
            0
        );
        let unkeyed = df!("v" => [1i64]).expect("frame").lazy();
        assert!(Grouped::new(&unkeyed, &ranges).expect("ok").is_none());
    }
}
