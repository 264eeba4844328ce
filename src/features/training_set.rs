//! Training sets: reading a spine of `(customer_id, as_of)` rows, checking it against the
//! customers and the label's data, and computing each row's features as of its own date
//! (the spine mode of [`compile::plan`]) with the label.

use std::path::Path;

use polars::prelude::*;

use super::def::Label;
use super::{compile, customers_missing, perr, FeatureError, FeatureSet, Loaded, Result};
use crate::names::AsOf;
use crate::source;

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
        let ids = Schema::from_iter([Field::new("customer_id".into(), DataType::String)]);
        LazyCsvReader::new(pl_path)
            .with_has_header(true)
            .with_try_parse_dates(true)
            .with_dtype_overwrite(Some(Arc::new(ids)))
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
        return Err(serr(format!(
            "{nulls} row(s) have a null or unparsable customer_id or as_of (dates are YYYY-MM-DD)"
        )));
    }
    Ok(out)
}

/// A training set: each spine row's features as of its own date, plus the label.
pub fn training_set(
    set: &FeatureSet,
    loaded: &Loaded,
    spine: &DataFrame,
    spine_name: &str,
    label: Option<&str>,
) -> Result<DataFrame> {
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
    check_spine_customers(set, loaded, spine, spine_name)?;
    if let Some(l) = label {
        check_label_reach(set, loaded, spine, l)?;
    }
    let inputs = loaded.inputs();
    // Population scores per distinct date, for quantile features only.
    let quant = compile::quantile_features(set);
    let population = if quant.is_empty() {
        None
    } else {
        let dates = spine
            .column(compile::AS_OF)
            .map_err(&perr)?
            .as_materialized_series()
            .unique()
            .map_err(&perr)?;
        let dates: Vec<i32> = dates.i32().map_err(&perr)?.into_no_null_iter().collect();
        let mut parts = Vec::new();
        for d in dates {
            let mut cols = vec![col(source::CUSTOMER_KEY), lit(d).alias(compile::AS_OF)];
            cols.extend(quant.iter().map(|q| col(q.as_str())));
            let lf = compile::plan(
                set,
                &inputs,
                &compile::Mode::Snapshot(d),
                Some(&quant),
                None,
                None,
                &compile::joined,
            )?
            .select(cols);
            parts.push(lf);
        }
        Some(concat(parts, UnionArgs::default()).map_err(&perr)?)
    };
    let lf = compile::plan(
        set,
        &inputs,
        &compile::Mode::Spine(Box::new(spine.clone().lazy())),
        None,
        label,
        population,
        &compile::joined,
    )?;
    lf.collect().map_err(perr)
}

/// Refuses a spine with a row whose customer is unknown or not yet signed up on its date
/// (the message shows one such row).
fn check_spine_customers(
    set: &FeatureSet,
    loaded: &Loaded,
    spine: &DataFrame,
    spine_name: &str,
) -> Result<()> {
    let perr = perr(set);
    let customers = loaded
        .tables
        .get("customers")
        .ok_or_else(|| customers_missing(set))?;
    // Every spine row must name a customer signed up by its date.
    let bad = spine
        .clone()
        .lazy()
        .join(
            customers
                .frame
                .clone()
                .select([col("customer_id"), col("signup_ts")]),
            [col("customer_id")],
            [col("customer_id")],
            JoinArgs::new(JoinType::Left),
        )
        .filter(
            col("signup_ts")
                .is_null()
                .or(col("signup_ts").gt(col(compile::AS_OF))),
        )
        .collect()
        .map_err(&perr)?;
    if bad.height() > 0 {
        let id = bad
            .column("customer_id")
            .ok()
            .and_then(|c| c.get(0).ok())
            .map(|v| v.to_string())
            .unwrap_or_default();
        let day = bad
            .column(compile::AS_OF)
            .ok()
            .and_then(|c| c.get(0).ok())
            .and_then(|v| v.extract::<i32>())
            .map(|n| AsOf::from_day_number(n).date())
            .map(|d| d.to_string())
            .unwrap_or_default();
        return Err(FeatureError::Spine {
            path: spine_name.into(),
            message: format!(
                "{} row(s) name a customer that is unknown or not yet signed up on the row's as_of; example: customer_id={id}, as_of={day}",
                bad.height()
            ),
        });
    }
    Ok(())
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
    let max_day = t
        .frame
        .clone()
        .select([col(l.table.ts).max()])
        .collect()
        .map_err(&perr)?
        .column(l.table.ts)
        .ok()
        .and_then(|c| c.get(0).ok())
        .and_then(|v| v.extract::<i32>());
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
