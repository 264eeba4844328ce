//! `c360 serve`: the real binary on a free port, driven over HTTP: access control and PII,
//! the OpenAPI document against the routes, the lookup index, triggers (409 while running),
//! resume after a kill, the cron scheduler (on time, once per tick, across two replicas)
//! and the catch-up policies.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::pipeline::TestProject;

pub(crate) const OPS: &str = "tok-ops-7c1d0e93aa51";
pub(crate) const MKT: &str = "tok-mkt-51b2f9e07d33";
pub(crate) const ADMIN: &str = "tok-admin-e4a8c2d610f9";
const PRODUCT: &str = "customer_churn_scores";

fn sha(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// Adds a `[service]` section (ops and marketing tokens as hashes; admin comes from the
/// environment) to the project's c360.toml.
pub(crate) fn configure(p: &TestProject, extra: &str) {
    let path = p.path().join("c360.toml");
    let mut toml = std::fs::read_to_string(&path).unwrap();
    toml.push_str(&format!(
        "\n[service]\nlease_seconds = 3\nreload_seconds = 0.5\nshutdown_grace_seconds = 1\n{extra}\n\
         [[service.tokens]]\nname = \"ops\"\nsha256 = \"{}\"\nrole = \"operator\"\n\
         [[service.tokens]]\nname = \"mkt\"\nsha256 = \"{}\"\nrole = \"marketing\"\n",
        sha(OPS),
        sha(MKT)
    ));
    std::fs::write(path, toml).unwrap();
}

/// A running `c360 serve`; killed on drop.
pub(crate) struct Service {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Service {
    pub(crate) fn start(p: &TestProject, env: &[(&str, &str)]) -> Service {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let log = p.path().join(format!("serve-{n}.log"));
        let mut cmd = p.cmd();
        cmd.args(["serve", "--bind", "127.0.0.1:0"])
            .env("C360_LOG", "c360=debug,warn")
            .env("NO_COLOR", "1")
            .env("C360_SERVICE_TOKENS", format!("root:admin:{ADMIN}"))
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                panic!(
                    "no address on stdout ({line:?}); log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            });
        Service {
            child,
            base: addr.to_string(),
            log,
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGTERM, then wait for a clean exit.
    pub(crate) fn stop(mut self) -> String {
        let pid = self.child.id().to_string();
        let ok = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                let log = self.log();
                assert!(st.success(), "serve exited with {st}; log:\n{log}");
                return log;
            }
            assert!(Instant::now() < deadline, "serve did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The service's stderr, without terminal colour codes.
    pub(crate) fn log(&self) -> String {
        let raw = std::fs::read_to_string(&self.log).unwrap_or_default();
        let mut out = String::with_capacity(raw.len());
        let mut it = raw.chars();
        while let Some(c) = it.next() {
            if c == '\u{1b}' {
                for d in it.by_ref() {
                    if d.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A small blocking HTTP client over reqwest.
pub(crate) struct Http {
    rt: tokio::runtime::Runtime,
    c: reqwest::Client,
}

pub(crate) struct Resp {
    pub(crate) status: u16,
    pub(crate) headers: reqwest::header::HeaderMap,
    pub(crate) body: String,
}

impl Resp {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }
}

impl Http {
    pub(crate) fn new() -> Http {
        Http {
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            c: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
        }
    }

    pub(crate) fn send(
        &self,
        method: &str,
        url: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> Resp {
        self.rt.block_on(async {
            let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
            let mut r = self.c.request(m, url);
            if let Some(t) = token {
                r = r.bearer_auth(t);
            }
            if let Some(b) = body {
                r = r
                    .header("content-type", "application/json")
                    .body(b.to_string());
            }
            let resp = r.send().await.unwrap();
            let status = resp.status().as_u16();
            let headers = resp.headers().clone();
            let body = resp.text().await.unwrap();
            Resp {
                status,
                headers,
                body,
            }
        })
    }

    pub(crate) fn get(&self, url: &str, token: Option<&str>) -> Resp {
        self.send("GET", url, token, None)
    }
}

/// Polls `f` until it returns Some, or fails after `secs`.
pub(crate) fn wait_for<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Adds an `email` column (PII) to every part of the latest product version, as a product
/// that wrongly carried personal data would look.
fn add_email_column(store: &Path) {
    use polars::prelude::*;
    let latest: Value = serde_json::from_slice(
        &std::fs::read(store.join(format!("products/{PRODUCT}/latest.json"))).unwrap(),
    )
    .unwrap();
    let part = store.join(latest["path"].as_str().unwrap());
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(part.join("_manifest.json")).unwrap()).unwrap();
    for f in manifest["files"].as_array().unwrap() {
        let f = f.as_str().unwrap();
        let file = part.join(f);
        let df = ParquetReader::new(std::fs::File::open(&file).unwrap())
            .finish()
            .unwrap();
        let mut df = df
            .lazy()
            .with_column((col("customer_id") + lit("@example.com")).alias("email"))
            .collect()
            .unwrap();
        ParquetWriter::new(std::fs::File::create(&file).unwrap())
            .finish(&mut df)
            .unwrap();
        crate::common::reseal_part(&part, f);
    }
}

#[test]
fn serve_access_control_pii_lookup_and_openapi() {
    let p = TestProject::new(|j| j);
    p.generate(500);
    let (code, out) = p.run("2024-09-29");
    assert_eq!(code, 0, "{out}");
    let n_rows = p.latest().unwrap()["rows"].as_u64().unwrap();
    assert!(n_rows > 100, "{n_rows}");
    add_email_column(&p.store());
    configure(&p, "scheduler = false");
    let s = Service::start(&p, &[]);
    let h = Http::new();

    // Liveness and readiness need no token.
    assert_eq!(h.get(&s.url("/healthz"), None).status, 200);
    let r = h.get(&s.url("/readyz"), None);
    assert_eq!(
        (r.status, r.json()["status"].as_str()),
        (200, Some("ready"))
    );

    // 401 without a token or with an unknown one, 403 beyond the role.
    let r = h.get(&s.url("/products"), None);
    assert_eq!(r.status, 401);
    assert_eq!(r.headers["www-authenticate"], "Bearer");
    assert_eq!(r.json()["error"], "unauthorized");
    assert_eq!(h.get(&s.url("/products"), Some("not-a-token")).status, 401);
    assert_eq!(
        h.get(&s.url("/products"), Some(&format!("{MKT}x"))).status,
        401
    );
    let r = h.send("POST", &s.url("/jobs/churn_weekly/runs"), Some(MKT), None);
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (403, Some("forbidden"))
    );
    assert_eq!(h.get(&s.url("/jobs"), Some(MKT)).status, 403);
    assert_eq!(
        h.get(&s.url("/jobs/churn_weekly/runs"), Some(MKT)).status,
        403
    );

    // The operator reads jobs and runs.
    let jobs = h.get(&s.url("/jobs"), Some(OPS)).json();
    assert_eq!(jobs["jobs"][0]["name"], "churn_weekly");
    assert_eq!(jobs["jobs"][0]["last_run"]["status"], "succeeded");
    let runs = h.get(&s.url("/jobs/churn_weekly/runs"), Some(OPS)).json();
    let run_id = runs["runs"][0]["run_id"].as_str().unwrap().to_string();
    assert!(run_id.starts_with("2024-09-29-"), "{run_id}");
    let ledger = h
        .get(
            &s.url(&format!("/jobs/churn_weekly/runs/{run_id}")),
            Some(OPS),
        )
        .json();
    assert_eq!(ledger["status"], "succeeded");
    assert_eq!(
        h.get(
            &s.url("/jobs/churn_weekly/runs/2024-01-01-00000000"),
            Some(OPS)
        )
        .status,
        404
    );
    assert_eq!(h.get(&s.url("/jobs/nope/runs"), Some(OPS)).status, 404);
    assert_eq!(h.get(&s.url("/jobs/..%2Fetc/runs"), Some(OPS)).status, 400);
    let sets = h.get(&s.url("/feature-sets"), Some(OPS)).json();
    let names: Vec<&str> = sets["feature_sets"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert!(
        names.contains(&"rfm") && names.contains(&"churn_signals"),
        "{names:?}"
    );

    // Products: marketing never sees the PII column; the admin role (pii tag) does.
    let list = h.get(&s.url("/products"), Some(MKT)).json();
    assert_eq!(list["products"][0]["name"], PRODUCT);
    let prod = h
        .get(&s.url(&format!("/products/{PRODUCT}")), Some(MKT))
        .json();
    assert_eq!(prod["latest_version"]["as_of"], "2024-09-29");
    assert_eq!(prod["all_versions"][0]["as_of"], "2024-09-29");
    let contract = h.get(&s.url(&format!("/products/{PRODUCT}/contract")), Some(MKT));
    assert_eq!(contract.status, 200);
    assert!(contract.body.contains(PRODUCT), "{}", contract.body);

    let page = h
        .get(
            &s.url(&format!("/products/{PRODUCT}/rows?offset=10&limit=5")),
            Some(MKT),
        )
        .json();
    let rows = page["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 5);
    assert_eq!(page["total"], n_rows);
    assert!(rows
        .iter()
        .all(|r| r.get("email").is_none() && r.get("churn_score").is_some()));
    let admin_page = h
        .get(
            &s.url(&format!("/products/{PRODUCT}/rows?offset=10&limit=5")),
            Some(ADMIN),
        )
        .json();
    let id = admin_page["rows"][0]["customer_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(rows[0]["customer_id"], id.as_str());
    assert_eq!(admin_page["rows"][0]["email"], format!("{id}@example.com"));

    let csv = h.get(
        &s.url(&format!("/products/{PRODUCT}/rows?limit=3&format=csv")),
        Some(MKT),
    );
    assert_eq!(csv.status, 200);
    assert_eq!(csv.headers["x-total-count"], n_rows.to_string().as_str());
    let header = csv.body.lines().next().unwrap();
    assert!(
        header.starts_with("customer_id,") && !header.contains("email"),
        "{header}"
    );
    assert_eq!(csv.body.lines().count(), 4);
    let csv_admin = h.get(
        &s.url(&format!("/products/{PRODUCT}/rows?limit=3&format=csv")),
        Some(ADMIN),
    );
    assert!(csv_admin.body.lines().next().unwrap().contains("email"));
    for bad in [
        "format=xml",
        "limit=0",
        "limit=100000",
        "offset=-1",
        "colour=red",
    ] {
        let r = h.get(
            &s.url(&format!("/products/{PRODUCT}/rows?{bad}")),
            Some(MKT),
        );
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }

    // One customer from the in-memory index, equal to the row in the page.
    let c = h
        .get(
            &s.url(&format!("/products/{PRODUCT}/customers/{id}")),
            Some(MKT),
        )
        .json();
    assert_eq!(c["customer_id"], id.as_str());
    assert_eq!(c["churn_score"], rows[0]["churn_score"]);
    assert!(c.get("email").is_none(), "{c}");
    let c = h
        .get(
            &s.url(&format!("/products/{PRODUCT}/customers/{id}")),
            Some(ADMIN),
        )
        .json();
    assert_eq!(c["email"], format!("{id}@example.com"));
    let r = h.get(
        &s.url(&format!("/products/{PRODUCT}/customers/C9999999")),
        Some(MKT),
    );
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (404, Some("not_found"))
    );
    assert_eq!(
        h.get(&s.url("/products/nope/customers/C1"), Some(MKT))
            .status,
        404
    );

    // The OpenAPI document: every documented operation is served (not the fallback), and
    // a path outside it is not.
    let doc = h.get(&s.url("/openapi.json"), None).json();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut n = 0;
    for (path, ops) in doc["paths"].as_object().unwrap() {
        let concrete = path
            .replace("{job}", "churn_weekly")
            .replace("{run_id}", &run_id)
            .replace("{product}", PRODUCT)
            .replace("{customer_id}", &id);
        for (m, op) in ops.as_object().unwrap() {
            n += 1;
            assert!(op["responses"].as_object().is_some_and(|r| !r.is_empty()));
            let method = m.to_uppercase();
            // A bad body keeps the POST from starting a run; it must still be routed.
            let body = (method == "POST").then_some("{\"as_of\": 7}");
            let r = h.send(&method, &s.url(&concrete), Some(ADMIN), body);
            assert!(
                r.status != 404 && r.status != 405,
                "{method} {path} is documented but not served: {} {}",
                r.status,
                r.body
            );
        }
    }
    assert_eq!(n, 15, "operations documented");
    let r = h.get(&s.url("/not-a-route"), Some(ADMIN));
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (404, Some("no_route"))
    );

    // Metrics: request latency by route and status, denials.
    let m = h.get(&s.url("/metrics"), None).body;
    let lookups = m
        .lines()
        .find(|l| {
            l.starts_with("c360_http_requests_total{route=\"/products/{product}/customers/{customer_id}\",method=\"GET\",status=\"200\"}")
        })
        .unwrap_or_else(|| panic!("{m}"));
    assert!(lookups.ends_with(" 3"), "{lookups}");
    assert!(m.contains("c360_http_request_duration_seconds_bucket{route=\"/products/{product}/rows\",method=\"GET\",status=\"200\",le=\"+Inf\"}"), "{m}");
    assert!(
        m.contains("c360_http_denials_total{route=\"/products\",status=\"401\"} 3"),
        "{m}"
    );
    wait_for("the index size in the metrics", 60, || {
        let m = h.get(&s.url("/metrics"), None).body;
        m.contains(&format!(
            "c360_lookup_index_rows{{product=\"customer_churn_scores\"}} {n_rows}\n"
        ))
        .then_some(())
    });

    // Shut down cleanly; the logs show the denials but never a token.
    let log = s.stop();
    assert!(log.contains("denied: 401"), "{log}");
    assert!(
        log.contains("denied: 403") && log.contains("token_name=mkt"),
        "{log}"
    );
    for t in [OPS, MKT, ADMIN, "not-a-token"] {
        assert!(!log.contains(t), "a token leaked into the log");
    }
}

fn ledger(h: &Http, s: &Service, run_id: &str) -> Value {
    h.get(
        &s.url(&format!("/jobs/churn_weekly/runs/{run_id}")),
        Some(OPS),
    )
    .json()
}

fn done_steps(l: &Value) -> Vec<String> {
    l["steps"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|s| s["status"] == "done")
                .filter_map(|s| s["name"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn serve_trigger_conflict_and_resume_after_kill_and_index_reload() {
    let p = TestProject::new(|j| j.replace("max_mean_shift = 0.15", "max_mean_shift = 0.5"));
    p.generate(500);
    configure(&p, "scheduler = false");
    // Every step of a service run sleeps 1.5 s first: the run lasts long enough to be
    // triggered twice and killed in the middle.
    let s = Service::start(&p, &[("C360_SERVICE_STEP_DELAY_MS", "1500")]);
    let h = Http::new();
    let body = "{\"as_of\": \"2024-09-29\"}";
    let r = h.send(
        "POST",
        &s.url("/jobs/churn_weekly/runs"),
        Some(OPS),
        Some(body),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let started = r.json();
    let run_id = started["run_id"].as_str().unwrap().to_string();
    assert_eq!(started["as_of"], "2024-09-29");
    assert!(run_id.starts_with("2024-09-29-"));
    assert_eq!(
        r.headers["location"],
        format!("/jobs/churn_weekly/runs/{run_id}")
    );

    // A second trigger (same or another date) while it runs: 409, nothing started.
    for b in [body, "{\"as_of\": \"2024-09-22\"}", ""] {
        let r = h.send(
            "POST",
            &s.url("/jobs/churn_weekly/runs"),
            Some(OPS),
            Some(b),
        );
        assert_eq!(
            (r.status, r.json()["error"].as_str()),
            (409, Some("conflict")),
            "{b}"
        );
    }
    assert_eq!(
        h.send(
            "POST",
            &s.url("/jobs/churn_weekly/runs"),
            Some(OPS),
            Some("{\"as_of\": 5}")
        )
        .status,
        400
    );
    assert_eq!(
        h.send("POST", &s.url("/jobs/nope/runs"), Some(OPS), None)
            .status,
        404
    );

    // Nothing published yet: no product to look up.
    let r = h.get(
        &s.url(&format!("/products/{PRODUCT}/customers/C0000001")),
        Some(OPS),
    );
    assert_eq!(r.status, 404, "{}", r.body);

    // Kill the service in the middle of the run (after two steps).
    let before = wait_for("two finished steps", 300, || {
        let l = ledger(&h, &s, &run_id);
        (done_steps(&l).len() >= 2).then_some(l)
    });
    s.kill();
    let lease = p.store().join("runs/churn_weekly/lease.json");
    assert!(
        lease.exists(),
        "the killed process's lease stays until it expires"
    );
    let ledger_file = p
        .store()
        .join(format!("runs/churn_weekly/{run_id}/run.json"));
    let killed: Value = serde_json::from_slice(&std::fs::read(&ledger_file).unwrap()).unwrap();
    assert_eq!(killed["status"], "running");
    assert_eq!(killed["attempts"], 1);

    // A new process resumes the run (once the dead one's lease expired), keeping the
    // steps already done.
    let s = Service::start(&p, &[("C360_SERVICE_STEP_DELAY_MS", "200")]);
    let after = wait_for("the resumed run to succeed", 300, || {
        let l = ledger(&h, &s, &run_id);
        (l["status"] == "succeeded").then_some(l)
    });
    assert_eq!(after["attempts"], 2, "{after}");
    let features = |l: &Value| {
        l["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == "features" && s["status"] == "done")
            .map(|s| s["started_at"].clone())
    };
    assert_eq!(
        features(&after),
        features(&before),
        "the features step was redone"
    );
    assert_eq!(
        done_steps(&after),
        [
            "features",
            "transform_input",
            "transform",
            "gates",
            "publish"
        ]
    );
    let latest = p.latest().unwrap();
    assert_eq!(latest["run_id"], run_id.as_str());
    wait_for("the lease to be released", 60, || {
        (!lease.exists()).then_some(())
    });
    // The run's task counts it just after the ledger and the lease.
    let m = wait_for("the resumed run in the metrics", 60, || {
        let m = h.get(&s.url("/metrics"), None).body;
        m.contains(
            "c360_runs_total{job=\"churn_weekly\",status=\"succeeded\",trigger=\"resume\"} 1",
        )
        .then_some(m)
    });
    if !done_steps(&killed).contains(&"transform".to_string()) {
        let rows = latest["rows"].as_u64().unwrap();
        assert!(
            m.contains(&format!(
                "c360_rows_scored_total{{job=\"churn_weekly\"}} {rows}\n"
            )),
            "{m}"
        );
    }
    assert!(
        m.contains("c360_step_duration_seconds_count{job=\"churn_weekly\",step=\"publish\"} 1"),
        "{m}"
    );

    // The lookup index follows latest.json: a newer version replaces the loaded one.
    let page = |h: &Http, s: &Service| {
        h.get(
            &s.url(&format!("/products/{PRODUCT}/rows?limit=1")),
            Some(OPS),
        )
    };
    let first = wait_for("the product in the index", 60, || {
        let r = page(&h, &s);
        (r.status == 200).then(|| r.json())
    });
    assert_eq!(first["as_of"], "2024-09-29");
    assert_eq!(first["run_id"], run_id.as_str());
    let r = h.send(
        "POST",
        &s.url("/jobs/churn_weekly/runs"),
        Some(OPS),
        Some("{\"as_of\": \"2024-09-30\"}"),
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let second = r.json()["run_id"].as_str().unwrap().to_string();
    assert_ne!(second, run_id);
    let moved = wait_for("the index to reload the new version", 300, || {
        let v = page(&h, &s).json();
        (v["as_of"] == "2024-09-30").then_some(v)
    });
    assert_eq!(moved["run_id"], second.as_str());
    assert_eq!(ledger(&h, &s, &second)["status"], "succeeded");
    s.stop();
}

fn fires(store: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(store.join("runs/churn_weekly/ticks")) {
        let mut files: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        files.sort();
        for f in files {
            if let Ok(v) = serde_json::from_slice::<Value>(&std::fs::read(&f).unwrap()) {
                out.push(v);
            }
        }
    }
    out
}

fn ts(v: &Value) -> DateTime<Utc> {
    v.as_str().unwrap().parse().unwrap()
}

#[test]
fn serve_seconds_cron_fires_on_time_once_per_tick_across_two_replicas() {
    let p = TestProject::new(|j| {
        j.replace("schedule = \"0 6 * * MON\"", "schedule = \"*/2 * * * * *\"")
            .replace("timezone = \"UTC\"", "timezone = \"Asia/Tokyo\"")
            .replace("as_of = \"last_sunday\"", "as_of = \"yesterday\"")
    });
    configure(&p, "");
    let a = Service::start(&p, &[]);
    let b = Service::start(&p, &[]);
    let done = wait_for("6 fires", 120, || {
        let f = fires(&p.store());
        (f.len() >= 6 && f.iter().all(|f| f["outcome"] != "claimed")).then_some(f)
    });
    let (la, lb) = (a.stop(), b.stop());
    let all = fires(&p.store());
    assert!(all.len() >= done.len());
    let tz: chrono_tz::Tz = "Asia/Tokyo".parse().unwrap();
    let mut prev: Option<DateTime<Utc>> = None;
    for f in &all {
        let tick = ts(&f["tick"]);
        let fired = ts(&f["fired_at"]);
        assert_eq!(tick.timestamp() % 2, 0, "{f}");
        assert_eq!(tick.timestamp_subsec_nanos(), 0, "{f}");
        assert!(fired >= tick, "fired early: {f}");
        assert!((fired - tick).num_seconds() < 15, "fired late: {f}");
        if let Some(p) = prev {
            assert_eq!((tick - p).num_seconds(), 2, "a tick was skipped: {f}");
        }
        prev = Some(tick);
        // The as-of rule (yesterday) resolved on the fire's date in the job's time zone.
        let expect = tick.with_timezone(&tz).date_naive().pred_opt().unwrap();
        assert_eq!(f["as_of"], expect.to_string(), "{f}");
        assert!(!f["catch_up"].as_bool().unwrap());
    }
    // Each tick fired by exactly one of the two replicas.
    let mut count: BTreeMap<String, usize> = BTreeMap::new();
    for log in [&la, &lb] {
        for l in log.lines().filter(|l| l.contains("scheduler fire")) {
            if let Some(t) = l
                .split("tick=")
                .nth(1)
                .and_then(|r| r.split_whitespace().next())
            {
                *count.entry(t.to_string()).or_default() += 1;
            }
        }
    }
    for f in &all {
        let t = ts(&f["tick"]).to_rfc3339();
        assert_eq!(
            count.get(&t),
            Some(&1),
            "tick {t} fired {:?} times",
            count.get(&t)
        );
    }
    assert_eq!(count.len(), all.len());
    // Without data the runs fail, but each fire that found no run in progress started one.
    // (The last fire may have been cut short by the shutdown, between claim and record.)
    let settled = &all[..all.len() - 1];
    assert!(
        settled.iter().all(|f| f["outcome"] == "failed"
            || f["outcome"] == "busy"
            || f["outcome"] == "started"),
        "{settled:?}"
    );
}

#[test]
fn serve_catch_up_policies_after_downtime() {
    let now = Utc::now();
    let midnight = now.date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc();
    if now - midnight < chrono::Duration::seconds(30) {
        // Too close to a fire for the expectations below; the next minute is safe.
        std::thread::sleep(Duration::from_secs(35));
    }
    let midnight = Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    let last = midnight - chrono::Duration::days(3) + chrono::Duration::hours(1);
    let missed: Vec<DateTime<Utc>> = (0..3)
        .map(|i| midnight - chrono::Duration::days(2 - i))
        .collect();
    let mut running = Vec::new();
    for policy in ["skip", "latest", "all"] {
        let p = TestProject::new(|j| {
            j.replace("schedule = \"0 6 * * MON\"", "schedule = \"0 0 * * *\"")
                .replace(
                    "as_of = \"last_sunday\"",
                    &format!("as_of = \"yesterday\"\ncatch_up = \"{policy}\""),
                )
        });
        configure(&p, "");
        let dir = p.store().join("runs/churn_weekly");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("schedule.json"),
            serde_json::json!({"job": "churn_weekly", "last_fire": last, "updated_at": last, "owner": "test"}).to_string(),
        )
        .unwrap();
        let s = Service::start(&p, &[]);
        running.push((policy, p, s));
    }
    let state = |p: &TestProject| -> Option<DateTime<Utc>> {
        let b = std::fs::read(p.store().join("runs/churn_weekly/schedule.json")).ok()?;
        let v: Value = serde_json::from_slice(&b).ok()?;
        Some(ts(&v["last_fire"]))
    };
    for (policy, p, s) in running {
        wait_for("the catch-up", 120, || {
            (state(&p) == Some(missed[2])).then_some(())
        });
        s.stop();
        let f = fires(&p.store());
        let ticks: Vec<DateTime<Utc>> = f.iter().map(|f| ts(&f["tick"])).collect();
        let expect: Vec<DateTime<Utc>> = match policy {
            "skip" => vec![],
            "latest" => vec![missed[2]],
            _ => missed.clone(),
        };
        assert_eq!(ticks, expect, "{policy}");
        for f in &f {
            assert_eq!(f["catch_up"], true);
            let tick = ts(&f["tick"]);
            assert_eq!(
                f["as_of"],
                (tick.date_naive().pred_opt().unwrap()).to_string()
            );
            assert_ne!(f["outcome"], "claimed");
        }
    }
}
