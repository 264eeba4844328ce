//! Customer lifetime value: the BG/NBD and Gamma-Gamma "buy till you die" models, exactly as
//! `lifetimes` 0.11.3 (`BetaGeoFitter`, `GammaGammaFitter`, `utils._customer_lifetime_value`)
//! defines them (shared/design/semantics.md, "Customer lifetime value (BTYD models)").
//!
//! Inputs are the `rfm` snapshot's BTYD columns, time in days: `frequency` (repeat purchase
//! days), `recency` (days from the first to the last purchase day), `T` (days from the first
//! purchase day to the as-of date) and `monetary_value` (mean spend over repeat purchase days).
//!
//! * Fitting is maximum likelihood on the log-parameters with L-BFGS (argmin, More-Thuente line
//!   search) and analytic gradients. The objective is lifetimes' own: the mean negative
//!   log-likelihood plus `penalizer * sum(params^2)`, starting from log-parameters 0.1 as
//!   lifetimes does. BG/NBD is fitted, as in lifetimes, on time scaled by `1 / max(T)` (the
//!   penalizer sees the scaled `alpha`), and `alpha` is unscaled afterwards.
//! * Gamma-Gamma is fitted over the customers with `frequency > 0` and `monetary_value > 0`.
//! * Predictions take the parameters with time in days.

use argmin::core::{CostFunction, Executor, Gradient, State, TerminationReason};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;
use serde::{Deserialize, Serialize};
use statrs::function::gamma::{digamma, ln_gamma};

/// The fewest customers a fit accepts (for Gamma-Gamma: repeat buyers with a spend).
pub const MIN_CUSTOMERS: usize = 10;
/// The optimiser's iteration budget.
pub const MAX_ITERATIONS: u64 = 1000;
/// The largest horizon predictions accept, in days (100 years).
pub const MAX_HORIZON_DAYS: f64 = 36_500.0;
/// lifetimes' starting point: every log-parameter 0.1.
const START: f64 = 0.1;
/// A fit is accepted when the gradient of the objective (on the log-parameters) is this small.
const GRADIENT_OK: f64 = 1e-5;
/// The power series of 2F1 gives up after this many terms (NaN).
const HYP2F1_MAX_TERMS: usize = 5_000_000;

/// Why a CLV model could not be fitted or evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClvError {
    /// A value lifetimes would refuse (or that makes no sense as a BTYD summary).
    #[error("{column} of customer {customer} is {value}: {reason}")]
    BadValue {
        column: &'static str,
        customer: String,
        value: f64,
        reason: String,
    },
    /// The columns have different lengths.
    #[error("the BTYD columns have different lengths ({0})")]
    Shape(String),
    /// Not enough (or not the right) customers to identify the model.
    #[error("{model}: {reason}")]
    Degenerate { model: &'static str, reason: String },
    /// The optimiser stopped without reaching the optimum.
    #[error("{model}: the maximum-likelihood fit did not converge ({reason}); try a small --penalizer such as 0.001, or check the data")]
    NoConvergence { model: &'static str, reason: String },
    /// A setting out of range (horizon, discount rate, penalizer).
    #[error("{key} = {value}: {reason}")]
    Setting {
        key: &'static str,
        value: f64,
        reason: String,
    },
}

/// BG/NBD parameters, lifetimes' names; `alpha` in days.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BgNbdParams {
    pub r: f64,
    pub alpha: f64,
    pub a: f64,
    pub b: f64,
}

/// Gamma-Gamma parameters, lifetimes' names.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GammaGammaParams {
    pub p: f64,
    pub q: f64,
    pub v: f64,
}

/// The BTYD summary of a set of customers (one entry per customer, time in days).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BtydData {
    /// For messages only.
    pub customer_id: Vec<String>,
    pub frequency: Vec<f64>,
    pub recency: Vec<f64>,
    pub t: Vec<f64>,
    pub monetary_value: Vec<f64>,
}

impl BtydData {
    /// How many customers.
    pub fn len(&self) -> usize {
        self.frequency.len()
    }

    /// No customers.
    pub fn is_empty(&self) -> bool {
        self.frequency.is_empty()
    }

    fn customer(&self, i: usize) -> String {
        self.customer_id
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("#{}", i + 1))
    }

    /// lifetimes' `_check_inputs`, plus what it lets through and the math cannot take
    /// (NaN, infinities, negative frequency or T, negative spend).
    pub fn check(&self) -> Result<(), ClvError> {
        let n = self.len();
        if self.recency.len() != n
            || self.t.len() != n
            || self.monetary_value.len() != n
            || (!self.customer_id.is_empty() && self.customer_id.len() != n)
        {
            return Err(ClvError::Shape(format!(
                "customer_id {}, frequency {n}, recency {}, T {}, monetary_value {}",
                self.customer_id.len(),
                self.recency.len(),
                self.t.len(),
                self.monetary_value.len()
            )));
        }
        let bad = |column: &'static str, i: usize, value: f64, reason: &str| ClvError::BadValue {
            column,
            customer: self.customer(i),
            value,
            reason: reason.to_string(),
        };
        for i in 0..n {
            let (x, rec, t, m) = (
                self.frequency[i],
                self.recency[i],
                self.t[i],
                self.monetary_value[i],
            );
            for (col, v) in [
                ("frequency", x),
                ("recency", rec),
                ("T", t),
                ("monetary_value", m),
            ] {
                if !v.is_finite() {
                    return Err(bad(col, i, v, "not a finite number (a customer without a purchase has no BTYD summary: leave them out)"));
                }
            }
            if x < 0.0 || x.fract() != 0.0 {
                return Err(bad(
                    "frequency",
                    i,
                    x,
                    "must be a whole number of repeat purchases, 0 or more",
                ));
            }
            if rec < 0.0 {
                return Err(bad(
                    "recency",
                    i,
                    rec,
                    "must not be negative (last purchase before the first)",
                ));
            }
            if rec > t {
                return Err(bad("recency", i, rec, &format!("must not exceed T ({t})")));
            }
            if x == 0.0 && rec != 0.0 {
                return Err(bad("recency", i, rec, "must be 0 when frequency is 0"));
            }
            if m < 0.0 {
                return Err(bad("monetary_value", i, m, "must not be negative"));
            }
        }
        Ok(())
    }
}

/// Options of a fit.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FitOptions {
    /// lifetimes' `penalizer_coef`: adds `penalizer * sum(params^2)` to the mean negative
    /// log-likelihood (0 = plain maximum likelihood).
    pub penalizer: f64,
}

/// A fitted model with how the fit went.
#[derive(Debug, Clone, PartialEq)]
pub struct Fit<P> {
    pub params: P,
    /// The objective at the optimum, as lifetimes reports it (`_negative_log_likelihood_`:
    /// mean negative log-likelihood plus the penalty; BG/NBD in scaled time).
    pub objective: f64,
    /// How many customers the fit used.
    pub customers: usize,
    /// Optimiser iterations.
    pub iterations: u64,
}

fn check_penalizer(p: f64) -> Result<(), ClvError> {
    if !(p.is_finite() && p >= 0.0) {
        return Err(ClvError::Setting {
            key: "penalizer",
            value: p,
            reason: "must be a finite number >= 0 (0 = no penalty)".into(),
        });
    }
    Ok(())
}

// ----- BG/NBD ---------------------------------------------------------------------------

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

fn finite_or_inf(v: f64) -> f64 {
    if v.is_nan() {
        f64::INFINITY
    } else {
        v
    }
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

fn check_params(model: &'static str, p: &[f64]) -> Result<(), ClvError> {
    if p.iter().all(|v| v.is_finite() && *v > 0.0) {
        Ok(())
    } else {
        Err(ClvError::NoConvergence {
            model,
            reason: format!("the parameters ran off to {p:?}"),
        })
    }
}

/// The objective as argmin sees it: value and gradient are computed together, once per point
/// (argmin asks for them separately, usually at the same point).
struct Objective<'f, F> {
    f: &'f F,
    last: std::sync::Mutex<Option<Evaluated>>,
}

/// A point with the objective's value and gradient there.
type Evaluated = (Vec<f64>, f64, Vec<f64>);

impl<F: Fn(&[f64]) -> (f64, Vec<f64>)> Objective<'_, F> {
    fn eval(&self, p: &[f64]) -> (f64, Vec<f64>) {
        if let Ok(last) = self.last.lock() {
            if let Some((q, v, g)) = last.as_ref() {
                if q.as_slice() == p {
                    return (*v, g.clone());
                }
            }
        }
        let (v, g) = (self.f)(p);
        if let Ok(mut last) = self.last.lock() {
            *last = Some((p.to_vec(), v, g.clone()));
        }
        (v, g)
    }
}

impl<F: Fn(&[f64]) -> (f64, Vec<f64>)> CostFunction for Objective<'_, F> {
    type Param = Vec<f64>;
    type Output = f64;
    fn cost(&self, p: &Vec<f64>) -> Result<f64, argmin::core::Error> {
        Ok(finite_or_inf(self.eval(p).0))
    }
}

impl<F: Fn(&[f64]) -> (f64, Vec<f64>)> Gradient for Objective<'_, F> {
    type Param = Vec<f64>;
    type Gradient = Vec<f64>;
    fn gradient(&self, p: &Vec<f64>) -> Result<Vec<f64>, argmin::core::Error> {
        Ok(self.eval(p).1)
    }
}

/// L-BFGS (More-Thuente line search) from lifetimes' start; returns the log-parameters, the
/// objective there and the iteration count, or why the optimum was not reached.
fn minimise<F: Fn(&[f64]) -> (f64, Vec<f64>)>(
    model: &'static str,
    dim: usize,
    f: &F,
) -> Result<(Vec<f64>, f64, u64), ClvError> {
    let fail = |reason: String| ClvError::NoConvergence { model, reason };
    let solver = LBFGS::new(MoreThuenteLineSearch::new(), 10)
        .with_tolerance_grad(1e-10)
        .and_then(|s| s.with_tolerance_cost(0.0))
        .map_err(|e| fail(e.to_string()))?;
    let problem = Objective {
        f,
        last: std::sync::Mutex::new(None),
    };
    let res = Executor::new(problem, solver)
        .configure(|s| s.param(vec![START; dim]).max_iters(MAX_ITERATIONS))
        .run()
        .map_err(|e| fail(e.to_string()))?;
    let state = res.state();
    let theta = state
        .get_best_param()
        .cloned()
        .ok_or_else(|| fail("no parameters".into()))?;
    let (value, g) = f(&theta);
    let gmax = g.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    if !(gmax <= GRADIENT_OK && value.is_finite()) {
        let why = match state.get_termination_reason() {
            Some(TerminationReason::MaxItersReached) => {
                format!("{MAX_ITERATIONS} iterations")
            }
            Some(r) => r.text().to_string(),
            None => "stopped".into(),
        };
        return Err(fail(format!(
            "{why}; the gradient is still {gmax:.3e} at the best point"
        )));
    }
    Ok((theta, value, state.get_iter()))
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

// ----- Gamma-Gamma ------------------------------------------------------------------------

/// The Gamma-Gamma objective of lifetimes (`GammaGammaFitter._negative_log_likelihood`) and its
/// gradient with respect to `[ln p, ln q, ln v]`.
pub fn gamma_gamma_objective(
    log_params: &[f64],
    x: &[f64],
    m: &[f64],
    penalizer: f64,
) -> (f64, [f64; 3]) {
    if log_params.len() != 3 || m.len() != x.len() {
        return (f64::NAN, [f64::NAN; 3]);
    }
    let pv = [
        log_params[0].exp(),
        log_params[1].exp(),
        log_params[2].exp(),
    ];
    let [p, q, v] = pv;
    let (lg_q, dg_q, ln_v) = (ln_gamma(q), digamma(q), v.ln());
    let mut ll = 0.0;
    let mut g = [0.0f64; 3];
    for i in 0..x.len() {
        let (xi, mi) = (x[i], m[i]);
        let px = p * xi;
        let ln_xmv = (xi * mi + v).ln();
        let (ln_m, ln_x) = (mi.ln(), xi.ln());
        ll += ln_gamma(px + q) - ln_gamma(px) - lg_q + q * ln_v + (px - 1.0) * ln_m + px * ln_x
            - (px + q) * ln_xmv;
        let dg_pxq = digamma(px + q);
        g[0] += xi * (dg_pxq - digamma(px) + ln_m + ln_x - ln_xmv);
        g[1] += dg_pxq - dg_q + ln_v - ln_xmv;
        g[2] += q / v - (px + q) / (xi * mi + v);
    }
    let n = x.len() as f64;
    let penalty: f64 = pv.iter().map(|v| v * v).sum::<f64>() * penalizer;
    let value = -ll / n + penalty;
    let mut grad = [0.0; 3];
    for j in 0..3 {
        grad[j] = pv[j] * (-g[j] / n + 2.0 * penalizer * pv[j]);
    }
    (value, grad)
}

/// Fits Gamma-Gamma as lifetimes' `GammaGammaFitter.fit`, over the customers with
/// `frequency > 0` and `monetary_value > 0` (the others are left out, as the standard tools do).
pub fn fit_gamma_gamma(
    data: &BtydData,
    opts: &FitOptions,
) -> Result<Fit<GammaGammaParams>, ClvError> {
    const MODEL: &str = "gamma_gamma";
    check_penalizer(opts.penalizer)?;
    data.check()?;
    let (mut x, mut m) = (Vec::new(), Vec::new());
    for i in 0..data.len() {
        if data.frequency[i] > 0.0 && data.monetary_value[i] > 0.0 {
            x.push(data.frequency[i]);
            m.push(data.monetary_value[i]);
        }
    }
    if x.len() < MIN_CUSTOMERS {
        return Err(ClvError::Degenerate {
            model: MODEL,
            reason: format!(
                "{} of the {} customers are repeat buyers with a spend (frequency > 0 and monetary_value > 0); a fit needs at least {MIN_CUSTOMERS}",
                x.len(),
                data.len()
            ),
        });
    }
    let n = x.len();
    let f = |p: &[f64]| {
        let (v, g) = gamma_gamma_objective(p, &x, &m, opts.penalizer);
        (v, g.to_vec())
    };
    let (theta, objective, iterations) = minimise(MODEL, 3, &f)?;
    let params = GammaGammaParams {
        p: theta[0].exp(),
        q: theta[1].exp(),
        v: theta[2].exp(),
    };
    check_params(MODEL, &[params.p, params.q, params.v])?;
    Ok(Fit {
        params,
        objective,
        customers: n,
        iterations,
    })
}

impl GammaGammaParams {
    /// The population mean spend per transaction, `p * v / (q - 1)` (negative or infinite when
    /// q <= 1: lifetimes' formula, unchanged).
    pub fn population_mean(&self) -> f64 {
        self.v * self.p / (self.q - 1.0)
    }

    /// lifetimes' `conditional_expected_average_profit`: a weighted mean of the customer's own
    /// mean spend and the population mean; frequency 0 gives the population mean.
    pub fn expected_average_profit(&self, frequency: f64, monetary_value: f64) -> f64 {
        let GammaGammaParams { p, q, .. } = *self;
        let w = p * frequency / (p * frequency + q - 1.0);
        (1.0 - w) * self.population_mean() + w * monetary_value
    }
}

// ----- CLV ----------------------------------------------------------------------------------

/// Checks a horizon (days) and a monthly discount rate for [`customer_lifetime_value`].
pub fn check_clv_settings(horizon_days: f64, discount_rate: f64) -> Result<(), ClvError> {
    if !(horizon_days > 0.0 && horizon_days <= MAX_HORIZON_DAYS) {
        return Err(ClvError::Setting {
            key: "horizon_days",
            value: horizon_days,
            reason: format!("must be more than 0 and at most {MAX_HORIZON_DAYS} days"),
        });
    }
    if !(discount_rate.is_finite() && discount_rate > -1.0) {
        return Err(ClvError::Setting {
            key: "discount_rate",
            value: discount_rate,
            reason: "must be a finite monthly rate above -1 (0.01 = 1% a month)".into(),
        });
    }
    Ok(())
}

/// How many 30-day months lifetimes sums for a horizon of `horizon_days` days: the length of
/// numpy's `arange(1, time + 1)` with `time = horizon_days / 30`, i.e. the horizon rounded up
/// to whole months (365 days are 13 months).
pub fn clv_months(horizon_days: f64) -> usize {
    let time = horizon_days / 30.0;
    (((time + 1.0) - 1.0).ceil()).max(0.0) as usize
}

/// lifetimes' `GammaGammaFitter.customer_lifetime_value(bgf, ..., time = horizon_days / 30,
/// discount_rate, freq = "D")`: for each 30-day month `k` in 1..=[`clv_months`], the expected
/// purchases in that month times the expected average profit, discounted by
/// `(1 + discount_rate)^k`. NaN when the settings fail [`check_clv_settings`].
#[allow(clippy::too_many_arguments)]
pub fn customer_lifetime_value(
    bg: &BgNbdParams,
    gg: &GammaGammaParams,
    frequency: f64,
    recency: f64,
    t: f64,
    monetary_value: f64,
    horizon_days: f64,
    discount_rate: f64,
) -> f64 {
    if check_clv_settings(horizon_days, discount_rate).is_err() {
        return f64::NAN;
    }
    let profit = gg.expected_average_profit(frequency, monetary_value);
    let mut clv = 0.0;
    for k in 1..=clv_months(horizon_days) {
        let i = k as f64 * 30.0;
        let n = bg.expected_purchases(i, frequency, recency, t)
            - bg.expected_purchases(i - 30.0, frequency, recency, t);
        clv += profit * n / (1.0 + discount_rate).powf(i / 30.0);
    }
    clv
}

// ----- model folders ------------------------------------------------------------------------

/// The CLV model kinds (`kind = "..."` in `model.toml`; a `model.toml` without `kind` is an
/// XGBoost model).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClvKind {
    /// BG/NBD: purchases while alive, and the chance of being alive.
    BgNbd,
    /// Gamma-Gamma: the spend per purchase.
    GammaGamma,
}

impl ClvKind {
    pub const NAMES: [&'static str; 2] = ["bg_nbd", "gamma_gamma"];

    pub fn name(self) -> &'static str {
        match self {
            ClvKind::BgNbd => "bg_nbd",
            ClvKind::GammaGamma => "gamma_gamma",
        }
    }

    pub fn parse(s: &str) -> Option<ClvKind> {
        match s {
            "bg_nbd" => Some(ClvKind::BgNbd),
            "gamma_gamma" => Some(ClvKind::GammaGamma),
            _ => None,
        }
    }
}

/// The file `c360 models fit` writes beside `model.toml`.
pub const FITTED_FILE: &str = "fitted.json";

/// The BTYD columns a CLV model reads from its feature set.
pub const BTYD_COLUMNS: [&str; 4] = ["frequency", "recency", "T", "monetary_value"];

/// `model.toml` of a CLV model, as written.
///
/// ```text
/// kind = "bg_nbd"                 # or "gamma_gamma"
/// description = "Repeat purchases and the chance a customer is still active"
/// feature_set = "rfm"             # the set with frequency, recency, T, monetary_value
/// feature_set_version = 1
///
/// [clv]
/// penalizer = 0.0                 # lifetimes' penalizer_coef (default 0)
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClvSpecFile {
    pub kind: String,
    #[serde(default)]
    pub description: Option<String>,
    pub feature_set: String,
    pub feature_set_version: u32,
    #[serde(default)]
    pub clv: ClvSettingsFile,
}

/// `[clv]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClvSettingsFile {
    #[serde(default)]
    pub penalizer: f64,
}

/// A validated CLV `model.toml`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClvSpec {
    pub file: std::path::PathBuf,
    pub kind: ClvKind,
    pub description: Option<String>,
    pub feature_set: String,
    pub feature_set_version: u32,
    pub penalizer: f64,
}

/// The fitted parameters, as `fitted.json` holds them and `models fit --json` prints them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fitted {
    pub model: String,
    pub kind: ClvKind,
    /// `r, alpha, a, b` (bg_nbd) or `p, q, v` (gamma_gamma), lifetimes' names.
    #[serde(flatten)]
    pub params: std::collections::BTreeMap<String, f64>,
    /// Always "days".
    pub time_unit: String,
    pub penalizer: f64,
    /// lifetimes' `_negative_log_likelihood_` at the optimum.
    pub objective: f64,
    pub customers: usize,
    pub iterations: u64,
    pub feature_set: String,
    pub feature_set_version: u32,
    pub as_of: chrono::NaiveDate,
    /// The snapshot's partition in the store.
    pub snapshot: String,
    /// The snapshot's definition hash and source fingerprints: the data the fit saw.
    pub definition_hash: String,
    pub source_fingerprints: std::collections::BTreeMap<String, String>,
}

impl Fitted {
    pub fn bg_nbd(&self) -> Option<BgNbdParams> {
        let g = |k: &str| self.params.get(k).copied();
        (self.kind == ClvKind::BgNbd).then_some(())?;
        Some(BgNbdParams {
            r: g("r")?,
            alpha: g("alpha")?,
            a: g("a")?,
            b: g("b")?,
        })
    }

    pub fn gamma_gamma(&self) -> Option<GammaGammaParams> {
        let g = |k: &str| self.params.get(k).copied();
        (self.kind == ClvKind::GammaGamma).then_some(())?;
        Some(GammaGammaParams {
            p: g("p")?,
            q: g("q")?,
            v: g("v")?,
        })
    }
}

/// The `kind` a `model.toml` text declares, if any (None: an XGBoost model).
pub fn declared_kind(text: &str) -> Option<String> {
    let v: toml::Value = toml::from_str(text).ok()?;
    v.get("kind")?.as_str().map(String::from)
}

/// Whether the model folder `dir` holds a CLV model (its `model.toml` has a `kind`); then
/// its validated spec (and its `fitted.json`, when it has one).
pub fn read_clv_dir(
    dir: &std::path::Path,
) -> Option<Result<(ClvSpec, Option<Fitted>), super::ModelError>> {
    let file = dir.join(super::SPEC_FILE);
    let text = crate::project::read_definition(&file).ok()?;
    // No kind, or `xgboost`: not a CLV model.
    declared_kind(&text).filter(|k| k != "xgboost")?;
    Some(ClvSpec::parse(&text, &file).and_then(|spec| {
        let fitted = read_fitted(&spec)?;
        Ok((spec, fitted))
    }))
}

/// Reads and checks `fitted.json` beside the spec (None when the model was never fitted).
pub fn read_fitted(spec: &ClvSpec) -> Result<Option<Fitted>, super::ModelError> {
    let dir = spec.file.parent().unwrap_or(std::path::Path::new("."));
    let file = dir.join(FITTED_FILE);
    let bytes = match crate::project::read_bounded(&file, crate::project::MAX_DEFINITION_BYTES) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(super::ModelError::Io {
                file: file.display().to_string(),
                source,
            })
        }
    };
    let invalid = |key: &str, reason: String| super::ModelError::Invalid {
        file: file.display().to_string(),
        key: key.into(),
        reason,
    };
    let f: Fitted = serde_json::from_slice(&bytes).map_err(|e| super::ModelError::Parse {
        file: file.display().to_string(),
        reason: format!("{e} (re-create it with `c360 models fit`)"),
    })?;
    if f.kind != spec.kind {
        return Err(invalid(
            "kind",
            format!(
                "{} but model.toml says {}: re-fit with `c360 models fit`",
                f.kind.name(),
                spec.kind.name()
            ),
        ));
    }
    let names: &[&str] = match f.kind {
        ClvKind::BgNbd => &["r", "alpha", "a", "b"],
        ClvKind::GammaGamma => &["p", "q", "v"],
    };
    for k in names {
        match f.params.get(*k) {
            Some(v) if v.is_finite() && *v > 0.0 => {}
            Some(v) => {
                return Err(invalid(
                    k,
                    format!("{v} is not a finite positive parameter"),
                ))
            }
            None => return Err(invalid(k, "missing".into())),
        }
    }
    if let Some(k) = f.params.keys().find(|k| !names.contains(&k.as_str())) {
        return Err(invalid(
            k,
            format!("not a {} parameter ({})", f.kind.name(), names.join(", ")),
        ));
    }
    Ok(Some(f))
}

impl ClvSpec {
    /// Parses and validates a CLV `model.toml` text; `file` names it in errors.
    pub fn parse(text: &str, file: &std::path::Path) -> Result<ClvSpec, super::ModelError> {
        let f = file.display().to_string();
        let invalid = |key: &str, reason: String| super::ModelError::Invalid {
            file: f.clone(),
            key: key.into(),
            reason,
        };
        // The kind first, so a wrong kind is named as such rather than as an unknown key.
        if let Some(kind) = declared_kind(text) {
            if ClvKind::parse(&kind).is_none() {
                return Err(invalid(
                    "kind",
                    format!(
                        "{kind:?} is not a model kind (one of: {}; leave `kind` out for an XGBoost model)",
                        ClvKind::NAMES.join(", ")
                    ),
                ));
            }
        }
        let raw: ClvSpecFile = toml::from_str(text).map_err(|e| super::ModelError::Parse {
            file: f.clone(),
            reason: e.to_string(),
        })?;
        let kind = ClvKind::parse(&raw.kind)
            .ok_or_else(|| invalid("kind", format!("{:?} is not a CLV model kind", raw.kind)))?;
        let ident = !raw.feature_set.is_empty()
            && raw
                .feature_set
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !ident {
            return Err(invalid(
                "feature_set",
                format!("{:?} is not a feature set name", raw.feature_set),
            ));
        }
        if raw.feature_set_version == 0 {
            return Err(invalid("feature_set_version", "versions start at 1".into()));
        }
        check_penalizer(raw.clv.penalizer).map_err(|e| invalid("clv.penalizer", e.to_string()))?;
        Ok(ClvSpec {
            file: file.to_path_buf(),
            kind,
            description: raw.description,
            feature_set: raw.feature_set,
            feature_set_version: raw.feature_set_version,
            penalizer: raw.clv.penalizer,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, rel: f64) -> bool {
        (a - b).abs() <= rel * b.abs().max(1e-300)
    }

    #[test]
    fn hyp2f1_matches_closed_forms_and_scipy() {
        // 2F1(1,1;2;z) = -ln(1-z)/z; 2F1(1/2,1/2;3/2;z^2) = asin(z)/z.
        assert!(close(hyp2f1(1.0, 1.0, 2.0, 0.5), 4f64.ln(), 1e-14));
        assert!(close(
            hyp2f1(0.5, 0.5, 1.5, 0.25),
            std::f64::consts::PI / 3.0,
            1e-14
        ));
        // scipy.special.hyp2f1 (scipy 1.17.1).
        for (a, b, c, z, want) in [
            (2.3, 4.1, 0.8, 0.6, 912.3995067108131),
            (100.27, 102.1, 101.6, 0.9, 5.853569392285962e+100),
            (0.3, -0.5, 2.5, 0.7, 0.9545849177742342),
            (1.5, 2.5, 3.5, 0.99, 39.959919938974366),
        ] {
            let got = hyp2f1(a, b, c, z);
            assert!(
                close(got, want, 1e-12),
                "2F1({a},{b};{c};{z}) = {got}, scipy {want}"
            );
        }
        assert_eq!(hyp2f1(1.0, 2.0, 3.0, 0.0), 1.0);
        // A polynomial: b = -2.
        assert!(close(hyp2f1(1.0, -2.0, 1.0, 0.5), 0.25, 1e-15));
        assert!(hyp2f1(1.0, 1.0, 2.0, 1.0).is_nan());
        assert!(hyp2f1(1.0, 1.0, -2.0, 0.5).is_nan());
        assert!(hyp2f1(f64::NAN, 1.0, 2.0, 0.5).is_nan());
    }

    // A small data set with lifetimes' objective values at a known point (computed with
    // lifetimes 0.11.3: BetaGeoFitter._negative_log_likelihood / GammaGammaFitter's).
    const X: [f64; 6] = [0.0, 1.0, 2.0, 5.0, 0.0, 3.0];
    const R: [f64; 6] = [0.0, 10.0, 30.0, 40.0, 0.0, 20.0];
    const T: [f64; 6] = [50.0, 40.0, 60.0, 45.0, 30.0, 25.0];
    const M: [f64; 6] = [0.0, 10.0, 20.0, 5.0, 0.0, 7.5];

    #[test]
    fn bg_nbd_likelihood_at_a_known_point() {
        let lp: Vec<f64> = [0.5f64, 3.0, 0.8, 2.5].iter().map(|v| v.ln()).collect();
        let (v, _) = bg_nbd_objective(&lp, &X, &R, &T, 0.0);
        assert!(close(v, 7.720001282127676, 1e-13), "{v}");
        let (v, _) = bg_nbd_objective(&lp, &X, &R, &T, 0.1);
        assert!(close(v, 9.334001282127677, 1e-13), "{v}");
    }

    #[test]
    fn gamma_gamma_likelihood_at_a_known_point() {
        let keep: Vec<usize> = (0..6).filter(|&i| X[i] > 0.0).collect();
        let x: Vec<f64> = keep.iter().map(|&i| X[i]).collect();
        let m: Vec<f64> = keep.iter().map(|&i| M[i]).collect();
        let lp: Vec<f64> = [2.0f64, 3.0, 15.0].iter().map(|v| v.ln()).collect();
        let (v, _) = gamma_gamma_objective(&lp, &x, &m, 0.0);
        assert!(close(v, 3.1800688686781786, 1e-13), "{v}");
        let (v, _) = gamma_gamma_objective(&lp, &x, &m, 0.05);
        assert!(close(v, 15.080068868678179, 1e-13), "{v}");
    }

    #[test]
    fn analytic_gradients_match_finite_differences() {
        let lp = [-0.3f64, 1.1, -0.2, 0.9];
        let (_, g) = bg_nbd_objective(&lp, &X, &R, &T, 0.01);
        for j in 0..4 {
            let h = 1e-6;
            let (mut up, mut dn) = (lp.to_vec(), lp.to_vec());
            up[j] += h;
            dn[j] -= h;
            let fd = (bg_nbd_objective(&up, &X, &R, &T, 0.01).0
                - bg_nbd_objective(&dn, &X, &R, &T, 0.01).0)
                / (2.0 * h);
            assert!((fd - g[j]).abs() < 1e-7, "bg_nbd d/dθ{j}: {} vs {fd}", g[j]);
        }
        let x = [1.0, 2.0, 5.0, 3.0];
        let m = [10.0, 20.0, 5.0, 7.5];
        let lp = [0.7f64, 1.2, 2.5];
        let (_, g) = gamma_gamma_objective(&lp, &x, &m, 0.02);
        for j in 0..3 {
            let h = 1e-6;
            let (mut up, mut dn) = (lp.to_vec(), lp.to_vec());
            up[j] += h;
            dn[j] -= h;
            let fd = (gamma_gamma_objective(&up, &x, &m, 0.02).0
                - gamma_gamma_objective(&dn, &x, &m, 0.02).0)
                / (2.0 * h);
            assert!(
                (fd - g[j]).abs() < 1e-6,
                "gamma_gamma d/dθ{j}: {} vs {fd}",
                g[j]
            );
        }
    }

    #[test]
    fn months_follow_numpy_arange() {
        assert_eq!(clv_months(30.0), 1);
        assert_eq!(clv_months(90.0), 3);
        assert_eq!(clv_months(365.0), 13);
        assert_eq!(clv_months(360.0), 12);
        assert_eq!(clv_months(1.0), 1);
    }

    #[test]
    fn frequency_zero_gets_the_population_mean_and_p_alive_one() {
        let gg = GammaGammaParams {
            p: 6.0,
            q: 4.0,
            v: 15.0,
        };
        assert_eq!(gg.expected_average_profit(0.0, 0.0), 30.0);
        let bg = BgNbdParams {
            r: 0.25,
            alpha: 4.0,
            a: 0.8,
            b: 2.4,
        };
        assert_eq!(bg.p_alive(0.0, 0.0, 10.0), 1.0);
        assert_eq!(bg.expected_purchases(0.0, 3.0, 5.0, 10.0), 0.0);
    }

    fn data(rows: &[(f64, f64, f64, f64)]) -> BtydData {
        BtydData {
            customer_id: (0..rows.len()).map(|i| format!("C{i}")).collect(),
            frequency: rows.iter().map(|r| r.0).collect(),
            recency: rows.iter().map(|r| r.1).collect(),
            t: rows.iter().map(|r| r.2).collect(),
            monetary_value: rows.iter().map(|r| r.3).collect(),
        }
    }

    #[test]
    fn bad_input_is_refused_naming_column_and_customer() {
        let mut rows = vec![(1.0, 5.0, 10.0, 3.0); 12];
        let cases = [
            (
                (f64::NAN, 0.0, 10.0, 0.0),
                "frequency of customer C3 is NaN",
            ),
            ((1.5, 1.0, 10.0, 1.0), "frequency of customer C3 is 1.5"),
            ((-1.0, 0.0, 10.0, 1.0), "frequency of customer C3 is -1"),
            (
                (1.0, 12.0, 10.0, 1.0),
                "recency of customer C3 is 12: must not exceed T (10)",
            ),
            (
                (0.0, 2.0, 10.0, 0.0),
                "recency of customer C3 is 2: must be 0 when frequency is 0",
            ),
            (
                (1.0, 2.0, 10.0, -4.0),
                "monetary_value of customer C3 is -4",
            ),
            ((1.0, 2.0, f64::INFINITY, 4.0), "T of customer C3 is inf"),
        ];
        for (row, want) in cases {
            rows[3] = row;
            let d = data(&rows);
            for e in [
                fit_bg_nbd(&d, &FitOptions::default()).unwrap_err(),
                fit_gamma_gamma(&d, &FitOptions::default()).unwrap_err(),
            ] {
                assert!(e.to_string().starts_with(want), "{e}");
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(48))]
        /// Any summary, however odd, gives finite positive parameters or an error: never a
        /// panic, never a NaN parameter.
        #[test]
        fn fits_never_panic(
            rows in proptest::collection::vec(
                (0u32..40, 0.0f64..1.0, 0.0f64..2000.0, 0.0f64..1e4),
                0..40,
            ),
            penalizer in proptest::sample::select(vec![0.0, 0.001, 1.0]),
        ) {
            let rows: Vec<(f64, f64, f64, f64)> = rows
                .into_iter()
                .map(|(x, rf, t, m)| {
                    let x = x as f64;
                    let rec = if x == 0.0 { 0.0 } else { (rf * t).floor() };
                    (x, rec, t.floor(), if x == 0.0 { 0.0 } else { m })
                })
                .collect();
            let d = data(&rows);
            let opts = FitOptions { penalizer };
            if let Ok(f) = fit_bg_nbd(&d, &opts) {
                let p = f.params;
                for v in [p.r, p.alpha, p.a, p.b] {
                    proptest::prop_assert!(v.is_finite() && v > 0.0);
                }
                for i in 0..d.len() {
                    let pa = p.p_alive(d.frequency[i], d.recency[i], d.t[i]);
                    proptest::prop_assert!((0.0..=1.0).contains(&pa), "{pa}");
                    let _ = p.expected_purchases(90.0, d.frequency[i], d.recency[i], d.t[i]);
                }
            }
            if let Ok(f) = fit_gamma_gamma(&d, &opts) {
                let p = f.params;
                for v in [p.p, p.q, p.v] {
                    proptest::prop_assert!(v.is_finite() && v > 0.0);
                }
            }
        }
    }

    #[test]
    fn objectives_refuse_wrong_shapes_without_panicking() {
        assert!(bg_nbd_objective(&[0.0; 3], &X, &R, &T, 0.0).0.is_nan());
        assert!(bg_nbd_objective(&[0.0; 4], &X, &R[..2], &T, 0.0).0.is_nan());
        assert!(gamma_gamma_objective(&[0.0; 4], &X, &M, 0.0).0.is_nan());
    }

    #[test]
    fn degenerate_data_is_refused() {
        let few = data(&[(1.0, 5.0, 10.0, 3.0); 5]);
        let e = fit_bg_nbd(&few, &FitOptions::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("5 customer(s)") && e.contains("at least 10"),
            "{e}"
        );
        let none = data(&[(0.0, 0.0, 10.0, 0.0); 20]);
        let e = fit_bg_nbd(&none, &FitOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("repeat purchase"), "{e}");
        let e = fit_gamma_gamma(&none, &FitOptions::default())
            .unwrap_err()
            .to_string();
        assert!(e.contains("0 of the 20 customers"), "{e}");
        let e = fit_bg_nbd(
            &data(&[(1.0, 5.0, 10.0, 3.0); 20]),
            &FitOptions { penalizer: -1.0 },
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("penalizer = -1"), "{e}");
    }
}
