//! A small UBJSON (Universal Binary JSON, draft 12) reader, enough for the files xgboost's
//! `Booster.save_model` writes: objects, arrays (plain and the optimised `$type#count` form),
//! big-endian integers and floats, strings. Values come out as `serde_json::Value` so the
//! JSON and UBJSON loaders share one typed model description.

use serde_json::{Map, Number, Value};

/// Why a UBJSON document could not be read, with the byte offset where it went wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("UBJSON error at byte {offset}: {reason}")]
pub struct UbjsonError {
    pub offset: usize,
    pub reason: String,
}

/// Nesting deeper than this is refused rather than overflowing the stack.
const MAX_DEPTH: usize = 128;

/// Parses one UBJSON value from the start of `data` (trailing bytes are an error).
pub fn parse(data: &[u8]) -> Result<Value, UbjsonError> {
    let mut r = Reader { data, pos: 0 };
    let v = r.value(0)?;
    if r.pos != data.len() {
        return Err(r.err(format!(
            "{} trailing bytes after the document",
            data.len() - r.pos
        )));
    }
    Ok(v)
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn err(&self, reason: impl Into<String>) -> UbjsonError {
        UbjsonError {
            offset: self.pos,
            reason: reason.into(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], UbjsonError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.data.len())
            .ok_or_else(|| self.err(format!("unexpected end of data (wanted {n} bytes)")))?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, UbjsonError> {
        Ok(self.take(1)?[0])
    }

    fn peek(&self) -> Option<u8> {
        self.data.get(self.pos).copied()
    }

    /// Skips no-op markers and returns the next type marker.
    fn marker(&mut self) -> Result<u8, UbjsonError> {
        loop {
            let m = self.byte()?;
            if m != b'N' {
                return Ok(m);
            }
        }
    }

    fn int_of(&mut self, marker: u8) -> Result<i64, UbjsonError> {
        Ok(match marker {
            b'i' => self.byte()? as i8 as i64,
            b'U' => self.byte()? as i64,
            b'I' => i16::from_be_bytes(arr(self.take(2)?)) as i64,
            b'l' => i32::from_be_bytes(arr(self.take(4)?)) as i64,
            b'L' => i64::from_be_bytes(arr(self.take(8)?)),
            m => {
                self.pos -= 1;
                return Err(self.err(format!("expected an integer marker, found {:?}", m as char)));
            }
        })
    }

    fn length(&mut self) -> Result<usize, UbjsonError> {
        let m = self.marker()?;
        let n = self.int_of(m)?;
        let n = usize::try_from(n).map_err(|_| self.err(format!("negative length {n}")))?;
        // Every element takes at least one byte: a larger count is a corrupt file, and
        // refusing it early avoids a huge allocation.
        if n > self.data.len() - self.pos + 1 {
            return Err(self.err(format!("length {n} exceeds the remaining data")));
        }
        Ok(n)
    }

    fn string(&mut self) -> Result<String, UbjsonError> {
        let n = self.length()?;
        let start = self.pos;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| UbjsonError {
            offset: start,
            reason: "string is not valid UTF-8".into(),
        })
    }

    fn value(&mut self, depth: usize) -> Result<Value, UbjsonError> {
        let m = self.marker()?;
        self.value_of(m, depth)
    }

    fn value_of(&mut self, m: u8, depth: usize) -> Result<Value, UbjsonError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        Ok(match m {
            b'Z' => Value::Null,
            b'T' => Value::Bool(true),
            b'F' => Value::Bool(false),
            b'i' | b'U' | b'I' | b'l' | b'L' => Value::Number(Number::from(self.int_of(m)?)),
            b'd' => float(f32::from_be_bytes(arr(self.take(4)?)) as f64),
            b'D' => float(f64::from_be_bytes(arr(self.take(8)?))),
            b'C' => Value::String((self.byte()? as char).to_string()),
            b'S' => Value::String(self.string()?),
            b'H' => {
                let s = self.string()?;
                match s.parse::<f64>() {
                    Ok(f) => float(f),
                    Err(_) => return Err(self.err(format!("bad high-precision number {s:?}"))),
                }
            }
            b'[' => self.array(depth)?,
            b'{' => self.object(depth)?,
            m => {
                self.pos -= 1;
                return Err(self.err(format!("unknown type marker {:?} (0x{m:02x})", m as char)));
            }
        })
    }

    /// Reads the optional `$type` and `#count` header of a container.
    fn container_header(&mut self) -> Result<(Option<u8>, Option<usize>), UbjsonError> {
        let mut ty = None;
        if self.peek() == Some(b'$') {
            self.pos += 1;
            ty = Some(self.byte()?);
            if self.peek() != Some(b'#') {
                return Err(self.err("a typed container ('$') must give a count ('#')"));
            }
        }
        let mut count = None;
        if self.peek() == Some(b'#') {
            self.pos += 1;
            count = Some(self.length()?);
        }
        Ok((ty, count))
    }

    fn array(&mut self, depth: usize) -> Result<Value, UbjsonError> {
        let (ty, count) = self.container_header()?;
        let mut out = Vec::new();
        match (ty, count) {
            (Some(t), Some(n)) => {
                out.reserve(n);
                for _ in 0..n {
                    out.push(self.value_of(t, depth + 1)?);
                }
            }
            (None, Some(n)) => {
                out.reserve(n);
                for _ in 0..n {
                    out.push(self.value(depth + 1)?);
                }
            }
            _ => loop {
                let m = self.marker()?;
                if m == b']' {
                    break;
                }
                out.push(self.value_of(m, depth + 1)?);
            },
        }
        Ok(Value::Array(out))
    }

    fn object(&mut self, depth: usize) -> Result<Value, UbjsonError> {
        let (ty, count) = self.container_header()?;
        let mut map = Map::new();
        match count {
            Some(n) => {
                for _ in 0..n {
                    let k = self.string()?;
                    let v = match ty {
                        Some(t) => self.value_of(t, depth + 1)?,
                        None => self.value(depth + 1)?,
                    };
                    map.insert(k, v);
                }
            }
            None => loop {
                // Keys carry no 'S' marker, just the length; skip no-ops before them.
                while self.peek() == Some(b'N') {
                    self.pos += 1;
                }
                if self.peek() == Some(b'}') {
                    self.pos += 1;
                    break;
                }
                let k = self.string()?;
                let v = self.value(depth + 1)?;
                map.insert(k, v);
            },
        }
        Ok(Value::Object(map))
    }
}

fn arr<const N: usize>(s: &[u8]) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(s);
    a
}

/// JSON numbers cannot hold NaN or infinities; they become null (xgboost never stores them in
/// the fields c360 reads).
fn float(f: f64) -> Value {
    Number::from_f64(f)
        .map(Value::Number)
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(s: &str) -> Vec<u8> {
        let mut v = vec![b'i', s.len() as u8];
        v.extend_from_slice(s.as_bytes());
        v
    }

    #[test]
    fn parses_objects_typed_arrays_and_scalars() {
        let mut d = vec![b'{'];
        d.extend(key("a"));
        d.extend([b'[', b'$', b'd', b'#', b'i', 2]);
        d.extend(1.5f32.to_be_bytes());
        d.extend((-0.25f32).to_be_bytes());
        d.extend(key("b"));
        d.extend([b'S', b'U', 4]);
        d.extend(b"5E-1");
        d.extend(key("c"));
        d.extend([b'[', b'l']);
        d.extend((-7i32).to_be_bytes());
        d.extend([b'T', b'Z', b'L']);
        d.extend(300i64.to_be_bytes());
        d.push(b']');
        d.extend(key("e"));
        d.extend([b'[', b'#', b'U', 0]);
        d.push(b'}');
        let v = parse(&d).unwrap();
        assert_eq!(
            v,
            json!({"a": [1.5, -0.25], "b": "5E-1", "c": [-7, true, null, 300], "e": []})
        );
    }

    #[test]
    fn reports_truncation_and_bad_markers_with_offsets() {
        let e = parse(&[b'[', b'$', b'd', b'#', b'i', 3, 0, 0]).unwrap_err();
        assert!(e.reason.contains("unexpected end"), "{e}");
        let e = parse(&[b'{', b'i', 1, b'k', b'X']).unwrap_err();
        assert_eq!(e.offset, 4);
        assert!(e.reason.contains("unknown type marker"));
        let e = parse(&[b'[', b'#', b'L', 0x7f, 0, 0, 0, 0, 0, 0, 0]).unwrap_err();
        assert!(e.reason.contains("exceeds"), "{e}");
        let e = parse(b"TT").unwrap_err();
        assert!(e.reason.contains("trailing"));
    }
}
