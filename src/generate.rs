//! Synthetic Customer 360 data in which churn is real behaviour, for demos, tests and
//! benchmarks. Deterministic for a seed: each customer draws from its own random stream
//! (seeded by the seed and its index), so the output is the same whatever the thread count.
//!
//! Each customer has a latent purchase rate and a latent churn hazard. A churner's orders
//! stop at its churn date; in the months before it, visits and email opens fade while
//! support tickets (and low satisfaction) rise. Orders follow a yearly season (a November
//! and December peak, a summer dip); some orders are returned or cancelled; about one
//! customer in ten never orders; sign-ups continue to the end of the period.

use std::path::Path;

use crate::names::AsOf;
use chrono::{Datelike, NaiveDate};
use polars::prelude::*;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp, Gamma, LogNormal};
use rand_pcg::Pcg64Mcg;
use rayon::prelude::*;

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenConfig {
    pub customers: usize,
    pub seed: u64,
    /// First possible sign-up day.
    pub start: NaiveDate,
    /// Last day with data.
    pub end: NaiveDate,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            customers: 10_000,
            seed: 42,
            start: NaiveDate::from_ymd_opt(2022, 1, 1).unwrap_or_default(),
            end: NaiveDate::from_ymd_opt(2024, 12, 31).unwrap_or_default(),
        }
    }
}

/// Row counts of what was written.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GenSummary {
    pub customers: usize,
    pub orders: usize,
    pub interactions: usize,
    pub support_tickets: usize,
    pub churners: usize,
}

/// Why the generator stopped.
#[derive(Debug, thiserror::Error)]
pub enum GenError {
    /// A file or folder could not be created, written or renamed.
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// polars could not build a table or write it as Parquet.
    #[error("cannot write {path}: {source}")]
    Parquet {
        path: String,
        #[source]
        source: PolarsError,
    },
    #[error("invalid generator settings: {0}")]
    Config(String),
}

const MICROS_PER_DAY: i64 = 86_400_000_000;
/// The longest period generated (20 years).
pub const MAX_SPAN_DAYS: i64 = 7_305;
/// The most customers generated (about 1 GB of memory per million).
pub const MAX_CUSTOMERS: usize = 10_000_000;
const COUNTRIES: &[&str] = &["US", "GB", "DE", "FR", "NL", "ES", "IT", "SE", "PL", "CA"];
const CHANNELS: &[&str] = &["web", "store", "app"];
const CATEGORIES: &[&str] = &["billing", "delivery", "product", "account"];

#[derive(Default)]
struct Chunk {
    c_id: Vec<String>,
    c_signup: Vec<i64>,
    c_country: Vec<Option<&'static str>>,
    c_segment: Vec<Option<&'static str>>,
    c_email: Vec<Option<String>>,
    c_opt_in: Vec<Option<bool>>,
    o_id: Vec<String>,
    o_cust: Vec<String>,
    o_ts: Vec<i64>,
    o_amount: Vec<f64>,
    o_status: Vec<&'static str>,
    o_channel: Vec<Option<&'static str>>,
    i_cust: Vec<String>,
    i_ts: Vec<i64>,
    i_type: Vec<&'static str>,
    t_id: Vec<String>,
    t_cust: Vec<String>,
    t_opened: Vec<i64>,
    t_resolved: Vec<Option<i64>>,
    t_category: Vec<Option<&'static str>>,
    t_csat: Vec<Option<i64>>,
    churners: usize,
}

/// Seasonal multiplier of the purchase rate on a day.
fn season(day: i64) -> f64 {
    let d = AsOf::from_day_number(day as i32).date();
    match d.month() {
        11 => 1.4,
        12 => 1.7,
        6..=8 => 0.8,
        _ => 1.0,
    }
}

fn epoch_day(d: NaiveDate) -> i64 {
    AsOf::from(d).day_number() as i64
}

/// A random instant within day `day`.
fn at(rng: &mut Pcg64Mcg, day: i64) -> i64 {
    day * MICROS_PER_DAY + rng.gen_range(0..MICROS_PER_DAY / 1_000_000) * 1_000_000
}

fn customer(cfg: &GenConfig, i: usize, ch: &mut Chunk) {
    let mut rng = Pcg64Mcg::seed_from_u64(
        cfg.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ (i as u64).wrapping_mul(0xD1B5_4A32_D192_ED03),
    );
    let start = epoch_day(cfg.start);
    let end = epoch_day(cfg.end);
    let span = (end - start).max(1);
    let id = format!("C{:07}", i + 1);
    // Sign-ups spread over the period, a little denser later (growth).
    let u: f64 = rng.gen::<f64>().sqrt();
    let signup = start + ((span as f64) * u) as i64;
    let business = rng.gen_bool(0.2);
    let opt_in = rng.gen_bool(0.7);
    ch.c_id.push(id.clone());
    ch.c_signup.push(at(&mut rng, signup));
    ch.c_country.push(if rng.gen_bool(0.97) {
        Some(COUNTRIES[rng.gen_range(0..COUNTRIES.len())])
    } else {
        None
    });
    ch.c_segment
        .push(Some(if business { "business" } else { "consumer" }));
    ch.c_email.push(if rng.gen_bool(0.95) {
        Some(format!("customer{}@example.com", i + 1))
    } else {
        None
    });
    ch.c_opt_in.push(if rng.gen_bool(0.98) {
        Some(opt_in)
    } else {
        None
    });

    // Latent behaviour.
    let never_orders = rng.gen_bool(0.1);
    let rate_mean = if business { 1.0 / 18.0 } else { 1.0 / 30.0 };
    let rate = if never_orders {
        0.0
    } else {
        Gamma::new(1.5, rate_mean / 1.5)
            .map(|g| g.sample(&mut rng))
            .unwrap_or(rate_mean)
    };
    // Churn hazard: mean lifetime of ~500 days, varying a lot between customers.
    let hazard: f64 = Gamma::new(1.2, 1.0 / 500.0 / 1.2)
        .map(|g| g.sample(&mut rng))
        .unwrap_or(1.0 / 500.0);
    let life = Exp::new(hazard.max(1e-6))
        .map(|e| e.sample(&mut rng))
        .unwrap_or(1e9);
    let churn_day = signup + life as i64;
    let churns = churn_day <= end;
    if churns {
        ch.churners += 1;
    }
    let active_end = churn_day.min(end);
    // How far into the pre-churn fade a day is: 0 before, up to 1 at churn, 1 after.
    let fade = |day: i64| -> f64 {
        if churn_day > end + 120 {
            return 0.0;
        }
        let before = churn_day - day;
        if before >= 120 {
            0.0
        } else if before <= 0 {
            1.0
        } else {
            1.0 - before as f64 / 120.0
        }
    };
    let spend: Option<LogNormal<f64>> = LogNormal::new(if business { 4.6 } else { 3.9 }, 0.6).ok();

    // Orders: a seasonal Poisson process (thinning), slowing before churn.
    if rate > 0.0 {
        let max_rate = rate * 1.7;
        let exp = Exp::new(max_rate).ok();
        let mut t = signup as f64 + rng.gen::<f64>() * 3.0;
        let mut n = 0u32;
        while let Some(e) = exp {
            t += e.sample(&mut rng);
            let day = t as i64;
            if day > active_end {
                break;
            }
            let accept = rate * season(day) * (1.0 - 0.6 * fade(day)) / max_rate;
            if rng.gen::<f64>() >= accept {
                continue;
            }
            n += 1;
            let ts = at(&mut rng, day);
            let amount: f64 = spend.map(|s| s.sample(&mut rng)).unwrap_or(50.0);
            let status = match rng.gen::<f64>() {
                x if x < 0.88 => "completed",
                x if x < 0.96 => "returned",
                _ => "cancelled",
            };
            ch.o_id.push(format!("O{:07}-{n:04}", i + 1));
            ch.o_cust.push(id.clone());
            ch.o_ts.push(ts);
            ch.o_amount.push((amount * 100.0).round() / 100.0);
            ch.o_status.push(status);
            ch.o_channel.push(if rng.gen_bool(0.98) {
                Some(CHANNELS[rng.gen_range(0..CHANNELS.len())])
            } else {
                None
            });
            // Same-day repeat orders happen.
            if rng.gen_bool(0.03) {
                n += 1;
                ch.o_id.push(format!("O{:07}-{n:04}", i + 1));
                ch.o_cust.push(id.clone());
                ch.o_ts.push(at(&mut rng, day));
                ch.o_amount.push(
                    (spend.map(|s| s.sample(&mut rng)).unwrap_or(20.0) * 50.0).round() / 100.0,
                );
                ch.o_status.push("completed");
                ch.o_channel.push(Some("web"));
            }
        }
    }

    // Web visits and app logins: engagement that fades before churn and stops after it.
    let visit_rate = 0.02 + rate * 2.0;
    let app_user = rng.gen_bool(0.35);
    let emit_process = |rng: &mut Pcg64Mcg, rate: f64, kind: &'static str, ch: &mut Chunk| {
        if rate <= 0.0 {
            return;
        }
        let Ok(exp) = Exp::new(rate) else { return };
        let mut t = signup as f64;
        loop {
            t += exp.sample(rng);
            let day = t as i64;
            if day > end {
                break;
            }
            let keep = if day > churn_day {
                0.05
            } else {
                1.0 - 0.8 * fade(day)
            };
            if rng.gen::<f64>() < keep {
                ch.i_cust.push(id.clone());
                ch.i_ts.push(at(rng, day));
                ch.i_type.push(kind);
            }
        }
    };
    emit_process(&mut rng, visit_rate, "web_visit", ch);
    if app_user {
        emit_process(&mut rng, 0.03 + rate, "app_login", ch);
    }

    // Marketing email every four weeks to opted-in customers, churned or not.
    if opt_in {
        let mut day = signup + rng.gen_range(1..28);
        let base_open = rng.gen_range(0.15..0.55);
        let mut unsubscribed = false;
        while day <= end && !unsubscribed {
            ch.i_cust.push(id.clone());
            ch.i_ts.push(at(&mut rng, day));
            ch.i_type.push("email_sent");
            let p_open = if day > churn_day {
                0.03
            } else {
                base_open * (1.0 - 0.8 * fade(day))
            };
            if rng.gen::<f64>() < p_open {
                let open_day = (day + rng.gen_range(0..3)).min(end);
                ch.i_cust.push(id.clone());
                ch.i_ts.push(at(&mut rng, open_day));
                ch.i_type.push("email_open");
                if rng.gen_bool(0.25) {
                    ch.i_cust.push(id.clone());
                    ch.i_ts.push(at(&mut rng, open_day));
                    ch.i_type.push("email_click");
                }
            }
            let p_unsub = if day > churn_day { 0.04 } else { 0.002 };
            if rng.gen::<f64>() < p_unsub {
                ch.i_cust.push(id.clone());
                ch.i_ts.push(at(&mut rng, day));
                ch.i_type.push("unsubscribe");
                unsubscribed = true;
            }
            day += 28;
        }
    }

    // Support tickets: rarer for happy customers, frequent and unhappy before churn.
    let ticket_base = 1.0 / 420.0;
    let Ok(texp) = Exp::new(ticket_base * 5.0) else {
        return;
    };
    let mut t = signup as f64;
    let mut n = 0u32;
    loop {
        t += texp.sample(&mut rng);
        let day = t as i64;
        if day > end.min(churn_day + 30) {
            break;
        }
        let f = fade(day);
        if rng.gen::<f64>() >= (0.2 + 0.8 * f) {
            continue;
        }
        n += 1;
        let opened = at(&mut rng, day);
        let resolve_days = rng.gen_range(0..12);
        let resolved_day = day + resolve_days;
        let resolved = if resolved_day > end || rng.gen_bool(0.03) {
            None
        } else {
            Some(opened + resolve_days * MICROS_PER_DAY + rng.gen_range(0..3_600_000_000i64))
        };
        let csat = match resolved {
            Some(_) if rng.gen_bool(0.7) => {
                let mean = 4.3 - 2.3 * f;
                let v = (mean + rng.gen_range(-1.2..1.2)).round().clamp(1.0, 5.0);
                Some(v as i64)
            }
            _ => None,
        };
        ch.t_id.push(format!("T{:07}-{n:03}", i + 1));
        ch.t_cust.push(id.clone());
        ch.t_opened.push(opened);
        ch.t_resolved.push(resolved);
        ch.t_category.push(if rng.gen_bool(0.95) {
            Some(CATEGORIES[rng.gen_range(0..CATEGORIES.len())])
        } else {
            None
        });
        ch.t_csat.push(csat);
    }
}

fn ts_column(name: &str, v: Vec<i64>) -> PolarsResult<Column> {
    Series::new(name.into(), v)
        .cast(&DataType::Datetime(TimeUnit::Microseconds, None))
        .map(Column::from)
}

fn ts_opt_column(name: &str, v: Vec<Option<i64>>) -> PolarsResult<Column> {
    Series::new(name.into(), v)
        .cast(&DataType::Datetime(TimeUnit::Microseconds, None))
        .map(Column::from)
}

fn write(df: &mut DataFrame, path: &Path) -> Result<(), GenError> {
    let werr = |source| GenError::Write {
        path: path.display().to_string(),
        source,
    };
    let tmp = path.with_extension("parquet.tmp");
    let f = std::fs::File::create(&tmp).map_err(werr)?;
    ParquetWriter::new(f)
        .with_compression(ParquetCompression::Snappy)
        .with_row_group_size(Some(1_000_000))
        .finish(df)
        .map_err(|source| GenError::Parquet {
            path: path.display().to_string(),
            source,
        })?;
    std::fs::rename(&tmp, path).map_err(werr)
}

/// Generates the four tables as Parquet files in `out`. `progress` is told how many
/// customers are done.
pub fn generate(
    cfg: &GenConfig,
    out: &Path,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<GenSummary, GenError> {
    if cfg.customers == 0 {
        return Err(GenError::Config("--customers must be at least 1".into()));
    }
    if cfg.end <= cfg.start {
        return Err(GenError::Config(
            "the end date must be after the start date".into(),
        ));
    }
    // Every customer is simulated day by day over the period: bound it, and keep every
    // day number far inside the calendar's range.
    let (lo, hi) = (
        NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default(),
        NaiveDate::from_ymd_opt(2199, 12, 31).unwrap_or_default(),
    );
    for (flag, d) in [("--start", cfg.start), ("--end", cfg.end)] {
        if d < lo || d > hi {
            return Err(GenError::Config(format!(
                "{flag} {d} is out of range: the allowed range is {lo} to {hi}"
            )));
        }
    }
    if (cfg.end - cfg.start).num_days() > MAX_SPAN_DAYS {
        return Err(GenError::Config(format!(
            "--start {} to --end {} is more than {MAX_SPAN_DAYS} days (20 years): generate a shorter period",
            cfg.start, cfg.end
        )));
    }
    if cfg.customers > MAX_CUSTOMERS {
        return Err(GenError::Config(format!(
            "--customers {} is out of range: the allowed range is 1 to {MAX_CUSTOMERS}",
            cfg.customers
        )));
    }
    std::fs::create_dir_all(out).map_err(|source| GenError::Write {
        path: out.display().to_string(),
        source,
    })?;
    const CHUNK: usize = 4096;
    let n_chunks = cfg.customers.div_ceil(CHUNK);
    let chunks: Vec<Chunk> = (0..n_chunks)
        .into_par_iter()
        .map(|c| {
            let mut ch = Chunk::default();
            let lo = c * CHUNK;
            let hi = (lo + CHUNK).min(cfg.customers);
            for i in lo..hi {
                customer(cfg, i, &mut ch);
            }
            progress((hi - lo) as u64);
            ch
        })
        .collect();
    let mut all = Chunk::default();
    for mut c in chunks {
        all.c_id.append(&mut c.c_id);
        all.c_signup.append(&mut c.c_signup);
        all.c_country.append(&mut c.c_country);
        all.c_segment.append(&mut c.c_segment);
        all.c_email.append(&mut c.c_email);
        all.c_opt_in.append(&mut c.c_opt_in);
        all.o_id.append(&mut c.o_id);
        all.o_cust.append(&mut c.o_cust);
        all.o_ts.append(&mut c.o_ts);
        all.o_amount.append(&mut c.o_amount);
        all.o_status.append(&mut c.o_status);
        all.o_channel.append(&mut c.o_channel);
        all.i_cust.append(&mut c.i_cust);
        all.i_ts.append(&mut c.i_ts);
        all.i_type.append(&mut c.i_type);
        all.t_id.append(&mut c.t_id);
        all.t_cust.append(&mut c.t_cust);
        all.t_opened.append(&mut c.t_opened);
        all.t_resolved.append(&mut c.t_resolved);
        all.t_category.append(&mut c.t_category);
        all.t_csat.append(&mut c.t_csat);
        all.churners += c.churners;
    }
    let summary = GenSummary {
        customers: all.c_id.len(),
        orders: all.o_id.len(),
        interactions: all.i_cust.len(),
        support_tickets: all.t_id.len(),
        churners: all.churners,
    };
    let pe = |source: PolarsError| GenError::Parquet {
        path: out.display().to_string(),
        source,
    };
    let a = all;
    let (co, it) = rayon::join(
        || -> PolarsResult<(DataFrame, DataFrame)> {
            let c = DataFrame::new_infer_height(vec![
                Column::new("customer_id".into(), a.c_id),
                ts_column("signup_ts", a.c_signup)?,
                Column::new("country".into(), a.c_country),
                Column::new("segment".into(), a.c_segment),
                Column::new("email".into(), a.c_email),
                Column::new("email_opt_in".into(), a.c_opt_in),
            ])?;
            let o = DataFrame::new_infer_height(vec![
                Column::new("order_id".into(), a.o_id),
                Column::new("customer_id".into(), a.o_cust),
                ts_column("order_ts", a.o_ts)?,
                Column::new("amount".into(), a.o_amount),
                Column::new("status".into(), a.o_status),
                Column::new("channel".into(), a.o_channel),
            ])?;
            Ok((c, o))
        },
        || -> PolarsResult<(DataFrame, DataFrame)> {
            let i = DataFrame::new_infer_height(vec![
                Column::new("customer_id".into(), a.i_cust),
                ts_column("event_ts", a.i_ts)?,
                Column::new("event_type".into(), a.i_type),
            ])?;
            let t = DataFrame::new_infer_height(vec![
                Column::new("ticket_id".into(), a.t_id),
                Column::new("customer_id".into(), a.t_cust),
                ts_column("opened_ts", a.t_opened)?,
                ts_opt_column("resolved_ts", a.t_resolved)?,
                Column::new("category".into(), a.t_category),
                Column::new("csat".into(), a.t_csat),
            ])?;
            Ok((i, t))
        },
    );
    let (mut customers, mut orders) = co.map_err(pe)?;
    let (mut interactions, mut tickets) = it.map_err(pe)?;
    let results: Vec<Result<(), GenError>> = vec![
        (&mut customers, "customers"),
        (&mut orders, "orders"),
        (&mut interactions, "interactions"),
        (&mut tickets, "support_tickets"),
    ]
    .into_par_iter()
    .map(|(df, name)| write(df, &out.join(format!("{name}.parquet"))))
    .collect();
    for r in results {
        r?;
    }
    Ok(summary)
}
