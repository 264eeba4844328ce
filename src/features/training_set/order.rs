//! Putting a batched training set back in spine order: the batches' outputs stacked, and
//! every output column gathered through the inverse of the batches' spine row numbers,
//! several columns at once (rayon's pool: the gathers are memory-bound and independent).

use std::sync::Mutex;

use polars::prelude::*;
use rayon::prelude::*;

/// The stacked position of every spine row: `rows` lists, batch after batch, the spine
/// row number of each stacked output row; the result maps each spine row (0..`n`) to its
/// stacked row. One pass, no sort. `Err` (a message) when `rows` is not each of 0..`n`
/// exactly once.
pub fn inverse(rows: &[IdxSize], n: usize) -> Result<Vec<IdxSize>, String> {
    if rows.len() != n {
        return Err(format!(
            "the batches gave {} rows for {n} spine rows",
            rows.len()
        ));
    }
    let mut pos = vec![IdxSize::MAX; n];
    for (at, &r) in rows.iter().enumerate() {
        match pos.get_mut(r as usize) {
            Some(s) if *s == IdxSize::MAX => *s = at as IdxSize,
            _ => {
                return Err(format!(
                    "the batches gave spine row {r} twice or out of range ({n} spine rows)"
                ))
            }
        }
    }
    Ok(pos)
}

/// Stacks the batches' outputs (same columns, same types: one plan), one chunk each: not
/// rechunked, as putting them back into spine order gathers into new columns anyway.
pub fn stack(parts: Vec<DataFrame>) -> PolarsResult<DataFrame> {
    let mut it = parts.into_iter();
    let mut out = it.next().unwrap_or_default();
    for p in it {
        out.vstack_mut_owned(p)?;
    }
    Ok(out)
}

/// A training set's rows as the batches computed them, stacked, and where each spine row
/// lies among them: put in spine order by [`TrainingRows::into_frame`], or written in
/// spine order without a reordered copy by [`TrainingRows::write_parquet`].
pub struct TrainingRows {
    stacked: DataFrame,
    /// Output row `i` (spine row `i`) is stacked row `order[i]`; None: already in order.
    order: Option<Vec<IdxSize>>,
}

impl TrainingRows {
    /// Rows `stacked` put in the order `order` gives (None: as they are). The caller
    /// checks that `order` is a permutation of `stacked`'s rows ([`inverse`]).
    pub(super) fn new(stacked: DataFrame, order: Option<Vec<IdxSize>>) -> TrainingRows {
        TrainingRows { stacked, order }
    }

    /// The number of rows (= spine rows).
    pub fn height(&self) -> usize {
        self.order
            .as_ref()
            .map_or(self.stacked.height(), |o| o.len())
    }

    /// The number of columns.
    pub fn width(&self) -> usize {
        self.stacked.width()
    }

    /// The rows in spine order, every column gathered through the order, several columns
    /// at once (rayon's pool; each stacked column freed once gathered: the peak holds the
    /// output plus a few columns, not two copies). Errors are polars' (gathering).
    pub fn into_frame(self) -> PolarsResult<DataFrame> {
        let Some(pos) = self.order else {
            return Ok(self.stacked);
        };
        gather(self.stacked, pos)
    }

    /// Writes the rows in spine order to `w` as Parquet ([`super::parquet::write_parquet`]:
    /// Snappy, statistics, every thread); returns the file's size in bytes.
    pub fn write_parquet<W: std::io::Write>(&self, w: W) -> PolarsResult<u64> {
        super::parquet::write_parquet(&self.stacked, self.order.as_deref(), w)
    }
}

/// `stacked`'s columns gathered in the order `pos` gives ([`inverse`]): output row `i`
/// is stacked row `pos[i]`. Errors are polars' (gathering; `pos` out of bounds).
fn gather(stacked: DataFrame, pos: Vec<IdxSize>) -> PolarsResult<DataFrame> {
    let height = pos.len();
    let idx = IdxCa::from_vec("".into(), pos);
    // Owned columns handed to the pool one by one, each dropped after its gather.
    let cols: Vec<Mutex<Option<Column>>> = stacked
        .into_columns()
        .into_iter()
        .map(|c| Mutex::new(Some(c)))
        .collect();
    let gathered: PolarsResult<Vec<Column>> = cols
        .par_iter()
        .map(|c| {
            let c = c
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .unwrap_or_else(|| Column::new_empty("".into(), &DataType::Null));
            let g = c.take(&idx)?;
            drop(c);
            Ok(g)
        })
        .collect();
    let mut out = DataFrame::new(height, gathered?)?;
    // A no-op: each gathered column is one chunk.
    out.rechunk_mut();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inverse_maps_spine_rows_to_stacked_rows() {
        // Stacked rows hold spine rows 2, 0 (batch 1) then 3, 1 (batch 2).
        assert_eq!(inverse(&[2, 0, 3, 1], 4), Ok(vec![1, 3, 0, 2]));
        assert!(inverse(&[0, 0], 2).is_err());
        assert!(inverse(&[0, 5], 2).is_err());
        assert!(inverse(&[0], 2).is_err());
        assert_eq!(inverse(&[], 0), Ok(vec![]));
    }

    #[test]
    fn gather_puts_parts_back_in_order() {
        let a = df!("x" => [20i64, 0], "s" => ["c", "a"]).expect("frame");
        let b = df!("x" => [30i64, 10], "s" => ["d", "b"]).expect("frame");
        let pos = inverse(&[2, 0, 3, 1], 4).expect("permutation");
        let rows = TrainingRows::new(stack(vec![a, b]).expect("stack"), Some(pos));
        assert_eq!((rows.height(), rows.width()), (4, 2));
        let mut file = Vec::new();
        rows.write_parquet(&mut file).expect("write");
        let got = rows.into_frame().expect("gather");
        let want = df!("x" => [0i64, 10, 20, 30], "s" => ["a", "b", "c", "d"]).expect("frame");
        assert!(got.equals_missing(&want), "{got}");
        let read = ParquetReader::new(std::io::Cursor::new(file))
            .finish()
            .expect("read back");
        assert!(read.equals_missing(&want), "{read}");
        let bad = TrainingRows::new(df!("x" => [1i64]).expect("f"), Some(vec![0, 1]));
        assert!(bad.write_parquet(&mut Vec::new()).is_err());
        assert!(bad.into_frame().is_err());
    }
}
