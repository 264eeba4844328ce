//! Scanning a located table with polars: the one CSV reader set-up, per-file schema
//! checks (type disagreements, hive partition folders), the panic guard around every
//! reader call, and the normalised [`Table`] that [`Source::scan`] returns.

use std::path::{Path, PathBuf};

use polars::prelude::*;

use super::contract::{id_columns, TableSpec};
use super::error::{Result, SourceError};
use super::locate::Source;
use super::normalise::{normalise, normalise_extra};
use super::table::Table;

impl Source {
    /// Scans a table, checks its schema against the contract, and returns the normalised
    /// LazyFrame (contract columns plus `extra` columns, timestamps as day numbers).
    pub fn scan(&self, table: &'static TableSpec, extra: &[String]) -> Result<Table> {
        let loc = self.locate(table)?;
        let name = table.name;
        self.fetch(&loc)?;
        let pe = |path: &Path| {
            let path = path.display().to_string();
            move |e: PolarsError| SourceError::Unreadable {
                table: name.into(),
                path,
                cause: e.into(),
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

pub(super) fn scan_file(path: &Path, csv: bool, table: &TableSpec) -> PolarsResult<LazyFrame> {
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

impl Table {
    /// The table as stored, before normalisation (for checks a cast would hide).
    pub(super) fn raw_frame(&self) -> PolarsResult<LazyFrame> {
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
}
