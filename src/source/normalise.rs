//! Normalisation: the polars expression that turns each producer encoding of a
//! contract column into its contract type (see the table in the `source` module header),
//! and the raw checks a cast would otherwise hide.

use polars::prelude::*;

use super::contract::ColType;
use super::days::{supported_days, DAY_OUT_OF_RANGE};
use super::error::{Result, SourceError};

/// A check that must run on the raw values before normalisation hides the problem
/// (e.g. a csat of 4.5 that a cast to integer would truncate).
#[derive(Debug, Clone)]
pub(super) struct RawCheck {
    pub column: &'static str,
    pub problem: String,
    /// True on offending rows (evaluated on the normalised frame's raw input column).
    pub bad: Expr,
}

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Decimals of up to this many digits convert to Float64 by one division of two exact
/// floats (the unscaled integer is below 2^53, and 10^scale is exact for scale <= 22),
/// which IEEE rounds correctly; wider decimals go through their exact text, parsed with
/// correct rounding. Either way the result is the Float64 nearest to the exact value.
const DECIMAL_EXACT_DIGITS: usize = 15;

/// The Float64 nearest to the exact value of a DECIMAL column (see the module header).
fn decimal_to_f64(c: Expr, precision: usize, scale: usize) -> Expr {
    if precision <= DECIMAL_EXACT_DIGITS && scale <= 22 {
        c.cast(DataType::Float64)
    } else {
        c.cast(DataType::String).cast(DataType::Float64)
    }
}

/// True on the values of a DECIMAL column with a non-zero fraction. Exact: the decimal's
/// text shows every digit of its scale (`4.50`), so a whole value ends in `.` once its
/// trailing zeros are stripped.
fn decimal_has_fraction(c: Expr, scale: usize) -> Expr {
    if scale == 0 {
        return lit(false);
    }
    c.clone().is_not_null().and(
        c.cast(DataType::String)
            .str()
            .strip_chars_end(lit("0"))
            .str()
            .ends_with(lit("."))
            .not(),
    )
}

/// An Int64 day number as `Int32`, [`DAY_OUT_OF_RANGE`] outside the supported dates (a
/// plain cast would turn them into nulls, reported as missing values).
fn day_in_range(day: Expr) -> Expr {
    let (lo, hi) = supported_days();
    when(day.clone().lt(lit(lo)).or(day.clone().gt(lit(hi))))
        .then(lit(DAY_OUT_OF_RANGE))
        .otherwise(day)
        .cast(DataType::Int32)
}

/// True on the non-null values that a non-strict cast to Int64 turns into null (outside
/// the Int64 range).
fn overflows_int64(c: Expr) -> Expr {
    c.clone()
        .is_not_null()
        .and(c.cast(DataType::Int64).is_null())
}

/// How a producer can fix a column of a type the contract cannot read.
fn type_hint(ty: ColType, dt: &DataType) -> String {
    let why = match dt {
        DataType::Time => "a time of day has no date; ",
        DataType::Binary | DataType::BinaryOffset => "bytes are not text; ",
        DataType::Decimal(p, _) if *p > 38 => "DECIMAL precision above 38 is not supported; ",
        DataType::Decimal(_, s) if *s > 0 && ty == ColType::Str => {
            "a DECIMAL with a fraction is not an id; "
        }
        DataType::Duration(_) => "a duration is not a point in time; ",
        DataType::String if ty == ColType::Timestamp => {
            "text is not read as a timestamp (in CSV, write ISO 8601: 2024-01-31 or 2024-01-31T12:00:00Z); "
        }
        DataType::Struct(_) | DataType::List(_) | DataType::Array(_, _) => {
            "a nested value is not a single value; "
        }
        _ => "",
    };
    let how = match ty {
        ColType::Str => {
            "write it as text (string, large_string, string_view, or a dictionary/category of strings) or as whole numbers (integers or DECIMAL(p,0))"
        }
        ColType::Timestamp => {
            "write it as a timestamp (any unit; any time zone, the instant is read in UTC) or as a date"
        }
        ColType::Float => "write it as numbers (floats, integers or DECIMAL(p,s))",
        ColType::Int => {
            "write it as whole numbers (integers, or floats or DECIMAL(p,s) holding whole values)"
        }
        ColType::Bool => "write it as booleans",
    };
    format!("{why}{how}")
}

/// The normalising expression of one contract column, and a raw check if the cast can hide
/// bad values. Conversion rules, by contract type (anything else is a [`SourceError::WrongType`]
/// that names the type and how to fix it):
///
/// - Utf8: text of any Arrow encoding (string, large_string, string_view); dictionary,
///   categorical and enum text as its values; integers and DECIMAL(p,0) as the integer's
///   decimal text (`1001`); an all-null column as nulls.
/// - Datetime: a timestamp of any unit and time zone as the UTC day of its instant (the
///   physical value is UTC); INT96 (read as ns) alike; date32 and date64 as their day.
/// - Float64: floats (float16/32 widen exactly), integers, and DECIMAL(p,s) as the Float64
///   nearest to the exact decimal value ([`decimal_to_f64`]).
/// - Int64: integers (a value outside the Int64 range is an error), floats and
///   DECIMAL(p,s) only when every value is whole (else an error with an example row).
/// - Boolean: booleans.
pub(super) fn normalise(
    table: &str,
    name: &'static str,
    ty: ColType,
    dt: &DataType,
) -> Result<(Expr, Option<RawCheck>)> {
    let c = polars::prelude::col(name);
    let wrong = || SourceError::WrongType {
        table: table.into(),
        column: name.into(),
        found: dt.to_string(),
        expected: ty.name().into(),
        hint: type_hint(ty, dt),
    };
    Ok(match ty {
        ColType::Str => match dt {
            DataType::String => (c, None),
            DataType::Null => (c.cast(DataType::String), None),
            DataType::Categorical(..) | DataType::Enum(..) => (c.cast(DataType::String), None),
            d if d.is_integer() => (c.cast(DataType::String), None),
            // Scale 0: the unscaled integer is the id (its text has no point).
            DataType::Decimal(p, 0) if *p <= 38 => (c.cast(DataType::String), None),
            _ => return Err(wrong()),
        },
        ColType::Timestamp => match dt {
            // Physical values of a Datetime are UTC instants whatever the time zone, so
            // the UTC day is a floor division of the physical value.
            DataType::Datetime(unit, _) => {
                let per_day = match unit {
                    TimeUnit::Nanoseconds => MICROS_PER_DAY * 1000,
                    TimeUnit::Microseconds => MICROS_PER_DAY,
                    TimeUnit::Milliseconds => MICROS_PER_DAY / 1000,
                };
                (
                    day_in_range(c.cast(DataType::Int64).floor_div(lit(per_day))),
                    None,
                )
            }
            DataType::Date => (day_in_range(c.cast(DataType::Int64)), None),
            DataType::Null => (c.cast(DataType::Int32), None),
            _ => return Err(wrong()),
        },
        ColType::Float => match dt {
            DataType::Float64 => (c, None),
            DataType::Null => (c.cast(DataType::Float64), None),
            DataType::Decimal(p, s) if *p <= 38 => (decimal_to_f64(c, *p, *s), None),
            d if d.is_primitive_numeric() => (c.cast(DataType::Float64), None),
            _ => return Err(wrong()),
        },
        ColType::Int => match dt {
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32 => (c.cast(DataType::Int64), None),
            d if d.is_integer() => (
                c.clone().cast(DataType::Int64),
                Some(RawCheck {
                    column: name,
                    problem: "are outside the Int64 range".into(),
                    bad: overflows_int64(c),
                }),
            ),
            DataType::Null => (c.cast(DataType::Int64), None),
            DataType::Float16 | DataType::Float32 | DataType::Float64 => (
                c.clone().cast(DataType::Int64),
                Some(RawCheck {
                    column: name,
                    problem: "are not whole numbers".into(),
                    bad: c.clone().is_not_null().and(
                        c.clone()
                            .neq(c.clone().floor())
                            .or(c.clone().is_nan())
                            .or(overflows_int64(c))
                            .fill_null(lit(false)),
                    ),
                }),
            ),
            DataType::Decimal(p, s) if *p <= 38 => (
                c.clone().cast(DataType::Int64),
                Some(RawCheck {
                    column: name,
                    problem: "are not whole numbers".into(),
                    bad: decimal_has_fraction(c.clone(), *s).or(overflows_int64(c)),
                }),
            ),
            _ => return Err(wrong()),
        },
        ColType::Bool => match dt {
            DataType::Boolean => (c, None),
            DataType::Null => (c.cast(DataType::Boolean), None),
            _ => return Err(wrong()),
        },
    })
}

/// An extra column (one a feature set names beyond the contract) as features read it:
/// dictionary text as text and DECIMAL as the nearest Float64, like the contract columns;
/// other types as stored.
pub(super) fn normalise_extra(name: &str, dt: &DataType) -> Expr {
    let c = polars::prelude::col(name);
    match dt {
        DataType::Categorical(..) | DataType::Enum(..) => c.cast(DataType::String),
        DataType::Decimal(p, s) if *p <= 38 => decimal_to_f64(c, *p, *s),
        _ => c,
    }
}

#[cfg(test)]
#[path = "normalise_tests.rs"]
mod tests;
