//! Property tests over the five kinds of input c360 reads (issue 19, kind 2): feature-set
//! TOML, expressions, model files (JSON and UBJSON), `/invocations` CSV payloads, and
//! c360.toml / job files. Each asserts "no panic; an `Err` with a message" for bad input and
//! a usable value for good input. Inputs are generated with their structure (grammar-aware
//! expressions with any Unicode, deep nesting, long flat sums; TOML with wrong types, huge
//! numbers, NaN and infinities; the committed models with mutated numbers and arrays),
//! not only as random bytes. A panic fails the case; a stack overflow aborts the binary.
//!
//! Each target runs for `C360_FUZZ_SECONDS` seconds (default 8): the case count is
//! unbounded, the loop stops on time. `C360_FUZZ_SECONDS=600 scripts/test.sh --test it fuzz_`
//! runs ten minutes per target. Each target prints `FUZZ <name>: <cases> cases ...`.

use std::cell::Cell;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use c360::features::expr::{self, Scope, Ty};
use c360::model::{parse_csv, Booster, DenseMatrix};
use polars::prelude::{col, Expr as PlExpr};
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::Value as J;

use crate::features::repo;

/// Seconds each target runs.
fn budget() -> Duration {
    std::env::var("C360_FUZZ_SECONDS")
        .ok()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
        .unwrap_or(Duration::from_secs(8))
}

/// Runs `check` on values of `strategy` until the time budget is spent (at least one batch
/// of `batch` cases); returns the number of cases run.
fn fuzz<S>(
    name: &str,
    batch: u32,
    strategy: S,
    check: impl Fn(S::Value) -> Result<(), TestCaseError>,
) -> u64
where
    S: Strategy,
    S::Value: Debug,
{
    let start = Instant::now();
    let deadline = start + budget();
    let cases = Cell::new(0u64);
    loop {
        // A runner counts its successes for its whole life: a fresh one (fresh random seed)
        // per batch.
        let mut runner = TestRunner::new(Config {
            cases: batch,
            failure_persistence: None,
            max_shrink_iters: 256,
            ..Config::default()
        });
        let r = runner.run(&strategy, |v| {
            cases.set(cases.get() + 1);
            check(v)
        });
        if let Err(e) = r {
            let msg = e.to_string();
            // The minimal failing input is at the end of the message.
            let cs: Vec<char> = msg.chars().collect();
            let short: String = if cs.len() > 6000 {
                cs[..2000]
                    .iter()
                    .chain(['…'].iter())
                    .chain(cs[cs.len() - 4000..].iter())
                    .collect()
            } else {
                msg
            };
            panic!("{name}: a case failed after {} cases: {short}", cases.get());
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    eprintln!(
        "FUZZ {name}: {} cases in {:.1}s, no panic",
        cases.get(),
        start.elapsed().as_secs_f64()
    );
    cases.get()
}

// ---- shared generators ------------------------------------------------------------------

/// Text in any script, control characters and typographic quotes included.
fn any_text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop_oneof![
            4 => any::<char>(),
            2 => select(vec!['‘', '’', '“', '”', '€', 'é', '≥', '\u{a0}', '\u{200b}', '\'', '"']),
            1 => select(vec!['\n', '\r', '\t', '\0', '\\', '(', ')', ',']),
        ],
        0..max,
    )
    .prop_map(|v| v.into_iter().collect())
}

fn name_s() -> impl Strategy<Value = String> {
    prop_oneof![
        select(vec![
            "amount",
            "status",
            "ts",
            "x",
            "zz_unknown",
            "null",
            "true",
            "AND",
            "is",
            "in",
            "not",
            "customer_id",
            "orders_90d",
            "_",
            "a1",
        ])
        .prop_map(str::to_string),
        "[a-z_][a-z0-9_]{0,10}",
        any::<char>().prop_map(|c| c.to_string()),
    ]
}

fn literal_s() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|v| v.to_string()),
        any::<f64>().prop_map(|v| format!("{v:?}")),
        select(vec![
            "1e400",
            "-1e400",
            "99999999999999999999999",
            "9223372036854775808",
            "1_000",
            ".5",
            "1.2.3",
            "1e",
            "1e+",
            "0x10",
            "5€",
            "‘completed’",
            "'it''s'",
            "''",
            "\"\"",
            "'",
            "\"",
            "NaN",
            "inf",
            "-0.0",
        ])
        .prop_map(str::to_string),
        any_text(12).prop_map(|s| format!("'{}'", s.replace('\'', "''"))),
        any_text(12).prop_map(|s| format!("\"{s}")),
    ]
}

fn op_s() -> impl Strategy<Value = &'static str> {
    select(vec![
        "+", "-", "*", "/", "==", "=", "!=", "<>", "<", "<=", ">", ">=", "and", "or", "AND", "Or",
        ",", "", "≥", "‘", "is", "in", "not",
    ])
}

fn func_s() -> impl Strategy<Value = &'static str> {
    select(vec![
        "max", "min", "abs", "coalesce", "if", "is_null", "days_ago", "MAX", "Coalesce", "foo",
        "ünï", "",
    ])
}

/// Expressions following the grammar (and breaking it now and then).
fn grammar_expr() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![name_s(), literal_s()];
    leaf.prop_recursive(8, 96, 4, |inner| {
        prop_oneof![
            4 => (inner.clone(), op_s(), inner.clone()).prop_map(|(a, o, b)| format!("{a} {o} {b}")),
            1 => inner.clone().prop_map(|a| format!("({a})")),
            1 => inner.clone().prop_map(|a| format!("not {a}")),
            1 => inner.clone().prop_map(|a| format!("-{a}")),
            1 => (inner.clone(), any::<bool>())
                .prop_map(|(a, n)| format!("{a} is {}null", if n { "not " } else { "" })),
            1 => (inner.clone(), prop::collection::vec(literal_s(), 0..5), any::<bool>()).prop_map(
                |(a, items, n)| format!("{a} {}in ({})", if n { "not " } else { "" }, items.join(", "))
            ),
            2 => (func_s(), prop::collection::vec(inner, 0..4))
                .prop_map(|(f, args)| format!("{f}({})", args.join(", "))),
        ]
    })
}

/// Expressions: grammar-aware, deeply nested, long flat chains, and mutated.
fn expression_s() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => grammar_expr(),
        1 => (0usize..30_000, select(vec!["(", "not ", "-", "abs(", "max(1, ", "coalesce(x, ", "- (", "if(true, 1, "]))
            .prop_map(|(n, open)| {
                let close = ")".repeat(open.matches('(').count());
                format!("{}x{}", open.repeat(n), close.repeat(n))
            }),
        1 => (0usize..3_000, select(vec!["(", "not ", "-", "abs("]))
            .prop_map(|(n, open)| {
                let close = ")".repeat(open.matches('(').count());
                format!("{}x{}", open.repeat(n), close.repeat(n))
            }),
        1 => (1usize..120_000, select(vec![" + ", "-", "*", "/", " and ", " or ", ", "]), select(vec!["a", "1", "x > 1", "'€'"]))
            .prop_map(|(n, op, term)| vec![term; n].join(op)),
        1 => (1usize..400, select(vec!["+", " and ", "*"]))
            .prop_map(|(n, op)| (0..n).map(|i| format!("f{i}")).collect::<Vec<_>>().join(op)),
        1 => (1usize..3_000).prop_map(|n| format!("x in ({})", vec!["1"; n].join(","))),
        2 => (grammar_expr(), any::<Index>(), any_text(3))
            .prop_map(|(s, at, ins)| insert_chars(&s, &at, &ins)),
    ]
}

/// Every name resolves, to a type chosen by its length; names starting with `z` are unknown.
struct AnyScope;

impl Scope for AnyScope {
    fn resolve(&self, name: &str) -> Result<(Ty, PlExpr), String> {
        if name.starts_with('z') {
            return Err(format!("unknown column {name}"));
        }
        let ty = match name.len() % 5 {
            0 => Ty::Int,
            1 => Ty::Float,
            2 => Ty::Str,
            3 => Ty::Bool,
            _ => Ty::Time,
        };
        Ok((ty, col(name)))
    }
    fn days_ago(&self, column: &str) -> Result<PlExpr, String> {
        Ok(col(column))
    }
}

// ---- expressions --------------------------------------------------------------------------

#[test]
fn fuzz_expressions() {
    let n = fuzz("fuzz_expressions", 256, expression_s(), |src| {
        if std::env::var_os("C360_FUZZ_TRACE").is_some() {
            std::fs::write("/tmp/fuzz_last_expr.txt", &src).unwrap();
        }
        let chars = src.chars().count();
        match expr::parse(&src) {
            Ok(e) => {
                let names = e.names();
                prop_assert!(names.len() <= expr::MAX_NODES);
                let printed = e.to_string();
                prop_assert!(!printed.is_empty());
                // Type check and compile to polars: Ok or a message, never a panic.
                if let Err(m) = expr::compile(&e, &AnyScope) {
                    prop_assert!(!m.is_empty());
                }
            }
            Err(err) => {
                prop_assert!(!err.message.is_empty());
                prop_assert!(
                    err.pos <= chars,
                    "pos {} past {} characters",
                    err.pos,
                    chars
                );
                prop_assert!(err.to_string().contains("(at character "));
            }
        }
        Ok(())
    });
    assert!(n > 0);
}

// ---- feature-set TOML ---------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Seg {
    Key(String),
    At(usize),
}

/// Paths to every value (containers included) of a TOML document.
fn toml_paths(v: &toml::Value, here: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
    out.push(here.clone());
    match v {
        toml::Value::Table(t) => {
            for (k, x) in t {
                here.push(Seg::Key(k.clone()));
                toml_paths(x, here, out);
                here.pop();
            }
        }
        toml::Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                here.push(Seg::At(i));
                toml_paths(x, here, out);
                here.pop();
            }
        }
        _ => {}
    }
}

fn toml_at<'a>(v: &'a mut toml::Value, path: &[Seg]) -> Option<&'a mut toml::Value> {
    let mut cur = v;
    for s in path {
        cur = match (s, cur) {
            (Seg::Key(k), toml::Value::Table(t)) => t.get_mut(k)?,
            (Seg::At(i), toml::Value::Array(a)) => a.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// Values that break types and ranges.
fn toml_value_s() -> impl Strategy<Value = toml::Value> {
    use toml::Value as T;
    prop_oneof![
        select(vec![
            i64::MAX,
            i64::MIN,
            -1,
            0,
            1,
            2,
            64,
            129,
            1 << 31,
            1 << 32,
            4_294_967_296 + 7
        ])
        .prop_map(T::Integer),
        any::<i64>().prop_map(T::Integer),
        select(vec![
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            1e308,
            -0.0,
            0.5,
            1e-300
        ])
        .prop_map(T::Float),
        expression_s().prop_map(T::String),
        any_text(20).prop_map(T::String),
        select(vec![
            "",
            "count",
            "sum",
            "orders",
            "customers",
            "days_ago",
            "amount",
            "9999-99-99",
            "0 6 * * MON",
            "last_sunday"
        ])
        .prop_map(|s| T::String(s.into())),
        any::<bool>().prop_map(T::Boolean),
        Just(T::Array(vec![])),
        Just(T::Array(vec![T::Integer(1), T::String("x".into())])),
        Just(T::Table(Default::default())),
    ]
}

#[derive(Debug, Clone)]
enum TomlOp {
    Set(Index, toml::Value),
    Remove(Index),
    /// Sets one of the expression-bearing keys of a feature.
    Expr(Index, &'static str, String),
    /// Appends `n` copies of a feature.
    Copies(Index, usize),
    /// Appends a chain of `n` features, each one the previous plus one.
    Chain(usize),
    /// Adds a key the schema does not know.
    Unknown(String),
}

fn toml_op_s() -> impl Strategy<Value = TomlOp> {
    prop_oneof![
        6 => (any::<Index>(), toml_value_s()).prop_map(|(i, v)| TomlOp::Set(i, v)),
        1 => any::<Index>().prop_map(TomlOp::Remove),
        4 => (any::<Index>(), select(vec!["expr", "where", "column", "quantile_of", "among"]), expression_s())
            .prop_map(|(i, k, e)| TomlOp::Expr(i, k, e)),
        1 => (any::<Index>(), prop_oneof![1usize..20, 400usize..700]).prop_map(|(i, n)| TomlOp::Copies(i, n)),
        1 => prop_oneof![1usize..50, 450usize..800].prop_map(TomlOp::Chain),
        1 => "[a-z]{1,8}".prop_map(TomlOp::Unknown),
    ]
}

fn apply_toml_op(doc: &mut toml::Value, op: &TomlOp, table_key: &str) {
    use toml::Value as T;
    match op {
        TomlOp::Set(i, v) => {
            let mut paths = Vec::new();
            toml_paths(doc, &mut Vec::new(), &mut paths);
            let p = &paths[i.index(paths.len())];
            if let Some(slot) = toml_at(doc, p) {
                *slot = v.clone();
            }
        }
        TomlOp::Remove(i) => {
            let mut paths = Vec::new();
            toml_paths(doc, &mut Vec::new(), &mut paths);
            let p = paths[i.index(paths.len())].clone();
            if let Some((Seg::Key(k), parent)) = p.split_last() {
                if let Some(T::Table(t)) = toml_at(doc, parent) {
                    t.remove(k);
                }
            }
        }
        TomlOp::Expr(i, key, e) => {
            if let Some(T::Array(fs)) = doc.get_mut(table_key) {
                if !fs.is_empty() {
                    let n = fs.len();
                    if let Some(T::Table(f)) = fs.get_mut(i.index(n)) {
                        f.insert((*key).to_string(), T::String(e.clone()));
                    }
                }
            }
        }
        TomlOp::Copies(i, n) => {
            if let Some(T::Array(fs)) = doc.get_mut(table_key) {
                if !fs.is_empty() {
                    let f = fs[i.index(fs.len())].clone();
                    fs.extend(std::iter::repeat_n(f, *n));
                }
            }
        }
        TomlOp::Chain(n) => {
            if let Some(T::Array(fs)) = doc.get_mut(table_key) {
                let base = fs
                    .first()
                    .and_then(|f| f.get("name"))
                    .and_then(|n| n.as_str())
                    .unwrap_or("orders_90d")
                    .to_string();
                let mut prev = base;
                for k in 0..*n {
                    let name = format!("chain_{k}");
                    let mut t = toml::Table::new();
                    t.insert("name".into(), T::String(name.clone()));
                    t.insert("expr".into(), T::String(format!("{prev} + 1")));
                    fs.push(T::Table(t));
                    prev = name;
                }
            }
        }
        TomlOp::Unknown(k) => {
            if let T::Table(t) = doc {
                t.insert(k.clone(), T::Integer(1));
            }
        }
    }
}

fn shipped_sets() -> Vec<toml::Value> {
    ["features/rfm.toml", "features/churn_signals.toml"]
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(repo().join(f)).expect("shipped set");
            toml::from_str::<toml::Value>(&text).expect("shipped set is TOML")
        })
        .collect()
}

/// Inserts `ins` at character `at` of `text` (a raw mutation that may break the syntax).
fn insert_chars(text: &str, at: &Index, ins: &str) -> String {
    let cs: Vec<char> = text.chars().collect();
    let i = at.index(cs.len() + 1);
    cs[..i]
        .iter()
        .copied()
        .chain(ins.chars())
        .chain(cs[i..].iter().copied())
        .collect()
}

#[test]
fn fuzz_feature_toml() {
    let sets = shipped_sets();
    let path = Path::new("fuzz_set");
    let strategy = (
        any::<Index>(),
        prop::collection::vec(toml_op_s(), 1..4),
        prop::option::weighted(0.2, (any::<Index>(), any_text(4))),
    );
    let n = fuzz("fuzz_feature_toml", 32, strategy, |(which, ops, raw)| {
        let mut doc = sets[which.index(sets.len())].clone();
        for op in &ops {
            apply_toml_op(&mut doc, op, "feature");
        }
        let Ok(mut text) = toml::to_string(&doc) else {
            return Ok(());
        };
        if let Some((at, ins)) = &raw {
            text = insert_chars(&text, at, ins);
        }
        match c360::features::def::parse(&text, path) {
            Ok(set) => {
                prop_assert!(set.features.len() <= c360::features::def::MAX_FEATURES);
                let _ = set.outputs();
                let _ = set.tables();
            }
            Err(errs) => {
                prop_assert!(!errs.0.is_empty());
                for e in &errs.0 {
                    prop_assert_eq!(&e.file, "fuzz_set");
                    prop_assert!(!e.key.is_empty() && !e.reason.is_empty(), "{:?}", e);
                }
            }
        }
        Ok(())
    });
    assert!(n > 0);
}

// ---- model files --------------------------------------------------------------------------

fn model_fixtures() -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("tests/fixtures/xgb"))
        .expect("xgb fixtures")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "ubj" || e == "json"))
        .filter(|p| !p.ends_with("fixtures.json"))
        .collect();
    files.push(repo().join("models/churn_xgb/xgboost-model.json"));
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let b = std::fs::read(&p).expect("fixture");
            (p.display().to_string(), b)
        })
        .collect()
}

/// Paths into a JSON document (containers included).
fn json_paths(v: &J, here: &mut Vec<Seg>, out: &mut Vec<Vec<Seg>>) {
    out.push(here.clone());
    match v {
        J::Object(m) => {
            for (k, x) in m {
                here.push(Seg::Key(k.clone()));
                json_paths(x, here, out);
                here.pop();
            }
        }
        J::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                here.push(Seg::At(i));
                json_paths(x, here, out);
                here.pop();
            }
        }
        _ => {}
    }
}

fn json_at<'a>(v: &'a mut J, path: &[Seg]) -> Option<&'a mut J> {
    let mut cur = v;
    for s in path {
        cur = match (s, cur) {
            (Seg::Key(k), J::Object(m)) => m.get_mut(k)?,
            (Seg::At(i), J::Array(a)) => a.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(cur)
}

/// Numbers and values a corrupt or hostile model file may hold.
fn json_value_s() -> impl Strategy<Value = J> {
    use serde_json::json;
    prop_oneof![
        select(vec![
            "1e19",
            "1000000000000",
            "-1",
            "0",
            "1",
            "2",
            "NaN",
            "inf",
            "1e308",
            "[1e19]",
            "[]",
            "[5E-1,5E-1,5E-1]",
            "2147483647",
            "2147483648",
            "4294967296",
            "",
            "x",
            "3.5",
        ])
        .prop_map(|s| J::String(s.into())),
        select(vec![
            json!(1e19),
            json!(1e12),
            json!(-1),
            json!(0),
            json!(1),
            json!(2),
            json!(3),
            json!(i64::MAX),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(2147483648u64),
            json!(1.5),
            json!(1e300),
            json!(-0.0),
            json!(null),
            json!(true),
            json!([]),
            json!({}),
            json!([0, 0, 0]),
            json!([-1, -1]),
            json!([1, 2, 3, 4, 5, 6, 7]),
        ]),
        any::<i64>().prop_map(|v| json!(v)),
        any::<f64>().prop_map(|v| serde_json::Number::from_f64(v).map_or(J::Null, J::Number)),
        any_text(8).prop_map(J::String),
    ]
}

#[derive(Debug, Clone)]
enum ModelOp {
    Set(Index, J),
    /// One of the counts the loader sizes things by.
    Param(&'static str, J),
    Resize(Index, Index),
    Remove(Index),
}

fn model_op_s() -> impl Strategy<Value = ModelOp> {
    prop_oneof![
        4 => (any::<Index>(), json_value_s()).prop_map(|(i, v)| ModelOp::Set(i, v)),
        3 => (select(vec!["num_class", "num_feature", "base_score", "num_target"]), json_value_s())
            .prop_map(|(k, v)| ModelOp::Param(k, v)),
        2 => (any::<Index>(), any::<Index>()).prop_map(|(i, n)| ModelOp::Resize(i, n)),
        1 => any::<Index>().prop_map(ModelOp::Remove),
    ]
}

fn apply_model_op(doc: &mut J, paths: &[Vec<Seg>], op: &ModelOp) {
    match op {
        ModelOp::Set(i, v) => {
            if let Some(slot) = json_at(doc, &paths[i.index(paths.len())]) {
                *slot = v.clone();
            }
        }
        ModelOp::Param(k, v) => {
            if let Some(J::Object(m)) = doc.pointer_mut("/learner/learner_model_param") {
                m.insert((*k).to_string(), v.clone());
            }
        }
        ModelOp::Resize(i, n) => {
            // Shrink or grow an array (growing repeats its first element).
            if let Some(J::Array(a)) = json_at(doc, &paths[i.index(paths.len())]) {
                let want = n.index(a.len() * 2 + 2);
                if want < a.len() {
                    a.truncate(want);
                } else if let Some(first) = a.first().cloned() {
                    a.resize(want, first);
                }
            }
        }
        ModelOp::Remove(i) => {
            let p = &paths[i.index(paths.len())];
            if let Some((Seg::Key(k), parent)) = p.split_last() {
                if let Some(J::Object(m)) = json_at(doc, parent) {
                    m.remove(k);
                }
            }
        }
    }
}

/// A UBJSON encoding of a JSON value (int64, float64, strings, plain containers; now and then
/// the optimised `#count` form), as xgboost writes it.
fn ubjson(v: &J, counted: bool, out: &mut Vec<u8>) {
    let len = |n: usize, out: &mut Vec<u8>| {
        out.push(b'L');
        out.extend((n as i64).to_be_bytes());
    };
    match v {
        J::Null => out.push(b'Z'),
        J::Bool(b) => out.push(if *b { b'T' } else { b'F' }),
        J::Number(n) => match n.as_i64() {
            Some(i) => {
                out.push(b'L');
                out.extend(i.to_be_bytes());
            }
            None => {
                out.push(b'D');
                out.extend(n.as_f64().unwrap_or(0.0).to_be_bytes());
            }
        },
        J::String(s) => {
            out.push(b'S');
            len(s.len(), out);
            out.extend(s.as_bytes());
        }
        J::Array(a) => {
            out.push(b'[');
            if counted {
                out.push(b'#');
                len(a.len(), out);
            }
            for x in a {
                ubjson(x, counted, out);
            }
            if !counted {
                out.push(b']');
            }
        }
        J::Object(m) => {
            out.push(b'{');
            if counted {
                out.push(b'#');
                len(m.len(), out);
            }
            for (k, x) in m {
                len(k.len(), out);
                out.extend(k.as_bytes());
                ubjson(x, counted, out);
            }
            if !counted {
                out.push(b'}');
            }
        }
    }
}

#[derive(Debug, Clone)]
enum ByteOp {
    Flip(Index, u8),
    Insert(Index, Vec<u8>),
    Truncate(Index),
    /// A big length marker where a count was.
    BigLength(Index, i64),
    Delete(Index, Index),
}

fn byte_op_s() -> impl Strategy<Value = ByteOp> {
    prop_oneof![
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| ByteOp::Flip(i, b)),
        (any::<Index>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, b)| ByteOp::Insert(i, b)),
        any::<Index>().prop_map(ByteOp::Truncate),
        (
            any::<Index>(),
            prop_oneof![Just(i64::MAX), Just(-1i64), Just(1i64 << 40), any::<i64>()]
        )
            .prop_map(|(i, n)| ByteOp::BigLength(i, n)),
        (any::<Index>(), any::<Index>()).prop_map(|(i, n)| ByteOp::Delete(i, n)),
    ]
}

fn apply_byte_op(b: &mut Vec<u8>, op: &ByteOp) {
    let n = b.len();
    match op {
        ByteOp::Flip(i, x) if n > 0 => b[i.index(n)] ^= x | 1,
        ByteOp::Insert(i, x) => {
            let at = i.index(n + 1);
            b.splice(at..at, x.iter().copied());
        }
        ByteOp::Truncate(i) => b.truncate(i.index(n + 1)),
        ByteOp::BigLength(i, v) => {
            let at = i.index(n + 1);
            let mut m = vec![b'L'];
            m.extend(v.to_be_bytes());
            let end = (at + m.len()).min(n);
            b.splice(at..end, m);
        }
        ByteOp::Delete(i, len) if n > 0 => {
            let at = i.index(n);
            let end = (at + len.index(64) + 1).min(n);
            b.drain(at..end);
        }
        _ => {}
    }
}

#[derive(Debug, Clone)]
enum ModelCase {
    /// A committed model with structural mutations, written as JSON or UBJSON.
    Structured(Index, Vec<ModelOp>, bool, bool),
    /// A committed model file with byte mutations.
    Bytes(Index, Vec<ByteOp>),
    /// Random bytes (often starting like a document).
    Random(Vec<u8>),
}

fn model_case_s() -> impl Strategy<Value = ModelCase> {
    prop_oneof![
        5 => (any::<Index>(), prop::collection::vec(model_op_s(), 1..4), any::<bool>(), any::<bool>())
            .prop_map(|(i, ops, ubj, counted)| ModelCase::Structured(i, ops, ubj, counted)),
        3 => (any::<Index>(), prop::collection::vec(byte_op_s(), 1..6)).prop_map(|(i, ops)| ModelCase::Bytes(i, ops)),
        1 => (prop::collection::vec(any::<u8>(), 0..512), select(vec![&b""[..], &b"{"[..], &b"{L"[..], &b"{\"learner\":"[..], &b"binf"[..], &b"\x80"[..]]))
            .prop_map(|(mut v, head)| {
                v.splice(0..0, head.iter().copied());
                ModelCase::Random(v)
            }),
    ]
}

/// Scores a few rows (NaN, extremes) when the model loaded: lengths must match.
fn score_a_little(b: &Booster) -> Result<(), TestCaseError> {
    let nf = b.num_feature();
    prop_assert!(nf >= 1);
    if nf > 4096 {
        return Ok(());
    }
    let vals = [f32::NAN, 0.0, -1.0, 1e30, f32::INFINITY, 3.5];
    for rows in [0usize, 1, 3] {
        let data: Vec<f32> = (0..rows * nf).map(|i| vals[i % vals.len()]).collect();
        let m = DenseMatrix {
            data,
            rows,
            cols: nf,
        };
        let out = b.predict(&m);
        prop_assert!(out.is_some(), "predict refused a well-shaped matrix");
        prop_assert_eq!(out.map(|o| o.len()), Some(rows * b.output_width()));
    }
    Ok(())
}

#[test]
fn fuzz_model_files() {
    let fixtures = model_fixtures();
    assert!(fixtures.len() >= 10, "model fixtures");
    let docs: Vec<(J, Vec<Vec<Seg>>)> = fixtures
        .iter()
        .filter(|(f, _)| f.ends_with(".json"))
        .map(|(_, b)| {
            let v: J = serde_json::from_slice(b).expect("fixture JSON");
            let mut paths = Vec::new();
            json_paths(&v, &mut Vec::new(), &mut paths);
            (v, paths)
        })
        .collect();
    let n = fuzz("fuzz_model_files", 16, model_case_s(), |case| {
        let (bytes, file) = match &case {
            ModelCase::Structured(i, ops, ubj, counted) => {
                let (doc, paths) = &docs[i.index(docs.len())];
                let mut doc = doc.clone();
                for op in ops {
                    apply_model_op(&mut doc, paths, op);
                }
                if *ubj {
                    let mut out = Vec::new();
                    ubjson(&doc, *counted, &mut out);
                    (out, "fuzz.ubj")
                } else {
                    (serde_json::to_vec(&doc).unwrap_or_default(), "fuzz.json")
                }
            }
            ModelCase::Bytes(i, ops) => {
                let mut b = fixtures[i.index(fixtures.len())].1.clone();
                for op in ops {
                    apply_byte_op(&mut b, op);
                }
                (b, "fuzz.bin")
            }
            ModelCase::Random(b) => (b.clone(), "fuzz.bin"),
        };
        match Booster::from_bytes(&bytes, file) {
            Ok(b) => score_a_little(&b)?,
            Err(e) => {
                let m = e.to_string();
                prop_assert!(m.contains(file), "the error does not name the file: {}", m);
            }
        }
        Ok(())
    });
    assert!(n > 0);
}

// ---- CSV payloads -------------------------------------------------------------------------

fn csv_field_s() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<f32>().prop_map(|v| v.to_string()),
        2 => any::<i64>().prop_map(|v| v.to_string()),
        2 => select(vec![
            "", " ", "nan", "NaN", "inf", "-inf", "-", "+", ".", "1e999", "-1e-999", "1.2.3",
            "0x1f", "1_000", "١٢", "1e", " 7 ", "\"1\"", "16777217", "0.00000000001",
        ])
        .prop_map(str::to_string),
        1 => any_text(6),
        1 => (1usize..500).prop_map(|n| "9".repeat(n)),
    ]
}

#[derive(Debug, Clone)]
struct CsvCase {
    rows: Vec<Vec<String>>,
    eol: &'static str,
    cols: Option<usize>,
    /// Repeats the payload past the parallel-parse threshold (1 MiB).
    big: bool,
}

fn csv_case_s() -> impl Strategy<Value = CsvCase> {
    (
        prop_oneof![
            // Rectangular (mostly valid) and ragged payloads.
            (1usize..8, 0usize..30).prop_flat_map(|(w, h)| prop::collection::vec(
                prop::collection::vec(csv_field_s(), w..=w),
                h..=h
            )),
            prop::collection::vec(prop::collection::vec(csv_field_s(), 0..8), 0..30),
        ],
        select(vec!["\n", "\r\n", "\r", "\n\n", ""]),
        prop::option::of(0usize..10),
        prop::bool::weighted(0.03),
    )
        .prop_map(|(rows, eol, cols, big)| CsvCase {
            rows,
            eol,
            cols,
            big,
        })
}

#[test]
fn fuzz_csv_payloads() {
    let n = fuzz("fuzz_csv_payloads", 64, csv_case_s(), |c| {
        let mut payload: Vec<u8> = c
            .rows
            .iter()
            .map(|r| r.join(","))
            .collect::<Vec<_>>()
            .join(c.eol)
            .into_bytes();
        if c.big && !payload.is_empty() {
            payload.push(b'\n');
            let times = (1usize << 20) / payload.len() + 2;
            payload = payload.repeat(times);
        }
        match parse_csv(&payload, c.cols) {
            Ok(m) => {
                prop_assert_eq!(m.data.len(), m.rows * m.cols);
                if let (Some(want), true) = (c.cols, m.rows > 0) {
                    prop_assert_eq!(m.cols, want);
                }
            }
            Err(e) => {
                let msg = e.to_string();
                prop_assert!(msg.starts_with("line "), "{}", msg);
            }
        }
        Ok(())
    });
    assert!(n > 0);
}

// ---- c360.toml and job files ---------------------------------------------------------------

const CONFIG: &str = r#"
[project]
name = "fuzz"
[store]
uri = "store"
[source]
uri = "data"
[paths]
features = "features"
models = "models"
jobs = "jobs"
[service]
bind = "127.0.0.1:0"
scheduler = false
lease_seconds = 60
reload_seconds = 2.0
shutdown_grace_seconds = 30
tokens_env = "C360_FUZZ_NO_SUCH_TOKENS"
[[service.tokens]]
name = "ops"
sha256 = "3f79bb7b435b05321651daefd374cdc681dc06faa65e374e38337b88ca046dea"
role = "operator"
[[service.roles]]
name = "analyst"
actions = ["read_runs", "read_products"]
tags = []
[aws]
region = "eu-west-1"
multipart_threshold_mb = 16
multipart_part_mb = 8
max_attempts = 8
[aws.sagemaker]
poll_seconds = 5.0
max_poll_seconds = 60.0
throughput_rows_per_vcpu = 20000.0
deadline_minutes = 60.0
max_instances = 20
"#;

#[test]
fn fuzz_config_and_jobs() {
    use c360::project::{Config as ProjectConfig, Project};
    use c360::service::ServiceConfig;
    let config: toml::Value = toml::from_str(CONFIG).expect("base config");
    let job_text =
        std::fs::read_to_string(repo().join("jobs/churn_weekly.toml")).expect("shipped job");
    let mut job: toml::Value = toml::from_str(&job_text).expect("job TOML");
    // Every pin set, so that mutations reach each of them.
    if let Some(toml::Value::Table(t)) = job.get_mut("transform") {
        for (k, v) in [
            ("parts", 8),
            ("instance_count", 2),
            ("max_concurrent_transforms", 8),
            ("max_payload_mb", 6),
            ("invocation_timeout_secs", 600),
            ("invocation_max_retries", 1),
        ] {
            t.insert(k.into(), toml::Value::Integer(v));
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let job_file = dir.path().join("fuzz_job.toml");
    let strategy = (
        any::<bool>(),
        prop::collection::vec(toml_op_s(), 1..4),
        prop::option::weighted(0.15, (any::<Index>(), any_text(4))),
    );
    let n = fuzz(
        "fuzz_config_and_jobs",
        32,
        strategy,
        |(is_job, ops, raw)| {
            let mut doc = if is_job { job.clone() } else { config.clone() };
            for op in &ops {
                apply_toml_op(&mut doc, op, "product");
            }
            let Ok(mut text) = toml::to_string(&doc) else {
                return Ok(());
            };
            if let Some((at, ins)) = &raw {
                text = insert_chars(&text, at, ins);
            }
            if is_job {
                std::fs::write(&job_file, &text).unwrap();
                match c360::pipeline::job::load(&job_file) {
                    Ok(j) => {
                        let t = &j.transform;
                        prop_assert!(t.pins.instance_count.is_none_or(|n| (1..=100).contains(&n)));
                        prop_assert!(t.pins.max_concurrent_transforms.is_none_or(|n| n <= 100));
                    }
                    Err(errs) => {
                        prop_assert!(!errs.is_empty());
                        for e in &errs {
                            prop_assert!(!e.key.is_empty() && !e.reason.is_empty(), "{:?}", e);
                        }
                    }
                }
                return Ok(());
            }
            // c360.toml: parse, then the pure checks `Project::load` runs (without touching the
            // process-wide AWS settings other tests use).
            let Ok(cfg) = toml::from_str::<ProjectConfig>(&text) else {
                return Ok(());
            };
            for e in cfg.aws.validate(false) {
                prop_assert!(e.key.starts_with("aws.") && !e.reason.is_empty());
            }
            let checked = cfg.service.as_ref().map(|s| s.durations());
            let project = Project {
                root: dir.path().to_path_buf(),
                config_file: None,
                config: cfg,
            };
            match ServiceConfig::from_project(&project, None) {
                Ok(sc) => {
                    prop_assert!(!matches!(checked, Some(Err(_))));
                    prop_assert!(sc.grace <= Duration::from_secs(86_400));
                    prop_assert!(sc.lease >= Duration::from_secs(1));
                    prop_assert!(sc.lease <= Duration::from_secs(86_400));
                    // The deadlines computed from them cannot overflow.
                    let _ = tokio::time::Instant::now() + sc.grace + sc.lease + sc.reload;
                    let _ = chrono::Utc::now()
                        + chrono::Duration::from_std(sc.lease).unwrap_or_default();
                }
                Err(e) => prop_assert!(!e.to_string().is_empty()),
            }
            Ok(())
        },
    );
    assert!(n > 0);
}
