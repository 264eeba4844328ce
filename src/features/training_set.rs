//! Training sets: reading a spine of `(customer_id, as_of)` rows, checking it against the
//! customers and the label's data, and computing each row's features as of its own date
//! (the spine mode of [`compile::plan`]) with the label, in customer batches (see
//! `batches`) so that memory follows the batch, not the spine.

use std::path::Path;
use std::time::Instant;

use polars::prelude::*;
use rayon::prelude::*;

use super::def::Label;
use super::{compile, customers_missing, perr, FeatureError, FeatureSet, Loaded, Result};
use crate::names::AsOf;
use crate::source::CUSTOMER_KEY;

mod batches;
mod order;
pub mod parquet;
mod workers;

pub use batches::{batch_size_from_env, BATCH_ENV, DEFAULT_BATCH_CUSTOMERS};
pub use order::TrainingRows;
pub use workers::{workers_from_env, DEFAULT_WORKERS, WORKERS_ENV};

/// Reads a spine file (Parquet or CSV) with `customer_id` and `as_of` columns.
pub fn read_spine(path: &Path) -> Result<DataFrame> {
    let p = path.display().to_string();
    let serr = |m: String| FeatureError::Spine {
        path: p.clone(),
        message: m,
    };
    let data = |what: &'static str| {
        let path = p.clone();
        move |source: PolarsError| FeatureError::SpineData {
            path: path.clone(),
            what,
            source,
        }
    };
    let pl_path = PlRefPath::new(p.clone());
    let lf = if path.extension().is_some_and(|e| e == "csv") {
        // Ids stay text, as in the sources' CSV reader: inference would read `00123` as 123.
        // Dates stay text too and are parsed as YYYY-MM-DD below: inference would also take
        // 04/05/2024 (and guess which is the day) or shift a zoned timestamp to another day.
        let text = Schema::from_iter([
            Field::new("customer_id".into(), DataType::String),
            Field::new("as_of".into(), DataType::String),
        ]);
        LazyCsvReader::new(pl_path)
            .with_has_header(true)
            .with_dtype_overwrite(Some(Arc::new(text)))
            .finish()
    } else {
        LazyFrame::scan_parquet(pl_path, ScanArgsParquet::default())
    }
    .map_err(data("cannot read: "))?;
    let df = lf.collect().map_err(data("cannot read: "))?;
    for c in ["customer_id", "as_of"] {
        if df.column(c).is_err() {
            return Err(serr(format!(
                "missing column {c} (a spine has customer_id and as_of columns; found {})",
                df.get_column_names()
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let id = df.column("customer_id").map_err(data(""))?;
    let id = match id.dtype() {
        DataType::String => id.clone(),
        d if d.is_integer() => id.cast(&DataType::String).map_err(data(""))?,
        d => {
            return Err(serr(format!(
                "customer_id has type {d}; expected text or integers"
            )))
        }
    };
    if df.height() == 0 {
        return Err(serr(
            "has no rows; a spine lists (customer_id, as_of) pairs, one per training row".into(),
        ));
    }
    let as_of = df.column("as_of").map_err(data(""))?;
    let day = match as_of.dtype() {
        DataType::Date => as_of.cast(&DataType::Int32),
        DataType::Datetime(_, _) => as_of
            .cast(&DataType::Date)
            .and_then(|c| c.cast(&DataType::Int32)),
        DataType::String => as_of
            .as_materialized_series()
            .str()
            .map_err(data(""))?
            .as_date(Some("%Y-%m-%d"), false)
            .map(|c| c.into_series().into_column())
            .and_then(|c| c.cast(&DataType::Int32)),
        d => {
            return Err(serr(format!(
                "as_of has type {d}; expected dates (YYYY-MM-DD)"
            )))
        }
    }
    .map_err(data("as_of: "))?;
    let out = DataFrame::new_infer_height(vec![
        id.with_name("customer_id".into()),
        day.with_name(compile::AS_OF.into()),
    ])
    .map_err(data(""))?;
    let nulls = out
        .column("customer_id")
        .map(|c| c.null_count())
        .unwrap_or(0)
        + out
            .column(compile::AS_OF)
            .map(|c| c.null_count())
            .unwrap_or(0);
    if nulls > 0 {
        // The first offending row (1 = the first data row) and its text, to find it.
        let bad = (0..out.height()).find(|&i| {
            out.columns()
                .iter()
                .any(|c| c.get(i).map(|v| v.is_null()).unwrap_or(true))
        });
        let example = bad.map_or(String::new(), |i| {
            let text = |c: Option<&Column>| {
                c.and_then(|c| c.get(i).ok())
                    .map(|v| v.to_string())
                    .unwrap_or_default()
            };
            format!(
                "; first at row {}: customer_id={}, as_of={}",
                i + 1,
                text(df.column("customer_id").ok()),
                // The offending row's own text, cast alone: casting every row's cost ~1 s
                // for millions of rows, on every spine, for this message.
                as_of
                    .slice(i as i64, 1)
                    .cast(&DataType::String)
                    .ok()
                    .and_then(|c| c.get(0).ok().map(|v| v.to_string()))
                    .unwrap_or_default()
            )
        });
        return Err(serr(format!(
            "{nulls} row(s) have a null or unparsable customer_id or as_of (dates are YYYY-MM-DD){example}"
        )));
    }
    Ok(out)
}

/// A training set: each spine row's features as of its own date, plus the label, in the
/// spine's row order: `customer_id`, `as_of` (Date), the set's output features, and the
/// label (Int64 0/1) when asked.
///
/// Computed in customer batches of [`DEFAULT_BATCH_CUSTOMERS`] (or the number in the
/// [`BATCH_ENV`] environment variable; `0` for one batch); see [`training_set_batched`].
///
/// Errors: an unknown label, a spine row whose customer is unknown or not signed up by its
/// date, a label whose horizon reaches past its table's data, a malformed [`BATCH_ENV`].
pub fn training_set(
    set: &FeatureSet,
    loaded: &Loaded,
    spine: &DataFrame,
    spine_name: &str,
    label: Option<&str>,
) -> Result<DataFrame> {
    let per_batch = batches::batch_size_from_env().map_err(|message| FeatureError::Polars {
        set: set.name.to_string(),
        message,
    })?;
    training_set_batched(set, loaded, spine, spine_name, label, per_batch)
}

/// [`training_set`] with an explicit batch size: `Some(n)` computes the spine `n`
/// customers at a time (each customer with all its spine rows, each batch reading only
/// its customers' rows of the tables), `None` in one batch. The result is the same, cell
/// for cell, whatever the batch size; peak memory follows the batch (the spine rows of
/// `n` customers, their rows of the tables), plus the tables and the output themselves.
/// Each batch runs on polars' streaming engine (as a snapshot's aggregates do), so the
/// table rows joined to each of their customer's dates flow through the filter and the
/// group-bys without being held all at once. `Some(0)` counts as `Some(1)`.
///
/// Batches are computed [`DEFAULT_WORKERS`] at once (or the number in the [`WORKERS_ENV`]
/// environment variable); see [`training_set_workers`]. Errors: as [`training_set`], and a
/// malformed [`WORKERS_ENV`].
pub fn training_set_batched(
    set: &FeatureSet,
    loaded: &Loaded,
    spine: &DataFrame,
    spine_name: &str,
    label: Option<&str>,
    batch_customers: Option<usize>,
) -> Result<DataFrame> {
    let workers = workers::workers_from_env().map_err(|message| FeatureError::Polars {
        set: set.name.to_string(),
        message,
    })?;
    training_set_workers(
        set,
        loaded,
        spine,
        spine_name,
        label,
        batch_customers,
        workers,
    )
}

/// [`training_set_batched`] with an explicit number of batches computed at once
/// (`workers`; 0 and 1 compute them one after the other, on the calling thread). The
/// result is the same, cell for cell, whatever the number; each batch in flight adds its
/// own working memory to the peak. Errors: as [`training_set`], and an internal error if
/// a batch panics (reported as an error, not a crash).
pub fn training_set_workers(
    set: &FeatureSet,
    loaded: &Loaded,
    spine: &DataFrame,
    spine_name: &str,
    label: Option<&str>,
    batch_customers: Option<usize>,
    workers: usize,
) -> Result<DataFrame> {
    let rows = training_rows(
        set,
        loaded,
        spine,
        spine_name,
        label,
        batch_customers,
        workers,
    )?;
    let t0 = Instant::now();
    let out = rows.into_frame().map_err(perr(set))?;
    tracing::debug!(
        set = %set.name,
        secs = t0.elapsed().as_secs_f64(),
        "training-set batches put back in spine order"
    );
    Ok(out)
}

/// [`training_set`]'s rows before they are put back in spine order, to be written
/// straight from the batches' outputs ([`TrainingRows::write_parquet`]) or put in order
/// ([`TrainingRows::into_frame`]). Batch size and workers from [`BATCH_ENV`] and
/// [`WORKERS_ENV`]. Errors: as [`training_set_batched`].
pub fn training_set_rows(
    set: &FeatureSet,
    loaded: &Loaded,
    spine: &DataFrame,
    spine_name: &str,
    label: Option<&str>,
) -> Result<TrainingRows> {
    let env = |message| FeatureError::Polars {
        set: set.name.to_string(),
        message,
    };
    let per_batch = batches::batch_size_from_env().map_err(env)?;
    let workers = workers::workers_from_env().map_err(env)?;
    training_rows(set, loaded, spine, spine_name, label, per_batch, workers)
}

fn training_rows(
    set: &FeatureSet,
    loaded: &Loaded,
    spine: &DataFrame,
    spine_name: &str,
    label: Option<&str>,
    batch_customers: Option<usize>,
    workers: usize,
) -> Result<TrainingRows> {
    let perr = perr(set);
    let label = match label {
        Some(l) => Some(set.label(l).ok_or_else(|| FeatureError::Label {
            label: l.into(),
            message: format!(
                "not defined in feature set {} (labels: {})",
                set.name,
                set.labels.iter().map(|l| l.name.as_str()).collect::<Vec<_>>().join(", ")
            ),
        })?),
        None => None,
    };
    let t0 = Instant::now();
    // The spine's customer keys; refuses unknown customers and ones not yet signed up.
    let keys = spine_keys(set, loaded, spine, spine_name)?;
    let keys_secs = t0.elapsed().as_secs_f64();
    if let Some(l) = label {
        check_label_reach(set, loaded, spine, l)?;
    }
    let reach_secs = t0.elapsed().as_secs_f64() - keys_secs;
    let inputs = loaded.inputs();
    let t1 = Instant::now();
    let population = population(set, &inputs, spine)?;
    let population_secs = t1.elapsed().as_secs_f64();
    let ranges = match batch_customers {
        Some(n) => batches::key_ranges(&keys, n),
        None => Vec::new(),
    };
    if ranges.len() <= 1 {
        let lf = compile::plan(
            set,
            &inputs,
            &compile::Mode::Spine(Box::new(spine.clone().lazy())),
            None,
            label,
            population.map(|p| p.lazy()),
            &compile::joined,
        )?;
        let frame = super::collect(lf).map_err(perr)?;
        return Ok(TrainingRows::new(frame, None));
    }
    let t1 = Instant::now();
    // The spine with its customer keys (so that the event sweep needs no join to find
    // them), its rows grouped by batch: a batch's rows keep their spine order, and the
    // groups' row numbers, batch after batch, are where each output row goes back.
    let keyed = spine
        .select(["customer_id", compile::AS_OF])
        .map_err(&perr)?
        .hstack(&[UInt32Chunked::from_vec(CUSTOMER_KEY.into(), keys).into_column()])
        .map_err(&perr)?;
    let spine_groups = batches::Grouped::from_frame(keyed, &ranges).map_err(&perr)?;
    // Each keyed table's rows grouped by batch once (the tables at once); a batch
    // gathers only its rows.
    let grouped = inputs
        .par_iter()
        .map(|(k, lf)| Ok((*k, batches::Grouped::new(lf, &ranges)?)))
        .collect::<PolarsResult<Vec<_>>>()
        .map_err(&perr)?;
    tracing::debug!(
        set = %set.name,
        keys_secs,
        reach_secs,
        population_secs,
        grouped_secs = t1.elapsed().as_secs_f64(),
        batches = ranges.len(),
        workers,
        "training-set batches prepared"
    );
    let t1 = Instant::now();
    let batch = |b: usize| -> Result<DataFrame> {
        let r = ranges[b];
        let part_spine = spine_groups.batch(b).map_err(&perr)?;
        let mut part_inputs = compile::Inputs::with_capacity(grouped.len());
        for (k, g) in &grouped {
            let lf = match g {
                Some(g) => g.batch(b).map_err(&perr)?,
                None => inputs.get(k).cloned().unwrap_or_default(),
            };
            part_inputs.insert(*k, lf);
        }
        let part_population = population
            .as_ref()
            .map(|p| p.clone().lazy().filter(r.contains()));
        let t0 = Instant::now();
        let lf = compile::plan(
            set,
            &part_inputs,
            &compile::Mode::Spine(Box::new(part_spine)),
            None,
            label,
            part_population,
            &compile::joined,
        )?;
        let plan_secs = t0.elapsed().as_secs_f64();
        let part = super::collect(lf).map_err(&perr)?;
        tracing::debug!(
            set = %set.name,
            keys_from = r.lo,
            keys_to = r.hi,
            plan_secs,
            secs = t0.elapsed().as_secs_f64(),
            "training-set batch"
        );
        Ok(part)
    };
    let parts = workers::run_in_order(ranges.len(), workers, batch, || {
        FeatureError::Polars {
        set: set.name.to_string(),
        message: "a training-set batch stopped on an internal error (a bug: report it with the spine; C360_TRAINING_WORKERS=1 computes the batches one after the other)".into(),
    }
    })?;
    tracing::debug!(
        set = %set.name,
        secs = t1.elapsed().as_secs_f64(),
        "training-set batches computed"
    );
    // Back to the spine's order: the batches' outputs keep their rows' spine order, and
    // the grouped spine lists those rows batch after batch.
    let pos =
        order::inverse(spine_groups.rows(), spine.height()).map_err(|m| FeatureError::Polars {
            set: set.name.to_string(),
            message: format!("{m} (a bug: report it with the spine)"),
        })?;
    drop(spine_groups);
    drop(grouped);
    let stacked = order::stack(parts).map_err(&perr)?;
    if stacked.height() != pos.len() {
        return Err(FeatureError::Polars {
            set: set.name.to_string(),
            message: format!(
                "the batches gave {} rows for {} spine rows (a bug: report it with the spine)",
                stacked.height(),
                pos.len()
            ),
        });
    }
    Ok(TrainingRows::new(stacked, Some(pos)))
}

/// The population scores of the set's quantile features at each distinct spine date
/// (a population snapshot per date, restricted to the features the scores read), kept
/// for the spine's (customer, date) pairs only: `CUSTOMER_KEY`, `_as_of`, the scores.
/// None when the set has no quantile feature.
fn population(
    set: &FeatureSet,
    inputs: &compile::Inputs,
    spine: &DataFrame,
) -> Result<Option<DataFrame>> {
    let perr = perr(set);
    let quant = compile::quantile_features(set);
    if quant.is_empty() {
        return Ok(None);
    }
    let dates = spine
        .column(compile::AS_OF)
        .map_err(&perr)?
        .as_materialized_series()
        .unique_stable()
        .map_err(&perr)?;
    let dates: Vec<i32> = dates.i32().map_err(&perr)?.into_no_null_iter().collect();
    let customers = inputs
        .get("customers")
        .cloned()
        .ok_or_else(|| customers_missing(set))?;
    let pairs = spine
        .clone()
        .lazy()
        .select([col("customer_id"), col(compile::AS_OF)])
        .unique(None, UniqueKeepStrategy::Any)
        .join(
            customers.select([col("customer_id"), col(CUSTOMER_KEY)]),
            [col("customer_id")],
            [col("customer_id")],
            JoinArgs::new(JoinType::Inner),
        )
        .select([col(CUSTOMER_KEY), col(compile::AS_OF)])
        .collect()
        .map_err(&perr)?;
    let mut out: Option<DataFrame> = None;
    for d in dates {
        let mut cols = vec![col(CUSTOMER_KEY), lit(d).alias(compile::AS_OF)];
        cols.extend(quant.iter().map(|q| col(q.as_str())));
        let one = compile::plan(
            set,
            inputs,
            &compile::Mode::Snapshot(d),
            Some(&quant),
            None,
            None,
            &compile::joined,
        )?
        .select(cols)
        .join(
            pairs.clone().lazy().filter(col(compile::AS_OF).eq(lit(d))),
            [col(CUSTOMER_KEY), col(compile::AS_OF)],
            [col(CUSTOMER_KEY), col(compile::AS_OF)],
            JoinArgs::new(JoinType::Semi),
        )
        .collect()
        .map_err(&perr)?;
        out = Some(match out {
            None => one,
            Some(mut o) => {
                o.vstack_mut_owned(one).map_err(&perr)?;
                o
            }
        });
    }
    Ok(out.map(|mut o| {
        o.rechunk_mut();
        o
    }))
}

/// The customer key of every spine row, in spine order, from one join of the spine with
/// the customers table; refuses a spine with a row whose customer is unknown or not yet
/// signed up on its date (the message counts them and shows the first such row), and a
/// customers table where a spine's customer matches several rows.
fn spine_keys(
    set: &FeatureSet,
    loaded: &Loaded,
    spine: &DataFrame,
    spine_name: &str,
) -> Result<Vec<u32>> {
    const BAD: &str = "_not_signed_up";
    let perr = perr(set);
    let customers = loaded
        .tables
        .get("customers")
        .ok_or_else(|| customers_missing(set))?;
    let mut args = JoinArgs::new(JoinType::Left);
    args.maintain_order = MaintainOrderJoin::Left;
    let joined = spine
        .clone()
        .lazy()
        .select([col("customer_id"), col(compile::AS_OF)])
        .join(
            customers.frame.clone().select([
                col("customer_id"),
                col("signup_ts"),
                col(CUSTOMER_KEY),
            ]),
            [col("customer_id")],
            [col("customer_id")],
            args,
        )
        .select([
            col(CUSTOMER_KEY),
            // Every spine row must name a customer signed up by its date.
            col("signup_ts")
                .is_null()
                .or(col("signup_ts").gt(col(compile::AS_OF)))
                .alias(BAD),
        ])
        .collect()
        .map_err(&perr)?;
    let bad = joined.column(BAD).map_err(&perr)?.bool().map_err(&perr)?;
    let bad_rows = bad.sum().unwrap_or(0) as usize;
    if bad_rows > 0 {
        // The first bad row; the spine's own when the join kept one row per spine row.
        let first = bad.iter().position(|b| b == Some(true)).unwrap_or(0);
        let (id, day) = if joined.height() == spine.height() {
            let id = spine
                .column("customer_id")
                .ok()
                .and_then(|c| c.get(first).ok())
                .map(|v| v.to_string())
                .unwrap_or_default();
            let day = spine
                .column(compile::AS_OF)
                .ok()
                .and_then(|c| c.get(first).ok())
                .and_then(|v| v.extract::<i32>())
                .map(|n| AsOf::from_day_number(n).date().to_string())
                .unwrap_or_default();
            (id, day)
        } else {
            (String::from("?"), String::from("?"))
        };
        return Err(FeatureError::Spine {
            path: spine_name.into(),
            message: format!(
                "{bad_rows} row(s) name a customer that is unknown or not yet signed up on the row's as_of; example: customer_id={id}, as_of={day}"
            ),
        });
    }
    let k = joined.column(CUSTOMER_KEY).map_err(&perr)?;
    if k.len() != spine.height() || k.null_count() > 0 {
        return Err(FeatureError::Polars {
            set: set.name.to_string(),
            message: format!(
                "the spine's customers do not each match one row of the customers table ({} spine rows, {} matches, {} unknown); check that customer_id is unique in customers",
                spine.height(),
                k.len(),
                k.null_count()
            ),
        });
    }
    Ok(k.u32().map_err(&perr)?.into_no_null_iter().collect())
}

/// Refuses a spine whose latest date plus the label's horizon lies past the label table's
/// last event: the label cannot be known yet.
fn check_label_reach(
    set: &FeatureSet,
    loaded: &Loaded,
    spine: &DataFrame,
    l: &Label,
) -> Result<()> {
    let perr = perr(set);
    let t = loaded
        .tables
        .get(l.table.name)
        .ok_or_else(|| FeatureError::Label {
            label: l.name.clone(),
            message: format!("table {} not loaded", l.table.name),
        })?;
    // A load cut to the spine recorded the whole table's last day before cutting.
    let max_day = match loaded.last_days.get(l.table.name) {
        Some(d) => *d,
        None => super::cut::last_day(t.frame.clone(), l.table.ts).map_err(&perr)?,
    };
    let latest = spine
        .column(compile::AS_OF)
        .ok()
        .and_then(|c| c.as_materialized_series().max::<i32>().ok().flatten());
    if let (Some(latest), Some(max_day)) = (latest, max_day) {
        if latest + l.horizon_days as i32 > max_day {
            return Err(FeatureError::Label {
                label: l.name.clone(),
                message: format!(
                    "needs data up to {} (as_of {} + {} days), but {} ends on {}; use an earlier as_of or wait for the data",
                    AsOf::from_day_number(latest + l.horizon_days as i32).date(),
                    AsOf::from_day_number(latest).date(),
                    l.horizon_days,
                    l.table.name,
                    AsOf::from_day_number(max_day).date()
                ),
            });
        }
    } else if latest.is_some() {
        return Err(FeatureError::Label {
            label: l.name.clone(),
            message: format!(
                "table {} has no rows, so the label cannot be known",
                l.table.name
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A CSV spine's ids are read as text: `0007` stays `0007` (it used to become `7`).
    #[test]
    fn csv_spine_ids_keep_leading_zeros() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("spine.csv");
        std::fs::write(&p, "customer_id,as_of\n0007,2024-06-30\n12,2024-05-01\n").unwrap();
        let df = read_spine(&p).unwrap();
        let ids: Vec<_> = df
            .column("customer_id")
            .unwrap()
            .str()
            .unwrap()
            .iter()
            .map(|v| v.unwrap().to_string())
            .collect();
        assert_eq!(ids, ["0007", "12"]);
    }
}
