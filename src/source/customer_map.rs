//! [`CustomerMap`]: `customer_id -> row number` of the customers table, and the lookup
//! that gives every row of a referencing table its [`CUSTOMER_KEY`].

use polars::prelude::*;

use super::table::CUSTOMER_KEY;

/// `customer_id -> row number` of the customers table.
/// Ids of up to 12 bytes are keyed by their 16-byte string view, which holds the bytes
/// themselves (zero-padded): building and probing hash an integer, and a probe needs no
/// access to the string's bytes. They sit in an open-addressing table of row numbers
/// (4 bytes a slot, half full: 8 MB for a million customers, against 64 MB for a general
/// hash map of (view, row)), compared through `views`. Longer ids are keyed by their text.
#[derive(Default)]
pub(super) struct CustomerMap {
    /// Row numbers by view hash, linear probing; `EMPTY` marks a free slot.
    slots: Vec<u32>,
    long: PlHashMap<PlSmallStr, u32>,
    /// Each row's view (`u128::MAX`, which no id has, for a null id). Event tables often
    /// list customers in the customers table's order, so the row after the last one
    /// found is tried before the table.
    views: Vec<u128>,
}

impl CustomerMap {
    const EMPTY: u32 = u32::MAX;

    /// The map of the ids of a customers table, in row order.
    pub(super) fn build(ids: &StringChunked) -> CustomerMap {
        let mut views = Vec::with_capacity(ids.len());
        let mut long = PlHashMap::default();
        let mut row: u32 = 0;
        for arr in ids.downcast_iter() {
            let bin = arr.to_binview();
            for (v, id) in bin.views().iter().zip(arr.iter()) {
                views.push(match id {
                    Some(id) if v.length > 12 => {
                        long.entry(PlSmallStr::from_str(id)).or_insert(row);
                        u128::MAX
                    }
                    Some(_) => v.as_u128(),
                    None => u128::MAX,
                });
                row += 1;
            }
        }
        let size = (2 * views.len()).next_power_of_two().max(16);
        let mut m = CustomerMap {
            slots: vec![Self::EMPTY; size],
            long,
            views,
        };
        for (row, view) in m.views.iter().enumerate() {
            if *view == u128::MAX {
                continue;
            }
            let mut at = Self::slot(*view, size);
            loop {
                match m.slots[at] {
                    Self::EMPTY => {
                        m.slots[at] = row as u32;
                        break;
                    }
                    // The first row of a repeated id wins (ids are checked unique first).
                    r if m.views[r as usize] == *view => break,
                    _ => at = (at + 1) & (size - 1),
                }
            }
        }
        m
    }

    fn slot(view: u128, size: usize) -> usize {
        let x = (view as u64) ^ ((view >> 64) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let x = (x ^ (x >> 31)).wrapping_mul(0xD6E8_FEB8_6659_FD93);
        ((x ^ (x >> 32)) as usize) & (size - 1)
    }

    /// The row of an id of up to 12 bytes (its view) if it is the row after `row`.
    fn next_of(&self, row: u32, view: u128) -> Option<u32> {
        let next = row.checked_add(1)?;
        (self.views.get(next as usize) == Some(&view)).then_some(next)
    }

    fn get(&self, view: u128, len: u32, id: &str) -> Option<u32> {
        if len > 12 {
            return self.long.get(id).copied();
        }
        let size = self.slots.len();
        if size == 0 {
            return None;
        }
        let mut at = Self::slot(view, size);
        loop {
            match self.slots[at] {
                Self::EMPTY => return None,
                r if self.views[r as usize] == view => return Some(r),
                _ => at = (at + 1) & (size - 1),
            }
        }
    }
}

/// The [`CUSTOMER_KEY`] of every row of `ids`, or None when some id is null or not a
/// customer. Event tables are usually clustered by customer, so a run of equal ids costs
/// one lookup.
pub(super) fn customer_keys(
    ids: &Column,
    map: &CustomerMap,
) -> PolarsResult<Option<UInt32Chunked>> {
    use rayon::prelude::*;
    let ca = ids.str()?;
    if ca.null_count() > 0 {
        return Ok(None);
    }
    let pieces = pieces(ca);
    let keys: Option<Vec<Vec<u32>>> = pieces
        .par_iter()
        .map(|arr| piece_customer_keys(arr, map))
        .collect();
    let Some(keys) = keys else { return Ok(None) };
    let mut out = UInt32Chunked::from_vec(CUSTOMER_KEY.into(), Vec::new());
    for k in keys {
        out.append_owned(UInt32Chunked::from_vec(CUSTOMER_KEY.into(), k))?;
    }
    Ok(Some(out))
}

/// [`customer_keys`] of one piece.
#[inline(never)]
fn piece_customer_keys(
    arr: &<StringType as PolarsDataType>::Array,
    map: &CustomerMap,
) -> Option<Vec<u32>> {
    let mut out = Vec::with_capacity(arr.len());
    // Equal views are equal strings (same inline bytes, or the same bytes of the
    // same buffer); only a differing view needs the string.
    let bin = arr.to_binview();
    let mut prev: Option<(u128, &str, u32)> = None;
    for (i, v) in bin.views().iter().enumerate() {
        let raw = v.as_u128();
        let k = match prev {
            Some((p, _, k)) if p == raw => k,
            _ => {
                // SAFETY: i < arr.len().
                let id = unsafe { arr.value_unchecked(i) };
                let k = match prev {
                    Some((_, p, k)) if p == id => k,
                    Some((_, _, k)) if v.length <= 12 => match map.next_of(k, raw) {
                        Some(next) => next,
                        None => map.get(raw, v.length, id)?,
                    },
                    _ => map.get(raw, v.length, id)?,
                };
                prev = Some((raw, id, k));
                k
            }
        };
        out.push(k);
    }
    Some(out)
}

/// A string column cut into pieces of 64k values, for rayon.
pub(super) fn pieces(ca: &StringChunked) -> Vec<<StringType as PolarsDataType>::Array> {
    const PIECE: usize = 1 << 16;
    let mut pieces = Vec::new();
    for arr in ca.downcast_iter() {
        let mut off = 0;
        while off < arr.len() {
            let n = PIECE.min(arr.len() - off);
            pieces.push(arr.clone().sliced(off, n));
            off += n;
        }
    }
    pieces
}

#[cfg(test)]
#[path = "customer_map_tests.rs"]
mod tests;
