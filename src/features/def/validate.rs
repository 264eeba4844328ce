//! Validation of a parsed set: the set's own fields, declared extra columns, each
//! feature's kind (see `kind`), the dependency order (see `deps`), then the typed pass
//! that type-checks every expression in dependency order, and the labels. Pure: reads no
//! data. Every problem is collected, not only the first.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use sha2::{Digest, Sha256};

use super::{
    deps, kind, Agg, AggFn, Ctx, DefErrors, Feature, FeatureSet, Kind, Label, SetFile, MAX_FEATURES,
};
use crate::features::expr::{self, Scope, Ty};
use crate::features::rows::RowScope;
use crate::names::{FeatureName, SetName};
use crate::source;

/// Declared extra columns: table -> column -> type.
type Extra = BTreeMap<String, BTreeMap<String, Ty>>;

/// Validates a parsed set: names, kinds, tables, columns, windows, dependencies (no
/// cycles), and types. Pure: reads no data.
pub fn validate(set: SetFile, path: &Path) -> Result<FeatureSet, DefErrors> {
    let mut cx = Ctx {
        file: path.display().to_string(),
        errors: Vec::new(),
    };
    check_sizes(&mut cx, &set)?;
    let name = check_header(&mut cx, &set, path);
    let extra = declared_columns(&mut cx, &set);
    let kinds = kind::read_kinds(&mut cx, &set);
    // Types in dependency order (also catches cycles and unknown names).
    let deps = deps::feature_deps(&set, &kinds);
    let order = deps::topo_order(&mut cx, &set, &deps);
    deps::check_chains(&mut cx, &set, &order, &deps)?;
    let features = typed_features(&mut cx, &set, kinds, &deps, order, &extra);
    let labels = labels(&mut cx, &set, &extra);
    let Some(name) = name.filter(|_| cx.errors.is_empty()) else {
        return Err(DefErrors(cx.errors));
    };
    let canonical = serde_json::to_vec(&set).unwrap_or_default();
    let hash = format!("sha256:{}", hex::encode(Sha256::digest(&canonical)));
    let extra_columns = extra
        .iter()
        .map(|(t, cols)| (t.clone(), cols.keys().cloned().collect()))
        .collect();
    let extra_types = extra;
    Ok(FeatureSet {
        name,
        version: set.version,
        description: set.description.clone(),
        owner: set.owner.clone(),
        path: path.to_path_buf(),
        hash,
        features,
        labels,
        extra_columns,
        extra_types,
        definition: set,
    })
}

/// Dependency order and compilation walk the features recursively: bounded.
fn check_sizes(cx: &mut Ctx, set: &SetFile) -> Result<(), DefErrors> {
    for (what, n, max) in [
        ("feature", set.features.len(), MAX_FEATURES),
        ("label", set.labels.len(), MAX_FEATURES),
    ] {
        if n > max {
            cx.err(
                what,
                format!("{n} [[{what}]] entries; a set holds at most {max} (split it into several sets)"),
            );
            return Err(DefErrors(std::mem::take(&mut cx.errors)));
        }
    }
    Ok(())
}

/// The set's name (and file name), version and entity; the name, when it is valid.
fn check_header(cx: &mut Ctx, set: &SetFile, path: &Path) -> Option<SetName> {
    let name = SetName::parse(set.name.as_str())
        .map_err(|e| cx.err("name", e.to_string()))
        .ok();
    if let Some(stem) = path.file_stem().and_then(|s| s.to_str()) {
        if stem != set.name && path.extension().is_some_and(|e| e == "toml") {
            cx.err(
                "name",
                format!("the set is named {:?} but its file is {stem}.toml; name the file after the set", set.name),
            );
        }
    }
    if set.version == 0 {
        cx.err("version", "versions start at 1");
    }
    if set.entity != "customer_id" {
        cx.err(
            "entity",
            format!(
                "unknown entity {:?}: only customer_id is supported",
                set.entity
            ),
        );
    }
    name
}

/// The type a declared extra column is written with (`[columns.orders] discount = "float"`).
fn declared_ty(t: &str) -> Option<Ty> {
    Some(match t {
        "float" | "Float64" => Ty::Float,
        "int" | "Int64" => Ty::Int,
        "string" | "Utf8" => Ty::Str,
        "bool" | "Boolean" => Ty::Bool,
        _ => return None,
    })
}

/// Declared extra columns, by table, with their types.
fn declared_columns(cx: &mut Ctx, set: &SetFile) -> Extra {
    let mut extra: Extra = BTreeMap::new();
    for (table, cols) in &set.columns {
        if source::table_spec(table).is_none() {
            cx.err(format!("columns.{table}"), format!("unknown table {table}"));
            continue;
        }
        for (c, t) in cols {
            let Some(ty) = declared_ty(t) else {
                cx.err(
                    format!("columns.{table}.{c}"),
                    format!("unknown type {t:?} (float, int, string, bool)"),
                );
                continue;
            };
            extra
                .entry(table.clone())
                .or_default()
                .insert(c.clone(), ty);
        }
    }
    extra
}

/// Names in feature expressions: other features of the set.
struct FeatureScope<'a> {
    types: &'a HashMap<String, Ty>,
}

impl Scope for FeatureScope<'_> {
    fn resolve(&self, name: &str) -> Result<(Ty, polars::prelude::Expr), String> {
        self.types
            .get(name)
            .map(|t| (*t, polars::prelude::col(name)))
            .ok_or_else(|| format!("unknown feature {name}"))
    }
}

/// The typed pass: in dependency order, each feature whose kind was read and whose
/// dependencies are typed gets its type (or its problems are reported).
fn typed_features(
    cx: &mut Ctx,
    set: &SetFile,
    kinds: Vec<Option<Kind>>,
    deps: &HashMap<String, Vec<String>>,
    order: Vec<String>,
    extra: &Extra,
) -> Vec<Feature> {
    let mut types: HashMap<String, Ty> = HashMap::new();
    let mut features: Vec<Feature> = Vec::new();
    let mut by_name: HashMap<&str, usize> = HashMap::new();
    for (i, f) in set.features.iter().enumerate() {
        by_name.insert(f.name.as_str(), i);
    }
    let mut kinds = kinds;
    for name in order {
        let Some(&idx) = by_name.get(name.as_str()) else {
            continue;
        };
        let f = &set.features[idx];
        let key = format!("feature[{idx}] ({})", f.name);
        let Some(mut kind) = kinds.get_mut(idx).and_then(Option::take) else {
            continue;
        };
        let d = deps.get(&f.name).cloned().unwrap_or_default();
        if let Some(missing) = d.iter().find(|n| !types.contains_key(*n)) {
            if set.features.iter().any(|g| &g.name == missing) {
                // A dependency that failed validation: already reported.
            } else {
                cx.err(&key, format!("unknown feature {missing}"));
            }
            continue;
        }
        let Some(ty) = kind_ty(cx, &key, &mut kind, &types, extra) else {
            continue;
        };
        types.insert(f.name.clone(), ty);
        features.push(Feature {
            name: f.name.clone(),
            description: f.description.clone(),
            hidden: f.hidden,
            ty,
            kind,
            deps: d,
        });
    }
    features
}

/// The type of a feature of this kind, its expressions checked against the row scope or
/// the features typed so far; completes an aggregation's `extra_columns`. None after
/// reporting a problem.
fn kind_ty(
    cx: &mut Ctx,
    key: &str,
    kind: &mut Kind,
    types: &HashMap<String, Ty>,
    extra: &Extra,
) -> Option<Ty> {
    let empty = BTreeMap::new();
    let scope = FeatureScope { types };
    match kind {
        Kind::Agg(a) => {
            let extra = extra.get(a.table.name).unwrap_or(&empty);
            agg_ty(cx, key, a, extra)
        }
        Kind::Entity { column, ts } => {
            let extra = extra.get("customers").unwrap_or(&empty);
            entity_ty(cx, key, column, ts, extra)
        }
        Kind::Derived(e) => match expr::compile(e, &scope) {
            Ok((t, _)) => Some(if t == Ty::Null { Ty::Float } else { t }),
            Err(err) => {
                cx.err(format!("{key}.expr"), err);
                None
            }
        },
        Kind::Quantile { of, among, .. } => {
            let of_t = types.get(of.as_str()).copied();
            if !of_t.is_some_and(|t| matches!(t, Ty::Int | Ty::Float)) {
                cx.err(
                    format!("{key}.quantile_of"),
                    format!(
                        "{of} must be numeric to be scored, but is {}",
                        of_t.unwrap_or(Ty::Null)
                    ),
                );
                return None;
            }
            if let Some(a) = among {
                if !is_condition(cx, &format!("{key}.among"), a, &scope, false) {
                    return None;
                }
            }
            Some(Ty::Int)
        }
        Kind::Case { cases, .. } => {
            let mut ok = true;
            for (j, (w, _)) in cases.iter().enumerate() {
                ok &= is_condition(cx, &format!("{key}.cases[{j}].when"), w, &scope, false);
            }
            ok.then_some(Ty::Str)
        }
    }
}

/// Whether `e` compiles to a condition in `scope` (or to a bare `null` when `null_ok`);
/// reports the problem under `key` when not.
fn is_condition(cx: &mut Ctx, key: &str, e: &expr::Expr, scope: &dyn Scope, null_ok: bool) -> bool {
    match expr::compile(e, scope) {
        Ok((Ty::Bool, _)) => true,
        Ok((Ty::Null, _)) if null_ok => true,
        Ok((t, _)) => {
            cx.err(key, format!("must be a condition, but is {t}"));
            false
        }
        Err(e) => {
            cx.err(key, e);
            false
        }
    }
}

/// The type of an aggregation: its filter must be a condition, its value a non-timestamp
/// the function accepts. Records the extra columns it reads.
fn agg_ty(cx: &mut Ctx, key: &str, a: &mut Agg, extra: &BTreeMap<String, Ty>) -> Option<Ty> {
    let rs = RowScope::validating(a.table, &a.ts, extra);
    let mut ok = true;
    if let Some(w) = &a.filter {
        ok &= is_condition(cx, &format!("{key}.where"), w, &rs, true);
    }
    let col_t = match &a.column {
        Some(c) => match expr::compile(c, &rs) {
            Ok((t, _)) => Some(t),
            Err(e) => {
                cx.err(format!("{key}.column"), e);
                ok = false;
                None
            }
        },
        None => None,
    };
    if !ok {
        return None;
    }
    if col_t == Some(Ty::Time) {
        cx.err(
            format!("{key}.column"),
            "a timestamp cannot be a feature value: use days_ago or days_ago(column)",
        );
        return None;
    }
    let func = a.func;
    let ty = match (func, col_t) {
        (AggFn::Count | AggFn::DistinctCount, _) => Ty::Int,
        (AggFn::Any, None | Some(Ty::Bool)) => Ty::Bool,
        (AggFn::Any, Some(t)) => {
            cx.err(
                format!("{key}.column"),
                format!("agg any needs a boolean column, got {t}"),
            );
            return None;
        }
        (AggFn::Mean, Some(t)) if t.is_numeric() => Ty::Float,
        (AggFn::Sum, Some(t)) if t.is_numeric() => t,
        (AggFn::Sum | AggFn::Mean, Some(t)) => {
            cx.err(
                format!("{key}.column"),
                format!("agg {func:?} needs a number, got {t}").to_lowercase(),
            );
            return None;
        }
        (_, Some(t)) => t,
        (_, None) => {
            cx.err(
                format!("{key}.column"),
                format!("agg {:?} needs a column", func).to_lowercase(),
            );
            return None;
        }
    };
    if a.per_day && !matches!(col_t, Some(Ty::Int | Ty::Float)) {
        cx.err(
            format!("{key}.per_day"),
            "per_day sums a numeric column per day: set column",
        );
        return None;
    }
    a.extra_columns = rs.used_extra();
    Some(ty)
}

/// The type of a value of the customer's own row.
fn entity_ty(
    cx: &mut Ctx,
    key: &str,
    column: &expr::Expr,
    ts: &str,
    extra: &BTreeMap<String, Ty>,
) -> Option<Ty> {
    let Some(table) = source::table_spec("customers") else {
        cx.err(key, "the contract has no customers table");
        return None;
    };
    let rs = RowScope::validating(table, ts, extra);
    match expr::compile(column, &rs) {
        Ok((Ty::Time, _)) => {
            cx.err(
                format!("{key}.column"),
                "a timestamp cannot be a feature value: use days_ago or days_ago(column)",
            );
            None
        }
        Ok((t, _)) => Some(t),
        Err(e) => {
            cx.err(format!("{key}.column"), e);
            None
        }
    }
}

/// The labels: names, table, horizon, kind and filter.
fn labels(cx: &mut Ctx, set: &SetFile, extra: &Extra) -> Vec<Label> {
    let empty = BTreeMap::new();
    let mut labels = Vec::new();
    for (i, l) in set.labels.iter().enumerate() {
        let key = format!("label[{i}] ({})", l.name);
        if let Err(e) = FeatureName::parse(l.name.as_str()) {
            cx.err(&key, e.with_kind("label name").to_string());
        }
        if set.features.iter().any(|f| f.name == l.name) {
            cx.err(&key, "a label may not share a feature's name");
        }
        let Some(table) = source::table_spec(&l.table) else {
            cx.err(format!("{key}.table"), format!("unknown table {}", l.table));
            continue;
        };
        if l.table == "customers" {
            cx.err(
                format!("{key}.table"),
                "labels count events: use orders, interactions or support_tickets",
            );
            continue;
        }
        if l.horizon_days == 0 {
            cx.err(format!("{key}.horizon_days"), "must be at least 1");
        }
        let no_event = match l.kind.as_str() {
            "no_event" => true,
            "any_event" => false,
            other => {
                cx.err(
                    format!("{key}.kind"),
                    format!("unknown kind {other:?} (no_event, any_event)"),
                );
                continue;
            }
        };
        let filter = match &l.filter {
            Some(w) => match expr::parse(w) {
                Ok(e) => {
                    let rs = RowScope::validating(
                        table,
                        table.ts,
                        extra.get(table.name).unwrap_or(&empty),
                    );
                    if let Err(err) = expr::compile(&e, &rs) {
                        cx.err(format!("{key}.where"), err);
                        continue;
                    }
                    Some(e)
                }
                Err(e) => {
                    cx.err(format!("{key}.where"), e.to_string());
                    continue;
                }
            },
            None => None,
        };
        labels.push(Label {
            name: l.name.clone(),
            description: l.description.clone(),
            table,
            filter,
            horizon_days: l.horizon_days,
            no_event,
        });
    }
    labels
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::features::def::parse;

    #[test]
    fn declared_types_have_two_spellings_each() {
        for (written, ty) in [
            ("float", Ty::Float),
            ("Float64", Ty::Float),
            ("int", Ty::Int),
            ("Int64", Ty::Int),
            ("string", Ty::Str),
            ("Utf8", Ty::Str),
            ("bool", Ty::Bool),
            ("Boolean", Ty::Bool),
        ] {
            assert_eq!(declared_ty(written), Some(ty), "{written}");
        }
        assert_eq!(declared_ty("timestamp"), None);
        assert_eq!(declared_ty("Float"), None);
    }

    #[test]
    fn the_typed_pass_completes_the_kind_read_from_the_file() {
        let text = r#"
name = "s"
version = 1
[columns.orders]
discount = "float"
[[feature]]
name = "discounted"
agg = "sum"
table = "orders"
column = "discount * 2"
where = "discount > 0 and days_ago < 30"
[[feature]]
name = "twice"
expr = "discounted * 2"
"#;
        let set = parse(text, Path::new("s.toml")).expect("valid set");
        let f = set.feature("discounted").expect("feature");
        assert_eq!(f.ty, Ty::Float);
        let Kind::Agg(a) = &f.kind else {
            panic!("an aggregation: {:?}", f.kind)
        };
        // Resolved once in `where` and once in `column`: recorded as used.
        assert_eq!(a.extra_columns, ["discount", "discount"]);
        assert_eq!(a.ts, a.table.ts);
        let twice = set.feature("twice").expect("feature");
        assert_eq!(twice.ty, Ty::Float);
        assert_eq!(twice.deps, ["discounted"]);
        assert_eq!(set.extra_columns["orders"], ["discount"]);
        assert_eq!(set.definition.features.len(), 2);
    }

    #[test]
    fn reports_every_problem_of_the_typed_pass() {
        let text = r#"
name = "s"
version = 1
[[feature]]
name = "n"
agg = "sum"
table = "orders"
column = "order_id"
where = "days_ago"
[[feature]]
name = "q"
quantile_of = "n"
among = "1"
[[feature]]
name = "m"
cases = [{ when = "1", then = "a" }, { when = "'x'", then = "b" }]
[[feature]]
name = "u"
expr = "nope + 1"
"#;
        let err = parse(text, Path::new("s.toml")).unwrap_err();
        let got: Vec<String> = err
            .0
            .iter()
            .map(|e| format!("{}: {}", e.key, e.reason))
            .collect();
        assert_eq!(
            got,
            [
                "feature[0] (n).where: must be a condition, but is integer",
                "feature[2] (m).cases[0].when: must be a condition, but is integer",
                "feature[2] (m).cases[1].when: must be a condition, but is string",
                "feature[3] (u): unknown feature nope",
            ],
            "{err}"
        );
    }
}
