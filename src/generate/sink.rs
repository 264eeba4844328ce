//! One generated table's Parquet file, written row group by row group as customer chunks
//! arrive.
//!
//! Rows wait in a buffer until a whole row group of [`ROW_GROUP_ROWS`] rows is there, so
//! the row groups (and therefore the file's bytes) depend on the sequence of rows only,
//! never on how many customers each chunk held. The file is written as `NAME.parquet.tmp`
//! closed by [`TableSink::close`], and renamed to `NAME.parquet` by
//! [`TableSink::commit`]; a sink dropped before that removes its temporary file.

use std::fs::File;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use super::rows::Rows;
use super::GenError;

/// Rows in every row group of a generated table but the last (the row group size the
/// in-memory generator used; a table under this size is one row group, as before).
pub const ROW_GROUP_ROWS: usize = 1_000_000;

/// A table being written: its buffer of rows not yet in a row group, and the writer.
pub(crate) struct TableSink<R: Rows> {
    path: PathBuf,
    tmp: PathBuf,
    writer: Option<polars::io::parquet::write::BatchedWriter<File>>,
    pending: R,
    rows_written: usize,
    row_group_rows: usize,
    committed: bool,
}

impl<R: Rows> TableSink<R> {
    /// Creates `dir/NAME.parquet.tmp` with the table's schema. `row_group_rows` is at
    /// least 1.
    pub fn create(dir: &Path, name: &str, row_group_rows: usize) -> Result<Self, GenError> {
        let path = dir.join(format!("{name}.parquet"));
        let tmp = dir.join(format!("{name}.parquet.tmp"));
        let file = File::create(&tmp).map_err(|source| GenError::Write {
            path: tmp.display().to_string(),
            source,
        })?;
        let mut sink = TableSink {
            path,
            tmp,
            writer: None,
            pending: R::default(),
            rows_written: 0,
            row_group_rows: row_group_rows.max(1),
            committed: false,
        };
        let schema = R::default()
            .frame()
            .map_err(|e| sink.parquet_error(e))?
            .schema()
            .as_ref()
            .clone();
        let writer = ParquetWriter::new(file)
            .with_compression(ParquetCompression::Snappy)
            .batched(&schema)
            .map_err(|e| sink.parquet_error(e))?;
        sink.writer = Some(writer);
        Ok(sink)
    }

    fn parquet_error(&self, source: PolarsError) -> GenError {
        GenError::Parquet {
            path: self.tmp.display().to_string(),
            source,
        }
    }

    /// Appends `rows` after the rows already given and writes every whole row group.
    pub fn push(&mut self, rows: &mut R) -> Result<(), GenError> {
        self.pending.reserve(rows.len());
        self.pending.append(rows);
        while self.pending.len() >= self.row_group_rows {
            let group = self.pending.take_front(self.row_group_rows);
            self.write_group(group)?;
        }
        Ok(())
    }

    fn write_group(&mut self, group: R) -> Result<(), GenError> {
        let n = group.len();
        let df = group.frame().map_err(|e| self.parquet_error(e))?;
        let Some(writer) = self.writer.as_mut() else {
            return Ok(());
        };
        if let Err(e) = writer.write_batch(&df) {
            return Err(self.parquet_error(e));
        }
        self.rows_written += n;
        Ok(())
    }

    /// Writes the last (short) row group and the footer. Returns the table's row count.
    pub fn close(&mut self) -> Result<usize, GenError> {
        let last = std::mem::take(&mut self.pending);
        if last.len() > 0 {
            self.write_group(last)?;
        }
        if let Some(writer) = self.writer.take() {
            writer.finish().map_err(|e| self.parquet_error(e))?;
        }
        Ok(self.rows_written)
    }

    /// Renames the closed file into place.
    pub fn commit(mut self) -> Result<(), GenError> {
        std::fs::rename(&self.tmp, &self.path).map_err(|source| GenError::Write {
            path: self.path.display().to_string(),
            source,
        })?;
        self.committed = true;
        Ok(())
    }
}

impl<R: Rows> Drop for TableSink<R> {
    fn drop(&mut self) {
        // Not renamed into place: the generation failed, so its temporary file goes.
        if !self.committed {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}
