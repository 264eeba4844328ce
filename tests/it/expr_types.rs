//! Derived features keep their operands' types: a float feature combined with an integer
//! literal stays a float in every operation (it was cast to an integer and truncated when
//! the compiler did not know the feature's type: `abs(101.5 - 100)` gave 1).

use c360::features;
use c360::source::Source;
use polars::prelude::*;

use crate::features::edge;

const SET: &str = r#"
name = "typed"
version = 1

[[feature]]
name = "spend"
table = "orders"
agg = "sum"
column = "amount"

[[feature]]
name = "n"
table = "orders"
agg = "count"

[[feature]]
name = "minus_100"
expr = "spend - 100"

[[feature]]
name = "abs_minus_100"
expr = "abs(spend - 100)"

[[feature]]
name = "times_3"
expr = "spend * 3"

[[feature]]
name = "plus_1"
expr = "1 + spend"

[[feature]]
name = "max_1"
expr = "max(spend, 1)"

[[feature]]
name = "min_1"
expr = "min(spend, 1)"

[[feature]]
name = "or_0"
expr = "coalesce(spend, 0)"

[[feature]]
name = "if_positive"
expr = "if(spend > 0, spend, 0)"

[[feature]]
name = "n_plus_half"
expr = "n + 0.5"
"#;

fn f64s(df: &DataFrame, name: &str) -> Vec<Option<f64>> {
    let c = df.column(name).expect(name);
    assert_eq!(c.dtype(), &DataType::Float64, "{name} is a float column");
    c.f64().expect(name).iter().collect()
}

#[test]
fn float_features_with_integer_literals_stay_floats() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("typed.toml"), SET).expect("write set");
    let set = features::find_set(dir.path(), "typed").expect("set validates");
    let src = Source::open(&edge().display().to_string()).expect("source");
    let loaded = features::load_tables(&set, &src, &[]).expect("edge tables load");
    let as_of = chrono::NaiveDate::from_ymd_opt(2024, 6, 30).expect("date");
    let df = features::snapshot(&set, &loaded, as_of).expect("snapshot");
    let spend = f64s(&df, "spend");
    let n: Vec<Option<i64>> = df
        .column("n")
        .expect("n")
        .cast(&DataType::Int64)
        .expect("n as i64")
        .i64()
        .expect("n")
        .iter()
        .collect();
    // The edge data must hold spends with cents, or truncation would go unseen.
    let fractional = spend
        .iter()
        .flatten()
        .filter(|s| s.fract() != 0.0 && s.abs() > 1.0)
        .count();
    assert!(fractional >= 3, "only {fractional} fractional spends");
    let checks: [(&str, &dyn Fn(f64) -> f64); 8] = [
        ("minus_100", &|s| s - 100.0),
        ("abs_minus_100", &|s| (s - 100.0).abs()),
        ("times_3", &|s| s * 3.0),
        ("plus_1", &|s| 1.0 + s),
        ("max_1", &|s| s.max(1.0)),
        ("min_1", &|s| s.min(1.0)),
        ("or_0", &|s| s),
        ("if_positive", &|s| if s > 0.0 { s } else { 0.0 }),
    ];
    for (name, f) in checks {
        let got = f64s(&df, name);
        for (i, (g, s)) in got.iter().zip(&spend).enumerate() {
            let want = s.map(f);
            assert_eq!(*g, want, "{name} row {i}: spend {s:?}");
        }
    }
    for (i, (g, c)) in f64s(&df, "n_plus_half").iter().zip(&n).enumerate() {
        assert_eq!(*g, c.map(|c| c as f64 + 0.5), "n_plus_half row {i}");
    }
}

const EXTRA_SET: &str = r#"
name = "typed_extra"
version = 1

[columns.orders]
discount = "float"

[[feature]]
name = "n"
table = "orders"
agg = "count"

[[feature]]
name = "discount_x2"
table = "orders"
agg = "sum"
column = "discount * 2"

[[feature]]
name = "discount_plus_1"
table = "orders"
agg = "max"
column = "discount + 1"

[[feature]]
name = "n_discount_x4_at_least_1"
table = "orders"
agg = "count"
where = "discount * 4 >= 1"
"#;

/// The same for a declared extra column (`[columns.orders] discount = "float"`) in an
/// aggregation's column and filter: `discount * 2` summed gave 0 for discounts of 0.25.
#[test]
fn declared_float_columns_with_integer_literals_stay_floats() {
    let dir = tempfile::tempdir().expect("temp dir");
    let src_dir = dir.path().join("source");
    std::fs::create_dir(&src_dir).expect("source dir");
    for t in ["customers", "orders", "interactions", "support_tickets"] {
        let from = edge().join(format!("{t}.parquet"));
        let to = src_dir.join(format!("{t}.parquet"));
        if t == "orders" {
            let mut df = LazyFrame::scan_parquet(
                PlRefPath::new(from.display().to_string()),
                ScanArgsParquet::default(),
            )
            .expect("scan orders")
            .with_column(lit(0.25f64).alias("discount"))
            .collect()
            .expect("orders");
            let f = std::fs::File::create(&to).expect("create orders");
            ParquetWriter::new(f).finish(&mut df).expect("write orders");
        } else {
            std::fs::copy(&from, &to).expect("copy table");
        }
    }
    std::fs::write(dir.path().join("typed_extra.toml"), EXTRA_SET).expect("write set");
    let set = features::find_set(dir.path(), "typed_extra").expect("set validates");
    let src = Source::open(&src_dir.display().to_string()).expect("source");
    let loaded = features::load_tables(&set, &src, &[]).expect("tables load");
    let as_of = chrono::NaiveDate::from_ymd_opt(2024, 6, 30).expect("date");
    let df = features::snapshot(&set, &loaded, as_of).expect("snapshot");
    let ints = |name: &str| -> Vec<Option<i64>> {
        df.column(name)
            .expect(name)
            .cast(&DataType::Int64)
            .expect(name)
            .i64()
            .expect(name)
            .iter()
            .collect()
    };
    let n = ints("n");
    assert!(
        n.iter().flatten().any(|&c| c > 0),
        "some customers have orders"
    );
    let x2 = f64s(&df, "discount_x2");
    let plus_1 = f64s(&df, "discount_plus_1");
    let at_least = ints("n_discount_x4_at_least_1");
    for (i, c) in n.iter().enumerate() {
        let c = c.unwrap_or(0);
        assert_eq!(x2[i], Some(0.5 * c as f64), "discount_x2 row {i}");
        assert_eq!(
            plus_1[i],
            (c > 0).then_some(1.25),
            "discount_plus_1 row {i}"
        );
        assert_eq!(at_least[i], Some(c), "n_discount_x4_at_least_1 row {i}");
    }
    // A training set (the event sweep compiles the same expressions) gives the snapshot's
    // values at its date.
    let ids = df.column("customer_id").expect("ids").clone();
    let dates = Column::new("as_of".into(), vec!["2024-06-30"; ids.len()]);
    let spine = DataFrame::new_infer_height(vec![ids, dates]).expect("spine");
    let spine_path = dir.path().join("spine.csv");
    let mut spine = spine;
    CsvWriter::new(std::fs::File::create(&spine_path).expect("spine file"))
        .finish(&mut spine)
        .expect("write spine");
    let spine = features::read_spine(&spine_path).expect("spine reads");
    let ts =
        features::training_set(&set, &loaded, &spine, "spine.csv", None).expect("training set");
    assert_eq!(ts.height(), df.height());
    for c in ["discount_x2", "discount_plus_1"] {
        assert_eq!(f64s(&ts, c), f64s(&df, c), "training set {c}");
    }
}
