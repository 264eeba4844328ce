//! [`AsOf`]: the date a run, a feature snapshot or a score is "as of", and its day
//! number (days since 1970-01-01), the form point-in-time features compute with.

use std::fmt;

use chrono::NaiveDate;

/// The first day of the day numbers.
const EPOCH: NaiveDate = match NaiveDate::from_ymd_opt(1970, 1, 1) {
    Some(d) => d,
    None => NaiveDate::MIN,
};

/// A refused as-of date: the text as given and chrono's reason, e.g. `"2024-13-01" is
/// not a date (input is out of range): write it as YYYY-MM-DD, e.g. 2024-06-30`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a date ({source}): write it as YYYY-MM-DD, e.g. 2024-06-30")]
pub struct AsOfError {
    /// The text as given.
    pub value: String,
    /// Why chrono refused it.
    #[source]
    pub source: chrono::ParseError,
}

/// An as-of date, written `YYYY-MM-DD` (what `chrono::NaiveDate` parses: the year, month
/// and day as numbers separated by `-`).
///
/// `Display`, serialization and deserialization all use `YYYY-MM-DD` (as `NaiveDate` does), so
/// JSON and TOML written with a `NaiveDate` field read the same with an `AsOf`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Deserialize)]
#[serde(try_from = "String")]
pub struct AsOf(NaiveDate);

impl AsOf {
    /// The as-of date `d`.
    pub fn new(d: NaiveDate) -> AsOf {
        AsOf(d)
    }

    /// Parses `YYYY-MM-DD`, or says what form is expected.
    pub fn parse(s: &str) -> Result<AsOf, AsOfError> {
        s.parse::<NaiveDate>()
            .map(AsOf)
            .map_err(|source| AsOfError {
                value: s.to_string(),
                source,
            })
    }

    /// Parses `YYYY-MM-DD` into the plain date (for clap's `value_parser`, so a bad
    /// `--as-of` names the form to write).
    pub fn parse_date(s: &str) -> Result<NaiveDate, AsOfError> {
        AsOf::parse(s).map(AsOf::date)
    }

    /// The date.
    pub fn date(self) -> NaiveDate {
        self.0
    }

    /// Days since 1970-01-01 (negative before it).
    pub fn day_number(self) -> i32 {
        (self.0 - EPOCH).num_days() as i32
    }

    /// The date of day number `n` (days since 1970-01-01). Day numbers beyond chrono's
    /// range (about 262,000 years) clamp to its first or last day.
    pub fn from_day_number(n: i32) -> AsOf {
        AsOf(
            EPOCH
                .checked_add_signed(chrono::Duration::days(n as i64))
                .unwrap_or(if n < 0 {
                    NaiveDate::MIN
                } else {
                    NaiveDate::MAX
                }),
        )
    }
}

impl From<NaiveDate> for AsOf {
    fn from(d: NaiveDate) -> AsOf {
        AsOf(d)
    }
}

impl From<AsOf> for NaiveDate {
    fn from(a: AsOf) -> NaiveDate {
        a.0
    }
}

impl PartialEq<NaiveDate> for AsOf {
    fn eq(&self, other: &NaiveDate) -> bool {
        self.0 == *other
    }
}

impl fmt::Display for AsOf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Padded like any string (`{:<12}` in tables); chrono's own Display ignores width.
        f.pad(&self.0.to_string())
    }
}

impl std::str::FromStr for AsOf {
    type Err = AsOfError;
    fn from_str(s: &str) -> Result<AsOf, AsOfError> {
        AsOf::parse(s)
    }
}

impl TryFrom<String> for AsOf {
    type Error = AsOfError;
    fn try_from(s: String) -> Result<AsOf, AsOfError> {
        AsOf::parse(&s)
    }
}

impl serde::Serialize for AsOf {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    #[test]
    fn day_numbers_count_from_1970() {
        for (date, n) in [
            ("1970-01-01", 0),
            ("1970-01-02", 1),
            ("1969-12-31", -1),
            ("2000-03-01", 11_017),
            ("2024-06-30", 19_904),
        ] {
            let a = AsOf::parse(date).unwrap();
            assert_eq!(a.day_number(), n, "{date}");
            assert_eq!(AsOf::from_day_number(n), a, "{n}");
        }
        // source::day_number / date_of_day, as they were: the same maths.
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
        for n in [-800_000, -1, 0, 59, 365, 19_904, 2_000_000] {
            let a = AsOf::from_day_number(n);
            assert_eq!(a.date(), epoch + chrono::Duration::days(n as i64));
            assert_eq!(a.day_number(), n);
        }
    }

    #[test]
    fn day_numbers_beyond_chrono_clamp() {
        assert_eq!(AsOf::from_day_number(i32::MAX).date(), NaiveDate::MAX);
        assert_eq!(AsOf::from_day_number(i32::MIN).date(), NaiveDate::MIN);
        // No overflow at chrono's ends either.
        let _ = AsOf::new(NaiveDate::MAX).day_number();
        let _ = AsOf::new(NaiveDate::MIN).day_number();
    }

    #[test]
    fn parses_and_shows_yyyy_mm_dd() {
        let a: AsOf = "2024-06-30".parse().unwrap();
        assert_eq!(a.date(), d("2024-06-30"));
        assert_eq!(a.to_string(), "2024-06-30");
        assert_eq!(AsOf::from(d("2024-02-29")).to_string(), "2024-02-29");
        assert_eq!(NaiveDate::from(a), d("2024-06-30"));
        assert!(AsOf::parse("2024-06-29").unwrap() < a);
        assert_eq!(a, d("2024-06-30"));
        assert_eq!(AsOf::parse_date("2024-06-30").unwrap(), d("2024-06-30"));
        assert!(AsOf::parse_date("2024-06-31").is_err());
    }

    #[test]
    fn a_bad_date_names_the_form_to_write() {
        for (bad, why) in [
            ("2024-13-01", "input is out of range"),
            ("2023-02-29", "input is out of range"),
            ("30/06/2024", "input contains invalid characters"),
            ("2024-06", "premature end of input"),
            ("", "premature end of input"),
            ("yesterday", "input contains invalid characters"),
            ("2024-06-30x", "trailing input"),
        ] {
            let e = AsOf::parse(bad).unwrap_err();
            assert_eq!(e.value, bad);
            assert_eq!(
                e.to_string(),
                format!("{bad:?} is not a date ({why}): write it as YYYY-MM-DD, e.g. 2024-06-30")
            );
            assert!(
                std::error::Error::source(&e).is_some(),
                "keeps chrono's error"
            );
        }
    }

    #[test]
    fn serde_matches_naive_date() {
        let a = AsOf::parse("2024-06-30").unwrap();
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(json, serde_json::to_string(&d("2024-06-30")).unwrap());
        assert_eq!(json, "\"2024-06-30\"");
        assert_eq!(serde_json::from_str::<AsOf>(&json).unwrap(), a);
        let e = serde_json::from_str::<AsOf>("\"2024-6-31\"").unwrap_err();
        assert!(e.to_string().contains("YYYY-MM-DD"), "{e}");
        assert!(serde_json::from_str::<AsOf>("5").is_err());
    }
}
