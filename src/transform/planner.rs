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
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::store::MIB;

mod describe;
mod format;
mod prices;

use describe::describe;
use format::trim_float;
pub use format::{format_bytes, format_count, format_duration, format_usd};
pub use prices::{
    load_prices, InstancePrice, PriceTable, DEFAULT_PRICES_PATH, DEFAULT_PRICES_TOML,
};

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
const GIB: f64 = 1_073_741_824.0;

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

impl PlannerSettings {
    /// The settings of `[aws.sagemaker]` (each unset one takes its default): the one place
    /// a run's planner settings are built. The keys are the fields' names
    /// (`rows_per_second_per_vcpu`, `deadline`, `max_instances`, `allowed_types`); the
    /// former spellings are read too (`deadline_minutes`, in minutes). Assumes the settings
    /// passed [`crate::aws::AwsSettings::validate`]; an unreadable deadline keeps the default.
    pub fn from_config(sm: &crate::aws::SageMakerSettings) -> PlannerSettings {
        let mut ps = PlannerSettings::default();
        if let Some(t) = sm.rows_per_second_per_vcpu {
            ps.rows_per_second_per_vcpu = t;
        }
        if let Some(d) = sm.deadline.as_deref().and_then(|d| parse_duration(d).ok()) {
            ps.deadline = d;
        } else if let Some(d) = sm
            .deadline_minutes
            .and_then(|m| Duration::try_from_secs_f64(m * 60.0).ok())
        {
            ps.deadline = d;
        }
        if let Some(m) = sm.max_instances {
            ps.max_instances = m;
        }
        if let Some(t) = &sm.allowed_types {
            ps.allowed_types = Some(t.clone());
        }
        ps
    }
}

/// A duration: `90s`, `30m`, `1h`, `1h30m`, `2.5h`, or bare seconds (`3600`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let bad = || format!("{s:?} is not a duration (e.g. 90s, 30m, 1h, 1h30m)");
    if t.is_empty() {
        return Err(bad());
    }
    if let Ok(secs) = t.parse::<f64>() {
        return Duration::try_from_secs_f64(secs).map_err(|_| bad());
    }
    let mut total = 0.0;
    let mut num = String::new();
    for c in t.chars() {
        match c {
            '0'..='9' | '.' => num.push(c),
            'h' | 'm' | 's' => {
                let x: f64 = num.parse().map_err(|_| bad())?;
                total += x * match c {
                    'h' => 3600.0,
                    'm' => 60.0,
                    _ => 1.0,
                };
                num.clear();
            }
            ' ' => {}
            _ => return Err(bad()),
        }
    }
    if !num.is_empty() {
        return Err(bad());
    }
    Duration::try_from_secs_f64(total).map_err(|_| bad())
}

/// Values a job pins (its `[transform]` section); pinned values are used as given, after
/// validation, and the planner chooses the rest around them.
///
/// In a job file these keys sit in `[transform]` (flattened into its table); the fields are
/// in the order the job file has always serialized them (the definition hash depends on it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pins {
    /// How many input part files to write.
    pub parts: Option<u32>,
    /// The instance type, e.g. `ml.m5.xlarge` (must be in the price table).
    pub instance_type: Option<String>,
    /// How many instances (SageMaker's InstanceCount, 1 to 100).
    pub instance_count: Option<u32>,
    /// SageMaker's MaxPayloadInMB (1 to 100).
    pub max_payload_mb: Option<u32>,
    /// SageMaker's MaxConcurrentTransforms (0: as the model says; at most 100).
    pub max_concurrent_transforms: Option<u32>,
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

/// Why no plan could be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("cannot read price table {path}: {error}")]
    ReadPrices {
        path: String,
        #[source]
        error: std::io::Error,
    },
    /// The price table is not valid TOML (or does not have the table's shape).
    #[error("price table {origin}: (toml): {source}")]
    PricesToml {
        origin: String,
        #[source]
        source: toml::de::Error,
    },
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
            PlanError::PricesToml { .. } => Some("(toml)"),
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
    let batches = (busiest_bytes / (f64::from(workers.payload) * MIB as f64))
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

#[cfg(test)]
mod tests;
