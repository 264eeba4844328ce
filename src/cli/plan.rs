//! `c360 plan`: size a SageMaker batch transform (instance type and count, input parts,
//! concurrency, payload) for a row count, with its time and cost estimate.

use std::path::PathBuf;
use std::time::Duration;

use super::{exit, Failure};
use crate::transform::planner::{
    self, format_bytes, format_count, format_duration, format_usd, parse_duration, Pins, Plan,
    PlanError, PlannerSettings, Workload,
};

const EXAMPLES: &str = "\
Examples:
  # 10 million rows of about 30 numeric features, done within the hour
  c360 plan --rows 10000000
  #   -> one ml.m5.large, 38 input parts, MaxConcurrentTransforms 2, MaxPayloadInMB 6

  # 100 million rows in 20 minutes, next to what one ml.m5.xlarge with one input file costs
  c360 plan --rows 100M --deadline 20m --compare-default

  # A slower model (measure yours: rows scored per second per vCPU), a 2 GiB model, JSON out
  c360 plan --rows 50M --bytes 30GB --model-bytes 2GiB --rows-per-second-per-vcpu 2000 --json

  # What a job's pins cost: two ml.c5.4xlarge, 8 parts
  c360 plan --rows 100M --instance-type ml.c5.4xlarge --instance-count 2 --parts 8

The estimate: wall time = start-up (--startup, billed on every instance) + the busiest
instance's rows / (--rows-per-second-per-vcpu x the workers it keeps busy); cost = instances x price per
hour x wall time. SageMaker spreads input objects, not records, over instances, so parts
are a multiple of the instance count. The plan is the cheapest that meets --deadline
(ties: fewer instances, then the smaller type); if none does, the fastest.

Prices: the embedded table (pricing/sagemaker-transform-us-east-1.toml, on-demand us-east-1,
from third-party tables, unverified) or --prices FILE of the same shape.
--rows-per-second-per-vcpu (formerly --throughput) defaults to a conservative guess for the built-in XGBoost container on CSV: replace it with
a figure measured on your model.

Sizes take units: 250, 64MiB, 30GB, 2GiB. Counts: 10000000, 10M, 250k. Durations: 90s,
30m, 1h, 1h30m.";

/// Arguments of `c360 plan`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_long_help = EXAMPLES, after_help = "Example:\n  c360 plan --rows 100M --deadline 20m --compare-default\n\n(--help shows more)")]
pub struct PlanArgs {
    /// Rows (CSV records) to score, e.g. 10000000 or 10M.
    #[arg(long, value_name = "N", value_parser = parse_rows)]
    pub rows: u64,
    /// Size of the whole transform input [default: --rows x --row-bytes].
    #[arg(long, value_name = "B", value_parser = parse_bytes)]
    pub bytes: Option<u64>,
    /// Average size of one CSV row, used when --bytes is not given (250 is about 30 numeric
    /// features).
    #[arg(long, value_name = "B", value_parser = parse_bytes, default_value = "250", conflicts_with = "bytes")]
    pub row_bytes: u64,
    /// Size of the model artifact; each worker loads a copy, which must fit in memory
    /// (with 2x headroom). 0: unknown, not checked.
    #[arg(long, value_name = "B", value_parser = parse_bytes, default_value = "0")]
    pub model_bytes: u64,
    /// The job must finish within this, start-up included.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "1h")]
    pub deadline: Duration,
    /// Rows per second one vCPU of the model container scores (measure it on your model;
    /// `[aws.sagemaker] rows_per_second_per_vcpu` for runs). Formerly --throughput.
    #[arg(long, alias = "throughput", value_name = "ROWS_PER_SEC_PER_VCPU", default_value_t = planner::DEFAULT_ROWS_PER_SECOND_PER_VCPU, value_parser = parse_throughput)]
    pub rows_per_second_per_vcpu: f64,
    /// Instance provisioning plus container start, billed on every instance.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, default_value = "7m")]
    pub startup: Duration,
    /// Most instances to use (SageMaker allows 100; your account quota may be lower).
    #[arg(long, value_name = "N", default_value_t = planner::MAX_INSTANCES, value_parser = clap::value_parser!(u32).range(1..=i64::from(planner::MAX_INSTANCES)))]
    pub max_instances: u32,
    /// Only these instance types, comma-separated [default: every type in the price table].
    #[arg(long, value_name = "TYPES", value_delimiter = ',')]
    pub allowed_types: Option<Vec<String>>,
    /// Pin the instance type (as a job's [transform] instance_type).
    #[arg(long, value_name = "TYPE")]
    pub instance_type: Option<String>,
    /// Pin the instance count.
    #[arg(long, value_name = "N")]
    pub instance_count: Option<u32>,
    /// Pin the number of input parts.
    #[arg(long, value_name = "N")]
    pub parts: Option<u32>,
    /// Pin MaxConcurrentTransforms.
    #[arg(long, value_name = "N")]
    pub max_concurrent_transforms: Option<u32>,
    /// Pin MaxPayloadInMB.
    #[arg(long, value_name = "MB")]
    pub max_payload_mb: Option<u32>,
    /// A price table (TOML) instead of the embedded us-east-1 one.
    #[arg(long, value_name = "FILE")]
    pub prices: Option<PathBuf>,
    /// Also estimate the common default: one ml.m5.xlarge, one input file, concurrency 1.
    #[arg(long)]
    pub compare_default: bool,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(a: PlanArgs) -> Result<(), Failure> {
    let prices = planner::load_prices(a.prices.as_deref()).map_err(failure)?;
    let w = Workload {
        rows: a.rows,
        bytes: a.bytes.unwrap_or(a.rows.saturating_mul(a.row_bytes)),
        model_bytes: a.model_bytes,
    };
    let s = PlannerSettings {
        rows_per_second_per_vcpu: a.rows_per_second_per_vcpu,
        deadline: a.deadline,
        startup_seconds: a.startup.as_secs_f64(),
        max_instances: a.max_instances,
        allowed_types: a.allowed_types.clone(),
        ..Default::default()
    };
    let pins = Pins {
        instance_type: a.instance_type.clone(),
        instance_count: a.instance_count,
        parts: a.parts,
        max_concurrent_transforms: a.max_concurrent_transforms,
        max_payload_mb: a.max_payload_mb,
    };
    let plan = planner::plan(&w, &s, &pins, &prices).map_err(failure)?;
    let base = a
        .compare_default
        .then(|| planner::baseline(&w, &s, &prices));
    if a.json {
        let mut out = serde_json::json!({
            "workload": {"rows": w.rows, "bytes": w.bytes, "model_bytes": w.model_bytes},
            "settings": {
                "rows_per_second_per_vcpu": s.rows_per_second_per_vcpu,
                "deadline_seconds": s.deadline.as_secs_f64(),
                "startup_seconds": s.startup_seconds,
                "max_instances": s.max_instances,
                "target_part_bytes": s.target_part_bytes,
            },
            "prices": {
                "source": prices.source,
                "date": prices.date,
                "region": prices.region,
                "currency": prices.currency,
                "file": a.prices.as_ref().map(|p| p.display().to_string())
                    .unwrap_or_else(|| planner::DEFAULT_PRICES_PATH.to_string()),
            },
            "plan": serde_json::to_value(&plan).unwrap_or_default(),
        });
        if let Some(b) = &base {
            out["default"] = serde_json::to_value(b).unwrap_or_default();
        }
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return Ok(());
    }
    println!(
        "{} rows, {} of input, deadline {}, {} rows/s per vCPU, start-up {}",
        format_count(w.rows),
        format_bytes(w.bytes),
        format_duration(s.deadline.as_secs_f64()),
        format_count(s.rows_per_second_per_vcpu.round() as u64),
        format_duration(s.startup_seconds)
    );
    println!(
        "prices: {} {}, {} ({})",
        prices.region, prices.date, prices.source, prices.currency
    );
    println!();
    let mut rows = vec![row("plan", &plan)];
    if let Some(b) = &base {
        rows.push(row("default", b));
    }
    print_table(&rows);
    println!();
    for r in &plan.reasons {
        println!("  - {r}");
    }
    if let Some(b) = &base {
        println!();
        println!(
            "vs the default (one {}, one input file, concurrency 1): time {}, cost {}.",
            b.instance_type,
            ratio(b.est_seconds, plan.est_seconds, "faster", "slower"),
            ratio(
                b.est_cost_usd,
                plan.est_cost_usd,
                "cheaper",
                "more expensive"
            )
        );
    }
    Ok(())
}

/// `3.70x cheaper`, `1.20x slower`, `the same`.
fn ratio(default: f64, planned: f64, better: &str, worse: &str) -> String {
    if planned <= 0.0 || default <= 0.0 {
        return "the same".into();
    }
    let r = default / planned;
    if (r - 1.0).abs() < 0.005 {
        "the same".into()
    } else if r > 1.0 {
        format!("{r:.2}x {better}")
    } else {
        format!("{:.2}x {worse}", 1.0 / r)
    }
}

fn row(label: &str, p: &Plan) -> [String; 10] {
    [
        label.to_string(),
        p.instance_type.clone(),
        p.instance_count.to_string(),
        p.parts.to_string(),
        p.max_concurrent_transforms.to_string(),
        format!("{} MB", p.max_payload_mb),
        format_duration(p.est_seconds),
        format_usd(p.est_cost_usd),
        format!("{}/h", format_usd(p.usd_per_hour)),
        if p.meets_deadline { "met" } else { "MISSED" }.to_string(),
    ]
}

fn print_table(rows: &[[String; 10]]) {
    let head = [
        "",
        "type",
        "count",
        "parts",
        "concurrency",
        "payload",
        "est. time",
        "est. cost",
        "price",
        "deadline",
    ];
    let width = |i: usize| {
        rows.iter()
            .map(|r| r[i].len())
            .chain([head[i].len()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..head.len()).map(width).collect();
    let line = |cells: Vec<&str>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| {
                // Text columns left, numbers right.
                if matches!(i, 0 | 1 | 9) {
                    format!("{c:<w$}", w = widths[i])
                } else {
                    format!("{c:>w$}", w = widths[i])
                }
            })
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    println!("{}", line(head.to_vec()));
    for r in rows {
        println!("{}", line(r.iter().map(String::as_str).collect()));
    }
}

fn failure(e: PlanError) -> Failure {
    let code = match e {
        // Pins and settings come from the command line.
        PlanError::Pin { .. } | PlanError::Settings { .. } | PlanError::NoFeasibleType { .. } => {
            exit::USAGE
        }
        PlanError::Prices { .. } | PlanError::PricesToml { .. } => exit::INVALID_DEFINITION,
        PlanError::ReadPrices { .. } => exit::FAILURE,
    };
    Failure {
        code,
        error: e.into(),
    }
}

/// The most rows `plan` sizes (10^13, far past any batch transform).
const MAX_ROWS: u64 = 10_000_000_000_000;

/// `--rows`: a count up to [`MAX_ROWS`].
fn parse_rows(s: &str) -> Result<u64, String> {
    let n = parse_count(s)?;
    if n > MAX_ROWS {
        return Err(format!(
            "{n} is out of range: the allowed range is 0 to {MAX_ROWS}"
        ));
    }
    Ok(n)
}

/// `--rows-per-second-per-vcpu`: rows per second per vCPU, more than 0 and at most 10^9.
fn parse_throughput(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if x > 0.0 && x <= 1e9 => Ok(x),
        _ => Err(format!(
            "{s:?} is out of range: a number of rows per second above 0 and at most 1000000000"
        )),
    }
}

/// A count: `10000000`, `10_000_000`, `10,000,000`, `10M`, `2.5M`, `250k`, `1G`.
fn parse_count(s: &str) -> Result<u64, String> {
    let t: String = s
        .trim()
        .chars()
        .filter(|c| *c != '_' && *c != ',')
        .collect();
    let (num, mult) = match t.char_indices().last() {
        Some((i, 'k' | 'K')) => (&t[..i], 1e3),
        Some((i, 'M')) => (&t[..i], 1e6),
        Some((i, 'G' | 'B')) => (&t[..i], 1e9),
        _ => (t.as_str(), 1.0),
    };
    if mult == 1.0 {
        return num
            .parse::<u64>()
            .map_err(|_| format!("{s:?} is not a count (e.g. 10000000, 10M, 250k)"));
    }
    let x: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a count (e.g. 10000000, 10M, 250k)"))?;
    let v = x * mult;
    if !(v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v <= u64::MAX as f64) {
        return Err(format!("{s:?} is not a whole count"));
    }
    Ok(v as u64)
}

/// A size: `250`, `250B`, `64MiB`, `1.5GiB`, `30GB`, `500kB`, `2T`.
fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '_'))
        .unwrap_or(t.len());
    let (num, unit) = (t[..split].replace('_', ""), t[split..].trim());
    let mult: f64 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "kib" => 1024.0,
        "mib" => 1_048_576.0,
        "gib" => 1_073_741_824.0,
        "tib" => 1_099_511_627_776.0,
        _ => {
            return Err(format!(
                "{s:?}: unknown unit {unit:?} (B, kB, MB, GB, TB, KiB, MiB, GiB, TiB)"
            ))
        }
    };
    let x: f64 = num
        .parse()
        .map_err(|_| format!("{s:?} is not a size (e.g. 250, 64MiB, 30GB)"))?;
    let v = (x * mult).round();
    if !(v.is_finite() && v >= 0.0 && v <= u64::MAX as f64) {
        return Err(format!("{s:?} is out of range"));
    }
    Ok(v as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_sizes_and_durations_parse() {
        assert_eq!(parse_count("10000000"), Ok(10_000_000));
        assert_eq!(parse_count("10_000_000"), Ok(10_000_000));
        assert_eq!(parse_count("10M"), Ok(10_000_000));
        assert_eq!(parse_count("2.5M"), Ok(2_500_000));
        assert_eq!(parse_count("250k"), Ok(250_000));
        assert!(parse_count("1.5").is_err());
        assert!(parse_count("-3").is_err());
        assert!(parse_count("ten").is_err());

        assert_eq!(parse_bytes("250"), Ok(250));
        assert_eq!(parse_bytes("64MiB"), Ok(64 << 20));
        assert_eq!(parse_bytes("30GB"), Ok(30_000_000_000));
        assert_eq!(parse_bytes("1.5GiB"), Ok(1_610_612_736));
        assert_eq!(parse_bytes("2 GiB"), Ok(2 << 30));
        assert!(parse_bytes("3 furlongs").is_err());

        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("3600"), Ok(Duration::from_secs(3600)));
        assert!(parse_duration("1d").is_err());
        assert!(parse_duration("h").is_err());
        assert!(parse_duration("5m3").is_err());
    }
}
