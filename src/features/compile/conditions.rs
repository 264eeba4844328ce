//! Which rows count: the condition under which a row counts for an aggregation or a
//! label at the as-of date, and the superset of a table's rows a snapshot needs (so the
//! rest is dropped when the table is loaded).

use std::collections::BTreeMap;

use polars::prelude::*;

use super::compile_rows;
use super::CompileError;
use crate::features::def::{Agg, FeatureSet, Kind, Label};
use crate::features::rows::{days_ago, is_contract_ts, RowScope};

/// The OR of `conds`, folded left to right (None when there are none).
pub fn or_all(conds: impl IntoIterator<Item = Expr>) -> Option<Expr> {
    conds.into_iter().reduce(|k, c| k.or(c))
}

/// The condition under which a row counts for an aggregation at the as-of date. `day` is
/// the as-of day when it is one literal (a snapshot): the window is then a comparison of
/// the Int32 day column with two constants, without computing `days_ago` (same rows).
pub(super) fn agg_condition(
    set: &FeatureSet,
    a: &Agg,
    as_of: &Expr,
    day: Option<i32>,
) -> Result<Expr, CompileError> {
    let contract_ts = is_contract_ts(a.table, &a.ts);
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
        let scope =
            RowScope::compiling(a.table, &a.ts, as_of.clone(), set.extra_types(a.table.name));
        cond = cond.and(compile_rows(set, f, &scope)?.fill_null(lit(false)));
    }
    Ok(cond.fill_null(lit(false)))
}

/// The rows a label counts: dated in (D, D + horizon] and matching its filter.
pub(super) fn label_condition(
    set: &FeatureSet,
    l: &Label,
    as_of: &Expr,
) -> Result<Expr, CompileError> {
    let d = days_ago(as_of.clone(), l.table.ts);
    let mut cond = d
        .clone()
        .lt(lit(0i64))
        .and(d.gt_eq(lit(-(l.horizon_days as i64))));
    if let Some(w) = &l.filter {
        let scope = RowScope::compiling(
            l.table,
            l.table.ts,
            as_of.clone(),
            set.extra_types(l.table.name),
        );
        cond = cond.and(compile_rows(set, w, &scope)?.fill_null(lit(false)));
    }
    Ok(cond.fill_null(lit(false)))
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
    let mut keep: Vec<Expr> = Vec::new();
    let mut spans: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
    for f in &set.features {
        if let Kind::Agg(a) = &f.kind {
            if a.table.name == table {
                let contract_ts = is_contract_ts(a.table, &a.ts);
                if let (true, Some((w, off))) = (contract_ts, a.window) {
                    let hi = day as i64 - off as i64;
                    let lo = hi - w as i64 + 1;
                    let span = spans.entry(a.ts.as_str()).or_insert((lo, hi));
                    *span = (span.0.min(lo), span.1.max(hi));
                    continue;
                }
                keep.push(agg_condition(set, a, &as_of, Some(day))?);
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
        keep.push(c);
    }
    Ok(or_all(keep))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn or_all_folds_left_to_right() {
        assert!(or_all(Vec::<Expr>::new()).is_none());
        assert_eq!(or_all([col("a")]), Some(col("a")));
        assert_eq!(
            or_all([col("a"), col("b"), col("c")]),
            Some(col("a").or(col("b")).or(col("c")))
        );
    }
}
