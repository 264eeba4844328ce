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

mod bgnbd;
mod fit;
mod gamma_gamma;
mod spec;

pub use bgnbd::{bg_nbd_objective, fit_bg_nbd, hyp2f1};
pub use gamma_gamma::{fit_gamma_gamma, gamma_gamma_objective};
pub use spec::{declared_kind, read_clv_dir, read_fitted, BTYD_COLUMNS, FITTED_FILE};
pub use spec::{ClvKind, ClvSettingsFile, ClvSpec, ClvSpecFile, Fitted};

use serde::{Deserialize, Serialize};

// Named here so the model-folder code in `spec` reads them as `super::…`.
use super::{ModelError, SPEC_FILE};

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

// ----- CLV ----------------------------------------------------------------------------------

/// Checks a horizon (days) and a monthly discount rate for [`customer_lifetime_value`].
pub(crate) fn check_clv_settings(horizon_days: f64, discount_rate: f64) -> Result<(), ClvError> {
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

#[cfg(test)]
mod tests;
