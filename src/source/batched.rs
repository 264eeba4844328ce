//! Batched, trimmed loading of a table that references customers: each batch is
//! checked and cut to the columns and rows a feature set reads, so the whole table
//! never sits in memory (see [`Table::load_trimmed`]).

use polars::prelude::*;

use super::check::{count_exprs, scalar_u64};
use super::contract::Rule;
use super::customer_map::{customer_keys, pieces};
use super::error::Result;
use super::scan::guard;
use super::table::{Table, CUSTOMER_KEY};

/// Rows per batch of [`Table::load_trimmed`].
const BATCH_ROWS: u64 = 1 << 20;

impl Table {
    /// Reads a table that references customers batch by batch: each batch is checked
    /// (value rules, customer references, key uniqueness by hash) and trimmed to the
    /// `columns` (plus [`CUSTOMER_KEY`]) and `rows` the feature set reads, so the whole
    /// table never sits in memory. Returns false, having changed nothing, when the table
    /// needs the whole-table path: CSV, casts with raw checks, or any violation (or hash
    /// collision), whose exact report (counts over the whole table, an example row) comes
    /// from [`Table::check`].
    pub fn load_trimmed(
        &mut self,
        customers: &Table,
        columns: &std::collections::BTreeSet<String>,
        rows: Option<Expr>,
    ) -> Result<bool> {
        use rayon::prelude::*;
        use std::hash::BuildHasher;
        let spec = self.spec;
        if self.location.csv || !self.raw_checks.is_empty() || !spec.references_customers {
            return Ok(false);
        }
        let perr = self.perr();
        let total = self
            .frame
            .clone()
            .select([len().alias("n")])
            .collect()
            .map(|df| scalar_u64(&df, "n"))
            .map_err(&perr)?;
        let all_checks = self.value_checks();
        let not_null: Vec<&str> = all_checks
            .iter()
            .filter(|c| c.not_null)
            .map(|c| c.column.as_str())
            .collect();
        // The id-text check of `customer_id` is implied by the reference check below: an id
        // found in the customers table equals a customers id, which passed the same check
        // (and an id not found sends the table to the whole-table path, which reports
        // every violation as before).
        let checks = count_exprs(
            all_checks
                .iter()
                .filter(|c| !(c.one_of || c.not_null || (c.id_text && c.column == "customer_id"))),
        );
        let schema = self.frame.clone().collect_schema().map_err(&perr)?;
        let mut keep_names: Vec<PlSmallStr> = vec![CUSTOMER_KEY.into()];
        keep_names.extend(
            columns
                .iter()
                .filter(|c| schema.contains(c.as_str()) && c.as_str() != CUSTOMER_KEY)
                .map(|c| PlSmallStr::from_str(c)),
        );
        let keep: Vec<Expr> = keep_names
            .iter()
            .map(|c| polars::prelude::col(c.clone()))
            .collect();
        // Columns with a fixed set of values become Enums (one byte a row; comparisons
        // with a literal compare codes): the conversion is also their value check.
        let mut enums: Vec<(&'static str, &'static [&'static str], DataType)> = Vec::new();
        for r in spec.rules {
            if let Rule::OneOf(column, allowed) = r {
                let cats = FrozenCategories::new(allowed.iter().copied()).map_err(&perr)?;
                enums.push((column, allowed, DataType::from_frozen_categories(cats)));
            }
        }
        let hasher = PlRandomState::default();
        // Key hashes, spread by their top byte over buckets that are sorted one by one
        // (each fits in cache) to find duplicates. Sized once: growing by doubling would
        // briefly hold 2.5 times the hashes.
        const BUCKETS: usize = 256;
        let per_bucket = usize::try_from(total / BUCKETS as u64 * 9 / 8).unwrap_or(0) + 64;
        let mut key_hashes: Vec<Vec<u64>> = if spec.key.is_some() {
            (0..BUCKETS)
                .map(|_| Vec::with_capacity(per_bucket))
                .collect()
        } else {
            Vec::new()
        };
        let mut parts: Vec<DataFrame> = Vec::new();
        let (mut t_wait, mut t_enum, mut t_check, mut t_hash) = (0f64, 0f64, 0f64, 0f64);
        let (mut t_keys, mut t_trim) = (0f64, 0f64);
        // A reader thread decodes the next batch while this one is checked.
        let frame = self.frame.clone();
        let batches = self.batches(total);
        let (tx, rx) = std::sync::mpsc::sync_channel::<PolarsResult<DataFrame>>(1);
        let passed = std::thread::scope(|scope| -> Result<bool> {
            scope.spawn(move || {
                for (off, n) in batches {
                    let batch = guard(|| frame.clone().slice(off as i64, n as IdxSize).collect());
                    let failed = batch.is_err();
                    // A closed channel means the checks stopped early.
                    if tx.send(batch).is_err() || failed {
                        break;
                    }
                }
            });
            // The id map of the customers (built once) while the first batch decodes.
            let map = customers.customer_map()?;
            let mut batches = rx.into_iter();
            loop {
                let t = std::time::Instant::now();
                let Some(batch) = batches.next() else { break };
                // An unreadable batch: the whole-table path reports it with the file.
                let Ok(mut df) = batch else { return Ok(false) };
                t_wait += t.elapsed().as_secs_f64();
                let t = std::time::Instant::now();
                for (column, allowed, dtype) in &enums {
                    let values = df.column(column).map_err(&perr)?;
                    let Some(codes) = enum_codes(values.str().map_err(&perr)?, allowed) else {
                        return Ok(false);
                    };
                    let codes = Categorical8Chunked::from_cats_and_dtype(codes, dtype.clone());
                    df.with_column(codes.into_series().into_column())
                        .map_err(&perr)?;
                }
                t_enum += t.elapsed().as_secs_f64();
                let t = std::time::Instant::now();
                for c in &not_null {
                    if df.column(c).map_err(&perr)?.null_count() > 0 {
                        return Ok(false);
                    }
                }
                if !checks.is_empty() {
                    let counts = df
                        .clone()
                        .lazy()
                        .select(checks.clone())
                        .collect()
                        .map_err(&perr)?;
                    if (0..checks.len()).any(|i| scalar_u64(&counts, &format!("c{i}")) > 0) {
                        return Ok(false);
                    }
                }
                t_check += t.elapsed().as_secs_f64();
                let t = std::time::Instant::now();
                if let Some(key) = spec.key {
                    let ids = df.column(key).map_err(&perr)?.str().map_err(&perr)?;
                    for arr in ids.downcast_iter() {
                        for v in arr.values_iter() {
                            let h = hasher.hash_one(v);
                            key_hashes[(h >> 56) as usize].push(h);
                        }
                    }
                }
                t_hash += t.elapsed().as_secs_f64();
                let t = std::time::Instant::now();
                let Some(keys) =
                    customer_keys(df.column("customer_id").map_err(&perr)?, map).map_err(&perr)?
                else {
                    return Ok(false);
                };
                t_keys += t.elapsed().as_secs_f64();
                let t = std::time::Instant::now();
                df.with_column(keys.into_column()).map_err(&perr)?;
                let kept = df.select(keep_names.iter().cloned()).map_err(&perr)?;
                let kept = match &rows {
                    Some(r) => {
                        let mask = kept
                            .clone()
                            .lazy()
                            .select([r.clone().alias("_keep")])
                            .collect()
                            .map_err(&perr)?;
                        let mask = mask.column("_keep").map_err(&perr)?.bool().map_err(&perr)?;
                        kept.filter(mask).map_err(&perr)?
                    }
                    None => kept,
                };
                parts.push(kept);
                t_trim += t.elapsed().as_secs_f64();
            }
            Ok(true)
        })?;
        if !passed {
            return Ok(false);
        }
        tracing::debug!(
            table = spec.name,
            wait_secs = t_wait,
            enum_secs = t_enum,
            check_secs = t_check,
            hash_secs = t_hash,
            keys_secs = t_keys,
            trim_secs = t_trim,
            "batches"
        );
        let t = std::time::Instant::now();
        if spec.key.is_some() {
            let dup = key_hashes.par_iter_mut().any(|b| {
                b.sort_unstable();
                b.windows(2).any(|w| w[0] == w[1])
            });
            if dup {
                return Ok(false);
            }
        }
        let mut out = match parts.first() {
            Some(p) => p.clear(),
            None => self
                .frame
                .clone()
                .with_column(lit(0u32).alias(CUSTOMER_KEY))
                .select(keep)
                .limit(0)
                .collect()
                .map_err(&perr)?,
        };
        for p in &parts {
            out.vstack_mut(p).map_err(&perr)?;
        }
        // Left in chunks (one a batch): a copy into one would briefly hold the table twice.
        tracing::debug!(
            table = spec.name,
            secs = t.elapsed().as_secs_f64(),
            rows = out.height(),
            of = total,
            mb = out.estimated_size() / 1_000_000,
            "key hashes sorted, parts stacked"
        );
        drop(perr);
        self.frame = out.lazy();
        Ok(true)
    }

    /// `(offset, rows)` of the batches of [`Table::load_trimmed`]: whole Parquet row groups
    /// (a slice across a row group boundary decodes both groups), small neighbours merged
    /// and large groups cut, to about [`BATCH_ROWS`] rows; fixed-size batches when the
    /// files' metadata does not add up to `total`.
    fn batches(&self, total: u64) -> Vec<(u64, u64)> {
        let mut groups: Vec<u64> = Vec::new();
        for f in &self.location.files {
            let rows = std::fs::File::open(f).ok().and_then(|file| {
                let mut r = ParquetReader::new(file);
                let md = r.get_metadata().ok()?;
                Some(
                    md.row_groups
                        .iter()
                        .map(|g| g.num_rows() as u64)
                        .collect::<Vec<_>>(),
                )
            });
            match rows {
                Some(rows) => groups.extend(rows),
                None => {
                    groups.clear();
                    break;
                }
            }
        }
        batch_plan(groups, total, BATCH_ROWS)
    }
}

/// Batches of `max` rows or so over row groups of the given sizes (which must add up to
/// `total`, else it is one group): whole groups, neighbours merged while they fit, groups
/// over 1.25 `max` cut into equal parts.
pub(super) fn batch_plan(groups: Vec<u64>, total: u64, max: u64) -> Vec<(u64, u64)> {
    let groups = if groups.iter().sum::<u64>() == total {
        groups
    } else {
        vec![total]
    };
    let mut out: Vec<(u64, u64)> = Vec::new();
    let mut off = 0;
    // Whether the last batch is whole groups (a group may join it).
    let mut whole = false;
    for g in groups {
        match out.last_mut() {
            Some((_, n)) if whole && *n + g <= max => *n += g,
            _ => {
                let parts = if g <= max + max / 4 {
                    1
                } else {
                    g.div_ceil(max)
                };
                let step = g.div_ceil(parts).max(1);
                let mut at = 0;
                while at < g {
                    let n = step.min(g - at);
                    out.push((off + at, n));
                    at += n;
                }
                whole = parts == 1;
            }
        }
        off += g;
    }
    out.retain(|(_, n)| *n > 0);
    out
}

/// Each value's index in `allowed` (as UInt8), or None when some value is null or not
/// allowed. Event tables repeat values in runs, so equal neighbouring views (the same
/// string) reuse the previous code.
pub(super) fn enum_codes(ca: &StringChunked, allowed: &[&str]) -> Option<UInt8Chunked> {
    use rayon::prelude::*;
    if allowed.len() > u8::MAX as usize || ca.null_count() > 0 {
        return None;
    }
    let name = ca.name().clone();
    let pieces = pieces(ca);
    let arrays: Option<Vec<UInt8Chunked>> = pieces
        .par_iter()
        .map(|arr| {
            piece_enum_codes(arr, allowed).map(|out| UInt8Chunked::from_vec(name.clone(), out))
        })
        .collect();
    let mut out = UInt8Chunked::from_vec(name, Vec::new());
    for a in arrays? {
        out.append_owned(a).ok()?;
    }
    Some(out)
}

/// [`enum_codes`] of one piece.
#[inline(never)]
fn piece_enum_codes(
    arr: &<StringType as PolarsDataType>::Array,
    allowed: &[&str],
) -> Option<Vec<u8>> {
    let bin = arr.to_binview();
    let views = bin.views();
    let mut out = Vec::with_capacity(arr.len());
    // Views of strings up to 12 bytes hold the bytes themselves: a view seen before
    // has the same code. Seen views sit in a small table indexed by a hash of the
    // view (a collision only costs a string comparison); u128::MAX is no view.
    let mut seen = [(u128::MAX, 0u8); 256];
    for (i, v) in views.iter().enumerate() {
        let raw = v.as_u128();
        let slot =
            ((raw as u64 ^ (raw >> 64) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as usize;
        let code = match seen[slot] {
            (p, c) if p == raw => c,
            _ => {
                // SAFETY: i < arr.len().
                let s = unsafe { arr.value_unchecked(i) };
                let c = allowed.iter().position(|a| *a == s)? as u8;
                if v.length <= 12 {
                    seen[slot] = (raw, c);
                }
                c
            }
        };
        out.push(code);
    }
    Some(out)
}

#[cfg(test)]
#[path = "batched_tests.rs"]
mod tests;
