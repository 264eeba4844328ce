//! Synthetic Customer 360 data in which churn is real behaviour, for demos, tests and
//! benchmarks. Deterministic for a seed: each customer draws from its own random stream
//! (seeded by the seed and its index), so the output is the same whatever the thread count
//! or chunk size. Customers are simulated in chunks and streamed to the Parquet files, so
//! memory does not grow with the number of customers ([`generate`]).
//!
//! Each customer has a latent purchase rate and a latent churn hazard. A churner's orders
//! stop at its churn date; in the months before it, visits and email opens fade while
//! support tickets (and low satisfaction) rise. Orders follow a yearly season (a November
//! and December peak, a summer dip); some orders are returned or cancelled; about one
//! customer in ten never orders; sign-ups continue to the end of the period.

mod customer;
mod rows;
mod sink;

use std::path::Path;

use chrono::NaiveDate;
use polars::prelude::PolarsError;
use rayon::prelude::*;

use rows::Batch;
use sink::TableSink;
pub use sink::ROW_GROUP_ROWS;

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenConfig {
    pub customers: usize,
    pub seed: u64,
    /// First possible sign-up day.
    pub start: NaiveDate,
    /// Last day with data.
    pub end: NaiveDate,
    /// Customers simulated and written at a time (at least 1). Bounds memory; the output
    /// is the same for every value.
    pub chunk_customers: usize,
}

impl Default for GenConfig {
    fn default() -> Self {
        GenConfig {
            customers: 10_000,
            seed: 42,
            start: NaiveDate::from_ymd_opt(2022, 1, 1).unwrap_or_default(),
            end: NaiveDate::from_ymd_opt(2024, 12, 31).unwrap_or_default(),
            chunk_customers: DEFAULT_CHUNK_CUSTOMERS,
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

/// The longest period generated (20 years).
pub const MAX_SPAN_DAYS: i64 = 7_305;
/// The most customers generated. Memory does not grow with it: see [`generate`].
pub const MAX_CUSTOMERS: usize = 100_000_000;
/// Customers simulated and handed to the writers at a time, unless told otherwise.
pub const DEFAULT_CHUNK_CUSTOMERS: usize = 20_000;
/// Customers one thread simulates at a time within a chunk.
const THREAD_BLOCK: usize = 1024;

/// The four tables being written.
struct Sinks {
    customers: TableSink<rows::CustomerRows>,
    orders: TableSink<rows::OrderRows>,
    interactions: TableSink<rows::InteractionRows>,
    tickets: TableSink<rows::TicketRows>,
}

impl Sinks {
    fn create(out: &Path, rg: usize) -> Result<Self, GenError> {
        Ok(Sinks {
            customers: TableSink::create(out, "customers", rg)?,
            orders: TableSink::create(out, "orders", rg)?,
            interactions: TableSink::create(out, "interactions", rg)?,
            tickets: TableSink::create(out, "support_tickets", rg)?,
        })
    }

    /// Hands a chunk's rows to the four writers, which encode in parallel.
    fn push(&mut self, b: &mut Batch) -> Result<(), GenError> {
        let Sinks {
            customers,
            orders,
            interactions,
            tickets,
        } = self;
        let ((c, o), (i, t)) = rayon::join(
            || {
                rayon::join(
                    || customers.push(&mut b.customers),
                    || orders.push(&mut b.orders),
                )
            },
            || {
                rayon::join(
                    || interactions.push(&mut b.interactions),
                    || tickets.push(&mut b.tickets),
                )
            },
        );
        c.and(o).and(i).and(t)
    }
}

/// Checks the settings before anything is written.
fn check(cfg: &GenConfig) -> Result<(), GenError> {
    if cfg.customers == 0 {
        return Err(GenError::Config("--customers must be at least 1".into()));
    }
    if cfg.chunk_customers == 0 {
        return Err(GenError::Config(
            "--chunk-customers must be at least 1".into(),
        ));
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
    Ok(())
}

/// Simulates customers `lo..hi` on the rayon pool, in blocks of [`THREAD_BLOCK`], and
/// returns their rows in customer order.
fn simulate(cfg: &GenConfig, lo: usize, hi: usize, progress: &(dyn Fn(u64) + Sync)) -> Batch {
    let blocks: Vec<Batch> = (lo..hi)
        .step_by(THREAD_BLOCK)
        .collect::<Vec<_>>()
        .into_par_iter()
        .map(|b| {
            let mut ch = Batch::default();
            let end = (b + THREAD_BLOCK).min(hi);
            // `check` bounds customers by MAX_CUSTOMERS, far below u32::MAX.
            for i in b..end {
                customer::customer(cfg, i as u32, &mut ch);
            }
            progress((end - b) as u64);
            ch
        })
        .collect();
    let mut all = Batch::default();
    all.reserve(&blocks);
    for mut b in blocks {
        all.append(&mut b);
    }
    all
}

/// Generates the four tables as Parquet files in `out`: `customers.parquet`,
/// `orders.parquet`, `interactions.parquet` and `support_tickets.parquet`. `progress` is
/// told how many more customers are done.
///
/// Customers are simulated `cfg.chunk_customers` at a time and each chunk's rows are
/// appended to the four files, which are written in row groups of [`ROW_GROUP_ROWS`] rows
/// (the last one shorter). The files are byte-identical for the same settings whatever
/// the chunk size and thread count, and memory is bounded by two chunks (the one being
/// written and the next, simulated meanwhile) plus one row group per table (a few hundred
/// MB at the default chunk), not by `cfg.customers`.
///
/// Row order: customers by index (`C0000001`, `C0000002`, ...); within a customer,
/// orders and support tickets in time order, and interactions as web visits, then app
/// logins, then marketing emails (sent, opened, clicked, unsubscribed), each in time order.
///
/// Files are written as `NAME.parquet.tmp` and renamed into place once all four are
/// complete; on an error the temporary files are removed.
///
/// # Errors
/// [`GenError::Config`] for settings out of range (nothing is written), [`GenError::Write`]
/// when `out` or a file cannot be created or renamed, [`GenError::Parquet`] when polars
/// cannot encode or write a row group.
pub fn generate(
    cfg: &GenConfig,
    out: &Path,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<GenSummary, GenError> {
    generate_in_groups(cfg, out, progress, ROW_GROUP_ROWS)
}

/// [`generate`] with row groups of `row_group_rows` rows (tests cut small ones).
fn generate_in_groups(
    cfg: &GenConfig,
    out: &Path,
    progress: &(dyn Fn(u64) + Sync),
    row_group_rows: usize,
) -> Result<GenSummary, GenError> {
    check(cfg)?;
    std::fs::create_dir_all(out).map_err(|source| GenError::Write {
        path: out.display().to_string(),
        source,
    })?;
    let mut sinks = Sinks::create(out, row_group_rows)?;
    let mut churners = 0;
    // `check` made the step at least 1.
    let mut ranges = (0..cfg.customers).step_by(cfg.chunk_customers).map(|lo| {
        (
            lo,
            lo.saturating_add(cfg.chunk_customers).min(cfg.customers),
        )
    });
    let mut current = ranges
        .next()
        .map(|(lo, hi)| simulate(cfg, lo, hi, progress));
    // The next chunk is simulated while this one is encoded and written: at most two
    // chunks are in memory.
    while let Some(mut batch) = current.take() {
        churners += batch.churners;
        let next = ranges.next();
        let (simulated, written) = rayon::join(
            || next.map(|(lo, hi)| simulate(cfg, lo, hi, progress)),
            || sinks.push(&mut batch),
        );
        written?;
        current = simulated;
    }
    let customers = sinks.customers.close()?;
    let orders = sinks.orders.close()?;
    let interactions = sinks.interactions.close()?;
    let support_tickets = sinks.tickets.close()?;
    sinks.customers.commit()?;
    sinks.orders.commit()?;
    sinks.interactions.commit()?;
    sinks.tickets.commit()?;
    Ok(GenSummary {
        customers,
        orders,
        interactions,
        support_tickets,
        churners,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use polars::prelude::{ParquetReader, SerReader};

    fn files(dir: &Path) -> Vec<Vec<u8>> {
        ["customers", "orders", "interactions", "support_tickets"]
            .iter()
            .map(|t| std::fs::read(dir.join(format!("{t}.parquet"))).unwrap_or_default())
            .collect()
    }

    #[test]
    fn row_groups_are_cut_at_the_same_rows_whatever_the_chunk_size() {
        let mut cfg = GenConfig {
            customers: 300,
            seed: 5,
            ..GenConfig::default()
        };
        let mut outs = Vec::new();
        for chunk in [1, 7, 300] {
            cfg.chunk_customers = chunk;
            let d = tempfile::tempdir().unwrap();
            let s = generate_in_groups(&cfg, d.path(), &|_| {}, 97).unwrap();
            assert_eq!(s.customers, 300);
            outs.push((files(d.path()), s.orders, s.interactions, d));
        }
        for (f, orders, interactions, _) in &outs[1..] {
            assert!(f == &outs[0].0, "bytes differ between chunk sizes");
            assert_eq!((*orders, *interactions), (outs[0].1, outs[0].2));
        }
        // Several row groups of 97 rows and a short last one, holding every row.
        let path = outs[0].3.path().join("orders.parquet");
        let mut r = ParquetReader::new(std::fs::File::open(&path).unwrap());
        let meta = r.get_metadata().unwrap().clone();
        let sizes: Vec<usize> = meta.row_groups.iter().map(|g| g.num_rows()).collect();
        assert_eq!(sizes.len(), outs[0].1.div_ceil(97), "{sizes:?}");
        assert!(
            sizes[..sizes.len() - 1].iter().all(|&n| n == 97),
            "{sizes:?}"
        );
        assert_eq!(sizes.iter().sum::<usize>(), outs[0].1);
        assert_eq!(r.finish().unwrap().height(), outs[0].1);
    }

    #[test]
    fn a_failed_generation_leaves_no_temporary_file() {
        let d = tempfile::tempdir().unwrap();
        // A folder where the orders file must go: its writer cannot be created.
        std::fs::create_dir(d.path().join("orders.parquet.tmp")).unwrap();
        let cfg = GenConfig {
            customers: 50,
            ..GenConfig::default()
        };
        let e = generate(&cfg, d.path(), &|_| {}).unwrap_err();
        assert!(e.to_string().contains("orders.parquet.tmp"), "{e}");
        assert!(!d.path().join("customers.parquet.tmp").exists());
        assert!(!d.path().join("customers.parquet").exists());
        let zero = GenConfig {
            chunk_customers: 0,
            ..cfg
        };
        let e = generate(&zero, d.path(), &|_| {}).unwrap_err();
        assert!(e.to_string().contains("--chunk-customers"), "{e}");
    }
}
