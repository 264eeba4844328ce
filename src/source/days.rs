//! Day numbers: a date as the number of days since 1970-01-01 (`Int32`), the form every
//! timestamp of a source takes once normalised. One small place, so that the planned
//! `AsOf` newtype can take these over.

/// The day number a timestamp column holds where a day is outside the supported dates
/// (see [`day_in_range`]); the contract checks report it.
pub(super) const DAY_OUT_OF_RANGE: i32 = i32::MIN;

/// The supported day numbers: chrono's dates (years -262143..262142), so that day
/// arithmetic against an as-of date never overflows an `Int32`.
pub(super) fn supported_days() -> (i64, i64) {
    let day = |d: chrono::NaiveDate| day_number(d) as i64;
    (day(chrono::NaiveDate::MIN), day(chrono::NaiveDate::MAX))
}

/// Day number (days since 1970-01-01) of a date.
pub fn day_number(d: chrono::NaiveDate) -> i32 {
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    (d - epoch).num_days() as i32
}

/// The date of a day number.
/// Day numbers beyond chrono's range (about 262,000 years) clamp to its first or last day.
pub fn date_of_day(n: i32) -> chrono::NaiveDate {
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    epoch
        .checked_add_signed(chrono::Duration::days(n as i64))
        .unwrap_or(if n < 0 {
            chrono::NaiveDate::MIN
        } else {
            chrono::NaiveDate::MAX
        })
}
