//! Unit tests of the SQL compiler: quoting, dialect forms, checks and the query's shape.
//! Values are tested against DuckDB and the polars engine in `tests/it/sql_duckdb.rs`.

use std::path::Path;

use chrono::NaiveDate;

use super::*;
use crate::features::def;

fn shipped(name: &str) -> FeatureSet {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("features");
    def::load(&dir.join(format!("{name}.toml"))).expect("shipped set loads")
}

fn date(s: &str) -> NaiveDate {
    s.parse().expect("date")
}

#[test]
fn string_literals_escape_quotes_for_each_dialect() {
    assert_eq!(Dialect::Duckdb.string("it's"), "'it''s'");
    assert_eq!(
        Dialect::Athena.string("a'; DROP TABLE x; --"),
        "'a''; DROP TABLE x; --'"
    );
    // Spark reads backslash escapes and joins adjacent literals ('a''b' is "ab").
    assert_eq!(Dialect::Spark.string("it's"), r"'it\'s'");
    assert_eq!(Dialect::Spark.string(r"a\'b"), r"'a\\\'b'");
}

#[test]
fn identifiers_are_quoted_for_each_dialect() {
    assert_eq!(Dialect::Duckdb.ident("T"), "\"T\"");
    assert_eq!(Dialect::Athena.ident("a\"b"), "\"a\"\"b\"");
    assert_eq!(Dialect::Spark.ident("a`b"), "`a``b`");
}

#[test]
fn dialect_forms_of_dates_and_division() {
    assert_eq!(Dialect::Duckdb.add_days("x", -3), "(x - 3)");
    assert_eq!(Dialect::Spark.add_days("x", 2), "date_add(x, 2)");
    assert_eq!(Dialect::Athena.add_days("x", -1), "date_add('day', -1, x)");
    assert_eq!(
        Dialect::Spark.days_between("a", "b"),
        "CAST(datediff(b, a) AS BIGINT)"
    );
    assert_eq!(
        Dialect::Athena.int_div("a", "b"),
        "(CAST(a AS BIGINT) / CAST(b AS BIGINT))"
    );
    // Trino's greatest() is null when any argument is: each argument falls back to the
    // first non-null one.
    assert_eq!(
        Dialect::Athena.greatest_least(true, &["a".into(), "b".into()]),
        "greatest(coalesce(a, a, b), coalesce(b, a, b))"
    );
    assert_eq!(Dialect::parse("Trino"), Ok(Dialect::Athena));
    assert!(Dialect::parse("mysql")
        .unwrap_err()
        .contains("duckdb, spark, athena"));
}

#[test]
fn shipped_sets_compile_in_every_dialect_with_a_header() {
    for name in ["rfm", "churn_signals"] {
        let set = shipped(name);
        for d in Dialect::ALL {
            check(&set, d).expect("shipped sets have an SQL form");
            let q =
                compile(&set, d, &Target::Snapshot(vec![date("2024-06-30")])).expect("compiles");
            assert!(q.starts_with("-- c360 "), "{q}");
            assert!(q.contains(&format!("feature set {name} v1 ({})", set.hash)));
            assert!(q.contains(&format!("SQL dialect: {d}")));
            let lower = "-- Athena returns column names in lower case: T come back as t";
            assert_eq!(q.contains(lower), name == "rfm" && d == Dialect::Athena);
            let t = Target::Spine {
                table: "db.spine".into(),
                labels: vec!["churned_90d".into()],
            };
            let q = compile(&set, d, &t).expect("compiles");
            assert!(q.contains(&d.ident("churned_90d")));
        }
    }
}

#[test]
fn bad_targets_are_refused_with_the_reason() {
    let set = shipped("rfm");
    let e = compile(&set, Dialect::Duckdb, &Target::Snapshot(vec![])).unwrap_err();
    assert!(
        e.to_string().contains("1 to 10000 as-of dates, got 0"),
        "{e}"
    );
    let t = Target::Spine {
        table: "spine; drop".into(),
        labels: vec![],
    };
    let e = compile(&set, Dialect::Duckdb, &t).unwrap_err();
    assert!(e.to_string().contains("name a table as name"), "{e}");
    let t = Target::Spine {
        table: "spine".into(),
        labels: vec!["nope".into()],
    };
    let e = compile(&set, Dialect::Duckdb, &t).unwrap_err();
    assert!(
        e.to_string()
            .contains("unknown label \"nope\" (labels of rfm: churned_90d)"),
        "{e}"
    );
}

#[test]
fn names_differing_by_case_are_refused_where_case_is_ignored() {
    let text = r#"
name = "cased"
version = 1
owner = "t"
description = "t"
[[feature]]
name = "n"
table = "orders"
agg = "count"
[[feature]]
name = "N"
expr = "n + 1"
"#;
    let set = def::parse(text, Path::new("cased.toml")).expect("valid set");
    // DuckDB ignores case even in quoted names (its query read column n for N).
    for d in [Dialect::Duckdb, Dialect::Spark, Dialect::Athena] {
        let errs = check(&set, d).unwrap_err();
        assert_eq!(errs.len(), 1, "{d}");
        let m = errs[0].to_string();
        assert!(
            m.contains("feature N") && m.contains("differs from n only by case"),
            "{m}"
        );
    }
    let e = compile(
        &set,
        Dialect::Athena,
        &Target::Snapshot(vec![date("2024-01-01")]),
    )
    .unwrap_err();
    assert_eq!(e.feature.as_deref(), Some("N"));
}

#[test]
fn many_dates_are_one_table_of_dates() {
    let set = shipped("churn_signals");
    let dates = vec![date("2024-06-30"), date("2023-12-31"), date("2024-06-30")];
    let q = compile(&set, Dialect::Duckdb, &Target::Snapshot(dates)).expect("compiles");
    assert_eq!(q.matches("AS as_of\n").count(), 2, "{q}");
    assert!(q.contains("DATE '2023-12-31' AS as_of\n"));
    // No cross join of keys and events: every event table joins on the customer.
    assert_eq!(
        q.matches(" AS e ON e.customer_id = k.customer_id").count(),
        q.matches(" AS e ON").count()
    );
}

/// Feature names of one type each, for printing derived expressions.
struct Typed;

impl expr::SqlScope for Typed {
    fn resolve(&self, name: &str) -> Result<(crate::features::expr::Ty, String), String> {
        use crate::features::expr::Ty;
        let t = match name {
            "i" | "j" => Ty::Int,
            "x" => Ty::Float,
            "s" => Ty::Str,
            "b" => Ty::Bool,
            _ => return Err(format!("unknown feature {name}")),
        };
        Ok((t, name.to_string()))
    }
}

fn printed(d: Dialect, src: &str) -> (crate::features::expr::Ty, String) {
    let e = crate::features::expr::parse(src).expect("parses");
    expr::print(d, &e, &Typed).expect("prints")
}

#[test]
fn expressions_print_with_sql_null_rules_and_polars_types() {
    use crate::features::expr::Ty;
    let d = Dialect::Duckdb;
    // Division is float and null when the denominator is 0.
    assert_eq!(
        printed(d, "i / j"),
        (
            Ty::Float,
            "(CAST(i AS DOUBLE) / NULLIF(CAST(j AS DOUBLE), 0E0))".into()
        )
    );
    // An integer and a float give a float; an int and a null literal an int.
    assert_eq!(
        printed(d, "x - 100"),
        (Ty::Float, "(x - CAST(100 AS DOUBLE))".into())
    );
    assert_eq!(
        printed(d, "if(i > 0, i - 1, null)"),
        (
            Ty::Int,
            "CASE WHEN (i > 0) THEN (i - 1) ELSE CAST(NULL AS BIGINT) END".into()
        )
    );
    // max() skips nulls: GREATEST in DuckDB, the COALESCE form in Athena.
    assert_eq!(printed(d, "max(i, 1)"), (Ty::Int, "greatest(i, 1)".into()));
    assert_eq!(
        printed(Dialect::Athena, "min(i, x)").1,
        "least(coalesce(CAST(i AS DOUBLE), CAST(i AS DOUBLE), x), coalesce(x, CAST(i AS DOUBLE), x))"
    );
    assert_eq!(
        printed(Dialect::Spark, "s in ('it''s', 'a') and not b").1,
        r"((s IN ('it\'s', 'a')) AND (NOT b))"
    );
    let e = crate::features::expr::parse("days_ago(x) > 1").expect("parses");
    let err = expr::print(d, &e, &Typed).unwrap_err();
    assert!(err.contains("only available in row filters"), "{err}");
}
