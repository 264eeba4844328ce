//! The base rows of a keyed spine (a training set's batch: every row carries the key of
//! its customer, see `Mode::Spine`), assembled eagerly by gathers instead of joins: the
//! spine's rows in their order with their row number, the customers' columns the plan
//! reads, gathered by key, and the sweep's columns, gathered by `(key, as_of)`. The same
//! rows and values as the left joins they replace (a key or pair that is not found
//! gives nulls, as a left join does), without hashing or re-sorting.

use std::collections::HashMap;

use polars::prelude::*;

use super::{cerr, CompileError, AS_OF, ROW};
use crate::features::def::FeatureSet;
use crate::source::CUSTOMER_KEY;

/// The spine's rows (`customer_id`, `_as_of`, `CUSTOMER_KEY`, `_row`), the `columns` of
/// `customers` that exist there (gathered by key), and every column of `swept` but its
/// keys (gathered by the pair, `swept` being keyed by the sorted distinct `pairs`).
pub(super) fn base(
    set: &FeatureSet,
    spine: &LazyFrame,
    customers: &LazyFrame,
    columns: &[String],
    swept: Option<(&DataFrame, &[(u32, i32)])>,
) -> Result<DataFrame, CompileError> {
    let perr = |e: PolarsError| cerr(set, format!("assembling the spine's rows: {e}"));
    let sp = spine
        .clone()
        .select([col("customer_id"), col(AS_OF), col(CUSTOMER_KEY)])
        .collect()
        .map_err(perr)?;
    let n = sp.height();
    let keys = sp
        .column(CUSTOMER_KEY)
        .map_err(perr)?
        .strict_cast(&DataType::UInt32)
        .map_err(perr)?;
    let keys = keys.u32().map_err(perr)?;
    let mut out = sp.clone().with_row_index(ROW.into(), None).map_err(perr)?;

    // The customers' columns, by key.
    let schema = customers.clone().collect_schema().map_err(perr)?;
    let wanted: Vec<Expr> = columns
        .iter()
        .filter(|c| schema.contains(c) && *c != "customer_id" && *c != CUSTOMER_KEY)
        .map(|c| col(c.as_str()))
        .collect();
    if !wanted.is_empty() {
        let mut sel = vec![col(CUSTOMER_KEY).strict_cast(DataType::UInt32)];
        sel.extend(wanted);
        let cust = customers.clone().select(sel).collect().map_err(perr)?;
        let ck = cust
            .column(CUSTOMER_KEY)
            .and_then(|c| c.u32())
            .map_err(perr)?;
        let find = positions(ck);
        let idx = IdxCa::from_iter_options("".into(), keys.iter().map(|k| k.and_then(&find)));
        let cols = cust
            .drop(CUSTOMER_KEY)
            .map_err(perr)?
            .take(&idx)
            .map_err(perr)?;
        out.hstack_mut(cols.columns()).map_err(perr)?;
    }

    // The sweep's columns, by (key, as_of).
    if let Some((frame, pairs)) = swept {
        let days = sp
            .column(AS_OF)
            .map_err(perr)?
            .strict_cast(&DataType::Int32)
            .map_err(perr)?;
        let days = days.i32().map_err(perr)?;
        let idx = IdxCa::from_iter_options(
            "".into(),
            keys.iter().zip(days.iter()).map(|(k, d)| {
                let at = pairs.binary_search(&(k?, d?)).ok()?;
                IdxSize::try_from(at).ok()
            }),
        );
        let cols = frame
            .drop_many([CUSTOMER_KEY, AS_OF])
            .take(&idx)
            .map_err(perr)?;
        out.hstack_mut(cols.columns()).map_err(perr)?;
    }
    debug_assert_eq!(out.height(), n);
    Ok(out)
}

/// The row of each key of `keys` (the first of repeats): a table over the keys' range when
/// it is at most 64 entries a key (a batch's keys are one dense range), else a hash map.
fn positions(keys: &UInt32Chunked) -> impl Fn(u32) -> Option<IdxSize> {
    let (lo, hi) = (keys.min().unwrap_or(0), keys.max().unwrap_or(0));
    let span = (hi - lo) as usize + 1;
    let mut dense: Option<Vec<Option<IdxSize>>> =
        (span <= keys.len().saturating_mul(64).max(1024)).then(|| vec![None; span]);
    let mut map: HashMap<u32, IdxSize> = HashMap::new();
    for (i, k) in keys.iter().enumerate() {
        let (Some(k), Ok(i)) = (k, IdxSize::try_from(i)) else {
            continue;
        };
        match &mut dense {
            Some(t) => {
                let slot = &mut t[(k - lo) as usize];
                slot.get_or_insert(i);
            }
            None => {
                map.entry(k).or_insert(i);
            }
        }
    }
    move |k: u32| match &dense {
        Some(t) => t.get(k.checked_sub(lo)? as usize).copied().flatten(),
        None => map.get(&k).copied(),
    }
}
