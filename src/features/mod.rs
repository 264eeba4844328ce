//! Features: the definition language (`def`, `expr`, and `rows` for what names mean in a
//! row expression), its compilation to polars plans (`compile`), and the two ways to
//! compute them: a point-in-time snapshot of every customer (here), and a training set over
//! a spine of `(customer_id, as_of)` rows with labels (`training_set`). Several sets'
//! snapshots come from one read and check of their tables (`multi`).

pub mod compile;
pub mod cut;
pub mod def;
pub mod expr;
pub mod lineage;
mod load;
pub mod multi;
pub mod rows;
pub mod shared;
mod training_set;

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use chrono::NaiveDate;
use polars::prelude::*;

pub use def::{DefError, DefErrors, FeatureSet};
pub use multi::{build_snapshots, snapshots};
pub use training_set::{
    batch_size_from_env, read_spine, training_set, training_set_batched, training_set_rows,
    training_set_workers, workers_from_env, TrainingRows, BATCH_ENV, DEFAULT_BATCH_CUSTOMERS,
    DEFAULT_WORKERS, WORKERS_ENV,
};

use crate::names::AsOf;
use crate::offline::{self, Manifest};
use crate::source::{self, Source, SourceError, Table};
use crate::telemetry::{peak_rss_mb, release_free_memory};

/// Errors of computing features.
#[derive(Debug, thiserror::Error)]
pub enum FeatureError {
    /// Boxed: a source error names table, column, file and example (large), and results
    /// pass through every layer on the Ok path.
    #[error(transparent)]
    Source(Box<SourceError>),
    #[error(transparent)]
    Compile(#[from] compile::CompileError),
    #[error("feature set {set}: computing failed: {message}")]
    Polars { set: String, message: String },
    /// polars failed while computing a set's features.
    #[error("feature set {set}: computing failed: {source}")]
    Computing {
        set: String,
        #[source]
        source: PolarsError,
    },
    #[error("spine {path}: {message}")]
    Spine { path: String, message: String },
    /// polars could not read or convert a spine file; `what` says which step (`cannot read: `,
    /// `as_of: ` or empty).
    #[error("spine {path}: {what}{source}")]
    SpineData {
        path: String,
        what: &'static str,
        #[source]
        source: PolarsError,
    },
    #[error("label {label}: {message}")]
    Label { label: String, message: String },
    #[error("feature set {0} not found in {1} (see `c360 features list`)")]
    UnknownSet(String, String),
    #[error(transparent)]
    Definitions(#[from] DefErrors),
    #[error(transparent)]
    Offline(#[from] offline::OfflineError),
}

pub type Result<T, E = FeatureError> = std::result::Result<T, E>;

impl From<SourceError> for FeatureError {
    fn from(e: SourceError) -> Self {
        FeatureError::Source(Box::new(e))
    }
}

/// Loads every `*.toml` under `dir`, reporting all definition errors together.
pub fn load_sets(dir: &Path) -> Result<Vec<FeatureSet>, DefErrors> {
    let (sets, errors, _) = load_sets_partial(dir);
    if !errors.is_empty() {
        return Err(DefErrors(errors));
    }
    Ok(sets)
}

/// Loads every feature-set file of `dir` on its own: the valid sets, every problem of the
/// others, and whether any file failed (so that checks of what refers to sets can tell "no
/// such set" from "its file is broken, already reported").
pub fn load_sets_partial(dir: &Path) -> (Vec<FeatureSet>, Vec<DefError>, bool) {
    if let Err(e) = std::fs::read_dir(dir) {
        let err = DefError::new(
            dir.display().to_string(),
            "(folder)",
            format!("cannot read the feature folder: {e}"),
        );
        return (Vec::new(), vec![err], true);
    }
    let (sets, errors) =
        crate::diagnostic::load_folder(dir, "toml", |f| def::load(f).map_err(|e| e.0));
    let broken = !errors.is_empty();
    (sets, errors, broken)
}

/// Finds one set by name.
pub fn find_set(dir: &Path, name: &str) -> Result<FeatureSet> {
    let sets = load_sets(dir)?;
    sets.into_iter()
        .find(|s| s.name == name)
        .ok_or_else(|| FeatureError::UnknownSet(name.into(), dir.display().to_string()))
}

/// The loaded, contract-checked tables a set reads.
pub struct Loaded {
    pub tables: HashMap<&'static str, Table>,
    /// The last event day (days since 1970-01-01; None: no dated row) of each table whose
    /// rows a [`cut::RowCut::Spine`] dated, taken from the whole table before the cut: the
    /// label-reach check reads it instead of the cut table's.
    pub last_days: HashMap<&'static str, Option<i32>>,
}

impl Loaded {
    pub fn inputs(&self) -> compile::Inputs {
        self.tables
            .iter()
            .map(|(k, t)| (*k, t.frame.clone()))
            .collect()
    }
    /// `table -> fingerprint` for lineage.
    pub fn fingerprints(&self) -> std::collections::BTreeMap<String, String> {
        self.tables
            .iter()
            .map(|(k, t)| (k.to_string(), t.fingerprint.clone()))
            .collect()
    }
}

/// Reads and checks every table `set` needs (plus `also`), customers first.
pub fn load_tables(set: &FeatureSet, src: &Source, also: &[&'static str]) -> Result<Loaded> {
    load_tables_at(set, src, also, None)
}

/// [`load_tables`]; with `snapshot_day`, event tables keep only the rows a snapshot at that
/// day counts (after their checks), so the full tables are not held while computing.
pub fn load_tables_at(
    set: &FeatureSet,
    src: &Source,
    also: &[&'static str],
    snapshot_day: Option<i32>,
) -> Result<Loaded> {
    let cut = match snapshot_day {
        Some(day) => cut::RowCut::Snapshot(day),
        None => cut::RowCut::All,
    };
    load_union(&[set], src, also, &cut)
}

/// [`load_tables`] for a training set of `set` over `spine` (as [`read_spine`] gives it)
/// with `label`: event tables keep only the rows the spine can read ([`cut::spine_cut`];
/// every row with `C360_TRAINING_CUT=off`). The training set computed from it equals,
/// cell for cell, the one computed from [`load_tables`]; the spine checks report the same
/// rows (the customers table is never cut, the label's reach is taken before the cut).
pub fn load_for_spine(
    set: &FeatureSet,
    src: &Source,
    spine: &DataFrame,
    label: Option<&str>,
) -> Result<Loaded> {
    let cut = cut::spine_cut(set, spine, label)?;
    load_union(&[set], src, &[], &cut)
}

/// [`load_tables_at`] for several sets at once: each table any of `sets` reads is read and
/// contract-checked once, keeping the union of the columns (and, with a `cut`, of the
/// rows) the sets read. With one set it is exactly [`load_tables_at`]; a set's own
/// view of the union is [`multi::set_inputs`]. Errors name the table, column and file as
/// for one set. `sets` must not be empty. The tables other than customers are loaded
/// concurrently (see `load.rs`), with the outcome of loading them one after the other.
pub fn load_union(
    sets: &[&FeatureSet],
    src: &Source,
    also: &[&'static str],
    cut: &cut::RowCut,
) -> Result<Loaded> {
    load_union_workers(sets, src, also, cut, load::workers())
}

/// [`load_union`] with `workers` threads loading the tables other than customers (1: one
/// after the other, in table-name order, stopping at the first error). Any number of
/// workers gives the same tables, or the same error: that of the first failing table in
/// name order.
pub fn load_union_workers(
    sets: &[&FeatureSet],
    src: &Source,
    also: &[&'static str],
    cut: &cut::RowCut,
    workers: usize,
) -> Result<Loaded> {
    let Some(first) = sets.first() else {
        return Err(FeatureError::Polars {
            set: "(none)".into(),
            message: "no feature set to load tables for".into(),
        });
    };
    let mut names: BTreeSet<&'static str> = sets.iter().flat_map(|s| s.tables()).collect();
    names.extend(also.iter().copied());
    let mut tables = HashMap::new();
    let cust_spec = source::table_spec("customers").ok_or_else(|| FeatureError::Polars {
        set: first.name.to_string(),
        message: "contract lacks customers".into(),
    })?;
    let mut customers = src.scan(cust_spec, &multi::union_extra(sets, "customers"))?;
    let t = std::time::Instant::now();
    customers.collect()?;
    let read = t.elapsed().as_secs_f64();
    customers.check(None)?;
    customers.add_customer_key()?;
    if also.is_empty() {
        // Only what the plans read (e.g. not email) stays in memory.
        let mut keep = BTreeSet::new();
        for set in sets {
            keep.extend(multi::customer_columns(set));
        }
        customers.keep_columns(&keep)?;
    }
    tracing::debug!(
        table = "customers",
        peak_mb = peak_rss_mb(),
        read_secs = read,
        check_secs = t.elapsed().as_secs_f64() - read,
        "table loaded and checked"
    );
    // The spine's customer keys, once the customers are keyed.
    let keys = match cut {
        cut::RowCut::Spine(c) => c.keys(first, &customers.frame)?,
        _ => None,
    };
    let others: Vec<&'static str> = names
        .iter()
        .copied()
        .filter(|n| *n != "customers")
        .collect();
    let job = LoadJob {
        first,
        sets,
        src,
        also,
        cut,
        customers: &customers,
        keys: keys.as_ref(),
    };
    let mut last_days = HashMap::new();
    for (n, loaded) in others
        .iter()
        .zip(load::load_concurrently(&job, &others, workers)?)
    {
        let (t, last) = loaded;
        if let Some(last) = last {
            last_days.insert(*n, last);
        }
        tables.insert(*n, t);
    }
    customers.release_customer_map();
    release_free_memory();
    tables.insert("customers", customers);
    Ok(Loaded { tables, last_days })
}

/// What every table of one [`load_union`] is loaded against: the sets, the source, the
/// tables kept whole (`also`), the row cut, the loaded customers and the spine's keys.
pub(crate) struct LoadJob<'a> {
    first: &'a FeatureSet,
    sets: &'a [&'a FeatureSet],
    src: &'a Source,
    also: &'a [&'static str],
    cut: &'a cut::RowCut,
    customers: &'a Table,
    keys: Option<&'a Expr>,
}

impl LoadJob<'_> {
    /// Scans table `n` (its files located, fetched and schema-checked).
    fn scan(&self, n: &'static str) -> Result<Table> {
        let spec = source::table_spec(n).ok_or_else(|| FeatureError::Polars {
            set: self.first.name.to_string(),
            message: format!("unknown table {n}"),
        })?;
        Ok(self.src.scan(spec, &multi::union_extra(self.sets, n))?)
    }

    /// Reads, contract-checks and trims the scanned table `n` (`t`): the table and, for a
    /// label's table under a spine cut, its last event day before the cut.
    fn load(&self, n: &'static str, mut t: Table) -> Result<(Table, Option<Option<i32>>)> {
        let (sets, also, cut, customers, keys) =
            (self.sets, self.also, self.cut, self.customers, self.keys);
        let first = self.first;
        let spec = t.spec;
        let t0 = std::time::Instant::now();
        let columns: BTreeSet<String> = sets
            .iter()
            .flat_map(|s| compile::columns_read(s, n))
            .collect();
        // A label's reach comes from the whole table, before a spine cut dates its rows.
        let reach = match cut {
            cut::RowCut::Spine(c) => c.label.filter(|l| l.0 == n).map(|l| l.1),
            _ => None,
        };
        let mut last_day = None;
        let scanned = reach.map(|_| t.frame.clone());
        if spec.references_customers && !also.contains(&n) {
            let rows = cut.rows(sets, n, keys)?;
            let trimmed = t.load_trimmed(customers, &columns, rows.clone())?;
            release_free_memory();
            if trimmed {
                if let (Some(ts), Some(lf)) = (reach, scanned) {
                    last_day = Some(cut::last_day(lf, ts).map_err(perr(first))?);
                }
                if rows.is_some() {
                    log_kept(n, &t.frame);
                }
                tracing::debug!(
                    table = n,
                    secs = t0.elapsed().as_secs_f64(),
                    peak_mb = peak_rss_mb(),
                    "table loaded, checked and trimmed in batches"
                );
                return Ok((t, last_day));
            }
        }
        t.collect()?;
        let read = t0.elapsed().as_secs_f64();
        t.check(Some(customers))?;
        // The check gave every row its integer customer key: keep only the columns the
        // sets read (the id strings and e.g. order ids are most of a table's memory).
        if let Some(ts) = reach {
            last_day = Some(cut::last_day(t.frame.clone(), ts).map_err(perr(first))?);
        }
        if spec.references_customers && !also.contains(&n) {
            t.keep_columns(&columns)?;
            if let Some(rows) = cut.rows(sets, n, keys)? {
                t.keep_rows(rows)?;
                log_kept(n, &t.frame);
            }
        }
        tracing::debug!(
            table = n,
            read_secs = read,
            check_secs = t0.elapsed().as_secs_f64() - read,
            "table loaded and checked"
        );
        Ok((t, last_day))
    }
}

/// Logs (debug) the rows a cut kept of table `n`.
fn log_kept(n: &str, frame: &LazyFrame) {
    let rows = frame
        .clone()
        .select([len().alias("n")])
        .collect()
        .ok()
        .and_then(|df| df.column("n").ok()?.get(0).ok()?.extract::<u64>());
    tracing::debug!(
        table = n,
        rows,
        peak_mb = peak_rss_mb(),
        "rows kept by the cut"
    );
}

fn customers_missing(set: &FeatureSet) -> FeatureError {
    FeatureError::Polars {
        set: set.name.to_string(),
        message: "customers not loaded".into(),
    }
}

fn perr(set: &FeatureSet) -> impl Fn(PolarsError) -> FeatureError + '_ {
    move |e| FeatureError::Computing {
        set: set.name.to_string(),
        source: e,
    }
}

/// A point-in-time snapshot: one row per customer signed up on or before `as_of`.
///
/// Each table's aggregates are computed on their own (the streaming engine, one table at
/// a time, so their group-by tables are never in memory together) and placed next to the
/// base rows by customer key: the key is the customer's row number, so a lookup array
/// replaces a hash join.
pub fn snapshot(set: &FeatureSet, loaded: &Loaded, as_of: NaiveDate) -> Result<DataFrame> {
    snapshot_of(set, loaded.inputs(), as_of, None)
}

/// [`snapshot`] that consumes the tables: each table is freed once its aggregates are
/// computed, before the last step.
pub fn snapshot_owned(set: &FeatureSet, loaded: Loaded, as_of: NaiveDate) -> Result<DataFrame> {
    let inputs = loaded
        .tables
        .into_iter()
        .map(|(k, t)| (k, t.frame))
        .collect();
    snapshot_of(set, inputs, as_of, None)
}

/// The snapshot of `set` from its inputs. With `shared` (a multi-set build), aggregations an
/// earlier set computed are taken from it instead of computed, and this set's are added to
/// it (see [`shared`]); the frame is the same either way.
fn snapshot_of(
    set: &FeatureSet,
    inputs: compile::Inputs,
    as_of: NaiveDate,
    shared: Option<&std::cell::RefCell<shared::SharedAggs>>,
) -> Result<DataFrame> {
    let day = AsOf::from(as_of).day_number();
    let perr = perr(set);
    // The base's customer keys, in base order (the plan's own base filter).
    let customers = inputs
        .get("customers")
        .cloned()
        .ok_or_else(|| customers_missing(set))?;
    let all = customers
        .clone()
        .select([len().alias("n")])
        .collect()
        .map_err(&perr)?;
    let n = all
        .column("n")
        .ok()
        .and_then(|c| c.get(0).ok())
        .and_then(|v| v.extract::<u64>())
        .unwrap_or(0) as usize;
    let base_keys = compile::snapshot_base(customers, day)
        .select([col(source::CUSTOMER_KEY)])
        .collect()
        .map_err(&perr)?;
    let base_keys: Vec<u32> = base_keys
        .column(source::CUSTOMER_KEY)
        .and_then(|c| c.u32().map(|ca| ca.into_no_null_iter().collect()))
        .map_err(&perr)?;
    let cerr = |message: String| compile::CompileError {
        set: set.name.to_string(),
        message,
    };
    let align = |agg: LazyFrame| -> Result<compile::Aggregated, compile::CompileError> {
        let (agg, known) = match shared {
            Some(s) => s
                .borrow_mut()
                .take_known(set, agg)
                .map_err(|e| cerr(format!("computing failed: {e}")))?,
            None => (Some(agg), Vec::new()),
        };
        let Some(agg) = agg else {
            tracing::debug!(columns = known.len(), "aggregate taken from an earlier set");
            return Ok(compile::Aggregated::Aligned(known));
        };
        let t = std::time::Instant::now();
        let df = collect(agg).map_err(|e| cerr(format!("computing failed: {e}")))?;
        // Row of each customer key in the aggregate, then of each base row.
        let keys = df
            .column(source::CUSTOMER_KEY)
            // An aggregate over an empty table comes back with the key typed i32.
            .and_then(|c| c.strict_cast(&DataType::UInt32))
            .and_then(|c| c.u32().cloned())
            .map_err(|e| cerr(format!("computing failed: {e}")))?;
        let mut row_of = vec![IdxSize::MAX; n];
        for (row, k) in keys.iter().enumerate() {
            if let Some(slot) = k.and_then(|k| row_of.get_mut(k as usize)) {
                *slot = row as IdxSize;
            }
        }
        let idx: IdxCa = base_keys
            .iter()
            .map(|k| {
                row_of
                    .get(*k as usize)
                    .copied()
                    .filter(|r| *r != IdxSize::MAX)
            })
            .collect();
        let mut columns = Vec::new();
        for c in df.columns() {
            if c.name().as_str() == source::CUSTOMER_KEY {
                continue;
            }
            columns.push(
                c.take(&idx)
                    .map_err(|e| cerr(format!("computing failed: {e}")))?,
            );
        }
        tracing::debug!(
            rows = df.height(),
            columns = df.width(),
            reused = known.len(),
            secs = t.elapsed().as_secs_f64(),
            peak_mb = peak_rss_mb(),
            "aggregate computed"
        );
        drop(df);
        release_free_memory();
        if let Some(s) = shared {
            s.borrow_mut().remember(set, &columns);
        }
        columns.extend(known);
        Ok(compile::Aggregated::Aligned(columns))
    };
    let lf = compile::plan(
        set,
        &inputs,
        &compile::Mode::Snapshot(day),
        None,
        None,
        None,
        &align,
    )?;
    // The plan now reads only the customers and the aligned columns.
    drop(inputs);
    release_free_memory();
    lf.collect().map_err(perr)
}

/// Runs a feature plan on polars' streaming engine: its group-bys aggregate in parallel
/// morsels several times faster than the in-memory engine's (which it falls back to for
/// what it cannot stream, e.g. ranks).
pub fn collect(lf: LazyFrame) -> PolarsResult<DataFrame> {
    let opts = lf.get_current_optimizations();
    LazyFrame::collect_all_with_engine(vec![lf.logical_plan], Engine::Streaming, opts)?
        .pop()
        .ok_or_else(|| PolarsError::ComputeError("a feature plan returned no frame".into()))
}

/// What `build_snapshot` did.
pub struct Built {
    pub manifest: Manifest,
    pub prefix: String,
    pub reused: bool,
}

/// Builds (or reuses) and commits a snapshot: [`multi::build_snapshots`] of one set.
pub fn build_snapshot(
    s: &FeatureSet,
    source_uri: &str,
    st: &dyn crate::store::ObjectStore,
    as_of: NaiveDate,
    force: bool,
) -> Result<Built> {
    let mut built = multi::build_snapshots(&[s], source_uri, st, as_of, force)?;
    built.pop().ok_or_else(|| FeatureError::Polars {
        set: s.name.to_string(),
        message: "no snapshot was built".into(),
    })
}

/// The manifest's `pii_columns`: the snapshot columns that are PII by lineage, each with its
/// PII sources (readers such as lookups and products use it; see [`lineage`]).
fn pii_extra(s: &FeatureSet) -> std::collections::BTreeMap<String, serde_json::Value> {
    let mut extra = std::collections::BTreeMap::new();
    let pii: serde_json::Map<String, serde_json::Value> = lineage::pii_outputs(s)
        .into_iter()
        .map(|(name, sources)| (name, serde_json::json!(sources)))
        .collect();
    if !pii.is_empty() {
        extra.insert("pii_columns".to_string(), serde_json::Value::Object(pii));
    }
    extra
}

/// Refuses an as-of date the sources cannot support, with the reason (the `Err` text):
/// before the first customer signed up (nobody to score), or after the last event of
/// `tables` (other than customers) unless `allow_past_data`: features would be computed from
/// data that has not arrived. `why_past` adds a caller's consequence to that message. Dates
/// are UTC days, as in point-in-time features. Each table costs a read of its Parquet
/// footers' statistics (a lazy min/max over its event-time column where they are missing or
/// cannot be trusted, and for CSV); a table that cannot be read is left to the build, which
/// reports it with the contract's errors.
pub fn check_data_reach(
    src: &Source,
    source_uri: &str,
    tables: &[&str],
    as_of: NaiveDate,
    allow_past_data: bool,
    why_past: &str,
) -> std::result::Result<(), String> {
    // From the Parquet footers' statistics where they can be trusted (else a scan: see
    // `Source::ts_day_range`); a table that cannot be read gives no days.
    let day_range = |t: &str| -> Option<(i32, i32)> {
        let spec = source::table_spec(t)?;
        src.ts_day_range(spec).0
    };
    let day = |n: i32| AsOf::from_day_number(n).date();
    if let Some((first, _)) = day_range("customers") {
        if as_of < day(first) {
            return Err(format!(
                "as-of {as_of} is before the first customer signed up ({}, in {source_uri}): there is nobody to score; choose --as-of {} or later",
                day(first),
                day(first)
            ));
        }
    }
    if allow_past_data {
        return Ok(());
    }
    let mut last: Option<(i32, &str)> = None;
    for t in tables.iter().filter(|t| **t != "customers") {
        if let Some((_, l)) = day_range(t) {
            if last.is_none_or(|(d, _)| l > d) {
                last = Some((l, t));
            }
        }
    }
    if let Some((l, t)) = last {
        if as_of > day(l) {
            return Err(format!(
                "as-of {as_of} is after the sources' last event ({}, in table {t} of {source_uri}): features would be computed from data that has not arrived yet{why_past}. Use --as-of {} or earlier, wait for the producers' data, or pass --allow-as-of-past-data if this is intended",
                day(l),
                day(l)
            ));
        }
    }
    Ok(())
}
