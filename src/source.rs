//! Customer 360 sources: finding the tables, checking them against the input contract
//! (`customer360-tables.md`), and scanning them as polars LazyFrames.
//!
//! A table `T` is `<source>/T.parquet`, `<source>/T.csv` or a folder `<source>/T/` of
//! Parquet files (Hive partitions allowed). Tables are normalised on the way in: ids
//! become strings and every timestamp becomes its UTC calendar day as an `Int32` day
//! number (days since 1970-01-01), which is all that point-in-time features need.
//!
//! # Encodings producers write, and how each is read
//!
//! Every Arrow/Parquet type is either read by a documented rule or refused with a
//! [`SourceError::WrongType`] naming table, column, type and how to fix it (exit code 4).
//! Columns a feature set does not read are never decoded, whatever their type (DECIMAL,
//! struct, list, map, time, binary, float16, duration, ...).
//!
//! | contract type | read from | rule |
//! |---|---|---|
//! | Utf8 | string, large_string, string_view | as is |
//! | Utf8 | dictionary / categorical / enum of strings (pandas `category`) | its values |
//! | Utf8 (ids) | any integer, DECIMAL(p,0) | the integer's decimal text (`1001`) |
//! | Datetime | timestamp of any unit (s/ms/us/ns, INT96) and any time zone | UTC day of the instant (the physical value is UTC) |
//! | Datetime | date32, date64 | that day |
//! | Datetime | a day outside chrono's dates (years -262143..262142) | an error naming the row, not a null |
//! | Float64 | float16/32/64, any integer | widened (exact for floats and integers up to 2^53) |
//! | Float64 | DECIMAL(p,s), p <= 38 | the Float64 nearest to the exact decimal value |
//! | Int64 | any integer | as is; values outside Int64 are an error |
//! | Int64 | float, DECIMAL(p,s) | only if every value is whole, else "are not whole numbers" with an example row |
//! | Boolean | boolean | as is |
//! | any | all-null column | nulls |
//!
//! Refused, for example: time of day or duration for a Datetime, binary for text,
//! DECIMAL with a fraction for an id, struct/list for any contract column, text for a
//! number in Parquet.
//!
//! **DECIMAL money** (`orders.amount` as Spark's or a warehouse's DECIMAL(p,s)) becomes the
//! Float64 nearest to its exact value: for p <= 15 by one correctly rounded division of
//! two exact floats, wider through the decimal's exact text parsed with correct rounding.
//! Precision: a value of up to 15 significant digits round-trips exactly (its Float64
//! prints back as the same decimal); beyond that the relative error is at most 2^-53
//! (1.1e-16). Sums of amounts are Float64 sums, as for a float column.
//!
//! # Ids
//!
//! Id columns (`customer_id` of every table, `order_id`, `ticket_id`) may not be empty or
//! blank (only whitespace), nor hold a control character (Unicode Cc: C0 including
//! newline, tab and NUL, DEL, C1 such as NEL), an invisible format character (Unicode Cf:
//! zero-width space and joiners, bidi marks, overrides and isolates, BOM, soft hyphen,
//! Arabic letter mark …) or a line/paragraph separator (Zl, Zp): line-based consumers (the
//! batch transform's CSV) would split a record there, and an id that looks like another
//! would silently not match. Both the batched and the whole-table checks report it with
//! table, column and an example row (escaped).
//!
//! # Layout
//!
//! - `contract`: the four tables, their columns and rules ([`CONTRACT`]).
//! - `locate`: [`Source`], finding tables through the object store; fingerprints.
//! - `scan` and `normalise`: reading files with polars into a normalised [`Table`].
//! - `check`: the contract's value checks; `customer_map`: customer keys;
//!   `batched`: batched, trimmed loading.
//! - `reach`: the first and last day of a table's events (footer statistics, else a scan).
//! - `days`: day numbers; `error`: [`SourceError`].
//! - `glue`: `glue://<database>` sources, resolved through the Glue Data Catalog.

mod batched;
mod check;
mod contract;
mod customer_map;
mod days;
pub(crate) mod error;
pub mod glue;
mod locate;
mod normalise;
mod reach;
mod scan;
mod table;

pub use contract::{table_spec, ColType, ColumnSpec, Rule, TableSpec, CONTRACT};
pub use error::{ReaderError, Result, SourceError};
pub use locate::{Source, TableLocation};
pub use reach::ReachPath;
pub use table::{Table, CUSTOMER_KEY};
