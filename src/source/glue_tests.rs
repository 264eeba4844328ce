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

mod store {
    use aws_sdk_s3::operation::get_object::GetObjectOutput;
    use aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Output;
    use aws_sdk_s3::primitives::ByteStream;
    use aws_sdk_s3::types::Object;
    use aws_smithy_mocks::{mock, Rule};

    use super::super::*;

    fn obj(key: &str, size: i64) -> Object {
        Object::builder()
            .key(key)
            .size(size)
            .e_tag(format!("\"etag-{size}\""))
            .build()
    }

    /// orders: one partition below the table's folder (lake), one in another bucket.
    fn store(rules: &[&Rule], max_objects: usize) -> GlueStore {
        let client =
            aws_sdk_s3::Client::from_conf(crate::aws::mocked_config!(aws_sdk_s3, rules, 2));
        GlueStore {
            uri: GlueUri::parse("glue://mesh").unwrap(),
            client,
            tables: vec![Resolved {
                table: "orders",
                csv: false,
                mounts: vec![
                    Mount {
                        key: "orders/year=2023".into(),
                        bucket: "archive".into(),
                        prefix: "old/2023".into(),
                    },
                    Mount {
                        key: "orders/year=2024".into(),
                        bucket: "lake".into(),
                        prefix: "c360/orders/year=2024".into(),
                    },
                ],
            }],
            index: Mutex::new(HashMap::new()),
            max_objects,
        }
    }

    fn listings() -> (Rule, Rule) {
        let archive = mock!(aws_sdk_s3::Client::list_objects_v2)
            .match_requests(|r| r.bucket() == Some("archive") && r.prefix() == Some("old/2023/"))
            .then_output(|| {
                ListObjectsV2Output::builder()
                    .contents(obj("old/2023/20240101_ctas_0001", 10))
                    .contents(obj("old/2023/_SUCCESS", 0))
                    .contents(obj("old/2023/notes.json", 2))
                    .build()
            });
        let lake = mock!(aws_sdk_s3::Client::list_objects_v2)
            .match_requests(|r| {
                r.bucket() == Some("lake") && r.prefix() == Some("c360/orders/year=2024/")
            })
            .then_output(|| {
                ListObjectsV2Output::builder()
                    .contents(obj("c360/orders/year=2024/part-0.parquet", 20))
                    .contents(obj("c360/orders/year=2024/.part-0.parquet.crc", 1))
                    .build()
            });
        (archive, lake)
    }

    /// Objects are shown under the table's folders, with only the table's format (a name
    /// without an extension gets it), and read back from their own bucket and key.
    #[test]
    fn objects_are_listed_under_the_table_and_read_from_their_bucket() {
        let (archive, lake) = listings();
        let get = mock!(aws_sdk_s3::Client::get_object)
            .match_requests(|r| {
                r.bucket() == Some("archive") && r.key() == Some("old/2023/20240101_ctas_0001")
            })
            .then_output(|| {
                GetObjectOutput::builder()
                    .e_tag("\"etag-10\"")
                    .body(ByteStream::from_static(b"PAR1"))
                    .build()
            });
        let st = store(&[&archive, &lake, &get], MAX_OBJECTS);
        let listed = st.list("orders").unwrap();
        let got: Vec<(&str, u64, &str)> = listed
            .iter()
            .map(|o| (o.key.as_str(), o.size, o.version.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "orders/year=2023/20240101_ctas_0001.parquet",
                    10,
                    "\"etag-10\""
                ),
                ("orders/year=2024/part-0.parquet", 20, "\"etag-20\""),
            ]
        );
        assert_eq!(
            st.get("orders/year=2023/20240101_ctas_0001.parquet")
                .unwrap(),
            b"PAR1"
        );
        assert_eq!(get.num_calls(), 1);
        // A folder of one partition; a file name, another table: nothing more.
        assert_eq!(st.list("orders/year=2024").unwrap().len(), 1);
        assert!(st.list("orders.parquet").unwrap().is_empty());
        assert!(st.list("customers").unwrap().is_empty());
        assert!(st.local_path("orders").is_none());
        let e = st.put("orders/x.parquet", b"x").unwrap_err().to_string();
        assert!(e.contains("glue://mesh") && e.contains("read-only"), "{e}");
        assert!(st.delete("orders/x.parquet").is_err());
    }

    #[test]
    fn more_objects_than_c360_reads_are_refused() {
        let (archive, lake) = listings();
        let st = store(&[&archive, &lake], 4);
        let e = st.list("orders").unwrap_err().to_string();
        assert!(
            e.contains("Glue table mesh.orders has more than 4 objects under its location(s)"),
            "{e}"
        );
    }
}

/// A failed call (exit 1: retry) is told apart from what the database holds (exit 4).
#[test]
fn call_failures_are_told_apart_from_bad_tables() {
    for call in [
        "Glue GetTable on database mesh, table orders: could not reach the endpoint: io error",
        "Glue GetDatabase on database mesh (resolving tables customers): AccessDeniedException: no",
        "Glue GetPartitions on database mesh, table orders: ThrottlingException: slow down",
    ] {
        assert!(is_call_failure(call), "{call}");
    }
    for table in [
        "Glue table mesh.orders not found (EntityNotFoundException): register the table",
        "Glue database mesh does not exist (EntityNotFoundException), so tables on S3 cannot",
        "Glue table mesh.orders: location hdfs://x is not on S3",
        "Glue table mesh.orders is a view: c360 reads tables stored on S3",
    ] {
        assert!(!is_call_failure(table), "{table}");
    }
}
