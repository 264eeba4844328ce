//! A training set's batches computed on a few worker threads, their results kept in batch
//! order: each batch's sweeps are mostly single-threaded (`compile::sweep`), so with two
//! workers one batch's sweeps run while the other's polars collect does.
//!
//! Memory: each worker holds one batch in flight, so at most `workers` batches are being
//! computed at once; finished batches are kept (the caller puts them back in spine order).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// The environment variable that sets how many batches are computed at once (see
/// [`workers_from_env`]).
pub const WORKERS_ENV: &str = "C360_TRAINING_WORKERS";

/// The most batches computed at once by default: two, the measured sweet spot on 2 cores
/// (each batch in flight adds its events joined to their dates to the peak memory).
pub const DEFAULT_WORKERS: usize = 2;

/// The number of batches computed at once: [`WORKERS_ENV`] when set (a whole number from 1
/// to 8; 1 = one after the other), else [`DEFAULT_WORKERS`], but never more than polars'
/// threads (`POLARS_MAX_THREADS` when set, else the machine's cores), so that the user's
/// thread setting also bounds the batches. `Err` names the variable and its bad value.
pub fn workers_from_env() -> Result<usize, String> {
    let threads = std::env::var("POLARS_MAX_THREADS")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let wanted = match std::env::var(WORKERS_ENV) {
        Err(std::env::VarError::NotPresent) => return Ok(DEFAULT_WORKERS.min(threads).max(1)),
        Err(std::env::VarError::NotUnicode(_)) => {
            return Err(format!(
                "{WORKERS_ENV} is not valid text; unset it or set 1 to 8 batches at once"
            ))
        }
        Ok(v) => match v.trim().parse::<usize>() {
            Ok(n @ 1..=8) => n,
            _ => {
                return Err(format!(
                    "{WORKERS_ENV}={v:?} is not a number of batches at once from 1 to 8; unset it or set a whole number from 1 to 8 (1: one after the other)"
                ))
            }
        },
    };
    // An explicit setting is taken as asked (a test or a diagnostic), capped only by 8.
    Ok(wanted)
}

/// `f(0)`, ..., `f(n - 1)` on at most `workers` threads (batches taken in order, one at a
/// time per thread), returned in index order. On an error no new batch starts and the
/// error of the lowest failing index is returned (the one a sequential run would give).
/// A panicking `f` becomes `Err(on_panic())` instead of unwinding through the caller.
/// `workers <= 1` (or `n <= 1`) runs on the calling thread.
pub fn run_in_order<T, E, F, P>(n: usize, workers: usize, f: F, on_panic: P) -> Result<Vec<T>, E>
where
    T: Send,
    E: Send,
    F: Fn(usize) -> Result<T, E> + Sync,
    P: Fn() -> E,
{
    if workers <= 1 || n <= 1 {
        return (0..n).map(&f).collect();
    }
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let slots: Vec<Mutex<Option<Result<T, E>>>> = (0..n).map(|_| Mutex::new(None)).collect();
    let panicked = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers.min(n))
            .map(|_| {
                s.spawn(|| loop {
                    if failed.load(Ordering::SeqCst) {
                        break;
                    }
                    let b = next.fetch_add(1, Ordering::SeqCst);
                    let Some(slot) = slots.get(b) else { break };
                    let r = f(b);
                    if r.is_err() {
                        failed.store(true, Ordering::SeqCst);
                    }
                    *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                })
            })
            .collect();
        // Joined here, so a worker's panic is seen as a value, not re-raised by the scope.
        // Every handle joined (no short cut): one left unjoined would re-raise its panic.
        let mut any = false;
        for h in handles {
            any |= h.join().is_err();
        }
        any
    });
    if panicked {
        return Err(on_panic());
    }
    let mut out = Vec::with_capacity(n);
    for slot in slots {
        match slot.into_inner().unwrap_or_else(|e| e.into_inner()) {
            Some(Ok(t)) => out.push(t),
            Some(Err(e)) => return Err(e),
            // Batches are taken in order and a started one always finishes, so a batch
            // left undone lies after a failed one, which was returned above.
            None => return Err(on_panic()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_order_whatever_the_workers() {
        for workers in [1, 2, 3, 8] {
            for n in [0, 1, 2, 5, 17] {
                let got = run_in_order(
                    n,
                    workers,
                    |i| {
                        // Uneven work so that batches finish out of order.
                        std::thread::sleep(std::time::Duration::from_millis((i % 3) as u64));
                        Ok::<_, String>(i * 10)
                    },
                    || "panic".to_string(),
                )
                .expect("no error");
                assert_eq!(got, (0..n).map(|i| i * 10).collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn the_lowest_failing_batch_is_reported() {
        for workers in [1, 2, 4] {
            let got = run_in_order(
                10,
                workers,
                |i| {
                    if i == 3 || i == 7 {
                        Err(format!("batch {i}"))
                    } else {
                        Ok(i)
                    }
                },
                || "panic".to_string(),
            );
            assert_eq!(got, Err("batch 3".to_string()), "workers {workers}");
        }
    }

    #[test]
    fn a_panicking_batch_becomes_an_error() {
        let got = run_in_order(
            6,
            2,
            |i| {
                if i == 4 {
                    panic!("boom");
                }
                Ok::<_, String>(i)
            },
            || "a batch panicked".to_string(),
        );
        assert_eq!(got, Err("a batch panicked".to_string()));
    }
}
