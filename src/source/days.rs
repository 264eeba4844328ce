//! Day numbers: a date as the number of days since 1970-01-01 (`Int32`), the form every
//! timestamp of a source takes once normalised: the range a source's days may take. The
//! date <-> day number maths is [`AsOf`]'s.

use crate::names::AsOf;

/// The day number a timestamp column holds where a day is outside the supported dates
/// (see [`day_in_range`]); the contract checks report it.
pub(super) const DAY_OUT_OF_RANGE: i32 = i32::MIN;

/// The supported day numbers: chrono's dates (years -262143..262142), so that day
/// arithmetic against an as-of date never overflows an `Int32`.
pub(super) fn supported_days() -> (i64, i64) {
    let day = |d: chrono::NaiveDate| AsOf::from(d).day_number() as i64;
    (day(chrono::NaiveDate::MIN), day(chrono::NaiveDate::MAX))
}
