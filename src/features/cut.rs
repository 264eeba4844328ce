//! Row cuts: which rows of the event tables a load keeps once they are checked, so that
//! a computation holds only what it reads. A snapshot keeps the rows its date counts
//! ([`RowCut::Snapshot`]); a training set keeps its spine's customers' rows dated up to
//! its last date, plus the label's horizon on the label's table ([`RowCut::Spine`]).
//!
//! Every cut is a superset of the rows the plans count (semantics.md: an aggregation
//! counts a row when `days_ago >= 0`, windows and offsets only narrow that; a label
//! counts rows with `days_ago` in `[-horizon, 0)`), so the results equal those of an
//! uncut load cell for cell. The customers table is never cut.

use polars::prelude::*;

use super::def::Kind;
use super::rows::days_ago;
use super::{compile, multi, FeatureSet, Result};
use crate::source::CUSTOMER_KEY;

/// The environment variable that turns the training-set cut off (`off`): a diagnostic,
/// to compare a cut load with a full one. Unset or `on` keeps the cut; another value is an
/// error naming the variable.
pub const TRAINING_CUT_ENV: &str = "C360_TRAINING_CUT";

/// Which rows of the event tables (those referencing customers) a load keeps.
#[derive(Debug, Clone)]
pub enum RowCut {
    /// Every row.
    All,
    /// The rows some set's snapshot at this day (days since 1970-01-01) counts.
    Snapshot(i32),
    /// The rows a training set over a spine can count.
    Spine(SpineCut),
}

/// The rows a training set's spine can read: see [`spine_cut`].
#[derive(Debug, Clone)]
pub struct SpineCut {
    /// The distinct customer ids the spine names; None keeps every customer (a set with
    /// quantile scores ranks each spine date's whole population).
    pub customers: Option<Series>,
    /// The spine's latest as-of day (days since 1970-01-01).
    pub last_day: i32,
    /// The label's table, its event-time column and its horizon in days, when the
    /// training set has a label.
    pub label: Option<(&'static str, &'static str, u32)>,
}

/// The cut for a training set of `set` over `spine` (as [`super::read_spine`] gives it:
/// `customer_id`, `_as_of` days) with the label named `label`: the spine's customers
/// (all when the set has quantile features) and rows dated up to the spine's last date
/// (+ the label's horizon on the label's table). An empty spine, or
/// [`TRAINING_CUT_ENV`]`=off`, gives [`RowCut::All`]; another value of it is an error. An unknown label adds no horizon
/// (the training set refuses it afterwards).
pub fn spine_cut(set: &FeatureSet, spine: &DataFrame, label: Option<&str>) -> Result<RowCut> {
    let on = compile::env_switch(TRAINING_CUT_ENV, "every row loaded").map_err(|m| {
        super::FeatureError::Polars {
            set: set.name.to_string(),
            message: m,
        }
    })?;
    if !on {
        return Ok(RowCut::All);
    }
    let perr = super::perr(set);
    let last = spine
        .column(compile::AS_OF)
        .map_err(&perr)?
        .as_materialized_series()
        .max::<i32>()
        .map_err(&perr)?;
    let Some(last_day) = last else {
        return Ok(RowCut::All);
    };
    let customers = if compile::quantile_features(set).is_empty() {
        let ids = spine
            .column("customer_id")
            .map_err(&perr)?
            .as_materialized_series()
            .unique()
            .map_err(&perr)?;
        Some(ids)
    } else {
        None
    };
    let label = label
        .and_then(|l| set.label(l))
        .map(|l| (l.table.name, l.table.ts, l.horizon_days));
    Ok(RowCut::Spine(SpineCut {
        customers,
        last_day,
        label,
    }))
}

impl SpineCut {
    /// Whether a row's customer is one the spine names, as an expression over
    /// [`CUSTOMER_KEY`] (`customers` keyed with it: the key is the row number): a lookup
    /// into one boolean a customer (a bitmap, about 1.2 MB at 10M customers), cheaper on
    /// hundreds of millions of rows than a hash-set `is_in`. None when every customer is
    /// kept. Unknown ids match no key: the training set's spine check reports them.
    pub(super) fn keys(&self, set: &FeatureSet, customers: &LazyFrame) -> Result<Option<Expr>> {
        let Some(ids) = &self.customers else {
            return Ok(None);
        };
        let perr = super::perr(set);
        let ids = DataFrame::new_infer_height(vec![ids
            .clone()
            .with_name("customer_id".into())
            .into_column()])
        .map_err(&perr)?;
        let all = customers
            .clone()
            .select([col(CUSTOMER_KEY)])
            .collect()
            .map_err(&perr)?;
        let keys = ids
            .lazy()
            .join(
                customers
                    .clone()
                    .select([col("customer_id"), col(CUSTOMER_KEY)]),
                [col("customer_id")],
                [col("customer_id")],
                JoinArgs::new(JoinType::Inner),
            )
            .select([col(CUSTOMER_KEY)])
            .collect()
            .map_err(&perr)?;
        let keys = keys
            .column(CUSTOMER_KEY)
            .map_err(&perr)?
            .u32()
            .map_err(&perr)?;
        let mut wanted = vec![false; all.height()];
        for k in keys.into_no_null_iter() {
            if let Some(w) = wanted.get_mut(k as usize) {
                *w = true;
            }
        }
        let wanted = BooleanChunked::from_slice("_wanted".into(), &wanted).into_series();
        // Out of range (impossible: keys are this table's row numbers) reads as null: dropped.
        Ok(Some(lit(wanted).gather(col(CUSTOMER_KEY), true)))
    }

    /// The rows of `table` the training set can read: dated up to the last spine date
    /// for the sets' aggregations (plus the horizon for the label), and, with `keys`
    /// (from [`SpineCut::keys`]), of the spine's customers. None keeps every row (no
    /// set aggregates the table and no label reads it, and every customer is kept).
    pub(super) fn rows(
        &self,
        sets: &[&FeatureSet],
        table: &str,
        keys: Option<&Expr>,
    ) -> Option<Expr> {
        let last = lit(self.last_day);
        let mut dated = Vec::new();
        for s in sets {
            for f in &s.features {
                if let Kind::Agg(a) = &f.kind {
                    if a.table.name == table {
                        dated.push(days_ago(last.clone(), &a.ts).gt_eq(lit(0i64)));
                    }
                }
            }
        }
        if let Some((t, ts, horizon)) = self.label {
            if t == table {
                dated.push(days_ago(last.clone(), ts).gt_eq(lit(-(horizon as i64))));
            }
        }
        let dated = compile::or_all(dated).map(|c| c.fill_null(lit(false)));
        let keyed = keys.map(|k| k.clone().fill_null(lit(false)));
        match (dated, keyed) {
            (Some(d), Some(k)) => Some(d.and(k)),
            (d, k) => d.or(k),
        }
    }
}

impl RowCut {
    /// The rows of `table` this cut keeps (None: all), `keys` as for [`SpineCut::rows`].
    pub(super) fn rows(
        &self,
        sets: &[&FeatureSet],
        table: &str,
        keys: Option<&Expr>,
    ) -> Result<Option<Expr>> {
        match self {
            RowCut::All => Ok(None),
            RowCut::Snapshot(day) => multi::union_rows(sets, table, *day),
            RowCut::Spine(c) => Ok(c.rows(sets, table, keys)),
        }
    }
}

/// The last day of `frame`'s `ts` column (None when it has no non-null value): a label
/// table's reach, which a cut can lower, so `load_union` records it from the whole table.
pub(super) fn last_day(
    frame: LazyFrame,
    ts: &str,
) -> std::result::Result<Option<i32>, PolarsError> {
    // Streamed: on a scan, the column is read in morsels, never held whole.
    let df = super::collect(frame.select([col(ts).max()]))?;
    Ok(df
        .column(ts)
        .ok()
        .and_then(|c| c.get(0).ok())
        .and_then(|v| v.extract::<i32>()))
}
