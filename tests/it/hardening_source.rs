//! Issue 19, source hardening: every encoding a producer writes (pandas, Spark,
//! warehouses) is read by its documented rule or refused clearly, and ids with control
//! characters are contract violations. Fixtures: `tests/fixtures/encodings/<case>/`,
//! written by `scripts/fixtures/make_encodings.py` (same rows in every case, encodings
//! differ).

use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::features::{c360, repo};

const AS_OF: &str = "2024-06-30";

fn case(name: &str) -> PathBuf {
    repo().join("tests/fixtures/encodings").join(name)
}

fn parquet_files(p: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let path = e.path();
            if path.is_dir() {
                parquet_files(&path, out);
            } else if path.extension().is_some_and(|x| x == "parquet") {
                out.push(path);
            }
        }
    }
}

/// Runs `c360 features build <set>` on a source; returns (exit code, stderr, store).
fn build(source: &Path, set: &str) -> (i32, String, tempfile::TempDir) {
    let store = tempfile::tempdir().expect("store");
    let out = c360()
        .args(["features", "build", set, "--as-of", AS_OF, "--source"])
        .arg(source)
        .arg("--store")
        .arg(store.path())
        .output()
        .expect("run c360");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).to_string(),
        store,
    )
}

/// The published features of a successful build, sorted by customer_id.
fn built(source: &Path, set: &str) -> DataFrame {
    let (code, stderr, store) = build(source, set);
    assert_eq!(code, 0, "{set} on {}: {stderr}", source.display());
    let mut files = Vec::new();
    parquet_files(&store.path().join("features").join(set), &mut files);
    assert!(!files.is_empty(), "{set}: a published part");
    let mut df: Option<DataFrame> = None;
    for f in files {
        let part = ParquetReader::new(std::fs::File::open(&f).expect("part"))
            .finish()
            .expect("read part");
        match &mut df {
            Some(d) => {
                d.vstack_mut(&part).expect("stack");
            }
            None => df = Some(part),
        }
    }
    df.expect("parts")
        .sort(["customer_id"], SortMultipleOptions::default())
        .expect("sort")
}

fn f64_of(df: &DataFrame, column: &str, id: &str) -> Option<f64> {
    let ids = df.column("customer_id").expect("ids");
    let i = (0..df.height())
        .find(|i| {
            ids.get(*i)
                .ok()
                .and_then(|v| v.get_str().map(str::to_string))
                == Some(id.into())
        })
        .unwrap_or_else(|| panic!("customer {id} in the features"));
    df.column(column)
        .expect("column")
        .get(i)
        .expect("row")
        .extract::<f64>()
}

/// Every readable producer encoding gives exactly (bit for bit) the baseline's features,
/// and the baseline's features are the right values.
#[test]
fn every_producer_encoding_gives_exactly_the_baseline_features() {
    let rfm = built(&case("baseline"), "rfm");
    let churn = built(&case("baseline"), "churn_signals");
    assert_eq!(rfm.height(), 8, "eight customers");
    // 1001: completed 19.99 + 5.01 + 120.10 by 2024-06-30 (0.10 returned; later orders
    // after the as-of). 1007: one order of 12345678.91.
    let total = f64_of(&rfm, "monetary_total", "1001").expect("1001 bought");
    assert!((total - 145.10).abs() < 1e-9, "1001 monetary_total {total}");
    assert_eq!(f64_of(&rfm, "frequency_orders", "1001"), Some(3.0));
    assert_eq!(
        f64_of(&rfm, "monetary_total", "1007"),
        Some(12345678.91),
        "a DECIMAL amount is the Float64 nearest to it"
    );
    assert_eq!(f64_of(&rfm, "frequency_orders", "1002"), Some(2.0));
    // csat of 1004's tickets resolved within 365 days: 5 (1 resolved after the as-of).
    assert_eq!(f64_of(&churn, "avg_csat_365d", "1004"), Some(5.0));
    // 1001's ticket of 2024-06-20 is not resolved.
    assert_eq!(f64_of(&churn, "open_tickets", "1001"), Some(1.0));

    for c in ["pandas", "pandas_codes", "spark", "warehouse", "extras"] {
        for (set, want) in [("rfm", &rfm), ("churn_signals", &churn)] {
            let got = built(&case(c), set);
            assert!(
                got.equals_missing(want),
                "{set} on the {c} encoding differs from the baseline:\n{got}\nexpected:\n{want}"
            );
        }
    }
}

/// Encodings that cannot stand for a contract column exit 4 naming table, column and type
/// (and, for a fractional DECIMAL csat, an example row), and commit nothing.
#[test]
fn unreadable_encodings_are_refused_naming_table_column_and_type() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "bad_decimal_csat",
            "churn_signals",
            &[
                "support_tickets",
                "csat",
                "are not whole numbers",
                "4.5",
                "ticket_id=\"70004\"",
            ],
        ),
        (
            "bad_time_order_ts",
            "rfm",
            &[
                "orders",
                "order_ts",
                "time",
                "cannot be read as Datetime",
                "a time of day has no date",
            ],
        ),
        (
            "bad_far_order_ts",
            "rfm",
            &[
                "table orders, column order_ts: 1 row(s)",
                "outside the supported dates",
                "order_id=\"50008\"",
            ],
        ),
        (
            "bad_binary_id",
            "churn_signals",
            &[
                "interactions",
                "customer_id",
                "binary",
                "cannot be read as Utf8",
                "bytes are not text",
            ],
        ),
        (
            "bad_decimal_id",
            "rfm",
            &[
                "orders",
                "order_id",
                "decimal",
                "a DECIMAL with a fraction is not an id",
            ],
        ),
        (
            "bad_polars_metadata",
            "rfm",
            &[
                "table orders",
                "orders.parquet",
                "the reader failed on malformed data or metadata",
            ],
        ),
        (
            "bad_struct_amount",
            "rfm",
            &["orders", "amount", "struct", "cannot be read as Float64"],
        ),
        (
            "bad_offset_tz_order_ts",
            "rfm",
            &[
                "table orders: column order_ts",
                "time zone +05:30",
                "write the column in UTC or with an IANA zone",
            ],
        ),
    ];
    for (c, set, needles) in cases {
        let (code, stderr, store) = build(&case(c), set);
        assert_eq!(code, 4, "{c}: exit 4 for bad input; stderr: {stderr}");
        for n in *needles {
            assert!(
                stderr.contains(n),
                "{c}: error should mention {n:?}: {stderr}"
            );
        }
        assert!(!stderr.contains("panicked"), "{c}: no panic: {stderr}");
        let mut files = Vec::new();
        parquet_files(store.path(), &mut files);
        assert!(files.is_empty(), "{c}: nothing published: {files:?}");
    }
}

/// The baseline source with `column` of `table` set to `value` on the row whose `key` is
/// `row`.
fn with_id(table: &str, key: &str, row: &str, column: &str, value: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    for t in ["customers", "orders", "interactions", "support_tickets"] {
        let src = case("baseline").join(format!("{t}.parquet"));
        let dst = dir.path().join(format!("{t}.parquet"));
        if t == table {
            let mut df = LazyFrame::scan_parquet(
                PlRefPath::new(src.display().to_string()),
                Default::default(),
            )
            .expect("scan")
            .with_column(
                when(col(key).eq(lit(row)))
                    .then(lit(value.to_string()))
                    .otherwise(col(column))
                    .alias(column),
            )
            .collect()
            .expect("changed table");
            ParquetWriter::new(std::fs::File::create(&dst).expect("create"))
                .finish(&mut df)
                .expect("write");
        } else {
            std::fs::copy(&src, &dst).expect("copy");
        }
    }
    dir
}

/// An id with a control character (newline, tab, NEL, carriage return) in any id column
/// of any table is refused at the source: exit 4, table, column and the example row with
/// the character escaped, nothing published.
#[test]
fn ids_with_control_characters_are_refused_at_the_source() {
    let cases = [
        // (table, key, row, column, value, set, example)
        (
            "customers",
            "customer_id",
            "1003",
            "customer_id",
            "10\n03",
            "rfm",
            r#"customer_id="10\n03""#,
        ),
        (
            "orders",
            "order_id",
            "50005",
            "order_id",
            "500\t05",
            "rfm",
            r#"order_id="500\t05""#,
        ),
        (
            "support_tickets",
            "ticket_id",
            "70003",
            "ticket_id",
            "70003\u{85}",
            "churn_signals",
            r#"ticket_id="70003\u{85}""#,
        ),
        (
            "interactions",
            "customer_id",
            "1005",
            "customer_id",
            "1005\r",
            "churn_signals",
            r#"customer_id="1005\r""#,
        ),
        (
            "orders",
            "order_id",
            "50009",
            "customer_id",
            "\u{0}1004",
            "rfm",
            r#"customer_id="\01004""#,
        ),
    ];
    for case in cases {
        refused_id(case, "control character");
    }
}

/// Damaged bytes anywhere in a Parquet file (header, pages, footer) give a build that
/// either succeeds or exits 4 naming the table: never a panic or another exit code.
#[test]
fn damaged_parquet_bytes_give_a_clear_error_never_a_panic() {
    let base = case("baseline");
    for table in ["orders", "support_tickets"] {
        let data = std::fs::read(base.join(format!("{table}.parquet"))).expect("fixture");
        let n = data.len();
        // Offsets spread over the file, and every byte of the footer's last 16.
        let offsets: Vec<usize> = (0..24)
            .map(|i| (i * 7919 + i * i) % n)
            .chain(n.saturating_sub(16)..n)
            .collect();
        for (i, off) in offsets.into_iter().enumerate() {
            let dir = tempfile::tempdir().expect("tmp");
            for t in ["customers", "orders", "interactions", "support_tickets"] {
                std::fs::copy(
                    base.join(format!("{t}.parquet")),
                    dir.path().join(format!("{t}.parquet")),
                )
                .expect("copy");
            }
            let mut bad = data.clone();
            bad[off] ^= if i % 2 == 0 { 0xff } else { 0x5a };
            std::fs::write(dir.path().join(format!("{table}.parquet")), &bad).expect("write");
            let (code, stderr, _store) = build(dir.path(), "churn_signals");
            assert!(
                code == 0 || code == 4,
                "{table} byte {off}: exit {code} (0 or 4 expected): {stderr}"
            );
            assert!(!stderr.contains("panicked"), "{table} byte {off}: {stderr}");
            if code == 4 {
                assert!(
                    stderr.contains(&format!("table {table}")),
                    "{table} byte {off}: the error names the table: {stderr}"
                );
            }
        }
    }
}

/// A partitioned table whose files disagree on a column no feature reads (a DECIMAL in
/// one file, text in another, missing in a third) builds the baseline's features; a
/// disagreement on a column the features read is still named.
#[test]
fn files_may_disagree_on_columns_no_feature_reads() {
    let base = case("baseline");
    let dir = tempfile::tempdir().expect("tmp");
    for t in ["customers", "interactions", "support_tickets"] {
        std::fs::copy(
            base.join(format!("{t}.parquet")),
            dir.path().join(format!("{t}.parquet")),
        )
        .expect("copy");
    }
    let orders = ParquetReader::new(std::fs::File::open(base.join("orders.parquet")).expect("o"))
        .finish()
        .expect("orders");
    std::fs::create_dir(dir.path().join("orders")).expect("folder");
    let n = orders.height() as i64;
    let write = |i: usize, mut df: DataFrame| {
        ParquetWriter::new(
            std::fs::File::create(dir.path().join(format!("orders/part-{i}.parquet")))
                .expect("part"),
        )
        .finish(&mut df)
        .expect("write part");
    };
    let part = |off: i64, len: usize| orders.clone().lazy().slice(off, len as IdxSize);
    write(
        0,
        part(0, 7)
            .with_column(lit("1.50").cast(DataType::Decimal(10, 2)).alias("note"))
            .collect()
            .expect("decimal note"),
    );
    write(
        1,
        part(7, 7)
            .with_column(lit("a note").alias("note"))
            .collect()
            .expect("text note"),
    );
    write(2, part(14, (n - 14) as usize).collect().expect("no note"));
    for set in ["rfm", "churn_signals"] {
        let got = built(dir.path(), set);
        let want = built(&base, set);
        assert!(
            got.equals_missing(&want),
            "{set}:\n{got}\nexpected:\n{want}"
        );
    }

    // A read column (status) as text in one file and a dictionary in another is named.
    write(
        1,
        part(7, 7)
            .with_column(col("status").cast(DataType::from_categories(Categories::global())))
            .collect()
            .expect("categorical status"),
    );
    let (code, stderr, _store) = build(dir.path(), "rfm");
    assert_eq!(code, 4, "{stderr}");
    for n in [
        "table orders",
        "column status",
        "part-0.parquet",
        "part-1.parquet",
    ] {
        assert!(stderr.contains(n), "{n:?} in {stderr}");
    }
}

/// Excel-style CSV (UTF-8 byte order mark, CRLF line ends) with numeric-looking ids that
/// have leading zeros: the ids stay text (`0001`, not `1`), so they match the same ids in
/// Parquet tables, and the features equal those of an all-Parquet source.
#[test]
fn csv_ids_with_leading_zeros_stay_text_and_match_parquet_tables() {
    let base = case("baseline");
    let zeros = |df: DataFrame| {
        df.lazy()
            .with_column(
                col("customer_id")
                    .str()
                    .replace(lit("1"), lit("0"), true)
                    .alias("customer_id"),
            )
            .collect()
            .expect("leading zeros")
    };
    let parquet = tempfile::tempdir().expect("tmp");
    let csv = tempfile::tempdir().expect("tmp");
    for t in ["customers", "orders", "interactions", "support_tickets"] {
        let df = ParquetReader::new(
            std::fs::File::open(base.join(format!("{t}.parquet"))).expect("open"),
        )
        .finish()
        .expect("read");
        let mut df = zeros(df);
        for dir in [&parquet, &csv] {
            if t == "customers" && dir.path() == csv.path() {
                let mut text = Vec::new();
                CsvWriter::new(&mut text).finish(&mut df).expect("csv");
                let text = String::from_utf8(text).expect("utf8").replace('\n', "\r\n");
                let mut bytes = b"\xef\xbb\xbf".to_vec();
                bytes.extend(text.as_bytes());
                std::fs::write(dir.path().join("customers.csv"), bytes).expect("write csv");
            } else {
                ParquetWriter::new(
                    std::fs::File::create(dir.path().join(format!("{t}.parquet"))).expect("f"),
                )
                .finish(&mut df)
                .expect("write");
            }
        }
    }
    let ids = std::fs::read_to_string(csv.path().join("customers.csv")).expect("csv");
    assert!(ids.contains("\r\n0001,"), "the CSV holds 0001: {ids}");
    for set in ["rfm", "churn_signals"] {
        let got = built(csv.path(), set);
        let want = built(parquet.path(), set);
        assert!(
            got.column("customer_id")
                .expect("ids")
                .str()
                .expect("text")
                .iter()
                .any(|id| id == Some("0001")),
            "{set}: ids keep their zeros: {got}"
        );
        assert!(
            got.equals_missing(&want),
            "{set}:\n{got}\nexpected:\n{want}"
        );
    }
}

/// An extra column a feature set declares (`customers.credit_limit = "float"`) stored as
/// DECIMAL(12,2) is read like a contract amount: the Float64 nearest to each value.
#[test]
fn a_declared_decimal_extra_column_reads_as_the_nearest_float() {
    let defs = tempfile::tempdir().expect("tmp");
    std::fs::write(
        defs.path().join("money.toml"),
        r#"name = "money"
version = 1
owner = "tests"
description = "an extra DECIMAL column"

[columns.customers]
credit_limit = "float"

[[feature]]
name = "credit_limit"
table = "customers"
agg = "first"
column = "credit_limit"
"#,
    )
    .expect("write set");
    let set = c360::features::find_set(defs.path(), "money").expect("set loads");
    let want = [
        ("1001", Some(1500.0)),
        ("1002", Some(25000.5)),
        ("1003", None),
        ("1004", Some(0.01)),
        ("1005", Some(9999999999.99)),
        ("1006", Some(100.0)),
        ("1007", Some(42.42)),
        ("1008", Some(7.7)),
    ];
    for c in ["spark", "warehouse", "extras"] {
        let src = c360::source::Source::open(&case(c).display().to_string()).expect("source");
        let loaded = c360::features::load_tables(&set, &src, &[]).expect("tables load");
        let date = AS_OF.parse().expect("date");
        let snap = c360::features::snapshot(&set, &loaded, date)
            .expect("snapshot")
            .sort(["customer_id"], SortMultipleOptions::default())
            .expect("sort");
        assert_eq!(
            snap.column("credit_limit").expect("feature").dtype(),
            &DataType::Float64,
            "{c}"
        );
        for (id, v) in want {
            assert_eq!(f64_of(&snap, "credit_limit", id), v, "{c}: {id}");
        }
    }
}

/// Format (Cf) and separator (Zl, Zp) characters and empty or blank ids are refused like
/// control characters, in every id column: exit 4, table, column, the example row with the
/// character escaped, nothing published.
#[test]
fn ids_with_invisible_characters_or_blank_are_refused_at_the_source() {
    let cases = [
        // (table, key, row, column, value, set, example)
        (
            "customers",
            "customer_id",
            "1003",
            "customer_id",
            "10\u{202e}03",
            "rfm",
            r#"customer_id="10\u{202e}03""#,
        ),
        (
            "orders",
            "order_id",
            "50005",
            "order_id",
            "50005\u{2028}",
            "rfm",
            r#"order_id="50005\u{2028}""#,
        ),
        (
            "support_tickets",
            "ticket_id",
            "70003",
            "ticket_id",
            "\u{feff}70003",
            "churn_signals",
            r#"ticket_id="\u{feff}70003""#,
        ),
        (
            "interactions",
            "customer_id",
            "1005",
            "customer_id",
            "1005\u{200b}",
            "churn_signals",
            r#"customer_id="1005\u{200b}""#,
        ),
        (
            "orders",
            "order_id",
            "50009",
            "customer_id",
            "",
            "rfm",
            r#"customer_id="""#,
        ),
        (
            "customers",
            "customer_id",
            "1004",
            "customer_id",
            " ",
            "rfm",
            r#"customer_id=" ""#,
        ),
        (
            "orders",
            "order_id",
            "50005",
            "order_id",
            "\u{2066}50005\u{2069}\u{61c}",
            "rfm",
            r#"order_id="\u{2066}50005\u{2069}\u{61c}""#,
        ),
    ];
    for case in cases {
        let stderr = refused_id(
            case,
            "empty or blank, or contain a control character or an invisible format/separator character",
        );
        assert!(
            !stderr.contains(['\u{202e}', '\u{2028}', '\u{feff}', '\u{200b}', '\u{2066}']),
            "nothing invisible printed raw: {stderr:?}"
        );
    }
}

/// One id case `(table, key column, row key, column, value, set, example)` built with the
/// value in place: exit 4, the message names table and column, says `why` and shows the
/// escaped `example`; no panic; nothing published. Returns stderr.
fn refused_id(
    (table, key, row, column, value, set, example): (&str, &str, &str, &str, &str, &str, &str),
    why: &str,
) -> String {
    let dir = with_id(table, key, row, column, value);
    let (code, stderr, store) = build(dir.path(), set);
    assert_eq!(
        code, 4,
        "{table}.{column} {value:?}: exit 4; stderr: {stderr}"
    );
    for n in [
        format!("table {table}, column {column}"),
        why.to_string(),
        example.to_string(),
    ] {
        assert!(
            stderr.contains(&n),
            "{table}.{column} {value:?}: error should mention {n:?}: {stderr}"
        );
    }
    assert!(!stderr.contains("panicked"), "no panic: {stderr}");
    let mut files = Vec::new();
    parquet_files(store.path(), &mut files);
    assert!(files.is_empty(), "nothing published: {files:?}");
    stderr
}

/// The baseline source with `orders` replaced by what `write` puts in the folder.
fn with_orders(write: impl FnOnce(&Path, DataFrame)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    for t in ["customers", "interactions", "support_tickets"] {
        let name = format!("{t}.parquet");
        std::fs::copy(case("baseline").join(&name), dir.path().join(&name)).expect("copy");
    }
    let orders = ParquetReader::new(
        std::fs::File::open(case("baseline").join("orders.parquet")).expect("orders"),
    )
    .finish()
    .expect("read orders");
    write(dir.path(), orders);
    dir
}

fn write_parquet(path: &Path, mut df: DataFrame) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    ParquetWriter::new(std::fs::File::create(path).expect("create"))
        .finish(&mut df)
        .expect("write");
}

fn csv_text(mut df: DataFrame, separator: u8) -> Vec<u8> {
    let mut out = Vec::new();
    CsvWriter::new(&mut out)
        .with_separator(separator)
        .finish(&mut df)
        .expect("csv");
    out
}

/// Source-supplied text in an error (here a column name holding terminal escapes, a bell
/// and a newline) is shown escaped: the terminal is never driven and no fake line starts.
#[test]
fn source_text_in_errors_is_escaped() {
    let evil = "\x1b[2J\x1b]0;pwned\x07evil\nERROR fake line";
    let dir = with_orders(|d, mut orders| {
        orders.rename("order_ts", evil.into()).expect("rename");
        write_parquet(&d.join("orders.parquet"), orders);
    });
    let (code, stderr, _store) = build(dir.path(), "rfm");
    assert_eq!(code, 4, "exit 4: {stderr}");
    for n in [
        "table orders: missing column order_ts",
        r"\u{1b}[2J\u{1b}]0;pwned\u{7}evil\nERROR fake line",
    ] {
        assert!(stderr.contains(n), "error should mention {n:?}: {stderr:?}");
    }
    assert!(
        !stderr.contains(['\x1b', '\x07']),
        "no raw escape: {stderr:?}"
    );
    assert!(
        !stderr.lines().any(|l| l.starts_with("ERROR fake line")),
        "no fake line: {stderr:?}"
    );
}

/// A CSV written with another separator, or in UTF-16, is refused with the reason (the
/// header has one field: the separator; NUL bytes: UTF-16), never raw bytes.
#[test]
fn csv_with_another_separator_or_utf16_gets_a_hint() {
    let semicolon = with_orders(|d, orders| {
        std::fs::write(d.join("orders.csv"), csv_text(orders, b';')).expect("csv");
    });
    let (code, stderr, _store) = build(semicolon.path(), "rfm");
    assert_eq!(code, 4, "';' CSV: exit 4: {stderr}");
    for n in [
        "table orders: missing column order_id",
        "the header has one field: is the separator ';'?",
        "comma-separated",
    ] {
        assert!(
            stderr.contains(n),
            "';' CSV: should mention {n:?}: {stderr}"
        );
    }

    let utf16 = with_orders(|d, orders| {
        let text = String::from_utf8(csv_text(orders, b',')).expect("utf8");
        let mut bytes = vec![0xff, 0xfe];
        for u in text.encode_utf16() {
            bytes.extend(u.to_le_bytes());
        }
        std::fs::write(d.join("orders.csv"), bytes).expect("csv");
    });
    let (code, stderr, _store) = build(utf16.path(), "rfm");
    assert_eq!(code, 4, "UTF-16 CSV: exit 4: {stderr:?}");
    for n in ["table orders", "UTF-16", "save it as UTF-8"] {
        assert!(
            stderr.contains(n),
            "UTF-16 CSV: should mention {n:?}: {stderr:?}"
        );
    }
    assert!(!stderr.contains('\0'), "no raw NUL: {stderr:?}");
}

/// A hive partition folder named after a column the files hold would silently replace the
/// files' values: refused naming table, column and folder. Malformed partition folders
/// (`k=` beside `k=a=b`) are refused naming the folder.
#[test]
fn partition_folders_never_replace_file_columns() {
    let status = with_orders(|d, orders| {
        let n = orders.height();
        write_parquet(
            &d.join("orders/status=completed/part-0.parquet"),
            orders.slice(0, n / 2),
        );
        write_parquet(
            &d.join("orders/status=returned/part-0.parquet"),
            orders.slice((n / 2) as i64, n - n / 2),
        );
    });
    let (code, stderr, store) = build(status.path(), "rfm");
    assert_eq!(code, 4, "status=…: exit 4: {stderr}");
    for n in [
        "table orders (",
        "status=",
        "names column status",
        "Rename the folder",
    ] {
        assert!(
            stderr.contains(n),
            "status=…: should mention {n:?}: {stderr}"
        );
    }
    let mut files = Vec::new();
    parquet_files(store.path(), &mut files);
    assert!(files.is_empty(), "nothing published: {files:?}");

    let malformed = with_orders(|d, orders| {
        let n = orders.height();
        write_parquet(&d.join("orders/k=/part-0.parquet"), orders.slice(0, n / 2));
        write_parquet(
            &d.join("orders/k=a=b/part-1.parquet"),
            orders.slice((n / 2) as i64, n - n / 2),
        );
    });
    let (code, stderr, _store) = build(malformed.path(), "rfm");
    assert_eq!(code, 4, "k=a=b: exit 4: {stderr}");
    for n in ["table orders (", "k=a=b", "is not key=value"] {
        assert!(stderr.contains(n), "k=a=b: should mention {n:?}: {stderr}");
    }
    assert!(!stderr.contains("lengths"), "no length error: {stderr}");
}
