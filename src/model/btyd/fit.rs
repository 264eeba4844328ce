//! The maximum-likelihood optimiser both models share: L-BFGS with More-Thuente line search
//! from lifetimes' start, over an objective that returns value and gradient together.

use argmin::core::{CostFunction, Executor, Gradient, State, TerminationReason};
use argmin::solver::linesearch::MoreThuenteLineSearch;
use argmin::solver::quasinewton::LBFGS;

use super::{ClvError, GRADIENT_OK, MAX_ITERATIONS, START};

/// A NaN objective as +inf, so the line search backs off instead of failing.
fn finite_or_inf(v: f64) -> f64 {
    if v.is_nan() {
        f64::INFINITY
    } else {
        v
    }
}

pub(super) fn check_params(model: &'static str, p: &[f64]) -> Result<(), ClvError> {
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
pub(super) fn minimise<F: Fn(&[f64]) -> (f64, Vec<f64>)>(
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
