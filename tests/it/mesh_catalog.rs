//! The Glue Data Catalog and Lake Formation tags against moto's server mode: products
//! published to an S3 store with `product::publish`, registered with `GlueCatalog`, and
//! read back through the Glue and Lake Formation SDKs; `c360 catalog sync` run as the
//! binary on a store published without a catalog.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use c360::aws::{self, AwsSettings, StaticCredentials};
use c360::mesh::glue::GlueCatalog;
use c360::mesh::{Catalog, CatalogKind, CatalogSettings, Classification, MeshError};
use c360::offline::{self, ColumnInfo, Manifest};
use c360::product::{self, ColumnDoc, Lineage, ProductSpec};
use c360::store::{ObjectStore, S3Store};
use chrono::NaiveDate;
use polars::prelude::*;
use serde_json::json;

use crate::aws::{moto, Moto};

fn unique(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{prefix}{}x{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn day(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn spec(name: &str) -> ProductSpec {
    let col = |n: &str, t: &str, c: Classification| ColumnDoc {
        name: n.into(),
        description: format!("what {n} means"),
        logical_type: t.parse().unwrap(),
        required: true,
        allowed: vec![],
        range: None,
        classification: c,
    };
    ProductSpec {
        name: name.parse().expect("a valid product name"),
        major: 1,
        domain: "marketing".into(),
        owner: "team@example.com".into(),
        description: "churn risk per customer".into(),
        consumers: vec!["crm".into()],
        retention_days: 30,
        freshness_days: 1,
        schedule: "0 3 * * *".into(),
        columns: vec![
            col("customer_id", "string", Classification::Confidential),
            col("score", "number", Classification::Public),
            col("as_of", "date", Classification::Internal),
        ],
        classification: Classification::Internal,
        lf_tags: BTreeMap::from([("cost_center".to_string(), "cc42".to_string())]),
    }
}

/// A product frame whose scores carry `tag` (so runs differ) and the `as_of` column.
fn frame(rows: usize, tag: f64, as_of: NaiveDate) -> DataFrame {
    let ids: Vec<String> = (0..rows).map(|i| format!("C{i:07}")).collect();
    let scores: Vec<f64> = (0..rows).map(|i| tag + i as f64 * 1e-4).collect();
    let dates = Series::new("as_of".into(), vec![as_of; rows]);
    let mut df = df!("customer_id" => ids, "score" => scores).unwrap();
    df.with_column(dates.into()).unwrap();
    df
}

fn publish(store: &dyn ObjectStore, spec: &ProductSpec, as_of: NaiveDate, run: &str) -> Manifest {
    let lineage = Lineage {
        job: "j".into(),
        run_id: run.into(),
        ..Default::default()
    };
    let tag = run.len() as f64 / 10.0;
    product::publish(
        store,
        spec,
        &frame(5, tag, as_of),
        as_of,
        &lineage,
        json!({}),
    )
    .unwrap()
    .manifest
}

/// A committed feature snapshot `rfm` v2 as of 2024-09-30 (its prefix and manifest).
fn snapshot(store: &dyn ObjectStore) -> (String, Manifest) {
    let prefix = offline::partition_prefix("rfm", 2, day("2024-09-30"));
    let m = offline::commit_partition(
        store,
        &prefix,
        &df!("customer_id" => ["a", "b"], "recency_days" => [3i64, 9]).unwrap(),
        snapshot_manifest(),
        &|_, _| {},
    )
    .unwrap();
    (prefix, m)
}

fn snapshot_manifest() -> Manifest {
    Manifest {
        kind: "feature_snapshot".into(),
        name: "rfm".into(),
        version: 2,
        as_of: day("2024-09-30"),
        files: vec![],
        file_checks: Default::default(),
        rows: 0,
        schema: vec![],
        definition_hash: "sha256:abc".into(),
        source: "s3://src".into(),
        source_fingerprints: Default::default(),
        model: None,
        run_id: "snap-1".into(),
        created_by: offline::c360_version(),
        created_at: chrono::Utc::now(),
        extra: Default::default(),
    }
}

/// A bucket with a store, and catalog settings with databases of their own.
fn setup(m: &Moto, lf_tags: bool) -> (S3Store, String, CatalogSettings) {
    let bucket = unique("c360-glue-");
    m.create_bucket(&bucket);
    let uri = format!("s3://{bucket}/store");
    let store = S3Store::open(&uri, &m.settings()).unwrap();
    let settings = CatalogSettings {
        kind: CatalogKind::Glue,
        products_database: Some(unique("products_")),
        features_database: Some(unique("features_")),
        catalog_id: None,
        owner: Some("data-team@example.com".into()),
        lf_tags,
    };
    (store, uri, settings)
}

fn glue(m: &Moto) -> aws_sdk_glue::Client {
    let s = m.settings();
    aws::block_on(async move { aws::glue_client(&s).await.unwrap() })
}

fn lakeformation(m: &Moto) -> aws_sdk_lakeformation::Client {
    // One attempt: moto's HTTP 500 for an untagged database is an answer, not a fault.
    let s = AwsSettings {
        max_attempts: 1,
        ..m.settings()
    };
    aws::block_on(async move { aws::lakeformation_client(&s).await.unwrap() })
}

fn get_table(m: &Moto, db: &str, table: &str) -> aws_sdk_glue::types::Table {
    let (c, db, table) = (glue(m), db.to_string(), table.to_string());
    aws::block_on(async move {
        c.get_table()
            .database_name(db)
            .name(table)
            .send()
            .await
            .unwrap()
            .table
            .unwrap()
    })
}

/// Partition value → its location.
fn partitions(m: &Moto, db: &str, table: &str) -> BTreeMap<String, String> {
    let (c, db, table) = (glue(m), db.to_string(), table.to_string());
    aws::block_on(async move {
        c.get_partitions()
            .database_name(db)
            .table_name(table)
            .send()
            .await
            .unwrap()
            .partitions()
            .iter()
            .map(|p| {
                (
                    p.values().join(","),
                    p.storage_descriptor()
                        .and_then(|s| s.location())
                        .unwrap_or_default()
                        .to_string(),
                )
            })
            .collect()
    })
}

/// The committed run's prefix of a manifest: `<uri>/<partition>/<run dir>/`.
fn run_prefix(uri: &str, spec: &ProductSpec, m: &Manifest) -> String {
    let dir = m.files[0].rsplit_once('/').unwrap().0;
    assert!(dir.starts_with("run="), "{:?}", m.files);
    format!(
        "{uri}/{}/{dir}/",
        product::partition_prefix(&spec.name, spec.major, m.as_of)
    )
}

pub type Tags = BTreeMap<String, Vec<String>>;

fn tag_map(pairs: &[aws_sdk_lakeformation::types::LfTagPair]) -> Tags {
    pairs
        .iter()
        .map(|p| (p.tag_key().to_string(), p.tag_values().to_vec()))
        .collect()
}

fn tags(pairs: &[(&str, &str)]) -> Tags {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), vec![v.to_string()]))
        .collect()
}

/// (database tags, table tags, column → tags) read back with GetResourceLFTags.
pub fn lf_tags_of(
    m: &Moto,
    db: &str,
    table: &str,
    cols: &[&str],
) -> (Tags, Tags, BTreeMap<String, Tags>) {
    use aws_sdk_lakeformation::types::{
        DatabaseResource, Resource, TableResource, TableWithColumnsResource,
    };
    let c = lakeformation(m);
    let (db, table) = (db.to_string(), table.to_string());
    let cols: Vec<String> = cols.iter().map(|s| s.to_string()).collect();
    aws::block_on(async move {
        let get = |r: Resource| {
            let c = c.clone();
            async move { c.get_resource_lf_tags().resource(r).send().await.unwrap() }
        };
        // moto answers HTTP 500 for a database never tagged (AWS: no tags): read as none.
        let d = c
            .get_resource_lf_tags()
            .resource(
                Resource::builder()
                    .database(DatabaseResource::builder().name(&db).build().unwrap())
                    .build(),
            )
            .send()
            .await
            .map(|o| tag_map(o.lf_tag_on_database()))
            .unwrap_or_default();
        let t = get(Resource::builder()
            .table(
                TableResource::builder()
                    .database_name(&db)
                    .name(&table)
                    .build()
                    .unwrap(),
            )
            .build())
        .await;
        let cs = get(Resource::builder()
            .table_with_columns(
                TableWithColumnsResource::builder()
                    .database_name(&db)
                    .name(&table)
                    .set_column_names(Some(cols))
                    .build()
                    .unwrap(),
            )
            .build())
        .await;
        (
            d,
            tag_map(t.lf_tags_on_table()),
            cs.lf_tags_on_columns()
                .iter()
                .map(|c| {
                    (
                        c.name().unwrap_or_default().to_string(),
                        tag_map(c.lf_tags()),
                    )
                })
                .collect(),
        )
    })
}

#[test]
fn a_published_product_is_registered_with_columns_partition_and_lf_tags() {
    let Some(m) = moto() else { return };
    let (store, uri, settings) = setup(m, true);
    let db = settings.products_database.clone().unwrap();
    let cat = GlueCatalog::new(&settings, &m.settings(), "proj", &uri).unwrap();
    let spec = spec("churn_scores");
    let d = day("2024-09-30");
    let m1 = publish(&store, &spec, d, "run-one");
    // Nothing registered yet: the check passes without a table.
    cat.check_product(&spec, &m1.schema).unwrap();

    let rec = cat.register_product(&store, &spec, &m1).unwrap().unwrap();
    assert_eq!(
        (rec.database.as_str(), rec.table.as_str()),
        (db.as_str(), "churn_scores_v1")
    );
    let first = run_prefix(&uri, &spec, &m1);
    assert_eq!(rec.location, first);
    for a in [
        format!("CreateDatabase {db}"),
        format!("CreateTable {db}.churn_scores_v1"),
        format!("BatchCreatePartition {db}.churn_scores_v1 as_of=2024-09-30 -> {first}"),
    ] {
        assert!(rec.actions.contains(&a), "{a} in {:?}", rec.actions);
    }
    assert!(
        rec.actions
            .iter()
            .any(|a| a.starts_with("AddLFTagsToResource columns customer_id of table")),
        "{:?}",
        rec.actions
    );

    // The table, read back.
    let t = get_table(m, &db, "churn_scores_v1");
    assert_eq!(t.table_type(), Some("EXTERNAL_TABLE"));
    assert_eq!(t.description(), Some("churn risk per customer"));
    let sd = t.storage_descriptor().unwrap();
    let cols: Vec<(&str, &str, &str)> = sd
        .columns()
        .iter()
        .map(|c| (c.name(), c.r#type().unwrap(), c.comment().unwrap_or("")))
        .collect();
    // `as_of` is the partition key, not a column too.
    assert_eq!(
        cols,
        [
            ("customer_id", "string", "what customer_id means"),
            ("score", "double", "what score means")
        ]
    );
    assert_eq!(
        sd.location(),
        Some(format!("{uri}/products/churn_scores/v1/").as_str())
    );
    assert_eq!(
        sd.input_format(),
        Some("org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat")
    );
    assert_eq!(
        sd.output_format(),
        Some("org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat")
    );
    let serde = sd.serde_info().unwrap();
    assert_eq!(
        serde.serialization_library(),
        Some("org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe")
    );
    assert_eq!(
        serde
            .parameters()
            .unwrap()
            .get("serialization.format")
            .map(String::as_str),
        Some("1")
    );
    let keys: Vec<(&str, &str, &str)> = t
        .partition_keys()
        .iter()
        .map(|c| (c.name(), c.r#type().unwrap(), c.comment().unwrap_or("")))
        .collect();
    assert_eq!(keys.len(), 1);
    assert_eq!((keys[0].0, keys[0].1), ("as_of", "date"));
    assert!(keys[0].2.contains("yyyy-MM-dd"), "{keys:?}");
    let p = t.parameters().unwrap();
    for (k, v) in [
        ("classification", "parquet".to_string()),
        ("EXTERNAL", "TRUE".to_string()),
        ("contract_version", "1.0.0".to_string()),
        ("owner", "team@example.com".to_string()),
        ("domain", "marketing".to_string()),
        ("data_product", "churn_scores".to_string()),
        ("c360_version", offline::c360_version()),
    ] {
        assert_eq!(p.get(k), Some(&v), "parameter {k} in {p:?}");
    }
    // The partition names exactly the committed run's prefix.
    assert_eq!(
        partitions(m, &db, "churn_scores_v1"),
        BTreeMap::from([("2024-09-30".to_string(), first.clone())])
    );

    // Lake Formation tags on database, table and each column.
    let (dbt, tt, ct) = lf_tags_of(m, &db, "churn_scores_v1", &["customer_id", "score"]);
    assert_eq!(
        dbt,
        tags(&[("cost_center", "cc42"), ("domain", "marketing")])
    );
    assert_eq!(
        tt,
        tags(&[
            ("classification", "internal"),
            ("cost_center", "cc42"),
            ("data_product", "churn_scores"),
            ("domain", "marketing")
        ])
    );
    assert_eq!(
        ct["customer_id"],
        tags(&[("classification", "confidential")])
    );
    assert_eq!(ct["score"], tags(&[("classification", "public")]));
    let class: Vec<String> = {
        let c = lakeformation(m);
        aws::block_on(async move {
            let mut v = c
                .get_lf_tag()
                .tag_key("classification")
                .send()
                .await
                .unwrap()
                .tag_values()
                .to_vec();
            v.sort();
            v
        })
    };
    assert_eq!(class, ["confidential", "internal", "public"]);

    // Idempotent: nothing to do a second time.
    let again = cat.register_product(&store, &spec, &m1).unwrap().unwrap();
    assert_eq!(again.actions, Vec::<String>::new());
    assert_eq!(again.location, first);

    // A re-publish of the same as-of (another run) moves the partition to its new prefix.
    let m2 = publish(&store, &spec, d, "run-number-two");
    let second = run_prefix(&uri, &spec, &m2);
    assert_ne!(first, second);
    let moved = cat.register_product(&store, &spec, &m2).unwrap().unwrap();
    assert_eq!(
        moved.actions,
        [format!(
            "UpdatePartition {db}.churn_scores_v1 as_of=2024-09-30 -> {second}"
        )]
    );
    assert_eq!(
        partitions(m, &db, "churn_scores_v1"),
        BTreeMap::from([("2024-09-30".to_string(), second.clone())])
    );
    // What gc must keep: the store key of the one registered run prefix.
    let key = second
        .strip_prefix(&format!("{uri}/"))
        .unwrap()
        .trim_end_matches('/')
        .to_string();
    assert_eq!(
        cat.referenced_locations(&store, "churn_scores", 1).unwrap(),
        [key]
    );
    assert_eq!(
        cat.referenced_locations(&store, "churn_scores", 7).unwrap(),
        Vec::<String>::new()
    );

    // A feature snapshot: its own table in the features database, tagged internal.
    let fdb = settings.features_database.clone().unwrap();
    let (_, snap) = snapshot(&store);
    let rec = cat.register_snapshot(&store, &snap).unwrap().unwrap();
    assert_eq!(
        (rec.database.as_str(), rec.table.as_str()),
        (fdb.as_str(), "rfm_v2")
    );
    let (_, tt, ct) = lf_tags_of(m, &fdb, "rfm_v2", &["customer_id", "recency_days"]);
    assert_eq!(
        tt,
        tags(&[("classification", "internal"), ("data_product", "rfm")])
    );
    // No PII column: the identifier is confidential, the features internal.
    assert_eq!(
        ct,
        BTreeMap::from([
            (
                "customer_id".to_string(),
                tags(&[("classification", "confidential")])
            ),
            (
                "recency_days".to_string(),
                tags(&[("classification", "internal")])
            ),
        ])
    );
    assert_eq!(
        get_table(m, &fdb, "rfm_v2").parameters().unwrap()["pii_columns"],
        ""
    );

    // The dry-run plan names the database, the table, the partition move and the tags.
    let plan = cat.plan_product(&spec, d).join("\n");
    for needle in [
        format!("database {db}"),
        format!("CreateTable {db}.churn_scores_v1"),
        "partition as_of=2024-09-30".to_string(),
        "this run's new prefix".to_string(),
        "columns customer_id of".to_string(),
        "classification=confidential".to_string(),
    ] {
        assert!(plan.contains(&needle), "{needle} in {plan}");
    }
}

#[test]
fn a_non_additive_schema_is_refused_naming_the_column_and_an_additive_one_is_registered() {
    let Some(m) = moto() else { return };
    let (store, uri, settings) = setup(m, false);
    let db = settings.products_database.clone().unwrap();
    let cat = GlueCatalog::new(&settings, &m.settings(), "proj", &uri).unwrap();
    let spec = spec("retyped");
    let m1 = publish(&store, &spec, day("2024-09-29"), "r1");
    let rec = cat.register_product(&store, &spec, &m1).unwrap().unwrap();
    assert!(
        !rec.actions.iter().any(|a| a.contains("LFTag")),
        "lf_tags = false tags nothing: {:?}",
        rec.actions
    );
    let col = |n: &str, t: &str| ColumnInfo {
        name: n.into(),
        dtype: t.into(),
    };

    let retyped = [
        col("customer_id", "str"),
        col("score", "str"),
        col("as_of", "date"),
    ];
    let e = cat.check_product(&spec, &retyped).unwrap_err();
    let text = e.to_string();
    assert!(
        matches!(e, MeshError::SchemaChange { major: 1, .. }),
        "{e:?}"
    );
    assert!(
        text.contains("column score changed type double → string"),
        "{text}"
    );
    assert!(text.contains(&format!("{db}.retyped_v1")), "{text}");
    assert!(text.contains("bump [product] major"), "{text}");

    let removed = [col("customer_id", "str"), col("as_of", "date")];
    let text = cat.check_product(&spec, &removed).unwrap_err().to_string();
    assert!(text.contains("column score (double) was removed"), "{text}");
    // register_product (after the gate, or sync) refuses a retyped column: nothing
    // changes; a version lacking a column the table has registers, the table keeps it.
    let mut bad = m1.clone();
    bad.schema = retyped.to_vec();
    let e = cat.register_product(&store, &spec, &bad).unwrap_err();
    assert!(
        matches!(&e, MeshError::SchemaChange { .. })
            && e.to_string()
                .contains("column score changed type double → string"),
        "{e}"
    );
    let mut older = m1.clone();
    older.schema = removed.to_vec();
    let rec = cat
        .register_product(&store, &spec, &older)
        .unwrap()
        .unwrap();
    assert!(rec.actions.is_empty(), "{:?}", rec.actions);
    assert_eq!(
        get_table(m, &db, "retyped_v1")
            .storage_descriptor()
            .unwrap()
            .columns()
            .len(),
        2
    );

    // A type Glue has none of is refused with the column named.
    let e = cat
        .check_product(
            &spec,
            &[col("customer_id", "str"), col("took", "duration[ms]")],
        )
        .unwrap_err();
    assert!(
        matches!(&e, MeshError::UnsupportedType { column, dtype, .. } if column == "took" && dtype == "duration[ms]"),
        "{e:?}"
    );

    // Additive: accepted, and the table grows.
    let added = [
        col("customer_id", "str"),
        col("score", "f64"),
        col("as_of", "date"),
        col("segment", "str"),
    ];
    cat.check_product(&spec, &added).unwrap();
    let mut grown = m1.clone();
    grown.schema = added.to_vec();
    let rec = cat
        .register_product(&store, &spec, &grown)
        .unwrap()
        .unwrap();
    assert_eq!(rec.actions, [format!("UpdateTable {db}.retyped_v1")]);
    let t = get_table(m, &db, "retyped_v1");
    let names: Vec<(&str, &str)> = t
        .storage_descriptor()
        .unwrap()
        .columns()
        .iter()
        .map(|c| (c.name(), c.r#type().unwrap()))
        .collect();
    assert_eq!(
        names,
        [
            ("customer_id", "string"),
            ("score", "double"),
            ("segment", "string")
        ]
    );
}

#[test]
fn an_unreachable_glue_endpoint_is_an_aws_error_naming_the_operation() {
    // No moto needed: nothing listens on port 1.
    let aws_settings = AwsSettings {
        region: Some("us-east-1".into()),
        glue_endpoint_url: Some("http://127.0.0.1:1".into()),
        max_attempts: 1,
        credentials: Some(StaticCredentials {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "very-secret-value".into(),
        }),
        ..AwsSettings::default()
    };
    let settings = CatalogSettings {
        kind: CatalogKind::Glue,
        ..CatalogSettings::default()
    };
    let cat = GlueCatalog::new(&settings, &aws_settings, "My-Proj", "s3://bucket/store").unwrap();
    assert_eq!(cat.products_database(), "my_proj_products");
    assert_eq!(cat.features_database(), "my_proj_features");
    let spec = spec("churn_scores");
    let schema = [ColumnInfo {
        name: "customer_id".into(),
        dtype: "str".into(),
    }];
    let e = cat.check_product(&spec, &schema).unwrap_err();
    let text = e.to_string();
    match &e {
        MeshError::Aws {
            service,
            operation,
            resource,
            ..
        } => {
            assert_eq!((*service, *operation), ("Glue", "GetTable"));
            assert_eq!(resource, "table my_proj_products.churn_scores_v1");
        }
        other => panic!("{other:?}"),
    }
    assert!(text.contains("could not reach the endpoint"), "{text}");
    assert!(text.contains("Connection refused"), "{text}");
    // The causes' messages, never a Rust Debug dump of the SDK error.
    for dump in ["DispatchFailure", "ConnectorError", " { ", "Some("] {
        assert!(!text.contains(dump), "{dump} in {text}");
    }
    assert!(text.contains("glue_endpoint_url"), "{text}");
    assert!(!text.contains("very-secret-value"), "{text}");
    let local = tempfile::tempdir().unwrap();
    let e = cat
        .register_snapshot(
            &c360::store::LocalStore::new(local.path()),
            &snapshot_manifest(),
        )
        .unwrap_err();
    assert!(
        matches!(&e, MeshError::Aws { operation: "GetDatabase", resource, .. } if resource == "database my_proj_features, registering feature snapshot rfm v2 as_of=2024-09-30 in database my_proj_features"),
        "{e:?}"
    );
    assert!(!e.to_string().contains("DispatchFailure"), "{e}");

    // A Glue catalog needs the store on S3.
    let dir = tempfile::tempdir().unwrap();
    let e = GlueCatalog::new(
        &settings,
        &aws_settings,
        "p",
        &dir.path().display().to_string(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("[store] uri = \"s3://...\""), "{e}");
}

/// A project folder whose c360.toml puts the store on moto's S3 and the catalog in Glue.
fn project(m: &Moto, uri: &str, catalog: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("c360.toml"),
        format!(
            "[project]\nname = \"proj\"\n[store]\nuri = \"{uri}\"\n{catalog}\n{}",
            m.toml("")
        ),
    )
    .unwrap();
    dir
}

fn sync(dir: &std::path::Path) -> (Option<i32>, String, String) {
    let out = crate::features::c360()
        .current_dir(dir)
        .args(["catalog", "sync"])
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn catalog_sync_registers_every_product_and_partition_and_a_second_run_changes_nothing() {
    let Some(m) = moto() else { return };
    let (store, uri, settings) = setup(m, false);
    let db = settings.products_database.clone().unwrap();
    let fdb = settings.features_database.clone().unwrap();
    // Published without any catalog: two versions of one product, one of another, and a
    // feature snapshot.
    let a = spec("alpha_scores");
    let b = spec("beta_scores");
    let a1 = publish(&store, &a, day("2024-09-29"), "a-1");
    let a2 = publish(&store, &a, day("2024-09-30"), "a-2");
    let b1 = publish(&store, &b, day("2024-09-30"), "b-1");
    let (snap_prefix, snap) = snapshot(&store);

    // kind = "none": nothing to sync to.
    let none = project(m, &uri, "");
    let (code, _, err) = sync(none.path());
    assert_eq!(code, Some(3), "{err}");
    assert!(err.contains("kind = \"none\""), "{err}");

    let catalog = format!(
        "[catalog]\nkind = \"glue\"\nproducts_database = \"{db}\"\nfeatures_database = \"{fdb}\"\n"
    );
    let dir = project(m, &uri, &catalog);
    let (code, out, err) = sync(dir.path());
    assert_eq!(code, Some(0), "{out}\n{err}");
    for line in [
        "product alpha_scores v1 as_of=2024-09-29: registered",
        "product alpha_scores v1 as_of=2024-09-30: registered",
        "product beta_scores v1 as_of=2024-09-30: registered",
        "feature set rfm v2 as_of=2024-09-30: registered",
        "4 registered, 0 unchanged, 0 failed",
    ] {
        assert!(out.contains(line), "{line} in {out}");
    }
    let a_parts = partitions(m, &db, "alpha_scores_v1");
    assert_eq!(
        a_parts,
        BTreeMap::from([
            ("2024-09-29".to_string(), run_prefix(&uri, &a, &a1)),
            ("2024-09-30".to_string(), run_prefix(&uri, &a, &a2)),
        ])
    );
    let b_parts = partitions(m, &db, "beta_scores_v1");
    assert_eq!(
        b_parts,
        BTreeMap::from([("2024-09-30".to_string(), run_prefix(&uri, &b, &b1))])
    );
    let snap_dir = snap.files[0].rsplit_once('/').unwrap().0;
    let f_parts = partitions(m, &fdb, "rfm_v2");
    assert_eq!(
        f_parts,
        BTreeMap::from([(
            "2024-09-30".to_string(),
            format!("{uri}/{snap_prefix}/{snap_dir}/")
        )])
    );
    let rfm = get_table(m, &fdb, "rfm_v2");
    assert_eq!(
        rfm.parameters()
            .unwrap()
            .get("definition_hash")
            .map(String::as_str),
        Some("sha256:abc")
    );
    // Descriptions came from the stored contract.
    let alpha = get_table(m, &db, "alpha_scores_v1");
    let comments: Vec<&str> = alpha
        .storage_descriptor()
        .unwrap()
        .columns()
        .iter()
        .map(|c| c.comment().unwrap_or(""))
        .collect();
    assert_eq!(comments, ["what customer_id means", "what score means"]);

    // A second run changes nothing.
    let (code, out, err) = sync(dir.path());
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("0 registered, 4 unchanged, 0 failed"), "{out}");
    assert_eq!(out.matches(": unchanged").count(), 4, "{out}");
    assert_eq!(partitions(m, &db, "alpha_scores_v1"), a_parts);
    assert_eq!(partitions(m, &db, "beta_scores_v1"), b_parts);
    assert_eq!(partitions(m, &fdb, "rfm_v2"), f_parts);
    let out = crate::features::c360()
        .current_dir(dir.path())
        .args(["catalog", "sync", "--product", "alpha_scores"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("0 registered, 2 unchanged, 0 failed"),
        "{text}"
    );
    assert!(!text.contains("beta_scores"), "{text}");
    let out = crate::features::c360()
        .current_dir(dir.path())
        .args(["catalog", "sync", "--product", "nosuch"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("product nosuch has no catalog entry"), "{err}");
    let again = get_table(m, &db, "alpha_scores_v1");
    assert_eq!(again.version_id(), alpha.version_id());
    assert_eq!(again.storage_descriptor(), alpha.storage_descriptor());
    assert_eq!(again.parameters(), alpha.parameters());

    // A product whose spec cannot be found (no job, no contract) fails alone, named, and
    // the run exits non-zero; the others are still synced.
    store
        .delete(&c360::store::layout::product_contract("beta_scores"))
        .unwrap();
    let (code, out, err) = sync(dir.path());
    assert_eq!(code, Some(1), "{out}\n{err}");
    assert!(
        out.contains("product beta_scores v1 as_of=2024-09-30: FAILED: no spec"),
        "{out}"
    );
    assert!(out.contains("0 registered, 3 unchanged, 1 failed"), "{out}");
    assert!(err.contains("run `c360 catalog sync` again"), "{err}");
    assert_eq!(partitions(m, &db, "beta_scores_v1"), b_parts);
}

#[test]
fn catalog_sync_takes_classification_and_lf_tags_from_the_job_that_publishes_the_product() {
    let Some(m) = moto() else { return };
    let (store, uri, settings) = setup(m, true);
    let db = settings.products_database.clone().unwrap();
    // The contract says the table is `internal` and has no extra tags; the job says
    // `public` and `cost_center = cc7`.
    let t = crate::pipeline::TestProject::new(|j| {
        j.replace(
            "classification = \"internal\"\n",
            "classification = \"public\"\nlf_tags = { cost_center = \"cc7\" }\n",
        )
    });
    let mut spec = spec("customer_churn_scores");
    spec.lf_tags.clear();
    let m1 = publish(&store, &spec, day("2024-09-30"), "job-run");
    let cfg = std::fs::read_to_string(t.path().join("c360.toml"))
        .unwrap()
        .replace("uri = \"store\"", &format!("uri = \"{uri}\""))
        + &format!(
            "[catalog]\nkind = \"glue\"\nproducts_database = \"{db}\"\nfeatures_database = \"{}\"\nlf_tags = true\n",
            settings.features_database.clone().unwrap()
        )
        + &m.toml("");
    std::fs::write(t.path().join("c360.toml"), cfg).unwrap();
    let (code, out, err) = sync(t.path());
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("1 registered, 0 unchanged, 0 failed"), "{out}");
    let table = "customer_churn_scores_v1";
    assert_eq!(
        partitions(m, &db, table),
        BTreeMap::from([("2024-09-30".to_string(), run_prefix(&uri, &spec, &m1))])
    );
    let (_, tt, ct) = lf_tags_of(m, &db, table, &["customer_id", "score"]);
    assert_eq!(
        tt,
        tags(&[
            ("classification", "public"),
            ("cost_center", "cc7"),
            ("data_product", "customer_churn_scores"),
            ("domain", "marketing")
        ])
    );
    // customer_id is an identifier: confidential whatever the product's classification.
    assert_eq!(
        ct["customer_id"],
        tags(&[("classification", "confidential")])
    );
    assert_eq!(ct["score"], tags(&[("classification", "public")]));
    // Tags included, a second run changes nothing.
    let (code, out, err) = sync(t.path());
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("0 registered, 1 unchanged, 0 failed"), "{out}");
}

#[test]
fn a_lake_formation_failure_leaves_the_previous_version_registered() {
    let Some(m) = moto() else { return };
    let (store, uri, settings) = setup(m, true);
    let db = settings.products_database.clone().unwrap();
    let spec = spec("kept_scores");
    let d = day("2024-09-30");
    let cat = GlueCatalog::new(&settings, &m.settings(), "proj", &uri).unwrap();
    let m1 = publish(&store, &spec, d, "first");
    cat.register_product(&store, &spec, &m1).unwrap();
    // A re-publish whose tagging step cannot reach Lake Formation: refused, naming the
    // service and operation, and the partition still names the first run.
    let m2 = publish(&store, &spec, d, "second-run");
    let broken = AwsSettings {
        lakeformation_endpoint_url: Some("http://127.0.0.1:1".into()),
        max_attempts: 1,
        ..m.settings()
    };
    let cat2 = GlueCatalog::new(&settings, &broken, "proj", &uri).unwrap();
    let e = cat2.register_product(&store, &spec, &m2).unwrap_err();
    assert!(
        matches!(
            &e,
            MeshError::Aws {
                service: "Lake Formation",
                operation: "GetLFTag",
                ..
            }
        ),
        "{e:?}"
    );
    let text = e.to_string();
    assert!(text.contains("lakeformation_endpoint_url"), "{text}");
    assert!(
        text.starts_with(&format!(
            "Lake Formation GetLFTag on LF-Tag classification, registering product kept_scores v1 as_of=2024-09-30 in database {db}: could not reach the endpoint"
        )),
        "{text}"
    );
    assert!(!text.contains("DispatchFailure"), "{text}");
    // The same for a feature snapshot: named with the features database.
    let (_, snap) = snapshot(&store);
    let text = cat2
        .register_snapshot(&store, &snap)
        .unwrap_err()
        .to_string();
    let fdb = settings.features_database.clone().unwrap();
    assert!(
        text.starts_with(&format!(
            "Lake Formation GetLFTag on LF-Tag classification, registering feature snapshot rfm v2 as_of=2024-09-30 in database {fdb}: could not reach the endpoint"
        )),
        "{text}"
    );
    assert!(!text.contains("DispatchFailure"), "{text}");
    assert_eq!(
        partitions(m, &db, "kept_scores_v1"),
        BTreeMap::from([("2024-09-30".to_string(), run_prefix(&uri, &spec, &m1))])
    );
    // Once it is reachable again, the same registration moves it.
    let rec = cat.register_product(&store, &spec, &m2).unwrap().unwrap();
    assert_eq!(rec.location, run_prefix(&uri, &spec, &m2));
}

/// Two products whose names map to one Glue table name (`churn-scores` and `churn_scores`),
/// or two stores sharing a database: the second never takes over the first's table.
#[test]
fn a_table_registered_for_another_location_is_never_taken_over() {
    let Some(m) = moto() else { return };
    let (store, uri, settings) = setup(m, false);
    let db = settings.products_database.clone().unwrap();
    let cat = GlueCatalog::new(&settings, &m.settings(), "proj", &uri).unwrap();
    let d = day("2024-09-30");
    let first = spec("churn_scores");
    let m1 = publish(&store, &first, d, "run-one");
    cat.register_product(&store, &first, &m1).unwrap().unwrap();
    let other = spec("churn-scores");
    let m2 = publish(&store, &other, d, "run-two");
    for e in [
        cat.check_product(&other, &m2.schema).unwrap_err(),
        cat.register_product(&store, &other, &m2).unwrap_err(),
    ] {
        let text = e.to_string();
        assert!(
            text.starts_with(&format!(
                "Glue table {db}.churn_scores_v1: it is registered at"
            )) && text.contains("data_product churn_scores")
                && text.contains("products/churn-scores/v1/")
                && text.contains("rename the product"),
            "{text}"
        );
    }
    // The first product's partition is untouched.
    assert_eq!(
        partitions(m, &db, "churn_scores_v1"),
        BTreeMap::from([("2024-09-30".to_string(), run_prefix(&uri, &first, &m1))])
    );
    // Another store with the same databases: refused too.
    let (store2, uri2, _) = setup(m, false);
    let cat2 = GlueCatalog::new(&settings, &m.settings(), "proj", &uri2).unwrap();
    let m3 = publish(&store2, &first, d, "run-three");
    let text = cat2
        .register_product(&store2, &first, &m3)
        .unwrap_err()
        .to_string();
    assert!(text.contains(&uri2) && text.contains(&uri), "{text}");
}

/// A feature computed from a PII source column (`first` of `customers.email`): its snapshot
/// column is `confidential` in Lake Formation, `customer_id` too, the other columns and the
/// table `internal`; the table parameter `pii_columns` lists it.
#[test]
fn a_snapshot_column_derived_from_pii_is_tagged_confidential() {
    let Some(m) = moto() else { return };
    let (store, uri, settings) = setup(m, true);
    let fdb = settings.features_database.clone().unwrap();
    let cat = GlueCatalog::new(&settings, &m.settings(), "proj", &uri).unwrap();
    let prefix = offline::partition_prefix("rfm", 2, day("2024-09-30"));
    let mut manifest = snapshot_manifest();
    manifest.extra.insert(
        "pii_columns".into(),
        json!({"first_email": ["customers.email"]}),
    );
    let snap = offline::commit_partition(
        &store,
        &prefix,
        &df!(
            "customer_id" => ["a", "b"],
            "first_email" => ["a@example.com", "b@example.com"],
            "recency_days" => [3i64, 9]
        )
        .unwrap(),
        manifest,
        &|_, _| {},
    )
    .unwrap();
    let rec = cat.register_snapshot(&store, &snap).unwrap().unwrap();
    assert_eq!(rec.table, "rfm_v2");
    let t = get_table(m, &fdb, "rfm_v2");
    let params = t.parameters().unwrap();
    assert_eq!(params["pii_columns"], "first_email");
    let comments: BTreeMap<&str, &str> = t
        .storage_descriptor()
        .unwrap()
        .columns()
        .iter()
        .map(|c| (c.name(), c.comment().unwrap_or("")))
        .collect();
    assert_eq!(
        comments["first_email"],
        "PII by lineage, from customers.email"
    );
    let (_, table, cols) = lf_tags_of(
        m,
        &fdb,
        "rfm_v2",
        &["customer_id", "first_email", "recency_days"],
    );
    assert_eq!(table["classification"], ["internal"]);
    assert_eq!(
        cols["first_email"],
        tags(&[("classification", "confidential")])
    );
    assert_eq!(
        cols["customer_id"],
        tags(&[("classification", "confidential")])
    );
    assert_eq!(
        cols["recency_days"],
        tags(&[("classification", "internal")])
    );
    // Registering again changes nothing (tags read back equal).
    let again = cat.register_snapshot(&store, &snap).unwrap().unwrap();
    assert!(again.actions.is_empty(), "{:?}", again.actions);

    // A pii_columns of an unknown shape: every column confidential (fail closed).
    let mut odd = snap.clone();
    odd.version = 3;
    odd.extra.insert("pii_columns".into(), json!(42));
    cat.register_snapshot(&store, &odd).unwrap().unwrap();
    assert_eq!(
        get_table(m, &fdb, "rfm_v3").parameters().unwrap()["pii_columns"],
        "customer_id,first_email,recency_days"
    );
    let (_, _, cols) = lf_tags_of(m, &fdb, "rfm_v3", &["recency_days"]);
    assert_eq!(
        cols["recency_days"],
        tags(&[("classification", "confidential")])
    );
}

/// A product gained a column at a later as-of (additive, same major): re-registering the
/// older version (what `catalog sync` does) succeeds and keeps the newer column, while the
/// publish-time gate still refuses a new version without it.
#[test]
fn syncing_an_older_version_after_an_additive_change_keeps_the_new_column() {
    let Some(m) = moto() else { return };
    let (store, uri, settings) = setup(m, false);
    let db = settings.products_database.clone().unwrap();
    let cat = GlueCatalog::new(&settings, &m.settings(), "proj", &uri).unwrap();
    let spec = spec("grown_scores");
    let (a, b) = (day("2024-09-29"), day("2024-09-30"));
    let m_a = publish(&store, &spec, a, "run-a");
    cat.register_product(&store, &spec, &m_a).unwrap().unwrap();
    let mut m_b = publish(&store, &spec, b, "run-bb");
    m_b.schema.push(ColumnInfo {
        name: "segment".into(),
        dtype: "str".into(),
    });
    cat.check_product(&spec, &m_b.schema).unwrap();
    let rec = cat.register_product(&store, &spec, &m_b).unwrap().unwrap();
    assert!(
        rec.actions
            .contains(&format!("UpdateTable {db}.grown_scores_v1")),
        "{:?}",
        rec.actions
    );
    let columns = || -> Vec<String> {
        get_table(m, &db, "grown_scores_v1")
            .storage_descriptor()
            .unwrap()
            .columns()
            .iter()
            .map(|c| format!("{} {}", c.name(), c.r#type().unwrap_or("")))
            .collect()
    };
    let grown = ["customer_id string", "score double", "segment string"];
    assert_eq!(columns(), grown);
    // Sync: the older version again. Accepted, nothing changes, the table keeps segment.
    let rec = cat.register_product(&store, &spec, &m_a).unwrap().unwrap();
    assert!(rec.actions.is_empty(), "{:?}", rec.actions);
    assert_eq!(rec.location, run_prefix(&uri, &spec, &m_a));
    assert_eq!(columns(), grown);
    assert_eq!(
        partitions(m, &db, "grown_scores_v1"),
        BTreeMap::from([
            (a.to_string(), run_prefix(&uri, &spec, &m_a)),
            (b.to_string(), run_prefix(&uri, &spec, &m_b)),
        ])
    );
    // A NEW version without segment is still refused at the gate.
    let e = cat.check_product(&spec, &m_a.schema).unwrap_err();
    assert!(
        matches!(&e, MeshError::SchemaChange { major: 1, .. })
            && e.to_string()
                .contains("column segment (string) was removed"),
        "{e}"
    );
}
