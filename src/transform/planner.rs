//! The right-sizing planner for SageMaker batch transform: from how many rows a job scores,
//! it picks the instance type, instance count, input parts, `MaxConcurrentTransforms` and
//! `MaxPayloadInMB` that finish within a deadline at the lowest cost, and says why in short
//! sentences (`c360 plan`, `c360 run --dry-run`). Pure functions over a price table kept in
//! the repo (`pricing/sagemaker-transform-us-east-1.toml`, embedded as the default); nothing
//! here calls AWS.
//!
//! The cost model is an estimate built from SageMaker's documented behaviour, not a
//! measurement:
//! - SageMaker spreads input objects, not records, over instances: the busiest instance
//!   holds `ceil(parts / count)` parts, and an instance without an object idles, billed.
//! - An instance scores with `min(vCPUs, MaxConcurrentTransforms, mini-batches it holds)`
//!   workers at [`PlannerSettings::rows_per_second_per_vcpu`] rows per second each.
//! - Wall time = start-up + the busiest instance's scoring time; cost = count x price per
//!   hour x wall time (SageMaker bills each instance per second, idle or not).

use std::cmp::Ordering;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::MB;

/// The default price table (on-demand, us-east-1), embedded in the binary.
pub const DEFAULT_PRICES_TOML: &str =
    include_str!("../../pricing/sagemaker-transform-us-east-1.toml");
/// Where [`DEFAULT_PRICES_TOML`] lives in the repository (for messages).
pub const DEFAULT_PRICES_PATH: &str = "pricing/sagemaker-transform-us-east-1.toml";
/// SageMaker's cap on `TransformResources.InstanceCount`.
pub const MAX_INSTANCES: u32 = 100;
/// SageMaker's limit on `MaxConcurrentTransforms * MaxPayloadInMB`.
pub const CONCURRENCY_TIMES_PAYLOAD_LIMIT: u32 = 100;
/// The built-in XGBoost container's `MAX_CONTENT_LENGTH` (6 MB): a bigger `MaxPayloadInMB`
/// needs the container's limit raised too, so the planner never picks more on its own.
pub const CONTAINER_PAYLOAD_MB: u32 = 6;
/// Most input parts a plan writes (the job definitions' limit on `transform.parts`).
pub const MAX_PARTS: u32 = 10_000;
/// The instance type of [`baseline`]: what a job gets when nobody sizes it.
pub const BASELINE_TYPE: &str = "ml.m5.xlarge";
/// Memory per model copy, as a multiple of the model's size (the copy plus headroom for the
/// worker's request buffers and prediction arrays).
pub const MODEL_MEMORY_FACTOR: f64 = 2.0;
/// Types SageMaker does not offer for batch transform; a price table listing one is wrong.
const NOT_FOR_TRANSFORM: &[&str] = &["ml.c5.large"];
const GIB: f64 = 1_073_741_824.0;

/// A price table: on-demand prices of transform instance types in one region.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceTable {
    /// Where the prices come from, honestly (a page, a third-party table, an API call).
    pub source: String,
    /// When they were read (YYYY-MM-DD).
    pub date: String,
    /// The AWS region the prices are for.
    pub region: String,
    /// Must be USD: the planner reports `usd_per_hour` and `est_cost_usd`.
    pub currency: String,
    /// One `[[instance]]` entry per instance type.
    #[serde(rename = "instance")]
    pub instances: Vec<InstancePrice>,
}

/// One instance type and its on-demand price.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstancePrice {
    /// E.g. `ml.m5.xlarge`.
    #[serde(rename = "type")]
    pub instance_type: String,
    pub vcpus: u32,
    /// Memory in GiB, as AWS publishes it.
    pub memory_gib: f64,
    /// On-demand price of one instance for one hour.
    pub usd_per_hour: f64,
}

impl PriceTable {
    /// Parses and checks a price table; `origin` names it in errors (a path, or the
    /// embedded default).
    pub fn parse(text: &str, origin: &str) -> Result<PriceTable, PlanError> {
        let bad = |field: &str, reason: String| PlanError::Prices {
            origin: origin.to_string(),
            field: field.to_string(),
            reason,
        };
        let t: PriceTable = toml::from_str(text).map_err(|e| bad("(toml)", e.to_string()))?;
        if t.source.trim().is_empty() {
            return Err(bad(
                "source",
                "empty: say where the prices come from".into(),
            ));
        }
        if chrono::NaiveDate::parse_from_str(&t.date, "%Y-%m-%d").is_err() {
            return Err(bad(
                "date",
                format!("{:?} is not a YYYY-MM-DD date", t.date),
            ));
        }
        if t.region.trim().is_empty() {
            return Err(bad("region", "empty".into()));
        }
        if t.currency != "USD" {
            return Err(bad(
                "currency",
                format!("{:?}: prices must be in USD (usd_per_hour)", t.currency),
            ));
        }
        if t.instances.is_empty() {
            return Err(bad("instance", "no [[instance]] entries".into()));
        }
        for (i, p) in t.instances.iter().enumerate() {
            let field = |f: &str| format!("instance[{i}].{f}");
            if !p.instance_type.starts_with("ml.") {
                return Err(bad(
                    &field("type"),
                    format!(
                        "{:?} is not a SageMaker instance type (ml.*)",
                        p.instance_type
                    ),
                ));
            }
            if NOT_FOR_TRANSFORM.contains(&p.instance_type.as_str()) {
                return Err(bad(
                    &field("type"),
                    format!("{} is not offered for batch transform", p.instance_type),
                ));
            }
            if t.instances[..i]
                .iter()
                .any(|q| q.instance_type == p.instance_type)
            {
                return Err(bad(
                    &field("type"),
                    format!("{} is listed twice", p.instance_type),
                ));
            }
            if p.vcpus == 0 {
                return Err(bad(&field("vcpus"), "must be at least 1".into()));
            }
            if !(p.memory_gib.is_finite() && p.memory_gib > 0.0) {
                return Err(bad(&field("memory_gib"), "must be above 0".into()));
            }
            if !(p.usd_per_hour.is_finite() && p.usd_per_hour > 0.0) {
                return Err(bad(&field("usd_per_hour"), "must be above 0".into()));
            }
        }
        Ok(t)
    }

    /// The embedded default table (`pricing/sagemaker-transform-us-east-1.toml`).
    pub fn embedded() -> Result<PriceTable, PlanError> {
        PriceTable::parse(DEFAULT_PRICES_TOML, DEFAULT_PRICES_PATH)
    }

    /// The entry of one instance type.
    pub fn get(&self, instance_type: &str) -> Option<&InstancePrice> {
        self.instances
            .iter()
            .find(|p| p.instance_type == instance_type)
    }

    /// Every instance type, in the table's order.
    pub fn types(&self) -> Vec<&str> {
        self.instances
            .iter()
            .map(|p| p.instance_type.as_str())
            .collect()
    }
}

/// Loads a price table: the file at `path`, or the embedded default when `None`.
pub fn load_prices(path: Option<&Path>) -> Result<PriceTable, PlanError> {
    match path {
        None => PriceTable::embedded(),
        Some(p) => {
            let text =
                crate::project::read_definition(p).map_err(|error| PlanError::ReadPrices {
                    path: p.display().to_string(),
                    error,
                })?;
            PriceTable::parse(&text, &p.display().to_string())
        }
    }
}

/// What a job has to score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Workload {
    /// Records (CSV lines) to score.
    pub rows: u64,
    /// Size of the transform input, all parts together.
    pub bytes: u64,
    /// Size of the model artifact once loaded (0: unknown, memory is not checked).
    pub model_bytes: u64,
}

/// The planner's assumptions; [`Default`] gives the documented defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannerSettings {
    /// Rows per second one vCPU of the model container scores. The default, 20,000, is a
    /// conservative guess for the built-in XGBoost container on CSV, not a measurement:
    /// replace it with a figure measured on the job's own model (one batch transform of a
    /// known row count on one instance, timed from its log).
    pub rows_per_second_per_vcpu: f64,
    /// The job must finish (start-up included) within this.
    pub deadline: Duration,
    /// Instance provisioning plus container start, billed on every instance (default 420 s).
    pub startup_seconds: f64,
    /// Most instances a plan may use: SageMaker's cap is 100; an account quota may be lower.
    pub max_instances: u32,
    /// Types the planner may choose from; `None`: every type in the price table.
    pub allowed_types: Option<Vec<String>>,
    /// Target size of one input part: big enough to amortise per-object overhead.
    pub target_part_bytes: u64,
}

/// The default of [`PlannerSettings::rows_per_second_per_vcpu`].
pub const DEFAULT_ROWS_PER_SECOND_PER_VCPU: f64 = 20_000.0;
/// The default of [`PlannerSettings::startup_seconds`] (7 minutes).
pub const DEFAULT_STARTUP_SECONDS: f64 = 420.0;
/// The default of [`PlannerSettings::target_part_bytes`] (64 MiB).
pub const DEFAULT_TARGET_PART_BYTES: u64 = 64 * 1_048_576;

impl Default for PlannerSettings {
    fn default() -> Self {
        PlannerSettings {
            rows_per_second_per_vcpu: DEFAULT_ROWS_PER_SECOND_PER_VCPU,
            deadline: Duration::from_secs(3600),
            startup_seconds: DEFAULT_STARTUP_SECONDS,
            max_instances: MAX_INSTANCES,
            allowed_types: None,
            target_part_bytes: DEFAULT_TARGET_PART_BYTES,
        }
    }
}

/// Values a job pins (its `[transform]` section); pinned values are used as given, after
/// validation, and the planner chooses the rest around them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pins {
    pub instance_type: Option<String>,
    pub instance_count: Option<u32>,
    pub parts: Option<u32>,
    pub max_concurrent_transforms: Option<u32>,
    pub max_payload_mb: Option<u32>,
}

/// A sized batch transform and its estimate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub instance_type: String,
    pub instance_count: u32,
    /// vCPUs of one instance.
    pub vcpus: u32,
    /// Input part files (objects) to write.
    pub parts: u32,
    pub max_concurrent_transforms: u32,
    pub max_payload_mb: u32,
    /// Estimated wall time, start-up included.
    pub est_seconds: f64,
    pub est_cost_usd: f64,
    /// Price of one instance.
    pub usd_per_hour: f64,
    pub meets_deadline: bool,
    /// Short sentences explaining each choice.
    pub reasons: Vec<String>,
}

impl Plan {
    /// The plan as JSON (`c360 plan --json`, the run ledger).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "instance_type": self.instance_type,
            "instance_count": self.instance_count,
            "vcpus": self.vcpus,
            "parts": self.parts,
            "max_concurrent_transforms": self.max_concurrent_transforms,
            "max_payload_mb": self.max_payload_mb,
            "est_seconds": self.est_seconds,
            "est_cost_usd": self.est_cost_usd,
            "usd_per_hour": self.usd_per_hour,
            "meets_deadline": self.meets_deadline,
            "reasons": self.reasons,
        })
    }
}

/// Why no plan could be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("cannot read price table {path}: {error}")]
    ReadPrices { path: String, error: std::io::Error },
    #[error("price table {origin}: {field}: {reason}")]
    Prices {
        origin: String,
        field: String,
        reason: String,
    },
    /// A pinned value is invalid; `field` is the pin's name (as in a job's `[transform]`).
    #[error("pinned {field}: {reason}")]
    Pin { field: String, reason: String },
    #[error("planner setting {field}: {reason}")]
    Settings { field: String, reason: String },
    /// Every candidate type was refused: the model does not fit in memory.
    #[error("no instance type can run this job: {reason}")]
    NoFeasibleType { reason: String },
}

impl PlanError {
    /// The field the error is about, when there is one.
    pub fn field(&self) -> Option<&str> {
        match self {
            PlanError::Prices { field, .. }
            | PlanError::Pin { field, .. }
            | PlanError::Settings { field, .. } => Some(field),
            _ => None,
        }
    }
}

/// Why `MaxConcurrentTransforms` has its value.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ConcRule {
    Pinned,
    /// One per vCPU.
    Vcpus,
    /// One per vCPU, but at most 100 / the pinned payload.
    PayloadLimit,
    /// Lowered from `wanted` so that every worker's model copy fits in memory.
    Memory {
        wanted: u32,
    },
}

/// Why `MaxPayloadInMB` has its value.
#[derive(Debug, Clone, Copy, PartialEq)]
enum PayloadRule {
    Pinned,
    /// The container's 6 MB.
    Container,
    /// The largest with concurrency x payload <= 100.
    SageMakerLimit,
}

#[derive(Debug, Clone, Copy)]
struct Workers {
    conc: u32,
    payload: u32,
    conc_rule: ConcRule,
    payload_rule: PayloadRule,
}

/// One candidate (type, count) with its estimate.
#[derive(Debug, Clone)]
struct Eval<'a> {
    t: &'a InstancePrice,
    n: u32,
    parts: u32,
    parts_capped: bool,
    w: Workers,
    /// Parts, rows and mini-batches of the busiest instance.
    busiest_parts: u32,
    busiest_rows: f64,
    batches: f64,
    /// Workers busy on the busiest instance.
    busy: f64,
    compute_s: f64,
    wall_s: f64,
    cost: f64,
}

impl Eval<'_> {
    /// A total order for "cheapest": cost (to a micro-dollar), then fewer instances, then
    /// the smaller type.
    fn cheap_key(&self) -> (i64, u32, (u32, i64, i64, &str)) {
        (micro(self.cost), self.n, size_key(self.t))
    }

    /// A total order for "fastest": wall time (to a millisecond), then cost, count, size.
    fn fast_key(&self) -> (i64, i64, u32, (u32, i64, i64, &str)) {
        (
            (self.wall_s * 1e3).round() as i64,
            micro(self.cost),
            self.n,
            size_key(self.t),
        )
    }
}

fn micro(x: f64) -> i64 {
    (x * 1e6).round() as i64
}

fn size_key(t: &InstancePrice) -> (u32, i64, i64, &str) {
    (
        t.vcpus,
        (t.memory_gib * 1e3).round() as i64,
        micro(t.usd_per_hour),
        t.instance_type.as_str(),
    )
}

fn pin_err(field: &str, reason: String) -> PlanError {
    PlanError::Pin {
        field: field.to_string(),
        reason,
    }
}

fn settings_err(field: &str, reason: String) -> PlanError {
    PlanError::Settings {
        field: field.to_string(),
        reason,
    }
}

fn check_settings(s: &PlannerSettings, prices: &PriceTable) -> Result<(), PlanError> {
    if !(s.rows_per_second_per_vcpu.is_finite() && s.rows_per_second_per_vcpu > 0.0) {
        return Err(settings_err(
            "rows_per_second_per_vcpu",
            format!("{} must be above 0", s.rows_per_second_per_vcpu),
        ));
    }
    if s.deadline.is_zero() {
        return Err(settings_err("deadline", "must be above 0".into()));
    }
    if !(s.startup_seconds.is_finite() && s.startup_seconds >= 0.0) {
        return Err(settings_err(
            "startup_seconds",
            format!("{} must be 0 or more", s.startup_seconds),
        ));
    }
    if !(1..=MAX_INSTANCES).contains(&s.max_instances) {
        return Err(settings_err(
            "max_instances",
            format!(
                "{} is not in 1..={MAX_INSTANCES} (SageMaker's cap)",
                s.max_instances
            ),
        ));
    }
    if s.target_part_bytes == 0 {
        return Err(settings_err("target_part_bytes", "must be above 0".into()));
    }
    if let Some(allowed) = &s.allowed_types {
        if allowed.is_empty() {
            return Err(settings_err("allowed_types", "empty".into()));
        }
        for a in allowed {
            if prices.get(a).is_none() {
                return Err(settings_err(
                    "allowed_types",
                    format!(
                        "{a} is not in the price table (it has: {})",
                        prices.types().join(", ")
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// The types a plan may use, in the price table's order.
fn allowed<'a>(s: &PlannerSettings, prices: &'a PriceTable) -> Vec<&'a InstancePrice> {
    prices
        .instances
        .iter()
        .filter(|p| match &s.allowed_types {
            None => true,
            Some(a) => a.iter().any(|x| x == &p.instance_type),
        })
        .collect()
}

fn check_pins(
    pins: &Pins,
    s: &PlannerSettings,
    candidates: &[&InstancePrice],
) -> Result<(), PlanError> {
    if let Some(t) = &pins.instance_type {
        if !candidates.iter().any(|p| &p.instance_type == t) {
            return Err(pin_err(
                "instance_type",
                format!(
                    "{t} is not an allowed type (allowed: {})",
                    candidates
                        .iter()
                        .map(|p| p.instance_type.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
    }
    if let Some(n) = pins.instance_count {
        if !(1..=MAX_INSTANCES).contains(&n) {
            return Err(pin_err(
                "instance_count",
                format!("{n} is not in 1..={MAX_INSTANCES}"),
            ));
        }
        if n > s.max_instances {
            return Err(pin_err(
                "instance_count",
                format!(
                    "{n} is over max_instances ({}, the account's quota)",
                    s.max_instances
                ),
            ));
        }
    }
    if let Some(p) = pins.parts {
        if !(1..=MAX_PARTS).contains(&p) {
            return Err(pin_err("parts", format!("{p} is not in 1..={MAX_PARTS}")));
        }
    }
    if let Some(mb) = pins.max_payload_mb {
        if !(1..=CONCURRENCY_TIMES_PAYLOAD_LIMIT).contains(&mb) {
            return Err(pin_err(
                "max_payload_mb",
                format!("{mb} is not in 1..=100 (SageMaker's MaxPayloadInMB)"),
            ));
        }
    }
    if let Some(c) = pins.max_concurrent_transforms {
        if !(1..=CONCURRENCY_TIMES_PAYLOAD_LIMIT).contains(&c) {
            return Err(pin_err(
                "max_concurrent_transforms",
                format!("{c} is not in 1..=100 (0, \"ask the container\", cannot be planned)"),
            ));
        }
        if let Some(mb) = pins.max_payload_mb {
            if c * mb > CONCURRENCY_TIMES_PAYLOAD_LIMIT {
                return Err(pin_err(
                    "max_concurrent_transforms",
                    format!("{c} x max_payload_mb {mb} is over SageMaker's limit of 100 (MaxConcurrentTransforms x MaxPayloadInMB)"),
                ));
            }
        }
    }
    Ok(())
}

/// Model copies that fit in one instance's memory.
fn copies_that_fit(t: &InstancePrice, model_bytes: u64) -> u32 {
    if model_bytes == 0 {
        return u32::MAX;
    }
    let n = (t.memory_gib * GIB / (model_bytes as f64 * MODEL_MEMORY_FACTOR)).floor();
    n.min(f64::from(u32::MAX)) as u32
}

/// Concurrency and payload on one type; `Err` when the type cannot hold the model copies
/// it needs (one per worker: the pinned concurrency, else at least one).
fn workers(t: &InstancePrice, model_bytes: u64, pins: &Pins) -> Result<Workers, ()> {
    let fit = copies_that_fit(t, model_bytes);
    let (conc, conc_rule) = match pins.max_concurrent_transforms {
        Some(c) => {
            if c > fit {
                return Err(());
            }
            (c, ConcRule::Pinned)
        }
        None => {
            let limit = CONCURRENCY_TIMES_PAYLOAD_LIMIT / pins.max_payload_mb.unwrap_or(1);
            let wanted = t.vcpus.min(limit);
            if fit == 0 {
                return Err(());
            }
            if fit < wanted {
                (fit, ConcRule::Memory { wanted })
            } else if wanted < t.vcpus {
                (wanted, ConcRule::PayloadLimit)
            } else {
                (wanted, ConcRule::Vcpus)
            }
        }
    };
    let (payload, payload_rule) = match pins.max_payload_mb {
        Some(p) => (p, PayloadRule::Pinned),
        None => {
            let most = CONCURRENCY_TIMES_PAYLOAD_LIMIT / conc;
            if most >= CONTAINER_PAYLOAD_MB {
                (CONTAINER_PAYLOAD_MB, PayloadRule::Container)
            } else {
                (most.max(1), PayloadRule::SageMakerLimit)
            }
        }
    };
    Ok(Workers {
        conc,
        payload,
        conc_rule,
        payload_rule,
    })
}

/// "ml.m5.large (8 GiB) and ml.c5.xlarge (8 GiB) cannot hold 1 copy of the 5 GiB model x 2
/// (headroom) = 10 GiB".
fn memory_refusal(refused: &[&InstancePrice], copies: u32, model_bytes: u64) -> String {
    let names: Vec<String> = refused
        .iter()
        .map(|t| format!("{} ({} GiB)", t.instance_type, trim_float(t.memory_gib)))
        .collect();
    let list = match names.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} and {last}", rest.join(", ")),
        _ => names.join(""),
    };
    format!(
        "{list} cannot hold {copies} cop{} of the {} model x {MODEL_MEMORY_FACTOR} (headroom) = {}",
        if copies == 1 { "y" } else { "ies" },
        format_bytes(model_bytes),
        format_bytes((model_bytes as f64 * MODEL_MEMORY_FACTOR * f64::from(copies)) as u64),
    )
}

/// Parts for `n` instances: about bytes / target, at most one per row, rounded up to a
/// multiple of `n` (every instance gets the same work), capped at [`MAX_PARTS`].
fn auto_parts(w: &Workload, target: u64, n: u32) -> (u32, bool) {
    let base = w.bytes.div_ceil(target).clamp(1, w.rows.max(1));
    let n64 = u64::from(n);
    let parts = base.div_ceil(n64) * n64;
    let cap = u64::from(MAX_PARTS / n * n);
    if parts > cap {
        (cap as u32, true)
    } else {
        (parts as u32, false)
    }
}

fn evaluate<'a>(
    w: &Workload,
    s: &PlannerSettings,
    t: &'a InstancePrice,
    n: u32,
    parts: (u32, bool),
    workers: Workers,
) -> Eval<'a> {
    let (parts, parts_capped) = parts;
    let busiest_parts = parts.div_ceil(n);
    let share = f64::from(busiest_parts) / f64::from(parts);
    let busiest_rows = w.rows as f64 * share;
    let busiest_bytes = w.bytes as f64 * share;
    let batches = (busiest_bytes / (f64::from(workers.payload) * MB as f64))
        .ceil()
        .max(1.0);
    let busy = f64::from(t.vcpus.min(workers.conc)).min(batches);
    let compute_s = busiest_rows / (s.rows_per_second_per_vcpu * busy);
    let wall_s = s.startup_seconds + compute_s;
    let cost = f64::from(n) * t.usd_per_hour * wall_s / 3600.0;
    Eval {
        t,
        n,
        parts,
        parts_capped,
        w: workers,
        busiest_parts,
        busiest_rows,
        batches,
        busy,
        compute_s,
        wall_s,
        cost,
    }
}

/// Sizes a batch transform: among the allowed types and 1..=max_instances instances, the
/// cheapest plan that finishes within the deadline (ties: fewer instances, then the smaller
/// type); when none does, the fastest, with `meets_deadline = false`. Pinned values are used
/// as given.
pub fn plan(
    w: &Workload,
    s: &PlannerSettings,
    pins: &Pins,
    prices: &PriceTable,
) -> Result<Plan, PlanError> {
    check_settings(s, prices)?;
    let allowed = allowed(s, prices);
    check_pins(pins, s, &allowed)?;
    let types: Vec<&InstancePrice> = match &pins.instance_type {
        Some(t) => allowed
            .iter()
            .copied()
            .filter(|p| &p.instance_type == t)
            .collect(),
        None => allowed,
    };
    let counts = match pins.instance_count {
        Some(n) => n..=n,
        None => 1..=s.max_instances,
    };
    let mut refused = Vec::new();
    let mut evals = Vec::new();
    for t in &types {
        let wk = match workers(t, w.model_bytes, pins) {
            Ok(wk) => wk,
            Err(()) => {
                refused.push(*t);
                continue;
            }
        };
        for n in counts.clone() {
            let parts = match pins.parts {
                Some(p) => (p, false),
                None => auto_parts(w, s.target_part_bytes, n),
            };
            evals.push(evaluate(w, s, t, n, parts, wk));
        }
    }
    let refusal = (!refused.is_empty()).then(|| {
        let copies = pins.max_concurrent_transforms.unwrap_or(1);
        memory_refusal(&refused, copies, w.model_bytes)
    });
    if evals.is_empty() {
        let reason = refusal.unwrap_or_default();
        if pins.instance_type.is_some() {
            return Err(pin_err("instance_type", reason));
        }
        return Err(PlanError::NoFeasibleType { reason });
    }
    let deadline = s.deadline.as_secs_f64();
    let meets = |e: &Eval| e.wall_s <= deadline + 1e-9;
    let feasible = evals.iter().any(meets);
    let order = |a: &Eval, b: &Eval| -> Ordering {
        if feasible {
            a.cheap_key().cmp(&b.cheap_key())
        } else {
            a.fast_key().cmp(&b.fast_key())
        }
    };
    let pool: Vec<&Eval> = evals.iter().filter(|e| !feasible || meets(e)).collect();
    let best = pool
        .iter()
        .copied()
        .min_by(|a, b| order(a, b))
        .expect("pool is not empty");
    let runner_up = pool
        .iter()
        .copied()
        .filter(|e| !(std::ptr::eq(e.t, best.t) && e.n == best.n))
        .min_by(|a, b| order(a, b));

    let mut reasons = Vec::new();
    let ty = match &pins.instance_type {
        Some(_) => format!("{} (pinned)", best.t.instance_type),
        None => best.t.instance_type.clone(),
    };
    let count = match pins.instance_count {
        Some(_) => format!("x {} (pinned)", best.n),
        None => format!("x {}", best.n),
    };
    let dl = format_duration(deadline);
    if evals.len() == 1 {
        reasons.push(format!("{ty} {count}: the only plan the pins allow."));
    } else if feasible {
        reasons.push(format!(
            "{ty} {count}: the cheapest plan that finishes within the {dl} deadline ({} of {} candidates do: {} type{} x {} instance{}).",
            format_count(pool.len() as u64),
            format_count(evals.len() as u64),
            types.len() - refused.len(),
            if types.len() - refused.len() == 1 { "" } else { "s" },
            match pins.instance_count {
                Some(n) => n.to_string(),
                None => format!("1-{}", s.max_instances),
            },
            if pins.instance_count == Some(1) { "" } else { "s" },
        ));
    } else {
        reasons.push(format!(
            "{ty} {count}: no plan finishes within the {dl} deadline, so this is the fastest of {}; allow more instances (max {}), a longer deadline, or measure the model's throughput.",
            format_count(evals.len() as u64),
            s.max_instances
        ));
    }
    if let Some(r) = runner_up {
        reasons.push(format!(
            "Next best: {} x {}, {} in {}.",
            r.t.instance_type,
            r.n,
            format_usd(r.cost),
            format_duration(r.wall_s)
        ));
    }
    if let Some(r) = refusal {
        reasons.push(format!("Refused for memory: {r}."));
    }
    reasons.extend(describe(w, s, best, pins.parts.is_some()));
    Ok(to_plan(best, meets(best), reasons))
}

/// The sentences on concurrency, payload, parts, memory and the estimate.
fn describe(w: &Workload, s: &PlannerSettings, e: &Eval, parts_pinned: bool) -> Vec<String> {
    let mut out = Vec::new();
    let t = e.t;
    let c = e.w.conc;
    out.push(match e.w.conc_rule {
        ConcRule::Pinned => format!("MaxConcurrentTransforms {c}: pinned."),
        ConcRule::Vcpus => format!(
            "MaxConcurrentTransforms {c}: one request per vCPU of {} (the built-in XGBoost container runs one worker per vCPU).",
            t.instance_type
        ),
        ConcRule::PayloadLimit => format!(
            "MaxConcurrentTransforms {c}, not one per vCPU ({}): the most with MaxPayloadInMB {} (x payload <= 100).",
            t.vcpus, e.w.payload
        ),
        ConcRule::Memory { wanted } => format!(
            "MaxConcurrentTransforms {c}, not {wanted}: only {c} cop{} of the {} model (x {MODEL_MEMORY_FACTOR} headroom) {} in {} GiB; run the container with at most {c} worker{}.",
            if c == 1 { "y" } else { "ies" },
            format_bytes(w.model_bytes),
            if c == 1 { "fits" } else { "fit" },
            trim_float(t.memory_gib),
            if c == 1 { "" } else { "s" }
        ),
    });
    let p = e.w.payload;
    out.push(match e.w.payload_rule {
        PayloadRule::Pinned => format!("MaxPayloadInMB {p}: pinned ({c} x {p} <= 100)."),
        PayloadRule::Container => format!(
            "MaxPayloadInMB {p}: {c} x {p} <= 100, capped at the built-in container's MAX_CONTENT_LENGTH of 6 MB (raise both to go higher)."
        ),
        PayloadRule::SageMakerLimit => format!(
            "MaxPayloadInMB {p}: the largest with {c} x payload <= 100 (SageMaker's limit)."
        ),
    });
    if w.model_bytes > 0 && !matches!(e.w.conc_rule, ConcRule::Memory { .. }) {
        out.push(format!(
            "Memory: {c} cop{} of the {} model x {MODEL_MEMORY_FACTOR} (headroom) = {} of {} GiB.",
            if c == 1 { "y" } else { "ies" },
            format_bytes(w.model_bytes),
            format_bytes((w.model_bytes as f64 * MODEL_MEMORY_FACTOR * f64::from(c)) as u64),
            trim_float(t.memory_gib)
        ));
    }
    let (parts, n) = (e.parts, e.n);
    if parts_pinned {
        let mut sentence = format!("{parts} input parts: pinned");
        if parts < n {
            sentence.push_str(&format!(
                "; SageMaker spreads objects, not records, so {} of {n} instances get none and idle, billed",
                n - parts
            ));
        } else if !parts.is_multiple_of(n) {
            sentence.push_str(&format!(
                "; not a multiple of {n}, so the busiest instance gets {} parts and others {}",
                e.busiest_parts,
                parts / n
            ));
        }
        sentence.push('.');
        out.push(sentence);
    } else {
        let capped = if e.parts_capped {
            format!("; capped at {MAX_PARTS} parts")
        } else {
            String::new()
        };
        if n == 1 {
            out.push(format!(
                "{parts} input part{}: {} in parts of up to about {}{capped}.",
                if parts == 1 { "" } else { "s" },
                format_bytes(w.bytes),
                format_bytes(s.target_part_bytes),
            ));
        } else {
            out.push(format!(
                "{parts} input parts, {} per instance: {} / {} rounded up to a multiple of {n}, so every instance gets the same work (SageMaker spreads objects, not records){capped}.",
                e.busiest_parts,
                format_bytes(w.bytes),
                format_bytes(s.target_part_bytes),
            ));
        }
    }
    let workers_used = t.vcpus.min(c);
    let busy = if e.busy < f64::from(workers_used) {
        format!(
            "{} of {workers_used} workers (only {} mini-batch{} of up to {p} MB to send)",
            e.busy,
            e.batches,
            if e.batches == 1.0 { "" } else { "es" }
        )
    } else if c < t.vcpus {
        format!("{workers_used} of {} vCPUs", t.vcpus)
    } else {
        format!("{workers_used} workers")
    };
    out.push(format!(
        "Estimate: {} start-up + {} scoring {} rows{} at {} rows/s per vCPU on {busy} = {}{}; {} ({n} x {}/h, billed per second).",
        format_duration(s.startup_seconds),
        format_duration(e.compute_s),
        format_count(e.busiest_rows.round() as u64),
        if n == 1 { "" } else { " on the busiest instance" },
        format_count(s.rows_per_second_per_vcpu.round() as u64),
        format_duration(e.wall_s),
        if e.wall_s <= s.deadline.as_secs_f64() + 1e-9 {
            format!(" (deadline {})", format_duration(s.deadline.as_secs_f64()))
        } else {
            format!(
                ", {} over the {} deadline",
                format_duration(e.wall_s - s.deadline.as_secs_f64()),
                format_duration(s.deadline.as_secs_f64())
            )
        },
        format_usd(e.cost),
        format_usd(t.usd_per_hour)
    ));
    out
}

fn to_plan(e: &Eval, meets_deadline: bool, reasons: Vec<String>) -> Plan {
    Plan {
        instance_type: e.t.instance_type.clone(),
        instance_count: e.n,
        vcpus: e.t.vcpus,
        parts: e.parts,
        max_concurrent_transforms: e.w.conc,
        max_payload_mb: e.w.payload,
        est_seconds: e.wall_s,
        est_cost_usd: e.cost,
        usd_per_hour: e.t.usd_per_hour,
        meets_deadline,
        reasons,
    }
}

/// What a job gets when nobody sizes it: one ml.m5.xlarge, one input file,
/// MaxConcurrentTransforms 1, MaxPayloadInMB 6; estimated with the same model as [`plan`].
/// When `prices` has no ml.m5.xlarge, the embedded table's price is used (and said).
pub fn baseline(w: &Workload, s: &PlannerSettings, prices: &PriceTable) -> Plan {
    let mut reasons = vec![format!(
        "The common default: one {BASELINE_TYPE}, one input file, MaxConcurrentTransforms 1, MaxPayloadInMB 6 (what a job gets when nobody sizes it)."
    )];
    let t = match prices.get(BASELINE_TYPE) {
        Some(t) => t.clone(),
        None => {
            reasons.push(format!(
                "The price table has no {BASELINE_TYPE}: its price comes from {DEFAULT_PRICES_PATH}."
            ));
            PriceTable::embedded()
                .ok()
                .and_then(|p| p.get(BASELINE_TYPE).cloned())
                .unwrap_or(InstancePrice {
                    instance_type: BASELINE_TYPE.into(),
                    vcpus: 4,
                    memory_gib: 16.0,
                    usd_per_hour: 0.23,
                })
        }
    };
    let wk = Workers {
        conc: 1,
        payload: CONTAINER_PAYLOAD_MB,
        conc_rule: ConcRule::Pinned,
        payload_rule: PayloadRule::Pinned,
    };
    let e = evaluate(w, s, &t, 1, (1, false), wk);
    reasons.push(format!(
        "Estimate: {} start-up + {} scoring {} rows on 1 of {} vCPUs = {}; {}.",
        format_duration(s.startup_seconds),
        format_duration(e.compute_s),
        format_count(w.rows),
        t.vcpus,
        format_duration(e.wall_s),
        format_usd(e.cost)
    ));
    let meets = e.wall_s <= s.deadline.as_secs_f64() + 1e-9;
    to_plan(&e, meets, reasons)
}

/// `1h`, `1h 30m 20s`, `48m 40s`, `7m`, `42s`, `0.5s`.
pub fn format_duration(secs: f64) -> String {
    if secs < 10.0 {
        let r = (secs * 10.0).round() / 10.0;
        return format!("{}s", trim_float(r));
    }
    let total = secs.round() as u64;
    let (h, m, s) = (total / 3600, total % 3600 / 60, total % 60);
    let mut out = Vec::new();
    if h > 0 {
        out.push(format!("{h}h"));
    }
    if m > 0 || (h > 0 && s > 0) {
        out.push(format!("{m}m"));
    }
    if s > 0 {
        out.push(format!("{s}s"));
    }
    out.join(" ")
}

/// `$0.0134` below a dollar, `$6.43` above.
pub fn format_usd(x: f64) -> String {
    if x < 1.0 {
        format!("${x:.4}")
    } else {
        format!("${x:.2}")
    }
}

/// Binary units: `64 MiB`, `23.3 GiB`, `250 B`.
pub fn format_bytes(b: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut x = b as f64;
    let mut u = 0;
    while x >= 1024.0 && u < UNITS.len() - 1 {
        x /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else if (x - x.round()).abs() < 0.05 {
        format!("{} {}", x.round(), UNITS[u])
    } else {
        format!("{x:.1} {}", UNITS[u])
    }
}

/// `100,000,000`.
pub fn format_count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// `8`, `7.5`.
fn trim_float(x: f64) -> String {
    if x.fract() == 0.0 {
        format!("{x:.0}")
    } else {
        format!("{x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prices() -> PriceTable {
        PriceTable::embedded().unwrap()
    }

    /// About 30 numeric features as CSV.
    fn workload(rows: u64) -> Workload {
        Workload {
            rows,
            bytes: rows * 250,
            model_bytes: 0,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
    }

    fn assert_close(a: f64, b: f64) {
        assert!(close(a, b), "{a} != {b}");
    }

    #[test]
    fn the_embedded_table_is_the_field_notes_prices() {
        let p = prices();
        assert_eq!(p.region, "us-east-1");
        assert_eq!(p.date, "2026-11-26");
        assert!(p.source.contains("unverified"), "{}", p.source);
        assert_eq!(p.instances.len(), 11);
        assert!(p.get("ml.c5.large").is_none());
        let m5 = p.get("ml.m5.xlarge").unwrap();
        assert_eq!((m5.vcpus, m5.memory_gib, m5.usd_per_hour), (4, 16.0, 0.23));
        let c5 = p.get("ml.c5.18xlarge").unwrap();
        assert_eq!(
            (c5.vcpus, c5.memory_gib, c5.usd_per_hour),
            (72, 144.0, 3.672)
        );
        assert_eq!(p.get("ml.m5.24xlarge").unwrap().usd_per_hour, 5.53);
    }

    #[test]
    fn a_bad_price_table_names_the_field() {
        let field = |text: &str| {
            PriceTable::parse(text, "t.toml")
                .unwrap_err()
                .field()
                .map(String::from)
        };
        let head =
            "source = \"s\"\ndate = \"2026-11-26\"\nregion = \"us-east-1\"\ncurrency = \"USD\"\n";
        let entry = |ty: &str, price: &str| {
            format!("[[instance]]\ntype = \"{ty}\"\nvcpus = 4\nmemory_gib = 16\nusd_per_hour = {price}\n")
        };
        let ok = format!("{head}{}", entry("ml.m5.xlarge", "0.23"));
        assert_eq!(PriceTable::parse(&ok, "t.toml").unwrap().instances.len(), 1);
        assert_eq!(
            field(&format!("{head}{}", entry("ml.c5.large", "0.1"))).as_deref(),
            Some("instance[0].type")
        );
        assert_eq!(
            field(&format!(
                "{head}{}{}",
                entry("ml.m5.xlarge", "0.23"),
                entry("ml.m5.xlarge", "0.23")
            ))
            .as_deref(),
            Some("instance[1].type")
        );
        assert_eq!(
            field(&format!("{head}{}", entry("ml.m5.xlarge", "-1"))).as_deref(),
            Some("instance[0].usd_per_hour")
        );
        assert_eq!(
            field(&ok.replace("2026-11-26", "last week")).as_deref(),
            Some("date")
        );
        assert_eq!(
            field(&ok.replace("USD", "EUR")).as_deref(),
            Some("currency")
        );
        assert_eq!(
            field(&format!("{ok}colour = 1\n")).as_deref(),
            Some("(toml)")
        );

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, ok.replace("0.23", "0.5")).unwrap();
        let loaded = load_prices(Some(&path)).unwrap();
        assert_eq!(loaded.get("ml.m5.xlarge").unwrap().usd_per_hour, 0.5);
        assert!(matches!(
            load_prices(Some(&dir.path().join("missing.toml"))),
            Err(PlanError::ReadPrices { .. })
        ));
        assert_eq!(load_prices(None).unwrap(), prices());
    }

    #[test]
    fn ten_thousand_rows_pick_one_small_instance() {
        let p = plan(
            &workload(10_000),
            &PlannerSettings::default(),
            &Pins::default(),
            &prices(),
        )
        .unwrap();
        assert_eq!(p.instance_type, "ml.m5.large");
        assert_eq!((p.instance_count, p.vcpus, p.parts), (1, 2, 1));
        assert_eq!((p.max_concurrent_transforms, p.max_payload_mb), (2, 6));
        // 2.5 MB is one 6 MB mini-batch: one worker busy, 10,000 / 20,000 = 0.5 s.
        assert_close(p.est_seconds, 420.5);
        assert_close(p.est_cost_usd, 0.115 * 420.5 / 3600.0);
        assert!(p.meets_deadline);
        assert!(
            p.reasons[0].starts_with("ml.m5.large x 1: the cheapest"),
            "{:?}",
            p.reasons
        );
        assert!(
            p.reasons.iter().any(|r| r.contains("1 of 2 workers")),
            "{:?}",
            p.reasons
        );
    }

    #[test]
    fn hundred_million_rows_at_the_default_throughput_fit_one_instance_in_an_hour() {
        // 100M rows / 20,000 rows/s = 5,000 vCPU-seconds: two vCPUs finish in 42 minutes.
        let p = plan(
            &workload(100_000_000),
            &PlannerSettings::default(),
            &Pins::default(),
            &prices(),
        )
        .unwrap();
        assert_eq!(
            (p.instance_type.as_str(), p.instance_count),
            ("ml.m5.large", 1)
        );
        // 25 GB / 64 MiB = 372.5 -> 373.
        assert_eq!(p.parts, 373);
        assert_close(p.est_seconds, 420.0 + 2_500.0);
        assert_close(p.est_cost_usd, 0.115 * 2_920.0 / 3600.0);
        assert!(p.meets_deadline);
    }

    #[test]
    fn hundred_million_rows_of_a_heavy_model_in_an_hour_scale_out() {
        // A model 80x slower than the default figure: 400,000 vCPU-seconds need at least 126
        // vCPUs to finish in 3,600 - 420 s. c5 has the cheapest vCPU; 128 vCPUs as 32 x
        // xlarge, 16 x 2xlarge or 8 x 4xlarge cost the same, and fewer instances win.
        let s = PlannerSettings {
            rows_per_second_per_vcpu: 250.0,
            ..Default::default()
        };
        let p = plan(&workload(100_000_000), &s, &Pins::default(), &prices()).unwrap();
        assert_eq!(
            (p.instance_type.as_str(), p.instance_count),
            ("ml.c5.4xlarge", 8)
        );
        assert_eq!(p.parts, 376, "373 rounded up to a multiple of 8");
        assert_eq!((p.max_concurrent_transforms, p.max_payload_mb), (16, 6));
        assert_close(p.est_seconds, 420.0 + 12_500_000.0 / (250.0 * 16.0));
        assert_close(p.est_cost_usd, 8.0 * 0.816 * 3_545.0 / 3600.0);
        assert!(p.meets_deadline);
    }

    #[test]
    fn hundred_million_rows_in_ten_minutes_scale_out() {
        // 5,000 vCPU-seconds in 180 s need 28 vCPUs: seven c5.xlarge.
        let s = PlannerSettings {
            deadline: Duration::from_secs(600),
            ..Default::default()
        };
        let p = plan(&workload(100_000_000), &s, &Pins::default(), &prices()).unwrap();
        assert_eq!(
            (p.instance_type.as_str(), p.instance_count),
            ("ml.c5.xlarge", 7)
        );
        assert_eq!(p.parts, 378);
        assert_eq!(p.parts % p.instance_count, 0);
        // Each instance: 54 of 378 parts = 14,285,714 rows on 4 vCPUs.
        let wall = 420.0 + 100_000_000.0 * 54.0 / 378.0 / 80_000.0;
        assert_close(p.est_seconds, wall);
        assert_close(p.est_cost_usd, 7.0 * 0.204 * wall / 3600.0);
        assert!(p.meets_deadline && p.est_seconds <= 600.0);
    }

    #[test]
    fn concurrency_times_payload_never_exceeds_100() {
        let prices = prices();
        for rows in [1, 1_000, 1_000_000, 100_000_000, 5_000_000_000] {
            for model_bytes in [0, 10 << 20, 1 << 30, 3 << 30] {
                for payload in [
                    None,
                    Some(1),
                    Some(3),
                    Some(6),
                    Some(7),
                    Some(50),
                    Some(100),
                ] {
                    for rate in [250.0, 20_000.0] {
                        let w = Workload {
                            rows,
                            bytes: rows * 250,
                            model_bytes,
                        };
                        let s = PlannerSettings {
                            rows_per_second_per_vcpu: rate,
                            ..Default::default()
                        };
                        let pins = Pins {
                            max_payload_mb: payload,
                            ..Default::default()
                        };
                        let p = plan(&w, &s, &pins, &prices).unwrap();
                        let (c, mb) = (p.max_concurrent_transforms, p.max_payload_mb);
                        assert!(
                            c >= 1 && mb >= 1 && c * mb <= 100,
                            "{c} x {mb} for {rows} rows, {payload:?}"
                        );
                        assert!(c <= p.vcpus);
                        if payload.is_none() {
                            assert!(mb <= 6);
                        }
                        assert!(p.parts >= p.instance_count);
                        assert_eq!(p.parts % p.instance_count, 0);
                        assert!(p.est_cost_usd > 0.0 && p.est_seconds >= 420.0);
                    }
                }
            }
        }
        // The largest types: one worker per vCPU leaves 1 or 2 MB.
        for (ty, c, mb) in [
            ("ml.m5.24xlarge", 96, 1),
            ("ml.m5.12xlarge", 48, 2),
            ("ml.c5.9xlarge", 36, 2),
            ("ml.c5.4xlarge", 16, 6),
        ] {
            let pins = Pins {
                instance_type: Some(ty.into()),
                ..Default::default()
            };
            let p = plan(
                &workload(1_000_000),
                &PlannerSettings::default(),
                &pins,
                &prices,
            )
            .unwrap();
            assert_eq!(
                (p.max_concurrent_transforms, p.max_payload_mb),
                (c, mb),
                "{ty}"
            );
        }
    }

    #[test]
    fn pins_are_used_as_given() {
        let pins = Pins {
            instance_type: Some("ml.c5.2xlarge".into()),
            instance_count: Some(3),
            parts: Some(7),
            max_concurrent_transforms: Some(4),
            max_payload_mb: Some(20),
        };
        let p = plan(
            &workload(10_000_000),
            &PlannerSettings::default(),
            &pins,
            &prices(),
        )
        .unwrap();
        assert_eq!(p.instance_type, "ml.c5.2xlarge");
        assert_eq!(
            (
                p.instance_count,
                p.parts,
                p.max_concurrent_transforms,
                p.max_payload_mb
            ),
            (3, 7, 4, 20)
        );
        // 7 parts on 3 instances: the busiest gets 3 of them (3/7 of the rows), on 4 workers.
        let wall = 420.0 + 10_000_000.0 * 3.0 / 7.0 / (20_000.0 * 4.0);
        assert_close(p.est_seconds, wall);
        assert_close(p.est_cost_usd, 3.0 * 0.408 * wall / 3600.0);
        assert!(
            p.reasons
                .iter()
                .any(|r| r.contains("busiest instance gets 3 parts")),
            "{:?}",
            p.reasons
        );

        // Fewer parts than instances: the others idle, billed.
        let pins = Pins {
            instance_count: Some(4),
            parts: Some(1),
            ..Default::default()
        };
        let p = plan(
            &workload(10_000_000),
            &PlannerSettings::default(),
            &pins,
            &prices(),
        )
        .unwrap();
        assert_eq!((p.instance_count, p.parts), (4, 1));
        assert!(
            p.reasons
                .iter()
                .any(|r| r.contains("3 of 4 instances get none")),
            "{:?}",
            p.reasons
        );

        // A pinned payload bounds the chosen concurrency.
        let pins = Pins {
            instance_type: Some("ml.m5.4xlarge".into()),
            max_payload_mb: Some(20),
            ..Default::default()
        };
        let p = plan(
            &workload(10_000_000),
            &PlannerSettings::default(),
            &pins,
            &prices(),
        )
        .unwrap();
        assert_eq!((p.max_concurrent_transforms, p.max_payload_mb), (5, 20));
    }

    #[test]
    fn bad_pins_name_the_field() {
        let field = |pins: Pins| match plan(
            &workload(1_000),
            &PlannerSettings::default(),
            &pins,
            &prices(),
        ) {
            Err(PlanError::Pin { field, reason }) => (field, reason),
            other => panic!("expected a pin error, got {other:?}"),
        };
        let (f, why) = field(Pins {
            instance_type: Some("ml.c5.large".into()),
            ..Default::default()
        });
        assert_eq!(f, "instance_type");
        assert!(
            why.contains("ml.m5.xlarge") && why.contains("ml.c5.18xlarge"),
            "{why}"
        );
        assert_eq!(
            field(Pins {
                instance_count: Some(0),
                ..Default::default()
            })
            .0,
            "instance_count"
        );
        assert_eq!(
            field(Pins {
                instance_count: Some(101),
                ..Default::default()
            })
            .0,
            "instance_count"
        );
        assert_eq!(
            field(Pins {
                max_payload_mb: Some(0),
                ..Default::default()
            })
            .0,
            "max_payload_mb"
        );
        assert_eq!(
            field(Pins {
                max_payload_mb: Some(101),
                ..Default::default()
            })
            .0,
            "max_payload_mb"
        );
        assert_eq!(
            field(Pins {
                parts: Some(0),
                ..Default::default()
            })
            .0,
            "parts"
        );
        assert_eq!(
            field(Pins {
                max_concurrent_transforms: Some(17),
                max_payload_mb: Some(6),
                ..Default::default()
            })
            .0,
            "max_concurrent_transforms"
        );
        assert_eq!(
            field(Pins {
                max_concurrent_transforms: Some(0),
                ..Default::default()
            })
            .0,
            "max_concurrent_transforms"
        );
        // A quota below the pinned count.
        let s = PlannerSettings {
            max_instances: 5,
            ..Default::default()
        };
        let pins = Pins {
            instance_count: Some(6),
            ..Default::default()
        };
        assert!(
            matches!(plan(&workload(1), &s, &pins, &prices()), Err(PlanError::Pin { field, .. }) if field == "instance_count")
        );
        // A type outside the allowed list.
        let s = PlannerSettings {
            allowed_types: Some(vec!["ml.c5.xlarge".into()]),
            ..Default::default()
        };
        let pins = Pins {
            instance_type: Some("ml.m5.large".into()),
            ..Default::default()
        };
        assert!(
            matches!(plan(&workload(1), &s, &pins, &prices()), Err(PlanError::Pin { field, .. }) if field == "instance_type")
        );
    }

    #[test]
    fn bad_settings_name_the_field() {
        let field =
            |s: PlannerSettings| match plan(&workload(1_000), &s, &Pins::default(), &prices()) {
                Err(PlanError::Settings { field, .. }) => field,
                other => panic!("expected a settings error, got {other:?}"),
            };
        assert_eq!(
            field(PlannerSettings {
                rows_per_second_per_vcpu: 0.0,
                ..Default::default()
            }),
            "rows_per_second_per_vcpu"
        );
        assert_eq!(
            field(PlannerSettings {
                deadline: Duration::ZERO,
                ..Default::default()
            }),
            "deadline"
        );
        assert_eq!(
            field(PlannerSettings {
                max_instances: 0,
                ..Default::default()
            }),
            "max_instances"
        );
        assert_eq!(
            field(PlannerSettings {
                max_instances: 101,
                ..Default::default()
            }),
            "max_instances"
        );
        assert_eq!(
            field(PlannerSettings {
                allowed_types: Some(vec!["ml.x9.huge".into()]),
                ..Default::default()
            }),
            "allowed_types"
        );
        // An allowed list restricts the choice.
        let s = PlannerSettings {
            allowed_types: Some(vec!["ml.c5.xlarge".into(), "ml.c5.2xlarge".into()]),
            ..Default::default()
        };
        let p = plan(&workload(10_000), &s, &Pins::default(), &prices()).unwrap();
        assert_eq!(p.instance_type, "ml.c5.xlarge");
    }

    #[test]
    fn a_big_model_refuses_small_types_and_lowers_concurrency() {
        // 5 GiB x 2 = 10 GiB per copy: the 8 GiB types cannot hold one.
        let w = Workload {
            model_bytes: 5 << 30,
            ..workload(10_000)
        };
        let p = plan(&w, &PlannerSettings::default(), &Pins::default(), &prices()).unwrap();
        assert_eq!(p.instance_type, "ml.m5.xlarge");
        assert_eq!((p.max_concurrent_transforms, p.max_payload_mb), (1, 6));
        let refused = p
            .reasons
            .iter()
            .find(|r| r.starts_with("Refused for memory"))
            .expect("a refusal reason");
        assert_eq!(
            refused,
            "Refused for memory: ml.m5.large (8 GiB) and ml.c5.xlarge (8 GiB) cannot hold 1 copy of the 5 GiB model x 2 (headroom) = 10 GiB."
        );
        assert!(
            p.reasons
                .iter()
                .any(|r| r.contains("MaxConcurrentTransforms 1, not 4")),
            "{:?}",
            p.reasons
        );

        // 3 GiB on 64 GiB: 10 copies fit, not one per vCPU (16); the payload stays at 6.
        let w = Workload {
            model_bytes: 3 << 30,
            ..workload(10_000)
        };
        let pins = Pins {
            instance_type: Some("ml.m5.4xlarge".into()),
            ..Default::default()
        };
        let p = plan(&w, &PlannerSettings::default(), &pins, &prices()).unwrap();
        assert_eq!((p.max_concurrent_transforms, p.max_payload_mb), (10, 6));

        // Pinning a type that cannot hold the model is an error on that pin.
        let w = Workload {
            model_bytes: 5 << 30,
            ..workload(10_000)
        };
        let pins = Pins {
            instance_type: Some("ml.m5.large".into()),
            ..Default::default()
        };
        assert!(
            matches!(plan(&w, &PlannerSettings::default(), &pins, &prices()), Err(PlanError::Pin { field, .. }) if field == "instance_type")
        );
        // A pinned concurrency that does not fit refuses the type rather than lowering it.
        let pins = Pins {
            max_concurrent_transforms: Some(4),
            ..Default::default()
        };
        let p = plan(&w, &PlannerSettings::default(), &pins, &prices()).unwrap();
        // 4 x 10 GiB: the cheapest type with 40 GiB or more.
        assert_eq!(
            (p.instance_type.as_str(), p.max_concurrent_transforms),
            ("ml.m5.4xlarge", 4)
        );

        // Bigger than any type.
        let w = Workload {
            model_bytes: 200 << 30,
            ..workload(10_000)
        };
        match plan(&w, &PlannerSettings::default(), &Pins::default(), &prices()) {
            Err(PlanError::NoFeasibleType { reason }) => {
                assert!(
                    reason.contains("ml.m5.24xlarge (384 GiB), ml.c5.xlarge (8 GiB), "),
                    "{reason}"
                );
                assert!(
                    reason.contains("and ml.c5.18xlarge (144 GiB) cannot hold 1 copy"),
                    "{reason}"
                );
                assert!(reason.ends_with("= 400 GiB"), "{reason}");
            }
            other => panic!("expected NoFeasibleType, got {other:?}"),
        }
    }

    #[test]
    fn baseline_vs_plan_at_ten_million_rows() {
        let w = workload(10_000_000);
        let s = PlannerSettings::default();
        let b = baseline(&w, &s, &prices());
        assert_eq!(
            (b.instance_type.as_str(), b.instance_count, b.parts),
            ("ml.m5.xlarge", 1, 1)
        );
        assert_eq!((b.max_concurrent_transforms, b.max_payload_mb), (1, 6));
        assert_close(b.est_seconds, 420.0 + 500.0);
        assert_close(b.est_cost_usd, 0.23 * 920.0 / 3600.0);
        let p = plan(&w, &s, &Pins::default(), &prices()).unwrap();
        assert_eq!(
            (p.instance_type.as_str(), p.instance_count, p.parts),
            ("ml.m5.large", 1, 38)
        );
        assert_close(p.est_seconds, 420.0 + 250.0);
        assert_close(p.est_cost_usd, 0.115 * 670.0 / 3600.0);
        assert!(p.est_seconds < b.est_seconds && p.est_cost_usd < b.est_cost_usd);

        // Without ml.m5.xlarge in the table, the embedded price stands in, and says so.
        let mut other = prices();
        other
            .instances
            .retain(|i| i.instance_type != "ml.m5.xlarge");
        let b2 = baseline(&w, &s, &other);
        assert_close(b2.est_cost_usd, b.est_cost_usd);
        assert!(b2.reasons.iter().any(|r| r.contains("has no ml.m5.xlarge")));
    }

    #[test]
    fn when_no_plan_meets_the_deadline_the_fastest_is_chosen() {
        // 1e9 rows at 250 rows/s per vCPU = 4,000,000 vCPU-seconds; two instances at most.
        let s = PlannerSettings {
            rows_per_second_per_vcpu: 250.0,
            max_instances: 2,
            ..Default::default()
        };
        let p = plan(&workload(1_000_000_000), &s, &Pins::default(), &prices()).unwrap();
        assert_eq!(
            (p.instance_type.as_str(), p.instance_count),
            ("ml.m5.24xlarge", 2)
        );
        assert_eq!((p.max_concurrent_transforms, p.max_payload_mb), (96, 1));
        assert!(!p.meets_deadline);
        // 3726 parts rounded up to 3726 (even): 1863 each.
        assert_eq!(p.parts, 3726);
        assert_close(p.est_seconds, 420.0 + 500_000_000.0 / (250.0 * 96.0));
        assert!(
            p.reasons[0].contains("no plan finishes within the 1h deadline"),
            "{:?}",
            p.reasons
        );
        assert!(
            p.reasons.iter().any(|r| r.contains("over the 1h deadline")),
            "{:?}",
            p.reasons
        );
    }

    #[test]
    fn to_json_carries_every_field() {
        let p = plan(
            &workload(10_000),
            &PlannerSettings::default(),
            &Pins::default(),
            &prices(),
        )
        .unwrap();
        let j = p.to_json();
        assert_eq!(j["instance_type"], "ml.m5.large");
        assert_eq!(j["instance_count"], 1);
        assert_eq!(j["max_payload_mb"], 6);
        assert_eq!(j["meets_deadline"], true);
        assert_eq!(j["est_seconds"].as_f64().unwrap(), p.est_seconds);
        assert_eq!(j["reasons"].as_array().unwrap().len(), p.reasons.len());
    }

    #[test]
    fn formats() {
        assert_eq!(format_duration(0.5), "0.5s");
        assert_eq!(format_duration(42.4), "42s");
        assert_eq!(format_duration(420.0), "7m");
        assert_eq!(format_duration(3_600.0), "1h");
        assert_eq!(format_duration(3_605.0), "1h 0m 5s");
        assert_eq!(format_duration(2_920.0), "48m 40s");
        assert_eq!(format_duration(5_420.0), "1h 30m 20s");
        assert_eq!(format_usd(0.0134326), "$0.0134");
        assert_eq!(format_usd(6.42828), "$6.43");
        assert_eq!(format_bytes(250), "250 B");
        assert_eq!(format_bytes(64 << 20), "64 MiB");
        assert_eq!(format_bytes(25_000_000_000), "23.3 GiB");
        assert_eq!(format_count(100_000_000), "100,000,000");
        assert_eq!(format_count(999), "999");
    }
}
