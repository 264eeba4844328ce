//! [`SourceError`]: every way reading a source can fail, naming table, column and file,
//! and [`escape_text`], which makes source-supplied text safe to show in a message.

use polars::prelude::PolarsError;

use crate::store::StoreError;

/// A contract violation or a read failure, naming table, column and an example. Every
/// source-supplied text (column names, values, file names, reader messages) is shown
/// through [`escape_text`]: control and invisible characters appear escaped, never raw.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source {}: table {table} not found (looked for {table}.parquet, {table}.csv and a folder {table}/)", escape_text(.source_uri))]
    MissingTable { source_uri: String, table: String },
    #[error("table {table} ({}): folder has no Parquet or CSV files", escape_text(.path))]
    EmptyFolder { table: String, path: String },
    /// polars could not read a file (or a folder's files) of the table.
    #[error("table {table}: cannot read {}: {cause}", escape_text(.path))]
    Unreadable {
        table: String,
        path: String,
        /// The cause, kept typed and chained as `source()`; its text is part of this
        /// error's message, so `cli::error_report` does not print it twice.
        #[source]
        cause: ReaderError,
    },
    /// The store could not list or fetch an object of the table.
    #[error("table {table}: cannot read {}: {}", escape_text(.path), escape_text(&.cause.to_string()))]
    Object {
        table: String,
        path: String,
        /// The cause, kept typed and chained as `source()`; its text is part of this
        /// error's message, so `cli::error_report` does not print it twice.
        #[source]
        cause: StoreError,
    },
    /// An object could not be written to the local cache.
    #[error("table {table}: cannot copy to the local cache {}: {cause}", escape_text(.path))]
    Cache {
        table: String,
        path: String,
        /// The cause, kept typed and chained as `source()`; its text is part of this
        /// error's message, so `cli::error_report` does not print it twice.
        #[source]
        cause: std::io::Error,
    },
    #[error("table {table}: missing column {} (the table has: {})", escape_text(.column), escape_text(.found))]
    MissingColumn {
        table: String,
        column: String,
        found: String,
    },
    #[error("table {table}: column {} has type {found}, which cannot be read as {expected}: {}", escape_text(.column), escape_text(.hint))]
    WrongType {
        table: String,
        column: String,
        found: String,
        expected: String,
        /// Why, and how the producer can fix the column.
        hint: String,
    },
    #[error("table {table}: files disagree on the type of column {}: {} has {}, {} has {}", escape_text(.column), escape_text(&.files[0].0), .files[0].1, escape_text(&.files[1].0), .files[1].1)]
    TypeDisagreement {
        table: String,
        column: String,
        /// The two files and the type each has (boxed: errors stay small on the Ok path).
        files: Box<[(String, String); 2]>,
    },
    #[error("table {table}, column {}: {count} row(s) {problem}; example: {}", escape_text(.column), escape_text(.example))]
    Violation {
        table: String,
        column: String,
        problem: String,
        count: u64,
        example: String,
    },
    #[error("table {table} ({}): {}", escape_text(.folder), escape_text(.message))]
    Partition {
        table: String,
        folder: String,
        message: String,
    },
    #[error("source {}: {}", escape_text(.source_uri), escape_text(.message))]
    BadSource { source_uri: String, message: String },
    /// The store of the source cannot be opened.
    #[error("source {}: {}", escape_text(.source_uri), escape_text(&.cause.to_string()))]
    Store {
        source_uri: String,
        /// The cause, kept typed and chained as `source()`; its text is part of this
        /// error's message, so `cli::error_report` does not print it twice.
        #[source]
        cause: StoreError,
    },
    /// A polars failure on the table's normalised frame.
    #[error("table {table}: {cause}")]
    Polars {
        table: String,
        /// The cause, kept typed and chained as `source()`; its text is part of this
        /// error's message, so `cli::error_report` does not print it twice.
        #[source]
        cause: ReaderError,
    },
}

/// A polars failure on source data, kept as the cause of a [`SourceError`]. It shows the
/// reader's message escaped (it quotes source text: file names, values); the
/// [`PolarsError`] itself is `.0` and its `source()`.
#[derive(Debug)]
pub struct ReaderError(pub PolarsError);

impl std::fmt::Display for ReaderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&escape_text(&self.0.to_string()))
    }
}

impl std::error::Error for ReaderError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl From<PolarsError> for ReaderError {
    fn from(e: PolarsError) -> Self {
        ReaderError(e)
    }
}

/// The result of a source operation.
pub type Result<T, E = SourceError> = std::result::Result<T, E>;

/// Whether a character is a control (Cc), format (Cf), line (Zl) or paragraph (Zp)
/// separator character. The Cf list is Unicode 16's `General_Category=Cf`.
pub(super) fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{ad}'
                | '\u{600}'..='\u{605}'
                | '\u{61c}'
                | '\u{6dd}'
                | '\u{70f}'
                | '\u{890}'..='\u{891}'
                | '\u{8e2}'
                | '\u{180e}'
                | '\u{200b}'..='\u{200f}'
                | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2064}'
                | '\u{2066}'..='\u{206f}'
                | '\u{feff}'
                | '\u{fff9}'..='\u{fffb}'
                | '\u{110bd}'
                | '\u{110cd}'
                | '\u{13430}'..='\u{1343f}'
                | '\u{1bca0}'..='\u{1bca3}'
                | '\u{1d173}'..='\u{1d17a}'
                | '\u{e0001}'
                | '\u{e0020}'..='\u{e007f}'
        )
}

/// Source-supplied text (a column name, a value, a file name) made safe for a message:
/// control, format and separator characters are escaped as `char::escape_debug` does
/// (`\n`, `\0`, `\u{1b}`, `\u{202e}`), everything else is kept, so a message never
/// moves the terminal's cursor, clears it, reorders its text or starts a fake line.
pub(crate) fn escape_text(s: &str) -> String {
    if !s.chars().any(is_invisible) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_invisible(c) {
            match c {
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\0' => out.push_str("\\0"),
                _ => out.extend(c.escape_unicode()),
            }
        } else {
            out.push(c);
        }
    }
    out
}
