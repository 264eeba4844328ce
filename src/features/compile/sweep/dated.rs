//! Row filters that read the as-of date, evaluated by the event sweep per `(row, D)`
//! instead of on the join path.
//!
//! A filter qualifies when every part of it that reads the as-of date is an age test
//! `days_ago OP k` or `days_ago(ts) OP k` (either side; `OP` one of `== != < <= > >=`,
//! `k` a whole-number literal, `ts` a timestamp column of the table), `is null` /
//! `is not null` of such an age, or `and` / `or` / `not` of qualifying parts. The parts
//! that do not read the date are compiled once with polars into boolean columns (nulls
//! kept); each age test becomes the exact integer comparison `D - day OP k` (null when the
//! day is null), as the join path computes `days_ago` in Int64. `and` / `or` / `not`
//! follow SQL's three-valued logic as polars does, and a null result counts as false (as
//! the join path's `fill_null(false)`), so a qualifying filter selects the same rows at
//! every D. Anything else (a date inside arithmetic or a function, a float literal, two
//! ages compared) is refused: the feature stays on the join path.

use polars::prelude::*;

use super::super::{cerr, CompileError};
use super::reads_as_of;
use crate::features::def::FeatureSet;
use crate::features::expr::{self, BinOp, Ty};
use crate::features::rows::{is_contract_ts, RowScope};
use crate::source::TableSpec;

/// A comparison of an age with a literal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cmp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Cmp {
    fn of(op: BinOp) -> Option<Cmp> {
        Some(match op {
            BinOp::Eq => Cmp::Eq,
            BinOp::Ne => Cmp::Ne,
            BinOp::Lt => Cmp::Lt,
            BinOp::Le => Cmp::Le,
            BinOp::Gt => Cmp::Gt,
            BinOp::Ge => Cmp::Ge,
            _ => return None,
        })
    }

    /// `k OP age` as `age OP' k`.
    fn flipped(self) -> Cmp {
        match self {
            Cmp::Lt => Cmp::Gt,
            Cmp::Le => Cmp::Ge,
            Cmp::Gt => Cmp::Lt,
            Cmp::Ge => Cmp::Le,
            c => c,
        }
    }

    fn test(self, a: i64, k: i64) -> bool {
        match self {
            Cmp::Eq => a == k,
            Cmp::Ne => a != k,
            Cmp::Lt => a < k,
            Cmp::Le => a <= k,
            Cmp::Gt => a > k,
            Cmp::Ge => a >= k,
        }
    }
}

/// A date-dependent filter as a tree over per-row inputs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    /// A part that does not read the date: [`Dated::leaves`] entry, per row.
    Leaf(usize),
    /// `D - day OP k`, the day read from [`Dated::ages`] entry `col`; null when null.
    Age {
        col: usize,
        op: Cmp,
        k: i64,
    },
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Not(Box<Node>),
}

/// The inputs of a sweep's date-dependent filters: boolean row expressions (nulls kept)
/// and timestamp columns, shared between filters.
#[derive(Default)]
pub(crate) struct Dated {
    /// Boolean row expressions that do not read the date.
    pub leaves: Vec<Expr>,
    leaf_ids: Vec<String>,
    /// Timestamp columns whose age the filters test.
    pub ages: Vec<String>,
}

impl Dated {
    fn leaf(&mut self, e: Expr) -> usize {
        let id = format!("{e:?}");
        if let Some(i) = self.leaf_ids.iter().position(|x| *x == id) {
            return i;
        }
        self.leaves.push(e);
        self.leaf_ids.push(id);
        self.leaves.len() - 1
    }

    fn age_col(&mut self, c: &str) -> usize {
        match self.ages.iter().position(|x| x == c) {
            Some(i) => i,
            None => {
                self.ages.push(c.to_string());
                self.ages.len() - 1
            }
        }
    }

    /// The tree of filter `e` of `table` whose `days_ago` measures `ts`; None when the
    /// filter does not qualify (see the module doc). Recursion is bounded by the
    /// parser's height limit (`expr::MAX_HEIGHT`).
    pub fn node(
        &mut self,
        set: &FeatureSet,
        table: &'static TableSpec,
        ts: &str,
        e: &expr::Expr,
    ) -> Result<Option<Node>, CompileError> {
        use expr::Expr as E;
        if !reads_as_of(e) {
            let scope = RowScope::compiling(table, ts, lit(0i32), set.extra_types(table.name));
            return Ok(match expr::compile(e, &scope).map_err(|m| cerr(set, m))? {
                (Ty::Bool | Ty::Null, x) => Some(Node::Leaf(self.leaf(x))),
                _ => None,
            });
        }
        let age = |x: &E| -> Option<String> {
            match x {
                E::Name(n) if n == "days_ago" => Some(ts.to_string()),
                E::Call(f, args) if f == "days_ago" => match args.as_slice() {
                    [E::Name(c)] if is_contract_ts(table, c) => Some(c.clone()),
                    _ => None,
                },
                _ => None,
            }
        };
        let int = |x: &E| -> Option<i64> {
            match x {
                E::Int(k) => Some(*k),
                E::Neg(y) => match y.as_ref() {
                    E::Int(k) => k.checked_neg(),
                    _ => None,
                },
                _ => None,
            }
        };
        Ok(match e {
            E::Bin(BinOp::And, a, b) | E::Bin(BinOp::Or, a, b) => {
                let (Some(x), Some(y)) =
                    (self.node(set, table, ts, a)?, self.node(set, table, ts, b)?)
                else {
                    return Ok(None);
                };
                let (x, y) = (Box::new(x), Box::new(y));
                match e {
                    E::Bin(BinOp::And, ..) => Some(Node::And(x, y)),
                    _ => Some(Node::Or(x, y)),
                }
            }
            E::Not(x) => self
                .node(set, table, ts, x)?
                .map(|n| Node::Not(Box::new(n))),
            E::IsNull(x, neg) => age(x).map(|c| {
                let n = col(c.as_str());
                Node::Leaf(self.leaf(if *neg { n.is_not_null() } else { n.is_null() }))
            }),
            E::Bin(op, a, b) => {
                let Some(cmp) = Cmp::of(*op) else {
                    return Ok(None);
                };
                match (age(a), int(b), int(a), age(b)) {
                    (Some(c), Some(k), _, _) => Some(Node::Age {
                        col: self.age_col(&c),
                        op: cmp,
                        k,
                    }),
                    (_, _, Some(k), Some(c)) => Some(Node::Age {
                        col: self.age_col(&c),
                        op: cmp.flipped(),
                        k,
                    }),
                    _ => None,
                }
            }
            _ => None,
        })
    }
}

/// The inputs of one row: each leaf's value (`None`: null) and each age column's day.
pub(crate) trait RowInputs {
    fn leaf(&self, i: usize) -> Option<bool>;
    fn day(&self, i: usize) -> Option<i32>;
}

/// The value of `n` for a row at as-of day `d` (three-valued; `None` is null).
pub(crate) fn eval(n: &Node, row: &impl RowInputs, d: i32) -> Option<bool> {
    match n {
        Node::Leaf(i) => row.leaf(*i),
        Node::Age { col, op, k } => row
            .day(*col)
            .map(|t| op.test(i64::from(d) - i64::from(t), *k)),
        Node::And(a, b) => match (eval(a, row, d), eval(b, row, d)) {
            (Some(false), _) | (_, Some(false)) => Some(false),
            (Some(true), Some(true)) => Some(true),
            _ => None,
        },
        Node::Or(a, b) => match (eval(a, row, d), eval(b, row, d)) {
            (Some(true), _) | (_, Some(true)) => Some(true),
            (Some(false), Some(false)) => Some(false),
            _ => None,
        },
        Node::Not(a) => eval(a, row, d).map(|v| !v),
    }
}
