//! The data-reach check's days from Parquet footer statistics (`Source::ts_day_range`):
//! equal to the scan's days on a generated source, on files written without statistics
//! (which fall back to the scan), with null counts but no min/max, with all-null row
//! groups, with a zoned millisecond timestamp holding instants before 1970 (floored), with
//! a DATE column, on CSV; and the refusal of an as-of after the last event is the same
//! message either way.

use std::path::Path;

use c360::source::{self, ReachPath, Source};
use polars::prelude::*;

use crate::features::{assert_ok, c360};

const TABLES: [&str; 4] = ["customers", "orders", "interactions", "support_tickets"];

fn generated(customers: u32, seed: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = c360()
        .args(["generate", "--customers", &customers.to_string()])
        .args(["--seed", &seed.to_string(), "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_ok(&out);
    dir
}

fn read(path: &Path) -> DataFrame {
    ParquetReader::new(std::fs::File::open(path).unwrap())
        .finish()
        .unwrap()
}

fn write(path: &Path, df: &mut DataFrame, stats: StatisticsOptions, row_group: Option<usize>) {
    ParquetWriter::new(std::fs::File::create(path).unwrap())
        .with_statistics(stats)
        .with_row_group_size(row_group)
        .finish(df)
        .unwrap();
}

fn no_stats() -> StatisticsOptions {
    StatisticsOptions {
        min_value: false,
        max_value: false,
        distinct_count: false,
        null_count: false,
        binary_statistics_truncate_length: None,
    }
}

/// First and last day of a table's events.
type Days = Option<(i32, i32)>;

/// Each table's days by the default path and by the scan, and the path taken.
fn days(dir: &Path) -> Vec<(Days, Days, ReachPath)> {
    let src = Source::open(dir.to_str().unwrap()).unwrap();
    TABLES
        .iter()
        .map(|t| {
            let spec = source::table_spec(t).unwrap();
            let (d, path) = src.ts_day_range(spec);
            (d, src.ts_day_range_by_scan(spec), path)
        })
        .collect()
}

#[test]
fn footer_statistics_give_the_scans_days_and_files_without_them_fall_back() {
    let data = generated(400, 5);
    let with = days(data.path());
    for (t, (stats, scan, path)) in TABLES.iter().zip(&with) {
        assert_eq!(*path, ReachPath::Statistics, "{t}");
        assert!(scan.is_some(), "{t}: the generated table has events");
        assert_eq!(stats, scan, "{t}: statistics and scan agree");
    }
    // The generated days are the calendar the generator writes (2022..2024 / 2025).
    let (first, last) = with[2].0.unwrap();
    assert!(
        (18_993..=19_100).contains(&first) && (20_000..=20_090).contains(&last),
        "{first} {last}"
    );

    // Every file rewritten without statistics: the scan, the same days.
    for t in TABLES {
        let p = data.path().join(format!("{t}.parquet"));
        let mut df = read(&p);
        write(&p, &mut df, no_stats(), None);
    }
    let without = days(data.path());
    for (t, ((d, scan, path), (d0, _, _))) in TABLES.iter().zip(without.iter().zip(&with)) {
        assert_eq!(*path, ReachPath::Scan, "{t}: no statistics, so a scan");
        assert_eq!(d, scan, "{t}");
        assert_eq!(d, d0, "{t}: the same days as from the statistics");
    }

    // Null counts without min/max cannot be trusted either.
    let p = data.path().join("orders.parquet");
    let mut df = read(&p);
    let partial = StatisticsOptions {
        null_count: true,
        ..no_stats()
    };
    write(&p, &mut df, partial, None);
    let (d, path) = Source::open(data.path().to_str().unwrap())
        .unwrap()
        .ts_day_range(source::table_spec("orders").unwrap());
    assert_eq!(path, ReachPath::Scan);
    assert_eq!(d, with[1].0);
}

#[test]
fn zoned_units_negative_instants_and_all_null_row_groups_floor_like_the_scan() {
    let data = generated(200, 9);
    let p = data.path().join("interactions.parquet");
    let df = read(&p);
    let n = df.height();
    assert!(n > 300, "{n}");
    // Milliseconds in a zone, shifted so that some instants fall before 1970 at times
    // other than midnight (the UTC day floors), the first 100 rows null (a row group of
    // nulls only has no min/max) and small row groups.
    let shift_ms: i64 = 19_500 * 86_400_000 + 3_600_000 * 5 + 7;
    let mut df = df
        .lazy()
        .with_row_index("_i", None)
        .with_columns([when(col("_i").lt(lit(100u32)))
            .then(lit(NULL))
            .otherwise(
                col("event_ts")
                    .cast(DataType::Datetime(TimeUnit::Milliseconds, None))
                    .cast(DataType::Int64)
                    - lit(shift_ms),
            )
            .cast(DataType::Datetime(
                TimeUnit::Milliseconds,
                Some(
                    TimeZone::opt_try_new(Some("America/New_York"))
                        .unwrap()
                        .unwrap(),
                ),
            ))
            .alias("event_ts")])
        .collect()
        .unwrap()
        .drop("_i")
        .unwrap();
    write(&p, &mut df, StatisticsOptions::default(), Some(50));
    let spec = source::table_spec("interactions").unwrap();
    let src = Source::open(data.path().to_str().unwrap()).unwrap();
    let (d, path) = src.ts_day_range(spec);
    assert_eq!(path, ReachPath::Statistics);
    let (first, last) = d.unwrap();
    assert!(
        first < 0 && last < 1_000,
        "shifted before 1970: {first} {last}"
    );
    assert_eq!(d, src.ts_day_range_by_scan(spec));
    // The floor by hand: the smallest and largest instants, in whole days toward -inf.
    let ms = df
        .column("event_ts")
        .unwrap()
        .cast(&DataType::Int64)
        .unwrap();
    let ms = ms.i64().unwrap();
    let (lo, hi) = (ms.min().unwrap(), ms.max().unwrap());
    assert_eq!(
        (first as i64, last as i64),
        (lo.div_euclid(86_400_000), hi.div_euclid(86_400_000))
    );
    assert_ne!(lo % 86_400_000, 0, "not at midnight: the floor matters");

    // A DATE column: its day numbers as they are.
    let p = data.path().join("customers.parquet");
    let mut df = read(&p)
        .lazy()
        .with_columns([col("signup_ts").cast(DataType::Date)])
        .collect()
        .unwrap();
    write(&p, &mut df, StatisticsOptions::default(), Some(64));
    let spec = source::table_spec("customers").unwrap();
    let (d, path) = src.ts_day_range(spec);
    assert_eq!(path, ReachPath::Statistics);
    assert!(d.is_some());
    assert_eq!(d, src.ts_day_range_by_scan(spec));
}

#[test]
fn csv_is_scanned() {
    let data = generated(150, 3);
    let p = data.path().join("support_tickets.parquet");
    let stats = Source::open(data.path().to_str().unwrap())
        .unwrap()
        .ts_day_range(source::table_spec("support_tickets").unwrap());
    let mut df = read(&p);
    std::fs::remove_file(&p).unwrap();
    CsvWriter::new(std::fs::File::create(data.path().join("support_tickets.csv")).unwrap())
        .finish(&mut df)
        .unwrap();
    let (d, path) = Source::open(data.path().to_str().unwrap())
        .unwrap()
        .ts_day_range(source::table_spec("support_tickets").unwrap());
    assert_eq!(path, ReachPath::Scan);
    assert_eq!(d, stats.0);
}

#[test]
fn an_as_of_after_the_last_event_is_refused_with_the_same_message_either_way() {
    let data = generated(300, 11);
    let src = Source::open(data.path().to_str().unwrap()).unwrap();
    let last = TABLES[1..]
        .iter()
        .filter_map(|t| src.ts_day_range(source::table_spec(t).unwrap()).0)
        .map(|(_, l)| l)
        .max()
        .unwrap();
    let after = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap()
        + chrono::Duration::days(last as i64 + 1);
    let store = tempfile::tempdir().unwrap();
    let refuse = || {
        let out = c360()
            .args(["features", "build", "churn_signals", "--as-of"])
            .arg(after.to_string())
            .arg("--source")
            .arg(data.path())
            .arg("--store")
            .arg(store.path())
            .output()
            .unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let with = refuse();
    let last_day = after - chrono::Duration::days(1);
    assert!(
        with.contains("after the sources' last event")
            && with.contains(&format!("({last_day}, in table "))
            && with.contains(&format!("Use --as-of {last_day} or earlier")),
        "{with}"
    );
    for t in TABLES {
        let p = data.path().join(format!("{t}.parquet"));
        let mut df = read(&p);
        write(&p, &mut df, no_stats(), None);
    }
    assert_eq!(refuse(), with, "the scan refuses with the same message");
    // The last event's own day is accepted (by both paths).
    let ok = c360()
        .args(["features", "build", "churn_signals", "--as-of"])
        .arg(last_day.to_string())
        .arg("--source")
        .arg(data.path())
        .arg("--store")
        .arg(store.path())
        .output()
        .unwrap();
    assert_ok(&ok);
}
