//! Writing a training set to Parquet on every thread, in spine order, straight from the
//! batches' stacked outputs.
//!
//! polars' `ParquetWriter` encodes and compresses a file's pages on one thread (the pages
//! are made lazily while the file is written), about 1.7 s for 5.7M rows x 23 columns.
//! Here each (row group, column) is gathered in spine order, encoded and compressed as its
//! own task on rayon's pool, a few row groups at a time, and the finished row groups are
//! handed to polars' writer in order (`BatchedWriter::write_row_group`): the same encodings,
//! statistics and compression as `ParquetWriter`, the same row groups (512 x 512 rows),
//! and no reordered copy of the whole output is ever held.

use std::io::Write;

use polars::io::parquet::write::{get_encodings, BatchedWriter};
use polars::prelude::*;
use polars_parquet::write::{
    array_to_columns, CompressedPage, CompressionOptions, Compressor, Version, WriteOptions,
};
use rayon::prelude::*;

/// Rows a row group: polars' `ParquetWriter` default.
pub const ROW_GROUP_ROWS: usize = 512 * 512;

/// Row groups encoded at once: enough to keep every thread busy, few enough that only
/// their compressed pages (tens of MB) wait to be written.
const WINDOW: usize = 4;

/// Writes `frame`'s rows to `w` as Parquet (Snappy, statistics), in the order `order`
/// gives (output row `i` is `frame`'s row `order[i]`; `None`: as they are). `order` must
/// hold valid row numbers of `frame` (as [`super::order::inverse`] makes them); a wrong
/// one is polars' out-of-bounds error, not a panic. Returns the file's size in bytes.
pub fn write_parquet<W: Write>(
    frame: &DataFrame,
    order: Option<&[IdxSize]>,
    w: W,
) -> PolarsResult<u64> {
    write_groups(frame, order, w, ROW_GROUP_ROWS)
}

/// [`write_parquet`] with `group_rows` rows a row group (at least 1).
fn write_groups<W: Write>(
    frame: &DataFrame,
    order: Option<&[IdxSize]>,
    w: W,
    group_rows: usize,
) -> PolarsResult<u64> {
    let group_rows = group_rows.max(1);
    let height = order.map_or(frame.height(), |o| o.len());
    let compression = CompressionOptions::from(ParquetCompression::Snappy);
    let statistics = StatisticsOptions::default();
    let mut writer: BatchedWriter<W> = ParquetWriter::new(w)
        .with_compression(ParquetCompression::Snappy)
        .with_statistics(statistics)
        .batched(frame.schema())?;
    let fields = writer.parquet_schema().fields().to_vec();
    let arrow = frame.schema().to_arrow(CompatLevel::newest());
    let encodings = get_encodings(&arrow);
    let options = WriteOptions {
        statistics,
        version: Version::V1,
        compression,
        data_page_size: None,
    };
    let columns = frame.columns();
    if fields.len() != columns.len() || encodings.len() != columns.len() {
        polars_bail!(ComputeError: "the Parquet schema has {} columns for {} frame columns", fields.len(), columns.len());
    }
    let groups: Vec<(usize, usize)> = (0..height)
        .step_by(group_rows)
        .map(|a| (a, (a + group_rows).min(height)))
        .collect();
    for window in groups.chunks(WINDOW) {
        let tasks: Vec<(usize, usize)> = (0..window.len())
            .flat_map(|g| (0..columns.len()).map(move |c| (g, c)))
            .collect();
        let encoded = tasks
            .par_iter()
            .map(|&(g, c)| {
                let (a, b) = window[g];
                let part = match order {
                    Some(o) => columns[c].take_slice(&o[a..b])?,
                    None => columns[c].slice(a as i64, b - a),
                };
                let array = part
                    .as_materialized_series()
                    .rechunk()
                    .to_arrow(0, CompatLevel::newest());
                let mut pages: Vec<CompressedPage> = Vec::new();
                for leaf in array_to_columns(array, fields[c].clone(), options, &encodings[c])? {
                    for p in Compressor::new_from_vec(
                        leaf.map(|r| r.map_err(to_parquet)),
                        compression,
                        vec![],
                    ) {
                        pages.push(p?);
                    }
                }
                PolarsResult::Ok(pages)
            })
            .collect::<PolarsResult<Vec<Vec<CompressedPage>>>>()?;
        let mut it = encoded.into_iter();
        for &(a, b) in window {
            let rg: Vec<Vec<CompressedPage>> = it.by_ref().take(columns.len()).collect();
            writer.write_row_group((b - a) as u64, &rg)?;
        }
    }
    writer.finish()
}

fn to_parquet(e: PolarsError) -> polars_parquet::parquet::error::ParquetError {
    polars_parquet::parquet::error::ParquetError::FeatureNotSupported(format!(
        "reraised in polars: {e}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(file: Vec<u8>) -> DataFrame {
        ParquetReader::new(std::io::Cursor::new(file))
            .finish()
            .expect("read back")
    }

    /// Many row groups (more than one window), nulls, text, dates and floats, in a given
    /// order and as they are: read back equal to the frame gathered by polars.
    #[test]
    fn row_groups_in_windows_read_back_in_order() {
        let n = 103usize;
        let frame = df!(
            "id" => (0..n).map(|i| format!("c{i:04}")).collect::<Vec<_>>(),
            "v" => (0..n).map(|i| (i % 7 != 0).then_some(i as f64 / 3.0)).collect::<Vec<_>>(),
            "k" => (0..n as i64).collect::<Vec<_>>()
        )
        .expect("frame")
        .lazy()
        .with_column(
            col("k")
                .cast(DataType::Int32)
                .cast(DataType::Date)
                .alias("d"),
        )
        .collect()
        .expect("dates");
        // Stacked in two chunks, as batches are.
        let mut stacked = frame.slice(0, 40);
        stacked
            .vstack_mut_owned(frame.slice(40, n - 40))
            .expect("stack");
        let order: Vec<IdxSize> = (0..n as IdxSize).map(|i| (i * 37) % n as IdxSize).collect();
        let want = frame
            .take(&IdxCa::from_vec("".into(), order.clone()))
            .expect("take");
        for group in [1, 5, 10, 103, 1000] {
            let mut file = Vec::new();
            write_groups(&stacked, Some(&order), &mut file, group).expect("write");
            let got = read(file);
            assert!(got.equals_missing(&want), "groups of {group}: {got}");
            let mut file = Vec::new();
            write_groups(&stacked, None, &mut file, group).expect("write");
            assert!(
                read(file).equals_missing(&frame),
                "groups of {group}, as is"
            );
        }
        let empty = frame.slice(0, 0);
        let mut file = Vec::new();
        write_parquet(&empty, None, &mut file).expect("empty");
        assert_eq!(read(file).shape(), (0, 4));
    }
}
