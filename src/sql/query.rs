//! The query itself: a chain of common table expressions, one step of the polars plan each.
//!
//! - `keys`: the (customer_id, as_of) pairs computed (customers x as-of dates where signed
//!   up, or the spine's distinct pairs of signed-up customers);
//! - `base`: the keys with the entity features (values of the customer's own row);
//! - `agg_<table>`: one group-by per event table over its rows joined to the keys on the
//!   customer AND the range of days its features (and labels) read;
//! - `pd<i>` / `pda<i>`: per-day rollups (rows summed per day, then the days aggregated);
//! - `f0`: the keys with every aggregate joined (counts and sums 0, flags false, when a
//!   customer has no rows), then `f1`, `f2`, ...: derived features level by level (a level
//!   reads only earlier ones), quantile scores as window functions over each date;
//! - the final SELECT: `customer_id`, `as_of` and the visible features, cast to the
//!   polars engine's types, ordered by as_of and customer_id.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::expr::{cast, float_lit, print, sql_type, SqlScope};
use super::{check, Dialect, SqlError, Target, MAX_DATES};
use crate::features::compile::closure;
use crate::features::def::{Agg, AggFn, Feature, FeatureSet, Kind, Label};
use crate::features::expr::{Expr, Ty};
use crate::features::rows::{column_ty, is_contract_ts};
use crate::source::{ColType, TableSpec};

/// Compiles `set` to one SQL query in `dialect` for `target`: `customer_id`, `as_of`, the
/// set's visible columns (polars names and types) and the labels asked for.
///
/// Errors: whatever [`check`] reports (the first problem, the others counted), an empty or
/// too long list of dates, a spine table name that is not `name`, `schema.name` or
/// `catalog.schema.name` (letters, digits, `_`), an unknown label.
pub fn compile(set: &FeatureSet, dialect: Dialect, target: &Target) -> Result<String, SqlError> {
    let err = |m: String| SqlError {
        set: set.name.to_string(),
        feature: None,
        dialect,
        message: m,
    };
    if let Err(mut errs) = check(set, dialect) {
        let n = errs.len();
        let mut first = errs.remove(0);
        if n > 1 {
            first
                .message
                .push_str(&format!(" (and {} more problem(s))", n - 1));
        }
        return Err(first);
    }
    let mut q = Query {
        set,
        d: dialect,
        ctes: Vec::new(),
    };
    let mut header = vec![
        format!(
            "c360 {} -- feature set {} v{} ({})",
            env!("CARGO_PKG_VERSION"),
            set.name,
            set.version,
            set.hash
        ),
        format!("SQL dialect: {dialect}"),
    ];
    let upper: Vec<&str> = set
        .outputs()
        .into_iter()
        .map(|f| f.name.as_str())
        .filter(|n| n.chars().any(|c| c.is_ascii_uppercase()))
        .collect();
    if dialect == Dialect::Athena && !upper.is_empty() {
        header.push(format!(
            "Athena returns column names in lower case: {} come back as {}",
            upper.join(", "),
            upper
                .iter()
                .map(|n| n.to_lowercase())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let reads: Vec<&str> = set.tables().into_iter().collect();
    let last = match target {
        Target::Snapshot(dates) => {
            let dates: BTreeSet<_> = dates.iter().copied().collect();
            if dates.is_empty() || dates.len() > MAX_DATES {
                return Err(err(format!(
                    "a snapshot needs 1 to {MAX_DATES} as-of dates, got {}",
                    dates.len()
                )));
            }
            let shown: Vec<String> = dates.iter().take(12).map(|d| d.to_string()).collect();
            header.push(format!(
                "snapshot as of {}{}",
                shown.join(", "),
                if dates.len() > 12 { ", ..." } else { "" }
            ));
            let list: Vec<String> = dates
                .iter()
                .map(|d| format!("SELECT {} AS as_of", dialect.date(*d)))
                .collect();
            q.cte("as_of_dates", list.join("\nUNION ALL\n"));
            q.cte(
                "keys",
                "SELECT c.customer_id, d.as_of\nFROM customers AS c\nJOIN as_of_dates AS d ON CAST(c.signup_ts AS DATE) <= d.as_of".into(),
            );
            let feats: Vec<&Feature> = set.features.iter().collect();
            q.pipeline("", "keys", &feats, &[], None)?
        }
        Target::Spine { table, labels } => {
            let spine = spine_name(dialect, table).map_err(err)?;
            let mut ls = Vec::new();
            for l in labels {
                let Some(found) = set.label(l) else {
                    let names: Vec<&str> = set.labels.iter().map(|l| l.name.as_str()).collect();
                    return Err(err(format!(
                        "unknown label {l:?} (labels of {}: {})",
                        set.name,
                        if names.is_empty() {
                            "none".into()
                        } else {
                            names.join(", ")
                        }
                    )));
                };
                if !ls.iter().any(|x: &&Label| x.name == found.name) {
                    ls.push(found);
                }
            }
            header.push(format!(
                "training set over the spine table {table} (customer_id, as_of){}",
                if ls.is_empty() {
                    String::new()
                } else {
                    let n: Vec<&str> = ls.iter().map(|l| l.name.as_str()).collect();
                    format!(", labels {}", n.join(", "))
                }
            ));
            if !ls.is_empty() {
                header.push(
                    "a label needs data up to as_of + its horizon: this query does not check it (check the source's last event first)"
                        .into(),
                );
            }
            let id = format!("CAST(s.customer_id AS {})", dialect.string_type());
            q.cte(
                "keys",
                format!(
                    "SELECT DISTINCT {id} AS customer_id, CAST(s.as_of AS DATE) AS as_of\nFROM {spine} AS s\nJOIN customers AS c ON c.customer_id = {id}\n  AND CAST(c.signup_ts AS DATE) <= CAST(s.as_of AS DATE)"
                ),
            );
            let quantiles: BTreeSet<String> = set
                .features
                .iter()
                .filter(|f| matches!(f.kind, Kind::Quantile { .. }))
                .map(|f| f.name.clone())
                .collect();
            let pop = if quantiles.is_empty() {
                None
            } else {
                // Scores rank the whole population at a date: a snapshot of what they read
                // at the spine's distinct dates.
                q.cte(
                    "pop_keys",
                    "SELECT c.customer_id, d.as_of\nFROM customers AS c\nJOIN (SELECT DISTINCT as_of FROM keys) AS d ON CAST(c.signup_ts AS DATE) <= d.as_of".into(),
                );
                let need = closure(set, &quantiles);
                let feats: Vec<&Feature> = set
                    .features
                    .iter()
                    .filter(|f| need.contains(&f.name))
                    .collect();
                let last = q.pipeline("pop_", "pop_keys", &feats, &[], None)?;
                Some((last, quantiles))
            };
            let feats: Vec<&Feature> = set.features.iter().collect();
            let last = q.pipeline("", "keys", &feats, &ls, pop.as_ref())?;
            let mut cols = vec!["f.customer_id".to_string(), "f.as_of".to_string()];
            cols.extend(q.outputs("f.", &ls));
            let body = format!(
                "SELECT\n  {}\nFROM {spine} AS s\nJOIN {last} AS f ON f.customer_id = {id}\n  AND f.as_of = CAST(s.as_of AS DATE)\nORDER BY f.as_of, f.customer_id",
                cols.join(",\n  ")
            );
            header.push(format!("reads {}", reads.join(", ")));
            return Ok(q.finish(&header, &body));
        }
    };
    header.push(format!("reads {}", reads.join(", ")));
    let mut cols = vec!["customer_id".to_string(), "as_of".to_string()];
    cols.extend(q.outputs("", &[]));
    let body = format!(
        "SELECT\n  {}\nFROM {last}\nORDER BY as_of, customer_id",
        cols.join(",\n  ")
    );
    Ok(q.finish(&header, &body))
}

/// A spine table name, each part checked and quoted.
fn spine_name(d: Dialect, table: &str) -> Result<String, String> {
    let parts: Vec<&str> = table.split('.').collect();
    let ok = |p: &str| {
        let mut c = p.chars();
        c.next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    if parts.len() > 3 || !parts.iter().all(|p| ok(p)) {
        return Err(format!(
            "--spine {table:?}: name a table as name, schema.name or catalog.schema.name (letters, digits, _)"
        ));
    }
    Ok(parts
        .iter()
        .map(|p| d.ident(p))
        .collect::<Vec<_>>()
        .join("."))
}

/// A table's aggregations (position, feature, aggregation) and labels.
pub(super) type TableReads<'a> = (Vec<(usize, &'a Feature, &'a Agg)>, Vec<&'a Label>);

pub(super) struct Query<'a> {
    pub(super) set: &'a FeatureSet,
    pub(super) d: Dialect,
    pub(super) ctes: Vec<(String, String)>,
}

/// The alias of event rows that carry the age in days of each of their timestamp
/// columns at `k.as_of`, as the column [`age_column`] (computed once a row, not once a
/// feature).
pub(super) const AGED: &str = "r1";

/// The column holding the age in days of the timestamp column `ts` (rows of [`AGED`]).
pub(super) fn age_column(ts: &str) -> String {
    format!("_age_{ts}")
}

/// Names in a row of a table (alias `alias`) at the date `as_of` (an SQL DATE).
pub(super) struct Rows<'a> {
    d: Dialect,
    /// Whether the rows carry their ages (`_age_<ts>`, see [`AGED`]).
    aged: bool,
    set: &'a FeatureSet,
    table: &'static TableSpec,
    ts: &'a str,
    alias: &'a str,
    as_of: &'a str,
}

impl Rows<'_> {
    pub(super) fn age(&self, ts: &str) -> String {
        if self.aged {
            return format!("{}.{}", self.alias, self.d.ident(&age_column(ts)));
        }
        self.d.days_between(
            &format!("CAST({}.{} AS DATE)", self.alias, self.d.ident(ts)),
            self.as_of,
        )
    }
}

impl SqlScope for Rows<'_> {
    fn resolve(&self, name: &str) -> Result<(Ty, String), String> {
        if name == "days_ago" {
            return Ok((Ty::Int, self.age(self.ts)));
        }
        let col = format!("{}.{}", self.alias, self.d.ident(name));
        if let Some(c) = self.table.column(name) {
            return Ok(match c.ty {
                // Timestamps are days (as in the polars engine): compared as dates.
                ColType::Timestamp => (Ty::Time, format!("CAST({col} AS DATE)")),
                t => (column_ty(t), col),
            });
        }
        let ty = match self
            .set
            .extra_types(self.table.name)
            .and_then(|c| c.get(name))
        {
            Some(t) => *t,
            None => {
                return Err(format!(
                    "unknown column {name} in table {}",
                    self.table.name
                ))
            }
        };
        Ok((ty, col))
    }

    fn days_ago(&self, column: &str) -> Result<String, String> {
        if !is_contract_ts(self.table, column) {
            return Err(format!(
                "days_ago({column}): no timestamp column {column} in table {}",
                self.table.name
            ));
        }
        Ok(self.age(column))
    }
}

/// Names in a row of features: earlier features of the set, by their column names.
struct Features<'a> {
    d: Dialect,
    set: &'a FeatureSet,
}

impl SqlScope for Features<'_> {
    fn resolve(&self, name: &str) -> Result<(Ty, String), String> {
        let f = self
            .set
            .feature(name)
            .ok_or_else(|| format!("unknown feature {name}"))?;
        Ok((f.ty, self.d.ident(name)))
    }
}

impl Query<'_> {
    pub(super) fn cte(&mut self, name: &str, body: String) {
        self.ctes.push((name.to_string(), body));
    }

    pub(super) fn ferr(&self, f: &str, m: String) -> SqlError {
        SqlError {
            set: self.set.name.to_string(),
            feature: Some(f.to_string()),
            dialect: self.d,
            message: m,
        }
    }

    fn finish(&self, header: &[String], body: &str) -> String {
        let mut out = String::new();
        for h in header {
            out.push_str("-- ");
            out.push_str(h);
            out.push('\n');
        }
        out.push_str("WITH\n");
        for (i, (name, b)) in self.ctes.iter().enumerate() {
            out.push_str(&format!("  {name} AS (\n"));
            for line in b.lines() {
                out.push_str("    ");
                out.push_str(line);
                out.push('\n');
            }
            out.push_str(if i + 1 < self.ctes.len() {
                "  ),\n"
            } else {
                "  )\n"
            });
        }
        out.push_str(body);
        out.push('\n');
        out
    }

    /// The output columns, read from the alias prefix `p` (`f.` or empty).
    fn outputs(&self, p: &str, labels: &[&Label]) -> Vec<String> {
        let d = self.d;
        let mut cols = Vec::new();
        for f in self.set.outputs() {
            let n = d.ident(&f.name);
            cols.push(format!("CAST({p}{n} AS {}) AS {n}", sql_type(d, f.ty)));
        }
        for l in labels {
            let n = d.ident(&format!("_label_{}", l.name));
            let test = if l.no_event { "= 0" } else { "> 0" };
            cols.push(format!(
                "CAST(CASE WHEN coalesce({p}{n}, 0) {test} THEN 1 ELSE 0 END AS BIGINT) AS {}",
                d.ident(&l.name)
            ));
        }
        cols
    }

    /// The condition under which a row of `alias` counts for `a` at `k.as_of`.
    pub(super) fn agg_cond(&self, f: &Feature, a: &Agg, alias: &str) -> Result<String, SqlError> {
        let rows = self.rows(a.table, &a.ts, alias);
        let age = rows.age(&a.ts);
        let mut c = match a.window {
            Some((w, off)) => format!("{age} BETWEEN {off} AND {}", off as u64 + w as u64 - 1),
            None => format!("{age} >= 0"),
        };
        if let Some(w) = &a.filter {
            let (_, e) = print(self.d, w, &rows).map_err(|m| self.ferr(&f.name, m))?;
            c = format!("{c} AND {e}");
        }
        Ok(format!("coalesce({c}, FALSE)"))
    }

    pub(super) fn rows<'r>(
        &'r self,
        table: &'static TableSpec,
        ts: &'r str,
        alias: &'r str,
    ) -> Rows<'r> {
        Rows {
            d: self.d,
            aged: alias == AGED,
            set: self.set,
            table,
            ts,
            alias,
            as_of: "k.as_of",
        }
    }

    /// The join condition of a table's rows to the keys: the customer, and for each
    /// timestamp column read, the hull of the day ranges read (days_ago in [lo, hi]).
    pub(super) fn range(
        &self,
        table: &'static TableSpec,
        reads: &[(String, i64, Option<i64>)],
    ) -> String {
        let mut hull: BTreeMap<&str, (i64, Option<i64>)> = BTreeMap::new();
        for (ts, lo, hi) in reads {
            let e = hull.entry(ts.as_str()).or_insert((*lo, *hi));
            e.0 = e.0.min(*lo);
            e.1 = match (e.1, hi) {
                (Some(a), Some(b)) => Some(a.max(*b)),
                _ => None,
            };
        }
        let mut ors = Vec::new();
        for (ts, (lo, hi)) in hull {
            let day = format!("CAST(e.{} AS DATE)", self.d.ident(ts));
            let mut c = format!("{day} <= {}", self.d.add_days("k.as_of", -lo));
            if let Some(hi) = hi {
                c = format!("{c} AND {day} >= {}", self.d.add_days("k.as_of", -hi));
            }
            ors.push(c);
        }
        let _ = table;
        let when = if ors.len() == 1 {
            ors.remove(0)
        } else {
            format!("(({}))", ors.join(") OR ("))
        };
        format!("e.customer_id = k.customer_id AND {when}")
    }

    /// One pipeline over the keys CTE `keys`: CTEs named with `p`; the name of the last.
    fn pipeline(
        &mut self,
        p: &str,
        keys: &str,
        feats: &[&Feature],
        labels: &[&Label],
        pop: Option<&(String, BTreeSet<String>)>,
    ) -> Result<String, SqlError> {
        let d = self.d;
        // Base: keys and entity features.
        let mut ent = Vec::new();
        for f in feats {
            if let Kind::Entity { column, ts } = &f.kind {
                let table = crate::source::table_spec("customers").ok_or_else(|| {
                    self.ferr(&f.name, "no customers table in the contract".into())
                })?;
                let rows = Rows {
                    d,
                    aged: false,
                    set: self.set,
                    table,
                    ts,
                    alias: "c",
                    as_of: "k.as_of",
                };
                let (t, e) = print(d, column, &rows).map_err(|m| self.ferr(&f.name, m))?;
                ent.push(format!("{} AS {}", cast(d, e, t, f.ty), d.ident(&f.name)));
            }
        }
        let base = if ent.is_empty() {
            format!("SELECT k.customer_id, k.as_of\nFROM {keys} AS k")
        } else {
            format!(
                "SELECT\n  k.customer_id,\n  k.as_of,\n  {}\nFROM {keys} AS k\nJOIN customers AS c ON c.customer_id = k.customer_id",
                ent.join(",\n  ")
            )
        };
        self.cte(&format!("{p}base"), base);

        // Aggregates per table.
        let mut by_table: BTreeMap<&'static str, TableReads> = BTreeMap::new();
        for (i, f) in feats.iter().enumerate() {
            if let Kind::Agg(a) = &f.kind {
                if pop.is_some_and(|(_, q)| q.contains(&f.name)) {
                    continue;
                }
                by_table.entry(a.table.name).or_default().0.push((i, f, a));
            }
        }
        for l in labels {
            by_table.entry(l.table.name).or_default().1.push(l);
        }
        // (cte, select list for f0)
        let mut joins: Vec<(String, Vec<String>)> = Vec::new();
        for (tname, (aggs, ls)) in &by_table {
            let Some(table) = crate::source::table_spec(tname) else {
                continue;
            };
            let plain: Vec<_> = aggs.iter().filter(|(_, _, a)| !a.per_day).collect();
            if !plain.is_empty() || !ls.is_empty() {
                let (name, cols) = self.table_agg(p, keys, table, &plain, ls)?;
                joins.push((name, cols));
            }
            for (i, f, a) in aggs.iter().filter(|(_, _, a)| a.per_day) {
                let (name, cols) = self.per_day(p, keys, *i, f, a)?;
                joins.push((name, cols));
            }
        }

        // f0: the keys with the aggregates joined.
        let mut sel = vec!["b.*".to_string()];
        let mut from = format!("{p}base AS b");
        for (j, (name, cols)) in joins.iter().enumerate() {
            let alias = format!("a{j}");
            from.push_str(&format!(
                "\nLEFT JOIN {name} AS {alias} ON {alias}.customer_id = b.customer_id AND {alias}.as_of = b.as_of"
            ));
            for c in cols {
                let filled = match feats.iter().find(|f| &f.name == c).map(|f| (f, &f.kind)) {
                    Some((f, Kind::Agg(a))) => match a.func {
                        AggFn::Count | AggFn::DistinctCount => Some("0".to_string()),
                        AggFn::Sum if !a.per_day => Some(if f.ty == Ty::Float {
                            float_lit(0.0)
                        } else {
                            "0".into()
                        }),
                        AggFn::Any => Some("FALSE".into()),
                        _ => None,
                    },
                    _ => None,
                };
                let n = d.ident(c);
                sel.push(match filled {
                    Some(v) => format!("coalesce({alias}.{n}, {v}) AS {n}"),
                    None => format!("{alias}.{n} AS {n}"),
                });
            }
        }
        if let Some((pop_cte, quantiles)) = pop {
            from.push_str(&format!(
                "\nLEFT JOIN {pop_cte} AS q ON q.customer_id = b.customer_id AND q.as_of = b.as_of"
            ));
            for qn in quantiles {
                let n = d.ident(qn);
                sel.push(format!("q.{n} AS {n}"));
            }
        }
        self.cte(
            &format!("{p}f0"),
            format!("SELECT\n  {}\nFROM {from}", sel.join(",\n  ")),
        );

        // Derived features by level.
        let mut level: HashMap<&str, usize> = HashMap::new();
        let mut levels: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        for f in feats {
            let from_pop = pop.is_some_and(|(_, q)| q.contains(&f.name));
            let lv = match &f.kind {
                Kind::Agg(_) | Kind::Entity { .. } => 0,
                _ if from_pop => 0,
                _ => {
                    1 + f
                        .deps
                        .iter()
                        .map(|x| level.get(x.as_str()).copied().unwrap_or(0))
                        .max()
                        .unwrap_or(0)
                }
            };
            level.insert(f.name.as_str(), lv);
            if lv == 0 {
                continue;
            }
            let e = self.derived(f)?;
            levels
                .entry(lv)
                .or_default()
                .push(format!("{e} AS {}", d.ident(&f.name)));
        }
        let mut last = format!("{p}f0");
        for (lv, cols) in levels {
            let name = format!("{p}f{lv}");
            self.cte(
                &name,
                format!("SELECT\n  *,\n  {}\nFROM {last}", cols.join(",\n  ")),
            );
            last = name;
        }
        Ok(last)
    }

    /// A derived feature's SQL: arithmetic, a quantile score or a mapping table.
    fn derived(&self, f: &Feature) -> Result<String, SqlError> {
        let d = self.d;
        let scope = Features { d, set: self.set };
        let pr = |e: &Expr| print(d, e, &scope).map_err(|m| self.ferr(&f.name, m));
        Ok(match &f.kind {
            Kind::Derived(e) => {
                let (t, s) = pr(e)?;
                cast(d, s, t, f.ty)
            }
            Kind::Quantile {
                of,
                bins,
                higher_is_better,
                among,
            } => {
                let v = d.ident(of);
                let m = match among {
                    Some(a) => format!("({v} IS NOT NULL AND coalesce({}, FALSE))", pr(a)?.1),
                    None => format!("({v} IS NOT NULL)"),
                };
                // Worst to best; ties share the lowest rank (SQL rank()), so a better value
                // never scores lower: 1 + floor(bins * (rank - 1) / n).
                let dir = if *higher_is_better { "ASC" } else { "DESC" };
                let rank = format!("rank() OVER (PARTITION BY as_of, {m} ORDER BY {v} {dir})");
                let n = format!("sum(CASE WHEN {m} THEN 1 ELSE 0 END) OVER (PARTITION BY as_of)");
                format!(
                    "CASE WHEN {m} THEN 1 + {} END",
                    d.int_div(&format!("{bins} * ({rank} - 1)"), &n)
                )
            }
            Kind::Case { cases, otherwise } => {
                let val = |v: &Option<String>| match v {
                    Some(s) => d.string(s),
                    None => format!("CAST(NULL AS {})", d.string_type()),
                };
                let mut s = "CASE".to_string();
                for (w, t) in cases {
                    s.push_str(&format!(" WHEN {} THEN {}", pr(w)?.1, val(t)));
                }
                s.push_str(&format!(" ELSE {} END", val(otherwise)));
                s
            }
            Kind::Agg(_) | Kind::Entity { .. } => {
                return Err(self.ferr(&f.name, "not a derived feature".into()))
            }
        })
    }
}
