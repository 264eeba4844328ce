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
//! `batch_customers` keys. A range lets each table be cut by one comparison per row.

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
/// column (a table not keyed by customer) is kept whole.
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
}
