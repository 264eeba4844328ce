//! SageMaker's `DataProcessing` filters for CSV records: a JSONPath subset over the record's
//! fields. `$` keeps the record; `$[i]` one field; `$[i,j,...]` a list; `$[a:b]` a slice
//! (Python rules: `a` included, `b` excluded, either may be omitted, both clamp); indexes may
//! be negative (from the end) and unions mix them (`$[0,2:4,-1]`).
//!
//! Fields are split at commas outside double quotes and kept verbatim (quotes included), so
//! a filtered record is the same text as the input minus the dropped fields.

/// Why a filter expression or its application failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FilterError {
    #[error(
        "invalid filter {expr:?}: {reason} (examples: \"$\", \"$[1:]\", \"$[0,-1]\", \"$[2:5]\")"
    )]
    Syntax { expr: String, reason: String },
    #[error("filter {expr:?}: index {index} is out of range for a record of {fields} fields")]
    OutOfRange {
        expr: String,
        index: i64,
        fields: usize,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Index(i64),
    Slice(Option<i64>, Option<i64>),
}

/// A parsed filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    expr: String,
    /// `None` is `$`: the whole record.
    parts: Option<Vec<Part>>,
}

impl Filter {
    /// `$`: keeps everything.
    pub fn all() -> Filter {
        Filter {
            expr: "$".into(),
            parts: None,
        }
    }

    pub fn parse(expr: &str) -> Result<Filter, FilterError> {
        let bad = |reason: &str| FilterError::Syntax {
            expr: expr.to_string(),
            reason: reason.to_string(),
        };
        let e = expr.trim();
        if e == "$" || e == "$[*]" || e == "$[:]" {
            return Ok(Filter {
                expr: expr.to_string(),
                parts: None,
            });
        }
        let inner = e
            .strip_prefix("$[")
            .and_then(|r| r.strip_suffix(']'))
            .ok_or_else(|| bad("expected $ or $[...]"))?;
        if inner.trim().is_empty() {
            return Err(bad("empty brackets"));
        }
        let int = |s: &str| -> Result<Option<i64>, FilterError> {
            let s = s.trim();
            if s.is_empty() {
                Ok(None)
            } else {
                s.parse::<i64>()
                    .map(Some)
                    .map_err(|_| bad(&format!("{s:?} is not an integer index")))
            }
        };
        let mut parts = Vec::new();
        for p in inner.split(',') {
            if let Some((a, b)) = p.split_once(':') {
                if b.contains(':') {
                    return Err(bad("slice steps are not supported"));
                }
                parts.push(Part::Slice(int(a)?, int(b)?));
            } else {
                match int(p)? {
                    Some(i) => parts.push(Part::Index(i)),
                    None => return Err(bad("empty index in list")),
                }
            }
        }
        Ok(Filter {
            expr: expr.to_string(),
            parts: Some(parts),
        })
    }

    /// Whether this is `$` (keeps the record as is).
    pub fn is_all(&self) -> bool {
        self.parts.is_none()
    }

    pub fn expr(&self) -> &str {
        &self.expr
    }

    /// Applies the filter to one CSV record, appending the kept fields (comma-separated) to
    /// `out`.
    pub fn apply(&self, record: &[u8], out: &mut Vec<u8>) -> Result<(), FilterError> {
        let Some(parts) = &self.parts else {
            out.extend_from_slice(record);
            return Ok(());
        };
        let fields = split_fields(record);
        let n = fields.len() as i64;
        let mut first = true;
        let mut push = |f: &[u8], out: &mut Vec<u8>| {
            if !first {
                out.push(b',');
            }
            first = false;
            out.extend_from_slice(f);
        };
        for p in parts {
            match *p {
                Part::Index(i) => {
                    let j = if i < 0 { n + i } else { i };
                    if j < 0 || j >= n {
                        return Err(FilterError::OutOfRange {
                            expr: self.expr.clone(),
                            index: i,
                            fields: fields.len(),
                        });
                    }
                    push(fields[j as usize], out);
                }
                Part::Slice(a, b) => {
                    let clamp = |v: i64| (if v < 0 { n + v } else { v }).clamp(0, n);
                    let a = a.map_or(0, clamp);
                    let b = b.map_or(n, clamp);
                    for f in &fields[a as usize..b.max(a) as usize] {
                        push(f, out);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Splits a CSV record at commas outside double quotes.
pub(crate) fn split_fields(record: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, &b) in record.iter().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b',' if !quoted => {
                out.push(&record[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&record[start..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(expr: &str, rec: &str) -> Result<String, FilterError> {
        let mut out = Vec::new();
        Filter::parse(expr)?.apply(rec.as_bytes(), &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn filters_like_sagemaker_examples() {
        let r = "id7,1.5,2,,4";
        assert_eq!(run("$", r).unwrap(), r);
        assert_eq!(run("$[1:]", r).unwrap(), "1.5,2,,4");
        assert_eq!(run("$[0,-1]", r).unwrap(), "id7,4");
        assert_eq!(run("$[1:3]", r).unwrap(), "1.5,2");
        assert_eq!(run("$[0]", r).unwrap(), "id7");
        assert_eq!(run("$[-2]", r).unwrap(), "");
        assert_eq!(run("$[:-2]", r).unwrap(), "id7,1.5,2");
        assert_eq!(run("$[-2:]", r).unwrap(), ",4");
        assert_eq!(run("$[0, 2:4, -1]", r).unwrap(), "id7,2,,4");
        assert_eq!(run("$[3:1]", r).unwrap(), "");
        assert_eq!(run("$[1:100]", r).unwrap(), "1.5,2,,4");
        assert_eq!(run("$[0,1]", "\"a,b\",2").unwrap(), "\"a,b\",2");
    }

    #[test]
    fn rejects_bad_expressions_and_out_of_range_indexes() {
        for e in ["", "[1]", "$[", "$[]", "$[a]", "$[1:2:3]", "$[1,,2]", "$.x"] {
            assert!(
                matches!(Filter::parse(e), Err(FilterError::Syntax { .. })),
                "{e}"
            );
        }
        assert_eq!(
            run("$[5]", "a,b").unwrap_err(),
            FilterError::OutOfRange {
                expr: "$[5]".into(),
                index: 5,
                fields: 2
            }
        );
        assert!(run("$[-3]", "a,b").is_err());
        assert!(Filter::parse("$").unwrap().is_all());
        assert!(!Filter::parse("$[0]").unwrap().is_all());
    }
}
