//! CSV export of product rows that spreadsheets read as data, never as formulas (OWASP "CSV
//! Injection"): text cells that a spreadsheet would evaluate get a leading `'`.

use polars::prelude::*;

/// First characters that make a spreadsheet read a cell as a formula (OWASP, "CSV
/// Injection"): `=`, `+`, `-`, `@`, tab and carriage return, and the full-width (`＝＋－＠`)
/// and small-form (`﹦﹢﹣`) variants that spreadsheets fold to them.
const FORMULA_TRIGGERS: [char; 13] = [
    '=', '+', '-', '@', '\t', '\r', '\u{ff1d}', '\u{ff0b}', '\u{ff0d}', '\u{ff20}', '\u{fe66}',
    '\u{fe62}', '\u{fe63}',
];

/// Characters a spreadsheet may skip before it looks for a formula trigger: Unicode
/// whitespace (NBSP too), the BOM, zero-width characters, the word joiner and the bidi
/// marks and controls.
fn invisible_lead(c: char) -> bool {
    c.is_whitespace()
        || matches!(
            c,
            '\u{feff}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2060}'..='\u{2064}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
                | '\u{061c}'
                | '\u{180e}'
                | '\u{00ad}'
        )
}

/// Whether a text cell would be read as a formula: it starts with a trigger, or with one
/// after leading invisible characters (BOM, zero-width, bidi controls, NBSP, whitespace).
pub(crate) fn csv_formula_like(s: &str) -> bool {
    s.starts_with(FORMULA_TRIGGERS)
        || s.trim_start_matches(invisible_lead)
            .starts_with(FORMULA_TRIGGERS)
}

/// A text cell made inert for spreadsheets: one leading `'` when it would be read as a
/// formula ([`csv_formula_like`]); the quote shows in the cell, the text after it is the value.
pub(crate) fn csv_safe_cell(s: &str) -> std::borrow::Cow<'_, str> {
    if csv_formula_like(s) {
        std::borrow::Cow::Owned(format!("'{s}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

/// The page as it is exported to CSV: every text column (and the header) through
/// [`csv_safe_cell`]; typed numbers, dates and booleans as they are (a negative score stays
/// a number). RFC 4180 quoting is the writer's (`QuoteStyle::Necessary`).
pub(crate) fn csv_safe(page: &DataFrame) -> PolarsResult<DataFrame> {
    let mut cols = Vec::with_capacity(page.width());
    for c in page.columns() {
        let name = csv_safe_cell(c.name().as_str()).into_owned();
        let c = match c.dtype() {
            DataType::String | DataType::Categorical(..) | DataType::Enum(..) => {
                let text = c.cast(&DataType::String)?;
                let safe: StringChunked =
                    text.str()?.iter().map(|v| v.map(csv_safe_cell)).collect();
                safe.into_series().into_column()
            }
            _ => c.clone(),
        };
        cols.push(c.with_name(name.into()));
    }
    DataFrame::new(page.height(), cols)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_export_is_inert_in_spreadsheets_and_rfc4180_quoted() {
        let ids = [
            "=HYPERLINK(\"http://x\",\"y\")",
            "+1",
            "-2",
            "@SUM(A1)",
            "\tx",
            "\rx",
            "a,b",
            "a\"b",
            "C1",
        ];
        let mut df = df!(
            "customer_id" => ids,
            "score" => [-0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0],
            "=bad" => [-1i64, 0, 0, 0, 0, 0, 0, 0, 0],
        )
        .unwrap();
        df.with_column(
            df.column("customer_id")
                .unwrap()
                .cast(&DataType::from_categories(Categories::global()))
                .unwrap()
                .with_name("segment".into()),
        )
        .unwrap();
        let mut safe = csv_safe(&df).unwrap();
        let mut buf = Vec::new();
        CsvWriter::new(&mut buf)
            .include_header(true)
            .with_quote_style(QuoteStyle::Necessary)
            .finish(&mut safe)
            .unwrap();
        let text = String::from_utf8(buf).unwrap();
        let want = "customer_id,score,'=bad,segment\n\
            \"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\",-0.5,-1,\"'=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\"\n\
            '+1,1.0,0,'+1\n\
            '-2,2.0,0,'-2\n\
            '@SUM(A1),3.0,0,'@SUM(A1)\n\
            '\tx,4.0,0,'\tx\n\
            \"'\rx\",5.0,0,\"'\rx\"\n\
            \"a,b\",6.0,0,\"a,b\"\n\
            \"a\"\"b\",7.0,0,\"a\"\"b\"\n\
            C1,8.0,0,C1\n";
        assert_eq!(text, want);
        assert_eq!(csv_safe_cell("plain"), "plain");
        // Full-width and small-form triggers, and triggers after invisible leading chars.
        for s in [
            "\u{ff1d}1+1",
            "\u{ff0b}1",
            "\u{ff0d}1",
            "\u{ff20}SUM(A1)",
            "\u{fe66}1+1",
            "\u{fe62}1",
            "\u{fe63}1",
            "\u{feff}=1+1",
            "\u{200b}=1+1",
            "\u{200c}+1",
            "\u{200d}-1",
            "\u{2060}@x",
            "\u{202e}=1+1",
            "\u{202a}=1",
            "\u{2066}=1",
            "\u{2069}=1",
            "\u{a0}=1+1",
            " =1",
            "\u{3000}=1",
            "\u{2003}\u{feff}\u{202e}\u{ff1d}1",
            "\n=1",
        ] {
            assert_eq!(csv_safe_cell(s), format!("'{s}"), "{s:?}");
        }
        for s in ["\u{feff}plain", "\u{a0}x", " a=b", "a+b", "\u{ff21}"] {
            assert_eq!(csv_safe_cell(s), s, "{s:?}");
        }
        assert_eq!(csv_safe_cell(""), "");
    }
}
