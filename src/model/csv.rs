//! `text/csv` payloads as the SageMaker XGBoost container takes them: no header, no label, one
//! record per line, numeric fields; an empty field is a missing value (NaN). Large payloads
//! are parsed in parallel, split at line boundaries.

use rayon::prelude::*;

use super::xgb::DenseMatrix;

/// Payloads above this size are parsed in parallel pieces.
const PARALLEL_BYTES: usize = 1 << 20;

/// Why a CSV payload could not be read, naming the line (1-based) and field (1-based).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CsvError {
    #[error("line {line}, field {field}: {value:?} is not a number")]
    NotANumber {
        line: usize,
        field: usize,
        value: String,
    },
    #[error("line {line} has {found} fields, expected {expected}")]
    FieldCount {
        line: usize,
        found: usize,
        expected: usize,
    },
}

/// Parses a CSV payload into a dense matrix. Lines that are empty (or only `\r`) are skipped;
/// every other line is a record and must have `cols` fields (`None`: as many as the first
/// record).
pub fn parse_csv(payload: &[u8], cols: Option<usize>) -> Result<DenseMatrix, CsvError> {
    if payload.len() < PARALLEL_BYTES {
        let mut data = Vec::new();
        let (rows, cols) = parse_piece(payload, 0, cols, &mut data)?;
        return Ok(DenseMatrix {
            data,
            rows,
            cols: cols.unwrap_or(0),
        });
    }
    // The first record fixes the width for the pieces when the caller did not.
    let cols = match cols {
        Some(c) => Some(c),
        None => {
            let first = payload
                .split(|&b| b == b'\n')
                .map(trim_cr)
                .find(|l| !l.is_empty())
                .unwrap_or(&[]);
            Some(first.split(|&b| b == b',').count())
        }
    };
    let pieces = split_at_lines(payload, rayon::current_num_threads().max(1) * 4);
    // Line numbers in errors must be absolute: count the lines before each piece.
    let mut first_line = Vec::with_capacity(pieces.len());
    let mut line = 0usize;
    for p in &pieces {
        first_line.push(line);
        line += memchr_count(p);
    }
    let parsed: Vec<Result<(Vec<f32>, usize), CsvError>> = pieces
        .par_iter()
        .zip(first_line.par_iter())
        .map(|(p, &l0)| {
            let mut data = Vec::new();
            let (rows, _) = parse_piece(p, l0, cols, &mut data)?;
            Ok((data, rows))
        })
        .collect();
    let mut data = Vec::with_capacity(
        parsed
            .iter()
            .map(|r| r.as_ref().map_or(0, |d| d.0.len()))
            .sum(),
    );
    let mut rows = 0;
    for r in parsed {
        let (d, n) = r?;
        data.extend_from_slice(&d);
        rows += n;
    }
    Ok(DenseMatrix {
        data,
        rows,
        cols: cols.unwrap_or(0),
    })
}

fn memchr_count(p: &[u8]) -> usize {
    p.iter().filter(|&&b| b == b'\n').count()
}

/// Splits `payload` into about `n` pieces, each ending just after a newline (or at the end).
pub(crate) fn split_at_lines(payload: &[u8], n: usize) -> Vec<&[u8]> {
    let target = payload.len().div_ceil(n.max(1)).max(1);
    let mut out = Vec::with_capacity(n + 1);
    let mut start = 0;
    while start < payload.len() {
        let mut end = (start + target).min(payload.len());
        while end < payload.len() && payload[end - 1] != b'\n' {
            end += 1;
        }
        out.push(&payload[start..end]);
        start = end;
    }
    out
}

fn trim_cr(l: &[u8]) -> &[u8] {
    l.strip_suffix(b"\r").unwrap_or(l)
}

/// Parses whole lines of `piece` (whose first line is line `line0 + 1` of the payload) into
/// `data`; returns the number of rows and the width.
fn parse_piece(
    piece: &[u8],
    line0: usize,
    mut cols: Option<usize>,
    data: &mut Vec<f32>,
) -> Result<(usize, Option<usize>), CsvError> {
    let mut rows = 0;
    for (line_no, line) in (line0 + 1..).zip(piece.split(|&b| b == b'\n')) {
        let line = trim_cr(line);
        if line.is_empty() {
            continue;
        }
        let before = data.len();
        for (fi, field) in line.split(|&b| b == b',').enumerate() {
            data.push(parse_field(field).ok_or_else(|| CsvError::NotANumber {
                line: line_no,
                field: fi + 1,
                value: String::from_utf8_lossy(field).chars().take(40).collect(),
            })?);
        }
        let found = data.len() - before;
        match cols {
            Some(c) if c != found => {
                return Err(CsvError::FieldCount {
                    line: line_no,
                    found,
                    expected: c,
                })
            }
            Some(_) => {}
            None => cols = Some(found),
        }
        rows += 1;
    }
    Ok((rows, cols))
}

/// One numeric field; empty (or blank) is missing. Accepts what Rust's float parser accepts
/// (`1`, `-2.5e-3`, `nan`, `inf`), surrounded by optional spaces.
#[inline]
fn parse_field(f: &[u8]) -> Option<f32> {
    let f = f.trim_ascii();
    if f.is_empty() {
        return Some(f32::NAN);
    }
    if let Some(v) = fast_decimal(f) {
        return Some(v);
    }
    std::str::from_utf8(f).ok()?.parse::<f32>().ok()
}

/// Exact powers of ten in f32 (all up to 1e10 are representable).
const POW10: [f32; 11] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10];

/// Clinger's fast path for plain decimals (`-12.345`, no exponent): when the digits form an
/// integer m <= 2^24 and there are at most 10 decimals, m and 10^k are exact f32s and one
/// IEEE division rounds the exact quotient correctly, so the result is bit-identical to a
/// full parser's. Anything else returns `None` (the caller uses the full parser).
#[inline]
fn fast_decimal(b: &[u8]) -> Option<f32> {
    let (neg, digits) = match b.first()? {
        b'-' => (true, &b[1..]),
        b'+' => (false, &b[1..]),
        _ => (false, b),
    };
    let mut m: u32 = 0;
    let mut frac = 0usize;
    let mut dot = false;
    let mut any = false;
    for &c in digits {
        match c {
            b'0'..=b'9' => {
                m = m * 10 + u32::from(c - b'0');
                if m > 1 << 24 {
                    return None;
                }
                frac += usize::from(dot);
                any = true;
            }
            b'.' if !dot => dot = true,
            _ => return None,
        }
    }
    if !any || frac >= POW10.len() {
        return None;
    }
    let v = m as f32 / POW10[frac];
    Some(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_missing_values_crlf_and_blank_lines() {
        let m = parse_csv(b"1,2.5,-3e-2\r\n,4,\n\n 5 ,nan,7\n", None).unwrap();
        assert_eq!((m.rows, m.cols), (3, 3));
        assert_eq!(&m.data[..3], &[1.0, 2.5, -0.03]);
        assert!(m.data[3].is_nan() && m.data[5].is_nan() && m.data[7].is_nan());
        assert_eq!((m.data[4], m.data[6], m.data[8]), (4.0, 5.0, 7.0));
        let empty = parse_csv(b"", Some(3)).unwrap();
        assert_eq!((empty.rows, empty.data.len()), (0, 0));
    }

    #[test]
    fn fast_path_is_bit_identical_to_the_full_parser() {
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut checked = 0;
        for _ in 0..200_000 {
            let r = next();
            // 1 to 9 digits: around the fast path's 2^24 limit on both sides.
            let digits = r % 10u64.pow(1 + ((r >> 50) % 9) as u32);
            let scale = (r >> 40) % 12;
            let mut s = digits.to_string();
            if scale > 0 && (scale as usize) < s.len() {
                s.insert(s.len() - scale as usize, '.');
            } else if scale > 0 {
                s = format!("0.{}{}", "0".repeat(scale as usize - s.len()), s);
            }
            if r & 1 == 1 {
                s.insert(0, '-');
            }
            let full: f32 = s.parse().unwrap();
            if let Some(fast) = fast_decimal(s.as_bytes()) {
                assert_eq!(fast.to_bits(), full.to_bits(), "{s}");
                checked += 1;
            }
        }
        assert!(checked > 10_000, "the fast path ran {checked} times");
        for s in ["1.", ".5", "-0", "007.25", "16777216", "0.0000000001"] {
            assert_eq!(
                fast_decimal(s.as_bytes()).map(f32::to_bits),
                Some(s.parse::<f32>().unwrap().to_bits()),
                "{s}"
            );
        }
        for s in [
            "",
            "-",
            ".",
            "1e5",
            "16777217",
            "1.2.3",
            "nan",
            "1,2",
            "0.00000000001",
        ] {
            assert_eq!(fast_decimal(s.as_bytes()), None, "{s}");
        }
    }

    #[test]
    fn errors_name_line_and_field() {
        assert_eq!(
            parse_csv(b"1,2\n3,x\n", None).unwrap_err(),
            CsvError::NotANumber {
                line: 2,
                field: 2,
                value: "x".into()
            }
        );
        assert_eq!(
            parse_csv(b"1,2\n\n3\n", None).unwrap_err(),
            CsvError::FieldCount {
                line: 3,
                found: 1,
                expected: 2
            }
        );
        assert!(matches!(
            parse_csv(b"1,2\n", Some(3)),
            Err(CsvError::FieldCount { expected: 3, .. })
        ));
    }

    #[test]
    fn parallel_parse_equals_serial_and_keeps_absolute_line_numbers() {
        let mut s = String::new();
        for i in 0..60_000 {
            s.push_str(&format!("{i},{}.25,,{}\n", i % 7, i as f32 / 3.0));
        }
        let big = parse_csv(s.as_bytes(), None).unwrap();
        assert_eq!((big.rows, big.cols), (60_000, 4));
        let mut serial = Vec::new();
        parse_piece(s.as_bytes(), 0, None, &mut serial).unwrap();
        assert_eq!(big.data.len(), serial.len());
        assert!(big
            .data
            .iter()
            .zip(&serial)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
        s.push_str("1,2,3,oops\n");
        assert_eq!(
            parse_csv(s.as_bytes(), None).unwrap_err(),
            CsvError::NotANumber {
                line: 60_001,
                field: 4,
                value: "oops".into()
            }
        );
    }
}
