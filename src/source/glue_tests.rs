use std::collections::HashMap;

use aws_sdk_glue::types::{Partition, SerDeInfo, StorageDescriptor};

use super::*;

#[test]
fn uris_parse_or_say_how_to_write_them() {
    assert_eq!(
        GlueUri::parse("glue://sales_c360").unwrap(),
        GlueUri {
            database: "sales_c360".into(),
            catalog_id: None
        }
    );
    let shared = GlueUri::parse("glue://mesh-db/?catalog_id=123456789012").unwrap();
    assert_eq!(shared.database, "mesh-db");
    assert_eq!(shared.catalog_id.as_deref(), Some("123456789012"));
    assert_eq!(shared.to_string(), "glue://mesh-db?catalog_id=123456789012");
    assert_eq!(GlueUri::parse(&shared.to_string()).unwrap(), shared);
    assert_eq!(
        format!("[{:>16}]", GlueUri::parse("glue://db").unwrap()),
        "[       glue://db]"
    );

    let e = GlueUri::parse("glue://").unwrap_err();
    assert!(e.contains("write glue://<database>"), "{e}");
    let e = GlueUri::parse("glue://a/b").unwrap_err();
    assert!(
        e.contains("\"a/b\" is not a database name") && e.contains("without a table"),
        "{e}"
    );
    let e = GlueUri::parse("glue://a b").unwrap_err();
    assert!(e.contains("letters, digits"), "{e}");
    let e = GlueUri::parse(&format!("glue://{}", "x".repeat(256))).unwrap_err();
    assert!(e.contains("1-255"), "{e}");
    let e = GlueUri::parse("glue://db?catalog_id=12").unwrap_err();
    assert!(e.contains("12-digit AWS account id"), "{e}");
    let e =
        GlueUri::parse("glue://db?catalog_id=123456789012&catalog_id=123456789012").unwrap_err();
    assert!(e.contains("given once"), "{e}");
    let e = GlueUri::parse("glue://db?region=eu-west-1").unwrap_err();
    assert!(e.contains("unknown parameter \"region=eu-west-1\""), "{e}");
    assert!(GlueUri::is_glue_uri("glue://x") && !GlueUri::is_glue_uri("s3://glue/x"));
}

fn sd(serde: Option<&str>, input: Option<&str>, delim: Option<&str>) -> StorageDescriptor {
    let mut info = SerDeInfo::builder();
    if let Some(s) = serde {
        info = info.serialization_library(s);
    }
    if let Some(d) = delim {
        info = info.parameters("field.delim", d);
    }
    let mut b = StorageDescriptor::builder().serde_info(info.build());
    if let Some(i) = input {
        b = b.input_format(i);
    }
    b.build()
}

#[test]
fn the_format_comes_from_the_classification_else_the_serde() {
    let params = |c: &str| HashMap::from([("classification".to_string(), c.to_string())]);
    assert_eq!(format_of(Some(&params("parquet")), None), Ok(false));
    assert_eq!(format_of(Some(&params("CSV")), None), Ok(true));
    let e = format_of(Some(&params("json")), None).unwrap_err();
    assert!(e.contains("classification is \"json\""), "{e}");
    // The classification wins over the SerDe.
    let text = sd(
        Some("org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe"),
        Some("org.apache.hadoop.mapred.TextInputFormat"),
        Some("|"),
    );
    let e = format_of(Some(&params("csv")), Some(&text)).unwrap_err();
    assert!(e.contains("delimiter is \"|\""), "{e}");
    let pq = sd(
        Some("org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"),
        Some("org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"),
        None,
    );
    assert_eq!(format_of(None, Some(&pq)), Ok(false));
    let csv = sd(
        Some("org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe"),
        None,
        Some(","),
    );
    assert_eq!(format_of(None, Some(&csv)), Ok(true));
    assert_eq!(
        format_of(
            None,
            Some(&sd(
                Some("org.apache.hadoop.hive.serde2.OpenCSVSerde"),
                None,
                None
            ))
        ),
        Ok(true)
    );
    // Ctrl-A text (LazySimpleSerDe's default), JSON, ORC, nothing at all: refused.
    for other in [
        sd(
            Some("org.apache.hadoop.hive.serde2.lazy.LazySimpleSerDe"),
            None,
            None,
        ),
        sd(Some("org.openx.data.jsonserde.JsonSerDe"), None, None),
        sd(
            Some("org.apache.hadoop.hive.ql.io.orc.OrcSerde"),
            Some("org.apache.hadoop.hive.ql.io.orc.OrcInputFormat"),
            None,
        ),
    ] {
        let e = format_of(None, Some(&other)).unwrap_err();
        assert!(e.contains("neither Parquet nor CSV"), "{e}");
    }
    assert!(format_of(None, None).is_err());
}

#[test]
fn locations_must_be_s3_folders() {
    assert_eq!(
        s3_location("s3://lake/domains/c360/orders/").unwrap(),
        ("lake".to_string(), "domains/c360/orders".to_string())
    );
    assert_eq!(
        s3_location("s3://lake").unwrap(),
        ("lake".into(), String::new())
    );
    for bad in ["file:///x", "hdfs://nn:8020/warehouse/orders", "/tmp/x"] {
        let e = s3_location(bad).unwrap_err();
        assert!(e.contains(&format!("{bad} is not on S3")), "{e}");
    }
    let e = s3_location("").unwrap_err();
    assert!(e.contains("has no location"), "{e}");
    let e = s3_location("s3://Bad_Bucket/x").unwrap_err();
    assert!(e.contains("not a usable S3 folder"), "{e}");
    let e = s3_location("s3://lake/a/../b").unwrap_err();
    assert!(e.contains("not a usable S3 folder"), "{e}");
}

fn partition(values: &[&str], location: Option<&str>) -> Partition {
    let mut b = Partition::builder();
    for v in values {
        b = b.values(*v);
    }
    if let Some(l) = location {
        b = b.storage_descriptor(StorageDescriptor::builder().location(l).build());
    }
    b.build()
}

#[test]
fn partitions_keep_their_folder_below_the_table_else_get_key_value_folders() {
    let m = |values: &[&str], loc: Option<&str>| {
        partition_mount(
            "Glue table db.orders",
            "orders",
            &["year", "month"],
            "lake",
            "c360/orders",
            &partition(values, loc),
        )
    };
    let below = m(
        &["2024", "01"],
        Some("s3://lake/c360/orders/year=2024/month=01/"),
    )
    .unwrap();
    assert_eq!(
        below,
        Mount {
            key: "orders/year=2024/month=01".into(),
            bucket: "lake".into(),
            prefix: "c360/orders/year=2024/month=01".into()
        }
    );
    // Elsewhere (another bucket, or a sibling prefix): under key=value folders.
    let other = m(&["2023", "12"], Some("s3://archive/old/2023-12")).unwrap();
    assert_eq!(other.key, "orders/year=2023/month=12");
    assert_eq!(
        (other.bucket.as_str(), other.prefix.as_str()),
        ("archive", "old/2023-12")
    );
    let sibling = m(&["2023", "11"], Some("s3://lake/c360/orders_old/x")).unwrap();
    assert_eq!(sibling.key, "orders/year=2023/month=11");
    // No location of its own: the Hive default below the table.
    let default = m(&["2022", "02"], None).unwrap();
    assert_eq!(default.key, "orders/year=2022/month=02");
    assert_eq!(default.prefix, "c360/orders/year=2022/month=02");
    // The table's own folder.
    assert_eq!(
        m(&["2021", "01"], Some("s3://lake/c360/orders"))
            .unwrap()
            .key,
        "orders"
    );

    let e = m(&["2024"], Some("s3://lake/c360/orders/x")).unwrap_err();
    assert!(e.contains("Glue table db.orders: partition [\"2024\"] has 1 value(s) for the 2 partition key(s) year, month"), "{e}");
    let e = m(&["2024", "01"], Some("hdfs://nn/orders/2024/01")).unwrap_err();
    assert!(e.contains("Glue table db.orders, partition year=2024/month=01: its location hdfs://nn/orders/2024/01 is not on S3"), "{e}");
    let e = m(&["a/../..", "01"], Some("s3://elsewhere/x")).unwrap_err();
    assert!(e.contains("cannot be a local folder"), "{e}");
}

#[test]
fn hidden_objects_are_left_out() {
    assert!(hidden("_SUCCESS") && hidden("year=2024/.part-0.crc") && hidden("_temporary/0/x"));
    assert!(!hidden("year=2024/part-0.parquet"));
}

mod paging {
    use aws_sdk_glue::operation::get_partitions::GetPartitionsOutput;
    use aws_sdk_glue::operation::get_table::GetTableOutput;
    use aws_sdk_glue::types::{Column, Partition, StorageDescriptor, Table};
    use aws_smithy_mocks::{mock, Rule};

    use super::super::*;

    fn client(rules: &[&Rule]) -> aws_sdk_glue::Client {
        aws_sdk_glue::Client::from_conf(crate::aws::mocked_config!(aws_sdk_glue, rules, 2))
    }

    fn orders_table() -> Rule {
        mock!(aws_sdk_glue::Client::get_table)
            .match_requests(|r| {
                r.database_name() == Some("mesh")
                    && r.name() == Some("orders")
                    && r.catalog_id() == Some("123456789012")
            })
            .then_output(|| {
                GetTableOutput::builder()
                    .table(
                        Table::builder()
                            .name("orders")
                            .parameters("classification", "parquet")
                            .storage_descriptor(
                                StorageDescriptor::builder()
                                    .location("s3://lake/c360/orders/")
                                    .build(),
                            )
                            .partition_keys(Column::builder().name("year").build().unwrap())
                            .build()
                            .unwrap(),
                    )
                    .build()
            })
    }

    fn part(year: u32) -> Partition {
        Partition::builder()
            .values(year.to_string())
            .storage_descriptor(
                StorageDescriptor::builder()
                    .location(format!("s3://lake/c360/orders/year={year}/"))
                    .build(),
            )
            .build()
    }

    fn resolve_orders(rules: &[&Rule]) -> std::result::Result<Resolved, String> {
        let glue = client(rules);
        let g = GlueUri::parse("glue://mesh?catalog_id=123456789012").unwrap();
        let spec = crate::source::table_spec("orders").unwrap();
        crate::aws::block_on(async move { resolve_table(&glue, &g, spec).await })
    }

    /// Every page is read, each asked with the previous page's token, 1000 at a time.
    #[test]
    fn partitions_are_read_page_by_page() {
        let table = orders_table();
        let first = mock!(aws_sdk_glue::Client::get_partitions)
            .match_requests(|r| {
                r.next_token().is_none()
                    && r.max_results() == Some(1000)
                    && r.catalog_id() == Some("123456789012")
            })
            .then_output(|| {
                GetPartitionsOutput::builder()
                    .partitions(part(2022))
                    .partitions(part(2023))
                    .next_token("page-2")
                    .build()
            });
        let second = mock!(aws_sdk_glue::Client::get_partitions)
            .match_requests(|r| r.next_token() == Some("page-2"))
            .then_output(|| {
                GetPartitionsOutput::builder()
                    .partitions(part(2024))
                    .build()
            });
        let r = resolve_orders(&[&table, &first, &second]).unwrap();
        assert_eq!((first.num_calls(), second.num_calls()), (1, 1));
        assert!(!r.csv);
        let keys: Vec<&str> = r.mounts.iter().map(|m| m.key.as_str()).collect();
        assert_eq!(
            keys,
            ["orders/year=2022", "orders/year=2023", "orders/year=2024"]
        );
        assert_eq!(r.mounts[2].prefix, "c360/orders/year=2024");
    }

    /// A service that keeps answering empty pages with a token does not loop for ever.
    #[test]
    fn an_empty_page_ends_the_listing() {
        let table = orders_table();
        let empty = mock!(aws_sdk_glue::Client::get_partitions)
            .match_requests(|_| true)
            .then_output(|| GetPartitionsOutput::builder().next_token("again").build());
        let e = resolve_orders(&[&table, &empty]).unwrap_err();
        assert_eq!(empty.num_calls(), 1);
        assert!(
            e.contains("Glue table mesh.orders is partitioned by year but has no partitions"),
            "{e}"
        );
    }

    #[test]
    fn more_partitions_than_c360_reads_are_refused() {
        let table = orders_table();
        let many = mock!(aws_sdk_glue::Client::get_partitions)
            .match_requests(|_| true)
            .then_output(|| {
                let mut b = GetPartitionsOutput::builder();
                for y in 0..=MAX_PARTITIONS as u32 {
                    b = b.partitions(part(y));
                }
                b.build()
            });
        let e = resolve_orders(&[&table, &many]).unwrap_err();
        assert!(
            e.contains("Glue table mesh.orders has more than 10000 partitions"),
            "{e}"
        );
    }

    /// A service error names service, operation, database and table, without secrets.
    #[test]
    fn a_denied_call_names_the_operation_and_the_table() {
        let denied = mock!(aws_sdk_glue::Client::get_table)
            .match_requests(|_| true)
            .then_http_response(|| {
                aws_smithy_runtime_api::http::Response::new(
                    aws_smithy_runtime_api::http::StatusCode::try_from(400).unwrap(),
                    aws_smithy_types::body::SdkBody::from(
                        r#"{"__type":"AccessDeniedException","Message":"not allowed"}"#,
                    ),
                )
            });
        let e = resolve_orders(&[&denied]).unwrap_err();
        assert!(
            e.starts_with("Glue GetTable on database mesh, table orders: AccessDeniedException: not allowed; check [aws] glue_endpoint_url"),
            "{e}"
        );
        assert!(!e.contains("AKIDTEST") && !e.contains("secret"), "{e}");
    }
}
