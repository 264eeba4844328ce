//! Loading a build's tables concurrently: [`super::load_union`] reads, contract-checks and
//! trims each table other than customers on one of a few worker threads (the largest
//! files first), so that one table's single-threaded steps (key lookups, checks, waiting
//! for a batch to decode) overlap another table's.
//!
//! The outcome is that of loading the tables one after the other in the given order:
//! each table is loaded by the same code with the same inputs (the loaded customers and
//! the cut), so its frame is the same; when several tables fail, the error returned is
//! that of the first failing table in the given order (a table after a failed one is not
//! started, one before it always finishes). Nothing is kept on an error.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::{FeatureError, LoadJob, Result};
use crate::source::Table;

/// A loaded table and, for a label's table under a spine cut, its last event day.
pub(crate) type LoadedTable = (Table, Option<Option<i32>>);

/// Worker threads of [`load_concurrently`]: two (the largest table on one, the others on
/// the other), or one when rayon (and so the batch work) runs on a single thread. More would only add batches
/// in memory: each worker holds up to two decoded batches (about 1M rows each) at a time.
pub(crate) fn workers() -> usize {
    rayon::current_num_threads().clamp(1, 2)
}

/// Scans and loads every table of `names` (none of them customers) with `workers`
/// threads, returning them in `names` order, or the error of the first table in `names`
/// order that fails (see the module). With one worker (or one table) the tables are
/// loaded in order on this thread, stopping at the first error.
pub(crate) fn load_concurrently(
    job: &LoadJob<'_>,
    names: &[&'static str],
    workers: usize,
) -> Result<Vec<LoadedTable>> {
    if workers <= 1 || names.len() <= 1 {
        return names.iter().map(|n| job.load(n, job.scan(n)?)).collect();
    }
    // Scanned in order here (locating, fetching and reading schemas: cheap), so the
    // sizes that order the work are known; a scan error is that table's outcome.
    let mut scans: Vec<Option<Result<Table>>> = names.iter().map(|n| Some(job.scan(n))).collect();
    let mut order: Vec<usize> = (0..names.len()).collect();
    let size = |i: &usize| match scans.get(*i) {
        Some(Some(Ok(t))) => t
            .location
            .files
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| m.len())
            .sum::<u64>(),
        _ => 0,
    };
    // Largest first (ties in `names` order): the biggest table starts at once and the
    // smaller ones fill the other worker.
    order.sort_by_key(|i| std::cmp::Reverse(size(i)));
    // The first failed table's place in `names` (names.len(): none yet).
    let failed = AtomicUsize::new(names.len());
    let mut results: Vec<Option<Result<LoadedTable>>> = Vec::with_capacity(names.len());
    for (i, s) in scans.iter_mut().enumerate() {
        match s.take_if(|s| s.is_err()) {
            Some(Err(e)) => {
                failed.fetch_min(i, Ordering::SeqCst);
                results.push(Some(Err(e)));
            }
            _ => results.push(None),
        }
    }
    let todo: Mutex<(usize, Vec<Option<Result<Table>>>)> = Mutex::new((0, scans));
    let results = Mutex::new(results);
    let work = || loop {
        // The next table by size, skipping those after a failed one.
        let next = {
            let Ok(mut q) = todo.lock() else { return };
            let mut found = None;
            while let Some(&i) = order.get(q.0) {
                q.0 += 1;
                if i > failed.load(Ordering::SeqCst) {
                    continue;
                }
                if let Some(Some(Ok(t))) = q.1.get_mut(i).map(Option::take) {
                    found = Some((i, t));
                    break;
                }
            }
            found
        };
        let Some((i, t)) = next else { return };
        let Some(n) = names.get(i) else { return };
        let out = job.load(n, t);
        if out.is_err() {
            failed.fetch_min(i, Ordering::SeqCst);
        }
        if let Ok(mut r) = results.lock() {
            if let Some(slot) = r.get_mut(i) {
                *slot = Some(out);
            }
        }
    };
    let panicked = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers.min(names.len()))
            .map(|_| scope.spawn(work))
            .collect();
        // Every one joined here, so a worker's panic becomes an error instead of unwinding.
        let mut panicked = false;
        for h in handles {
            panicked |= h.join().is_err();
        }
        panicked
    });
    let results = results.into_inner().unwrap_or_else(|p| p.into_inner());
    let mut out = Vec::with_capacity(names.len());
    for (n, r) in names.iter().zip(results) {
        match r {
            Some(Ok(t)) => out.push(t),
            Some(Err(e)) => return Err(e),
            // Not loaded: a worker panicked (or an earlier table failed, returned above).
            None => {
                return Err(FeatureError::Polars {
                    set: job.first.name.to_string(),
                    message: format!(
                        "loading the {n} table failed unexpectedly{}; run the command again, and report it if it persists",
                        if panicked { " (its thread panicked)" } else { "" }
                    ),
                })
            }
        }
    }
    Ok(out)
}
