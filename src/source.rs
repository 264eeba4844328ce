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

use std::path::{Path, PathBuf};

use polars::prelude::*;
use sha2::{Digest, Sha256};

use crate::store::ObjectStore as _;

/// The logical types of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColType {
    Str,
    Timestamp,
    Float,
    Int,
    Bool,
}

impl ColType {
    pub fn name(self) -> &'static str {
        match self {
            ColType::Str => "Utf8",
            ColType::Timestamp => "Datetime",
            ColType::Float => "Float64",
            ColType::Int => "Int64",
            ColType::Bool => "Boolean",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct ColumnSpec {
    pub name: &'static str,
    pub ty: ColType,
    pub nullable: bool,
    pub pii: bool,
    pub description: &'static str,
}

/// A value rule beyond the column type.
#[derive(Debug, Clone, Copy)]
pub enum Rule {
    OneOf(&'static str, &'static [&'static str]),
    NonNegativeFinite(&'static str),
    Range(&'static str, i64, i64),
}

#[derive(Debug, Clone, Copy)]
pub struct TableSpec {
    pub name: &'static str,
    /// The unique id column, if the table has one.
    pub key: Option<&'static str>,
    /// The event-time column that point-in-time filtering uses by default.
    pub ts: &'static str,
    pub columns: &'static [ColumnSpec],
    pub rules: &'static [Rule],
    /// Whether rows must reference an existing customer.
    pub references_customers: bool,
}

impl TableSpec {
    pub fn column(&self, name: &str) -> Option<&ColumnSpec> {
        self.columns.iter().find(|c| c.name == name)
    }
}

const fn col(name: &'static str, ty: ColType, nullable: bool) -> ColumnSpec {
    ColumnSpec {
        name,
        ty,
        nullable,
        pii: false,
        description: "",
    }
}

pub const ORDER_STATUSES: &[&str] = &["completed", "returned", "cancelled"];
pub const EVENT_TYPES: &[&str] = &[
    "web_visit",
    "app_login",
    "email_sent",
    "email_open",
    "email_click",
    "unsubscribe",
];

/// The input contract: the four Customer 360 tables.
pub const CONTRACT: &[TableSpec] = &[
    TableSpec {
        name: "customers",
        key: Some("customer_id"),
        ts: "signup_ts",
        columns: &[
            col("customer_id", ColType::Str, false),
            col("signup_ts", ColType::Timestamp, false),
            col("country", ColType::Str, true),
            col("segment", ColType::Str, true),
            ColumnSpec {
                name: "email",
                ty: ColType::Str,
                nullable: true,
                pii: true,
                description: "PII: never copied into a data product",
            },
            col("email_opt_in", ColType::Bool, true),
        ],
        rules: &[],
        references_customers: false,
    },
    TableSpec {
        name: "orders",
        key: Some("order_id"),
        ts: "order_ts",
        columns: &[
            col("order_id", ColType::Str, false),
            col("customer_id", ColType::Str, false),
            col("order_ts", ColType::Timestamp, false),
            col("amount", ColType::Float, false),
            col("status", ColType::Str, false),
            col("channel", ColType::Str, true),
        ],
        rules: &[
            Rule::NonNegativeFinite("amount"),
            Rule::OneOf("status", ORDER_STATUSES),
        ],
        references_customers: true,
    },
    TableSpec {
        name: "interactions",
        key: None,
        ts: "event_ts",
        columns: &[
            col("customer_id", ColType::Str, false),
            col("event_ts", ColType::Timestamp, false),
            col("event_type", ColType::Str, false),
        ],
        rules: &[Rule::OneOf("event_type", EVENT_TYPES)],
        references_customers: true,
    },
    TableSpec {
        name: "support_tickets",
        key: Some("ticket_id"),
        ts: "opened_ts",
        columns: &[
            col("ticket_id", ColType::Str, false),
            col("customer_id", ColType::Str, false),
            col("opened_ts", ColType::Timestamp, false),
            col("resolved_ts", ColType::Timestamp, true),
            col("category", ColType::Str, true),
            col("csat", ColType::Int, true),
        ],
        rules: &[Rule::Range("csat", 1, 5)],
        references_customers: true,
    },
];

pub fn table_spec(name: &str) -> Option<&'static TableSpec> {
    CONTRACT.iter().find(|t| t.name == name)
}

/// A contract violation or a read failure, naming table, column and an example. Every
/// source-supplied text (column names, values, file names, reader messages) is shown
/// through [`escape_text`]: control and invisible characters appear escaped, never raw.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source {}: table {table} not found (looked for {table}.parquet, {table}.csv and a folder {table}/)", escape_text(.source_uri))]
    MissingTable { source_uri: String, table: String },
    #[error("table {table} ({}): folder has no Parquet or CSV files", escape_text(.path))]
    EmptyFolder { table: String, path: String },
    #[error("table {table}: cannot read {}: {}", escape_text(.path), escape_text(.message))]
    Unreadable {
        table: String,
        path: String,
        message: String,
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
    #[error("table {table}: files disagree on the type of column {}: {} has {type_a}, {} has {type_b}", escape_text(.column), escape_text(.file_a), escape_text(.file_b))]
    TypeDisagreement {
        table: String,
        column: String,
        file_a: String,
        type_a: String,
        file_b: String,
        type_b: String,
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
    #[error("table {table}: {}", escape_text(.message))]
    Polars { table: String, message: String },
}

pub type Result<T, E = SourceError> = std::result::Result<T, E>;

/// Where a table's data is.
#[derive(Debug, Clone)]
pub struct TableLocation {
    pub table: &'static TableSpec,
    /// The file, or the folder for partitioned tables.
    pub path: PathBuf,
    pub files: Vec<PathBuf>,
    pub csv: bool,
    pub folder: bool,
}

/// A Customer 360 source: a folder on local disk, or an S3 prefix copied to a local cache.
#[derive(Debug, Clone)]
pub struct Source {
    pub uri: String,
    pub root: PathBuf,
    /// For S3 sources: each cached file's (size, ETag) as listed, so fingerprints are the
    /// objects' and identical on every machine.
    pub remote: Option<std::sync::Arc<Remote>>,
}

/// The listing of an S3 source and the store to fetch its objects from.
#[derive(Debug)]
pub struct Remote {
    store: crate::store::S3Store,
    /// Local cache path -> (object key, size, ETag).
    objects: std::collections::BTreeMap<PathBuf, (String, u64, String)>,
}

impl Source {
    pub fn open(uri: &str) -> Result<Source> {
        if uri.starts_with("s3://") {
            return Source::open_s3(uri);
        }
        let path = uri.strip_prefix("file://").unwrap_or(uri);
        let root = PathBuf::from(path);
        if !root.is_dir() {
            return Err(SourceError::BadSource {
                source_uri: uri.into(),
                message: format!(
                    "{} is not a folder; point --source (or [source] uri in c360.toml) at the folder holding customers, orders, interactions and support_tickets (`c360 generate --out DIR` makes one)",
                    root.display()
                ),
            });
        }
        Ok(Source {
            uri: uri.to_string(),
            root,
            remote: None,
        })
    }

    /// An S3 source: the contract's tables are listed through the S3 store (same endpoint,
    /// region, credentials and retries as every other S3 call) and copied, in parallel and
    /// only when their ETag changed, to a local cache that polars then scans with
    /// projection and predicate pushdown.
    fn open_s3(uri: &str) -> Result<Source> {
        let bad = |message: String| SourceError::BadSource {
            source_uri: uri.into(),
            message,
        };
        let settings = crate::aws::settings();
        // Reading never writes, so the KMS rule of the store does not apply here.
        let mut read_settings = (*settings).clone();
        read_settings.require_kms = false;
        let store =
            crate::store::S3Store::open(uri, &read_settings).map_err(|e| bad(e.to_string()))?;
        let cache_base = match &settings.cache_dir {
            Some(d) => PathBuf::from(d),
            None => std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
                .unwrap_or_else(std::env::temp_dir)
                .join("c360")
                .join("sources"),
        };
        let rest = uri.trim_start_matches("s3://").trim_end_matches('/');
        let root = cache_base.join(rest.replace('/', std::path::MAIN_SEPARATOR_STR));
        let mut objects = std::collections::BTreeMap::new();
        for o in store.list("").map_err(|e| bad(e.to_string()))? {
            let top = o.key.split('/').next().unwrap_or("");
            let wanted = CONTRACT.iter().any(|t| {
                top == t.name
                    || top == format!("{}.parquet", t.name)
                    || top == format!("{}.csv", t.name)
            });
            let hidden = o
                .key
                .split('/')
                .any(|c| c.starts_with('.') || c.starts_with('_'));
            if wanted && !hidden {
                objects.insert(
                    root.join(&o.key),
                    (o.key.clone(), o.size, o.version.clone()),
                );
            }
        }
        Ok(Source {
            uri: uri.to_string(),
            root,
            remote: Some(std::sync::Arc::new(Remote { store, objects })),
        })
    }

    /// Copies the given files of an S3 source to the local cache (in parallel; skipped when
    /// the cached copy has the listed ETag and size).
    fn fetch(&self, table: &str, files: &[PathBuf]) -> Result<()> {
        let Some(r) = &self.remote else { return Ok(()) };
        let mut todo = Vec::new();
        for f in files {
            let Some((key, size, etag)) = r.objects.get(f) else {
                continue;
            };
            let stamp = f.with_file_name(format!(
                ".{}.etag",
                f.file_name().and_then(|n| n.to_str()).unwrap_or("object")
            ));
            let fresh = std::fs::read_to_string(&stamp).ok().as_deref() == Some(etag.as_str())
                && std::fs::metadata(f).map(|m| m.len()).ok() == Some(*size);
            if !fresh {
                todo.push((key.clone(), f.clone(), stamp, etag.clone(), *size));
            }
        }
        if todo.is_empty() {
            return Ok(());
        }
        let bytes: u64 = todo.iter().map(|t| t.4).sum();
        tracing::info!(source = %self.uri, table, objects = todo.len(), bytes, cache = %self.root.display(), "copying S3 source objects to the local cache");
        let err = |path: &Path, message: String| SourceError::Unreadable {
            table: table.to_string(),
            path: path.display().to_string(),
            message,
        };
        use rayon::prelude::*;
        todo.par_iter()
            .try_for_each(|(key, local, stamp, etag, _)| -> Result<()> {
                let data = r.store.get(key).map_err(|e| err(local, e.to_string()))?;
                let dir = local.parent().unwrap_or(&self.root);
                std::fs::create_dir_all(dir).map_err(|e| err(dir, e.to_string()))?;
                let tmp = local.with_file_name(format!(
                    ".{}.part.tmp",
                    local
                        .file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or("object")
                ));
                std::fs::write(&tmp, &data)
                    .and_then(|_| std::fs::rename(&tmp, local))
                    .and_then(|_| std::fs::write(stamp, etag))
                    .map_err(|e| err(local, e.to_string()))
            })
    }

    /// Whether `p` is a file of the source (S3: listed; else on disk).
    fn is_file(&self, p: &Path) -> bool {
        match &self.remote {
            Some(r) => r.objects.contains_key(p),
            None => p.is_file(),
        }
    }

    /// Whether `p` is a folder of the source.
    fn is_dir(&self, p: &Path) -> bool {
        match &self.remote {
            Some(r) => r.objects.keys().any(|k| k.starts_with(p) && k != p),
            None => p.is_dir(),
        }
    }

    /// Every file under a folder of the source.
    fn files_under(&self, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
        match &self.remote {
            Some(r) => Ok(r
                .objects
                .keys()
                .filter(|k| k.starts_with(dir))
                .cloned()
                .collect()),
            None => {
                let mut files = Vec::new();
                walk(dir, &mut files)?;
                Ok(files)
            }
        }
    }

    /// Finds a table's files.
    pub fn locate(&self, table: &'static TableSpec) -> Result<TableLocation> {
        let name = table.name;
        for (ext, csv) in [("parquet", false), ("csv", true)] {
            let p = self.root.join(format!("{name}.{ext}"));
            if self.is_file(&p) {
                return Ok(TableLocation {
                    table,
                    path: p.clone(),
                    files: vec![p],
                    csv,
                    folder: false,
                });
            }
        }
        let dir = self.root.join(name);
        if self.is_dir(&dir) {
            let mut files = self
                .files_under(&dir)
                .map_err(|e| SourceError::Unreadable {
                    table: name.into(),
                    path: dir.display().to_string(),
                    message: e.to_string(),
                })?;
            files.sort();
            let parquet: Vec<_> = files
                .iter()
                .filter(|f| f.extension().is_some_and(|e| e == "parquet"))
                .cloned()
                .collect();
            let csvs: Vec<_> = files
                .iter()
                .filter(|f| f.extension().is_some_and(|e| e == "csv"))
                .cloned()
                .collect();
            let (files, csv) = if !parquet.is_empty() {
                (parquet, false)
            } else {
                (csvs, true)
            };
            if files.is_empty() {
                return Err(SourceError::EmptyFolder {
                    table: name.into(),
                    path: dir.display().to_string(),
                });
            }
            return Ok(TableLocation {
                table,
                path: dir,
                files,
                csv,
                folder: true,
            });
        }
        Err(SourceError::MissingTable {
            source_uri: self.uri.clone(),
            table: name.into(),
        })
    }

    /// A fingerprint of a table's files (names, sizes, modification times), for lineage.
    pub fn fingerprint(&self, loc: &TableLocation) -> String {
        let mut h = Sha256::new();
        for f in &loc.files {
            h.update(
                f.strip_prefix(&self.root)
                    .unwrap_or(f)
                    .to_string_lossy()
                    .as_bytes(),
            );
            if let Some((_, size, etag)) = self.remote.as_ref().and_then(|r| r.objects.get(f)) {
                h.update(size.to_le_bytes());
                h.update(etag.as_bytes());
            } else if let Ok(md) = std::fs::metadata(f) {
                h.update(md.len().to_le_bytes());
                if let Ok(t) = md.modified() {
                    if let Ok(d) = t.duration_since(std::time::UNIX_EPOCH) {
                        h.update(d.as_nanos().to_le_bytes());
                    }
                }
            }
        }
        format!("sha256:{}", hex::encode(h.finalize()))
    }

    /// The number of rows of a table as stored (Parquet: from the footers).
    pub fn row_count(&self, table: &'static TableSpec) -> Result<u64> {
        let loc = self.locate(table)?;
        self.fetch(table.name, &loc.files)?;
        let mut n = 0u64;
        for f in &loc.files {
            let df =
                guard(|| scan_file(f, loc.csv, table).and_then(|lf| lf.select([len()]).collect()))
                    .map_err(|e| SourceError::Unreadable {
                        table: table.name.into(),
                        path: f.display().to_string(),
                        message: e.to_string(),
                    })?;
            n += df
                .column("len")
                .ok()
                .and_then(|c| c.get(0).ok())
                .and_then(|v| v.extract::<u64>())
                .unwrap_or(0);
        }
        Ok(n)
    }

    /// Scans a table, checks its schema against the contract, and returns the normalised
    /// LazyFrame (contract columns plus `extra` columns, timestamps as day numbers).
    pub fn scan(&self, table: &'static TableSpec, extra: &[String]) -> Result<Table> {
        let loc = self.locate(table)?;
        let name = table.name;
        self.fetch(name, &loc.files)?;
        let pe = |path: &Path| {
            let path = path.display().to_string();
            move |e: PolarsError| SourceError::Unreadable {
                table: name.into(),
                path,
                message: e.to_string(),
            }
        };
        // Per-file schemas: catches unreadable files and files that disagree on the type
        // of a column the table reads (others may differ: they are never decoded).
        let read = |c: &str| table.column(c).is_some() || extra.iter().any(|x| x == c);
        let mut first: Option<(PathBuf, Schema)> = None;
        let mut partition_keys: Option<(PathBuf, Vec<String>)> = None;
        for f in &loc.files {
            let schema = guard(|| scan_file(f, loc.csv, table)?.collect_schema())
                .map_err(|e| bad_time_zone(name, f, &e).unwrap_or_else(|| pe(f)(e)))?;
            let schema = (*schema).clone();
            if loc.folder && !loc.csv {
                let keys = hive_keys(name, &loc.path, f, &schema)?;
                match &partition_keys {
                    Some((f0, k0)) if *k0 != keys => {
                        return Err(SourceError::Partition {
                            table: name.into(),
                            folder: loc.path.display().to_string(),
                            message: format!(
                                "its files sit in different partition folders ({} is under {}, {} under {}): put every file under the same key=value folders, in the same order",
                                f0.display(),
                                shown_keys(k0),
                                f.display(),
                                shown_keys(&keys)
                            ),
                        });
                    }
                    Some(_) => {}
                    None => partition_keys = Some((f.clone(), keys)),
                }
            }
            if let Some((f0, s0)) = &first {
                for (cname, t) in schema.iter().filter(|(c, _)| read(c.as_str())) {
                    if let Some(t0) = s0.get(cname) {
                        if t0 != t && !(t0.is_null() || t.is_null()) {
                            return Err(SourceError::TypeDisagreement {
                                table: name.into(),
                                column: cname.to_string(),
                                file_a: f0.display().to_string(),
                                type_a: t0.to_string(),
                                file_b: f.display().to_string(),
                                type_b: t.to_string(),
                            });
                        }
                    }
                }
            } else {
                first = Some((f.clone(), schema));
            }
        }
        let mut lf = if loc.folder && !loc.csv {
            let paths: Vec<PlRefPath> = loc
                .files
                .iter()
                .map(|p| PlRefPath::new(p.to_string_lossy().to_string()))
                .collect();
            let args = ScanArgsParquet {
                hive_options: HiveOptions {
                    enabled: Some(true),
                    hive_start_idx: 0,
                    schema: None,
                    try_parse_dates: true,
                },
                ..Default::default()
            };
            LazyFrame::scan_parquet_files(paths.into_iter().collect(), args)
                .map_err(pe(&loc.path))?
        } else if loc.folder {
            let paths: Vec<PlRefPath> = loc
                .files
                .iter()
                .map(|p| PlRefPath::new(p.to_string_lossy().to_string()))
                .collect();
            csv_reader(LazyCsvReader::new_paths(paths.into_iter().collect()), table)
                .finish()
                .map_err(pe(&loc.path))?
        } else {
            scan_file(&loc.path, loc.csv, table).map_err(pe(&loc.path))?
        };
        let schema = guard(|| lf.collect_schema()).map_err(pe(&loc.path))?;
        let mut exprs = Vec::new();
        let mut checks = Vec::new();
        for c in table.columns.iter() {
            let Some(dt) = schema.get(c.name) else {
                return Err(missing_column(name, c.name, &schema, loc.csv));
            };
            let (e, check) = normalise(name, c.name, c.ty, dt)?;
            exprs.push(e.alias(c.name));
            if let Some(check) = check {
                checks.push(check);
            }
        }
        for x in extra {
            if table.column(x).is_some() {
                continue;
            }
            let Some(dt) = schema.get(x.as_str()) else {
                return Err(missing_column(name, x, &schema, loc.csv));
            };
            exprs.push(normalise_extra(x, dt).alias(x.as_str()));
        }
        Ok(Table {
            spec: table,
            fingerprint: self.fingerprint(&loc),
            location: loc,
            frame: lf.select(exprs),
            raw_checks: checks,
            customer_map: Default::default(),
        })
    }
}

/// The error for a contract (or declared extra) column the table lacks: the columns it has
/// (escaped when shown), and for CSV a hint when the header shows why: NUL bytes or
/// replacement characters (the file is UTF-16, not UTF-8) or one field holding `;`, a tab
/// or `|` (another separator than the comma).
fn missing_column(table: &str, column: &str, schema: &Schema, csv: bool) -> SourceError {
    let names: Vec<&str> = schema.iter_names().map(|s| s.as_str()).collect();
    let mut found = names.join(", ");
    if csv {
        if names.iter().any(|n| n.contains(['\0', '\u{fffd}'])) {
            found.push_str(
                "; the header holds NUL bytes: the file looks like UTF-16: save it as UTF-8 (c360 reads UTF-8 CSV)",
            );
        } else if let [one] = names[..] {
            if let Some((_, shown)) = [(';', "';'"), ('\t', "a tab"), ('|', "'|'")]
                .into_iter()
                .find(|(c, _)| one.contains(*c))
            {
                found.push_str(&format!(
                    "; the header has one field: is the separator {shown}? c360 reads comma-separated CSV: write the file with ',' as the separator"
                ));
            }
        }
    }
    SourceError::MissingColumn {
        table: table.into(),
        column: column.into(),
        found,
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let p = e.path();
        let n = e.file_name();
        let n = n.to_string_lossy();
        if n.starts_with('.') || n.starts_with('_') {
            continue; // hidden files, _SUCCESS markers
        }
        if e.file_type()?.is_dir() {
            walk(&p, out)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}

thread_local! {
    /// Whether this thread runs a [`guard`]ed read.
    static IN_GUARD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs a polars read of source files, turning a panic inside the reader into an error.
/// Some malformed files panic polars instead of failing (e.g. Parquet whose polars
/// dictionary metadata is garbled); the caller names the table and file. The panic hook
/// logs such a panic at debug level instead of printing it: one raised on a guarded
/// thread, or inside polars (its worker threads) while a guard runs; any other panic is
/// printed as before.
pub(crate) fn guard<T>(f: impl FnOnce() -> PolarsResult<T>) -> PolarsResult<T> {
    use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
    static GUARDS: AtomicUsize = AtomicUsize::new(0);
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_reader = IN_GUARD.with(|g| g.get())
                || (GUARDS.load(SeqCst) > 0
                    && info.location().is_some_and(|l| l.file().contains("polars")));
            if in_reader {
                tracing::debug!(at = ?info.location(), "reader failure: {}", panic_text(info.payload()));
            } else {
                previous(info)
            }
        }));
    });
    let outer = IN_GUARD.with(|g| g.replace(true));
    GUARDS.fetch_add(1, SeqCst);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    GUARDS.fetch_sub(1, SeqCst);
    IN_GUARD.with(|g| g.set(outer));
    r.unwrap_or_else(|p| {
        Err(PolarsError::ComputeError(
            format!(
                "the reader failed on malformed data or metadata ({}); rewrite the file with a standard Parquet or CSV writer",
                panic_text(p.as_ref())
            )
            .into(),
        ))
    })
}

fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown reader failure".into())
}

/// The CSV options of a table's files. Id columns are read as text, never inferred:
/// inference would read `00123` as the integer 123 (its text `123`), and the same id
/// written as `00123` in a Parquet table would no longer match.
fn csv_reader(r: LazyCsvReader, table: &TableSpec) -> LazyCsvReader {
    let ids = Schema::from_iter(
        id_columns(table)
            .into_iter()
            .map(|c| Field::new(c.into(), DataType::String)),
    );
    r.with_has_header(true)
        .with_try_parse_dates(true)
        .with_infer_schema_length(Some(10_000))
        .with_dtype_overwrite(Some(Arc::new(ids)))
}

fn scan_file(path: &Path, csv: bool, table: &TableSpec) -> PolarsResult<LazyFrame> {
    let p = PlRefPath::new(path.to_string_lossy().to_string());
    if csv {
        csv_reader(LazyCsvReader::new(p), table).finish()
    } else {
        // The file's own columns: partition folders are read (and checked) only for a
        // folder table, by `scan`.
        let args = ScanArgsParquet {
            hive_options: HiveOptions::new_disabled(),
            ..Default::default()
        };
        LazyFrame::scan_parquet(p, args)
    }
}

/// A Parquet file whose timestamp column carries a time zone polars cannot parse (a
/// fixed offset such as `+05:30`): the error names table, column and time zone and says
/// how to fix it, instead of the reader's failure. `None` for any other failure.
fn bad_time_zone(table: &str, file: &Path, e: &PolarsError) -> Option<SourceError> {
    let msg = e.to_string();
    if !msg.contains("unable to parse time zone") {
        return None;
    }
    let schema = guard(|| {
        let f = std::fs::File::open(file)?;
        ParquetReader::new(f).schema()
    })
    .ok()?;
    let found = schema.iter().find_map(|(name, field)| match field.dtype() {
        ArrowDataType::Timestamp(_, Some(tz)) if msg.contains(&format!("'{tz}'")) => {
            Some(SourceError::WrongType {
                table: table.into(),
                column: name.to_string(),
                found: format!("timestamp with time zone {tz} (in {})", file.display()),
                expected: "timestamp".into(),
                hint: format!(
                    "the fixed-offset time zone {tz} cannot be read; write the column in UTC or with an IANA zone (e.g. Asia/Kolkata)"
                ),
            })
        }
        _ => None,
    });
    found
}

/// The hive partition keys (`key=value` folders between a table's folder and one of its
/// Parquet files), in order. Refused, naming table and folder: a malformed segment (empty
/// key, or a value holding another `=`, as `k=a=b`), a key given twice, and a key that
/// names a column the file itself holds (the folder value would silently replace the
/// file's values).
fn hive_keys(table: &str, folder: &Path, file: &Path, schema: &Schema) -> Result<Vec<String>> {
    let rel = file.strip_prefix(folder).unwrap_or(file);
    let mut keys: Vec<String> = Vec::new();
    let Some(parent) = rel.parent() else {
        return Ok(keys);
    };
    for seg in parent.components() {
        let seg = seg.as_os_str().to_string_lossy();
        let Some((key, value)) = seg.split_once('=') else {
            continue;
        };
        let seg_folder = folder.join(parent).display().to_string();
        let refuse = |message: String| SourceError::Partition {
            table: table.into(),
            folder: seg_folder.clone(),
            message,
        };
        if key.is_empty() || value.contains('=') {
            return Err(refuse(format!(
                "partition folder {seg:?} is not key=value (one key, one '=', a value without '='): rename the folder"
            )));
        }
        if keys.iter().any(|k| k == key) {
            return Err(refuse(format!(
                "partition key {key} appears twice in the path of {}: rename the folders",
                file.display()
            )));
        }
        if schema.contains(key) {
            return Err(refuse(format!(
                "partition folder {seg:?} names column {key}, which the file {} also holds: the folder value would replace the file's values. Rename the folder (e.g. {key}_part={value}) or drop the column from the files",
                file.display()
            )));
        }
        keys.push(key.to_string());
    }
    Ok(keys)
}

fn shown_keys(keys: &[String]) -> String {
    if keys.is_empty() {
        "no partition folder".into()
    } else {
        keys.iter()
            .map(|k| format!("{k}=…"))
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// A check that must run on the raw values before normalisation hides the problem
/// (e.g. a csat of 4.5 that a cast to integer would truncate).
#[derive(Debug, Clone)]
pub struct RawCheck {
    pub column: &'static str,
    pub problem: String,
    /// True on offending rows (evaluated on the normalised frame's raw input column).
    pub bad: Expr,
}

const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Decimals of up to this many digits convert to Float64 by one division of two exact
/// floats (the unscaled integer is below 2^53, and 10^scale is exact for scale <= 22),
/// which IEEE rounds correctly; wider decimals go through their exact text, parsed with
/// correct rounding. Either way the result is the Float64 nearest to the exact value.
const DECIMAL_EXACT_DIGITS: usize = 15;

/// The Float64 nearest to the exact value of a DECIMAL column (see the module header).
fn decimal_to_f64(c: Expr, precision: usize, scale: usize) -> Expr {
    if precision <= DECIMAL_EXACT_DIGITS && scale <= 22 {
        c.cast(DataType::Float64)
    } else {
        c.cast(DataType::String).cast(DataType::Float64)
    }
}

/// True on the values of a DECIMAL column with a non-zero fraction. Exact: the decimal's
/// text shows every digit of its scale (`4.50`), so a whole value ends in `.` once its
/// trailing zeros are stripped.
fn decimal_has_fraction(c: Expr, scale: usize) -> Expr {
    if scale == 0 {
        return lit(false);
    }
    c.clone().is_not_null().and(
        c.cast(DataType::String)
            .str()
            .strip_chars_end(lit("0"))
            .str()
            .ends_with(lit("."))
            .not(),
    )
}

/// The day number a timestamp column holds where a day is outside the supported dates
/// (see [`day_in_range`]); the contract checks report it.
pub const DAY_OUT_OF_RANGE: i32 = i32::MIN;

/// The supported day numbers: chrono's dates (years -262143..262142), so that day
/// arithmetic against an as-of date never overflows an `Int32`.
fn supported_days() -> (i64, i64) {
    let day = |d: chrono::NaiveDate| day_number(d) as i64;
    (day(chrono::NaiveDate::MIN), day(chrono::NaiveDate::MAX))
}

/// An Int64 day number as `Int32`, [`DAY_OUT_OF_RANGE`] outside the supported dates (a
/// plain cast would turn them into nulls, reported as missing values).
fn day_in_range(day: Expr) -> Expr {
    let (lo, hi) = supported_days();
    when(day.clone().lt(lit(lo)).or(day.clone().gt(lit(hi))))
        .then(lit(DAY_OUT_OF_RANGE))
        .otherwise(day)
        .cast(DataType::Int32)
}

/// True on the non-null values that a non-strict cast to Int64 turns into null (outside
/// the Int64 range).
fn overflows_int64(c: Expr) -> Expr {
    c.clone()
        .is_not_null()
        .and(c.cast(DataType::Int64).is_null())
}

/// How a producer can fix a column of a type the contract cannot read.
fn type_hint(ty: ColType, dt: &DataType) -> String {
    let why = match dt {
        DataType::Time => "a time of day has no date; ",
        DataType::Binary | DataType::BinaryOffset => "bytes are not text; ",
        DataType::Decimal(p, _) if *p > 38 => "DECIMAL precision above 38 is not supported; ",
        DataType::Decimal(_, s) if *s > 0 && ty == ColType::Str => {
            "a DECIMAL with a fraction is not an id; "
        }
        DataType::Duration(_) => "a duration is not a point in time; ",
        DataType::String if ty == ColType::Timestamp => {
            "text is not read as a timestamp (in CSV, write ISO 8601: 2024-01-31 or 2024-01-31T12:00:00Z); "
        }
        DataType::Struct(_) | DataType::List(_) | DataType::Array(_, _) => {
            "a nested value is not a single value; "
        }
        _ => "",
    };
    let how = match ty {
        ColType::Str => {
            "write it as text (string, large_string, string_view, or a dictionary/category of strings) or as whole numbers (integers or DECIMAL(p,0))"
        }
        ColType::Timestamp => {
            "write it as a timestamp (any unit; any time zone, the instant is read in UTC) or as a date"
        }
        ColType::Float => "write it as numbers (floats, integers or DECIMAL(p,s))",
        ColType::Int => {
            "write it as whole numbers (integers, or floats or DECIMAL(p,s) holding whole values)"
        }
        ColType::Bool => "write it as booleans",
    };
    format!("{why}{how}")
}

/// The normalising expression of one contract column, and a raw check if the cast can hide
/// bad values. Conversion rules, by contract type (anything else is a [`SourceError::WrongType`]
/// that names the type and how to fix it):
///
/// - Utf8: text of any Arrow encoding (string, large_string, string_view); dictionary,
///   categorical and enum text as its values; integers and DECIMAL(p,0) as the integer's
///   decimal text (`1001`); an all-null column as nulls.
/// - Datetime: a timestamp of any unit and time zone as the UTC day of its instant (the
///   physical value is UTC); INT96 (read as ns) alike; date32 and date64 as their day.
/// - Float64: floats (float16/32 widen exactly), integers, and DECIMAL(p,s) as the Float64
///   nearest to the exact decimal value ([`decimal_to_f64`]).
/// - Int64: integers (a value outside the Int64 range is an error), floats and
///   DECIMAL(p,s) only when every value is whole (else an error with an example row).
/// - Boolean: booleans.
fn normalise(
    table: &str,
    name: &'static str,
    ty: ColType,
    dt: &DataType,
) -> Result<(Expr, Option<RawCheck>)> {
    let c = polars::prelude::col(name);
    let wrong = || SourceError::WrongType {
        table: table.into(),
        column: name.into(),
        found: dt.to_string(),
        expected: ty.name().into(),
        hint: type_hint(ty, dt),
    };
    Ok(match ty {
        ColType::Str => match dt {
            DataType::String => (c, None),
            DataType::Null => (c.cast(DataType::String), None),
            DataType::Categorical(..) | DataType::Enum(..) => (c.cast(DataType::String), None),
            d if d.is_integer() => (c.cast(DataType::String), None),
            // Scale 0: the unscaled integer is the id (its text has no point).
            DataType::Decimal(p, 0) if *p <= 38 => (c.cast(DataType::String), None),
            _ => return Err(wrong()),
        },
        ColType::Timestamp => match dt {
            // Physical values of a Datetime are UTC instants whatever the time zone, so
            // the UTC day is a floor division of the physical value.
            DataType::Datetime(unit, _) => {
                let per_day = match unit {
                    TimeUnit::Nanoseconds => MICROS_PER_DAY * 1000,
                    TimeUnit::Microseconds => MICROS_PER_DAY,
                    TimeUnit::Milliseconds => MICROS_PER_DAY / 1000,
                };
                (
                    day_in_range(c.cast(DataType::Int64).floor_div(lit(per_day))),
                    None,
                )
            }
            DataType::Date => (day_in_range(c.cast(DataType::Int64)), None),
            DataType::Null => (c.cast(DataType::Int32), None),
            _ => return Err(wrong()),
        },
        ColType::Float => match dt {
            DataType::Float64 => (c, None),
            DataType::Null => (c.cast(DataType::Float64), None),
            DataType::Decimal(p, s) if *p <= 38 => (decimal_to_f64(c, *p, *s), None),
            d if d.is_primitive_numeric() => (c.cast(DataType::Float64), None),
            _ => return Err(wrong()),
        },
        ColType::Int => match dt {
            DataType::Int8
            | DataType::Int16
            | DataType::Int32
            | DataType::Int64
            | DataType::UInt8
            | DataType::UInt16
            | DataType::UInt32 => (c.cast(DataType::Int64), None),
            d if d.is_integer() => (
                c.clone().cast(DataType::Int64),
                Some(RawCheck {
                    column: name,
                    problem: "are outside the Int64 range".into(),
                    bad: overflows_int64(c),
                }),
            ),
            DataType::Null => (c.cast(DataType::Int64), None),
            DataType::Float16 | DataType::Float32 | DataType::Float64 => (
                c.clone().cast(DataType::Int64),
                Some(RawCheck {
                    column: name,
                    problem: "are not whole numbers".into(),
                    bad: c.clone().is_not_null().and(
                        c.clone()
                            .neq(c.clone().floor())
                            .or(c.clone().is_nan())
                            .or(overflows_int64(c))
                            .fill_null(lit(false)),
                    ),
                }),
            ),
            DataType::Decimal(p, s) if *p <= 38 => (
                c.clone().cast(DataType::Int64),
                Some(RawCheck {
                    column: name,
                    problem: "are not whole numbers".into(),
                    bad: decimal_has_fraction(c.clone(), *s).or(overflows_int64(c)),
                }),
            ),
            _ => return Err(wrong()),
        },
        ColType::Bool => match dt {
            DataType::Boolean => (c, None),
            DataType::Null => (c.cast(DataType::Boolean), None),
            _ => return Err(wrong()),
        },
    })
}

/// An extra column (one a feature set names beyond the contract) as features read it:
/// dictionary text as text and DECIMAL as the nearest Float64, like the contract columns;
/// other types as stored.
fn normalise_extra(name: &str, dt: &DataType) -> Expr {
    let c = polars::prelude::col(name);
    match dt {
        DataType::Categorical(..) | DataType::Enum(..) => c.cast(DataType::String),
        DataType::Decimal(p, s) if *p <= 38 => decimal_to_f64(c, *p, *s),
        _ => c,
    }
}

/// The internal customer key: a customer's row number in the (materialised) customers
/// table, UInt32. Referencing tables get it from the referential check, so group-bys and
/// joins run on integers instead of id strings.
pub const CUSTOMER_KEY: &str = "_cix";

/// Rows per batch of [`Table::load_trimmed`].
const BATCH_ROWS: u64 = 1 << 20;

/// `customer_id -> row number` of the customers table.
/// Ids of up to 12 bytes are keyed by their 16-byte string view, which holds the bytes
/// themselves (zero-padded): building and probing hash an integer, and a probe needs no
/// access to the string's bytes. They sit in an open-addressing table of row numbers
/// (4 bytes a slot, half full: 8 MB for a million customers, against 64 MB for a general
/// hash map of (view, row)), compared through `views`. Longer ids are keyed by their text.
#[derive(Default)]
pub struct CustomerMap {
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
    fn build(ids: &StringChunked) -> CustomerMap {
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

/// A scanned, schema-checked table.
#[derive(Clone)]
pub struct Table {
    pub spec: &'static TableSpec,
    pub location: TableLocation,
    pub fingerprint: String,
    /// The normalised frame (lazy).
    pub frame: LazyFrame,
    raw_checks: Vec<RawCheck>,
    /// customers only: the id map, built once from the materialised frame.
    customer_map: std::sync::Arc<std::sync::OnceLock<CustomerMap>>,
}

impl std::fmt::Debug for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Table")
            .field("table", &self.spec.name)
            .field("path", &self.location.path)
            .finish()
    }
}

/// One value check: a boolean expression true on bad rows.
struct Check {
    column: String,
    problem: String,
    bad: Expr,
    /// Evaluate on the raw (un-normalised) frame.
    raw: bool,
    /// A `Rule::OneOf` (the batched reader checks these with [`enum_codes`]).
    one_of: bool,
    /// A not-null check (the batched reader reads the null count).
    not_null: bool,
}

impl Table {
    /// Reads the normalised table into memory once, so that the contract checks and the
    /// feature plans that follow share one decode of the files.
    pub fn materialize(&mut self) -> Result<()> {
        let df = guard(|| self.frame.clone().collect()).map_err(|e| SourceError::Unreadable {
            table: self.spec.name.into(),
            path: self.location.path.display().to_string(),
            message: e.to_string(),
        })?;
        self.frame = df.lazy();
        Ok(())
    }

    fn perr(&self) -> impl Fn(PolarsError) -> SourceError + '_ {
        move |e| SourceError::Polars {
            table: self.spec.name.into(),
            message: e.to_string(),
        }
    }

    /// customers: `customer_id -> row number` (of the current frame, in order).
    fn customer_map(&self) -> Result<&CustomerMap> {
        if let Some(m) = self.customer_map.get() {
            return Ok(m);
        }
        let df = self
            .frame
            .clone()
            .select([polars::prelude::col("customer_id")])
            .collect()
            .map_err(self.perr())?;
        let t = std::time::Instant::now();
        let ids = df.column("customer_id").map_err(self.perr())?;
        let ids = ids.str().map_err(self.perr())?;
        let m = CustomerMap::build(ids);
        tracing::debug!(secs = t.elapsed().as_secs_f64(), "customer map built");
        Ok(self.customer_map.get_or_init(|| m))
    }

    /// customers: frees the id map (once every referencing table is loaded).
    pub fn release_customer_map(&mut self) {
        self.customer_map = Default::default();
    }

    /// customers: adds [`CUSTOMER_KEY`], the row number (call after `check`).
    pub fn add_customer_key(&mut self) -> Result<()> {
        let mut df = self.frame.clone().collect().map_err(self.perr())?;
        let n = df.height() as u32;
        let key = UInt32Chunked::from_vec(CUSTOMER_KEY.into(), (0..n).collect());
        df.with_column(key.into_column()).map_err(self.perr())?;
        self.frame = df.lazy();
        Ok(())
    }

    /// Keeps [`CUSTOMER_KEY`] (when present) and the given columns, releasing the others'
    /// memory (a referencing table after `check`).
    pub fn keep_columns(&mut self, columns: &std::collections::BTreeSet<String>) -> Result<()> {
        let mut df = self.frame.clone().collect().map_err(self.perr())?;
        if df.column(CUSTOMER_KEY).is_err() {
            return Ok(());
        }
        let drop: Vec<PlSmallStr> = df
            .get_column_names()
            .into_iter()
            .filter(|c| c.as_str() != CUSTOMER_KEY && !columns.contains(c.as_str()))
            .cloned()
            .collect();
        for c in drop {
            df.drop_in_place(c.as_str()).map_err(self.perr())?;
        }
        self.frame = df.lazy();
        Ok(())
    }

    /// Keeps only the rows where `rows` is true (after `check`).
    pub fn keep_rows(&mut self, rows: Expr) -> Result<()> {
        let df = self
            .frame
            .clone()
            .filter(rows)
            .collect()
            .map_err(self.perr())?;
        self.frame = df.lazy();
        Ok(())
    }

    /// Reads a table that references customers batch by batch: each batch is checked
    /// (value rules, customer references, key uniqueness by hash) and trimmed to the
    /// `columns` (plus [`CUSTOMER_KEY`]) and `rows` the feature set reads, so the whole
    /// table never sits in memory. Returns false, having changed nothing, when the table
    /// needs the whole-table path: CSV, casts with raw checks, or any violation (or hash
    /// collision), whose exact report (counts over the whole table, an example row) comes
    /// from [`Table::check`].
    pub fn load_trimmed(
        &mut self,
        customers: &Table,
        columns: &std::collections::BTreeSet<String>,
        rows: Option<Expr>,
    ) -> Result<bool> {
        use rayon::prelude::*;
        use std::hash::BuildHasher;
        let spec = self.spec;
        if self.location.csv || !self.raw_checks.is_empty() || !spec.references_customers {
            return Ok(false);
        }
        let perr = self.perr();
        let total = self
            .frame
            .clone()
            .select([len().alias("n")])
            .collect()
            .map(|df| scalar_u64(&df, "n"))
            .map_err(&perr)?;
        let all_checks = self.value_checks();
        let not_null: Vec<&str> = all_checks
            .iter()
            .filter(|c| c.not_null)
            .map(|c| c.column.as_str())
            .collect();
        let checks = count_exprs(all_checks.iter().filter(|c| !c.one_of && !c.not_null));
        let schema = self.frame.clone().collect_schema().map_err(&perr)?;
        let mut keep_names: Vec<PlSmallStr> = vec![CUSTOMER_KEY.into()];
        keep_names.extend(
            columns
                .iter()
                .filter(|c| schema.contains(c.as_str()) && c.as_str() != CUSTOMER_KEY)
                .map(|c| PlSmallStr::from_str(c)),
        );
        let keep: Vec<Expr> = keep_names
            .iter()
            .map(|c| polars::prelude::col(c.clone()))
            .collect();
        // Columns with a fixed set of values become Enums (one byte a row; comparisons
        // with a literal compare codes): the conversion is also their value check.
        let mut enums: Vec<(&'static str, &'static [&'static str], DataType)> = Vec::new();
        for r in spec.rules {
            if let Rule::OneOf(column, allowed) = r {
                let cats = FrozenCategories::new(allowed.iter().copied()).map_err(&perr)?;
                enums.push((column, allowed, DataType::from_frozen_categories(cats)));
            }
        }
        let hasher = PlRandomState::default();
        // Key hashes, spread by their top byte over buckets that are sorted one by one
        // (each fits in cache) to find duplicates. Sized once: growing by doubling would
        // briefly hold 2.5 times the hashes.
        const BUCKETS: usize = 256;
        let per_bucket = usize::try_from(total / BUCKETS as u64 * 9 / 8).unwrap_or(0) + 64;
        let mut key_hashes: Vec<Vec<u64>> = if spec.key.is_some() {
            (0..BUCKETS)
                .map(|_| Vec::with_capacity(per_bucket))
                .collect()
        } else {
            Vec::new()
        };
        let mut parts: Vec<DataFrame> = Vec::new();
        let (mut t_wait, mut t_enum, mut t_check, mut t_hash) = (0f64, 0f64, 0f64, 0f64);
        let (mut t_keys, mut t_trim) = (0f64, 0f64);
        // A reader thread decodes the next batch while this one is checked.
        let frame = self.frame.clone();
        let batches = self.batches(total);
        let (tx, rx) = std::sync::mpsc::sync_channel::<PolarsResult<DataFrame>>(1);
        let passed = std::thread::scope(|scope| -> Result<bool> {
            scope.spawn(move || {
                for (off, n) in batches {
                    let batch = guard(|| frame.clone().slice(off as i64, n as IdxSize).collect());
                    let failed = batch.is_err();
                    // A closed channel means the checks stopped early.
                    if tx.send(batch).is_err() || failed {
                        break;
                    }
                }
            });
            // The id map of the customers (built once) while the first batch decodes.
            let map = customers.customer_map()?;
            let mut batches = rx.into_iter();
            loop {
                let t = std::time::Instant::now();
                let Some(batch) = batches.next() else { break };
                // An unreadable batch: the whole-table path reports it with the file.
                let Ok(mut df) = batch else { return Ok(false) };
                t_wait += t.elapsed().as_secs_f64();
                let t = std::time::Instant::now();
                for (column, allowed, dtype) in &enums {
                    let values = df.column(column).map_err(&perr)?;
                    let Some(codes) = enum_codes(values.str().map_err(&perr)?, allowed) else {
                        return Ok(false);
                    };
                    let codes = Categorical8Chunked::from_cats_and_dtype(codes, dtype.clone());
                    df.with_column(codes.into_series().into_column())
                        .map_err(&perr)?;
                }
                t_enum += t.elapsed().as_secs_f64();
                let t = std::time::Instant::now();
                for c in &not_null {
                    if df.column(c).map_err(&perr)?.null_count() > 0 {
                        return Ok(false);
                    }
                }
                if !checks.is_empty() {
                    let counts = df
                        .clone()
                        .lazy()
                        .select(checks.clone())
                        .collect()
                        .map_err(&perr)?;
                    if (0..checks.len()).any(|i| scalar_u64(&counts, &format!("c{i}")) > 0) {
                        return Ok(false);
                    }
                }
                t_check += t.elapsed().as_secs_f64();
                let t = std::time::Instant::now();
                if let Some(key) = spec.key {
                    let ids = df.column(key).map_err(&perr)?.str().map_err(&perr)?;
                    for arr in ids.downcast_iter() {
                        for v in arr.values_iter() {
                            let h = hasher.hash_one(v);
                            key_hashes[(h >> 56) as usize].push(h);
                        }
                    }
                }
                t_hash += t.elapsed().as_secs_f64();
                let t = std::time::Instant::now();
                let Some(keys) =
                    customer_keys(df.column("customer_id").map_err(&perr)?, map).map_err(&perr)?
                else {
                    return Ok(false);
                };
                t_keys += t.elapsed().as_secs_f64();
                let t = std::time::Instant::now();
                df.with_column(keys.into_column()).map_err(&perr)?;
                let kept = df.select(keep_names.iter().cloned()).map_err(&perr)?;
                let kept = match &rows {
                    Some(r) => {
                        let mask = kept
                            .clone()
                            .lazy()
                            .select([r.clone().alias("_keep")])
                            .collect()
                            .map_err(&perr)?;
                        let mask = mask.column("_keep").map_err(&perr)?.bool().map_err(&perr)?;
                        kept.filter(mask).map_err(&perr)?
                    }
                    None => kept,
                };
                parts.push(kept);
                t_trim += t.elapsed().as_secs_f64();
            }
            Ok(true)
        })?;
        if !passed {
            return Ok(false);
        }
        tracing::debug!(
            table = spec.name,
            wait_secs = t_wait,
            enum_secs = t_enum,
            check_secs = t_check,
            hash_secs = t_hash,
            keys_secs = t_keys,
            trim_secs = t_trim,
            "batches"
        );
        let t = std::time::Instant::now();
        if spec.key.is_some() {
            let dup = key_hashes.par_iter_mut().any(|b| {
                b.sort_unstable();
                b.windows(2).any(|w| w[0] == w[1])
            });
            if dup {
                return Ok(false);
            }
        }
        let mut out = match parts.first() {
            Some(p) => p.clear(),
            None => self
                .frame
                .clone()
                .with_column(lit(0u32).alias(CUSTOMER_KEY))
                .select(keep)
                .limit(0)
                .collect()
                .map_err(&perr)?,
        };
        for p in &parts {
            out.vstack_mut(p).map_err(&perr)?;
        }
        // Left in chunks (one a batch): a copy into one would briefly hold the table twice.
        tracing::debug!(
            table = spec.name,
            secs = t.elapsed().as_secs_f64(),
            rows = out.height(),
            of = total,
            mb = out.estimated_size() / 1_000_000,
            "key hashes sorted, parts stacked"
        );
        drop(perr);
        self.frame = out.lazy();
        Ok(true)
    }

    /// `(offset, rows)` of the batches of [`Table::load_trimmed`]: whole Parquet row groups
    /// (a slice across a row group boundary decodes both groups), small neighbours merged
    /// and large groups cut, to about [`BATCH_ROWS`] rows; fixed-size batches when the
    /// files' metadata does not add up to `total`.
    fn batches(&self, total: u64) -> Vec<(u64, u64)> {
        let mut groups: Vec<u64> = Vec::new();
        for f in &self.location.files {
            let rows = std::fs::File::open(f).ok().and_then(|file| {
                let mut r = ParquetReader::new(file);
                let md = r.get_metadata().ok()?;
                Some(
                    md.row_groups
                        .iter()
                        .map(|g| g.num_rows() as u64)
                        .collect::<Vec<_>>(),
                )
            });
            match rows {
                Some(rows) => groups.extend(rows),
                None => {
                    groups.clear();
                    break;
                }
            }
        }
        batch_plan(groups, total, BATCH_ROWS)
    }

    /// Every value rule of the contract as a check.
    fn value_checks(&self) -> Vec<Check> {
        let spec = self.spec;
        let mut checks: Vec<Check> = Vec::new();
        for rc in &self.raw_checks {
            checks.push(Check {
                column: rc.column.into(),
                problem: rc.problem.clone(),
                bad: rc.bad.clone(),
                raw: true,
                one_of: false,
                not_null: false,
            });
        }
        for c in spec.columns {
            if !c.nullable {
                checks.push(Check {
                    column: c.name.into(),
                    problem: "are null (the column may not be null)".into(),
                    bad: polars::prelude::col(c.name).is_null(),
                    raw: false,
                    one_of: false,
                    not_null: true,
                });
            }
        }
        for c in spec.columns.iter().filter(|c| c.ty == ColType::Timestamp) {
            checks.push(Check {
                column: c.name.into(),
                problem: "are outside the supported dates (years -262143 to 262142; shown as day -2147483648)".into(),
                bad: polars::prelude::col(c.name).eq(lit(DAY_OUT_OF_RANGE)),
                raw: false,
                one_of: false,
                not_null: false,
            });
        }
        for id in id_columns(spec) {
            checks.push(Check {
                column: id.into(),
                problem: "are empty or blank, or contain a control character or an invisible format/separator character (newline, tab, NUL, DEL, zero-width, bidi override, line separator, BOM …), which ids may not hold: fix them at the producer".into(),
                bad: has_control_char(polars::prelude::col(id)),
                raw: false,
                one_of: false,
                not_null: false,
            });
        }
        for r in spec.rules {
            match r {
                Rule::OneOf(column, allowed) => {
                    let c = polars::prelude::col(*column);
                    let mut ok = lit(false);
                    for a in *allowed {
                        ok = ok.or(c.clone().eq(lit(*a)));
                    }
                    checks.push(Check {
                        column: (*column).into(),
                        problem: format!("have a value outside {}", allowed.join(", ")),
                        bad: c.is_not_null().and(ok.not()),
                        raw: false,
                        one_of: true,
                        not_null: false,
                    });
                }
                Rule::NonNegativeFinite(column) => {
                    let c = polars::prelude::col(*column);
                    checks.push(Check {
                        column: (*column).into(),
                        problem: "are negative, NaN or infinite".into(),
                        bad: c.clone().is_not_null().and(
                            c.clone()
                                .lt(lit(0.0))
                                .or(c.clone().is_nan())
                                .or(c.is_infinite()),
                        ),
                        raw: false,
                        one_of: false,
                        not_null: false,
                    });
                }
                Rule::Range(column, lo, hi) => {
                    let c = polars::prelude::col(*column);
                    checks.push(Check {
                        column: (*column).into(),
                        problem: format!("are outside {lo}..{hi}"),
                        bad: c
                            .clone()
                            .is_not_null()
                            .and(c.clone().lt(lit(*lo)).or(c.gt(lit(*hi)))),
                        raw: false,
                        one_of: false,
                        not_null: false,
                    });
                }
            }
        }
        checks
    }

    /// Checks every value rule of the contract. `customers` must be given for tables that
    /// reference customers. Stops at the first table with a violation, reporting the
    /// first violated rule with its count and an example row.
    pub fn check(&mut self, customers: Option<&Table>) -> Result<()> {
        let spec = self.spec;
        let name = spec.name;
        let checks = self.value_checks();
        // One pass computes every count (raw and normalised checks on separate frames).
        let (raw_checks, norm_checks): (Vec<&Check>, Vec<&Check>) =
            checks.iter().partition(|c| c.raw);
        let perr = |e: PolarsError| SourceError::Polars {
            table: name.into(),
            message: e.to_string(),
        };
        let aggs = count_exprs(norm_checks.iter().copied());
        let t = std::time::Instant::now();
        let counts = self.frame.clone().select(aggs).collect().map_err(perr)?;
        tracing::debug!(
            table = name,
            secs = t.elapsed().as_secs_f64(),
            "value rules counted"
        );
        for (i, c) in norm_checks.iter().enumerate() {
            let n = scalar_u64(&counts, &format!("c{i}"));
            if n > 0 {
                return Err(self.violation(&c.column, &c.problem, n, c.bad.clone(), false));
            }
        }
        for c in raw_checks {
            let n = guard(|| {
                self.raw_frame()?
                    .select([c
                        .bad
                        .clone()
                        .fill_null(lit(false))
                        .sum()
                        .cast(DataType::UInt64)
                        .alias("n")])
                    .collect()
            })
            .map_err(perr)?;
            let n = scalar_u64(&n, "n");
            if n > 0 {
                return Err(self.violation(&c.column, &c.problem, n, c.bad.clone(), true));
            }
        }
        if let Some(key) = spec.key {
            // Sorting (parallel) and comparing neighbours beats hashing millions of
            // distinct long strings.
            let t = std::time::Instant::now();
            let k = polars::prelude::col("k");
            let repeats = self
                .frame
                .clone()
                .select([polars::prelude::col(key)
                    .drop_nulls()
                    .sort(SortOptions::default().with_multithreaded(true))
                    .alias("k")])
                .filter(k.clone().eq(k.shift(lit(1))).fill_null(lit(false)))
                .collect()
                .map_err(perr)?;
            tracing::debug!(
                table = name,
                secs = t.elapsed().as_secs_f64(),
                "key uniqueness checked"
            );
            if repeats.height() > 0 {
                let dup = repeats
                    .column("k")
                    .ok()
                    .and_then(|c| {
                        c.get(0)
                            .ok()
                            .map(|v| v.get_str().unwrap_or_default().to_string())
                    })
                    .unwrap_or_default();
                return Err(SourceError::Violation {
                    table: name.into(),
                    column: key.into(),
                    problem: "repeat an id that must be unique".into(),
                    count: repeats.height() as u64,
                    example: format!("{key}={dup:?}"),
                });
            }
        }
        if spec.references_customers {
            if let Some(customers) = customers {
                // Every row's customer key by a hash lookup (once per run of equal ids):
                // when all are found, the referential check has passed and the keys are
                // kept for the feature plans.
                let t = std::time::Instant::now();
                let map = customers.customer_map()?;
                let mut df = self.frame.clone().collect().map_err(perr)?;
                let keys =
                    customer_keys(df.column("customer_id").map_err(perr)?, map).map_err(perr)?;
                tracing::debug!(
                    table = name,
                    secs = t.elapsed().as_secs_f64(),
                    found = keys.is_some(),
                    "customer references looked up"
                );
                if let Some(keys) = keys {
                    df.with_column(keys.into_column()).map_err(perr)?;
                    self.frame = df.lazy();
                    return Ok(());
                }
                drop(df);
                let ids = customers
                    .frame
                    .clone()
                    .select([polars::prelude::col("customer_id")]);
                let orphans = self
                    .frame
                    .clone()
                    .select([polars::prelude::col("customer_id")])
                    .unique(None, UniqueKeepStrategy::Any)
                    .join(
                        ids,
                        [polars::prelude::col("customer_id")],
                        [polars::prelude::col("customer_id")],
                        JoinArgs::new(JoinType::Anti),
                    );
                let orphans = orphans.collect().map_err(perr)?;
                if orphans.height() > 0 {
                    let id = orphans
                        .column("customer_id")
                        .ok()
                        .and_then(|s| s.get(0).ok().map(|v| v.to_string()))
                        .unwrap_or_default();
                    let rows = self
                        .frame
                        .clone()
                        .join(
                            orphans.clone().lazy(),
                            [polars::prelude::col("customer_id")],
                            [polars::prelude::col("customer_id")],
                            JoinArgs::new(JoinType::Semi),
                        )
                        .select([len().alias("n")])
                        .collect()
                        .map(|df| scalar_u64(&df, "n"))
                        .unwrap_or(0);
                    return Err(SourceError::Violation {
                        table: name.into(),
                        column: "customer_id".into(),
                        problem: format!(
                            "reference {} customer id(s) missing from customers (a contract violation of the producing domain)",
                            orphans.height()
                        ),
                        count: rows,
                        example: format!("customer_id={id}"),
                    });
                }
            }
        }
        Ok(())
    }

    /// The table as stored, before normalisation (for checks a cast would hide).
    fn raw_frame(&self) -> PolarsResult<LazyFrame> {
        let loc = &self.location;
        if loc.files.len() == 1 {
            return scan_file(&loc.files[0], loc.csv, self.spec);
        }
        let paths: Vec<PlRefPath> = loc
            .files
            .iter()
            .map(|p| PlRefPath::new(p.to_string_lossy().to_string()))
            .collect();
        if loc.csv {
            csv_reader(
                LazyCsvReader::new_paths(paths.into_iter().collect()),
                self.spec,
            )
            .finish()
        } else {
            LazyFrame::scan_parquet_files(paths.into_iter().collect(), ScanArgsParquet::default())
        }
    }

    fn violation(
        &self,
        column: &str,
        problem: &str,
        count: u64,
        bad: Expr,
        raw: bool,
    ) -> SourceError {
        let frame = if raw {
            // Only the contract's columns: other columns may be of types no example needs.
            let cols: Vec<Expr> = self
                .spec
                .columns
                .iter()
                .map(|c| polars::prelude::col(c.name))
                .collect();
            self.raw_frame().map(|f| f.select(cols))
        } else {
            Ok(self.frame.clone())
        };
        let example = frame
            .and_then(|f| guard(|| f.filter(bad.fill_null(lit(false))).limit(1).collect()))
            .map(|df| describe_row(&df))
            .unwrap_or_else(|e| format!("(could not fetch an example: {e})"));
        SourceError::Violation {
            table: self.spec.name.into(),
            column: column.into(),
            problem: problem.into(),
            count,
            example,
        }
    }
}

/// The [`CUSTOMER_KEY`] of every row of `ids`, or None when some id is null or not a
/// customer. Event tables are usually clustered by customer, so a run of equal ids costs
/// one lookup.
fn customer_keys(ids: &Column, map: &CustomerMap) -> PolarsResult<Option<UInt32Chunked>> {
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

/// Batches of `max` rows or so over row groups of the given sizes (which must add up to
/// `total`, else it is one group): whole groups, neighbours merged while they fit, groups
/// over 1.25 `max` cut into equal parts.
fn batch_plan(groups: Vec<u64>, total: u64, max: u64) -> Vec<(u64, u64)> {
    let groups = if groups.iter().sum::<u64>() == total {
        groups
    } else {
        vec![total]
    };
    let mut out: Vec<(u64, u64)> = Vec::new();
    let mut off = 0;
    // Whether the last batch is whole groups (a group may join it).
    let mut whole = false;
    for g in groups {
        match out.last_mut() {
            Some((_, n)) if whole && *n + g <= max => *n += g,
            _ => {
                let parts = if g <= max + max / 4 {
                    1
                } else {
                    g.div_ceil(max)
                };
                let step = g.div_ceil(parts).max(1);
                let mut at = 0;
                while at < g {
                    let n = step.min(g - at);
                    out.push((off + at, n));
                    at += n;
                }
                whole = parts == 1;
            }
        }
        off += g;
    }
    out.retain(|(_, n)| *n > 0);
    out
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

/// The id columns of a table: its key and its customer reference.
fn id_columns(spec: &TableSpec) -> Vec<&'static str> {
    let mut ids: Vec<&'static str> = spec.key.into_iter().collect();
    if spec.column("customer_id").is_some() && !ids.contains(&"customer_id") {
        ids.push("customer_id");
    }
    ids
}

/// Whether an id is unusable: empty or blank (only whitespace), or holding a control
/// character (Unicode Cc: C0 including `\n`, `\r`, `\t` and NUL, DEL, C1 such as NEL), an
/// invisible format character (Cf: zero-width, bidi, BOM, soft hyphen …) or a line or
/// paragraph separator (Zl, Zp). A line-based consumer (the batch transform's CSV) would
/// split a record at one; an invisible one makes two different ids look the same.
pub fn contains_control(s: &str) -> bool {
    // Fast path: printable ASCII (almost every id) is bad only when blank.
    if s.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return s.bytes().all(|b| b == b' ');
    }
    s.chars().all(char::is_whitespace) || s.chars().any(is_invisible)
}

/// Whether a character is a control (Cc), format (Cf), line (Zl) or paragraph (Zp)
/// separator character. The Cf list is Unicode 16's `General_Category=Cf`.
pub fn is_invisible(c: char) -> bool {
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
pub fn escape_text(s: &str) -> String {
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

/// True on the unusable id values ([`contains_control`]: blank, or holding a control,
/// format or separator character); false on nulls and non-text columns.
fn has_control_char(c: Expr) -> Expr {
    c.map(
        |c: Column| {
            use rayon::prelude::*;
            let none = || BooleanChunked::full(c.name().clone(), false, c.len());
            let out = match c.dtype() {
                DataType::String => {
                    let ca = c.str()?;
                    // Almost always clean: one parallel pass without building a mask.
                    let any = pieces(ca)
                        .par_iter()
                        .any(|arr| arr.values_iter().any(contains_control));
                    if any {
                        ca.iter()
                            .map(|v| Some(v.is_some_and(contains_control)))
                            .collect::<BooleanChunked>()
                    } else {
                        none()
                    }
                }
                _ => none(),
            };
            Ok(out.with_name(c.name().clone()).into_column())
        },
        |_, f| Ok(Field::new(f.name().clone(), DataType::Boolean)),
    )
}

/// `c0, c1, ...`: the number of rows each check finds bad.
fn count_exprs<'a>(checks: impl Iterator<Item = &'a Check>) -> Vec<Expr> {
    checks
        .enumerate()
        .map(|(i, c)| {
            c.bad
                .clone()
                .fill_null(lit(false))
                .sum()
                .cast(DataType::UInt64)
                .alias(format!("c{i}"))
        })
        .collect()
}

/// A string column cut into pieces of 64k values, for rayon.
fn pieces(ca: &StringChunked) -> Vec<<StringType as PolarsDataType>::Array> {
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

/// Each value's index in `allowed` (as UInt8), or None when some value is null or not
/// allowed. Event tables repeat values in runs, so equal neighbouring views (the same
/// string) reuse the previous code.
fn enum_codes(ca: &StringChunked, allowed: &[&str]) -> Option<UInt8Chunked> {
    use rayon::prelude::*;
    if allowed.len() > u8::MAX as usize || ca.null_count() > 0 {
        return None;
    }
    let name = ca.name().clone();
    let pieces = pieces(ca);
    let arrays: Option<Vec<UInt8Chunked>> = pieces
        .par_iter()
        .map(|arr| {
            piece_enum_codes(arr, allowed).map(|out| UInt8Chunked::from_vec(name.clone(), out))
        })
        .collect();
    let mut out = UInt8Chunked::from_vec(name, Vec::new());
    for a in arrays? {
        out.append_owned(a).ok()?;
    }
    Some(out)
}

/// [`enum_codes`] of one piece.
#[inline(never)]
fn piece_enum_codes(
    arr: &<StringType as PolarsDataType>::Array,
    allowed: &[&str],
) -> Option<Vec<u8>> {
    let bin = arr.to_binview();
    let views = bin.views();
    let mut out = Vec::with_capacity(arr.len());
    // Views of strings up to 12 bytes hold the bytes themselves: a view seen before
    // has the same code. Seen views sit in a small table indexed by a hash of the
    // view (a collision only costs a string comparison); u128::MAX is no view.
    let mut seen = [(u128::MAX, 0u8); 256];
    for (i, v) in views.iter().enumerate() {
        let raw = v.as_u128();
        let slot =
            ((raw as u64 ^ (raw >> 64) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as usize;
        let code = match seen[slot] {
            (p, c) if p == raw => c,
            _ => {
                // SAFETY: i < arr.len().
                let s = unsafe { arr.value_unchecked(i) };
                let c = allowed.iter().position(|a| *a == s)? as u8;
                if v.length <= 12 {
                    seen[slot] = (raw, c);
                }
                c
            }
        };
        out.push(code);
    }
    Some(out)
}

fn scalar_u64(df: &DataFrame, name: &str) -> u64 {
    df.column(name)
        .ok()
        .and_then(|c| c.get(0).ok())
        .and_then(|v| v.extract::<u64>())
        .unwrap_or(0)
}

/// `col=value, ...` for the first row of a frame (timestamps shown as their day).
pub fn describe_row(df: &DataFrame) -> String {
    if df.height() == 0 {
        return "(none)".into();
    }
    let mut parts = Vec::new();
    for c in df.columns() {
        // Text is quoted with control characters escaped (`"10\n01"`), so an example never
        // breaks the message's line.
        let v = match c.get(0) {
            Ok(AnyValue::String(s)) => format!("{s:?}"),
            Ok(AnyValue::StringOwned(s)) => format!("{:?}", s.as_str()),
            Ok(v) => v.to_string(),
            Err(_) => String::new(),
        };
        parts.push(format!("{}={}", c.name(), v));
    }
    parts.join(", ")
}

/// Day number (days since 1970-01-01) of a date.
pub fn day_number(d: chrono::NaiveDate) -> i32 {
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    (d - epoch).num_days() as i32
}

/// The date of a day number.
/// Day numbers beyond chrono's range (about 262,000 years) clamp to its first or last day.
pub fn date_of_day(n: i32) -> chrono::NaiveDate {
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or_default();
    epoch
        .checked_add_signed(chrono::Duration::days(n as i64))
        .unwrap_or(if n < 0 {
            chrono::NaiveDate::MIN
        } else {
            chrono::NaiveDate::MAX
        })
}

#[cfg(test)]
mod tests {
    use super::{
        batch_plan, contains_control, customer_keys, enum_codes, normalise, table_spec, ColType,
        CustomerMap, Source, DAY_OUT_OF_RANGE,
    };
    use polars::prelude::*;

    #[test]
    fn control_characters_are_unicode_cc() {
        for bad in [
            "a\nb", "\r", "\t1", "\u{0}", "x\u{1f}", "\u{7f}", "C1\u{85}", "\u{80}", "\u{9f}z",
        ] {
            assert!(contains_control(bad), "{bad:?}");
        }
        // Not Cc, Cf, Zl or Zp: printable non-ASCII, NBSP inside an id, emoji.
        for ok in [
            "C0001",
            "Zoë",
            "a\u{a0}b",
            "\u{a9}",
            "€5",
            "\u{1f600}",
            " 1 ",
        ] {
            assert!(!contains_control(ok), "{ok:?}");
        }
    }

    /// Format (Cf) and separator (Zl, Zp) characters and empty or blank ids are refused
    /// like control characters; every other character is kept.
    #[test]
    fn ids_refuse_format_separator_characters_and_blank_text() {
        for bad in [
            "",
            " ",
            "   ",
            "\u{a0}",
            "\u{3000}",
            "10\u{202e}03",
            "1003\u{2028}",
            "\u{2029}1003",
            "x\u{200b}",
            "\u{feff}1003",
            "\u{2066}1003\u{2069}",
            "\u{61c}1003",
            "10\u{ad}03",
            "1003\u{e0041}",
            "\u{200d}",
        ] {
            assert!(contains_control(bad), "{bad:?}");
        }
        assert_eq!(
            super::escape_text("a\u{1b}[2J\u{7}b\nERROR \u{202e}x\0\t\"q\" é"),
            "a\\u{1b}[2J\\u{7}b\\nERROR \\u{202e}x\\0\\t\"q\" é"
        );
    }

    fn column(name: &str, values: &[Option<&str>], dt: DataType) -> Column {
        Series::new(name.into(), values)
            .strict_cast(&dt)
            .expect("test column")
            .into_column()
    }

    /// The normalised values of a column and the rows its raw check finds bad.
    fn read(df: &DataFrame, name: &'static str, ty: ColType) -> (Column, Option<Vec<bool>>) {
        let dt = df.column(name).expect("column").dtype().clone();
        let (e, check) = normalise("t", name, ty, &dt).expect("readable");
        let out = df
            .clone()
            .lazy()
            .select([e.alias(name)])
            .collect()
            .expect("normalised");
        let bad = check.map(|c| {
            let b = df
                .clone()
                .lazy()
                .select([c.bad.fill_null(lit(false)).alias("b")])
                .collect()
                .expect("check");
            b.column("b")
                .expect("b")
                .bool()
                .expect("bool")
                .iter()
                .map(|v| v.unwrap_or(false))
                .collect()
        });
        (out.column(name).expect("out").clone(), bad)
    }

    #[test]
    fn producer_types_normalise_by_the_documented_rules() {
        let df = DataFrame::new_infer_height(vec![
            column(
                "amount",
                &[Some("19.99"), Some("0.07"), Some("12345678.91"), None],
                DataType::Decimal(18, 2),
            ),
            column(
                "wide",
                &[
                    Some("1234567890.1234567891"),
                    Some("0.1"),
                    Some("-3.3"),
                    Some("99999999999999999999.9999999999"),
                ],
                DataType::Decimal(38, 10),
            ),
            column(
                "id",
                &[Some("1001"), Some("9999999999"), Some("0"), None],
                DataType::Decimal(10, 0),
            ),
            column(
                "status",
                &[Some("completed"), Some("returned"), Some("completed"), None],
                DataType::from_categories(Categories::global()),
            ),
            column(
                "csat",
                &[Some("4.00"), Some("1.00"), Some("4.50"), None],
                DataType::Decimal(5, 2),
            ),
            column(
                "small",
                &[Some("1"), Some("5"), Some("3"), None],
                DataType::Int8,
            ),
            column(
                "huge",
                &[Some("18446744073709551615"), Some("3"), None, Some("2")],
                DataType::UInt64,
            ),
            column(
                "fcsat",
                &[Some("2.0"), Some("1e30"), Some("NaN"), Some("2.5")],
                DataType::Float64,
            ),
            column(
                "f32",
                &[Some("0.5"), Some("3.25"), None, Some("1e-3")],
                DataType::Float32,
            ),
        ])
        .expect("frame");
        let f64s = |c: &Column| c.f64().expect("f64").iter().collect::<Vec<_>>();
        let (amount, check) = read(&df, "amount", ColType::Float);
        assert!(check.is_none());
        assert_eq!(
            f64s(&amount),
            [Some(19.99), Some(0.07), Some(12345678.91), None]
        );
        // Wider than 15 digits: still the nearest Float64 (through the exact text).
        let (wide, _) = read(&df, "wide", ColType::Float);
        let nearest = |s: &str| s.parse::<f64>().ok();
        assert_eq!(
            f64s(&wide),
            [
                nearest("1234567890.1234567891"),
                Some(0.1),
                Some(-3.3),
                nearest("99999999999999999999.9999999999"),
            ]
        );
        let (f32s, _) = read(&df, "f32", ColType::Float);
        assert_eq!(
            f64s(&f32s),
            [Some(0.5), Some(3.25), None, Some(0.001f32 as f64)]
        );
        let strs = |c: &Column| {
            c.str()
                .expect("str")
                .iter()
                .map(|v| v.map(str::to_string))
                .collect::<Vec<_>>()
        };
        let (id, _) = read(&df, "id", ColType::Str);
        assert_eq!(
            strs(&id),
            [
                Some("1001".into()),
                Some("9999999999".into()),
                Some("0".into()),
                None
            ]
        );
        let (status, _) = read(&df, "status", ColType::Str);
        assert_eq!(
            strs(&status),
            [
                Some("completed".into()),
                Some("returned".into()),
                Some("completed".into()),
                None
            ]
        );
        let i64s = |c: &Column| c.i64().expect("i64").iter().collect::<Vec<_>>();
        let (csat, bad) = read(&df, "csat", ColType::Int);
        assert_eq!(i64s(&csat)[..2], [Some(4), Some(1)]);
        assert_eq!(
            bad,
            Some(vec![false, false, true, false]),
            "4.50 is not whole"
        );
        let (small, bad) = read(&df, "small", ColType::Int);
        assert_eq!(i64s(&small), [Some(1), Some(5), Some(3), None]);
        assert!(bad.is_none(), "int8 always fits");
        let (_, bad) = read(&df, "huge", ColType::Int);
        assert_eq!(bad, Some(vec![true, false, false, false]), "beyond Int64");
        // Days outside the supported dates become the marker the contract check reports.
        let days = DataFrame::new_infer_height(vec![
            Column::new(
                "ms".into(),
                [Some(1i64 << 62), Some(-(1i64 << 62)), Some(0), None],
            )
            .cast(&DataType::Datetime(TimeUnit::Milliseconds, None))
            .expect("ms"),
            Column::new(
                "d".into(),
                [Some(i32::MAX), Some(i32::MIN + 1), Some(19904), None],
            )
            .cast(&DataType::Date)
            .expect("date"),
        ])
        .expect("days");
        let out = DAY_OUT_OF_RANGE;
        for (name, want) in [
            ("ms", [Some(out), Some(out), Some(0), None]),
            ("d", [Some(out), Some(out), Some(19904), None]),
        ] {
            let (c, check) = read(&days, name, ColType::Timestamp);
            assert!(check.is_none());
            let got: Vec<Option<i32>> = c.i32().expect("i32").iter().collect();
            assert_eq!(got, want, "{name}");
        }
        let (_, bad) = read(&df, "fcsat", ColType::Int);
        assert_eq!(bad, Some(vec![false, true, true, true]), "1e30, NaN, 2.5");
    }

    #[test]
    fn types_that_cannot_stand_for_a_contract_column_are_named_with_a_fix() {
        let cases: Vec<(ColType, DataType, &str)> = vec![
            (
                ColType::Timestamp,
                DataType::Time,
                "a time of day has no date",
            ),
            (
                ColType::Timestamp,
                DataType::Duration(TimeUnit::Milliseconds),
                "a duration is not a point in time",
            ),
            (
                ColType::Timestamp,
                DataType::String,
                "text is not read as a timestamp",
            ),
            (ColType::Str, DataType::Binary, "bytes are not text"),
            (
                ColType::Str,
                DataType::Decimal(10, 2),
                "a DECIMAL with a fraction is not an id",
            ),
            (ColType::Str, DataType::Float64, "write it as text"),
            (
                ColType::Float,
                DataType::Struct(vec![Field::new("v".into(), DataType::Float64)]),
                "a nested value is not a single value",
            ),
            (
                ColType::Float,
                DataType::Decimal(60, 2),
                "DECIMAL precision above 38 is not supported",
            ),
            (ColType::Float, DataType::String, "write it as numbers"),
            (
                ColType::Int,
                DataType::List(Box::new(DataType::Int64)),
                "a nested value",
            ),
            (ColType::Bool, DataType::Int8, "write it as booleans"),
        ];
        for (ty, dt, hint) in cases {
            let err = normalise("orders", "x", ty, &dt)
                .err()
                .unwrap_or_else(|| panic!("{dt} refused as {ty:?}"))
                .to_string();
            for n in [
                "table orders",
                "column x",
                &format!("has type {dt}"),
                &format!("cannot be read as {}", ty.name()),
                hint,
            ] {
                assert!(err.contains(n), "{dt} as {ty:?}: {n:?} in {err}");
            }
        }
    }

    /// A control character in an id stops the batched reader (it changes nothing), and the
    /// whole-table check names table, column and row; a clean table passes both.
    #[test]
    fn control_character_ids_fail_the_batched_and_the_whole_table_checks() {
        let base = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/encodings/baseline");
        let dir = tempfile::tempdir().expect("tmp");
        for t in ["customers", "orders", "interactions", "support_tickets"] {
            std::fs::copy(
                base.join(format!("{t}.parquet")),
                dir.path().join(format!("{t}.parquet")),
            )
            .expect("copy");
        }
        let src = Source::open(&dir.path().display().to_string()).expect("source");
        let cols: std::collections::BTreeSet<String> =
            ["amount".to_string(), "status".to_string()].into();
        let load = |src: &Source| {
            let spec = |n| table_spec(n).expect("contract table");
            let mut customers = src.scan(spec("customers"), &[]).expect("customers");
            customers.materialize().expect("customers read");
            customers.check(None).expect("customers pass");
            let orders = src.scan(spec("orders"), &[]).expect("orders");
            (customers, orders)
        };
        let (customers, mut orders) = load(&src);
        assert!(
            orders
                .load_trimmed(&customers, &cols, None)
                .expect("batches"),
            "a clean table passes the batched checks"
        );

        let orders_file = dir.path().join("orders.parquet");
        let mut df = ParquetReader::new(std::fs::File::open(&orders_file).expect("open"))
            .finish()
            .expect("read")
            .lazy()
            .with_column(
                when(col("order_id").eq(lit("50011")))
                    .then(lit("500\u{85}11"))
                    .otherwise(col("order_id"))
                    .alias("order_id"),
            )
            .collect()
            .expect("changed");
        ParquetWriter::new(std::fs::File::create(&orders_file).expect("create"))
            .finish(&mut df)
            .expect("write");
        let (customers, mut orders) = load(&src);
        assert!(
            !orders
                .load_trimmed(&customers, &cols, None)
                .expect("batches"),
            "the batched checks refuse a control character"
        );
        orders.materialize().expect("read");
        let err = orders
            .check(Some(&customers))
            .expect_err("whole-table check refuses it")
            .to_string();
        for n in [
            "table orders, column order_id: 1 row(s) are empty or blank, or contain a control character",
            r#"order_id="500\u{85}11""#,
            r#"customer_id="1004""#,
        ] {
            assert!(err.contains(n), "{n:?} in {err}");
        }
    }

    #[test]
    fn customer_map_finds_every_id_in_any_order() {
        // Short (inline) and long ids, a null row; enough rows that the table probes wrap.
        let mut ids: Vec<Option<String>> = (0..5000).map(|i| Some(format!("C{i}"))).collect();
        ids[7] = None;
        ids[9] = Some("a-customer-id-longer-than-twelve".into());
        ids[10] = Some(String::new());
        let ca = StringChunked::from_iter_options("customer_id".into(), ids.iter().cloned());
        let map = CustomerMap::build(&ca);
        // Events in the customers' order (the next-row path), reversed and strided (the
        // table), with repeats (the run path).
        let mut events: Vec<(String, u32)> = Vec::new();
        for (row, id) in ids.iter().enumerate() {
            if let Some(id) = id {
                events.push((id.clone(), row as u32));
                events.push((id.clone(), row as u32));
            }
        }
        let forward = events.clone();
        events.reverse();
        let strided: Vec<_> = (0..events.len())
            .map(|i| events[(i * 7919) % events.len()].clone())
            .collect();
        for order in [forward, events, strided] {
            let col = StringChunked::from_iter_values(
                "customer_id".into(),
                order.iter().map(|(id, _)| id.as_str()),
            )
            .into_column();
            let keys = customer_keys(&col, &map).unwrap().expect("all known");
            let want: Vec<u32> = order.iter().map(|(_, r)| *r).collect();
            assert_eq!(keys.into_no_null_iter().collect::<Vec<_>>(), want);
        }
        // Unknown ids (short, long, and one that differs from a known id in its last
        // byte) and nulls are not found.
        for unknown in ["C5000", "C05", "a-customer-id-longer-than-twelvX", "D1"] {
            let col =
                StringChunked::from_iter_values("customer_id".into(), ["C1", unknown].into_iter())
                    .into_column();
            assert!(customer_keys(&col, &map).unwrap().is_none(), "{unknown}");
        }
        let col =
            StringChunked::from_iter_options("customer_id".into(), [Some("C1"), None].into_iter())
                .into_column();
        assert!(customer_keys(&col, &map).unwrap().is_none());
    }

    #[test]
    fn enum_codes_are_indexes_and_reject_other_values() {
        let allowed = ["web_visit", "app_login", "a_value_longer_than_12"];
        let values: Vec<&str> = (0..300).map(|i| allowed[(i * 5) % 3]).collect();
        let ca = StringChunked::from_iter_values("event_type".into(), values.iter().copied());
        let codes = enum_codes(&ca, &allowed).expect("all allowed");
        let want: Vec<u8> = (0..300).map(|i| ((i * 5) % 3) as u8).collect();
        assert_eq!(codes.into_no_null_iter().collect::<Vec<_>>(), want);
        for bad in ["web_visiT", "", "a_value_longer_than_13"] {
            let ca = StringChunked::from_iter_values(
                "event_type".into(),
                ["web_visit", bad, "app_login"].into_iter(),
            );
            assert!(enum_codes(&ca, &allowed).is_none(), "{bad}");
        }
        let ca = StringChunked::from_iter_options(
            "event_type".into(),
            [Some("web_visit"), None].into_iter(),
        );
        assert!(enum_codes(&ca, &allowed).is_none());
    }

    #[test]
    fn batches_follow_row_groups() {
        // Whole groups; small neighbours merged up to the size.
        assert_eq!(
            batch_plan(vec![40, 50, 30, 100], 220, 100),
            vec![(0, 90), (90, 30), (120, 100)]
        );
        // A group a little over the size stays whole; a large one is cut in equal parts
        // and nothing joins a cut part.
        assert_eq!(
            batch_plan(vec![120, 250, 10], 380, 100),
            vec![(0, 120), (120, 84), (204, 84), (288, 82), (370, 10)]
        );
        // Metadata that does not add up (e.g. a filtered scan): fixed batches.
        assert_eq!(
            batch_plan(vec![10, 10], 250, 100),
            vec![(0, 84), (84, 84), (168, 82)]
        );
        assert_eq!(batch_plan(vec![], 0, 100), vec![]);
        assert_eq!(batch_plan(vec![0, 5, 0], 5, 100), vec![(0, 5)]);
    }
}
