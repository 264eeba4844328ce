//! Issue 19, faults 5, 4a and 3b: both HTTP servers stay reachable under slow and idle
//! clients (header and body timeouts, a body limit checked before reading, a connection
//! limit), the CSV export cannot inject spreadsheet formulas, and no token ever reaches an
//! error or a log line.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use polars::prelude::*;

use crate::common::fixture_dir;
use crate::features::c360;
use crate::pipeline::TestProject;
use crate::service::{configure, Http, Service, ADMIN, MKT, OPS};

/// The shortened timeouts the servers run with here.
const HEADER_TIMEOUT: Duration = Duration::from_secs(1);
const BODY_TIMEOUT: Duration = Duration::from_secs(2);

/// A running `c360 serve-model`; killed on drop.
struct ModelServer {
    child: Child,
    addr: SocketAddr,
}

impl ModelServer {
    fn start(extra: &[&str]) -> ModelServer {
        let mut cmd = c360();
        cmd.args(["serve-model", "--model-dir"])
            .arg(fixture_dir().join("xgb/binary_base_scalar.json"))
            .args(["--host", "127.0.0.1", "--port", "0"])
            .args([
                "--header-timeout-seconds",
                "1",
                "--body-timeout-seconds",
                "2",
            ])
            .args(extra)
            .env_remove("SAGEMAKER_BIND_TO_PORT")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut seen = String::new();
        let addr = loop {
            let mut line = String::new();
            let n = err.read_line(&mut line).unwrap();
            assert!(n > 0, "serve-model ended before listening:\n{seen}");
            seen.push_str(&line);
            if let Some(a) = line.trim().rsplit_once("on http://") {
                break a.1.parse::<SocketAddr>().unwrap();
            }
        };
        // Keep draining stderr so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            let _ = err.read_to_string(&mut sink);
        });
        ModelServer { child, addr }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ModelServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// One request on a fresh connection (`Connection: close`): the status, the body and the
/// time from connect to the last byte.
fn request(addr: SocketAddr, head: &str) -> (u16, String, Duration) {
    let t = Instant::now();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let took = t.elapsed();
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer to {head:?}: {text:?}"));
    (status, text, took)
}

fn get(addr: SocketAddr, path: &str) -> (u16, String, Duration) {
    request(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"),
    )
}

/// Reads until the server closes the connection (or `max` passes): how long it took.
fn closed_after(s: &mut TcpStream, max: Duration) -> Option<(Duration, String)> {
    let t = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = max.checked_sub(t.elapsed())?;
        s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
            .unwrap();
        match s.read(&mut buf) {
            Ok(0) => return Some((t.elapsed(), String::from_utf8_lossy(&got).into())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return None
            }
            Err(_) => return Some((t.elapsed(), String::from_utf8_lossy(&got).into())),
        }
    }
}

/// The slow-client scenario against one server: 200 idle connections, a body announced
/// as 1,000,000 bytes that trickles in forever, a half-written header line; meanwhile the
/// health route answers every time within 100 ms, a 10^12-byte Content-Length gets 413
/// at once, the half header is closed after the header timeout and the trickle gets 408
/// after the body timeout.
fn slow_clients(addr: SocketAddr, pid: u32, health: &str, post: &str) -> Vec<Duration> {
    let base_fds = open_fds(pid);
    let idle: Vec<TcpStream> = (0..200)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();

    let mut trickle = TcpStream::connect(addr).unwrap();
    trickle
        .write_all(
            format!(
                "POST {post} HTTP/1.1\r\nHost: t\r\nContent-Type: text/csv\r\nContent-Length: 1000000\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let mut w = trickle.try_clone().unwrap();
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if w.write_all(b"1").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let started = Instant::now();

    let mut half = TcpStream::connect(addr).unwrap();
    half.write_all(format!("GET {health} HTT").as_bytes())
        .unwrap();
    let half_started = Instant::now();

    // The 200 idle connections are accepted (held by the server, not the backlog).
    let t = Instant::now();
    let mut fds_loaded = open_fds(pid);
    while fds_loaded < base_fds + 200 && t.elapsed() < HEADER_TIMEOUT * 8 / 10 {
        std::thread::sleep(Duration::from_millis(20));
        fds_loaded = fds_loaded.max(open_fds(pid));
    }
    assert!(
        fds_loaded >= base_fds + 200,
        "the 200 idle connections were accepted: {base_fds} -> {fds_loaded} descriptors"
    );
    // Health under load: every request within 100 ms.
    let mut lat = Vec::new();
    for _ in 0..20 {
        let (status, _, took) = get(addr, health);
        assert_eq!(status, 200);
        lat.push(took);
    }

    // A declared body far over the limit: 413 before a byte of it is read.
    let (status, text, took) = request(
        addr,
        &format!(
            "POST {post} HTTP/1.1\r\nHost: t\r\nContent-Type: text/csv\r\nContent-Length: 1000000000000\r\n\r\n"
        ),
    );
    assert_eq!(status, 413, "{text}");
    assert!(
        text.contains("1000000000000 bytes exceeds the limit"),
        "{text}"
    );
    assert!(took < Duration::from_millis(500), "413 took {took:?}");
    eprintln!("{health}: Content-Length 10^12 answered 413 in {took:?}");

    // The half header line: closed after the header timeout (not before, not much later).
    closed_after(&mut half, Duration::from_secs(10)).expect("the half-header connection is closed");
    let closed = half_started.elapsed();
    eprintln!("{health}: half header line closed after {closed:?}");
    assert!(
        closed >= HEADER_TIMEOUT - Duration::from_millis(100)
            && closed < HEADER_TIMEOUT + Duration::from_secs(2),
        "half header closed after {closed:?}"
    );

    // The trickling body: 408 after the body timeout, then closed.
    let (_, text) =
        closed_after(&mut trickle, Duration::from_secs(15)).expect("the trickling body is cut off");
    let after = started.elapsed();
    eprintln!("{health}: trickling body answered 408 and closed after {after:?}");
    assert!(text.starts_with("HTTP/1.1 408"), "{text:?}");
    assert!(text.contains("did not arrive within 2 s"), "{text:?}");
    assert!(
        after >= BODY_TIMEOUT - Duration::from_millis(100)
            && after < BODY_TIMEOUT + Duration::from_secs(3),
        "trickle cut after {after:?}"
    );
    stop.store(true, Ordering::Relaxed);
    let _ = writer.join();

    // The idle connections were closed by the header timeout: the descriptors came back.
    std::thread::sleep(HEADER_TIMEOUT);
    let deadline = Instant::now() + Duration::from_secs(5);
    while open_fds(pid) > base_fds + 5 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let fds_after = open_fds(pid);
    assert!(
        fds_after <= base_fds + 5,
        "idle connections closed: {base_fds} -> {fds_loaded} -> {fds_after} descriptors"
    );
    drop(idle);
    let (status, _, took) = get(addr, health);
    assert_eq!(status, 200);
    lat.push(took);
    lat
}

fn report(what: &str, lat: &[Duration]) {
    let mut v = lat.to_vec();
    v.sort();
    eprintln!(
        "{what}: {} health requests under 200 idle + 2 slow connections: median {:?}, max {:?}",
        v.len(),
        v[v.len() / 2],
        v[v.len() - 1]
    );
    for (i, l) in lat.iter().enumerate() {
        assert!(
            *l < Duration::from_millis(100),
            "{what} request {i} took {l:?}"
        );
    }
}

#[test]
fn model_server_survives_slow_and_idle_clients() {
    let s = ModelServer::start(&[]);
    let lat = slow_clients(s.addr, s.pid(), "/ping", "/invocations");
    report("serve-model /ping", &lat);
    // Still scoring afterwards.
    let (status, text, _) = request(
        s.addr,
        "POST /invocations HTTP/1.1\r\nHost: t\r\nContent-Type: text/csv\r\nContent-Length: 16\r\nConnection: close\r\n\r\n0,0,0,0,0,0,0,0\n",
    );
    assert_eq!(status, 200, "{text}");
}

#[test]
fn keep_alive_connections_idle_past_the_header_timeout_are_closed() {
    let s = ModelServer::start(&[]);
    let mut c = TcpStream::connect(s.addr).unwrap();
    let t = Instant::now();
    c.write_all(b"GET /ping HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let (_, text) = closed_after(&mut c, Duration::from_secs(10)).expect("closed when idle");
    let idle = t.elapsed();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        idle >= HEADER_TIMEOUT - Duration::from_millis(100)
            && idle < HEADER_TIMEOUT + Duration::from_secs(2),
        "idle keep-alive connection closed after {idle:?}"
    );
}

#[test]
fn model_server_caps_connections_and_checks_its_settings() {
    let s = ModelServer::start(&["--max-connections", "8"]);
    let base = open_fds(s.pid());
    let idle: Vec<TcpStream> = (0..40)
        .map(|_| TcpStream::connect(s.addr).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let during = open_fds(s.pid());
    assert!(
        during <= base + 9,
        "at most 8 connections held (one more while one is being replaced): {base} -> {during} descriptors"
    );
    // Beyond the limit, the oldest idle connection is closed to make room: a ping gets
    // through at once, however many idle clients are ahead of it.
    let (status, _, took) = get(s.addr, "/ping");
    assert_eq!(status, 200);
    assert!(took < Duration::from_millis(100), "ping waited {took:?}");
    // Clients that never finish their headers are idle too.
    let partial: Vec<TcpStream> = (0..40)
        .map(|_| {
            let mut c = TcpStream::connect(s.addr).unwrap();
            c.write_all(b"GET /ping HTTP/1.1\r\nHost: x\r\n").unwrap();
            c
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    assert!(open_fds(s.pid()) <= base + 9, "bounded descriptors");
    for _ in 0..5 {
        let (status, _, took) = get(s.addr, "/ping");
        assert_eq!(status, 200);
        assert!(
            took < Duration::from_millis(100),
            "ping waited {took:?} behind partial headers"
        );
    }
    drop(partial);
    eprintln!(
        "serve-model --max-connections 8: 40 idle clients held {} descriptors (base {base}); a ping behind them answered in {took:?}",
        during - base
    );
    drop(idle);

    for bad in [
        ["--max-connections", "0"],
        ["--header-timeout-seconds", "0"],
        ["--body-timeout-seconds", "nan"],
        ["--body-timeout-seconds", "1e300"],
    ] {
        let out = c360().arg("serve-model").args(bad).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {err}");
        assert!(err.contains(bad[0]), "{bad:?}: {err}");
    }
}

#[test]
fn service_survives_slow_and_idle_clients() {
    let p = TestProject::new(|j| j);
    configure(
        &p,
        "scheduler = false\nheader_timeout_seconds = 1\nbody_timeout_seconds = 2\n",
    );
    let s = Service::start(&p, &[]);
    let addr: SocketAddr = s.url("").trim_start_matches("http://").parse().unwrap();
    let pid = s.pid();
    let lat = slow_clients(addr, pid, "/healthz", "/jobs/churn_weekly/runs");
    report("serve /healthz", &lat);
    // The API's body limit is small: a 2 MiB body gets 413 (JSON, naming the limit).
    let (status, text, _) = request(
        addr,
        "POST /jobs/churn_weekly/runs HTTP/1.1\r\nHost: t\r\nContent-Length: 2097152\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 413, "{text}");
    assert!(
        text.contains(r#""error":"payload_too_large""#) && text.contains("1048576 bytes"),
        "{text}"
    );
    // A chunked body (no declared length) gets 413 as soon as it passes the limit: the
    // last chunk takes it one byte over.
    let mut c = TcpStream::connect(addr).unwrap();
    c.write_all(b"POST /jobs/churn_weekly/runs HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n100000\r\n")
        .unwrap();
    c.write_all(&vec![b' '; 1 << 20]).unwrap();
    c.write_all(b"\r\n1\r\n \r\n").unwrap();
    let (_, text) = closed_after(&mut c, Duration::from_secs(10)).expect("answered and closed");
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
    assert!(
        text.contains("exceeds the limit of 1048576 bytes"),
        "{text}"
    );

    // SIGTERM with an idle connection and an unfinished body open: the service still
    // stops, within the body timeout.
    let _idle = TcpStream::connect(addr).unwrap();
    let mut unfinished = TcpStream::connect(addr).unwrap();
    unfinished
        .write_all(
            b"POST /jobs/churn_weekly/runs HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n{",
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    s.stop();
    let took = t.elapsed();
    eprintln!("serve: SIGTERM with an unfinished body open stopped in {took:?}");
    assert!(
        took < BODY_TIMEOUT + Duration::from_secs(3),
        "stopping took {took:?}"
    );

    // Bad bounds are refused at start (exit 3), naming the key.
    for (extra, key) in [
        ("header_timeout_seconds = 0.0", "header_timeout_seconds"),
        ("body_timeout_seconds = nan", "body_timeout_seconds"),
        ("max_connections = 0", "max_connections"),
        ("max_connections = 9223372036854775807", "max_connections"),
        ("max_body_bytes = 0", "max_body_bytes"),
    ] {
        let p = TestProject::new(|j| j);
        configure(&p, &format!("scheduler = false\n{extra}"));
        let out = p
            .cmd()
            .args(["serve", "--bind", "127.0.0.1:0"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{extra}: {err}");
        assert!(err.contains(key), "{extra}: {err}");
    }
}

// ---------------------------------------------------------------- CSV export

/// Ids a spreadsheet would run as formulas, and ids needing RFC 4180 quoting.
const HOSTILE: [(&str, &str); 15] = [
    (
        "=HYPERLINK(\"http://x\",\"y\")",
        "\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\"",
    ),
    ("+1", "'+1"),
    ("-2", "'-2"),
    ("@SUM(A1)", "'@SUM(A1)"),
    ("\tx", "'\tx"),
    ("\rx", "\"'\rx\""),
    ("a,b", "\"a,b\""),
    ("a\"b", "\"a\"\"b\""),
    // Full-width and small-form triggers; triggers after invisible leading characters.
    ("\u{ff1d}1+1", "'\u{ff1d}1+1"),
    ("\u{ff20}SUM(A1)", "'\u{ff20}SUM(A1)"),
    ("\u{fe66}1", "'\u{fe66}1"),
    ("\u{feff}=1+1", "'\u{feff}=1+1"),
    ("\u{202e}=1+1", "'\u{202e}=1+1"),
    ("\u{a0}=1+1", "'\u{a0}=1+1"),
    ("\u{200b}-1", "'\u{200b}-1"),
];

/// Replaces the first customer ids of the latest product part with the hostile ones and
/// makes the first row's score negative.
fn plant_hostile_rows(store: &std::path::Path) -> (String, f64) {
    let latest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(store.join("products/customer_churn_scores/latest.json")).unwrap(),
    )
    .unwrap();
    let part = store.join(latest["path"].as_str().unwrap());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(part.join("_manifest.json")).unwrap()).unwrap();
    let file = part.join(manifest["files"][0].as_str().unwrap());
    let df = ParquetReader::new(std::fs::File::open(&file).unwrap())
        .finish()
        .unwrap();
    let n = df.height();
    assert!(n > HOSTILE.len(), "{n} rows");
    let ids = df.column("customer_id").unwrap().str().unwrap().clone();
    let new_ids: StringChunked = ids
        .iter()
        .enumerate()
        .map(|(i, v)| HOSTILE.get(i).map(|h| h.0).or(v))
        .collect();
    // The score: the first Float64 column other than the id.
    let score = df
        .columns()
        .iter()
        .find(|c| c.dtype() == &DataType::Float64)
        .expect("a float column")
        .name()
        .to_string();
    let vals: Float64Chunked = df
        .column(&score)
        .unwrap()
        .f64()
        .unwrap()
        .iter()
        .enumerate()
        .map(|(i, v)| if i == 0 { Some(-0.25) } else { v })
        .collect();
    let mut df = df;
    df.with_column(new_ids.with_name("customer_id".into()).into_column())
        .unwrap();
    df.with_column(vals.with_name(score.as_str().into()).into_column())
        .unwrap();
    ParquetWriter::new(std::fs::File::create(&file).unwrap())
        .finish(&mut df)
        .unwrap();
    crate::common::reseal_part(&part, manifest["files"][0].as_str().unwrap());
    (score, -0.25)
}

#[test]
fn csv_export_neutralises_formulas_and_quotes_per_rfc4180() {
    let p = TestProject::new(|j| j);
    p.generate(200);
    let (code, out) = p.run("2024-09-29");
    assert_eq!(code, 0, "{out}");
    let (score, neg) = plant_hostile_rows(&p.store());
    configure(&p, "scheduler = false");
    let s = Service::start(&p, &[]);
    let h = Http::new();
    let r = h.get(
        &s.url("/products/customer_churn_scores/rows?format=csv&limit=20"),
        Some(ADMIN),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let header: Vec<&str> = r.body.lines().next().unwrap().split(',').collect();
    let id_col = header.iter().position(|c| *c == "customer_id").unwrap();
    let score_col = header.iter().position(|c| *c == score).unwrap();
    assert_eq!(id_col, 0, "customer_id leads: {header:?}");
    // Records follow the header; each starts with its (neutralised, quoted) id cell.
    let body = &r.body[r.body.find('\n').unwrap() + 1..];
    let mut rest = body;
    for (i, (raw, cell)) in HOSTILE.iter().enumerate() {
        assert!(
            rest.starts_with(&format!("{cell},")),
            "row {i} ({raw:?}) should start with {cell:?}: {:?}",
            &rest[..rest.len().min(120)]
        );
        let line_end = rest[cell.len()..].find('\n').unwrap() + cell.len();
        let line = &rest[..line_end];
        if i == 0 {
            // The negative score stays a number (no quote, no apostrophe).
            let fields: Vec<&str> = line[cell.len() + 1..].split(',').collect();
            let v = fields[score_col - 1];
            assert_eq!(v.parse::<f64>().unwrap(), neg, "{line:?}");
            assert!(!v.starts_with('\''), "{line:?}");
        }
        rest = &rest[line_end + 1..];
    }
    // Read back by a CSV reader: the cells are the ids behind one apostrophe.
    let df = CsvReadOptions::default()
        .with_has_header(true)
        .into_reader_with_file_handle(std::io::Cursor::new(r.body.as_bytes().to_vec()))
        .finish()
        .unwrap();
    let ids = df.column("customer_id").unwrap().str().unwrap().clone();
    for (i, (raw, cell)) in HOSTILE.iter().enumerate() {
        let want = if cell.starts_with('\'') || cell.starts_with("\"'") {
            format!("'{raw}")
        } else {
            raw.to_string()
        };
        assert_eq!(ids.get(i), Some(want.as_str()));
    }
    assert_eq!(df.column(&score).unwrap().f64().unwrap().get(0), Some(neg));
    // JSON is unchanged: the stored value exactly.
    let j = h
        .get(
            &s.url("/products/customer_churn_scores/rows?limit=1"),
            Some(ADMIN),
        )
        .json();
    assert_eq!(j["rows"][0]["customer_id"], HOSTILE[0].0);
    s.stop();
}

// ---------------------------------------------------------------- secrets

#[test]
fn malformed_tokens_are_refused_without_showing_them() {
    let secret = "SECRET123abc";
    let p = TestProject::new(|j| j);
    configure(&p, "scheduler = false");
    for (entry, want) in [
        (
            format!("me:{secret}:admin"),
            "entry 1: the fields look swapped",
        ),
        (
            format!("{secret}:me:admin"),
            "entry 1: the fields look swapped",
        ),
        (
            format!("ok:admin:x1,me:{secret}"),
            "entry 2: has 2 of the 3 fields",
        ),
        (
            format!("me:{secret}:nobody"),
            "entry 1: the second field is not a role",
        ),
        (secret.to_string(), "entry 1: has 1 of the 3 fields"),
        (
            format!(":admin:{secret}"),
            "entry 1: the name (first field) is empty",
        ),
    ] {
        let out = p
            .cmd()
            .args(["serve", "--bind", "127.0.0.1:0"])
            .env("C360_LOG", "debug")
            .env("C360_SERVICE_TOKENS", &entry)
            .output()
            .unwrap();
        let all = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{entry}: {all}");
        assert!(all.contains("C360_SERVICE_TOKENS"), "{entry}: {all}");
        assert!(all.contains(want), "{entry}: {all}");
        assert!(!all.contains(secret), "the token leaked for {entry}: {all}");
        // validate must not show it either (whether or not it checks [service]).
        let out = p
            .cmd()
            .arg("validate")
            .env("C360_LOG", "debug")
            .env("C360_SERVICE_TOKENS", &entry)
            .output()
            .unwrap();
        let all = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(!all.contains(secret), "validate leaked the token: {all}");
    }
    // A value that is not UTF-8: refused, not ignored, and not shown.
    use std::os::unix::ffi::OsStringExt as _;
    let raw = std::ffi::OsString::from_vec(
        format!("me:admin:{secret}\u{7f}")
            .into_bytes()
            .into_iter()
            .chain([0xff])
            .collect(),
    );
    let out = p
        .cmd()
        .args(["serve", "--bind", "127.0.0.1:0"])
        .env("C360_SERVICE_TOKENS", raw)
        .output()
        .unwrap();
    let all =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{all}");
    assert!(
        all.contains("C360_SERVICE_TOKENS is not valid UTF-8"),
        "{all}"
    );
    assert!(!all.contains(secret), "{all}");
}

#[test]
fn wrong_and_right_tokens_never_reach_the_log() {
    let p = TestProject::new(|j| j);
    configure(&p, "scheduler = false");
    let s = Service::start(&p, &[("C360_LOG", "debug")]);
    let h = Http::new();
    let wrong = "WRONG-token-9f8e7d6c5b4a";
    assert_eq!(h.get(&s.url("/jobs"), Some(wrong)).status, 401);
    let r = h.get(&s.url("/jobs"), Some(wrong));
    assert!(!r.body.contains(wrong), "{}", r.body);
    assert_eq!(h.get(&s.url("/jobs"), Some(MKT)).status, 403);
    assert_eq!(h.get(&s.url("/jobs"), Some(OPS)).status, 200);
    assert_eq!(h.get(&s.url("/jobs"), Some(ADMIN)).status, 200);
    let r = h.send("POST", &s.url("/jobs/nope/runs"), Some(wrong), Some("{}"));
    assert_eq!(r.status, 401);
    let log = s.stop();
    assert!(log.contains("denied: 401"), "{log}");
    assert!(log.contains("denied: 403"), "{log}");
    for t in [wrong, MKT, OPS, ADMIN] {
        assert!(!log.contains(t), "token {t} in the log:\n{log}");
        let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(t.as_bytes()));
        assert!(!log.contains(&hash), "hash of {t} in the log:\n{log}");
    }
    assert!(
        !log.contains("Bearer "),
        "an Authorization header in the log:\n{log}"
    );
}
