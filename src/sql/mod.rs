//! Feature sets compiled to SQL (issue 13): one query per set, beside the polars compiler
//! (`features::compile`) and from the same validated [`FeatureSet`], with the same values.
//!
//! A query reads the four contract tables by name (`customers`, `orders`, `interactions`,
//! `support_tickets`: views or tables with the contract's column names and types, see
//! `/work/shared/design/customer360-tables.md`) and returns `customer_id`, `as_of` (DATE)
//! and the set's visible columns under the polars engine's names and types (BIGINT,
//! DOUBLE, BOOLEAN, text), plus the labels asked for. Two targets ([`Target`]):
//! - a snapshot at one or many as-of dates (a table of date literals): one row per
//!   customer signed up on or before each date;
//! - a training set over a spine table (`customer_id`, `as_of`): one row per spine row
//!   whose customer is signed up by its date (c360 refuses other rows before running).
//!
//! Point in time: each event table is joined to the (customer, as-of) keys on the customer
//! AND the range of days some feature or label reads, aggregated per table, then the
//! aggregates are joined to the keys; there is no keys x events cross join. Quantile
//! scores rank the whole population at a date: over a spine they are computed on a
//! population snapshot at the spine's distinct dates (like the polars engine).
//!
//! Sums of floats are computed exactly as the polars engine does (integer part, 33
//! fractional bits, rest: three sums without rounding, added in a fixed order), so they
//! do not depend on the engine's summation order and equal polars' to the last bit.
//!
//! Dialects ([`Dialect`]): `duckdb`, `spark` (Spark SQL 3.5+/4.x) and `athena` (Trino,
//! engine v3). Timestamps are UTC: run the query with the session time zone UTC (DuckDB
//! `SET TimeZone = 'UTC'`, Spark `spark.sql.session.timeZone=UTC`), since timestamps are
//! cut to dates with `CAST(ts AS DATE)`. What a dialect lacks is reported by [`check`]
//! before anything runs.

mod aggregates;
mod expr;
mod query;

use std::fmt;

use chrono::NaiveDate;

use crate::features::def::{AggFn, FeatureSet, Kind};

pub use query::compile;

/// An SQL dialect the compiler writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// DuckDB 1.x.
    Duckdb,
    /// Spark SQL 3.5+ / 4.x (default settings; ANSI mode on or off).
    Spark,
    /// Amazon Athena engine v3 (Trino).
    Athena,
}

impl Dialect {
    /// Every dialect, in the order `--help` lists them.
    pub const ALL: [Dialect; 3] = [Dialect::Duckdb, Dialect::Spark, Dialect::Athena];

    /// Reads `duckdb`, `spark` or `athena` (also `trino`).
    pub fn parse(s: &str) -> Result<Dialect, String> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "duckdb" => Dialect::Duckdb,
            "spark" => Dialect::Spark,
            "athena" | "trino" => Dialect::Athena,
            _ => return Err(format!("unknown SQL dialect {s:?} (duckdb, spark, athena)")),
        })
    }

    /// The dialect's name as `--dialect` takes it.
    pub fn name(self) -> &'static str {
        match self {
            Dialect::Duckdb => "duckdb",
            Dialect::Spark => "spark",
            Dialect::Athena => "athena",
        }
    }

    /// A quoted identifier (`"x"`, Spark `` `x` ``), the quote doubled inside.
    pub fn ident(self, name: &str) -> String {
        match self {
            Dialect::Spark => format!("`{}`", name.replace('`', "``")),
            _ => format!("\"{}\"", name.replace('"', "\"\"")),
        }
    }

    /// A string literal. Standard SQL doubles a quote inside; Spark reads backslash
    /// escapes (and would join `'a''b'` into `ab`), so there a quote is `\'` and a
    /// backslash `\\`.
    pub fn string(self, s: &str) -> String {
        match self {
            Dialect::Spark => format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'")),
            _ => format!("'{}'", s.replace('\'', "''")),
        }
    }

    /// The name of the text type.
    pub fn string_type(self) -> &'static str {
        match self {
            Dialect::Spark => "STRING",
            _ => "VARCHAR",
        }
    }

    /// A DATE literal.
    pub fn date(self, d: NaiveDate) -> String {
        format!("DATE '{}'", d.format("%Y-%m-%d"))
    }

    /// Days from the DATE `from` to the DATE `to` (`to - from`), a BIGINT.
    pub fn days_between(self, from: &str, to: &str) -> String {
        match self {
            Dialect::Spark => format!("CAST(datediff({to}, {from}) AS BIGINT)"),
            _ => format!("date_diff('day', {from}, {to})"),
        }
    }

    /// The DATE `date` plus `n` days (n may be negative).
    pub fn add_days(self, date: &str, n: i64) -> String {
        match (self, n) {
            (_, 0) => date.to_string(),
            (Dialect::Duckdb, n) if n > 0 => format!("({date} + {n})"),
            (Dialect::Duckdb, n) => format!("({date} - {})", n.unsigned_abs()),
            (Dialect::Spark, n) => format!("date_add({date}, {n})"),
            (Dialect::Athena, n) => format!("date_add('day', {n}, {date})"),
        }
    }

    /// Integer division of non-negative BIGINTs.
    pub fn int_div(self, a: &str, b: &str) -> String {
        match self {
            Dialect::Duckdb => format!("({a} // {b})"),
            Dialect::Spark => format!("({a} DIV {b})"),
            // Trino divides integers as integers; the casts say so to readers and tools.
            Dialect::Athena => format!("(CAST({a} AS BIGINT) / CAST({b} AS BIGINT))"),
        }
    }

    /// The largest (`max`) or smallest non-null argument; null when all are null.
    /// DuckDB and Spark's GREATEST/LEAST skip nulls; Trino's return null when any
    /// argument is null, so there each argument stands in for itself or, when null, for
    /// the first non-null one.
    pub fn greatest_least(self, max: bool, args: &[String]) -> String {
        let f = if max { "greatest" } else { "least" };
        if args.len() == 1 {
            return args[0].clone();
        }
        match self {
            Dialect::Athena => {
                let all = args.join(", ");
                let each: Vec<String> = args
                    .iter()
                    .map(|a| format!("coalesce({a}, {all})"))
                    .collect();
                format!("{f}({})", each.join(", "))
            }
            _ => format!("{f}({})", args.join(", ")),
        }
    }

    /// The value `v` on the row with the largest (`max`) `by`, null values of `v` kept;
    /// rows with a null `by` do not count.
    pub fn value_by(self, max: bool, v: &str, by: &str) -> String {
        match (self, max) {
            (Dialect::Duckdb, true) => format!("arg_max_null({v}, {by})"),
            (Dialect::Duckdb, false) => format!("arg_min_null({v}, {by})"),
            // Trino's and Spark's max_by keep a null value; wrapping it in an array says so to tools
            // whose max_by skips nulls (sqlglot maps it to DuckDB's arg_max).
            (Dialect::Athena, true) => format!("element_at(max_by(ARRAY[{v}], {by}), 1)"),
            (Dialect::Athena, false) => format!("element_at(min_by(ARRAY[{v}], {by}), 1)"),
            (Dialect::Spark, true) => format!("element_at(max_by(array({v}), {by}), 1)"),
            (Dialect::Spark, false) => format!("element_at(min_by(array({v}), {by}), 1)"),
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// What the query computes.
#[derive(Debug, Clone)]
pub enum Target {
    /// Snapshots at these dates (one or more; at most [`MAX_DATES`]).
    Snapshot(Vec<NaiveDate>),
    /// A training set over the spine table `table` (`customer_id`, `as_of` as DATE or
    /// `YYYY-MM-DD` text), with these labels of the set.
    Spine { table: String, labels: Vec<String> },
}

/// The most as-of dates one snapshot query lists.
pub const MAX_DATES: usize = 10_000;

/// Why a set cannot be compiled to SQL: the set, the feature (when one), the dialect and
/// what to do.
#[derive(Debug, Clone, thiserror::Error)]
#[error("feature set {set}{}, SQL dialect {dialect}: {message}", feature.as_ref().map(|f| format!(", feature {f}")).unwrap_or_default())]
pub struct SqlError {
    /// The feature set's name.
    pub set: String,
    /// The feature (or label) concerned; None for a problem of the target (dates, spine).
    pub feature: Option<String>,
    /// The dialect asked for.
    pub dialect: Dialect,
    /// What is wrong and what to do.
    pub message: String,
}

/// Checks that every feature and label of `set` compiles to `dialect`, without reading
/// data (`c360 validate` can call it). Every problem is returned, each naming its feature
/// and why:
/// - every dialect matches column names without regard to case (Spark and Athena fold
///   names to lower case; DuckDB ignores case even in quoted names: a feature `N = n + 1`
///   read column `n`), so two names that differ only by case (or a feature named like
///   `customer_id`/`as_of` in another case) cannot both be columns;
/// - `per_day` with `agg = "any"` has no SQL form here (a per-day sum is a number).
pub fn check(set: &FeatureSet, dialect: Dialect) -> Result<(), Vec<SqlError>> {
    let mut errs = Vec::new();
    let err = |f: Option<&str>, m: String| SqlError {
        set: set.name.to_string(),
        feature: f.map(str::to_string),
        dialect,
        message: m,
    };
    let mut seen: Vec<(String, &str)> = vec![
        ("customer_id".into(), "customer_id"),
        ("as_of".into(), "as_of"),
    ];
    let names = set
        .features
        .iter()
        .map(|f| f.name.as_str())
        .chain(set.labels.iter().map(|l| l.name.as_str()));
    for n in names {
        let low = n.to_lowercase();
        if let Some((_, other)) = seen.iter().find(|(l, _)| *l == low) {
            errs.push(err(
                Some(n),
                format!("{dialect} matches column names without regard to case, and {n} differs from {other} only by case: rename one of them"),
            ));
        } else {
            seen.push((low, n));
        }
    }
    for f in &set.features {
        if let Kind::Agg(a) = &f.kind {
            if a.per_day && a.func == AggFn::Any {
                errs.push(err(
                    Some(&f.name),
                    "per_day with agg = \"any\" has no SQL form (a per-day sum is a number, not a flag): use agg = \"max\" and compare with 0 in an expr".into(),
                ));
            }
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs)
    }
}

#[cfg(test)]
mod tests;
