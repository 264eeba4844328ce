//! Data reach: the first and last UTC day of a table's event-time column, as the
//! data-reach check (`features::check_data_reach`) needs them before any table is loaded.
//!
//! The days come from the Parquet footers' row-group statistics (min/max of the timestamp
//! column) when every file has statistics that can be trusted, converted exactly as the
//! scan normalises the column ([`super::normalise`]): the physical value is a UTC instant
//! in the column's unit, its UTC day is a floor division by the unit's length of a day
//! (so negative instants floor), and a DATE is its day number. That is a footer read per
//! file instead of decoding every timestamp (37.5M for the 1M-customer interactions table).
//!
//! Anything else falls back to the scan (a lazy min/max over the normalised column), with
//! the reason in a debug log: CSV files, a file without statistics for the column (or with
//! only the deprecated `min`/`max` fields), a chunk whose statistics are partial or
//! inconsistent (min above max), a column type other than INT64 timestamp / INT32 date
//! (e.g. INT96), a unit that differs between the Parquet logical type and what polars reads,
//! a column taken from a partition folder, or a day outside the supported dates (the scan
//! maps those to a sentinel the contract checks report). Both paths give the same days.

use std::path::Path;

use polars::prelude::*;
use polars_parquet::parquet::metadata::FileMetadata;
use polars_parquet::parquet::schema::types::{
    PhysicalType, PrimitiveConvertedType, PrimitiveLogicalType, TimeUnit as PqUnit,
};
use polars_parquet::parquet::statistics::Statistics;

use super::contract::TableSpec;
use super::days::supported_days;
use super::locate::Source;
use super::scan::guard;
use super::table::Table;

/// How [`Source::ts_day_range`] found a table's days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReachPath {
    /// From the Parquet footers' row-group statistics.
    Statistics,
    /// From a scan of the column (the statistics were missing or could not be trusted).
    Scan,
}

const MILLIS_PER_DAY: i64 = 86_400_000;

impl Source {
    /// The first and last UTC day numbers (days since 1970-01-01) of `table`'s event-time
    /// column over all its rows, and how they were found. `None` days: the table cannot be
    /// read (left to the build, which reports it with the contract's errors) or holds no
    /// non-null timestamp. Equal to [`Source::ts_day_range_by_scan`] on every input.
    pub fn ts_day_range(&self, table: &'static TableSpec) -> (Option<(i32, i32)>, ReachPath) {
        let Ok(t) = self.scan(table, &[]) else {
            return (None, ReachPath::Scan);
        };
        match statistics_day_range(&t) {
            Ok(days) => {
                tracing::debug!(
                    table = table.name,
                    "data reach from the Parquet footers' statistics"
                );
                (days, ReachPath::Statistics)
            }
            Err(why) => {
                tracing::debug!(
                    table = table.name,
                    "data reach: scanning {} ({why})",
                    table.ts
                );
                (scan_day_range(&t), ReachPath::Scan)
            }
        }
    }

    /// [`Source::ts_day_range`] always by scanning the column (the reference the statistics
    /// path is tested against).
    pub fn ts_day_range_by_scan(&self, table: &'static TableSpec) -> Option<(i32, i32)> {
        scan_day_range(&self.scan(table, &[]).ok()?)
    }
}

/// The lazy min/max of the normalised event-time column (the day numbers features use).
fn scan_day_range(table: &Table) -> Option<(i32, i32)> {
    let ts = table.spec.ts;
    // Guarded like every source read: a damaged file must not panic here.
    let df = guard(|| {
        table
            .frame
            .clone()
            .select([col(ts).min().alias("first"), col(ts).max().alias("last")])
            .collect()
    })
    .ok()?;
    let get = |c: &str| -> Option<i32> { df.column(c).ok()?.i32().ok()?.get(0) };
    Some((get("first")?, get("last")?))
}

/// The days from every file's footer statistics, or why they cannot be used. `Ok(None)`:
/// no row holds a timestamp (as the scan's min/max of nothing).
fn statistics_day_range(table: &Table) -> Result<Option<(i32, i32)>, String> {
    let loc = &table.location;
    if loc.csv {
        return Err("CSV files have no statistics".into());
    }
    let mut range: Option<(i64, i64)> = None;
    for f in &loc.files {
        if let Some((lo, hi)) = file_day_range(f, table.spec.ts)? {
            range = Some(match range {
                Some((a, b)) => (a.min(lo), b.max(hi)),
                None => (lo, hi),
            });
        }
    }
    let Some((lo, hi)) = range else {
        return Ok(None);
    };
    let (min_day, max_day) = supported_days();
    if lo < min_day || hi > max_day {
        return Err(format!(
            "a day ({lo} or {hi}) is outside the supported dates"
        ));
    }
    // In range: both fit an i32 (the supported days do).
    match (i32::try_from(lo), i32::try_from(hi)) {
        (Ok(lo), Ok(hi)) => Ok(Some((lo, hi))),
        _ => Err("a day does not fit a day number".into()),
    }
}

/// One file's first and last day of column `ts` from its row-group statistics.
fn file_day_range(file: &Path, ts: &str) -> Result<Option<(i64, i64)>, String> {
    let shown = file.display();
    let meta: FileMetadata = guard(|| {
        let mut f = std::fs::File::open(file)?;
        polars_parquet::arrow::read::read_metadata(&mut f)
    })
    .map_err(|e| format!("{shown}: footer unreadable: {e}"))?;
    let schema = guard(|| polars_parquet::arrow::read::infer_schema(&meta))
        .map_err(|e| format!("{shown}: schema unreadable: {e}"))?;
    let Some(field) = schema.get(ts) else {
        return Err(format!(
            "{shown} lacks column {ts} (a partition folder holds it)"
        ));
    };
    // What polars reads the column as decides the conversion; the Parquet type must agree.
    let unit = match field.dtype() {
        ArrowDataType::Date32 => None,
        ArrowDataType::Timestamp(u, _) => Some(match u {
            ArrowTimeUnit::Millisecond => PqUnit::Milliseconds,
            ArrowTimeUnit::Microsecond => PqUnit::Microseconds,
            ArrowTimeUnit::Nanosecond => PqUnit::Nanoseconds,
            ArrowTimeUnit::Second => {
                return Err(format!("{shown}: {ts} is read in seconds"));
            }
        }),
        other => return Err(format!("{shown}: {ts} is read as {other:?}")),
    };
    let mut range: Option<(i64, i64)> = None;
    for rg in &meta.row_groups {
        let Some(chunk) = rg.parquet_columns().iter().find(|c| {
            c.descriptor().path_in_schema.len() == 1
                && c.descriptor().path_in_schema[0].as_str() == ts
        }) else {
            return Err(format!("{shown}: no column chunk for {ts}"));
        };
        let pt = &chunk.descriptor().descriptor.primitive_type;
        let per_day = match (unit, pt.physical_type) {
            (None, PhysicalType::Int32) if date_type(pt) => 1,
            (Some(u), PhysicalType::Int64) if timestamp_unit(pt) == Some(u) => match u {
                PqUnit::Milliseconds => MILLIS_PER_DAY,
                PqUnit::Microseconds => MILLIS_PER_DAY * 1_000,
                PqUnit::Nanoseconds => MILLIS_PER_DAY * 1_000_000,
            },
            _ => {
                return Err(format!(
                "{shown}: {ts} is stored as {:?} ({:?}), not a plain INT64 timestamp or INT32 date",
                pt.physical_type, pt.logical_type
            ))
            }
        };
        let rows = rg.num_rows() as i64;
        if rows == 0 {
            continue;
        }
        let stats = match chunk.statistics(&meta.footer_buf) {
            None => return Err(format!("{shown}: no statistics for {ts}")),
            Some(Err(e)) => return Err(format!("{shown}: statistics unreadable: {e}")),
            Some(Ok(s)) => s,
        };
        let (min, max, nulls) = match stats {
            Statistics::Int32(s) => (
                s.min_value.map(i64::from),
                s.max_value.map(i64::from),
                s.null_count,
            ),
            Statistics::Int64(s) => (s.min_value, s.max_value, s.null_count),
            _ => return Err(format!("{shown}: statistics of another type")),
        };
        match (min, max) {
            (Some(lo), Some(hi)) if lo <= hi => {
                let (lo, hi) = (lo.div_euclid(per_day), hi.div_euclid(per_day));
                range = Some(match range {
                    Some((a, b)) => (a.min(lo), b.max(hi)),
                    None => (lo, hi),
                });
            }
            // A chunk of nulls only has no min/max.
            (None, None) if nulls == Some(rows) => {}
            _ => {
                return Err(format!(
                    "{shown}: statistics of {ts} are partial or inconsistent (min {min:?}, max {max:?}, nulls {nulls:?} of {rows} rows)"
                ))
            }
        }
    }
    Ok(range)
}

fn date_type(pt: &polars_parquet::parquet::schema::types::PrimitiveType) -> bool {
    matches!(pt.logical_type, Some(PrimitiveLogicalType::Date))
        || (pt.logical_type.is_none()
            && matches!(pt.converted_type, Some(PrimitiveConvertedType::Date)))
}

fn timestamp_unit(pt: &polars_parquet::parquet::schema::types::PrimitiveType) -> Option<PqUnit> {
    match (pt.logical_type, pt.converted_type) {
        (Some(PrimitiveLogicalType::Timestamp { unit, .. }), _) => Some(unit),
        (None, Some(PrimitiveConvertedType::TimestampMillis)) => Some(PqUnit::Milliseconds),
        (None, Some(PrimitiveConvertedType::TimestampMicros)) => Some(PqUnit::Microseconds),
        _ => None,
    }
}
