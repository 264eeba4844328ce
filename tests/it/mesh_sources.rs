//! Glue sources (`[source] uri = "glue://<database>"`) against moto's server mode on
//! loopback: the contract tables are uploaded to S3 under different prefixes (orders as a
//! partitioned table), registered with the Glue SDK, then read through `glue://` and
//! through the equivalent `s3://` source: the same fingerprints and the same features.
//! Then the refusals: a missing table, non-S3 locations, an unknown database, an
//! unreachable endpoint, a malformed URI.

use aws_sdk_glue::types::{
    Column, DatabaseInput, PartitionInput, SerDeInfo, StorageDescriptor, TableInput,
};
use c360::aws;
use c360::features;
use c360::source::Source;
use c360::store::{ObjectStore, S3Store};
use polars::prelude::*;

use crate::aws::unique;
use crate::aws::{moto, Moto};
use crate::pipeline::TestProject;

const PARQUET_SERDE: &str = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe";
const PARQUET_IN: &str = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat";
const PARQUET_OUT: &str = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat";

pub fn glue(m: &Moto) -> aws_sdk_glue::Client {
    let s = m.settings();
    aws::block_on(async move { aws::glue_client(&s).await.unwrap() })
}

/// Creates a database.
pub fn create_database(g: &aws_sdk_glue::Client, db: &str) {
    let (g, db) = (g.clone(), db.to_string());
    aws::block_on(async move {
        g.create_database()
            .database_input(DatabaseInput::builder().name(db).build().unwrap())
            .send()
            .await
            .unwrap();
    });
}

/// Registers an external table at `location`; `classification`: the parameter (else the
/// format comes from the Parquet SerDe); `partition_keys`: string partition keys.
pub fn create_table(
    g: &aws_sdk_glue::Client,
    db: &str,
    table: &str,
    location: &str,
    classification: Option<&str>,
    partition_keys: &[&str],
) {
    let sd = StorageDescriptor::builder()
        .location(location)
        .input_format(PARQUET_IN)
        .output_format(PARQUET_OUT)
        .serde_info(
            SerDeInfo::builder()
                .serialization_library(PARQUET_SERDE)
                .build(),
        )
        .build();
    let mut t = TableInput::builder()
        .name(table)
        .table_type("EXTERNAL_TABLE")
        .storage_descriptor(sd);
    if let Some(c) = classification {
        t = t.parameters("classification", c);
    }
    for k in partition_keys {
        t = t.partition_keys(Column::builder().name(*k).r#type("string").build().unwrap());
    }
    let (g, db, t) = (g.clone(), db.to_string(), t.build().unwrap());
    aws::block_on(async move {
        g.create_table()
            .database_name(db)
            .table_input(t)
            .send()
            .await
            .unwrap();
    });
}

/// Registers partitions (values, location) of a table.
fn create_partitions(g: &aws_sdk_glue::Client, db: &str, table: &str, parts: &[(&str, String)]) {
    let mut req = g
        .batch_create_partition()
        .database_name(db)
        .table_name(table);
    for (value, location) in parts {
        req = req.partition_input_list(
            PartitionInput::builder()
                .values(*value)
                .storage_descriptor(
                    StorageDescriptor::builder()
                        .location(location)
                        .input_format(PARQUET_IN)
                        .serde_info(
                            SerDeInfo::builder()
                                .serialization_library(PARQUET_SERDE)
                                .build(),
                        )
                        .build(),
                )
                .build(),
        );
    }
    let out = aws::block_on(async move { req.send().await.unwrap() });
    assert!(out.errors().is_empty(), "{:?}", out.errors());
}

fn parquet_bytes(df: &mut DataFrame) -> Vec<u8> {
    let mut buf = Vec::new();
    ParquetWriter::new(&mut buf).finish(df).unwrap();
    buf
}

/// The generated tables laid out as a lake: customers, interactions and support_tickets in
/// their own folders, orders split into `year=2023/` and `year=2024/` partition folders.
/// Returns the objects as (key below the source prefix, bytes).
fn lake_objects(t: &TestProject) -> Vec<(String, Vec<u8>)> {
    let data = t.path().join("data");
    let mut out = Vec::new();
    for table in ["customers", "interactions", "support_tickets"] {
        let bytes = std::fs::read(data.join(format!("{table}.parquet"))).unwrap();
        out.push((format!("{table}/part-00000.parquet"), bytes));
    }
    let orders = ParquetReader::new(std::fs::File::open(data.join("orders.parquet")).unwrap())
        .finish()
        .unwrap();
    let half = orders.height() / 2;
    assert!(half > 10, "the generator made {} orders", orders.height());
    let mut early = orders.slice(0, half);
    let mut late = orders.slice(half as i64, orders.height() - half);
    out.push((
        "orders/year=2023/part-00000.parquet".into(),
        parquet_bytes(&mut early),
    ));
    out.push((
        "orders/year=2024/part-00000.parquet".into(),
        parquet_bytes(&mut late),
    ));
    out
}

/// A project whose c360.toml points at moto (`[aws]` plus `extra` keys) and caches
/// sources in the project.
fn project_on(m: &Moto, source_uri: &str, extra: &str) -> TestProject {
    let t = TestProject::new(|j| j);
    let cfg = std::fs::read_to_string(t.path().join("c360.toml")).unwrap();
    let cfg = cfg.replace("uri = \"data\"", &format!("uri = \"{source_uri}\""))
        + &m.toml(&format!(
            "cache_dir = \"{}\"\n{extra}",
            t.path().join("cache").display()
        ));
    std::fs::write(t.path().join("c360.toml"), cfg).unwrap();
    t
}

/// The error of opening `uri` as a source (the process's `[aws]` settings must be moto's).
fn open_error(uri: &str) -> String {
    match Source::open(uri) {
        Ok(s) => panic!("{uri} opened: {s:?}"),
        Err(e) => e.to_string(),
    }
}

/// A `glue://` source over the same objects as an `s3://` source reads the same rows, with
/// the same fingerprints (so run ids stay stable); a partition in another bucket reads the
/// same values too.
#[test]
fn glue_source_reads_like_the_equivalent_s3_source() {
    let Some(m) = moto() else { return };
    let (lake, archive) = (unique("c360-lake"), unique("c360-archive"));
    m.create_bucket(&lake);
    m.create_bucket(&archive);
    let t = TestProject::new(|j| j);
    t.generate(300);
    let objects = lake_objects(&t);
    let settings = m.settings();
    let src_prefix = format!("s3://{lake}/domains/customer360");
    let st = S3Store::open(&src_prefix, &settings).unwrap();
    for (k, b) in &objects {
        st.put(k, b).unwrap();
    }
    // What engines leave beside the data: both sources leave them out.
    st.put("orders/year=2024/_SUCCESS", b"").unwrap();
    st.put("orders/year=2024/notes.json", b"{}").unwrap();
    // The 2023 orders again, in another bucket (a partition outside the table's folder),
    // named without an extension (as Athena CTAS writes).
    let arch = S3Store::open(&format!("s3://{archive}/old-orders"), &settings).unwrap();
    let (_, early) = objects.iter().find(|(k, _)| k.contains("2023")).unwrap();
    arch.put("2023/data", early).unwrap();
    // The customers as CSV, beside a Parquet file the catalog's format leaves out.
    let mut customers =
        ParquetReader::new(std::fs::File::open(t.path().join("data/customers.parquet")).unwrap())
            .finish()
            .unwrap();
    let mut csv = Vec::new();
    CsvWriter::new(&mut csv).finish(&mut customers).unwrap();
    arch.put("csv/customers/customers.csv", &csv).unwrap();
    arch.put("csv/customers/stale.parquet", early).unwrap();

    let g = glue(m);
    let (db, db2) = (
        unique("c360_lake").replace('-', "_"),
        unique("c360_moved").replace('-', "_"),
    );
    for d in [&db, &db2] {
        create_database(&g, d);
        // customers read through the classification parameter (db2: CSV in another bucket),
        // the others through the SerDe.
        let (customers, format) = if d == &db {
            (format!("{src_prefix}/customers/"), "parquet")
        } else {
            (format!("s3://{archive}/old-orders/csv/customers"), "csv")
        };
        create_table(&g, d, "customers", &customers, Some(format), &[]);
        for table in ["interactions", "support_tickets"] {
            create_table(&g, d, table, &format!("{src_prefix}/{table}"), None, &[]);
        }
        create_table(
            &g,
            d,
            "orders",
            &format!("{src_prefix}/orders/"),
            Some("parquet"),
            &["year"],
        );
    }
    create_partitions(
        &g,
        &db,
        "orders",
        &[
            ("2023", format!("{src_prefix}/orders/year=2023/")),
            ("2024", format!("{src_prefix}/orders/year=2024")),
        ],
    );
    create_partitions(
        &g,
        &db2,
        "orders",
        &[
            ("2023", format!("s3://{archive}/old-orders/2023/")),
            ("2024", format!("{src_prefix}/orders/year=2024/")),
        ],
    );

    let p = project_on(m, &format!("glue://{db}"), "");
    let _aws_settings = crate::common::in_process_project();
    let project = c360::project::Project::load(Some(&p.path().join("c360.toml"))).unwrap();
    assert_eq!(project.source_uri(), format!("glue://{db}"));

    let set = crate::features::set("churn_signals");
    let all = ["orders", "interactions", "support_tickets"];
    let load = |uri: &str| {
        let src = Source::open(uri).unwrap_or_else(|e| panic!("{uri}: {e}"));
        let loaded =
            features::load_tables(&set, &src, &all).unwrap_or_else(|e| panic!("{uri}: {e}"));
        let fp = loaded.fingerprints();
        let snap = features::snapshot(&set, &loaded, "2024-06-30".parse().unwrap()).unwrap();
        (src, fp, snap)
    };
    let (s3_src, s3_fp, s3_snap) = load(&src_prefix);
    let (glue_src, glue_fp, glue_snap) = load(&format!("glue://{db}"));
    assert_eq!(s3_fp.len(), 4, "{s3_fp:?}");
    assert_eq!(
        glue_fp, s3_fp,
        "fingerprints of glue://{db} and {src_prefix}"
    );
    assert!(s3_snap.height() > 100, "{}", s3_snap.height());
    assert!(
        glue_snap.equals_missing(&s3_snap),
        "features differ:\n{glue_snap}\n{s3_snap}"
    );
    // The orders are both partitions (every row), under the same partition folders.
    for src in [&s3_src, &glue_src] {
        let spec = c360::source::table_spec("orders").unwrap();
        let loc = src.locate(spec).unwrap();
        let rel: Vec<String> = loc
            .files
            .iter()
            .map(|f| f.strip_prefix(&src.root).unwrap().display().to_string())
            .collect();
        assert_eq!(
            rel,
            [
                "orders/year=2023/part-00000.parquet",
                "orders/year=2024/part-00000.parquet"
            ]
        );
        let expected =
            ParquetReader::new(std::fs::File::open(t.path().join("data/orders.parquet")).unwrap())
                .finish()
                .unwrap()
                .height() as u64;
        assert_eq!(src.row_count(spec).unwrap(), expected);
    }
    // The objects were copied to the project's cache, per database.
    assert!(glue_src.root.starts_with(
        p.path()
            .join("cache")
            .join("glue")
            .join("default")
            .join(&db)
    ));
    assert!(glue_src
        .root
        .join("orders/year=2024/part-00000.parquet")
        .is_file());

    // The 2023 partition and the customers (as CSV) moved to another bucket: same values;
    // the tables that did not move keep their fingerprints, the moved ones change (other
    // objects).
    let (moved_src, moved_fp, moved_snap) = load(&format!("glue://{db2}"));
    assert!(
        moved_snap.equals_missing(&s3_snap),
        "features differ:\n{moved_snap}\n{s3_snap}"
    );
    for table in ["interactions", "support_tickets"] {
        assert_eq!(moved_fp[table], s3_fp[table], "{table}");
    }
    for table in ["customers", "orders"] {
        assert_ne!(moved_fp[table], s3_fp[table], "{table}");
    }
    let files = |table: &str| -> Vec<String> {
        let loc = moved_src
            .locate(c360::source::table_spec(table).unwrap())
            .unwrap();
        loc.files
            .iter()
            .map(|f| {
                f.strip_prefix(&moved_src.root)
                    .unwrap()
                    .display()
                    .to_string()
            })
            .collect()
    };
    assert_eq!(files("customers"), ["customers/customers.csv"]);
    assert_eq!(
        files("orders"),
        [
            "orders/year=2023/data.parquet",
            "orders/year=2024/part-00000.parquet"
        ]
    );

    // A second open reads from the cache again and gives the same fingerprints.
    let (_, again_fp, _) = load(&format!("glue://{db}"));
    assert_eq!(again_fp, glue_fp);
    drop(project);

    // Through the binary: a snapshot built from the s3:// source is the one a build from
    // glue:// finds committed (same definition, same fingerprints): same run id, reused.
    let manifest = || -> serde_json::Value {
        let f = p
            .path()
            .join("store/features/churn_signals/v1/as_of=2024-06-30/_manifest.json");
        serde_json::from_slice(&std::fs::read(&f).unwrap()).unwrap()
    };
    let build = |uri: &str| {
        let out = p
            .cmd()
            .args([
                "features",
                "build",
                "churn_signals",
                "--as-of",
                "2024-06-30",
            ])
            .args(["--source", uri])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{uri}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let first = build(&src_prefix);
    assert!(first.contains(" built in "), "{first}");
    let built = manifest();
    let second = build(&format!("glue://{db}"));
    assert!(
        second.contains("already committed (same definition and source)"),
        "{second}"
    );
    let reused = manifest();
    assert_eq!(reused["run_id"], built["run_id"]);
    assert_eq!(reused["source_fingerprints"], built["source_fingerprints"]);
    assert_eq!(
        built["source_fingerprints"]["orders"].as_str(),
        Some(glue_fp["orders"].as_str())
    );
}

/// Each refusal names the database and the table and says how to fix it.
#[test]
fn glue_source_refusals_name_database_and_table() {
    let Some(m) = moto() else { return };
    let lake = unique("c360-bad");
    m.create_bucket(&lake);
    let g = glue(m);
    let db = unique("c360_bad").replace('-', "_");
    create_database(&g, &db);
    // orders is missing; customers lives on local disk, interactions on HDFS.
    create_table(&g, &db, "customers", "file:///x", Some("parquet"), &[]);
    create_table(
        &g,
        &db,
        "interactions",
        "hdfs://namenode:8020/warehouse/interactions",
        None,
        &[],
    );
    create_table(
        &g,
        &db,
        "support_tickets",
        &format!("s3://{lake}/t/"),
        Some("json"),
        &[],
    );

    let p = project_on(m, "data", "");
    let _aws_settings = crate::common::in_process_project();
    c360::project::Project::load(Some(&p.path().join("c360.toml"))).unwrap();

    let e = open_error(&format!("glue://{db}"));
    assert!(e.starts_with(&format!("source glue://{db}: ")), "{e}");
    for want in [
        format!("Glue table {db}.customers: its location file:///x is not on S3"),
        format!("Glue table {db}.interactions: its location hdfs://namenode:8020/warehouse/interactions is not on S3"),
        format!("Glue table {db}.orders not found (EntityNotFoundException): register the Customer 360 table orders in database {db}"),
        format!("Glue table {db}.support_tickets: its classification is \"json\""),
        "StorageDescriptor.Location".to_string(),
    ] {
        assert!(e.contains(&want), "missing {want:?} in: {e}");
    }

    let e = open_error("glue://c360_no_such_db");
    assert!(
        e.contains("Glue database c360_no_such_db does not exist (EntityNotFoundException), so tables customers, orders, interactions, support_tickets cannot be resolved: create the database"),
        "{e}"
    );

    // A partitioned table without partitions.
    let db2 = unique("c360_nopart").replace('-', "_");
    create_database(&g, &db2);
    for table in ["customers", "interactions", "support_tickets"] {
        create_table(
            &g,
            &db2,
            table,
            &format!("s3://{lake}/{table}/"),
            Some("parquet"),
            &[],
        );
    }
    create_table(
        &g,
        &db2,
        "orders",
        &format!("s3://{lake}/orders/"),
        Some("parquet"),
        &["year", "month"],
    );
    let e = open_error(&format!("glue://{db2}"));
    assert!(
        e.contains(&format!("Glue table {db2}.orders is partitioned by year, month but has no partitions: register them")),
        "{e}"
    );
}

/// Through the binary: an unreachable Glue endpoint and an unknown database exit non-zero
/// with the service, operation, database and tables named; `c360 validate` accepts a
/// `glue://` URI and refuses a malformed one with the fix.
#[test]
fn glue_source_errors_through_the_binary() {
    let Some(m) = moto() else { return };
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let p = project_on(
        m,
        "glue://c360_anywhere",
        &format!("glue_endpoint_url = \"http://127.0.0.1:{closed}\"\nmax_attempts = 2\n"),
    );
    let out = p.cmd().arg("validate").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = p
        .cmd()
        .args([
            "features",
            "build",
            "churn_signals",
            "--as-of",
            "2024-06-30",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("Glue GetDatabase on database c360_anywhere (resolving tables customers, orders, interactions, support_tickets): could not reach the endpoint"),
        "{err}"
    );
    assert!(err.contains("check [aws] glue_endpoint_url"), "{err}");
    assert!(!err.contains("testing"), "no credentials in errors: {err}");

    // Through moto: an unknown database, given with --source.
    let p2 = project_on(m, "data", "");
    let out = p2
        .cmd()
        .args([
            "features",
            "build",
            "churn_signals",
            "--as-of",
            "2024-06-30",
            "--source",
            "glue://c360_nowhere",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("Glue database c360_nowhere does not exist"),
        "{err}"
    );

    for (uri, want) in [
        ("glue://", "no database: write glue://<database>"),
        ("glue://a/b", "\"a/b\" is not a database name"),
        ("glue://db?catalog_id=x", "12-digit AWS account id"),
    ] {
        let bad = project_on(m, uri, "");
        let out = bad.cmd().arg("validate").output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{uri}: {err}");
        assert!(
            err.contains("source.uri") && err.contains(want),
            "{uri}: {err}"
        );
    }
}
