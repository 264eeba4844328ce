//! The aggregate steps of a query (see `query`): one group-by per event table over its
//! rows joined to the keys on the customer and the days read, and the per-day rollups.
//! Sums of floats are exact, as in the polars engine (`compile::aggregates::exact_sum`).

use super::expr::{cast, print};
use super::query::{age_column, Query, AGED};
use super::SqlError;
use crate::features::compile::columns_read;
use crate::features::def::{Agg, AggFn, Feature, Label};
use crate::features::expr::Ty;
use crate::source::{ColType, TableSpec};

/// 2^33, the scale of the middle part of an exact sum (as `compile::aggregates::exact_sum`).
const SCALE: &str = "8589934592E0";

/// The exact sum of the DOUBLE column `v` whose fractional part is the column `f`
/// (see `compile::aggregates::exact_sum`): three sums without rounding, in a fixed order.
fn exact_sum(v: &str, f: &str) -> String {
    format!(
        "sum(CAST(floor({v}) AS DOUBLE)) + sum(floor({f} * {SCALE}) / {SCALE}) + sum({f} - floor({f} * {SCALE}) / {SCALE})"
    )
}

/// The fractional part of the DOUBLE `v` for [`exact_sum`] (0 for infinities).
fn frac(v: &str) -> String {
    format!("CASE WHEN abs({v}) = CAST('Infinity' AS DOUBLE) THEN 0E0 ELSE {v} - floor({v}) END")
}

impl Query<'_> {
    /// One table's plain aggregations (and its labels' counts): the CTE name and the
    /// columns it gives.
    pub(super) fn table_agg(
        &mut self,
        p: &str,
        keys: &str,
        table: &'static TableSpec,
        aggs: &[&(usize, &Feature, &Agg)],
        labels: &[&Label],
    ) -> Result<(String, Vec<String>), SqlError> {
        let d = self.d;
        let mut row_cols = Vec::new();
        let mut frac_cols = Vec::new();
        let mut out = Vec::new();
        let mut names = Vec::new();
        let mut reads = Vec::new();
        for (i, f, a) in aggs {
            reads.push(read_range(a));
            let cond = self.agg_cond(f, a, AGED)?;
            let rows = self.rows(a.table, &a.ts, AGED);
            let value = match &a.column {
                Some(c) => Some(print(d, c, &rows).map_err(|m| self.ferr(&f.name, m))?),
                None => None,
            };
            let n = d.ident(&f.name);
            let v = format!("_v{i}");
            let need = || {
                value
                    .clone()
                    .ok_or_else(|| self.ferr(&f.name, format!("agg = {:?} needs a column", a.func)))
            };
            let agg = match a.func {
                AggFn::Count => {
                    let c = match &value {
                        Some((_, e)) => format!("{cond} AND {e} IS NOT NULL"),
                        None => cond,
                    };
                    row_cols.push(format!("CASE WHEN {c} THEN 1 END AS {v}"));
                    format!("count({v})")
                }
                AggFn::Any => {
                    let c = match &value {
                        Some((_, e)) => format!("{cond} AND coalesce({e}, FALSE)"),
                        None => cond,
                    };
                    row_cols.push(format!("coalesce({c}, FALSE) AS {v}"));
                    format!("bool_or({v})")
                }
                AggFn::Sum | AggFn::Mean if a.func == AggFn::Mean || f.ty == Ty::Float => {
                    let (t, e) = need()?;
                    row_cols.push(format!(
                        "CASE WHEN {cond} THEN {} END AS {v}",
                        cast(d, e, t, Ty::Float)
                    ));
                    let fr = format!("_f{i}");
                    frac_cols.push(format!("{} AS {fr}", frac(&v)));
                    let s = exact_sum(&v, &fr);
                    if a.func == AggFn::Mean {
                        format!("CASE WHEN count({v}) > 0 THEN ({s}) / count({v}) END")
                    } else {
                        s
                    }
                }
                AggFn::First | AggFn::Last => {
                    let (_, e) = need()?;
                    row_cols.push(format!("CASE WHEN {cond} THEN {e} END AS {v}"));
                    let age = rows.age(&a.ts);
                    row_cols.push(format!("CASE WHEN {cond} THEN {age} END AS _o{i}"));
                    // First: the earliest day (largest days_ago).
                    d.value_by(a.func == AggFn::First, &v, &format!("_o{i}"))
                }
                func => {
                    let (_, e) = need()?;
                    row_cols.push(format!("CASE WHEN {cond} THEN {e} END AS {v}"));
                    match func {
                        AggFn::DistinctCount => format!("count(DISTINCT {v})"),
                        AggFn::Min => format!("min({v})"),
                        AggFn::Max => format!("max({v})"),
                        _ => format!("sum({v})"),
                    }
                }
            };
            out.push(format!("{agg} AS {n}"));
            names.push(f.name.clone());
        }
        for (j, l) in labels.iter().enumerate() {
            let h = l.horizon_days as i64;
            reads.push((l.table.ts.to_string(), -h, Some(-1)));
            let rows = self.rows(l.table, l.table.ts, AGED);
            let mut c = format!("{} BETWEEN {} AND -1", rows.age(l.table.ts), -h);
            if let Some(w) = &l.filter {
                let (_, e) = print(d, w, &rows).map_err(|m| self.ferr(&l.name, m))?;
                c = format!("{c} AND {e}");
            }
            row_cols.push(format!(
                "CASE WHEN coalesce({c}, FALSE) THEN 1 END AS _l{j}"
            ));
            let name = format!("_label_{}", l.name);
            out.push(format!("count(_l{j}) AS {}", d.ident(&name)));
            names.push(name);
        }
        // The rows joined to the keys, with the columns read and the age of each
        // timestamp column; then each feature's condition and value.
        let mut joined = vec!["k.customer_id".to_string(), "k.as_of".to_string()];
        let extra = self.set.definition.columns.get(table.name);
        for c in columns_read(self.set, table.name) {
            let known = table.column(&c).is_some() || extra.is_some_and(|x| x.contains_key(&c));
            if known && c != "customer_id" {
                joined.push(format!("e.{}", d.ident(&c)));
            }
        }
        for c in table.columns.iter().filter(|c| c.ty == ColType::Timestamp) {
            let age = d.days_between(&format!("CAST(e.{} AS DATE)", d.ident(c.name)), "k.as_of");
            joined.push(format!("{age} AS {}", d.ident(&age_column(c.name))));
        }
        let mut rows = format!(
            "SELECT\n    {AGED}.customer_id,\n    {AGED}.as_of,\n    {}\n  FROM (\n    SELECT\n      {}\n    FROM {keys} AS k\n    JOIN {} AS e ON {}\n  ) AS {AGED}",
            row_cols.join(",\n    "),
            joined.join(",\n      "),
            table.name,
            self.range(table, &reads)
        );
        if !frac_cols.is_empty() {
            rows = format!(
                "SELECT\n    r0.*,\n    {}\n  FROM (\n    {}\n  ) AS r0",
                frac_cols.join(",\n    "),
                rows.replace('\n', "\n  ")
            );
        }
        let name = format!("{p}agg_{}", table.name);
        self.cte(
            &name,
            format!(
                "SELECT\n  customer_id,\n  as_of,\n  {}\nFROM (\n  {rows}\n) AS r\nGROUP BY customer_id, as_of",
                out.join(",\n  ")
            ),
        );
        Ok((name, names))
    }

    /// A per-day rollup: the rows summed per (customer, as_of, day), exactly, then the
    /// days aggregated (without the customer's earliest day with `exclude_first_day`).
    pub(super) fn per_day(
        &mut self,
        p: &str,
        keys: &str,
        i: usize,
        f: &Feature,
        a: &Agg,
    ) -> Result<(String, Vec<String>), SqlError> {
        let d = self.d;
        let cond = self.agg_cond(f, a, "e")?;
        let rows = self.rows(a.table, &a.ts, "e");
        let Some(col) = &a.column else {
            return Err(self.ferr(&f.name, "per_day needs a column".into()));
        };
        let (t, e) = print(d, col, &rows).map_err(|m| self.ferr(&f.name, m))?;
        let age = rows.age(&a.ts);
        let range = self.range(a.table, &[read_range(a)]);
        let days = format!("{p}pd{i}");
        self.cte(
            &days,
            format!(
                "SELECT\n  customer_id,\n  as_of,\n  _d,\n  sum(CAST(floor(_v) AS DOUBLE)) AS _a,\n  sum(floor(_f * {SCALE}) / {SCALE}) AS _b,\n  sum(_f - floor(_f * {SCALE}) / {SCALE}) AS _c\nFROM (\n  SELECT r0.*, {} AS _f\n  FROM (\n    SELECT k.customer_id, k.as_of, {age} AS _d, {} AS _v\n    FROM {keys} AS k\n    JOIN {} AS e ON {range}\n    WHERE {cond}\n  ) AS r0\n) AS r\nGROUP BY customer_id, as_of, _d",
                frac("_v"),
                cast(d, e, t, Ty::Float),
                a.table.name,
            ),
        );
        let one = if a.exclude_first_day { " - 1" } else { "" };
        let (agg, filter) = match a.func {
            AggFn::Mean => {
                // As the polars engine: (total - first day's total) / (days - 1), the
                // totals exact, so a training set equals the snapshots to the last bit.
                let total = "(sum(_a) + sum(_b) + sum(_c))";
                let num = if a.exclude_first_day {
                    format!("({total} - max(CASE WHEN _d = _first THEN _day END))")
                } else {
                    total.to_string()
                };
                (
                    format!("CASE WHEN count(*){one} > 0 THEN {num} / (count(*){one}) END"),
                    "",
                )
            }
            func => {
                let agg = match func {
                    AggFn::Count => "count(_day)".to_string(),
                    AggFn::Sum => "sum(_day)".into(),
                    AggFn::Min => "min(_day)".into(),
                    AggFn::Max => "max(_day)".into(),
                    AggFn::DistinctCount => "count(DISTINCT _day)".into(),
                    AggFn::First => d.value_by(true, "_day", "_d"),
                    AggFn::Last => d.value_by(false, "_day", "_d"),
                    AggFn::Mean | AggFn::Any => {
                        return Err(
                            self.ferr(&f.name, "per_day with agg = \"any\" has no SQL form".into())
                        )
                    }
                };
                (
                    agg,
                    if a.exclude_first_day {
                        "\nWHERE _d <> _first"
                    } else {
                        ""
                    },
                )
            }
        };
        let name = format!("{p}pda{i}");
        self.cte(
            &name,
            format!(
                "SELECT\n  customer_id,\n  as_of,\n  {agg} AS {}\nFROM (\n  SELECT *, _a + _b + _c AS _day, max(_d) OVER (PARTITION BY customer_id, as_of) AS _first\n  FROM {days}\n) AS r{filter}\nGROUP BY customer_id, as_of",
                d.ident(&f.name)
            ),
        );
        Ok((name, vec![f.name.clone()]))
    }
}

/// The days an aggregation reads: its timestamp column and days_ago in [lo, hi] (hi None:
/// all history).
pub(super) fn read_range(a: &Agg) -> (String, i64, Option<i64>) {
    match a.window {
        Some((w, off)) => (a.ts.clone(), off as i64, Some(off as i64 + w as i64 - 1)),
        None => (a.ts.clone(), 0, None),
    }
}
