//! Which features one sweep computes: a [`Sweep`] is one table read over one of its
//! timestamp columns (the table's event time, or another, e.g. `resolved_ts`), with the
//! specs of its swept features (and label), their distinct day spans, row filters (one
//! mask bit each) and summed values. What it refuses stays on the join path.

use polars::prelude::*;

use super::super::{cerr, compile_rows, CompileError};
use super::dated::{Dated, Node};
use super::{Measure, Span, MAX_MASKS};
use crate::features::def::{Agg, AggFn, Feature, FeatureSet, Label};
use crate::features::expr::{self, Ty};
use crate::features::rows::{is_contract_ts, RowScope};
use crate::source::TableSpec;

/// One swept output column.
pub(crate) struct Spec {
    /// The output column: the feature's name, or `_label_<name>`.
    pub name: String,
    pub measure: Measure,
    /// Index into [`Sweep::spans`].
    pub span: usize,
    /// Bit of the row masks (the filter's date-independent part, or all of it).
    pub mask: usize,
    /// Index into [`Sweep::filters`]: the date-dependent filter, tested per (row, D).
    pub filter: Option<usize>,
    /// The output type (the feature's), or Int64 for a label's count.
    pub ty: DataType,
    /// Index into [`Sweep::values`] (sums and means).
    pub value: Option<usize>,
    /// The feature's name (None: the label).
    pub feat: Option<String>,
}

/// A table's swept features over one timestamp column: their specs, distinct day spans
/// and filters.
pub(crate) struct Sweep {
    pub table: &'static TableSpec,
    pub specs: Vec<Spec>,
    pub spans: Vec<Span>,
    /// One boolean row expression per bit (nulls false).
    pub masks: Vec<Expr>,
    /// Their debug text, to share a bit between features with the same filter.
    mask_ids: Vec<String>,
    /// Float64 row expressions that sums and means read.
    pub values: Vec<Expr>,
    /// The date-dependent filters' trees, and their inputs.
    pub filters: Vec<Node>,
    pub dated: Dated,
    /// The timestamp column the spans measure (`days_ago` of the features).
    pub ts: String,
}

/// Whether a row expression reads the as-of date (`days_ago` or `days_ago(col)`), or
/// calls anything this module does not know to be date-independent. Recursion is
/// bounded by the parser's height limit (`expr::MAX_HEIGHT`).
pub(crate) fn reads_as_of(e: &expr::Expr) -> bool {
    use expr::Expr as E;
    match e {
        E::Name(n) => n == "days_ago",
        E::Int(_) | E::Float(_) | E::Str(_) | E::Bool(_) | E::Null => false,
        E::Neg(x) | E::Not(x) | E::IsNull(x, _) => reads_as_of(x),
        E::In(x, items, _) => reads_as_of(x) || items.iter().any(reads_as_of),
        E::Bin(_, a, b) => reads_as_of(a) || reads_as_of(b),
        E::Call(name, args) => {
            let known = ["max", "min", "abs", "coalesce", "if", "is_null"];
            !known.contains(&name.as_str()) || args.iter().any(reads_as_of)
        }
    }
}

fn is_days_ago(e: &Option<expr::Expr>) -> bool {
    matches!(e, Some(expr::Expr::Name(n)) if n == "days_ago")
}

/// The timestamp column a sweep of aggregation `a` reads: its own `ts` when it is a
/// timestamp of the contract (None otherwise: the join path).
pub(crate) fn sweep_ts(a: &Agg) -> Option<&str> {
    is_contract_ts(a.table, &a.ts).then_some(a.ts.as_str())
}

impl Sweep {
    pub fn new(table: &'static TableSpec, ts: &str) -> Sweep {
        Sweep {
            table,
            specs: Vec::new(),
            spans: Vec::new(),
            masks: Vec::new(),
            mask_ids: Vec::new(),
            values: Vec::new(),
            filters: Vec::new(),
            dated: Dated::default(),
            ts: ts.to_string(),
        }
    }

    /// The bit of `mask` (shared with an equal one), None when [`MAX_MASKS`] are taken.
    fn mask(&mut self, mask: Expr) -> Option<usize> {
        let id = format!("{mask:?}");
        if let Some(i) = self.mask_ids.iter().position(|m| *m == id) {
            return Some(i);
        }
        if self.masks.len() >= MAX_MASKS {
            return None;
        }
        self.masks.push(mask);
        self.mask_ids.push(id);
        Some(self.masks.len() - 1)
    }

    fn span(&mut self, s: Span) -> usize {
        match self.spans.iter().position(|x| *x == s) {
            Some(i) => i,
            None => {
                self.spans.push(s);
                self.spans.len() - 1
            }
        }
    }

    /// The filter (`filter`, plus `extra` when given) split into a mask bit and a
    /// date-dependent tree: a filter that does not read the date is all mask; one that
    /// does goes to the tree ([`Dated::node`]) with `extra` as the mask. None when the
    /// filter qualifies for neither, or the bits are taken.
    fn filter(
        &mut self,
        set: &FeatureSet,
        ts: &str,
        filter: &Option<expr::Expr>,
        extra: Option<Expr>,
    ) -> Result<Option<(usize, Option<usize>)>, CompileError> {
        let dated = match filter {
            Some(f) if reads_as_of(f) => {
                let Some(n) = self.dated.node(set, self.table, ts, f)? else {
                    return Ok(None);
                };
                Some(match self.filters.iter().position(|x| *x == n) {
                    Some(i) => i,
                    None => {
                        self.filters.push(n);
                        self.filters.len() - 1
                    }
                })
            }
            _ => None,
        };
        let scope =
            RowScope::compiling(self.table, ts, lit(0i32), set.extra_types(self.table.name));
        let mut m = match filter {
            Some(f) if dated.is_none() => compile_rows(set, f, &scope)?.fill_null(lit(false)),
            _ => lit(true),
        };
        if let Some(x) = extra {
            m = m.and(x);
        }
        Ok(self.mask(m.fill_null(lit(false))).map(|bit| (bit, dated)))
    }

    /// Adds feature `f` (aggregation `a`, over this sweep's timestamp) when the sweep
    /// computes it exactly; false otherwise (it stays on the join path).
    pub fn add_feature(
        &mut self,
        set: &FeatureSet,
        f: &Feature,
        a: &Agg,
    ) -> Result<bool, CompileError> {
        if a.per_day || a.exclude_first_day || a.ts != self.ts {
            return Ok(false);
        }
        let scope = RowScope::compiling(a.table, &a.ts, lit(0i32), set.extra_types(a.table.name));
        // The value's part of the condition, as `aggregates::Table::plain` adds it.
        let value_part = |v: &expr::Expr| -> Result<Option<(Ty, Expr)>, CompileError> {
            if reads_as_of(v) {
                return Ok(None);
            }
            expr::compile(v, &scope).map(Some).map_err(|m| cerr(set, m))
        };
        let mut value = None;
        let (measure, extra) = match (a.func, &a.column) {
            (AggFn::Count, None) => (Measure::Count, None),
            (AggFn::Count, Some(v)) => match value_part(v)? {
                Some((_, e)) => (Measure::Count, Some(e.is_not_null())),
                None => return Ok(false),
            },
            (AggFn::Any, None) => (Measure::Any, None),
            (AggFn::Any, Some(v)) => match value_part(v)? {
                Some((Ty::Bool, e)) => (Measure::Any, Some(e.fill_null(lit(false)))),
                _ => return Ok(false),
            },
            (AggFn::DistinctCount, c) if is_days_ago(c) => (Measure::DistinctDays, None),
            (AggFn::Min, c) if is_days_ago(c) => (Measure::SinceLast, None),
            (AggFn::Max, c) if is_days_ago(c) => (Measure::SinceFirst, None),
            // As `plain` builds them: a float sum's and a mean's exact sum (and a mean's
            // count) read the rows where the value is not null.
            (AggFn::Sum | AggFn::Mean, Some(v)) if a.func == AggFn::Mean || f.ty == Ty::Float => {
                match value_part(v)? {
                    Some((Ty::Int | Ty::Float, e)) => {
                        value = Some(e.clone().cast(DataType::Float64));
                        let m = if a.func == AggFn::Sum {
                            Measure::Sum
                        } else {
                            Measure::Mean
                        };
                        (m, Some(e.is_not_null()))
                    }
                    _ => return Ok(false),
                }
            }
            _ => return Ok(false),
        };
        let Some((mask, filter)) = self.filter(set, &a.ts, &a.filter, extra)? else {
            return Ok(false);
        };
        let span = self.span(match a.window {
            Some((w, off)) => Span::Back { off, w: Some(w) },
            None => Span::Back { off: 0, w: None },
        });
        let value = value.map(|v| {
            self.values.push(v);
            self.values.len() - 1
        });
        self.specs.push(Spec {
            name: f.name.clone(),
            measure,
            span,
            mask,
            filter,
            ty: f.ty.polars(),
            value,
            feat: Some(f.name.clone()),
        });
        Ok(true)
    }

    /// Adds the label (over the table's event time, which this sweep must read).
    pub fn add_label(&mut self, set: &FeatureSet, l: &Label) -> Result<bool, CompileError> {
        if l.table.ts != self.ts {
            return Ok(false);
        }
        let Some((mask, filter)) = self.filter(set, l.table.ts, &l.filter, None)? else {
            return Ok(false);
        };
        let span = self.span(Span::Ahead { h: l.horizon_days });
        self.specs.push(Spec {
            name: format!("_label_{}", l.name),
            measure: Measure::Count,
            span,
            mask,
            filter,
            ty: DataType::Int64,
            value: None,
            feat: None,
        });
        Ok(true)
    }
}
