//! Unit tests of the value checks: which ids are unusable, escaping in messages, and a
//! control character caught by both the batched and the whole-table checks.

use polars::prelude::*;

use super::*;
use crate::source::error::escape_text;
use crate::source::{table_spec, Source};

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
        escape_text("a\u{1b}[2J\u{7}b\nERROR \u{202e}x\0\t\"q\" é"),
        "a\\u{1b}[2J\\u{7}b\\nERROR \\u{202e}x\\0\\t\"q\" é"
    );
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
