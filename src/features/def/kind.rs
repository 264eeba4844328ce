//! The first pass over a set's features: names, and each feature's [`Kind`] read from
//! the fields of its `[[feature]]` entry (which of `agg`, `expr`, `quantile_of`, `cases`
//! it says, and the fields that go with it). Expressions are parsed here and typed later.

use std::collections::HashMap;

use super::{Agg, AggFn, CaseDef, Ctx, FeatureDef, Kind, SetFile, MAX_CASES};
use crate::features::expr::{self, Expr};
use crate::features::rows::is_contract_ts;
use crate::names::FeatureName;
use crate::source;

/// The kind of every feature of `set`, by position (None where it cannot be read; the
/// problem is reported), after checking names: valid, not reserved, not repeated.
pub(super) fn read_kinds(cx: &mut Ctx, set: &SetFile) -> Vec<Option<Kind>> {
    let mut kinds = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, f) in set.features.iter().enumerate() {
        let key = format!("feature[{i}] ({})", f.name);
        if let Err(e) = FeatureName::parse(f.name.as_str()) {
            cx.err(&key, e.to_string());
        }
        if f.name == "customer_id" || f.name == "as_of" {
            cx.err(&key, format!("{} is a reserved column name", f.name));
        }
        if let Some(j) = seen.insert(f.name.clone(), i) {
            cx.err(&key, format!("duplicate feature name (also feature[{j}])"));
        }
        let said = [
            f.agg.is_some(),
            f.expr.is_some(),
            f.quantile_of.is_some(),
            f.cases.is_some(),
        ];
        if said.iter().filter(|k| **k).count() != 1 {
            cx.err(
                &key,
                "say exactly one of agg (aggregation), expr (arithmetic over features), quantile_of (score) or cases (mapping table)",
            );
            kinds.push(None);
            continue;
        }
        kinds.push(feature_kind(cx, &key, f));
    }
    kinds
}

/// Parses an expression, reporting a syntax error under `key`.
fn parse_expr(cx: &mut Ctx, key: &str, src: &str) -> Option<Expr> {
    match expr::parse(src) {
        Ok(e) => Some(e),
        Err(e) => {
            // Quote the expression, cut (by characters) when long.
            let mut shown: String = src.chars().take(100).collect();
            if shown.len() < src.len() {
                shown.push('…');
            }
            cx.err(key, format!("{e} in {shown:?}"));
            None
        }
    }
}

/// Reads the kind of one feature from its fields, reporting fields that do not apply and
/// values out of range. Expressions are parsed but not typed; an aggregation's
/// `extra_columns` are left empty for the typed pass.
fn feature_kind(cx: &mut Ctx, key: &str, f: &FeatureDef) -> Option<Kind> {
    let agg_only = [
        ("table", f.table.is_some()),
        ("column", f.column.is_some()),
        ("where", f.filter.is_some()),
        ("ts", f.ts.is_some()),
        ("window_days", f.window_days.is_some()),
        ("offset_days", f.offset_days.is_some()),
        ("per_day", f.per_day.is_some()),
        ("exclude_first_day", f.exclude_first_day),
    ];
    let quant_only = [
        ("bins", f.bins.is_some()),
        ("better", f.better.is_some()),
        ("among", f.among.is_some()),
    ];
    if f.agg.is_none() {
        for (k, set) in agg_only {
            if set {
                cx.err(
                    format!("{key}.{k}"),
                    format!("{k} only applies to aggregations (agg = ...)"),
                );
            }
        }
    }
    if f.quantile_of.is_none() {
        for (k, set) in quant_only {
            if set {
                cx.err(
                    format!("{key}.{k}"),
                    format!("{k} only applies to quantile scores (quantile_of = ...)"),
                );
            }
        }
    }
    if f.cases.is_none() && f.otherwise.is_some() {
        cx.err(
            format!("{key}.else"),
            "else only applies to mapping tables (cases = ...)",
        );
    }
    if let Some(agg) = &f.agg {
        return agg_kind(cx, key, f, agg);
    }
    if let Some(e) = &f.expr {
        return Some(Kind::Derived(parse_expr(cx, &format!("{key}.expr"), e)?));
    }
    if let Some(of) = &f.quantile_of {
        return quantile_kind(cx, key, f, of);
    }
    if let Some(cases) = &f.cases {
        return cases_kind(cx, key, f, cases);
    }
    None
}

/// An aggregation (`agg = ...`): its function, table, event time, value, filter, window
/// and per-day rollup.
fn agg_kind(cx: &mut Ctx, key: &str, f: &FeatureDef, agg: &str) -> Option<Kind> {
    let Some(func) = AggFn::parse(agg) else {
        cx.err(
            format!("{key}.agg"),
            format!("unknown aggregation {agg:?} (count, sum, mean, min, max, distinct_count, first, last, any)"),
        );
        return None;
    };
    let Some(table_name) = &f.table else {
        cx.err(
            format!("{key}.table"),
            "an aggregation needs table = \"orders\" (or interactions, support_tickets, customers)",
        );
        return None;
    };
    let Some(table) = source::table_spec(table_name) else {
        let names: Vec<_> = source::CONTRACT.iter().map(|t| t.name).collect();
        cx.err(
            format!("{key}.table"),
            format!(
                "unknown table {table_name:?} (tables: {})",
                names.join(", ")
            ),
        );
        return None;
    };
    let ts = f.ts.clone().unwrap_or_else(|| table.ts.to_string());
    if !is_contract_ts(table, &ts) {
        cx.err(
            format!("{key}.ts"),
            format!("{ts} is not a timestamp column of {}", table.name),
        );
        return None;
    }
    let column = match &f.column {
        Some(c) => Some(parse_expr(cx, &format!("{key}.column"), c)?),
        None => None,
    };
    let filter = match &f.filter {
        Some(w) => Some(parse_expr(cx, &format!("{key}.where"), w)?),
        None => None,
    };
    if table.name == "customers" {
        if func != AggFn::First && func != AggFn::Last {
            cx.err(
                format!("{key}.agg"),
                "customers has one row per customer: use agg = \"first\" to read a value of it",
            );
            return None;
        }
        if filter.is_some() || f.window_days.is_some() || f.per_day.is_some() {
            cx.err(
                key,
                "where, window_days and per_day do not apply to the customers table",
            );
            return None;
        }
        let Some(column) = column else {
            cx.err(
                format!("{key}.column"),
                "say which column of customers to read",
            );
            return None;
        };
        return Some(Kind::Entity { column, ts });
    }
    let window = agg_window(cx, key, f)?;
    let per_day = match f.per_day.as_deref() {
        None => false,
        Some("sum") => true,
        Some(other) => {
            cx.err(
                format!("{key}.per_day"),
                format!("unknown per_day rollup {other:?} (sum)"),
            );
            return None;
        }
    };
    if f.exclude_first_day && !per_day {
        cx.err(
            format!("{key}.exclude_first_day"),
            "exclude_first_day needs per_day = \"sum\"",
        );
        return None;
    }
    Some(Kind::Agg(Agg {
        table,
        func,
        column,
        filter,
        ts,
        window,
        per_day,
        exclude_first_day: f.exclude_first_day,
        extra_columns: Vec::new(),
    }))
}

/// An aggregation's window: `(window_days, offset_days)`, or None for all history.
/// The outer None means a problem (reported).
fn agg_window(cx: &mut Ctx, key: &str, f: &FeatureDef) -> Option<Option<(u32, u32)>> {
    let window = match (f.window_days, f.offset_days) {
        (Some(0), _) => {
            cx.err(
                format!("{key}.window_days"),
                "a window must be at least 1 day",
            );
            return None;
        }
        (Some(w), o) => Some((w, o.unwrap_or(0))),
        (None, Some(_)) => {
            cx.err(
                format!("{key}.offset_days"),
                "offset_days needs window_days",
            );
            return None;
        }
        (None, None) => None,
    };
    if let Some((w, o)) = window {
        if w as u64 + o as u64 > 36_500 {
            cx.err(
                format!("{key}.window_days"),
                "window reaches back more than 100 years",
            );
            return None;
        }
    }
    Some(window)
}

/// A quantile score (`quantile_of = ...`): bins, direction and the rows ranked.
fn quantile_kind(cx: &mut Ctx, key: &str, f: &FeatureDef, of: &str) -> Option<Kind> {
    let bins = f.bins.unwrap_or(5);
    if !(2..=100).contains(&bins) {
        cx.err(format!("{key}.bins"), "bins must be between 2 and 100");
        return None;
    }
    let higher_is_better = match f.better.as_deref() {
        None | Some("higher") => true,
        Some("lower") => false,
        Some(other) => {
            cx.err(
                format!("{key}.better"),
                format!("{other:?}: say \"higher\" or \"lower\""),
            );
            return None;
        }
    };
    let among = match &f.among {
        Some(a) => Some(parse_expr(cx, &format!("{key}.among"), a)?),
        None => None,
    };
    Some(Kind::Quantile {
        of: of.to_string(),
        bins,
        higher_is_better,
        among,
    })
}

/// A mapping table (`cases = ...`): at least one case, at most [`MAX_CASES`].
fn cases_kind(cx: &mut Ctx, key: &str, f: &FeatureDef, cases: &[CaseDef]) -> Option<Kind> {
    if cases.is_empty() {
        cx.err(
            format!("{key}.cases"),
            "a mapping table needs at least one case",
        );
        return None;
    }
    if cases.len() > MAX_CASES {
        // The cases compile to nested conditionals: bounded, like expressions.
        cx.err(
            format!("{key}.cases"),
            format!("{} cases; at most {MAX_CASES}", cases.len()),
        );
        return None;
    }
    let mut out = Vec::new();
    for (j, c) in cases.iter().enumerate() {
        out.push((
            parse_expr(cx, &format!("{key}.cases[{j}].when"), &c.when)?,
            c.then.clone(),
        ));
    }
    Some(Kind::Case {
        cases: out,
        otherwise: f.otherwise.clone(),
    })
}
