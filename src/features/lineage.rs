//! Column lineage of features, and PII judged by lineage rather than by name.
//!
//! A feature's *sources* are the source columns (`table.column`) its value is computed from:
//! the columns an aggregation aggregates or filters on, the customer columns an entity
//! feature reads, and (through its dependencies) every source of the features an
//! expression, a quantile score or a case table reads. A feature is **PII** when any of
//! its sources is a PII column: one the input contract marks PII (`customers.email`), or an
//! extra column declared under `[columns.<table>]` whose name is a PII name
//! (`product::PII_COLUMNS`: phone, name, address, ...). So `contact = first(customers.email)`,
//! `lower(email)`, a count filtered on `email == '...'` and any expression over those are
//! all PII, whatever they are called. PII features may live in the offline store (they are
//! marked in `c360 features show` and in the snapshot manifest's `pii_columns`), but never
//! enter a data product: `c360 validate` and every run refuse a job that includes one.

use std::collections::{BTreeSet, HashMap};

use super::def::{FeatureSet, Kind};

/// Whether the source column `table.column` is PII (the contract's flag, or a PII name).
pub fn is_pii_source(table: &str, column: &str) -> bool {
    let lc = column.to_ascii_lowercase();
    let contract = crate::source::table_spec(table)
        .and_then(|t| t.column(&lc))
        .is_some_and(|c| c.pii);
    contract || crate::product::PII_COLUMNS.contains(&lc.as_str())
}

/// The lineage of every feature of a set: feature name -> its source columns
/// (`table.column`, sorted). Features are validated in dependency order, so one pass in
/// that order sees every dependency first.
pub fn sources(set: &FeatureSet) -> HashMap<String, BTreeSet<String>> {
    let mut out: HashMap<String, BTreeSet<String>> = HashMap::new();
    for f in &set.features {
        let mut s = BTreeSet::new();
        match &f.kind {
            Kind::Agg(a) => {
                for e in a.column.iter().chain(a.filter.iter()) {
                    for n in e.names() {
                        if a.table.column(&n).is_some() || a.extra_columns.contains(&n) {
                            s.insert(format!("{}.{n}", a.table.name));
                        }
                    }
                }
            }
            Kind::Entity { column, .. } => {
                for n in column.names() {
                    if n != "days_ago" {
                        s.insert(format!("customers.{n}"));
                    }
                }
            }
            Kind::Derived(_) | Kind::Quantile { .. } | Kind::Case { .. } => {}
        }
        let mut names: Vec<String> = f.deps.clone();
        if let Kind::Quantile { of, among, .. } = &f.kind {
            names.push(of.clone());
            names.extend(among.iter().flat_map(|e| e.names()));
        }
        for d in names {
            if let Some(ds) = out.get(&d) {
                s.extend(ds.iter().cloned());
            }
        }
        out.insert(f.name.clone(), s);
    }
    out
}

/// The PII sources of `feature` in `set` (empty when it is not PII or not in the set).
pub fn pii_sources(set: &FeatureSet, feature: &str) -> Vec<String> {
    sources(set)
        .remove(feature)
        .unwrap_or_default()
        .into_iter()
        .filter(|s| {
            s.split_once('.')
                .is_some_and(|(table, column)| is_pii_source(table, column))
        })
        .collect()
}

/// The output columns of `set` that are PII by lineage, with their PII sources.
pub fn pii_outputs(set: &FeatureSet) -> Vec<(String, Vec<String>)> {
    let all = sources(set);
    set.outputs()
        .iter()
        .filter_map(|f| {
            let pii: Vec<String> = all
                .get(&f.name)
                .into_iter()
                .flatten()
                .filter(|s| {
                    s.split_once('.')
                        .is_some_and(|(table, column)| is_pii_source(table, column))
                })
                .cloned()
                .collect();
            (!pii.is_empty()).then(|| (f.name.clone(), pii))
        })
        .collect()
}

/// Refusals for a product that would include PII: for each `include`d column that is PII by
/// lineage in one of `sets`, `(index, message)`.
pub fn pii_includes(include: &[String], sets: &[FeatureSet]) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (i, c) in include.iter().enumerate() {
        let lc = c.to_ascii_lowercase();
        if crate::product::PII_COLUMNS.contains(&lc.as_str()) || is_pii_source("customers", &lc) {
            out.push((
                i,
                format!("{c} is a PII column name and may never enter a data product"),
            ));
            continue;
        }
        for s in sets {
            if s.outputs().iter().any(|f| &f.name == c) {
                let p = pii_sources(s, c);
                if !p.is_empty() {
                    out.push((
                        i,
                        format!(
                            "{c} (feature set {}) is derived from PII ({}) and may never enter a data product; drop it from product.include",
                            s.name,
                            p.join(", ")
                        ),
                    ));
                    break;
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(text: &str) -> FeatureSet {
        crate::features::def::parse(text, std::path::Path::new("t.toml")).unwrap()
    }

    #[test]
    fn pii_follows_lineage_not_names() {
        let s = set(r#"
name = "t"
version = 1
[columns.customers]
phone = "string"
[[feature]]
name = "contact"
table = "customers"
agg = "first"
column = "email"
[[feature]]
name = "has_contact"
expr = "contact is not null"
[[feature]]
name = "phone_orders"
table = "orders"
agg = "count"
where = "status == 'completed'"
[[feature]]
name = "orders_90d"
table = "orders"
agg = "count"
window_days = 90
[[feature]]
name = "x"
expr = "orders_90d + phone_orders"
[[feature]]
name = "home"
table = "customers"
agg = "first"
column = "phone"
[[feature]]
name = "y"
expr = "case_x"
[[feature]]
name = "case_x"
hidden = true
cases = [{ when = "home is null", then = "none" }]
else = "some"
"#);
        // `contact` reads an email: PII whatever its name; so is everything derived from it,
        // and a declared extra column with a PII name (`phone`), through a case table too.
        let srcs = sources(&s);
        assert_eq!(
            srcs["contact"].iter().cloned().collect::<Vec<_>>(),
            vec!["customers.email".to_string()]
        );
        assert_eq!(pii_sources(&s, "contact"), vec!["customers.email"]);
        assert_eq!(pii_sources(&s, "has_contact"), vec!["customers.email"]);
        assert_eq!(pii_sources(&s, "y"), vec!["customers.phone"]);
        assert!(pii_sources(&s, "orders_90d").is_empty());
        assert!(pii_sources(&s, "x").is_empty());
        assert_eq!(
            srcs["phone_orders"].iter().cloned().collect::<Vec<_>>(),
            vec!["orders.status".to_string()]
        );
        let outs: Vec<String> = pii_outputs(&s).into_iter().map(|(n, _)| n).collect();
        assert_eq!(outs, vec!["contact", "has_contact", "home", "y"]);
        let refused = pii_includes(
            &[
                "orders_90d".into(),
                "has_contact".into(),
                "Email".into(),
                "x".into(),
            ],
            &[s],
        );
        assert_eq!(refused.iter().map(|r| r.0).collect::<Vec<_>>(), vec![1, 2]);
        assert!(refused[0].1.contains("customers.email"), "{}", refused[0].1);
    }
}
