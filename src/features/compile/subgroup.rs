//! Two-level aggregations: rows grouped by (customer, value) first, then by customer.
//! Distinct counts and per-day rollups share one such [`Subgroup`] per condition and
//! value; by day at one as-of date the first level is a sort over packed
//! (customer, day) keys rather than a hash group-by.

use polars::prelude::*;

use super::aggregates::exact_sum;
use crate::features::def::Agg;
use crate::features::rows::{days_ago, is_contract_ts};
use crate::source::CUSTOMER_KEY;

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
pub(super) enum SubValue {
    Expr(Expr),
    /// The (Int32) day column `ts` of a snapshot: at one as-of date, distinct days_ago are
    /// distinct days.
    Day(String),
}

/// The per-day value of an aggregation: its event day (a snapshot over a contract
/// timestamp), else days_ago.
pub(super) fn day_value(a: &Agg, day: Option<i32>, as_of: &Expr) -> SubValue {
    let contract_ts = is_contract_ts(a.table, &a.ts);
    match day {
        Some(_) if contract_ts => SubValue::Day(a.ts.clone()),
        _ => SubValue::Expr(days_ago(as_of.clone(), &a.ts)),
    }
}

/// Rows grouped by (customer, value) and then by customer.
pub(super) struct Subgroup {
    pub(super) id: String,
    pub(super) rows: Expr,
    pub(super) value: SubValue,
    /// Row-wise columns the first group-by reads.
    pub(super) rows_pre: Vec<Expr>,
    /// Aggregations of the first group-by.
    pub(super) first: Vec<Expr>,
    /// Columns computed on the first group-by's result, for the second.
    pub(super) mid: Vec<Expr>,
    /// Aggregations of the second (per customer) group-by: the features.
    pub(super) second: Vec<Expr>,
    /// By day only: values summed (exactly) over the customer's earliest day, and the
    /// names of those sums.
    pub(super) first_day: Vec<(Expr, String)>,
}

impl Subgroup {
    /// Adds an aggregation to the first group-by; the name of its column.
    pub(super) fn first(&mut self, e: Expr, i: usize) -> String {
        let name = format!("_s{i}");
        self.first.push(e.alias(name.as_str()));
        name
    }

    /// In the second group-by: the number of (customer, value) groups of the customer.
    pub(super) fn count(&self) -> Expr {
        match &self.value {
            SubValue::Expr(_) => len(),
            SubValue::Day(_) => col(SUB_NEW).sum(),
        }
    }

    /// In the second group-by: `v` on the earliest day (largest days_ago).
    pub(super) fn first_day(&self, v: Expr) -> Expr {
        match &self.value {
            SubValue::Expr(_) => v.max_by(col(SUB_VALUE)),
            SubValue::Day(_) => v.min_by(col(SUB_DAY)),
        }
    }
}

/// The subgroup of the rows where `cond` holds and `value` is not null, grouped by value
/// (shared by every feature with the same condition and value).
pub(super) fn subgroup(subs: &mut Vec<Subgroup>, cond: Expr, value: SubValue) -> &mut Subgroup {
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

impl Subgroup {
    /// The subgroup's aggregate frame over `frame` (the table's kept rows), keyed by
    /// `keys`: the first group-by per (customer, value), then the second per customer.
    pub(super) fn finish(mut self, frame: &LazyFrame, keys: &[Expr]) -> LazyFrame {
        let only_count = self.first.is_empty();
        let first = if self.first.is_empty() {
            vec![len().alias("_rows")]
        } else {
            std::mem::take(&mut self.first)
        };
        let mut rows = frame.clone().filter(self.rows.clone());
        if !self.rows_pre.is_empty() {
            rows = rows.with_columns(std::mem::take(&mut self.rows_pre));
        }
        let per_value = match self.value.clone() {
            SubValue::Expr(v) => {
                let mut by = keys.to_vec();
                by.push(v.alias(SUB_VALUE));
                rows.group_by(by).agg(first)
            }
            SubValue::Day(ts) => self.by_day(rows, first, &ts, only_count),
        };
        let per_value = if self.mid.is_empty() {
            per_value
        } else {
            per_value.with_columns(self.mid)
        };
        per_value.group_by(keys).agg(self.second)
    }

    /// The first level by day: one UInt64 key, (customer << 32) + (day + 2^31): a
    /// single-column group-by is several times faster than one over two columns.
    fn by_day(
        &mut self,
        rows: LazyFrame,
        first: Vec<Expr>,
        ts: &str,
        only_count: bool,
    ) -> LazyFrame {
        let shift = lit(1u64 << 32);
        let pack = col(CUSTOMER_KEY).cast(DataType::UInt64) * shift.clone()
            + (col(ts).cast(DataType::Int64) + lit(1i64 << 31)).cast(DataType::UInt64);
        // Only counting the (customer, day) pairs: sorting the packed keys and
        // keeping each first of a run is about twice as fast as hashing millions
        // of nearly unique keys.
        let grouped = if only_count {
            let p = col(SUB_PACK);
            let mut cols = vec![pack.alias(SUB_PACK)];
            for (k, (v, _)) in self.first_day.iter().enumerate() {
                cols.push(v.clone().alias(format!("_fd{k}").as_str()));
            }
            let sorted = rows
                .select(cols)
                .sort([SUB_PACK], SortMultipleOptions::default());
            let new_day = p.clone().neq(p.clone().shift(lit(1))).fill_null(lit(true));
            if self.first_day.is_empty() {
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
                for (k, (_, name)) in self.first_day.iter().enumerate() {
                    let v = when(col(SUB_FIRST))
                        .then(col(format!("_fd{k}").as_str()))
                        .otherwise(lit(NULL));
                    let sum = exact_sum(v, &format!("_fd{k}_"), &mut on_first);
                    self.second.push(sum.alias(name.as_str()));
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
}
