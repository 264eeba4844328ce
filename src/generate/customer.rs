//! The simulation of one customer: its profile, orders, interactions and support tickets.
//!
//! Each customer draws from its own random stream, seeded by (seed, customer index), so a
//! customer's rows do not depend on which chunk or thread simulated it. The order of the
//! draws is part of the output: changing it changes every generated table for every seed.

use chrono::Datelike;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp, Gamma, LogNormal};
use rand_pcg::Pcg64Mcg;

use super::rows::{Batch, InteractionRows};
use super::GenConfig;
use crate::names::AsOf;

const MICROS_PER_DAY: i64 = 86_400_000_000;
const COUNTRIES: &[&str] = &["US", "GB", "DE", "FR", "NL", "ES", "IT", "SE", "PL", "CA"];
const CHANNELS: &[&str] = &["web", "store", "app"];
const CATEGORIES: &[&str] = &["billing", "delivery", "product", "account"];

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

fn epoch_day(d: chrono::NaiveDate) -> i64 {
    AsOf::from(d).day_number() as i64
}

/// A random instant within day `day`.
fn at(rng: &mut Pcg64Mcg, day: i64) -> i64 {
    day * MICROS_PER_DAY + rng.gen_range(0..MICROS_PER_DAY / 1_000_000) * 1_000_000
}

/// Simulates customer `i` (0-based) and appends its rows to `ch`. Every draw comes from
/// the customer's own stream, so the rows depend on (seed, i) only.
pub(crate) fn customer(cfg: &GenConfig, i: u32, ch: &mut Batch) {
    let mut rng = Pcg64Mcg::seed_from_u64(
        cfg.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
            ^ u64::from(i).wrapping_mul(0xD1B5_4A32_D192_ED03),
    );
    let start = epoch_day(cfg.start);
    let end = epoch_day(cfg.end);
    let span = (end - start).max(1);
    // Sign-ups spread over the period, a little denser later (growth).
    let u: f64 = rng.gen::<f64>().sqrt();
    let signup = start + ((span as f64) * u) as i64;
    let business = rng.gen_bool(0.2);
    let opt_in = rng.gen_bool(0.7);
    ch.customers.idx.push(i);
    ch.customers.signup.push(at(&mut rng, signup));
    ch.customers.country.push(if rng.gen_bool(0.97) {
        Some(COUNTRIES[rng.gen_range(0..COUNTRIES.len())])
    } else {
        None
    });
    ch.customers
        .segment
        .push(Some(if business { "business" } else { "consumer" }));
    ch.customers.email.push(rng.gen_bool(0.95));
    ch.customers.opt_in.push(if rng.gen_bool(0.98) {
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
            let o = &mut ch.orders;
            o.cust.push(i);
            o.n.push(n);
            o.ts.push(ts);
            o.amount.push((amount * 100.0).round() / 100.0);
            o.status.push(status);
            o.channel.push(if rng.gen_bool(0.98) {
                Some(CHANNELS[rng.gen_range(0..CHANNELS.len())])
            } else {
                None
            });
            // Same-day repeat orders happen.
            if rng.gen_bool(0.03) {
                n += 1;
                let ts = at(&mut rng, day);
                let amount = spend.map(|s| s.sample(&mut rng)).unwrap_or(20.0);
                let o = &mut ch.orders;
                o.cust.push(i);
                o.n.push(n);
                o.ts.push(ts);
                o.amount.push((amount * 50.0).round() / 100.0);
                o.status.push("completed");
                o.channel.push(Some("web"));
            }
        }
    }

    // Web visits and app logins: engagement that fades before churn and stops after it.
    let visit_rate = 0.02 + rate * 2.0;
    let app_user = rng.gen_bool(0.35);
    let emit_process =
        |rng: &mut Pcg64Mcg, rate: f64, kind: &'static str, ch: &mut InteractionRows| {
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
                    ch.cust.push(i);
                    ch.ts.push(at(rng, day));
                    ch.kind.push(kind);
                }
            }
        };
    emit_process(&mut rng, visit_rate, "web_visit", &mut ch.interactions);
    if app_user {
        emit_process(&mut rng, 0.03 + rate, "app_login", &mut ch.interactions);
    }

    // Marketing email every four weeks to opted-in customers, churned or not.
    if opt_in {
        let mut day = signup + rng.gen_range(1..28);
        let base_open = rng.gen_range(0.15..0.55);
        let mut unsubscribed = false;
        let ch = &mut ch.interactions;
        while day <= end && !unsubscribed {
            ch.cust.push(i);
            ch.ts.push(at(&mut rng, day));
            ch.kind.push("email_sent");
            let p_open = if day > churn_day {
                0.03
            } else {
                base_open * (1.0 - 0.8 * fade(day))
            };
            if rng.gen::<f64>() < p_open {
                let open_day = (day + rng.gen_range(0..3)).min(end);
                ch.cust.push(i);
                ch.ts.push(at(&mut rng, open_day));
                ch.kind.push("email_open");
                if rng.gen_bool(0.25) {
                    ch.cust.push(i);
                    ch.ts.push(at(&mut rng, open_day));
                    ch.kind.push("email_click");
                }
            }
            let p_unsub = if day > churn_day { 0.04 } else { 0.002 };
            if rng.gen::<f64>() < p_unsub {
                ch.cust.push(i);
                ch.ts.push(at(&mut rng, day));
                ch.kind.push("unsubscribe");
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
        let category = if rng.gen_bool(0.95) {
            Some(CATEGORIES[rng.gen_range(0..CATEGORIES.len())])
        } else {
            None
        };
        let t = &mut ch.tickets;
        t.cust.push(i);
        t.n.push(n);
        t.opened.push(opened);
        t.resolved.push(resolved);
        t.category.push(category);
        t.csat.push(csat);
    }
}
