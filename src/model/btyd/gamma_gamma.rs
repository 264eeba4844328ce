//! The Gamma-Gamma spend model (lifetimes' `GammaGammaFitter`): its objective and analytic
//! gradient, the fit over repeat buyers, and the expected average profit.

use statrs::function::gamma::{digamma, ln_gamma};

use super::fit::{check_params, minimise};
use super::MIN_CUSTOMERS;
use super::{check_penalizer, BtydData, ClvError, Fit, FitOptions, GammaGammaParams};

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
