//! The BG/NBD model (lifetimes' `BetaGeoFitter`): its objective and analytic gradient, the
//! fit, and the predictions (`p_alive`, expected purchases through the Gauss
//! hypergeometric function).

use statrs::function::gamma::{digamma, ln_gamma};

use super::fit::{check_params, minimise};
use super::{check_penalizer, BgNbdParams, BtydData, ClvError, Fit, FitOptions};
use super::{HYP2F1_MAX_TERMS, MIN_CUSTOMERS};

/// The BG/NBD objective of lifetimes (`BetaGeoFitter._negative_log_likelihood`) and its
/// gradient with respect to the log-parameters `[ln r, ln alpha, ln a, ln b]`, on the time
/// unit of `rec` and `t`.
pub fn bg_nbd_objective(
    log_params: &[f64],
    x: &[f64],
    rec: &[f64],
    t: &[f64],
    penalizer: f64,
) -> (f64, [f64; 4]) {
    if log_params.len() != 4 || rec.len() != x.len() || t.len() != x.len() {
        return (f64::NAN, [f64::NAN; 4]);
    }
    let p = [
        log_params[0].exp(),
        log_params[1].exp(),
        log_params[2].exp(),
        log_params[3].exp(),
    ];
    let [r, alpha, a, b] = p;
    let (lg_r, lg_b, lg_ab) = (ln_gamma(r), ln_gamma(b), ln_gamma(a + b));
    let (dg_r, dg_b, dg_ab) = (digamma(r), digamma(b), digamma(a + b));
    let ln_alpha = alpha.ln();
    let mut ll = 0.0;
    let mut g = [0.0f64; 4]; // d ll / d (r, alpha, a, b)
    for i in 0..x.len() {
        let (xi, ri, ti) = (x[i], rec[i], t[i]);
        let a1 = ln_gamma(r + xi) - lg_r + r * ln_alpha;
        let a2 = lg_ab + ln_gamma(b + xi) - lg_b - ln_gamma(a + b + xi);
        let ln_at = (alpha + ti).ln();
        let ln_ar = (ri + alpha).ln();
        let a3 = -(r + xi) * ln_at;
        let a4 = a.ln() - (b + xi.max(1.0) - 1.0).ln() - (r + xi) * ln_ar;
        let m = a3.max(a4);
        let on = if xi > 0.0 { 1.0 } else { 0.0 };
        let e3 = (a3 - m).exp();
        let e4 = (a4 - m).exp() * on;
        ll += a1 + a2 + (e3 + e4).ln() + m;
        let w3 = e3 / (e3 + e4);
        let w4 = e4 / (e3 + e4);
        g[0] += digamma(r + xi) - dg_r + ln_alpha - w3 * ln_at - w4 * ln_ar;
        g[1] += r / alpha - w3 * (r + xi) / (alpha + ti) - w4 * (r + xi) / (ri + alpha);
        g[2] += dg_ab - digamma(a + b + xi) + w4 / a;
        g[3] += dg_ab + digamma(b + xi) - dg_b - digamma(a + b + xi) - w4 / (b + xi.max(1.0) - 1.0);
    }
    let n = x.len() as f64;
    let penalty: f64 = p.iter().map(|v| v * v).sum::<f64>() * penalizer;
    let value = -ll / n + penalty;
    let mut grad = [0.0; 4];
    for j in 0..4 {
        grad[j] = p[j] * (-g[j] / n + 2.0 * penalizer * p[j]);
    }
    (value, grad)
}

/// Fits BG/NBD on `frequency`, `recency` and `T` (days) as lifetimes' `BetaGeoFitter.fit`.
pub fn fit_bg_nbd(data: &BtydData, opts: &FitOptions) -> Result<Fit<BgNbdParams>, ClvError> {
    const MODEL: &str = "bg_nbd";
    check_penalizer(opts.penalizer)?;
    data.check()?;
    let n = data.len();
    if n < MIN_CUSTOMERS {
        return Err(ClvError::Degenerate {
            model: MODEL,
            reason: format!(
                "{n} customer(s) with a purchase; a fit needs at least {MIN_CUSTOMERS}"
            ),
        });
    }
    if !data.frequency.iter().any(|&x| x > 0.0) {
        return Err(ClvError::Degenerate {
            model: MODEL,
            reason: format!("none of the {n} customers has a repeat purchase (frequency > 0): the dropout parameters a and b cannot be estimated"),
        });
    }
    let max_t = data.t.iter().cloned().fold(0.0f64, f64::max);
    if max_t <= 0.0 {
        return Err(ClvError::Degenerate {
            model: MODEL,
            reason: "every customer has T = 0 (first purchase on the as-of date): pick a later as-of date".into(),
        });
    }
    // lifetimes' _scale_time: the largest age becomes 1.
    let scale = 1.0 / max_t;
    let x = &data.frequency;
    let rec: Vec<f64> = data.recency.iter().map(|v| v * scale).collect();
    let t: Vec<f64> = data.t.iter().map(|v| v * scale).collect();
    let f = |p: &[f64]| {
        let (v, g) = bg_nbd_objective(p, x, &rec, &t, opts.penalizer);
        (v, g.to_vec())
    };
    let (theta, objective, iterations) = minimise(MODEL, 4, &f)?;
    let params = BgNbdParams {
        r: theta[0].exp(),
        alpha: theta[1].exp() / scale,
        a: theta[2].exp(),
        b: theta[3].exp(),
    };
    check_params(MODEL, &[params.r, params.alpha, params.a, params.b])?;
    Ok(Fit {
        params,
        objective,
        customers: n,
        iterations,
    })
}

impl BgNbdParams {
    /// lifetimes' `conditional_probability_alive` (1 for frequency 0).
    pub fn p_alive(&self, frequency: f64, recency: f64, t: f64) -> f64 {
        if frequency == 0.0 {
            return 1.0;
        }
        let BgNbdParams { r, alpha, a, b } = *self;
        let log_div = (r + frequency) * ((alpha + t) / (alpha + recency)).ln()
            + (a / (b + frequency.max(1.0) - 1.0)).ln();
        // scipy's expit(-log_div)
        1.0 / (1.0 + log_div.exp())
    }

    /// lifetimes' `conditional_expected_number_of_purchases_up_to_time(horizon)`: the expected
    /// repeat purchases in the `horizon` days after the as-of date (equation 10 of Fader, Hardie
    /// and Lee 2005), with lifetimes' fallback for 2F1 when the direct evaluation overflows.
    pub fn expected_purchases(&self, horizon: f64, frequency: f64, recency: f64, t: f64) -> f64 {
        let BgNbdParams { r, alpha, a, b } = *self;
        let x = frequency;
        let (ha, hb, hc) = (r + x, b + x, a + b + x - 1.0);
        let z = horizon / (alpha + t + horizon);
        let mut ln_hyp = hyp2f1(ha, hb, hc, z).ln();
        if !ln_hyp.is_finite() {
            // 2F1(a,b;c;z) = (1-z)^(c-a-b) 2F1(c-a,c-b;c;z) (Euler), as lifetimes falls back.
            ln_hyp = hyp2f1(hc - ha, hc - hb, hc, z).ln() + (hc - ha - hb) * (1.0 - z).ln();
        }
        let first = (a + b + x - 1.0) / (a - 1.0);
        let second = 1.0 - (ln_hyp + (r + x) * ((alpha + t) / (alpha + horizon + t)).ln()).exp();
        let denominator = if x > 0.0 {
            1.0 + (a / (b + x - 1.0)) * ((alpha + t) / (alpha + recency)).powf(r + x)
        } else {
            1.0
        };
        first * second / denominator
    }
}

/// The Gauss hypergeometric function 2F1(a, b; c; z) for real arguments and 0 <= z < 1 (what
/// the BG/NBD prediction needs; lifetimes calls scipy's `hyp2f1`), by its power series
/// `sum_k (a)_k (b)_k / ((c)_k k!) z^k`. No crate on crates.io provides a maintained real
/// 2F1, and this formula is the product, so it lives here.
///
/// The sum stops once the remaining tail is provably below 1e-17 of the sum: the next term
/// ratio `rho` no longer grows past `max(rho, z) < 1`, so the tail is at most
/// `|term| * rho / (1 - rho)`. It returns infinity when the terms overflow (lifetimes then
/// uses Euler's transformation, see [`BgNbdParams::expected_purchases`]) and NaN outside the
/// domain or when the series has not converged in a few million terms.
pub fn hyp2f1(a: f64, b: f64, c: f64, z: f64) -> f64 {
    if !(a.is_finite() && b.is_finite() && c.is_finite() && (0.0..1.0).contains(&z)) {
        return f64::NAN;
    }
    if c <= 0.0 && c.fract() == 0.0 {
        return f64::NAN; // a pole of 2F1
    }
    if z == 0.0 || a == 0.0 || b == 0.0 {
        return 1.0;
    }
    let mut sum = 1.0f64;
    let mut term = 1.0f64;
    let mut prev_ratio = f64::INFINITY;
    for k in 0..HYP2F1_MAX_TERMS {
        let kf = k as f64;
        let ratio = (a + kf) * (b + kf) / ((c + kf) * (kf + 1.0)) * z;
        term *= ratio;
        sum += term;
        if !sum.is_finite() {
            return sum;
        }
        if term == 0.0 {
            return sum; // a or b a non-positive integer: a polynomial
        }
        let rho = ratio.abs().max(z);
        if k >= 1 && ratio.abs() <= prev_ratio.max(z) && rho < 1.0 {
            let tail = term.abs() * rho / (1.0 - rho);
            if tail <= 1e-17 * sum.abs() {
                return sum;
            }
        }
        prev_ratio = ratio.abs();
    }
    f64::NAN
}
