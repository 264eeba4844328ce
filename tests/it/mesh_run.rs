//! The data mesh end to end (issue 12), against moto's server mode on loopback: whole
//! `c360 run`s with the store on S3, the sources resolved through `glue://`, the product
//! and its snapshots registered in the Glue Data Catalog with Lake Formation tags, and the
//! product event delivered through an EventBridge bus to an SQS queue. Then re-publishes
//! killed between the stages of the commit, read meanwhile by an independent reader
//! (DuckDB over exactly the objects under the Glue partition's location), and bad input.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use c360::aws::{self, AwsSettings};
use c360::pipeline::{Ledger, RunStatus};
use c360::store::{ObjectStore, S3Store};

use crate::aws::{moto, unique, Moto};
use crate::mesh_catalog::lf_tags_of;
use crate::mesh_sources::{create_database, create_table, glue};
use crate::pipeline::{python, TestProject};

const PRODUCT: &str = "customer_churn_scores";
const TABLE: &str = "customer_churn_scores_v1";
const AS_OF: &str = "2024-06-30";
const TABLES: [&str; 4] = ["customers", "orders", "interactions", "support_tickets"];

/// A project on moto: sources registered in a Glue database, store on S3, catalog Glue with
/// LF tags, events to a bus whose rule forwards `source = c360` to an SQS queue.
struct MeshProject {
    t: TestProject,
    settings: AwsSettings,
    store_uri: String,
    products_db: String,
    features_db: String,
    queue_url: String,
    /// The sources' root on S3 (each table a folder under it) and their Glue database.
    src_root: String,
    src_db: String,
}

impl MeshProject {
    fn new(m: &Moto, customers: u32) -> MeshProject {
        let tag = unique("mesh").replace('-', "_");
        let bucket = unique("c360-mesh");
        m.create_bucket(&bucket);
        let t = TestProject::new(|j| j.replace("max_mean_shift = 0.15", "max_mean_shift = 0.9"));
        t.use_local_model();
        t.generate(customers);
        let settings = m.settings();
        // Each producer table under a prefix of its own, registered in the sources database.
        let src_db = format!("src_{tag}");
        let src_root = format!("s3://{bucket}/domains");
        let src = S3Store::open(&src_root, &settings).unwrap();
        for table in TABLES {
            let file = t.path().join("data").join(format!("{table}.parquet"));
            src.put(
                &format!("{table}/{table}.parquet"),
                &std::fs::read(file).unwrap(),
            )
            .unwrap();
        }
        let g = glue(m);
        create_database(&g, &src_db);
        for table in TABLES {
            let location = format!("{src_root}/{table}/");
            create_table(&g, &src_db, table, &location, Some("parquet"), &[]);
        }
        // The bus, and a queue that receives what the bus routes for source c360.
        let bus = format!("c360-{tag}");
        let queue_url = crate::mesh_events::bus_with_queue(&settings, &bus);
        let store_uri = format!("s3://{bucket}/c360");
        let products_db = format!("products_{tag}");
        let features_db = format!("features_{tag}");
        let cfg = std::fs::read_to_string(t.path().join("c360.toml")).unwrap();
        let cfg = cfg
            .replace("uri = \"store\"", &format!("uri = \"{store_uri}\""))
            .replace("uri = \"data\"", &format!("uri = \"glue://{src_db}\""))
            + &m.toml(&format!(
                "cache_dir = \"{}\"\n",
                t.path().join("cache").display()
            ))
            + &format!(
                "\n[catalog]\nkind = \"glue\"\nproducts_database = \"{products_db}\"\nfeatures_database = \"{features_db}\"\nowner = \"data-platform@example.com\"\nlf_tags = true\n\n[events]\nkind = \"eventbridge\"\nbus_name = \"{bus}\"\n"
            );
        std::fs::write(t.path().join("c360.toml"), cfg).unwrap();
        MeshProject {
            t,
            settings,
            store_uri,
            products_db,
            features_db,
            queue_url,
            src_root,
            src_db,
        }
    }

    fn store(&self) -> S3Store {
        S3Store::open(&self.store_uri, &self.settings).unwrap()
    }

    fn run(&self, extra_env: &[(&str, &str)]) -> (i32, String) {
        let mut c = self.t.cmd();
        c.args(["run", "churn_weekly", "--as-of", AS_OF]);
        for (k, v) in extra_env {
            c.env(k, v);
        }
        let out = c.output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }

    fn ledger(&self, run_id: &str) -> Ledger {
        let b = self
            .store()
            .get(&format!("runs/churn_weekly/{run_id}/run.json"))
            .unwrap();
        serde_json::from_slice(&b).unwrap()
    }

    /// The committed manifest of the product's partition.
    fn manifest(&self) -> c360::offline::Manifest {
        c360::offline::read_manifest(
            &self.store(),
            &c360::product::partition_prefix(PRODUCT, 1, AS_OF.parse().unwrap()),
        )
        .unwrap()
        .expect("a committed manifest")
    }

    /// `latest.json`'s run id.
    fn latest_run(&self) -> Option<String> {
        c360::product::latest(&self.store(), PRODUCT)
            .unwrap()
            .map(|l| l.run_id)
    }

    fn glue(&self) -> aws_sdk_glue::Client {
        let s = self.settings.clone();
        aws::block_on(async move { aws::glue_client(&s).await.unwrap() })
    }

    /// The Glue partition `as_of=AS_OF`'s location, or None when it is not registered.
    fn partition_location(&self) -> Option<String> {
        let (g, db) = (self.glue(), self.products_db.clone());
        aws::block_on(async move {
            match g
                .get_partition()
                .database_name(db)
                .table_name(TABLE)
                .partition_values(AS_OF)
                .send()
                .await
            {
                Ok(p) => p
                    .partition
                    .and_then(|p| p.storage_descriptor)
                    .and_then(|sd| sd.location),
                Err(_) => None,
            }
        })
    }

    /// Receives the events the queue holds (waits up to `secs` for the first).
    fn events(&self, secs: i32) -> Vec<serde_json::Value> {
        let (s, url) = (self.settings.clone(), self.queue_url.clone());
        aws::block_on(async move {
            let cfg = aws::sdk_config(&s).await.unwrap();
            let sqs = aws_sdk_sqs::Client::new(&cfg);
            let mut out = Vec::new();
            loop {
                let r = sqs
                    .receive_message()
                    .queue_url(&url)
                    .max_number_of_messages(10)
                    .wait_time_seconds(if out.is_empty() { secs } else { 0 })
                    .send()
                    .await
                    .unwrap();
                let msgs = r.messages.unwrap_or_default();
                if msgs.is_empty() {
                    return out;
                }
                for m in msgs {
                    out.push(serde_json::from_str(m.body.as_deref().unwrap()).unwrap());
                    sqs.delete_message()
                        .queue_url(&url)
                        .receipt_handle(m.receipt_handle.unwrap())
                        .send()
                        .await
                        .unwrap();
                }
            }
        })
    }
}

/// DuckDB's answer to `sql` (its first row, values separated by spaces).
fn duckdb_row(py: &Path, sql: &str) -> String {
    let out = Command::new(py)
        .args([
            "-c",
            "import duckdb,sys; print(*duckdb.sql(sys.argv[1]).fetchone())",
            sql,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The independent reader: lists the objects under an S3 location as an engine does
/// (skipping `_`- and `.`-prefixed names), copies them to a folder and asks DuckDB for the
/// row count, the number of distinct `scored_at` values (one per run) and the risk bands.
/// None without a registered location.
fn read_location(mp: &MeshProject, py: &Path, location: &str) -> Option<(u64, u64, String)> {
    let key = location
        .strip_prefix(&format!("{}/", mp.store_uri))
        .expect("the location is in the store")
        .trim_end_matches('/');
    let store = mp.store();
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    for o in store.list(key).unwrap() {
        let name = o.key.rsplit('/').next().unwrap();
        if name.starts_with('_') || name.starts_with('.') {
            continue;
        }
        std::fs::write(
            dir.path().join(format!("{n}-{name}")),
            store.get(&o.key).unwrap(),
        )
        .unwrap();
        n += 1;
    }
    assert!(n > 0, "the registered location {location} holds no file");
    let sql = format!(
        "select count(*), count(distinct scored_at), string_agg(distinct risk_band, ',' order by risk_band) from read_parquet('{}/*.parquet')",
        dir.path().display()
    );
    let s = duckdb_row(py, &sql);
    let mut it = s.split(' ');
    Some((
        it.next().unwrap().parse().unwrap(),
        it.next().unwrap().parse().unwrap(),
        it.next().unwrap_or("").to_string(),
    ))
}

#[test]
fn a_run_registers_its_product_and_snapshots_in_glue_tags_them_and_announces_the_version() {
    let Some(m) = moto() else { return };
    let mp = MeshProject::new(m, 300);

    // The dry run lists what the mesh will see, in the commit order.
    let out =
        mp.t.cmd()
            .args(["run", "churn_weekly", "--as-of", AS_OF, "--dry-run"])
            .output()
            .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    let mesh = text.split("data mesh").nth(1).expect("a data mesh section");
    for want in [&mp.products_db, TABLE, "as_of=2024-06-30", "PutEvents"] {
        assert!(
            mesh.contains(want),
            "{want} missing from the dry run: {mesh}"
        );
    }

    let (code, out) = mp.run(&[]);
    assert_eq!(code, 0, "{out}");
    let m1 = mp.manifest();
    let ledger = mp.ledger(&m1.run_id);
    assert_eq!(ledger.status, RunStatus::Succeeded);
    let summary = ledger.product.clone().unwrap();
    let partition = c360::product::partition_prefix(PRODUCT, 1, AS_OF.parse().unwrap());
    let run_dir = c360::offline::run_prefix(&partition, &m1);
    assert!(
        run_dir.starts_with(&format!("{partition}/run=")),
        "{run_dir}"
    );
    let location = format!("{}/{run_dir}/", mp.store_uri);
    let cat = summary
        .catalog
        .clone()
        .expect("the ledger records the registration");
    assert_eq!(
        (
            cat.database.as_str(),
            cat.table.as_str(),
            cat.location.as_str()
        ),
        (mp.products_db.as_str(), TABLE, location.as_str())
    );
    assert!(out.contains(&location), "{out}");

    // The table, read back from Glue.
    let (g, db) = (mp.glue(), mp.products_db.clone());
    let table = aws::block_on(async move {
        g.get_table()
            .database_name(db)
            .name(TABLE)
            .send()
            .await
            .unwrap()
            .table
            .unwrap()
    });
    let sd = table.storage_descriptor.clone().unwrap();
    assert_eq!(
        sd.location.as_deref(),
        Some(format!("{}/products/{PRODUCT}/v1/", mp.store_uri).as_str())
    );
    assert_eq!(
        sd.input_format.as_deref(),
        Some("org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat")
    );
    assert_eq!(
        sd.serde_info
            .as_ref()
            .and_then(|s| s.serialization_library.as_deref()),
        Some("org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe")
    );
    let cols: Vec<(String, String, String)> = sd
        .columns
        .unwrap_or_default()
        .into_iter()
        .map(|c| {
            (
                c.name,
                c.r#type.unwrap_or_default(),
                c.comment.unwrap_or_default(),
            )
        })
        .collect();
    let names: Vec<&str> = cols.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(
        names,
        [
            "customer_id",
            "churn_score",
            "risk_band",
            "rfm_segment",
            "days_since_last_order",
            "frequency_orders",
            "monetary_total",
            "scored_at",
            "model",
            "model_version",
            "feature_sets"
        ],
        "every product column but as_of, which is the partition key"
    );
    let col = |n: &str| cols.iter().find(|c| c.0 == n).unwrap().clone();
    assert_eq!(
        col("customer_id"),
        (
            "customer_id".into(),
            "string".into(),
            "The customer (Customer 360 id)".into()
        )
    );
    assert_eq!(col("churn_score").1, "double");
    assert_eq!(col("scored_at").1, "timestamp");
    assert_eq!(col("frequency_orders").1, "bigint");
    assert_eq!(
        col("model_version").2,
        "First 12 hex digits of the model artifact's SHA-256"
    );
    let keys: Vec<(String, String)> = table
        .partition_keys
        .unwrap_or_default()
        .into_iter()
        .map(|c| (c.name, c.r#type.unwrap_or_default()))
        .collect();
    assert_eq!(keys, [("as_of".to_string(), "date".to_string())]);
    let params = table.parameters.unwrap_or_default();
    for (k, v) in [
        ("classification", "parquet"),
        ("contract_version", "1.0.0"),
        ("owner", "marketing-analytics@example.com"),
        ("domain", "customer"),
        ("data_product", PRODUCT),
    ] {
        assert_eq!(
            params.get(k).map(String::as_str),
            Some(v),
            "{k}: {params:?}"
        );
    }
    assert!(params["c360_version"].starts_with("c360 "), "{params:?}");

    // The partition points at the committed run's own prefix.
    assert_eq!(mp.partition_location().as_deref(), Some(location.as_str()));
    if let Some(py) = python() {
        let (rows, runs, _) = read_location(&mp, &py, &location).unwrap();
        assert_eq!((rows, runs), (m1.rows, 1));
    }

    // The feature snapshots are registered in their own database.
    let (g, db) = (mp.glue(), mp.features_db.clone());
    let snap_locations = aws::block_on(async move {
        let mut v = Vec::new();
        for t in ["rfm_v1", "churn_signals_v1"] {
            let p = g
                .get_partition()
                .database_name(&db)
                .table_name(t)
                .partition_values(AS_OF)
                .send()
                .await
                .unwrap();
            v.push(
                p.partition
                    .unwrap()
                    .storage_descriptor
                    .unwrap()
                    .location
                    .unwrap(),
            );
        }
        v
    });
    for (set, loc) in ["rfm", "churn_signals"].iter().zip(&snap_locations) {
        let prefix = c360::offline::partition_prefix(set, 1, AS_OF.parse().unwrap());
        let sm = c360::offline::read_manifest(&mp.store(), &prefix)
            .unwrap()
            .unwrap();
        assert_eq!(
            loc,
            &format!(
                "{}/{}/",
                mp.store_uri,
                c360::offline::run_prefix(&prefix, &sm)
            )
        );
    }

    // Lake Formation tags: database and table from the job, columns from the contract.
    let (on_db, on_table, columns) = lf_tags_of(m, &mp.products_db, TABLE, &names);
    assert_eq!(on_table["domain"], ["customer"]);
    assert_eq!(on_table["data_product"], [PRODUCT]);
    assert_eq!(on_table["classification"], ["internal"]);
    // The database carries the domain (its products' data_product and classification
    // differ, so those are on each table only).
    assert_eq!(on_db["domain"], ["customer"], "{on_db:?}");
    for c in names {
        let want = if c == "customer_id" {
            "confidential"
        } else {
            "internal"
        };
        assert_eq!(
            columns.get(c).map(|t| t["classification"].clone()),
            Some(vec![want.to_string()]),
            "column {c}: {columns:?}"
        );
    }

    // The event, as the subscriber's queue received it.
    let events = mp.events(10);
    assert_eq!(events.len(), 1, "{events:?}");
    let e = &events[0];
    assert_eq!(e["source"], "c360");
    assert_eq!(e["detail-type"], "Data Product Version Published");
    let d = &e["detail"];
    assert_eq!(d["product"], PRODUCT);
    assert_eq!(d["major"], 1);
    assert_eq!(d["as_of"], AS_OF);
    assert_eq!(d["run_id"], m1.run_id.as_str());
    assert_eq!(d["location"], location.as_str());
    assert_eq!(d["glue_database"], mp.products_db.as_str());
    assert_eq!(d["glue_table"], TABLE);
    assert_eq!(d["rows"], m1.rows);
    assert_eq!(d["contract_version"], "1.0.0");
    assert_eq!(d["latest"], true);
    assert_eq!(
        d["score_statistics"], m1.extra["score_statistics"],
        "the gates' statistics"
    );
    assert!(d["score_statistics"]["mean"].as_f64().unwrap() > 0.0, "{d}");
    let rec = summary.event.expect("the ledger records the event");
    assert_eq!(rec.error, None);
    assert_eq!(rec.event_id.as_deref(), e["id"].as_str());
}

/// A model variant: `v` > 0 moves the first risk band's bound (other risk bands, another
/// run id: a re-publish of the same as-of); 0 is the model as shipped.
fn set_model(mp: &MeshProject, v: u32) {
    let f = mp.t.path().join("models/churn_xgb/model.toml");
    let text = std::fs::read_to_string(crate::features::repo().join("models/churn_xgb/model.toml"))
        .unwrap();
    let text = if v > 0 {
        text.replace(
            "below = 0.8719",
            &format!("below = {}", 0.5 + 0.01 * v as f64),
        )
    } else {
        text
    };
    std::fs::write(f, text).unwrap();
}

#[test]
fn republishing_moves_the_partition_only_after_commit_and_readers_never_see_a_mix_even_when_killed()
{
    let Some(m) = moto() else { return };
    let Some(py) = python() else { return };
    let mp = MeshProject::new(m, 200);
    set_model(&mp, 0);
    let (code, out) = mp.run(&[]);
    assert_eq!(code, 0, "{out}");
    let customers = mp.manifest().rows;
    let partition = c360::product::partition_prefix(PRODUCT, 1, AS_OF.parse().unwrap());
    // What a reader of the Glue partition sees: always one whole committed run.
    let reads = std::cell::Cell::new(0u32);
    let check = |when: &str| {
        reads.set(reads.get() + 1);
        let Some(loc) = mp.partition_location() else {
            panic!("{when}: the partition is no longer registered")
        };
        let (rows, runs, bands) = read_location(&mp, &py, &loc).unwrap();
        assert_eq!(
            (rows, runs),
            (customers, 1),
            "{when}: {loc} holds {rows} rows of {runs} runs"
        );
        bands
    };
    // The partition, the manifest and latest agree on one committed run.
    let agree = |when: &str| {
        let m = mp.manifest();
        assert_eq!(
            mp.partition_location(),
            Some(format!(
                "{}/{}/",
                mp.store_uri,
                c360::offline::run_prefix(&partition, &m)
            )),
            "{when}: the partition names the committed manifest's run"
        );
        assert_eq!(
            mp.latest_run().as_deref(),
            Some(m.run_id.as_str()),
            "{when}"
        );
    };
    check("after the first publish");
    // Whether a run is in its publish step now (its ledger says so).
    let publishing = || {
        let st = mp.store();
        st.list("runs/churn_weekly").unwrap().iter().any(|o| {
            o.key.ends_with("/run.json")
                && st.get(&o.key).ok().is_some_and(|b| {
                    let l: serde_json::Value = serde_json::from_slice(&b).unwrap_or_default();
                    l["status"] == "running"
                        && l["steps"].as_array().is_some_and(|s| {
                            s.iter()
                                .any(|s| s["name"] == "publish" && s["status"] == "running")
                        })
                })
        })
    };
    // Each kill stops a re-publish (a new model variant: a new run id) at a point spread over
    // the commit: a 1.5 s pause after one stage (parts written, manifest committed, Glue
    // partition moved, latest moved) widens that moment, and the kill lands at a
    // pseudo-random offset into it; every sixth is killed before its publish even starts.
    let stages = [
        "commit.parts",
        "publish.manifest",
        "publish.catalog",
        "publish.latest",
    ];
    let mut moves = 0;
    let mut kills = 0;
    for i in 0..12u32 {
        set_model(&mp, i + 1);
        let stage = stages[(i % 4) as usize];
        let before = mp.partition_location();
        let mut child =
            mp.t.cmd()
                .env("C360_FAILPOINT", format!("sleep:{stage}:1500"))
                .args(["run", "churn_weekly", "--as-of", AS_OF])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
        let offset = Duration::from_millis(((i as u64 * 7919) % 1400) + 50);
        let deadline = Instant::now() + Duration::from_secs(120);
        if i % 6 != 5 {
            while !publishing() && child.try_wait().unwrap().is_none() {
                assert!(
                    Instant::now() < deadline,
                    "kill {i}: the run never reached publish"
                );
                check(&format!("kill {i} ({stage}), before its publish"));
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let t0 = Instant::now();
        while t0.elapsed() < offset && child.try_wait().unwrap().is_none() {
            check(&format!("kill {i} ({stage}), during its publish"));
            std::thread::sleep(Duration::from_millis(40));
        }
        if child.try_wait().unwrap().is_none() {
            kills += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
        check(&format!("kill {i} ({stage}), after the kill"));
        let now = mp.partition_location();
        if now != before {
            moves += 1;
            // Moved only to a committed manifest's run.
            let m = mp.manifest();
            assert_eq!(
                now,
                Some(format!(
                    "{}/{}/",
                    mp.store_uri,
                    c360::offline::run_prefix(&partition, &m)
                )),
                "kill {i}: the partition names the committed manifest's run"
            );
        }
        // Every third kill is resumed to the end (the same run id: it resumes).
        if i % 3 == 2 {
            let (code, out) = mp.run(&[]);
            assert_eq!(code, 0, "resume after kill {i}: {out}");
            agree(&format!("resume after kill {i}"));
            check(&format!("resume after kill {i}"));
        }
    }
    eprintln!("mesh kill test: {kills} of 12 re-publishes killed, {moves} after the partition moved; {} reads, each of one whole run", reads.get());
    assert!(
        kills >= 10,
        "only {kills} runs were killed before they ended"
    );
    assert!(
        moves >= 1,
        "no killed re-publish got as far as moving the partition"
    );
    // Finally two more variants to their end: the reader sees each one's risk bands.
    for v in [20, 40] {
        set_model(&mp, v);
        let (code, out) = mp.run(&[]);
        assert_eq!(code, 0, "{out}");
        agree("the final publish");
        let df = c360::product::read_latest(&mp.store(), PRODUCT).unwrap().1;
        let mut want: Vec<String> = df
            .column("risk_band")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .flatten()
            .map(String::from)
            .collect();
        want.sort();
        want.dedup();
        assert_eq!(check("the final publish"), want.join(","));
    }
}

#[test]
fn bad_mesh_input_fails_clearly_and_the_previous_version_stays_registered_and_latest() {
    let Some(m) = moto() else { return };
    let mp = MeshProject::new(m, 200);
    let (code, out) = mp.run(&[]);
    assert_eq!(code, 0, "{out}");
    let good_location = mp.partition_location().unwrap();
    let good_run = mp.latest_run().unwrap();
    let _ = mp.events(5);
    let cfg_path = mp.t.path().join("c360.toml");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap();
    let job_path = mp.t.path().join("jobs/churn_weekly.toml");
    let job = std::fs::read_to_string(&job_path).unwrap();
    let unchanged = |what: &str| {
        assert_eq!(
            mp.partition_location().as_deref(),
            Some(good_location.as_str()),
            "{what}: the registered partition moved"
        );
        assert_eq!(
            mp.latest_run().as_deref(),
            Some(good_run.as_str()),
            "{what}: latest moved"
        );
    };

    // A change that is not additive: a column removed within major 1.
    std::fs::write(
        &job_path,
        job.replace(
            "include = [\"rfm_segment\", \"days_since_last_order\", \"frequency_orders\", \"monetary_total\"]",
            "include = [\"rfm_segment\", \"days_since_last_order\", \"frequency_orders\"]",
        ),
    )
    .unwrap();
    let (code, out) = mp.run(&[]);
    assert_eq!(code, 3, "an invalid definition: {out}");
    assert!(
        out.contains("monetary_total") && out.contains("bump") && out.contains("major"),
        "{out}"
    );
    unchanged("a removed column");
    // The gate-free refusal sends no published event.
    assert!(mp
        .events(2)
        .iter()
        .all(|e| e["detail-type"] != "Data Product Version Published"));
    std::fs::write(&job_path, job.clone()).unwrap();

    // A producer table missing from the Glue database, then one whose location is not on
    // S3: each named with its database, nothing moves.
    let g = glue(m);
    let drop_orders = || {
        let (g, db) = (g.clone(), mp.src_db.clone());
        aws::block_on(async move {
            g.delete_table()
                .database_name(db)
                .name("orders")
                .send()
                .await
                .unwrap();
        })
    };
    set_model(&mp, 3);
    drop_orders();
    let (code, out) = mp.run(&[]);
    assert_ne!(code, 0, "{out}");
    assert!(out.contains(&mp.src_db) && out.contains("orders"), "{out}");
    unchanged("a source table missing from Glue");
    create_table(
        &g,
        &mp.src_db,
        "orders",
        "hdfs://namenode/warehouse/orders/",
        Some("parquet"),
        &[],
    );
    let (code, out) = mp.run(&[]);
    assert_ne!(code, 0, "{out}");
    assert!(
        out.contains(&mp.src_db) && out.contains("orders") && out.contains("hdfs://"),
        "{out}"
    );
    unchanged("a source table not on S3");
    drop_orders();
    create_table(
        &g,
        &mp.src_db,
        "orders",
        &format!("{}/orders/", mp.src_root),
        Some("parquet"),
        &[],
    );

    // An unreachable Glue endpoint: the run fails naming Glue; nothing moved. Once with the
    // sources read through Glue, once with them read from S3 directly (the same objects: the
    // catalog's schema check refuses before any part is written).
    set_model(&mp, 7);
    let down = cfg.replace(
        "[aws]\n",
        "[aws]\nglue_endpoint_url = \"http://127.0.0.1:1\"\nmax_attempts = 2\n",
    );
    for (what, text) in [
        ("glue:// sources", down.clone()),
        (
            "s3:// sources",
            down.replace(
                &format!("uri = \"glue://{}\"", mp.src_db),
                &format!("uri = \"{}\"", mp.src_root),
            ),
        ),
    ] {
        std::fs::write(&cfg_path, text).unwrap();
        let (code, out) = mp.run(&[]);
        assert_eq!(code, 1, "{what}: a failure to retry, not bad input: {out}");
        let low = out.to_lowercase();
        assert!(
            low.contains("glue") && (low.contains("reach") || low.contains("connect")),
            "{what}: {out}"
        );
        unchanged(what);
    }
    std::fs::write(&cfg_path, &cfg).unwrap();
    unchanged("an unreachable Glue endpoint");
    // A gate refuses a version: nothing is published, and the refusal is announced with the
    // statistics the gate judged.
    let good_mean = mp.manifest().extra["score_statistics"]["mean"].clone();
    assert!(job.contains("max_mean_shift = 0.9"), "{job}");
    std::fs::write(
        &job_path,
        job.replace("max_mean_shift = 0.9", "max_mean_shift = 0.0"),
    )
    .unwrap();
    let _ = mp.events(1);
    let out =
        mp.t.cmd()
            .args(["run", "churn_weekly", "--as-of", "2024-07-07"])
            .output()
            .unwrap();
    assert_ne!(out.status.code(), Some(0));
    unchanged("a gate's refusal");
    let events = mp.events(10);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["detail-type"], "Data Product Version Refused");
    let d = &events[0]["detail"];
    assert_eq!(
        (
            d["product"].as_str(),
            d["major"].as_u64(),
            d["as_of"].as_str()
        ),
        (Some(PRODUCT), Some(1), Some("2024-07-07"))
    );
    assert!(
        d["reason"].as_str().unwrap().contains("max_mean_shift 0"),
        "{d}"
    );
    assert_eq!(d["score_statistics"]["previous_mean"], good_mean, "{d}");
    assert!(d["score_statistics"]["mean"].as_f64().is_some(), "{d}");
    std::fs::write(&job_path, &job).unwrap();
    // Once Glue is back, the same run goes through and moves both.
    let (code, out) = mp.run(&[]);
    assert_eq!(code, 0, "{out}");
    assert_ne!(mp.latest_run().as_deref(), Some(good_run.as_str()));
}

/// `c360 validate` names every bad `[catalog]` / `[events]` key, and every bad tag of the
/// job's tag set, with the fix (no AWS call: no moto needed).
#[test]
fn validate_names_bad_mesh_settings_and_bad_tag_sets() {
    let t = TestProject::new(|j| {
        j.replace(
            "classification = \"internal\"",
            "classification = \"internal\"\ncolumn_classification = { churn_score = \"public\", email = \"confidential\" }\nlf_tags = { domain = \"x\", \"bad*key\" = \"v\", cost_center = \"cx 42\" }",
        )
    });
    let validate = |t: &TestProject| {
        let out = t.cmd().arg("validate").output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(3), "{err}");
        err
    };
    // A second job whose product maps to the same Glue table name.
    let job = std::fs::read_to_string(t.path().join("jobs/churn_weekly.toml")).unwrap();
    std::fs::write(
        t.path().join("jobs/churn_copy.toml"),
        job.replace("name = \"churn_weekly\"", "name = \"churn_copy\"")
            .replace(
                "name = \"customer_churn_scores\"",
                "name = \"customer-churn-scores\"",
            ),
    )
    .unwrap();
    // The job's tag set (the config is fine).
    let err = validate(&t);
    assert!(
        err.contains("maps to the Glue table customer_churn_scores_v1, as product")
            && err.contains("customer-churn-scores")
            && err.contains("rename one"),
        "{err}"
    );
    for needle in [
        "product.column_classification.email: the product has no column \"email\"",
        "product.lf_tags.domain: c360 sets the tag \"domain\" itself",
        "product.lf_tags.bad*key: \"bad*key\" is not a Lake Formation tag key",
    ] {
        assert!(err.contains(needle), "{needle} in {err}");
    }
    assert!(
        !err.contains("cost_center"),
        "a valid tag is not reported: {err}"
    );
    assert!(
        !err.contains("column_classification.churn_score"),
        "a real column is not reported: {err}"
    );
    // c360.toml: every catalog and event problem at once.
    let cfg = std::fs::read_to_string(t.path().join("c360.toml")).unwrap()
        + "[catalog]\nkind = \"glue\"\nproducts_database = \"Customer-Products\"\ncatalog_id = \"12345\"\n[events]\nkind = \"eventbridge\"\nbus_name = \"products bus\"\nsource = \"aws.c360\"\n";
    std::fs::write(t.path().join("c360.toml"), cfg).unwrap();
    let err = validate(&t);
    for needle in [
        "catalog.products_database: \"Customer-Products\" is not a Glue database name",
        "catalog.catalog_id: \"12345\" is not an AWS account id",
        // The store is on local disk: Glue tables cannot point at it.
        "[catalog]: kind = \"glue\" needs [store] uri = \"s3://...\"",
        "[events]: bus_name = \"products bus\" is neither an event bus name",
    ] {
        assert!(err.contains(needle), "{needle} in {err}");
    }
}

/// Without `[aws] endpoint_url`, the SDK's per-service variables (`AWS_ENDPOINT_URL_S3`,
/// `_GLUE`, `_LAKEFORMATION`, `_EVENTBRIDGE`: how a VPC's interface endpoints are often given)
/// reach every service a run calls.
#[test]
fn the_sdk_endpoint_variables_reach_every_service_of_a_run() {
    let Some(m) = moto() else { return };
    let mp = MeshProject::new(m, 150);
    let cfg_path = mp.t.path().join("c360.toml");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap();
    let line = format!("endpoint_url = \"{}\"\n", m.endpoint);
    assert!(cfg.contains(&line));
    std::fs::write(&cfg_path, cfg.replacen(&line, "", 1)).unwrap();
    let vars = [
        ("AWS_ENDPOINT_URL_S3", m.endpoint.as_str()),
        ("AWS_ENDPOINT_URL_GLUE", m.endpoint.as_str()),
        ("AWS_ENDPOINT_URL_LAKEFORMATION", m.endpoint.as_str()),
        ("AWS_ENDPOINT_URL_EVENTBRIDGE", m.endpoint.as_str()),
    ];
    let (code, out) = mp.run(&vars);
    assert_eq!(code, 0, "{out}");
    let m1 = mp.manifest();
    let partition = c360::product::partition_prefix(PRODUCT, 1, AS_OF.parse().unwrap());
    assert_eq!(
        mp.partition_location(),
        Some(format!(
            "{}/{}/",
            mp.store_uri,
            c360::offline::run_prefix(&partition, &m1)
        ))
    );
    let events = mp.events(10);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["detail"]["run_id"], m1.run_id.as_str());
}

/// A store written before run directories (parts at the partition root, no checksums):
/// `c360 catalog sync` registers its committed partitions at the partition root, which an
/// engine lists as exactly the committed parts (`_manifest.json` is skipped by name).
#[test]
fn catalog_sync_registers_an_old_layout_store_at_its_partition_roots() {
    let Some(m) = moto() else { return };
    let mp = MeshProject::new(m, 50);
    let old = crate::common::fixture_dir().join("old_layout_store");
    let st = mp.store();
    let mut stack = vec![old.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().unwrap() != "README.md" {
                let key = p
                    .strip_prefix(&old)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                st.put(&key, &std::fs::read(&p).unwrap()).unwrap();
            }
        }
    }
    let out = mp.t.cmd().args(["catalog", "sync"]).output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    // The product predates contracts and no job of this project publishes it: it cannot be
    // described, so it fails alone (named, with the fix); the snapshot is registered.
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("product old_scores v1 as_of=2024-09-29")
            && text.contains("no spec")
            && text.contains("c360 run JOB"),
        "{text}"
    );
    assert!(
        text.contains("1 registered, 0 unchanged, 1 failed"),
        "{text}"
    );
    let (g, db) = (mp.glue(), mp.features_db.clone());
    let loc = aws::block_on(async move {
        g.get_partition()
            .database_name(db)
            .table_name("rfm_v1")
            .partition_values("2024-09-29")
            .send()
            .await
            .unwrap()
            .partition
            .unwrap()
            .storage_descriptor
            .unwrap()
            .location
            .unwrap()
    });
    assert_eq!(
        loc,
        format!("{}/features/rfm/v1/as_of=2024-09-29/", mp.store_uri),
        "{text}"
    );
    if let Some(py) = python() {
        let key = loc.strip_prefix(&format!("{}/", mp.store_uri)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        for o in st.list(key.trim_end_matches('/')).unwrap() {
            let name = o.key.rsplit('/').next().unwrap().to_string();
            if !name.starts_with('_') && !name.starts_with('.') {
                std::fs::write(dir.path().join(&name), st.get(&o.key).unwrap()).unwrap();
            }
        }
        let m = c360::offline::read_manifest(&st, "features/rfm/v1/as_of=2024-09-29")
            .unwrap()
            .unwrap();
        let sql = format!(
            "select count(*) from read_parquet('{}/*.parquet')",
            dir.path().display()
        );
        assert_eq!(duckdb_row(&py, &sql), m.rows.to_string());
    }
}

/// After a publish that failed once its manifest had committed (Lake Formation down), c360's
/// readers still serve the previous version; re-running finishes the publish; an event the
/// bus missed is sent when the finished run is run again; and running an older run again
/// (the previous model) publishes its version again: a rollback.
#[test]
fn a_half_done_publish_keeps_serving_the_previous_version_and_reruns_finish_and_roll_back() {
    let Some(m) = moto() else { return };
    let mp = MeshProject::new(m, 150);
    let cfg_path = mp.t.path().join("c360.toml");
    let cfg = std::fs::read_to_string(&cfg_path).unwrap();
    let with = |extra: &str| cfg.replace("[aws]\n", &format!("[aws]\n{extra}\nmax_attempts = 1\n"));
    set_model(&mp, 0);
    let (code, out) = mp.run(&[]);
    assert_eq!(code, 0, "{out}");
    let first = mp.manifest();
    let first_location = mp.partition_location().unwrap();
    let _ = mp.events(5);
    let customer = c360::product::read_latest(&mp.store(), PRODUCT)
        .unwrap()
        .1
        .column("customer_id")
        .unwrap()
        .str()
        .unwrap()
        .get(0)
        .unwrap()
        .to_string();
    let get = || {
        let out =
            mp.t.cmd()
                .args(["products", "get", PRODUCT, &customer])
                .output()
                .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let before = get();

    // Lake Formation down: the new version's manifest commits, its registration fails.
    set_model(&mp, 5);
    std::fs::write(
        &cfg_path,
        with("lakeformation_endpoint_url = \"http://127.0.0.1:1\""),
    )
    .unwrap();
    let (code, out) = mp.run(&[]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("neither registered nor latest") && out.contains("re-run the job"),
        "{out}"
    );
    let second = mp.manifest();
    assert_ne!(second.run_id, first.run_id, "the new manifest committed");
    assert_eq!(mp.latest_run().as_deref(), Some(first.run_id.as_str()));
    assert_eq!(
        mp.partition_location().as_deref(),
        Some(first_location.as_str())
    );
    // c360's own readers serve the previous version, as latest.json says.
    assert_eq!(get(), before);
    // `catalog sync` (Lake Formation back) leaves the unfinished publish to its job: it
    // never moves the partition past latest.json.
    std::fs::write(&cfg_path, &cfg).unwrap();
    let out =
        mp.t.cmd()
            .args(["catalog", "sync", "--product", PRODUCT])
            .output()
            .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("committed but did not finish") && text.contains(&second.run_id),
        "{text}"
    );
    assert_eq!(
        mp.partition_location().as_deref(),
        Some(first_location.as_str())
    );

    // The bus down this time: the re-run finishes the publish; the event is recorded as
    // not delivered, and the version is published anyway.
    std::fs::write(
        &cfg_path,
        with("events_endpoint_url = \"http://127.0.0.1:1\""),
    )
    .unwrap();
    let (code, out) = mp.run(&[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("event NOT delivered"), "{out}");
    assert_eq!(mp.latest_run().as_deref(), Some(second.run_id.as_str()));
    let l = mp.ledger(&second.run_id);
    assert!(l.product.unwrap().event.unwrap().error.is_some());
    assert!(mp.events(2).is_empty());

    // The bus back: running the finished run again sends its event.
    std::fs::write(&cfg_path, &cfg).unwrap();
    let (code, out) = mp.run(&[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("already published"), "{out}");
    let events = mp.events(10);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["detail"]["run_id"], second.run_id.as_str());
    let rec = mp.ledger(&second.run_id).product.unwrap().event.unwrap();
    assert_eq!(
        (rec.error, rec.event_id.as_deref()),
        (None, events[0]["id"].as_str())
    );

    // The previous model again: its run publishes its version again (a rollback).
    set_model(&mp, 0);
    let (code, out) = mp.run(&[]);
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("already published"), "{out}");
    let back = mp.manifest();
    assert_eq!(back.run_id, first.run_id);
    assert_eq!(mp.latest_run().as_deref(), Some(first.run_id.as_str()));
    let location = mp.partition_location().unwrap();
    assert_ne!(location, first_location, "a new attempt directory");
    let partition = c360::product::partition_prefix(PRODUCT, 1, AS_OF.parse().unwrap());
    assert_eq!(
        location,
        format!(
            "{}/{}/",
            mp.store_uri,
            c360::offline::run_prefix(&partition, &back)
        )
    );
}

/// Schema changes within a major are additive only, with or without a central catalog:
/// a removed column is refused by the dry run and the run (exit 3) before any work, a new
/// major takes it, and running the major-1 job again serves major 1 again.
#[test]
fn a_removed_column_is_refused_without_a_catalog_too_until_the_major_is_bumped() {
    let t = TestProject::new(|j| j);
    t.generate(150);
    let (code, out) = t.run("2024-06-30");
    assert_eq!(code, 0, "{out}");
    let latest = t.latest().unwrap();
    let job_path = t.path().join("jobs/churn_weekly.toml");
    let job = std::fs::read_to_string(&job_path).unwrap();
    let narrower = job.replace(
        "\"frequency_orders\", \"monetary_total\"]",
        "\"frequency_orders\"]",
    );
    assert_ne!(narrower, job);
    std::fs::write(&job_path, &narrower).unwrap();
    for dry in [true, false] {
        let mut c = t.cmd();
        c.args(["run", "churn_weekly", "--as-of", "2024-07-07"]);
        if dry {
            c.arg("--dry-run");
        }
        let out = c.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "dry run {dry}: {err}");
        assert!(
            err.contains("column monetary_total")
                && err.contains("was removed")
                && err.contains("bump [product] major"),
            "{err}"
        );
    }
    assert_eq!(t.latest().unwrap(), latest, "nothing published");
    std::fs::write(
        &job_path,
        narrower.replace("retention_days = 365", "retention_days = 365\nmajor = 2"),
    )
    .unwrap();
    let (code, out) = t.run("2024-06-30");
    assert_eq!(code, 0, "{out}");
    let l = t.latest().unwrap();
    assert_eq!(
        (l["as_of"].as_str(), l["path"].as_str()),
        (
            Some("2024-06-30"),
            Some("products/customer_churn_scores/v2/as_of=2024-06-30")
        )
    );
    // Back to the major-1 job: its finished run publishes its version again (a rollback),
    // instead of "already published" while latest.json serves major 2.
    std::fs::write(&job_path, &job).unwrap();
    let (code, out) = t.run("2024-06-30");
    assert_eq!(code, 0, "{out}");
    assert!(!out.contains("already published"), "{out}");
    let l = t.latest().unwrap();
    assert_eq!(
        (l["run_id"].as_str(), l["path"].as_str()),
        (
            latest["run_id"].as_str(),
            Some("products/customer_churn_scores/v1/as_of=2024-06-30")
        )
    );
}

/// The same mesh with the SageMaker backend (moto's SageMaker on loopback, its data plane
/// played by the local runner): the transform job, then the Glue partition at the committed
/// run's prefix, the LF-tagged table and the event, all from one in-process run.
#[test]
fn a_sagemaker_run_publishes_into_the_mesh() {
    let Some(m) = moto() else { return };
    let mp = MeshProject::new(m, 150);
    let job_path = mp.t.path().join("jobs/churn_weekly.toml");
    let job = std::fs::read_to_string(&job_path).unwrap();
    std::fs::write(
        &job_path,
        job.replace("backend = \"local\"", "backend = \"sagemaker\""),
    )
    .unwrap();
    let _aws_settings = crate::common::in_process_project();
    let project = c360::project::Project::load(Some(&mp.t.path().join("c360.toml"))).unwrap();
    let plays = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let opts = c360::pipeline::RunOptions {
        as_of: Some(AS_OF.parse().unwrap()),
        data_plane: Some(crate::aws::local_data_plane(
            &mp.t.path().join("models/churn_xgb"),
            &plays,
        )),
        ..Default::default()
    };
    let report =
        c360::pipeline::run(&project, "churn_weekly", &opts, &c360::pipeline::Quiet).unwrap();
    assert_eq!(report.ledger.status, RunStatus::Succeeded);
    assert_eq!(plays.load(std::sync::atomic::Ordering::SeqCst), 1);
    let transform = report
        .ledger
        .steps
        .iter()
        .find(|s| s.name == c360::pipeline::Step::Transform)
        .unwrap();
    assert!(transform.detail.to_json()["job_name"]
        .as_str()
        .unwrap()
        .starts_with("c360-churn-weekly-2024-06-30-"));
    let m1 = mp.manifest();
    let summary = report.summary.unwrap();
    let partition = c360::product::partition_prefix(PRODUCT, 1, AS_OF.parse().unwrap());
    let location = format!(
        "{}/{}/",
        mp.store_uri,
        c360::offline::run_prefix(&partition, &m1)
    );
    assert_eq!(summary.catalog.unwrap().location, location);
    assert_eq!(mp.partition_location(), Some(location.clone()));
    let events = mp.events(10);
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["detail"]["location"], location.as_str());
    assert_eq!(events[0]["detail"]["rows"], m1.rows);
}
