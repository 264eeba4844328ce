//! The row scope: what names mean in a row expression (an aggregation's `column` and
//! `where`, an entity feature's column, a label's `where`), shared by validation and
//! compilation so the two cannot disagree. Also the one map from a contract column type to
//! an expression type, and the "is this a timestamp of the contract" test.
//!
//! In a row expression a name is a column of the table (or a declared extra column),
//! `days_ago` is the age in days of the row's event time at the as-of date, and
//! `days_ago(column)` the age of another timestamp column.

use std::cell::RefCell;
use std::collections::BTreeMap;

use polars::prelude::{col, DataType, Expr as PlExpr};

use super::expr::{Scope, Ty};
use crate::source::{ColType, TableSpec};

/// The expression type of a contract column type (timestamps are day numbers, [`Ty::Time`]).
pub fn column_ty(t: ColType) -> Ty {
    match t {
        ColType::Str => Ty::Str,
        ColType::Float => Ty::Float,
        ColType::Int => Ty::Int,
        ColType::Bool => Ty::Bool,
        ColType::Timestamp => Ty::Time,
    }
}

/// Whether `column` is a timestamp column of `table` in the contract.
pub fn is_contract_ts(table: &TableSpec, column: &str) -> bool {
    table
        .column(column)
        .is_some_and(|c| c.ty == ColType::Timestamp)
}

/// `as_of - ts` in days (Int64): the age of the day-number column `ts` at `as_of`.
pub fn days_ago(as_of: PlExpr, ts: &str) -> PlExpr {
    (as_of.cast(DataType::Int64) - col(ts).cast(DataType::Int64)).cast(DataType::Int64)
}

/// Names in row expressions: the table's columns, `days_ago`, and `days_ago(col)`.
///
/// Validation builds it with [`RowScope::validating`]: unknown names are errors, declared
/// extra columns resolve to their declared type (and are recorded), and the polars
/// expressions are placeholders. Compilation builds it with [`RowScope::compiling`]: the
/// names were checked already, `days_ago` is computed from the as-of date, and declared
/// extra columns have their declared types (an operation's type follows its operands': a
/// float column times 2 stays a float).
pub struct RowScope<'a> {
    /// The table whose rows the expression reads.
    pub table: &'static TableSpec,
    /// The event-time column `days_ago` measures.
    pub ts: &'a str,
    /// The as-of date when compiling; None when validating.
    pub as_of: Option<PlExpr>,
    /// The declared extra columns of the table and their types.
    pub extra: Option<&'a BTreeMap<String, Ty>>,
    /// Extra columns the expression used (validation only).
    used_extra: RefCell<Vec<String>>,
}

impl<'a> RowScope<'a> {
    /// A scope that type-checks names against the contract and the declared `extra` columns.
    pub fn validating(
        table: &'static TableSpec,
        ts: &'a str,
        extra: &'a BTreeMap<String, Ty>,
    ) -> RowScope<'a> {
        RowScope {
            table,
            ts,
            as_of: None,
            extra: Some(extra),
            used_extra: RefCell::default(),
        }
    }

    /// A scope that compiles (already validated) names at the date `as_of`; `extra` are
    /// the set's declared extra columns of `table` ([`FeatureSet::extra_types`]).
    ///
    /// [`FeatureSet::extra_types`]: crate::features::FeatureSet::extra_types
    pub fn compiling(
        table: &'static TableSpec,
        ts: &'a str,
        as_of: PlExpr,
        extra: Option<&'a BTreeMap<String, Ty>>,
    ) -> RowScope<'a> {
        RowScope {
            table,
            ts,
            as_of: Some(as_of),
            extra,
            used_extra: RefCell::default(),
        }
    }

    /// The extra columns resolved so far, in order of use (repeats kept).
    pub fn used_extra(&self) -> Vec<String> {
        self.used_extra.borrow().clone()
    }

    /// The age in days of the timestamp column `ts` (a placeholder when validating).
    fn age(&self, ts: &str) -> PlExpr {
        match &self.as_of {
            Some(as_of) => days_ago(as_of.clone(), ts),
            None => col(ts),
        }
    }
}

impl Scope for RowScope<'_> {
    fn resolve(&self, name: &str) -> Result<(Ty, PlExpr), String> {
        if name == "days_ago" {
            return Ok((Ty::Int, self.age(self.ts)));
        }
        if let Some(c) = self.table.column(name) {
            return Ok((column_ty(c.ty), col(name)));
        }
        if self.as_of.is_some() {
            // Compiling: names were checked at validation; a declared column has its type.
            let t = self.extra.and_then(|x| x.get(name)).copied();
            return Ok((t.unwrap_or(Ty::Null), col(name)));
        }
        if let Some(t) = self.extra.and_then(|x| x.get(name)) {
            self.used_extra.borrow_mut().push(name.to_string());
            return Ok((*t, col(name)));
        }
        let cols: Vec<_> = self.table.columns.iter().map(|c| c.name).collect();
        Err(format!(
            "unknown column {name} in table {} (columns: {}, days_ago; declare other columns under [columns.{}])",
            self.table.name,
            cols.join(", "),
            self.table.name
        ))
    }

    fn days_ago(&self, column: &str) -> Result<PlExpr, String> {
        if self.as_of.is_some() {
            // Compiling: the column was checked at validation.
            return Ok(self.age(column));
        }
        match self.table.column(column) {
            Some(c) if c.ty == ColType::Timestamp => Ok(self.age(column)),
            Some(_) => Err(format!("days_ago({column}): {column} is not a timestamp")),
            None => Err(format!(
                "days_ago({column}): no timestamp column {column} in table {}",
                self.table.name
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use polars::prelude::lit;

    use super::*;
    use crate::features::expr;
    use crate::source;

    fn orders() -> &'static TableSpec {
        source::table_spec("orders").expect("the contract has orders")
    }

    #[test]
    fn column_types_map_to_expression_types() {
        assert_eq!(column_ty(ColType::Str), Ty::Str);
        assert_eq!(column_ty(ColType::Float), Ty::Float);
        assert_eq!(column_ty(ColType::Int), Ty::Int);
        assert_eq!(column_ty(ColType::Bool), Ty::Bool);
        assert_eq!(column_ty(ColType::Timestamp), Ty::Time);
    }

    #[test]
    fn contract_timestamps_are_recognised() {
        let t = orders();
        assert!(is_contract_ts(t, t.ts));
        assert!(!is_contract_ts(t, "customer_id"));
        assert!(!is_contract_ts(t, "no_such_column"));
    }

    #[test]
    fn validating_types_columns_and_records_extras() {
        let t = orders();
        let extra = BTreeMap::from([("discount".to_string(), Ty::Float)]);
        let rs = RowScope::validating(t, t.ts, &extra);
        assert_eq!(rs.resolve("days_ago").unwrap().0, Ty::Int);
        assert_eq!(rs.resolve(t.ts).unwrap().0, Ty::Time);
        assert_eq!(rs.resolve("discount").unwrap().0, Ty::Float);
        assert_eq!(rs.resolve("discount").unwrap().0, Ty::Float);
        assert_eq!(rs.used_extra(), vec!["discount", "discount"]);
        let err = rs.resolve("nope").unwrap_err();
        assert!(
            err.starts_with("unknown column nope in table orders (columns: ")
                && err.ends_with("declare other columns under [columns.orders])"),
            "{err}"
        );
        let err = rs.days_ago("customer_id").unwrap_err();
        assert_eq!(err, "days_ago(customer_id): customer_id is not a timestamp");
        let err = rs.days_ago("nope").unwrap_err();
        assert_eq!(
            err,
            "days_ago(nope): no timestamp column nope in table orders"
        );
    }

    #[test]
    fn compiling_computes_days_ago_and_passes_extras_through() {
        let t = orders();
        let rs = RowScope::compiling(t, t.ts, lit(100), None);
        let (ty, e) = rs.resolve("days_ago").unwrap();
        assert_eq!(ty, Ty::Int);
        assert_eq!(e, days_ago(lit(100), t.ts));
        assert_eq!(rs.resolve("discount").unwrap(), (Ty::Null, col("discount")));
        assert!(rs.used_extra().is_empty());
        // The same expression compiles in both scopes, to the same type.
        let e = expr::parse("days_ago < 30 and customer_id is not null").unwrap();
        let extra = BTreeMap::new();
        let v = RowScope::validating(t, t.ts, &extra);
        assert_eq!(expr::compile(&e, &v).unwrap().0, Ty::Bool);
        assert_eq!(expr::compile(&e, &rs).unwrap().0, Ty::Bool);
    }
}
