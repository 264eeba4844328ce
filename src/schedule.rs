//! A job's schedule, parsed once: [`CronSchedule`] holds the cron expression (crontab as
//! people write it: 5 fields, or 6 with seconds first) and its IANA time zone. The
//! scheduler asks it for the next fire ([`CronSchedule::next_after`]); the product contract
//! asks it how often a new version is due ([`CronSchedule::nominal_interval`]).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, TimeZone, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

/// Why a schedule does not parse; each names the key of the job file it is about.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// `schedule` is not a cron expression c360 reads.
    #[error("{reason}")]
    Cron {
        /// The expression as written.
        expr: String,
        /// What is wrong, quoting the expression.
        reason: String,
    },
    /// `timezone` is not an IANA time zone.
    #[error("{tz:?} is not an IANA time zone (e.g. UTC, Europe/Berlin)")]
    TimeZone {
        /// The zone as written.
        tz: String,
    },
}

impl ScheduleError {
    /// The key of the job file the error is about (`schedule` or `timezone`).
    pub fn key(&self) -> &'static str {
        match self {
            ScheduleError::Cron { .. } => "schedule",
            ScheduleError::TimeZone { .. } => "timezone",
        }
    }
}

/// A parsed cron schedule in a time zone.
#[derive(Debug, Clone)]
pub struct CronSchedule {
    /// The expression as written, e.g. `0 6 * * MON`.
    pub expr: String,
    /// The zone the expression's times are in.
    pub tz: Tz,
    cron: Cron,
}

impl PartialEq for CronSchedule {
    fn eq(&self, other: &Self) -> bool {
        self.expr == other.expr && self.tz == other.tz
    }
}

/// Where [`CronSchedule::nominal_interval`] starts looking: a fixed instant, so that the
/// interval of a schedule never depends on when it is asked.
const INTERVAL_FROM: (i32, u32, u32) = (2024, 1, 1);
/// How many fires [`CronSchedule::nominal_interval`] looks at, at most (a schedule firing
/// every second would otherwise take 31 million steps).
const INTERVAL_MAX_FIRES: usize = 10_000;

impl CronSchedule {
    /// Parses `expr` (5 fields: minute hour day-of-month month day-of-week, or 6 with
    /// seconds first) in time zone `tz` (IANA name). Errors quote what was written and say
    /// how to write it.
    pub fn parse(expr: &str, tz: &str) -> Result<CronSchedule, ScheduleError> {
        let cron = parse_cron(expr)?;
        let tz = Tz::from_str(tz).map_err(|_| ScheduleError::TimeZone { tz: tz.into() })?;
        Ok(CronSchedule {
            expr: expr.to_string(),
            tz,
            cron,
        })
    }

    /// The first fire strictly after `t` (fires are on whole seconds); `None` when the
    /// expression never fires again.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        // croner keeps the start's fraction of a second; fires are on whole seconds.
        let t = t.trunc_subsecs(0);
        self.cron
            .find_next_occurrence(&t.with_timezone(&self.tz), false)
            .ok()
            .map(|d| d.with_timezone(&Utc).trunc_subsecs(0))
    }

    /// How long consumers may wait between two versions: the largest gap between
    /// consecutive fires over a year, measured on the local wall clock of the schedule's
    /// zone (so a daylight-saving change does not stretch a daily job to 25 hours).
    ///
    /// Precisely: the fires after 2024-01-01 00:00 local time, up to one year later plus the
    /// first fire after that, at most 10,000 of them; the interval is the largest gap between
    /// two consecutive ones. Daily → 1 day, weekly → 7 days, `0 6 1 * *` (monthly) → 31 days,
    /// hourly → 1 hour. A schedule that fires at most once in that span gets the gap to its
    /// next fire (`0 0 29 2 *`: four years); one that never fires twice, `None`.
    pub fn nominal_interval(&self) -> Option<Duration> {
        let (y, m, d) = INTERVAL_FROM;
        let start = self
            .tz
            .with_ymd_and_hms(y, m, d, 0, 0, 0)
            .earliest()?
            .with_timezone(&Utc);
        let end = start + chrono::Duration::days(366);
        let mut prev = self.next_after(start)?;
        let mut largest = chrono::Duration::zero();
        for _ in 0..INTERVAL_MAX_FIRES {
            let Some(next) = self.next_after(prev) else {
                break;
            };
            let local = |t: DateTime<Utc>| t.with_timezone(&self.tz).naive_local();
            largest = largest.max(local(next) - local(prev));
            if next > end {
                break;
            }
            prev = next;
        }
        let secs = largest.num_seconds();
        (secs > 0).then(|| Duration::from_secs(secs as u64))
    }

    /// [`CronSchedule::nominal_interval`] in whole days, rounded up, at least 1: the
    /// freshness a product's contract states (1 when the schedule never repeats).
    pub fn freshness_days(&self) -> u32 {
        match self.nominal_interval() {
            None => 1,
            Some(d) => d.as_secs().div_ceil(86_400).clamp(1, u64::from(u32::MAX)) as u32,
        }
    }
}

impl fmt::Display for CronSchedule {
    /// The expression as written (the zone is shown apart).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.expr)
    }
}

/// The one cron parser: as people write it (5 fields, or 6 with seconds first, no year).
fn parse_cron(s: &str) -> Result<Cron, ScheduleError> {
    let bad = |reason: String| ScheduleError::Cron {
        expr: s.to_string(),
        reason,
    };
    let fields = s.split_whitespace().count();
    if fields != 5 && fields != 6 {
        return Err(bad(format!(
            "{s:?} has {fields} fields; write minute hour day-of-month month day-of-week (optionally seconds first)"
        )));
    }
    CronParser::builder()
        .seconds(Seconds::Optional)
        .year(Year::Disallowed)
        .build()
        .parse(s)
        .map_err(|e| bad(format!("{s:?}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(expr: &str) -> CronSchedule {
        CronSchedule::parse(expr, "UTC").unwrap()
    }

    const DAY: u64 = 86_400;

    #[test]
    fn cron_shape() {
        assert!(CronSchedule::parse("0 6 * * MON", "UTC").is_ok());
        assert!(CronSchedule::parse("*/5 0 6 * * 1-5", "UTC").is_ok());
        assert!(CronSchedule::parse("0 6 * *", "UTC").is_err());
        assert!(CronSchedule::parse("0 6 * * $", "UTC").is_err());
        let e = CronSchedule::parse("61 6 * * MON", "UTC").unwrap_err();
        assert_eq!(e.key(), "schedule", "minute out of range");
        let e = CronSchedule::parse("0 6 * * MON", "Mars/Olympus").unwrap_err();
        assert_eq!(e.key(), "timezone");
        assert!(e.to_string().contains("\"Mars/Olympus\""), "{e}");
    }

    #[test]
    fn nominal_interval_of_common_schedules() {
        let n = |e: &str| s(e).nominal_interval().unwrap().as_secs();
        assert_eq!(n("0 6 * * *"), DAY, "daily");
        assert_eq!(n("0 6 * * MON"), 7 * DAY, "weekly");
        assert_eq!(n("0 6 1 * *"), 31 * DAY, "monthly: the longest month");
        assert_eq!(n("0 * * * *"), 3600, "hourly");
        assert_eq!(n("0 6 * * 1-5"), 3 * DAY, "weekdays: Friday to Monday");
        assert_eq!(n("*/2 * * * * *"), 2, "every other second");
        assert_eq!(n("0 0 29 2 *"), (366 + 3 * 365) * DAY, "leap days only");
        assert_eq!(s("0 6 1 * *").freshness_days(), 31);
        assert_eq!(s("0 6 * * MON").freshness_days(), 7);
        assert_eq!(s("0 * * * *").freshness_days(), 1);
        // Daylight saving does not stretch a day: local wall-clock gaps.
        let berlin = CronSchedule::parse("0 6 * * *", "Europe/Berlin").unwrap();
        assert_eq!(berlin.nominal_interval().unwrap().as_secs(), DAY);
        let weekly = CronSchedule::parse("0 6 * * MON", "Europe/Berlin").unwrap();
        assert_eq!(weekly.freshness_days(), 7);
    }

    #[test]
    fn next_fire_in_a_time_zone() {
        let t = |x: &str| x.parse::<DateTime<Utc>>().unwrap();
        let s = CronSchedule::parse("0 6 * * MON", "Europe/Berlin").unwrap();
        assert_eq!(
            s.next_after(t("2024-01-03T00:00:00Z")),
            Some(t("2024-01-08T05:00:00Z"))
        );
        assert_eq!(s.to_string(), "0 6 * * MON");
    }
}
