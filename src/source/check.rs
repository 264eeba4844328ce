//! The contract's value checks on a whole table: not-null, supported dates, usable ids,
//! the value rules, key uniqueness and customer references, each reported with its
//! count and an example row.

use polars::prelude::*;

use super::contract::{id_columns, ColType, Rule};
use super::customer_map::{customer_keys, pieces};
use super::days::DAY_OUT_OF_RANGE;
use super::error::{is_invisible, Result, SourceError};
use super::scan::guard;
use super::table::Table;

/// One value check: a boolean expression true on bad rows.
pub(super) struct Check {
    pub(super) column: String,
    pub(super) problem: String,
    pub(super) bad: Expr,
    /// Evaluate on the raw (un-normalised) frame.
    pub(super) raw: bool,
    /// A `Rule::OneOf` (the batched reader checks these with [`enum_codes`](super::batched::enum_codes)).
    pub(super) one_of: bool,
    /// A not-null check (the batched reader reads the null count).
    pub(super) not_null: bool,
    /// The id-text check (blank, control or invisible characters) of a column.
    pub(super) id_text: bool,
}

impl Table {
    /// Every value rule of the contract as a check.
    pub(super) fn value_checks(&self) -> Vec<Check> {
        let spec = self.spec;
        let mut checks: Vec<Check> = Vec::new();
        for rc in &self.raw_checks {
            checks.push(Check {
                column: rc.column.into(),
                problem: rc.problem.clone(),
                bad: rc.bad.clone(),
                raw: true,
                one_of: false,
                not_null: false,
                id_text: false,
            });
        }
        for c in spec.columns {
            if !c.nullable {
                checks.push(Check {
                    column: c.name.into(),
                    problem: "are null (the column may not be null)".into(),
                    bad: polars::prelude::col(c.name).is_null(),
                    raw: false,
                    one_of: false,
                    not_null: true,
                    id_text: false,
                });
            }
        }
        for c in spec.columns.iter().filter(|c| c.ty == ColType::Timestamp) {
            checks.push(Check {
                column: c.name.into(),
                problem: "are outside the supported dates (years -262143 to 262142; shown as day -2147483648)".into(),
                bad: polars::prelude::col(c.name).eq(lit(DAY_OUT_OF_RANGE)),
                raw: false,
                one_of: false,
                not_null: false,
                id_text: false,
            });
        }
        for id in id_columns(spec) {
            checks.push(Check {
                column: id.into(),
                problem: "are empty or blank, or contain a control character or an invisible format/separator character (newline, tab, NUL, DEL, zero-width, bidi override, line separator, BOM …), which ids may not hold: fix them at the producer".into(),
                bad: has_control_char(polars::prelude::col(id)),
                raw: false,
                one_of: false,
                not_null: false,
                id_text: true,
            });
        }
        for r in spec.rules {
            match r {
                Rule::OneOf(column, allowed) => {
                    let c = polars::prelude::col(*column);
                    let mut ok = lit(false);
                    for a in *allowed {
                        ok = ok.or(c.clone().eq(lit(*a)));
                    }
                    checks.push(Check {
                        column: (*column).into(),
                        problem: format!("have a value outside {}", allowed.join(", ")),
                        bad: c.is_not_null().and(ok.not()),
                        raw: false,
                        one_of: true,
                        not_null: false,
                        id_text: false,
                    });
                }
                Rule::NonNegativeFinite(column) => {
                    let c = polars::prelude::col(*column);
                    checks.push(Check {
                        column: (*column).into(),
                        problem: "are negative, NaN or infinite".into(),
                        bad: c.clone().is_not_null().and(
                            c.clone()
                                .lt(lit(0.0))
                                .or(c.clone().is_nan())
                                .or(c.is_infinite()),
                        ),
                        raw: false,
                        one_of: false,
                        not_null: false,
                        id_text: false,
                    });
                }
                Rule::Range(column, lo, hi) => {
                    let c = polars::prelude::col(*column);
                    checks.push(Check {
                        column: (*column).into(),
                        problem: format!("are outside {lo}..{hi}"),
                        bad: c
                            .clone()
                            .is_not_null()
                            .and(c.clone().lt(lit(*lo)).or(c.gt(lit(*hi)))),
                        raw: false,
                        one_of: false,
                        not_null: false,
                        id_text: false,
                    });
                }
            }
        }
        checks
    }

    /// Checks every value rule of the contract. `customers` must be given for tables that
    /// reference customers. Stops at the first table with a violation, reporting the
    /// first violated rule with its count and an example row.
    pub fn check(&mut self, customers: Option<&Table>) -> Result<()> {
        let spec = self.spec;
        let name = spec.name;
        let checks = self.value_checks();
        // One pass computes every count (raw and normalised checks on separate frames).
        let (raw_checks, norm_checks): (Vec<&Check>, Vec<&Check>) =
            checks.iter().partition(|c| c.raw);
        let perr = |e: PolarsError| SourceError::Polars {
            table: name.into(),
            cause: e.into(),
        };
        let aggs = count_exprs(norm_checks.iter().copied());
        let t = std::time::Instant::now();
        let counts = self.frame.clone().select(aggs).collect().map_err(perr)?;
        tracing::debug!(
            table = name,
            secs = t.elapsed().as_secs_f64(),
            "value rules counted"
        );
        for (i, c) in norm_checks.iter().enumerate() {
            let n = scalar_u64(&counts, &format!("c{i}"));
            if n > 0 {
                return Err(self.violation(&c.column, &c.problem, n, c.bad.clone(), false));
            }
        }
        for c in raw_checks {
            let n = guard(|| {
                self.raw_frame()?
                    .select([c
                        .bad
                        .clone()
                        .fill_null(lit(false))
                        .sum()
                        .cast(DataType::UInt64)
                        .alias("n")])
                    .collect()
            })
            .map_err(perr)?;
            let n = scalar_u64(&n, "n");
            if n > 0 {
                return Err(self.violation(&c.column, &c.problem, n, c.bad.clone(), true));
            }
        }
        if let Some(key) = spec.key {
            // Sorting (parallel) and comparing neighbours beats hashing millions of
            // distinct long strings.
            let t = std::time::Instant::now();
            let k = polars::prelude::col("k");
            let repeats = self
                .frame
                .clone()
                .select([polars::prelude::col(key)
                    .drop_nulls()
                    .sort(SortOptions::default().with_multithreaded(true))
                    .alias("k")])
                .filter(k.clone().eq(k.shift(lit(1))).fill_null(lit(false)))
                .collect()
                .map_err(perr)?;
            tracing::debug!(
                table = name,
                secs = t.elapsed().as_secs_f64(),
                "key uniqueness checked"
            );
            if repeats.height() > 0 {
                let dup = repeats
                    .column("k")
                    .ok()
                    .and_then(|c| {
                        c.get(0)
                            .ok()
                            .map(|v| v.get_str().unwrap_or_default().to_string())
                    })
                    .unwrap_or_default();
                return Err(SourceError::Violation {
                    table: name.into(),
                    column: key.into(),
                    problem: "repeat an id that must be unique".into(),
                    count: repeats.height() as u64,
                    example: format!("{key}={dup:?}"),
                });
            }
        }
        if spec.references_customers {
            if let Some(customers) = customers {
                // Every row's customer key by a hash lookup (once per run of equal ids):
                // when all are found, the referential check has passed and the keys are
                // kept for the feature plans.
                let t = std::time::Instant::now();
                let map = customers.customer_map()?;
                let mut df = self.frame.clone().collect().map_err(perr)?;
                let keys =
                    customer_keys(df.column("customer_id").map_err(perr)?, map).map_err(perr)?;
                tracing::debug!(
                    table = name,
                    secs = t.elapsed().as_secs_f64(),
                    found = keys.is_some(),
                    "customer references looked up"
                );
                if let Some(keys) = keys {
                    df.with_column(keys.into_column()).map_err(perr)?;
                    self.frame = df.lazy();
                    return Ok(());
                }
                drop(df);
                let ids = customers
                    .frame
                    .clone()
                    .select([polars::prelude::col("customer_id")]);
                let orphans = self
                    .frame
                    .clone()
                    .select([polars::prelude::col("customer_id")])
                    .unique(None, UniqueKeepStrategy::Any)
                    .join(
                        ids,
                        [polars::prelude::col("customer_id")],
                        [polars::prelude::col("customer_id")],
                        JoinArgs::new(JoinType::Anti),
                    );
                let orphans = orphans.collect().map_err(perr)?;
                if orphans.height() > 0 {
                    let id = orphans
                        .column("customer_id")
                        .ok()
                        .and_then(|s| s.get(0).ok().map(|v| v.to_string()))
                        .unwrap_or_default();
                    let rows = self
                        .frame
                        .clone()
                        .join(
                            orphans.clone().lazy(),
                            [polars::prelude::col("customer_id")],
                            [polars::prelude::col("customer_id")],
                            JoinArgs::new(JoinType::Semi),
                        )
                        .select([len().alias("n")])
                        .collect()
                        .map(|df| scalar_u64(&df, "n"))
                        .unwrap_or(0);
                    return Err(SourceError::Violation {
                        table: name.into(),
                        column: "customer_id".into(),
                        problem: format!(
                            "reference {} customer id(s) missing from customers (a contract violation of the producing domain)",
                            orphans.height()
                        ),
                        count: rows,
                        example: format!("customer_id={id}"),
                    });
                }
            }
        }
        Ok(())
    }

    fn violation(
        &self,
        column: &str,
        problem: &str,
        count: u64,
        bad: Expr,
        raw: bool,
    ) -> SourceError {
        let frame = if raw {
            // Only the contract's columns: other columns may be of types no example needs.
            let cols: Vec<Expr> = self
                .spec
                .columns
                .iter()
                .map(|c| polars::prelude::col(c.name))
                .collect();
            self.raw_frame().map(|f| f.select(cols))
        } else {
            Ok(self.frame.clone())
        };
        let example = frame
            .and_then(|f| guard(|| f.filter(bad.fill_null(lit(false))).limit(1).collect()))
            .map(|df| describe_row(&df))
            .unwrap_or_else(|e| format!("(could not fetch an example: {e})"));
        SourceError::Violation {
            table: self.spec.name.into(),
            column: column.into(),
            problem: problem.into(),
            count,
            example,
        }
    }
}

/// Whether an id is unusable: empty or blank (only whitespace), or holding a control
/// character (Unicode Cc: C0 including `\n`, `\r`, `\t` and NUL, DEL, C1 such as NEL), an
/// invisible format character (Cf: zero-width, bidi, BOM, soft hyphen …) or a line or
/// paragraph separator (Zl, Zp). A line-based consumer (the batch transform's CSV) would
/// split a record at one; an invisible one makes two different ids look the same.
pub(super) fn contains_control(s: &str) -> bool {
    // Fast path: printable ASCII (almost every id) is bad only when blank.
    if s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return s.bytes().all(|b| b == b' ');
    }
    s.chars().all(char::is_whitespace) || s.chars().any(is_invisible)
}

/// True on the unusable id values ([`contains_control`]: blank, or holding a control,
/// format or separator character); false on nulls and non-text columns.
fn has_control_char(c: Expr) -> Expr {
    c.map(
        |c: Column| {
            use rayon::prelude::*;
            let none = || BooleanChunked::full(c.name().clone(), false, c.len());
            let out = match c.dtype() {
                DataType::String => {
                    let ca = c.str()?;
                    // Almost always clean: one parallel pass without building a mask.
                    let any = pieces(ca)
                        .par_iter()
                        .any(|arr| arr.values_iter().any(contains_control));
                    if any {
                        ca.iter()
                            .map(|v| Some(v.is_some_and(contains_control)))
                            .collect::<BooleanChunked>()
                    } else {
                        none()
                    }
                }
                _ => none(),
            };
            Ok(out.with_name(c.name().clone()).into_column())
        },
        |_, f| Ok(Field::new(f.name().clone(), DataType::Boolean)),
    )
}

/// `c0, c1, ...`: the number of rows each check finds bad.
pub(super) fn count_exprs<'a>(checks: impl Iterator<Item = &'a Check>) -> Vec<Expr> {
    checks
        .enumerate()
        .map(|(i, c)| {
            c.bad
                .clone()
                .fill_null(lit(false))
                .sum()
                .cast(DataType::UInt64)
                .alias(format!("c{i}"))
        })
        .collect()
}

pub(super) fn scalar_u64(df: &DataFrame, name: &str) -> u64 {
    df.column(name)
        .ok()
        .and_then(|c| c.get(0).ok())
        .and_then(|v| v.extract::<u64>())
        .unwrap_or(0)
}

/// `col=value, ...` for the first row of a frame (timestamps shown as their day).
pub(super) fn describe_row(df: &DataFrame) -> String {
    if df.height() == 0 {
        return "(none)".into();
    }
    let mut parts = Vec::new();
    for c in df.columns() {
        // Text is quoted with control characters escaped (`"10\n01"`), so an example never
        // breaks the message's line.
        let v = match c.get(0) {
            Ok(AnyValue::String(s)) => format!("{s:?}"),
            Ok(AnyValue::StringOwned(s)) => format!("{:?}", s.as_str()),
            Ok(v) => v.to_string(),
            Err(_) => String::new(),
        };
        parts.push(format!("{}={}", c.name(), v));
    }
    parts.join(", ")
}

#[cfg(test)]
#[path = "check_tests.rs"]
mod tests;
