//! Prometheus metrics in the text exposition format, kept in process (no registry crate:
//! a handful of counters, gauges and histograms under one mutex each is all `/metrics`
//! needs, and it keeps link time down).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Histogram buckets (seconds) for HTTP requests: the lookup path lives below 2 ms.
const HTTP_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Histogram buckets (seconds) for pipeline steps.
const STEP_BUCKETS: &[f64] = &[
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

type Labels = Vec<(&'static str, String)>;

#[derive(Debug, Clone)]
struct Histogram {
    buckets: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

impl Histogram {
    fn new(buckets: &'static [f64]) -> Self {
        Histogram {
            buckets,
            counts: vec![0; buckets.len()],
            sum: 0.0,
            count: 0,
        }
    }
    fn observe(&mut self, v: f64) {
        for (i, b) in self.buckets.iter().enumerate() {
            if v <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }
}

#[derive(Debug, Default)]
struct Families {
    counters: BTreeMap<&'static str, BTreeMap<Labels, f64>>,
    gauges: BTreeMap<&'static str, BTreeMap<Labels, f64>>,
    histograms: BTreeMap<&'static str, BTreeMap<Labels, Histogram>>,
}

/// The service's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Families>,
}

const HELP: &[(&str, &str, &str)] = &[
    (
        "c360_runs_total",
        "counter",
        "Finished runs by job, status (succeeded, failed, reused) and trigger.",
    ),
    (
        "c360_runs_in_progress",
        "gauge",
        "Runs this process is working on, by job.",
    ),
    (
        "c360_step_duration_seconds",
        "histogram",
        "Duration of pipeline steps by job and step.",
    ),
    (
        "c360_rows_scored_total",
        "counter",
        "Customers scored by the batch transform, by job.",
    ),
    (
        "c360_scheduler_fires_total",
        "counter",
        "Scheduler fires by job and outcome (started, busy, failed, catch_up_skipped).",
    ),
    (
        "c360_http_requests_total",
        "counter",
        "HTTP requests by route, method and status.",
    ),
    (
        "c360_http_request_duration_seconds",
        "histogram",
        "HTTP request latency by route, method and status.",
    ),
    (
        "c360_http_denials_total",
        "counter",
        "Requests refused by access control, by route and status (401/403).",
    ),
    (
        "c360_transform_cost_estimate_usd",
        "gauge",
        "The planner's cost estimate of the job's last SageMaker transform, by job and instance type (USD).",
    ),
    (
        "c360_transform_cost_estimate_usd_total",
        "counter",
        "Sum of the planner's SageMaker transform cost estimates, by job (USD).",
    ),
    (
        "c360_lookup_index_rows",
        "gauge",
        "Customers in the in-memory lookup index, by product.",
    ),
    (
        "c360_lookup_index_reloads_total",
        "counter",
        "Reloads of the lookup index after latest.json moved, by product.",
    ),
    (
        "c360_events_sent_total",
        "counter",
        "Product events delivered to EventBridge by this process, by detail_type.",
    ),
    (
        "c360_events_failed_total",
        "counter",
        "Product events not delivered after every attempt (the version stays published), by detail_type.",
    ),
];

fn labels(l: &[(&'static str, &str)]) -> Labels {
    l.iter().map(|(k, v)| (*k, v.to_string())).collect()
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn fmt_labels(l: &Labels, extra: Option<(&str, String)>) -> String {
    let mut parts: Vec<String> = l
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .collect();
    if let Some((k, v)) = extra {
        parts.push(format!("{k}=\"{v}\""));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", parts.join(","))
    }
}

impl Metrics {
    fn lock(&self) -> std::sync::MutexGuard<'_, Families> {
        // A panic while holding the lock cannot leave the maps inconsistent.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn inc(&self, name: &'static str, l: &[(&'static str, &str)], by: f64) {
        *self
            .lock()
            .counters
            .entry(name)
            .or_default()
            .entry(labels(l))
            .or_default() += by;
    }

    pub fn set(&self, name: &'static str, l: &[(&'static str, &str)], v: f64) {
        self.lock()
            .gauges
            .entry(name)
            .or_default()
            .insert(labels(l), v);
    }

    pub fn add_gauge(&self, name: &'static str, l: &[(&'static str, &str)], by: f64) {
        *self
            .lock()
            .gauges
            .entry(name)
            .or_default()
            .entry(labels(l))
            .or_default() += by;
    }

    fn observe(
        &self,
        name: &'static str,
        buckets: &'static [f64],
        l: &[(&'static str, &str)],
        v: f64,
    ) {
        self.lock()
            .histograms
            .entry(name)
            .or_default()
            .entry(labels(l))
            .or_insert_with(|| Histogram::new(buckets))
            .observe(v);
    }

    /// One HTTP request answered.
    pub fn http(&self, route: &str, method: &str, status: u16, seconds: f64) {
        let status = status.to_string();
        let l = [("route", route), ("method", method), ("status", &status)];
        self.inc("c360_http_requests_total", &l, 1.0);
        self.observe(
            "c360_http_request_duration_seconds",
            HTTP_BUCKETS,
            &l,
            seconds,
        );
    }

    /// One pipeline step finished.
    pub fn step(&self, job: &str, step: &str, seconds: f64) {
        self.observe(
            "c360_step_duration_seconds",
            STEP_BUCKETS,
            &[("job", job), ("step", step)],
            seconds,
        );
    }

    /// Copies in the process-wide product event counters ([`crate::mesh::events::counts`]:
    /// events are sent by runs on any thread, with no access to the service's state).
    fn absorb_event_counts(&self) {
        let mut f = self.lock();
        for (detail_type, c) in crate::mesh::events::counts() {
            let l = labels(&[("detail_type", detail_type)]);
            for (name, v) in [
                ("c360_events_sent_total", c.sent),
                ("c360_events_failed_total", c.failed),
            ] {
                f.counters
                    .entry(name)
                    .or_default()
                    .insert(l.clone(), v as f64);
            }
        }
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        self.absorb_event_counts();
        let f = self.lock();
        let mut out = String::new();
        for (name, kind, help) in HELP {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            if let Some(series) = f.counters.get(name).or_else(|| f.gauges.get(name)) {
                for (l, v) in series {
                    let _ = writeln!(out, "{name}{} {v}", fmt_labels(l, None));
                }
            }
            if let Some(series) = f.histograms.get(name) {
                for (l, h) in series {
                    for (b, c) in h.buckets.iter().zip(&h.counts) {
                        let _ = writeln!(
                            out,
                            "{name}_bucket{} {c}",
                            fmt_labels(l, Some(("le", b.to_string())))
                        );
                    }
                    let _ = writeln!(
                        out,
                        "{name}_bucket{} {}",
                        fmt_labels(l, Some(("le", "+Inf".into()))),
                        h.count
                    );
                    let _ = writeln!(out, "{name}_sum{} {}", fmt_labels(l, None), h.sum);
                    let _ = writeln!(out, "{name}_count{} {}", fmt_labels(l, None), h.count);
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_cumulative_histograms() {
        let m = Metrics::default();
        m.inc(
            "c360_runs_total",
            &[("job", "j"), ("status", "failed")],
            1.0,
        );
        m.inc(
            "c360_runs_total",
            &[("job", "j"), ("status", "failed")],
            1.0,
        );
        m.http("/healthz", "GET", 200, 0.0015);
        m.http("/healthz", "GET", 200, 0.3);
        let t = m.render();
        assert!(
            t.contains("c360_runs_total{job=\"j\",status=\"failed\"} 2\n"),
            "{t}"
        );
        let r = "route=\"/healthz\",method=\"GET\",status=\"200\"";
        assert!(
            t.contains(&format!(
                "c360_http_request_duration_seconds_bucket{{{r},le=\"0.001\"}} 0\n"
            )),
            "{t}"
        );
        assert!(
            t.contains(&format!(
                "c360_http_request_duration_seconds_bucket{{{r},le=\"0.002\"}} 1\n"
            )),
            "{t}"
        );
        assert!(
            t.contains(&format!(
                "c360_http_request_duration_seconds_bucket{{{r},le=\"0.5\"}} 2\n"
            )),
            "{t}"
        );
        assert!(
            t.contains(&format!(
                "c360_http_request_duration_seconds_count{{{r}}} 2\n"
            )),
            "{t}"
        );
    }
}
