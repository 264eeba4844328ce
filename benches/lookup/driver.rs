//! Open-loop load driver for the customer lookup (`cargo bench --bench lookup_load -- ...`,
//! or the built binary directly; `benches/lookup/run.sh` runs it).
//!
//! Requests are scheduled at a fixed rate whatever the server does (open loop), each to a
//! random customer, over keep-alive connections. A request's latency counts from its
//! scheduled time, so a stalled server (or driver) shows in the tail instead of being
//! hidden by fewer requests (no coordinated omission). The time from the actual send is
//! reported too. Written in Rust so that the driver takes little of the machine's two
//! cores: the Python asyncio driver needed most of one core at 2,000 requests/s.
//!
//! Usage: lookup_load --url URL --token TOKEN --ids FILE [--product P] [--rate 2000]
//!        [--duration 30] [--warmup 3] [--connections 32] [--json]

use std::sync::Arc;
use std::time::{Duration, Instant};

struct Args {
    url: String,
    token: String,
    ids: String,
    product: String,
    rate: f64,
    duration: f64,
    warmup: f64,
    connections: usize,
    json: bool,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        url: String::new(),
        token: String::new(),
        ids: String::new(),
        product: "customer_churn_scores".into(),
        rate: 2000.0,
        duration: 30.0,
        warmup: 3.0,
        connections: 32,
        json: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().ok_or(format!("{k} needs a value"));
        match k.as_str() {
            "--url" => a.url = v()?,
            "--token" => a.token = v()?,
            "--ids" => a.ids = v()?,
            "--product" => a.product = v()?,
            "--rate" => a.rate = v()?.parse().map_err(|e| format!("--rate: {e}"))?,
            "--duration" => a.duration = v()?.parse().map_err(|e| format!("--duration: {e}"))?,
            "--warmup" => a.warmup = v()?.parse().map_err(|e| format!("--warmup: {e}"))?,
            "--connections" => {
                a.connections = v()?.parse().map_err(|e| format!("--connections: {e}"))?
            }
            "--json" => a.json = true,
            "--bench" => {} // passed by `cargo bench`
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.url.is_empty() || a.token.is_empty() || a.ids.is_empty() {
        return Err("usage: lookup_load --url URL --token TOKEN --ids FILE [--rate R] [--duration S] [--warmup S] [--connections N] [--json]".into());
    }
    Ok(a)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

struct Sample {
    scheduled_ms: f64,
    sent_ms: f64,
    ok: bool,
    measured: bool,
}

fn main() {
    let a = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let ids: Vec<String> = match std::fs::read_to_string(&a.ids) {
        Ok(t) => t
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect(),
        Err(e) => {
            eprintln!("{}: {e}", a.ids);
            std::process::exit(2);
        }
    };
    if ids.is_empty() {
        eprintln!("{}: no ids", a.ids);
        std::process::exit(2);
    }
    // One driver thread: the server gets the rest of the machine.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let samples = rt.block_on(drive(&a, Arc::new(ids)));
    report(&a, &samples);
}

async fn drive(a: &Args, ids: Arc<Vec<String>>) -> Vec<Sample> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(a.connections)
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("HTTP client");
    let base = format!(
        "{}/products/{}/customers/",
        a.url.trim_end_matches('/'),
        a.product
    );
    let auth = format!("Bearer {}", a.token);
    let sem = Arc::new(tokio::sync::Semaphore::new(a.connections));
    let total = ((a.warmup + a.duration) * a.rate) as u64;
    let warm = (a.warmup * a.rate) as u64;
    let every = Duration::from_secs_f64(1.0 / a.rate);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Sample>();
    // Pacing on its own OS thread: std's sleep is precise to tens of microseconds, where
    // tokio's timer wheel ticks in milliseconds (and would add up to 1 ms of the driver's own
    // lateness to every latency measured from the schedule).
    let (tick_tx, mut ticks) = tokio::sync::mpsc::unbounded_channel::<(u64, Instant)>();
    let start = Instant::now() + Duration::from_millis(50);
    std::thread::spawn(move || {
        for i in 0..total {
            let at = start + every.mul_f64(i as f64);
            let now = Instant::now();
            if at > now {
                std::thread::sleep(at - now);
            }
            if tick_tx.send((i, at)).is_err() {
                return;
            }
        }
    });
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    while let Some((i, at)) = ticks.recv().await {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let url = format!("{base}{}", ids[(x % ids.len() as u64) as usize]);
        let permit = sem.clone().acquire_owned().await;
        let (client, auth, tx) = (client.clone(), auth.clone(), tx.clone());
        tokio::spawn(async move {
            let sent = Instant::now();
            let ok = match client.get(&url).header("authorization", auth).send().await {
                Ok(r) => {
                    let good = r.status().as_u16() == 200;
                    r.bytes().await.is_ok() && good
                }
                Err(_) => false,
            };
            let done = Instant::now();
            drop(permit);
            let _ = tx.send(Sample {
                scheduled_ms: (done - at).as_secs_f64() * 1e3,
                sent_ms: (done - sent).as_secs_f64() * 1e3,
                ok,
                measured: i >= warm,
            });
        });
    }
    drop(tx);
    let mut out = Vec::with_capacity(total as usize);
    while let Some(s) = rx.recv().await {
        out.push(s);
    }
    out
}

fn report(a: &Args, samples: &[Sample]) {
    let m: Vec<&Sample> = samples.iter().filter(|s| s.measured).collect();
    let errors = m.iter().filter(|s| !s.ok).count();
    let mut sched: Vec<f64> = m.iter().map(|s| s.scheduled_ms).collect();
    let mut sent: Vec<f64> = m.iter().map(|s| s.sent_ms).collect();
    sched.sort_by(f64::total_cmp);
    sent.sort_by(f64::total_cmp);
    let line = serde_json::json!({
        "rate": a.rate, "duration_s": a.duration, "connections": a.connections,
        "requests": m.len(), "errors": errors,
        "p50_ms": pct(&sched, 50.0), "p90_ms": pct(&sched, 90.0), "p99_ms": pct(&sched, 99.0),
        "p999_ms": pct(&sched, 99.9), "max_ms": sched.last().copied().unwrap_or(f64::NAN),
        "from_send": {"p50_ms": pct(&sent, 50.0), "p99_ms": pct(&sent, 99.0), "p999_ms": pct(&sent, 99.9)},
    });
    if a.json {
        println!("{line}");
    } else {
        println!(
            "{} requests at {}/s for {} s ({} warm-up s not counted), {} connections: {} errors",
            m.len(),
            a.rate,
            a.duration,
            a.warmup,
            a.connections,
            errors
        );
        println!(
            "latency from the scheduled time: p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms  max {:.2} ms",
            pct(&sched, 50.0),
            pct(&sched, 90.0),
            pct(&sched, 99.0),
            pct(&sched, 99.9),
            sched.last().copied().unwrap_or(f64::NAN)
        );
        println!(
            "latency from the send:           p50 {:.2} ms  p99 {:.2} ms  p99.9 {:.2} ms",
            pct(&sent, 50.0),
            pct(&sent, 99.0),
            pct(&sent, 99.9)
        );
        println!("json: {line}");
    }
    if errors > 0 {
        std::process::exit(1);
    }
}
