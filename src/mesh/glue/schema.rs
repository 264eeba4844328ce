//! Pure parts of the Glue registration: Glue-safe names, polars dtypes → Glue (Hive)
//! column types, the additive-only schema rule, and where a manifest's committed run lives.
//! No calls here; everything is unit-tested beside the code.

use std::collections::BTreeMap;

use crate::offline::ColumnInfo;

use super::super::{MeshError, Result};

/// The longest Glue database, table or column name (Glue's limit: 255 characters).
pub const MAX_NAME: usize = 255;

/// The longest column comment Glue accepts (characters).
pub const MAX_COMMENT: usize = 255;
/// The longest table or database description Glue accepts (characters).
pub const MAX_DESCRIPTION: usize = 2048;

/// `s` cut to at most `max` characters (Glue refuses longer comments and descriptions;
/// a cut one ends in `…`).
pub fn bounded(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// The partition key of every product and snapshot table.
pub const PARTITION_KEY: &str = "as_of";

/// A Glue-safe name: lowercase, every character outside `[a-z0-9_]` replaced by `_`,
/// at most [`MAX_NAME`] characters (Glue lowercases names; Athena accepts only these
/// unquoted).
pub fn glue_name(s: &str) -> String {
    s.chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .take(MAX_NAME)
        .collect()
}

/// The Glue table of a product major or a snapshot version: `<name>_v<major>`.
pub fn table_name(name: &str, major: u32) -> String {
    let suffix = format!("_v{major}");
    let mut base = glue_name(name);
    base.truncate(MAX_NAME - suffix.len());
    base + &suffix
}

/// The Glue (Hive DDL) type of a polars dtype string as `offline::schema_of` writes it
/// (`str`, `f64`, `i64`, `datetime[μs]`, `decimal[10,2]`, `list[f64]`, ...), or `None`
/// when Glue has no type that reads the Parquet column back faithfully (`u64`, `time`,
/// `duration`, `null`, structs, objects).
pub fn glue_type(dtype: &str) -> Option<String> {
    let t = dtype.trim();
    let simple = match t {
        "str" | "cat" | "enum" => Some("string"),
        "f64" => Some("double"),
        "f32" => Some("float"),
        "i64" => Some("bigint"),
        "i32" => Some("int"),
        "i16" => Some("smallint"),
        "i8" => Some("tinyint"),
        // Unsigned: the next signed type that holds every value.
        "u8" => Some("smallint"),
        "u16" => Some("int"),
        "u32" => Some("bigint"),
        "bool" => Some("boolean"),
        "date" => Some("date"),
        "binary" => Some("binary"),
        _ => None,
    };
    if let Some(s) = simple {
        return Some(s.to_string());
    }
    if t.starts_with("datetime[") && t.ends_with(']') {
        return Some("timestamp".into());
    }
    if let Some(ps) = t.strip_prefix("decimal[").and_then(|r| r.strip_suffix(']')) {
        let (p, s) = ps.split_once(',')?;
        let p: u32 = p.trim().parse().ok()?;
        let s: u32 = s.trim().parse().ok()?;
        // Hive's decimal: precision 1..=38, scale <= precision.
        return ((1..=38).contains(&p) && s <= p).then(|| format!("decimal({p},{s})"));
    }
    if let Some(inner) = t.strip_prefix("list[").and_then(|r| r.strip_suffix(']')) {
        return glue_type(inner).map(|i| format!("array<{i}>"));
    }
    None
}

/// One column as registered in Glue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlueColumn {
    /// Glue-safe name ([`glue_name`]).
    pub name: String,
    /// Glue type ([`glue_type`]).
    pub dtype: String,
    /// The contract's description (empty when there is none).
    pub comment: String,
}

/// The table columns of a schema: each mapped to its Glue type, with the description
/// `describe` gives it. The data column `as_of` is left out: it is the partition key
/// (Athena refuses a column repeated in the partition keys, and the partition value is
/// the same date as the column's).
///
/// Errors: [`MeshError::UnsupportedType`] naming `table`, the column and its dtype;
/// [`MeshError::Settings`] when two columns have the same Glue name.
pub fn table_columns(
    table: &str,
    schema: &[ColumnInfo],
    describe: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<GlueColumn>> {
    let mut out: Vec<GlueColumn> = Vec::with_capacity(schema.len());
    for c in schema {
        let name = glue_name(&c.name);
        if name == PARTITION_KEY {
            continue;
        }
        let dtype = glue_type(&c.dtype).ok_or_else(|| MeshError::UnsupportedType {
            table: table.to_string(),
            column: c.name.clone(),
            dtype: c.dtype.clone(),
        })?;
        if out.iter().any(|o| o.name == name) {
            return Err(MeshError::Settings {
                section: "catalog",
                message: format!(
                    "table {table}: two columns are both {name} in Glue (Glue names are lowercase [a-z0-9_]); rename one of them (column {})",
                    c.name
                ),
            });
        }
        out.push(GlueColumn {
            name,
            dtype,
            comment: bounded(&describe(&c.name).unwrap_or_default(), MAX_COMMENT),
        });
    }
    Ok(out)
}

/// What makes `new` not an additive change of `registered` (columns as name → type):
/// one line per removed or retyped column (`score: removed`, `score: double → string`),
/// empty when every registered column is still there with its type.
pub fn breaking_changes(registered: &[(String, String)], new: &[GlueColumn]) -> Vec<String> {
    registered
        .iter()
        .filter_map(
            |(name, old)| match new.iter().find(|c| c.name.eq_ignore_ascii_case(name)) {
                None => Some(format!("column {name} ({old}) was removed")),
                Some(c) if !c.dtype.eq_ignore_ascii_case(old) => {
                    Some(format!("column {name} changed type {old} → {}", c.dtype))
                }
                Some(_) => None,
            },
        )
        .collect()
}

/// The retyped columns of `new` against `registered` (columns as name → type), one line
/// each (`column score changed type double → string`): what a registration refuses. A
/// registered column `new` lacks is fine there (an older version of the table, or one
/// synced after a newer one added a column: Athena reads the missing column as null).
pub fn retyped_columns(registered: &[(String, String)], new: &[GlueColumn]) -> Vec<String> {
    let present: Vec<(String, String)> = registered
        .iter()
        .filter(|(name, _)| new.iter().any(|c| c.name.eq_ignore_ascii_case(name)))
        .cloned()
        .collect();
    breaking_changes(&present, new)
}

/// The snapshot columns a manifest's `extra["pii_columns"]` marks as PII by lineage, as
/// Glue name ([`glue_name`]) → its PII sources (`table.column`, sorted). The shape the
/// feature build writes is `{feature: ["customers.email", ...]}`; a plain list of
/// feature names is read too. No key: no PII column.
///
/// Errors: the reason, when the value has another shape (the caller then treats every
/// column as PII: a snapshot is never registered less protected than it is).
pub fn pii_columns(
    extra: &BTreeMap<String, serde_json::Value>,
) -> std::result::Result<BTreeMap<String, Vec<String>>, String> {
    use serde_json::Value;
    let sources = |v: &Value| -> std::result::Result<Vec<String>, String> {
        let mut out: Vec<String> = match v {
            Value::Array(a) => a
                .iter()
                .map(|s| {
                    s.as_str()
                        .map(String::from)
                        .ok_or_else(|| format!("source {s} is no string"))
                })
                .collect::<std::result::Result<_, _>>()?,
            Value::String(s) => vec![s.clone()],
            Value::Null => vec![],
            other => return Err(format!("sources {other} are no list of strings")),
        };
        out.sort();
        out.dedup();
        Ok(out)
    };
    match extra.get("pii_columns") {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| Ok((glue_name(k), sources(v)?)))
            .collect(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|k| match k.as_str() {
                Some(k) => Ok((glue_name(k), vec![])),
                None => Err(format!("column {k} is no string")),
            })
            .collect(),
        Some(other) => Err(format!(
            "{} is neither an object nor a list",
            bounded(&other.to_string(), 100)
        )),
    }
}

/// The columns a table registers after a version with columns `new`: every `registered`
/// column (name, type, comment) in its order, with `new`'s comment where `new` has it,
/// then `new`'s columns the table lacks, in `new`'s order. A table never loses a column
/// within a major (an older version without it reads it as null).
pub fn merged_columns(registered: &[GlueColumn], new: &[GlueColumn]) -> Vec<GlueColumn> {
    let mut out: Vec<GlueColumn> = registered
        .iter()
        .map(|r| {
            new.iter()
                .find(|c| c.name.eq_ignore_ascii_case(&r.name))
                .map(|c| GlueColumn {
                    name: r.name.clone(),
                    dtype: r.dtype.clone(),
                    comment: c.comment.clone(),
                })
                .unwrap_or_else(|| r.clone())
        })
        .collect();
    for c in new {
        if !registered
            .iter()
            .any(|r| r.name.eq_ignore_ascii_case(&c.name))
        {
            out.push(c.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn col(n: &str, t: &str) -> ColumnInfo {
        ColumnInfo {
            name: n.into(),
            dtype: t.into(),
        }
    }

    #[test]
    fn names_are_glue_safe_and_bounded() {
        assert_eq!(glue_name("Churn-Scores.v2"), "churn_scores_v2");
        assert_eq!(glue_name("é x"), "__x");
        assert_eq!(glue_name(&"a".repeat(400)).len(), MAX_NAME);
        assert_eq!(table_name("churn_scores", 3), "churn_scores_v3");
        let long = table_name(&"b".repeat(400), 12);
        assert_eq!(long.len(), MAX_NAME);
        assert!(long.ends_with("b_v12"), "{long}");
    }

    #[test]
    fn comments_and_descriptions_fit_glue() {
        assert_eq!(bounded("short", 255), "short");
        let long = bounded(&"é".repeat(300), MAX_COMMENT);
        assert_eq!(long.chars().count(), MAX_COMMENT);
        assert!(long.ends_with('…'));
        let cols = table_columns("t_v1", &[col("x", "str")], &|_| Some("d".repeat(1000))).unwrap();
        assert_eq!(cols[0].comment.chars().count(), MAX_COMMENT);
    }

    #[test]
    fn dtypes_map_to_hive_types() {
        for (p, g) in [
            ("str", "string"),
            ("f64", "double"),
            ("f32", "float"),
            ("i64", "bigint"),
            ("i32", "int"),
            ("i16", "smallint"),
            ("i8", "tinyint"),
            ("u32", "bigint"),
            ("bool", "boolean"),
            ("date", "date"),
            ("datetime[μs]", "timestamp"),
            ("datetime[ns, UTC]", "timestamp"),
            ("decimal[12,2]", "decimal(12,2)"),
            ("list[f64]", "array<double>"),
            ("list[list[str]]", "array<array<string>>"),
        ] {
            assert_eq!(glue_type(p).as_deref(), Some(g), "{p}");
        }
        for bad in [
            "u64",
            "time",
            "duration[ms]",
            "null",
            "struct[2]",
            "decimal[40,2]",
            "decimal[x]",
            "list[u64]",
            "",
        ] {
            assert_eq!(glue_type(bad), None, "{bad}");
        }
    }

    #[test]
    fn as_of_is_the_partition_key_not_a_column() {
        let cols = table_columns(
            "t_v1",
            &[
                col("customer_id", "str"),
                col("as_of", "date"),
                col("Score", "f64"),
            ],
            &|n| (n == "Score").then(|| "the score".to_string()),
        )
        .unwrap();
        assert_eq!(
            cols,
            [
                GlueColumn {
                    name: "customer_id".into(),
                    dtype: "string".into(),
                    comment: "".into()
                },
                GlueColumn {
                    name: "score".into(),
                    dtype: "double".into(),
                    comment: "the score".into()
                }
            ]
        );
        let e = table_columns("t_v1", &[col("d", "duration[ms]")], &|_| None).unwrap_err();
        assert!(
            matches!(&e, MeshError::UnsupportedType { table, column, dtype } if table == "t_v1" && column == "d" && dtype == "duration[ms]"),
            "{e}"
        );
        let e = table_columns("t_v1", &[col("a", "str"), col("A", "str")], &|_| None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("t_v1") && e.contains("column A"), "{e}");
    }

    #[test]
    fn only_additive_changes_pass() {
        let reg = vec![
            ("customer_id".to_string(), "string".to_string()),
            ("score".to_string(), "double".to_string()),
        ];
        let c = |n: &str, t: &str| GlueColumn {
            name: n.into(),
            dtype: t.into(),
            comment: String::new(),
        };
        assert!(breaking_changes(
            &reg,
            &[
                c("customer_id", "string"),
                c("score", "double"),
                c("x", "int")
            ]
        )
        .is_empty());
        assert_eq!(
            breaking_changes(&reg, &[c("customer_id", "bigint")]),
            [
                "column customer_id changed type string → bigint",
                "column score (double) was removed"
            ]
        );
    }

    #[test]
    fn registration_refuses_only_retyped_columns_and_the_table_never_shrinks() {
        let c = |n: &str, t: &str, d: &str| GlueColumn {
            name: n.into(),
            dtype: t.into(),
            comment: d.into(),
        };
        let table = [
            c("a", "string", "old a"),
            c("b", "double", ""),
            c("c", "int", "c"),
        ];
        let reg: Vec<(String, String)> = table
            .iter()
            .map(|g| (g.name.clone(), g.dtype.clone()))
            .collect();
        // An older version without c: nothing refused, the table keeps c.
        let older = [c("a", "string", "new a"), c("b", "double", "")];
        assert!(retyped_columns(&reg, &older).is_empty());
        assert_eq!(
            breaking_changes(&reg, &older),
            ["column c (int) was removed"]
        );
        assert_eq!(
            merged_columns(&table, &older),
            [
                c("a", "string", "new a"),
                c("b", "double", ""),
                c("c", "int", "c")
            ]
        );
        // A retyped column is refused; a new one is appended.
        let newer = [c("b", "string", ""), c("d", "date", "d")];
        assert_eq!(
            retyped_columns(&reg, &newer),
            ["column b changed type double → string"]
        );
        assert_eq!(
            merged_columns(&table, &[c("d", "date", "d")]),
            [
                c("a", "string", "old a"),
                c("b", "double", ""),
                c("c", "int", "c"),
                c("d", "date", "d")
            ]
        );
    }

    #[test]
    fn pii_columns_are_read_from_the_manifest_in_either_shape_and_bad_shapes_are_errors() {
        let extra = |v: serde_json::Value| BTreeMap::from([("pii_columns".to_string(), v)]);
        assert_eq!(pii_columns(&BTreeMap::new()).unwrap(), BTreeMap::new());
        assert_eq!(
            pii_columns(&extra(serde_json::json!({
                "First_Email": ["customers.email", "customers.email"],
                "phone_any": ["customers.phone", "customers.alt_phone"]
            })))
            .unwrap(),
            BTreeMap::from([
                (
                    "first_email".to_string(),
                    vec!["customers.email".to_string()]
                ),
                (
                    "phone_any".to_string(),
                    vec![
                        "customers.alt_phone".to_string(),
                        "customers.phone".to_string()
                    ]
                ),
            ])
        );
        assert_eq!(
            pii_columns(&extra(serde_json::json!(["email"]))).unwrap(),
            BTreeMap::from([("email".to_string(), vec![])])
        );
        for bad in [
            serde_json::json!(3),
            serde_json::json!({"e": [1]}),
            serde_json::json!({"e": {"x": 1}}),
            serde_json::json!([1]),
        ] {
            assert!(pii_columns(&extra(bad.clone())).is_err(), "{bad}");
        }
    }
}
