//! `c360 features ...`

use std::path::{Path, PathBuf};
use std::time::Instant;

use chrono::NaiveDate;
use clap::Subcommand;
use polars::prelude::*;

use super::Failure;
use crate::features::{self, def::Kind};
use crate::project::Project;
use crate::source::Source;
use crate::store;

#[derive(Debug, Subcommand)]
pub enum FeaturesCmd {
    /// List the feature sets under features/.
    List,
    /// Show a set's features, types, definitions and labels.
    Show {
        /// The set's name.
        set: String,
    },
    /// Build point-in-time snapshots of one or more sets into the offline store.
    #[command(
        after_help = "Example:\n  c360 features build churn_signals --as-of 2024-06-30 --source data/c360\n  c360 features build rfm churn_signals --as-of 2024-06-30\n\n\
Writes features/<set>/v<version>/as_of=<date>/run=<run_id>-<hex>/part-<n>.parquet and, last,\n\
_manifest.json in as_of=<date>/, for each set.\n\
Only events dated on or before the as-of date count. Re-running with the same definition and\n\
source reuses the committed snapshot (use --force to rebuild). Several sets are built from one\n\
read and check of the tables they read; each is committed, or reused, on its own."
    )]
    Build {
        /// The sets' names (one or more).
        #[arg(required = true, value_name = "SET")]
        sets: Vec<String>,
        /// The as-of date (YYYY-MM-DD, UTC).
        #[arg(long, value_parser = crate::names::AsOf::parse_date)]
        as_of: NaiveDate,
        /// Customer 360 source folder or URI (default: [source] uri in c360.toml).
        #[arg(long)]
        source: Option<String>,
        /// Store folder or URI (default: [store] uri in c360.toml).
        #[arg(long)]
        store: Option<String>,
        /// Rebuild even when an identical snapshot is committed.
        #[arg(long)]
        force: bool,
        /// Build even when --as-of is after the sources' last event (refused by default: the
        /// features would miss data that has not arrived).
        #[arg(long)]
        allow_as_of_past_data: bool,
    },
    /// Build a training set: each spine row's features as of its own date, plus a label.
    #[command(
        name = "training-set",
        after_help = "Example:\n  c360 features training-set rfm --spine spine.csv --label churned_90d --out train.parquet --source data/c360\n\n\
The spine (CSV or Parquet) has columns customer_id and as_of (YYYY-MM-DD); rows may repeat\n\
customers at many dates; each row's customer must have signed up by its as_of. Output keeps\n\
the spine's row order; .csv or .parquet by extension. --label is optional (no label column\n\
without it; `c360 features show SET` lists a set's labels). A label needs data up to as_of +\n\
its horizon; asking earlier is a usage error (exit 2, like an --as-of past the data), and so\n\
is a spine whose last as_of is after the sources' last event (--allow-as-of-past-data).\n\n\
A sampled spine loads only its customers' events. Computed in batches of 50 000 customers,\n\
two at a time; same output whatever the setting: C360_TRAINING_BATCH_CUSTOMERS=N (0: one\n\
batch), C360_TRAINING_WORKERS=N (batches at once, 1-8; default 2, at most POLARS_MAX_THREADS),\n\
and the diagnostics C360_TRAINING_SWEEP=off (no event sweep) and C360_TRAINING_CUT=off (load\n\
every row)."
    )]
    TrainingSet {
        /// The set's name.
        set: String,
        /// The spine file.
        #[arg(long)]
        spine: PathBuf,
        /// A label defined in the set (e.g. churned_90d).
        #[arg(long)]
        label: Option<String>,
        /// Output file (.parquet or .csv; replaced when it exists; missing folders are
        /// created, like every output path of c360).
        #[arg(long)]
        out: PathBuf,
        /// Customer 360 source folder or URI.
        #[arg(long)]
        source: Option<String>,
        /// Compute even when the spine's last date is after the sources' last event
        /// (refused by default, as `features build` refuses such an --as-of: the features
        /// would miss data that has not arrived).
        #[arg(long)]
        allow_as_of_past_data: bool,
    },
    /// Print the SQL query a set compiles to (duckdb, spark, athena).
    Sql(super::sql::SqlArgs),
}

pub fn run(config: Option<&Path>, cmd: FeaturesCmd) -> Result<(), Failure> {
    let project = Project::load(config)?;
    super::need_folder(&project, super::Folder::Features)?;
    match cmd {
        FeaturesCmd::Sql(a) => super::sql::run(&project, a),
        FeaturesCmd::List => {
            let sets = project.feature_sets()?;
            println!(
                "{:<20} {:>7} {:>9}  description",
                "set", "version", "features"
            );
            for s in sets {
                println!(
                    "{:<20} {:>7} {:>9}  {}",
                    s.name,
                    format!("v{}", s.version),
                    s.outputs().len(),
                    s.description
                );
            }
            Ok(())
        }
        FeaturesCmd::Show { set } => {
            let s = features::find_set(&project.features_dir(), &set)?;
            println!("{} v{}  ({})", s.name, s.version, s.path.display());
            println!("{}", s.description);
            println!("owner: {}   definition: {}", s.owner, s.hash);
            println!(
                "tables: {}",
                s.tables().into_iter().collect::<Vec<_>>().join(", ")
            );
            println!();
            println!(
                "{:<26} {:<8} {:<52} description",
                "feature", "type", "definition"
            );
            let row = |f: &features::def::Feature| {
                println!(
                    "{:<26} {:<8} {:<52} {}",
                    f.name,
                    f.ty.name(),
                    describe(&f.kind),
                    f.description
                )
            };
            s.outputs().into_iter().for_each(row);
            let hidden: Vec<_> = s.features.iter().filter(|f| f.hidden).collect();
            if !hidden.is_empty() {
                println!("\nintermediate (not stored):");
                hidden.into_iter().for_each(row);
            }
            let pii = features::lineage::pii_outputs(&s);
            if !pii.is_empty() {
                println!("\nPII by lineage (kept in the offline store, never in a data product):");
                for (name, sources) in &pii {
                    println!("{:<26} from {}", name, sources.join(", "));
                }
            }
            if !s.labels.is_empty() {
                println!("\nlabels:");
                for l in &s.labels {
                    println!(
                        "{:<26} {} {} in the {} days after as_of{}  {}",
                        l.name,
                        if l.no_event {
                            "1 when no"
                        } else {
                            "1 when any"
                        },
                        l.table.name,
                        l.horizon_days,
                        l.filter
                            .as_ref()
                            .map(|f| format!(" where {f}"))
                            .unwrap_or_default(),
                        l.description
                    );
                }
            }
            Ok(())
        }
        FeaturesCmd::Build {
            sets,
            as_of,
            source,
            store,
            force,
            allow_as_of_past_data,
        } => {
            let mut found: Vec<features::FeatureSet> = Vec::new();
            for name in &sets {
                if !found.iter().any(|s| s.name == name.as_str()) {
                    found.push(features::find_set(&project.features_dir(), name)?);
                }
            }
            let source_uri = source.unwrap_or_else(|| project.source_uri());
            let store_uri = store.unwrap_or_else(|| project.store_uri());
            let src =
                crate::source::Source::open(&source_uri).map_err(features::FeatureError::from)?;
            let tables: Vec<&str> = found
                .iter()
                .flat_map(|s| s.tables())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            features::check_data_reach(
                &src,
                &source_uri,
                &tables,
                as_of,
                allow_as_of_past_data,
                "",
            )
            .map_err(|m| Failure {
                code: super::exit::USAGE,
                error: anyhow::anyhow!(m),
            })?;
            let st = store::open(&store_uri)?;
            let mesh = crate::mesh::Mesh::open(&project.config, &st.uri())?;
            let t0 = Instant::now();
            let names: Vec<&str> = found.iter().map(|s| s.name.as_str()).collect();
            let pb =
                crate::telemetry::spinner(&format!("building {} as of {as_of}", names.join(", ")));
            let refs: Vec<&features::FeatureSet> = found.iter().collect();
            let built = features::build_snapshots(&refs, &source_uri, st.as_ref(), as_of, force)?;
            pb.finish_and_clear();
            let secs = t0.elapsed().as_secs_f64();
            for (s, out) in found.iter().zip(&built) {
                // Registered after the commit (and again when reused: repairs a missed one).
                // The snapshot is committed either way: a catalog that cannot take it is a
                // warning.
                let registered = match mesh.catalog.register_snapshot(st.as_ref(), &out.manifest) {
                    Ok(r) => r,
                    Err(e) => {
                        eprintln!("warning: {e}; the snapshot is committed but not registered: `c360 catalog sync` registers it once the catalog answers");
                        None
                    }
                };
                let verb = if out.reused {
                    "already committed (same definition and source)"
                } else {
                    "built"
                };
                say!(
                    "{} v{} as of {}: {} rows {verb} in {secs:.2}s -> {}/{}",
                    s.name,
                    s.version,
                    as_of,
                    out.manifest.rows,
                    st.uri(),
                    out.prefix
                );
                if let Some(c) = registered {
                    say!(
                        "  glue {}.{}: partition as_of={as_of} -> {}",
                        c.database,
                        c.table,
                        c.location
                    );
                }
            }
            Ok(())
        }
        FeaturesCmd::TrainingSet {
            set,
            spine,
            label,
            out,
            source,
            allow_as_of_past_data,
        } => {
            if !out
                .extension()
                .is_some_and(|e| e == "csv" || e == "parquet")
            {
                return Err(super::Failure {
                    code: super::exit::USAGE,
                    error: anyhow::anyhow!(
                        "--out {}: name a .parquet or .csv file (the format follows the extension)",
                        out.display()
                    ),
                });
            }
            if spine.is_dir() {
                return Err(super::Failure {
                    code: super::exit::USAGE,
                    error: anyhow::anyhow!(
                        "--spine {} is a folder: name the spine file (.csv or .parquet) in it",
                        spine.display()
                    ),
                });
            }
            if same_file(&out, &spine) {
                return Err(super::Failure {
                    code: super::exit::USAGE,
                    error: anyhow::anyhow!(
                        "--out {} is the spine file: name another file (the spine would be replaced)",
                        out.display()
                    ),
                });
            }
            super::check_out("--out", &out, super::OutKind::File)?;
            let s = features::find_set(&project.features_dir(), &set)?;
            let source_uri = source.unwrap_or_else(|| project.source_uri());
            super::check_out_not_in_source("--out", &out, &source_uri)?;
            let t0 = Instant::now();
            let src = Source::open(&source_uri)?;
            let pb = crate::telemetry::spinner("reading the spine");
            let spine_df = features::read_spine(&spine)?;
            // The spine's dates are its as-ofs: the last one must be within the data, as
            // `features build` requires of --as-of (the same check, the same exit 2).
            if let Some(last) = last_spine_date(&spine_df) {
                features::check_data_reach(
                    &src,
                    &source_uri,
                    &s.tables().into_iter().collect::<Vec<_>>(),
                    last,
                    allow_as_of_past_data,
                    "",
                )
                .map_err(|m| Failure {
                    code: super::exit::USAGE,
                    error: anyhow::anyhow!(
                        "spine {}: the latest as_of: {}",
                        spine.display(),
                        m.replace("Use --as-of ", "Use spine dates of ")
                    ),
                })?;
            }
            // Only the rows the spine can read are kept (C360_TRAINING_CUT=off: all).
            pb.set_message("checking source tables");
            let loaded = features::load_for_spine(&s, &src, &spine_df, label.as_deref())?;
            pb.set_message(format!("computing {} rows", spine_df.height()));
            let rows = features::training_set_rows(
                &s,
                &loaded,
                &spine_df,
                &spine.display().to_string(),
                label.as_deref(),
            )?;
            pb.finish_and_clear();
            super::create_out_folder("--out", &out)?;
            let t1 = Instant::now();
            let (height, width) = (rows.height(), rows.width());
            if out.extension().is_some_and(|e| e == "csv") {
                let mut df = rows
                    .into_frame()
                    .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display()))?;
                write_frame(&mut df, &out)?;
            } else {
                // Written in spine order straight from the batches' outputs, on every thread.
                write_atomic(&out, |f| rows.write_parquet(f).map(|_| ()))?;
            }
            tracing::debug!(
                rows = height,
                secs = t1.elapsed().as_secs_f64(),
                "training set written"
            );
            say!(
                "{}: {} rows x {} columns in {:.2}s -> {}",
                s.name,
                height,
                width,
                t0.elapsed().as_secs_f64(),
                out.display()
            );
            Ok(())
        }
    }
}

/// The latest `as_of` of a spine as [`features::read_spine`] gives it (None when empty).
fn last_spine_date(spine: &DataFrame) -> Option<NaiveDate> {
    let day = spine
        .column(features::compile::AS_OF)
        .ok()?
        .as_materialized_series()
        .max::<i32>()
        .ok()??;
    Some(crate::names::AsOf::from_day_number(day).date())
}

/// Whether two paths name one existing file (after resolving `.`, `..` and links).
fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn describe(k: &Kind) -> String {
    match k {
        Kind::Agg(a) => {
            let mut s = format!("{:?}", a.func).to_lowercase();
            if let Some(c) = &a.column {
                s = format!("{s}({c})");
            }
            s = format!("{s} of {}", a.table.name);
            if let Some((w, o)) = a.window {
                if o == 0 {
                    s = format!("{s}, {w}d");
                } else {
                    s = format!("{s}, (D-{}, D-{o}]", w + o);
                }
            }
            if let Some(f) = &a.filter {
                s = format!("{s} where {f}");
            }
            s
        }
        Kind::Entity { column, .. } => format!("customers.{column}"),
        Kind::Derived(expr) => expr.to_string(),
        Kind::Quantile {
            of,
            bins,
            higher_is_better,
            ..
        } => {
            format!(
                "1..{bins} score of {of} ({} is better)",
                if *higher_is_better { "higher" } else { "lower" }
            )
        }
        Kind::Case { cases, .. } => format!("mapping table ({} cases)", cases.len()),
    }
}

/// Writes a frame as Parquet or CSV by extension, atomically ([`write_atomic`]).
pub fn write_frame(df: &mut DataFrame, out: &Path) -> anyhow::Result<()> {
    let csv = out.extension().is_some_and(|e| e == "csv");
    write_atomic(out, |f| {
        if csv {
            CsvWriter::new(f).include_header(true).finish(df)
        } else {
            // As the store writes its Parquet (`offline.rs`): Snappy (faster to write than
            // the default zstd: 0.8 s against 1.1 s for 5.7M rows x 23), with statistics.
            ParquetWriter::new(f)
                .with_compression(ParquetCompression::Snappy)
                .with_statistics(StatisticsOptions::default())
                .finish(df)
                .map(|_| ())
        }
    })
}

/// Writes `out` through `write` into `<out>.c360.tmp` next to it (its folder created),
/// renamed to `out` once complete: a failed write leaves neither a partial `out` nor the
/// temporary file. Errors name `out` and the cause.
pub fn write_atomic(
    out: &Path,
    write: impl FnOnce(std::fs::File) -> PolarsResult<()>,
) -> anyhow::Result<()> {
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = out.with_extension("c360.tmp");
    let f = std::fs::File::create(&tmp)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display()))?;
    let written = write(f);
    // Nothing half-written stays behind: the temporary file goes on any failure.
    let done = written
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display()))
        .and_then(|()| {
            std::fs::rename(&tmp, out)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", out.display()))
        });
    if done.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    done
}
