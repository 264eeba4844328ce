//! Unit tests of the source module: normalisation rules, id checks, the customer map,
//! enum codes and the batch plan.

use super::batched::{batch_plan, enum_codes};
use super::check::contains_control;
use super::customer_map::{customer_keys, CustomerMap};
use super::days::DAY_OUT_OF_RANGE;
use super::normalise::normalise;
use super::{table_spec, ColType, Source};
use polars::prelude::*;

#[test]
fn control_characters_are_unicode_cc() {
    for bad in [
        "a\nb", "\r", "\t1", "\u{0}", "x\u{1f}", "\u{7f}", "C1\u{85}", "\u{80}", "\u{9f}z",
    ] {
        assert!(contains_control(bad), "{bad:?}");
    }
    // Not Cc, Cf, Zl or Zp: printable non-ASCII, NBSP inside an id, emoji.
    for ok in [
        "C0001",
        "Zoë",
        "a\u{a0}b",
        "\u{a9}",
        "€5",
        "\u{1f600}",
        " 1 ",
    ] {
        assert!(!contains_control(ok), "{ok:?}");
    }
}

/// Format (Cf) and separator (Zl, Zp) characters and empty or blank ids are refused
/// like control characters; every other character is kept.
#[test]
fn ids_refuse_format_separator_characters_and_blank_text() {
    for bad in [
        "",
        " ",
        "   ",
        "\u{a0}",
        "\u{3000}",
        "10\u{202e}03",
        "1003\u{2028}",
        "\u{2029}1003",
        "x\u{200b}",
        "\u{feff}1003",
        "\u{2066}1003\u{2069}",
        "\u{61c}1003",
        "10\u{ad}03",
        "1003\u{e0041}",
        "\u{200d}",
    ] {
        assert!(contains_control(bad), "{bad:?}");
    }
    assert_eq!(
        super::error::escape_text("a\u{1b}[2J\u{7}b\nERROR \u{202e}x\0\t\"q\" é"),
        "a\\u{1b}[2J\\u{7}b\\nERROR \\u{202e}x\\0\\t\"q\" é"
    );
}

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

/// A control character in an id stops the batched reader (it changes nothing), and the
/// whole-table check names table, column and row; a clean table passes both.
#[test]
fn control_character_ids_fail_the_batched_and_the_whole_table_checks() {
    let base =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/encodings/baseline");
    let dir = tempfile::tempdir().expect("tmp");
    for t in ["customers", "orders", "interactions", "support_tickets"] {
        std::fs::copy(
            base.join(format!("{t}.parquet")),
            dir.path().join(format!("{t}.parquet")),
        )
        .expect("copy");
    }
    let src = Source::open(&dir.path().display().to_string()).expect("source");
    let cols: std::collections::BTreeSet<String> =
        ["amount".to_string(), "status".to_string()].into();
    let load = |src: &Source| {
        let spec = |n| table_spec(n).expect("contract table");
        let mut customers = src.scan(spec("customers"), &[]).expect("customers");
        customers.collect().expect("customers read");
        customers.check(None).expect("customers pass");
        let orders = src.scan(spec("orders"), &[]).expect("orders");
        (customers, orders)
    };
    let (customers, mut orders) = load(&src);
    assert!(
        orders
            .load_trimmed(&customers, &cols, None)
            .expect("batches"),
        "a clean table passes the batched checks"
    );

    let orders_file = dir.path().join("orders.parquet");
    let mut df = ParquetReader::new(std::fs::File::open(&orders_file).expect("open"))
        .finish()
        .expect("read")
        .lazy()
        .with_column(
            when(col("order_id").eq(lit("50011")))
                .then(lit("500\u{85}11"))
                .otherwise(col("order_id"))
                .alias("order_id"),
        )
        .collect()
        .expect("changed");
    ParquetWriter::new(std::fs::File::create(&orders_file).expect("create"))
        .finish(&mut df)
        .expect("write");
    let (customers, mut orders) = load(&src);
    assert!(
        !orders
            .load_trimmed(&customers, &cols, None)
            .expect("batches"),
        "the batched checks refuse a control character"
    );
    orders.collect().expect("read");
    let err = orders
        .check(Some(&customers))
        .expect_err("whole-table check refuses it")
        .to_string();
    for n in [
        "table orders, column order_id: 1 row(s) are empty or blank, or contain a control character",
        r#"order_id="500\u{85}11""#,
        r#"customer_id="1004""#,
    ] {
        assert!(err.contains(n), "{n:?} in {err}");
    }
}

#[test]
fn customer_map_finds_every_id_in_any_order() {
    // Short (inline) and long ids, a null row; enough rows that the table probes wrap.
    let mut ids: Vec<Option<String>> = (0..5000).map(|i| Some(format!("C{i}"))).collect();
    ids[7] = None;
    ids[9] = Some("a-customer-id-longer-than-twelve".into());
    ids[10] = Some(String::new());
    let ca = StringChunked::from_iter_options("customer_id".into(), ids.iter().cloned());
    let map = CustomerMap::build(&ca);
    // Events in the customers' order (the next-row path), reversed and strided (the
    // table), with repeats (the run path).
    let mut events: Vec<(String, u32)> = Vec::new();
    for (row, id) in ids.iter().enumerate() {
        if let Some(id) = id {
            events.push((id.clone(), row as u32));
            events.push((id.clone(), row as u32));
        }
    }
    let forward = events.clone();
    events.reverse();
    let strided: Vec<_> = (0..events.len())
        .map(|i| events[(i * 7919) % events.len()].clone())
        .collect();
    for order in [forward, events, strided] {
        let col = StringChunked::from_iter_values(
            "customer_id".into(),
            order.iter().map(|(id, _)| id.as_str()),
        )
        .into_column();
        let keys = customer_keys(&col, &map).unwrap().expect("all known");
        let want: Vec<u32> = order.iter().map(|(_, r)| *r).collect();
        assert_eq!(keys.into_no_null_iter().collect::<Vec<_>>(), want);
    }
    // Unknown ids (short, long, and one that differs from a known id in its last
    // byte) and nulls are not found.
    for unknown in ["C5000", "C05", "a-customer-id-longer-than-twelvX", "D1"] {
        let col =
            StringChunked::from_iter_values("customer_id".into(), ["C1", unknown].into_iter())
                .into_column();
        assert!(customer_keys(&col, &map).unwrap().is_none(), "{unknown}");
    }
    let col =
        StringChunked::from_iter_options("customer_id".into(), [Some("C1"), None].into_iter())
            .into_column();
    assert!(customer_keys(&col, &map).unwrap().is_none());
}

#[test]
fn enum_codes_are_indexes_and_reject_other_values() {
    let allowed = ["web_visit", "app_login", "a_value_longer_than_12"];
    let values: Vec<&str> = (0..300).map(|i| allowed[(i * 5) % 3]).collect();
    let ca = StringChunked::from_iter_values("event_type".into(), values.iter().copied());
    let codes = enum_codes(&ca, &allowed).expect("all allowed");
    let want: Vec<u8> = (0..300).map(|i| ((i * 5) % 3) as u8).collect();
    assert_eq!(codes.into_no_null_iter().collect::<Vec<_>>(), want);
    for bad in ["web_visiT", "", "a_value_longer_than_13"] {
        let ca = StringChunked::from_iter_values(
            "event_type".into(),
            ["web_visit", bad, "app_login"].into_iter(),
        );
        assert!(enum_codes(&ca, &allowed).is_none(), "{bad}");
    }
    let ca = StringChunked::from_iter_options(
        "event_type".into(),
        [Some("web_visit"), None].into_iter(),
    );
    assert!(enum_codes(&ca, &allowed).is_none());
}

#[test]
fn batches_follow_row_groups() {
    // Whole groups; small neighbours merged up to the size.
    assert_eq!(
        batch_plan(vec![40, 50, 30, 100], 220, 100),
        vec![(0, 90), (90, 30), (120, 100)]
    );
    // A group a little over the size stays whole; a large one is cut in equal parts
    // and nothing joins a cut part.
    assert_eq!(
        batch_plan(vec![120, 250, 10], 380, 100),
        vec![(0, 120), (120, 84), (204, 84), (288, 82), (370, 10)]
    );
    // Metadata that does not add up (e.g. a filtered scan): fixed batches.
    assert_eq!(
        batch_plan(vec![10, 10], 250, 100),
        vec![(0, 84), (84, 84), (168, 82)]
    );
    assert_eq!(batch_plan(vec![], 0, 100), vec![]);
    assert_eq!(batch_plan(vec![0, 5, 0], 5, 100), vec![(0, 5)]);
}
