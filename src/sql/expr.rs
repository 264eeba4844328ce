//! The feature-set expression language ([`crate::features::expr`]) printed as SQL text,
//! with the types and null rules of the polars compiler (`features::expr::compile`):
//! `a / b` is `CAST(a AS DOUBLE) / NULLIF(CAST(b AS DOUBLE), 0)` (null when b is 0),
//! `max(...)`/`min(...)` skip nulls (SQL GREATEST/LEAST where the dialect skips nulls,
//! a COALESCE form where it does not), `if(c, a, b)` is a CASE (a null condition takes
//! `b`), and `+ - *` of an integer and a float give a float.
//!
//! Literals are printed by [`Dialect::string`] (quotes escaped for the dialect), names by
//! [`Dialect::ident`]: no text of a definition reaches the query unquoted.

use crate::features::expr::{BinOp, Expr, Ty};

use super::Dialect;

/// What names mean where an expression is printed: a row of a table, or a row of features.
pub(super) trait SqlScope {
    /// The type and SQL text of a name, or why it cannot be used.
    fn resolve(&self, name: &str) -> Result<(Ty, String), String>;
    /// `days_ago(column)`: the age in days of a timestamp column (row scopes only).
    fn days_ago(&self, _column: &str) -> Result<String, String> {
        Err("days_ago() is only available in row filters and aggregated columns".into())
    }
}

/// The SQL type name of an expression type in `d`.
pub(super) fn sql_type(d: Dialect, t: Ty) -> &'static str {
    match t {
        Ty::Int => "BIGINT",
        Ty::Float | Ty::Null => "DOUBLE",
        Ty::Bool => "BOOLEAN",
        Ty::Str => d.string_type(),
        Ty::Time => "DATE",
    }
}

/// `e` as type `to` (unchanged when it has that type already).
pub(super) fn cast(d: Dialect, e: String, from: Ty, to: Ty) -> String {
    if from == to {
        e
    } else {
        format!("CAST({e} AS {})", sql_type(d, to))
    }
}

/// A float literal that every dialect reads as a DOUBLE (scientific notation).
pub(super) fn float_lit(v: f64) -> String {
    if v.is_finite() {
        format!("{v:e}")
    } else if v.is_nan() {
        "CAST('NaN' AS DOUBLE)".into()
    } else if v > 0.0 {
        "CAST('Infinity' AS DOUBLE)".into()
    } else {
        "CAST('-Infinity' AS DOUBLE)".into()
    }
}

/// Prints `e` as SQL in `d`; its type and text. The tree is at most
/// `features::expr::MAX_HEIGHT` deep (bounded while parsing).
pub(super) fn print(d: Dialect, e: &Expr, scope: &dyn SqlScope) -> Result<(Ty, String), String> {
    stacker::maybe_grow(128 * 1024, 2 * 1024 * 1024, || node(d, e, scope))
}

fn node(d: Dialect, e: &Expr, scope: &dyn SqlScope) -> Result<(Ty, String), String> {
    Ok(match e {
        Expr::Int(v) => (Ty::Int, v.to_string()),
        Expr::Float(v) => (Ty::Float, float_lit(*v)),
        Expr::Str(s) => (Ty::Str, d.string(s)),
        Expr::Bool(b) => (Ty::Bool, if *b { "TRUE" } else { "FALSE" }.into()),
        Expr::Null => (Ty::Null, "NULL".into()),
        Expr::Name(n) => scope.resolve(n)?,
        Expr::Neg(x) => {
            let (t, x) = print(d, x, scope)?;
            if !t.is_numeric() {
                return Err(format!("cannot negate a {t} value"));
            }
            let to = if t == Ty::Null { Ty::Float } else { t };
            (to, format!("(-{})", cast(d, x, t, to)))
        }
        Expr::Not(x) => {
            let (t, x) = print(d, x, scope)?;
            if t != Ty::Bool && t != Ty::Null {
                return Err(format!("'not' needs a boolean, got {t}"));
            }
            (Ty::Bool, format!("(NOT {x})"))
        }
        Expr::IsNull(x, neg) => {
            let (_, x) = print(d, x, scope)?;
            let not = if *neg { "NOT " } else { "" };
            (Ty::Bool, format!("({x} IS {not}NULL)"))
        }
        Expr::In(x, items, neg) => {
            let (t, xe) = print(d, x, scope)?;
            let mut list = Vec::with_capacity(items.len());
            for it in items {
                let (ti, ie) = print(d, it, scope)?;
                if t.unify(ti).is_none() {
                    return Err(format!(
                        "'in' compares a {t} value with a {ti} literal {it}"
                    ));
                }
                list.push(ie);
            }
            let not = if *neg { "NOT " } else { "" };
            (Ty::Bool, format!("({xe} {not}IN ({}))", list.join(", ")))
        }
        Expr::Bin(op, a, b) => binary(d, *op, a, b, scope)?,
        Expr::Call(name, args) => call(d, name, args, scope)?,
    })
}

fn binary(
    d: Dialect,
    op: BinOp,
    a: &Expr,
    b: &Expr,
    scope: &dyn SqlScope,
) -> Result<(Ty, String), String> {
    let (ta, ea) = print(d, a, scope)?;
    let (tb, eb) = print(d, b, scope)?;
    let sym = match op {
        BinOp::And => "AND",
        BinOp::Or => "OR",
        BinOp::Eq => "=",
        BinOp::Ne => "<>",
        BinOp::Lt => "<",
        BinOp::Le => "<=",
        BinOp::Gt => ">",
        BinOp::Ge => ">=",
        BinOp::Add => "+",
        BinOp::Sub => "-",
        BinOp::Mul => "*",
        BinOp::Div => "/",
    };
    Ok(match op {
        BinOp::And | BinOp::Or => {
            for (t, side) in [(ta, a), (tb, b)] {
                if t != Ty::Bool && t != Ty::Null {
                    return Err(format!("'{sym}' needs booleans, but {side} is {t}"));
                }
            }
            (Ty::Bool, format!("({ea} {sym} {eb})"))
        }
        BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
            if ta.unify(tb).is_none() {
                return Err(format!("cannot compare {a} ({ta}) with {b} ({tb})"));
            }
            (Ty::Bool, format!("({ea} {sym} {eb})"))
        }
        BinOp::Div => {
            for (t, side) in [(ta, a), (tb, b)] {
                if !t.is_numeric() {
                    return Err(format!("'/' needs numbers, but {side} is {t}"));
                }
            }
            // SQL a / NULLIF(b, 0): null when the denominator is 0 (polars: the same).
            (
                Ty::Float,
                format!(
                    "({} / NULLIF({}, 0E0))",
                    cast(d, ea, ta, Ty::Float),
                    cast(d, eb, tb, Ty::Float)
                ),
            )
        }
        BinOp::Add | BinOp::Sub | BinOp::Mul => {
            for (t, side) in [(ta, a), (tb, b)] {
                if !t.is_numeric() {
                    return Err(format!("'{sym}' needs numbers, but {side} is {t}"));
                }
            }
            let t = match ta.unify(tb) {
                Some(Ty::Null) | None => Ty::Float,
                Some(t) => t,
            };
            (
                t,
                format!("({} {sym} {})", cast(d, ea, ta, t), cast(d, eb, tb, t)),
            )
        }
    })
}

fn call(
    d: Dialect,
    name: &str,
    args: &[Expr],
    scope: &dyn SqlScope,
) -> Result<(Ty, String), String> {
    if name == "days_ago" {
        let Some(Expr::Name(col)) = args.first() else {
            return Err("days_ago() takes a timestamp column name".into());
        };
        return Ok((Ty::Int, scope.days_ago(col)?));
    }
    let mut printed = Vec::with_capacity(args.len());
    for a in args {
        printed.push(print(d, a, scope)?);
    }
    let unify_all = |items: &[(Ty, String)]| -> Result<Ty, String> {
        let mut t = Ty::Null;
        for (ti, _) in items {
            t = t
                .unify(*ti)
                .ok_or_else(|| format!("{name}() mixes {t} and {ti} arguments"))?;
        }
        Ok(t)
    };
    let one = |printed: Vec<(Ty, String)>| -> Result<(Ty, String), String> {
        printed
            .into_iter()
            .next()
            .ok_or_else(|| format!("{name}() takes one argument"))
    };
    Ok(match name {
        "max" | "min" => {
            let t = unify_all(&printed)?;
            if !t.is_numeric() {
                return Err(format!("{name}() needs numbers, got {t}"));
            }
            let t = if t == Ty::Null { Ty::Float } else { t };
            let es: Vec<String> = printed
                .into_iter()
                .map(|(ti, e)| cast(d, e, ti, t))
                .collect();
            (t, d.greatest_least(name == "max", &es))
        }
        "abs" => {
            let (t, e) = one(printed)?;
            if !t.is_numeric() {
                return Err(format!("abs() needs a number, got {t}"));
            }
            (t, format!("abs({e})"))
        }
        "coalesce" => {
            let t = unify_all(&printed)?;
            if printed.is_empty() {
                return Err("coalesce() needs arguments".into());
            }
            let es: Vec<String> = printed
                .into_iter()
                .map(|(ti, e)| cast(d, e, ti, t))
                .collect();
            (t, format!("coalesce({})", es.join(", ")))
        }
        "if" => {
            let mut it = printed.into_iter();
            let mut next = || it.next().ok_or("if() takes three arguments");
            let (tc, c) = next()?;
            let (ta, a) = next()?;
            let (tb, b) = next()?;
            if tc != Ty::Bool && tc != Ty::Null {
                return Err(format!("if() needs a boolean condition, got {tc}"));
            }
            let t = ta
                .unify(tb)
                .ok_or_else(|| format!("if() branches have different types: {ta} and {tb}"))?;
            let t = if t == Ty::Null { Ty::Float } else { t };
            (
                t,
                format!(
                    "CASE WHEN {c} THEN {} ELSE {} END",
                    cast(d, a, ta, t),
                    cast(d, b, tb, t)
                ),
            )
        }
        "is_null" => {
            let (_, e) = one(printed)?;
            (Ty::Bool, format!("({e} IS NULL)"))
        }
        other => return Err(format!("unknown function '{other}'")),
    })
}
