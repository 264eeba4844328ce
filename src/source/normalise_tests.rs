//! Unit tests of normalisation: every producer encoding by its documented rule, and the
//! refused types named with a fix.

use polars::prelude::*;

use super::*;
use crate::source::days::DAY_OUT_OF_RANGE;

fn column(name: &str, values: &[Option<&str>], dt: DataType) -> Column {
    Series::new(name.into(), values)
        .strict_cast(&dt)
        .expect("test column")
        .into_column()
}

/// The normalised values of a column and the rows its raw check finds bad.
fn read(df: &DataFrame, name: &'static str, ty: ColType) -> (Column, Option<Vec<bool>>) {
    let dt = df.column(name).expect("column").dtype().clone();
    let (e, check) = normalise("t", name, ty, &dt).expect("readable");
    let out = df
        .clone()
        .lazy()
        .select([e.alias(name)])
        .collect()
        .expect("normalised");
    let bad = check.map(|c| {
        let b = df
            .clone()
            .lazy()
            .select([c.bad.fill_null(lit(false)).alias("b")])
            .collect()
            .expect("check");
        b.column("b")
            .expect("b")
            .bool()
            .expect("bool")
            .iter()
            .map(|v| v.unwrap_or(false))
            .collect()
    });
    (out.column(name).expect("out").clone(), bad)
}

#[test]
fn producer_types_normalise_by_the_documented_rules() {
    let df = DataFrame::new_infer_height(vec![
        column(
            "amount",
            &[Some("19.99"), Some("0.07"), Some("12345678.91"), None],
            DataType::Decimal(18, 2),
        ),
        column(
            "wide",
            &[
                Some("1234567890.1234567891"),
                Some("0.1"),
                Some("-3.3"),
                Some("99999999999999999999.9999999999"),
            ],
            DataType::Decimal(38, 10),
        ),
        column(
            "id",
            &[Some("1001"), Some("9999999999"), Some("0"), None],
            DataType::Decimal(10, 0),
        ),
        column(
            "status",
            &[Some("completed"), Some("returned"), Some("completed"), None],
            DataType::from_categories(Categories::global()),
        ),
        column(
            "csat",
            &[Some("4.00"), Some("1.00"), Some("4.50"), None],
            DataType::Decimal(5, 2),
        ),
        column(
            "small",
            &[Some("1"), Some("5"), Some("3"), None],
            DataType::Int8,
        ),
        column(
            "huge",
            &[Some("18446744073709551615"), Some("3"), None, Some("2")],
            DataType::UInt64,
        ),
        column(
            "fcsat",
            &[Some("2.0"), Some("1e30"), Some("NaN"), Some("2.5")],
            DataType::Float64,
        ),
        column(
            "f32",
            &[Some("0.5"), Some("3.25"), None, Some("1e-3")],
            DataType::Float32,
        ),
    ])
    .expect("frame");
    let f64s = |c: &Column| c.f64().expect("f64").iter().collect::<Vec<_>>();
    let (amount, check) = read(&df, "amount", ColType::Float);
    assert!(check.is_none());
    assert_eq!(
        f64s(&amount),
        [Some(19.99), Some(0.07), Some(12345678.91), None]
    );
    // Wider than 15 digits: still the nearest Float64 (through the exact text).
    let (wide, _) = read(&df, "wide", ColType::Float);
    let nearest = |s: &str| s.parse::<f64>().ok();
    assert_eq!(
        f64s(&wide),
        [
            nearest("1234567890.1234567891"),
            Some(0.1),
            Some(-3.3),
            nearest("99999999999999999999.9999999999"),
        ]
    );
    let (f32s, _) = read(&df, "f32", ColType::Float);
    assert_eq!(
        f64s(&f32s),
        [Some(0.5), Some(3.25), None, Some(0.001f32 as f64)]
    );
    let strs = |c: &Column| {
        c.str()
            .expect("str")
            .iter()
            .map(|v| v.map(str::to_string))
            .collect::<Vec<_>>()
    };
    let (id, _) = read(&df, "id", ColType::Str);
    assert_eq!(
        strs(&id),
        [
            Some("1001".into()),
            Some("9999999999".into()),
            Some("0".into()),
            None
        ]
    );
    let (status, _) = read(&df, "status", ColType::Str);
    assert_eq!(
        strs(&status),
        [
            Some("completed".into()),
            Some("returned".into()),
            Some("completed".into()),
            None
        ]
    );
    let i64s = |c: &Column| c.i64().expect("i64").iter().collect::<Vec<_>>();
    let (csat, bad) = read(&df, "csat", ColType::Int);
    assert_eq!(i64s(&csat)[..2], [Some(4), Some(1)]);
    assert_eq!(
        bad,
        Some(vec![false, false, true, false]),
        "4.50 is not whole"
    );
    let (small, bad) = read(&df, "small", ColType::Int);
    assert_eq!(i64s(&small), [Some(1), Some(5), Some(3), None]);
    assert!(bad.is_none(), "int8 always fits");
    let (_, bad) = read(&df, "huge", ColType::Int);
    assert_eq!(bad, Some(vec![true, false, false, false]), "beyond Int64");
    // Days outside the supported dates become the marker the contract check reports.
    let days = DataFrame::new_infer_height(vec![
        Column::new(
            "ms".into(),
            [Some(1i64 << 62), Some(-(1i64 << 62)), Some(0), None],
        )
        .cast(&DataType::Datetime(TimeUnit::Milliseconds, None))
        .expect("ms"),
        Column::new(
            "d".into(),
            [Some(i32::MAX), Some(i32::MIN + 1), Some(19904), None],
        )
        .cast(&DataType::Date)
        .expect("date"),
    ])
    .expect("days");
    let out = DAY_OUT_OF_RANGE;
    for (name, want) in [
        ("ms", [Some(out), Some(out), Some(0), None]),
        ("d", [Some(out), Some(out), Some(19904), None]),
    ] {
        let (c, check) = read(&days, name, ColType::Timestamp);
        assert!(check.is_none());
        let got: Vec<Option<i32>> = c.i32().expect("i32").iter().collect();
        assert_eq!(got, want, "{name}");
    }
    let (_, bad) = read(&df, "fcsat", ColType::Int);
    assert_eq!(bad, Some(vec![false, true, true, true]), "1e30, NaN, 2.5");
}

#[test]
fn types_that_cannot_stand_for_a_contract_column_are_named_with_a_fix() {
    let cases: Vec<(ColType, DataType, &str)> = vec![
        (
            ColType::Timestamp,
            DataType::Time,
            "a time of day has no date",
        ),
        (
            ColType::Timestamp,
            DataType::Duration(TimeUnit::Milliseconds),
            "a duration is not a point in time",
        ),
        (
            ColType::Timestamp,
            DataType::String,
            "text is not read as a timestamp",
        ),
        (ColType::Str, DataType::Binary, "bytes are not text"),
        (
            ColType::Str,
            DataType::Decimal(10, 2),
            "a DECIMAL with a fraction is not an id",
        ),
        (ColType::Str, DataType::Float64, "write it as text"),
        (
            ColType::Float,
            DataType::Struct(vec![Field::new("v".into(), DataType::Float64)]),
            "a nested value is not a single value",
        ),
        (
            ColType::Float,
            DataType::Decimal(60, 2),
            "DECIMAL precision above 38 is not supported",
        ),
        (ColType::Float, DataType::String, "write it as numbers"),
        (
            ColType::Int,
            DataType::List(Box::new(DataType::Int64)),
            "a nested value",
        ),
        (ColType::Bool, DataType::Int8, "write it as booleans"),
    ];
    for (ty, dt, hint) in cases {
        let err = normalise("orders", "x", ty, &dt)
            .err()
            .unwrap_or_else(|| panic!("{dt} refused as {ty:?}"))
            .to_string();
        for n in [
            "table orders",
            "column x",
            &format!("has type {dt}"),
            &format!("cannot be read as {}", ty.name()),
            hint,
        ] {
            assert!(err.contains(n), "{dt} as {ty:?}: {n:?} in {err}");
        }
    }
}
