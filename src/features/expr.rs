//! The small, engine-neutral expression language of feature sets.
//!
//! Used for row filters (`where = "status == 'completed'"`), aggregated columns, and
//! features computed from other features (`expr = "a / max(b, 1)"`). It maps one to one
//! onto SQL (so a set can later compile to Athena/Spark) and here onto polars expressions.
//!
//! Grammar (lowest precedence first):
//! `or` · `and` · `not` · comparison (`== = != <> < <= > >=`, `is [not] null`,
//! `[not] in (lit, ...)`) · `+ -` · `* /` · unary `-` · literal, name, call, `( )`.
//!
//! Null semantics follow SQL: arithmetic with a null is null; `a / b` is null when `b` is 0
//! (SQL `a / NULLIF(b, 0)`); `if(c, a, b)` gives `b` when `c` is false or null.
//!
//! Any input is safe: text is read by character (names and operators are ASCII, quoted
//! strings any script), and size is bounded while parsing ([`MAX_CHARS`], [`MAX_NESTING`],
//! [`MAX_HEIGHT`], [`MAX_NODES`]), so every later recursive pass has a bounded depth.

use std::fmt;

use polars::prelude::{lit, when, DataType as PlType, Expr as PlExpr, NULL};

mod syntax;

pub use syntax::parse;

/// The value types the language knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Ty {
    Int,
    Float,
    Bool,
    Str,
    /// A timestamp column: only `is null` and comparisons with timestamps; use
    /// `days_ago(col)` for arithmetic.
    Time,
    /// The type of a bare `null` literal: fits anywhere.
    Null,
}

impl Ty {
    pub fn is_numeric(self) -> bool {
        matches!(self, Ty::Int | Ty::Float | Ty::Null)
    }

    /// The common type of two branches or operands, if any.
    pub fn unify(self, other: Ty) -> Option<Ty> {
        match (self, other) {
            (a, b) if a == b => Some(a),
            (Ty::Null, b) => Some(b),
            (a, Ty::Null) => Some(a),
            (Ty::Int, Ty::Float) | (Ty::Float, Ty::Int) => Some(Ty::Float),
            _ => None,
        }
    }

    pub fn polars(self) -> PlType {
        match self {
            Ty::Int => PlType::Int64,
            Ty::Float | Ty::Null => PlType::Float64,
            Ty::Bool => PlType::Boolean,
            Ty::Str => PlType::String,
            Ty::Time => PlType::Int32,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Ty::Int => "integer",
            Ty::Float => "float",
            Ty::Bool => "boolean",
            Ty::Str => "string",
            Ty::Time => "timestamp",
            Ty::Null => "null",
        }
    }
}

impl fmt::Display for Ty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    And,
    Or,
}

impl BinOp {
    fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::And => "and",
            BinOp::Or => "or",
        }
    }
}

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    Null,
    Name(String),
    Neg(Box<Expr>),
    Not(Box<Expr>),
    IsNull(Box<Expr>, bool),
    In(Box<Expr>, Vec<Expr>, bool),
    Bin(BinOp, Box<Expr>, Box<Expr>),
    Call(String, Vec<Expr>),
}

/// The functions the language offers, with their arity (None = one or more).
pub const FUNCTIONS: &[(&str, Option<usize>, &str)] = &[
    ("max", None, "largest non-null argument (SQL GREATEST)"),
    ("min", None, "smallest non-null argument (SQL LEAST)"),
    ("abs", Some(1), "absolute value"),
    ("coalesce", None, "first non-null argument"),
    ("if", Some(3), "if(cond, a, b): a when cond is true, else b"),
    ("is_null", Some(1), "true when the argument is null"),
    (
        "days_ago",
        Some(1),
        "in row filters: as-of date minus the date of a timestamp column",
    ),
];

/// The longest expression accepted, in characters.
pub const MAX_CHARS: usize = 10_000;
/// How deeply parentheses, calls, `not` and unary minus may nest inside one another.
pub const MAX_NESTING: u32 = 64;
/// The height of the parsed tree: how many operators may chain (`a + b + ... ` with more
/// terms than this is refused). Every later pass over the tree (names, type check, compile
/// to polars, printing) recurses at most this deep, so no input can overflow the stack.
pub const MAX_HEIGHT: u32 = 128;
/// The most nodes (names, literals, operators, calls) one expression may have.
pub const MAX_NODES: usize = 2_000;
/// With less stack than this left, recursion continues on a new segment of STACK_SEGMENT.
const RED_ZONE: usize = 128 * 1024;
const STACK_SEGMENT: usize = 2 * 1024 * 1024;

/// Why an expression could not be parsed; `pos` counts characters (not bytes) from 0.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message} (at character {pos})")]
pub struct ParseError {
    pub message: String,
    pub pos: usize,
}

impl Expr {
    /// Every name the expression refers to (columns or features), in order of appearance.
    pub fn names(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.walk(&mut |e| {
            if let Expr::Name(n) = e {
                if !out.contains(n) {
                    out.push(n.clone());
                }
            }
        });
        out
    }

    fn walk(&self, f: &mut dyn FnMut(&Expr)) {
        f(self);
        match self {
            Expr::Neg(e) | Expr::Not(e) | Expr::IsNull(e, _) => e.walk(f),
            Expr::In(e, items, _) => {
                e.walk(f);
                items.iter().for_each(|i| i.walk(f));
            }
            Expr::Bin(_, a, b) => {
                a.walk(f);
                b.walk(f);
            }
            Expr::Call(_, args) => args.iter().for_each(|a| a.walk(f)),
            _ => {}
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Int(v) => write!(f, "{v}"),
            Expr::Float(v) => write!(f, "{v:?}"),
            Expr::Str(s) => write!(f, "'{}'", s.replace('\'', "''")),
            Expr::Bool(b) => write!(f, "{b}"),
            Expr::Null => f.write_str("null"),
            Expr::Name(n) => f.write_str(n),
            Expr::Neg(e) => write!(f, "-({e})"),
            Expr::Not(e) => write!(f, "not ({e})"),
            Expr::IsNull(e, neg) => write!(f, "({e}) is {}null", if *neg { "not " } else { "" }),
            Expr::In(e, items, neg) => {
                write!(f, "({e}) {}in (", if *neg { "not " } else { "" })?;
                for (i, it) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{it}")?;
                }
                f.write_str(")")
            }
            Expr::Bin(op, a, b) => write!(f, "({a} {} {b})", op.symbol()),
            Expr::Call(n, args) => {
                write!(f, "{n}(")?;
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{a}")?;
                }
                f.write_str(")")
            }
        }
    }
}

/// What names mean where an expression is compiled.
pub trait Scope {
    /// The type and polars expression of a name, or an error message.
    fn resolve(&self, name: &str) -> Result<(Ty, PlExpr), String>;
    /// `days_ago(column)`: only row scopes offer it.
    fn days_ago(&self, _column: &str) -> Result<PlExpr, String> {
        Err("days_ago() is only available in row filters and aggregated columns".into())
    }
}

/// Type-checks and compiles an expression to a polars expression.
pub fn compile(e: &Expr, scope: &dyn Scope) -> Result<(Ty, PlExpr), String> {
    // A compile step takes several KiB of stack in a debug build; the tree is at most
    // MAX_HEIGHT deep, and the stack grows on demand below RED_ZONE.
    stacker::maybe_grow(RED_ZONE, STACK_SEGMENT, || compile_node(e, scope))
}

fn compile_node(e: &Expr, scope: &dyn Scope) -> Result<(Ty, PlExpr), String> {
    Ok(match e {
        Expr::Int(v) => (Ty::Int, lit(*v)),
        Expr::Float(v) => (Ty::Float, lit(*v)),
        Expr::Str(s) => (Ty::Str, lit(s.clone())),
        Expr::Bool(b) => (Ty::Bool, lit(*b)),
        Expr::Null => (Ty::Null, lit(NULL)),
        Expr::Name(n) => scope.resolve(n)?,
        Expr::Neg(x) => {
            let (t, x) = compile(x, scope)?;
            if !t.is_numeric() {
                return Err(format!("cannot negate a {t} value"));
            }
            (t, lit(0).cast(t.polars()) - x)
        }
        Expr::Not(x) => {
            let (t, x) = compile(x, scope)?;
            if t != Ty::Bool && t != Ty::Null {
                return Err(format!("'not' needs a boolean, got {t}"));
            }
            (Ty::Bool, x.not())
        }
        Expr::IsNull(x, neg) => {
            let (_, x) = compile(x, scope)?;
            (Ty::Bool, if *neg { x.is_not_null() } else { x.is_null() })
        }
        Expr::In(x, items, neg) => {
            let (t, mut xe) = compile(x, scope)?;
            if t == Ty::Str
                && items
                    .iter()
                    .any(|i| !matches!(i, Expr::Str(_) | Expr::Null))
            {
                xe = xe.cast(PlType::String);
            }
            let mut tests = Vec::with_capacity(items.len());
            for it in items {
                let (ti, ie) = compile(it, scope)?;
                if t.unify(ti).is_none() {
                    return Err(format!(
                        "'in' compares a {t} value with a {ti} literal {it}"
                    ));
                }
                tests.push(xe.clone().eq(ie));
            }
            let e = balanced_or(tests);
            (Ty::Bool, if *neg { e.not() } else { e })
        }
        Expr::Bin(op, a, b) => {
            let (ta, ea) = compile(a, scope)?;
            let (tb, eb) = compile(b, scope)?;
            match op {
                BinOp::And | BinOp::Or => {
                    for (t, side) in [(ta, a), (tb, b)] {
                        if t != Ty::Bool && t != Ty::Null {
                            return Err(format!(
                                "'{}' needs booleans, but {side} is {t}",
                                op.symbol()
                            ));
                        }
                    }
                    let e = if *op == BinOp::And {
                        ea.and(eb)
                    } else {
                        ea.or(eb)
                    };
                    (Ty::Bool, e)
                }
                BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                    if ta.unify(tb).is_none() {
                        return Err(format!(
                            "cannot compare {a} ({ta}) with {b} ({tb}) using '{}'",
                            op.symbol()
                        ));
                    }
                    // Text columns may be Enums (see source::load_trimmed): equality with a
                    // literal compares codes; anything else compares the text itself.
                    let literal = |x: &Expr| matches!(x, Expr::Str(_) | Expr::Null);
                    let by_code = matches!(op, BinOp::Eq | BinOp::Ne) && (literal(a) || literal(b));
                    let (ea, eb) = if (ta == Ty::Str || tb == Ty::Str) && !by_code {
                        (ea.cast(PlType::String), eb.cast(PlType::String))
                    } else {
                        (ea, eb)
                    };
                    let e = match op {
                        BinOp::Eq => ea.eq(eb),
                        BinOp::Ne => ea.neq(eb),
                        BinOp::Lt => ea.lt(eb),
                        BinOp::Le => ea.lt_eq(eb),
                        BinOp::Gt => ea.gt(eb),
                        _ => ea.gt_eq(eb),
                    };
                    (Ty::Bool, e)
                }
                BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div => {
                    for (t, side) in [(ta, a), (tb, b)] {
                        if !t.is_numeric() {
                            return Err(format!(
                                "'{}' needs numbers, but {side} is {t}",
                                op.symbol()
                            ));
                        }
                    }
                    if *op == BinOp::Div {
                        let num = ea.cast(PlType::Float64);
                        let den = eb.cast(PlType::Float64);
                        let e = when(den.clone().eq(lit(0.0)))
                            .then(lit(NULL).cast(PlType::Float64))
                            .otherwise(num / den);
                        (Ty::Float, e)
                    } else {
                        let t = ta.unify(tb).unwrap_or(Ty::Float);
                        let t = if t == Ty::Null { Ty::Float } else { t };
                        let (ea, eb) = (ea.cast(t.polars()), eb.cast(t.polars()));
                        let e = match op {
                            BinOp::Add => ea + eb,
                            BinOp::Sub => ea - eb,
                            _ => ea * eb,
                        };
                        (t, e)
                    }
                }
            }
        }
        Expr::Call(name, args) => compile_call(name, args, scope)?,
    })
}

/// `a or b or ...` as a balanced tree (log2(n) deep, not n), same value.
fn balanced_or(mut v: Vec<PlExpr>) -> PlExpr {
    while v.len() > 1 {
        let mut next = Vec::with_capacity(v.len().div_ceil(2));
        let mut it = v.into_iter();
        while let Some(a) = it.next() {
            next.push(match it.next() {
                Some(b) => a.or(b),
                None => a,
            });
        }
        v = next;
    }
    v.pop().unwrap_or_else(|| lit(false))
}

fn compile_call(name: &str, args: &[Expr], scope: &dyn Scope) -> Result<(Ty, PlExpr), String> {
    if name == "days_ago" {
        let Some(Expr::Name(col)) = args.first() else {
            return Err("days_ago() takes a timestamp column name".into());
        };
        return Ok((Ty::Int, scope.days_ago(col)?));
    }
    let mut compiled = Vec::with_capacity(args.len());
    for a in args {
        compiled.push(compile(a, scope)?);
    }
    let unify_all = |items: &[(Ty, PlExpr)]| -> Result<Ty, String> {
        let mut t = Ty::Null;
        for (ti, _) in items {
            t = t
                .unify(*ti)
                .ok_or_else(|| format!("{name}() mixes {t} and {ti} arguments"))?;
        }
        Ok(t)
    };
    Ok(match name {
        "max" | "min" => {
            let t = unify_all(&compiled)?;
            if !t.is_numeric() {
                return Err(format!("{name}() needs numbers, got {t}"));
            }
            let t = if t == Ty::Null { Ty::Float } else { t };
            let es: Vec<_> = compiled.into_iter().map(|c| c.1.cast(t.polars())).collect();
            let e = if name == "max" {
                polars::lazy::dsl::max_horizontal(es)
            } else {
                polars::lazy::dsl::min_horizontal(es)
            }
            .map_err(|e| e.to_string())?;
            (t, e)
        }
        "abs" => {
            let (t, e) = compiled
                .into_iter()
                .next()
                .ok_or("abs() takes one argument")?;
            if !t.is_numeric() {
                return Err(format!("abs() needs a number, got {t}"));
            }
            (t, e.abs())
        }
        "coalesce" => {
            let t = unify_all(&compiled)?;
            let mut it = compiled.into_iter().rev();
            let (_, mut acc) = it.next().ok_or("coalesce() needs arguments")?;
            acc = acc.cast(t.polars());
            for (_, e) in it {
                let e = e.cast(t.polars());
                acc = when(e.clone().is_not_null()).then(e).otherwise(acc);
            }
            (t, acc)
        }
        "if" => {
            let mut it = compiled.into_iter();
            let (tc, c) = it.next().ok_or("if() takes three arguments")?;
            let (ta, a) = it.next().ok_or("if() takes three arguments")?;
            let (tb, b) = it.next().ok_or("if() takes three arguments")?;
            if tc != Ty::Bool && tc != Ty::Null {
                return Err(format!("if() needs a boolean condition, got {tc}"));
            }
            let t = ta
                .unify(tb)
                .ok_or_else(|| format!("if() branches have different types: {ta} and {tb}"))?;
            let t = if t == Ty::Null { Ty::Float } else { t };
            (
                t,
                when(c.fill_null(lit(false)))
                    .then(a.cast(t.polars()))
                    .otherwise(b.cast(t.polars())),
            )
        }
        "is_null" => {
            let (_, e) = compiled
                .into_iter()
                .next()
                .ok_or("is_null() takes one argument")?;
            (Ty::Bool, e.is_null())
        }
        other => return Err(format!("unknown function '{other}'")),
    })
}

#[cfg(test)]
mod tests;
