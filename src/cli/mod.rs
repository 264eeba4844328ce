//! The command line: clap definitions, progress, output and exit codes. No logic of its
//! own: every command calls into the library.

/// `println!` for a status or summary line ("built ...", "wrote ..."): nothing under `-q`,
/// which promises only warnings and errors. What a command is asked to show (a list, a
/// product row, a plan, `--json`) prints with `println!` whatever `-q` says.
macro_rules! say {
    ($($arg:tt)*) => {
        if !$crate::cli::quiet() {
            println!($($arg)*)
        }
    };
}

pub mod catalog;
pub mod env_vars;
pub mod features;
pub mod models;
pub mod plan;
pub mod products;
pub mod run;
pub mod score;
pub mod serve;
pub mod serve_model;
pub mod sql;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use clap::{Parser, Subcommand};

use crate::project::Project;

/// Exit codes scripts can rely on.
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// Any other failure (I/O, store, internal).
    pub const FAILURE: i32 = 1;
    /// Bad command-line usage (clap's own code).
    pub const USAGE: i32 = 2;
    /// Invalid c360.toml or definitions (features/, models/, jobs/).
    pub const INVALID_DEFINITION: i32 = 3;
    /// Input data violates the Customer 360 contract (or a spine/model input is bad).
    pub const BAD_INPUT: i32 = 4;
    /// A quality gate refused to publish (the previous product version stays latest).
    pub const GATE_FAILED: i32 = 5;
}

const AFTER_HELP: &str = "\
Getting started:
  c360 demo                          generate sample data, build features, score, publish
  c360 generate --customers 100000 --out data/c360
  c360 features build rfm --as-of 2024-06-30 --source data/c360
  c360 features training-set churn_signals --spine spine.csv --label churned_90d --out train.parquet --source data/c360

Configuration: c360.toml in the working folder (or --config / C360_CONFIG); C360_STORE and
C360_SOURCE override its store and source. Logs: C360_LOG=debug.

Exit codes: 0 ok, 1 failure, 2 usage (also a date past the sources' data), 3 invalid definition
or config, 4 bad input data, 5 quality gate failed (nothing published). -q: only warnings and
errors.";

/// c360: Customer 360 features, batch scoring and data products.
#[derive(Debug, Parser)]
#[command(name = "c360", version, about, long_about = None, after_help = AFTER_HELP)]
pub struct Cli {
    /// Path to c360.toml (default: ./c360.toml, else built-in defaults).
    #[arg(long, global = true, env = "C360_CONFIG")]
    pub config: Option<PathBuf>,
    /// More log output (repeat for more).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only warnings and errors: no progress bars, status or summary lines. What a command
    /// is asked to show (a list, a set, a product row, a plan, --json) still prints.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the whole flow on sample data on this machine: generate, build features, score, publish.
    Demo(DemoArgs),
    /// Generate deterministic synthetic Customer 360 tables (Parquet) with real churn behaviour.
    Generate(GenerateArgs),
    /// Check c360.toml and every definition under features/ (and later models/, jobs/).
    Validate,
    /// Feature sets: list, show, build snapshots, make training sets.
    #[command(subcommand)]
    Features(features::FeaturesCmd),
    /// Models: fit the customer lifetime value models (BG/NBD, Gamma-Gamma).
    #[command(subcommand)]
    Models(models::ModelsCmd),
    /// Run a scoring job: features, batch transform, quality gates, data product.
    Run(run::RunArgs),
    /// Published data products: list, show, get one customer, gc old runs.
    #[command(subcommand)]
    Products(run::ProductsCmd),
    /// The central catalog (Glue Data Catalog, Lake Formation tags): `sync` registers every
    /// committed product version and feature snapshot of the store ([catalog] in c360.toml).
    #[command(subcommand)]
    Catalog(catalog::CatalogCmd),
    /// Batch-transform records with a model locally, with SageMaker's semantics.
    Score(score::ScoreArgs),
    /// Size a SageMaker batch transform for a row count: type, count, parts, concurrency, cost.
    Plan(plan::PlanArgs),
    /// Serve a model over the SageMaker inference-container contract (port 8080).
    ServeModel(serve_model::ServeModelArgs),
    /// The long-running service: job scheduler and HTTP API (with access control and metrics).
    Serve(serve::ServeArgs),
}

/// `c360 demo`
#[derive(Debug, clap::Args)]
#[command(after_help = "Example:\n  c360 demo --customers 100000\n\n\
Writes the sample Customer 360 tables under <dir>/data and the store under <dir>/store.")]
pub struct DemoArgs {
    /// How many sample customers (1 to 100,000,000).
    #[arg(long, default_value_t = 10_000, value_parser = parse_customers)]
    pub customers: usize,
    /// Working folder for the demo's data and store (created if missing).
    #[arg(long, default_value = ".c360/demo")]
    pub dir: PathBuf,
    /// Random seed of the sample data.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// The as-of date of the features.
    #[arg(long, value_parser = crate::names::AsOf::parse_date, default_value = "2024-09-30")]
    pub as_of: chrono::NaiveDate,
}

/// `--customers`: a whole number in 1..=[`crate::generate::MAX_CUSTOMERS`].
fn parse_customers(s: &str) -> Result<usize, String> {
    use crate::generate::MAX_CUSTOMERS;
    let range = format!("the allowed range is 1 to {MAX_CUSTOMERS}");
    match s.trim().replace('_', "").parse::<u128>() {
        Ok(n) if (1..=MAX_CUSTOMERS as u128).contains(&n) => Ok(n as usize),
        Ok(n) => Err(format!("{n} is out of range: {range}")),
        Err(_) => Err(format!("{s:?} is not a whole number: {range}")),
    }
}

/// `c360 generate`
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Example:\n  c360 generate --customers 1000000 --out data/c360 --seed 7\n\n\
Writes customers.parquet, orders.parquet, interactions.parquet and support_tickets.parquet;\n\
about 10 orders and 30 interactions per customer. The same seed gives the same data.\n\
Customers are written in chunks: memory stays bounded at any --customers."
)]
pub struct GenerateArgs {
    /// How many customers (1 to 100,000,000; about 0.5 GB of Parquet per million).
    #[arg(long, default_value_t = 10_000, value_parser = parse_customers)]
    pub customers: usize,
    /// Output folder (created if missing, with its parents; files there are replaced).
    #[arg(long)]
    pub out: PathBuf,
    /// Random seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// First sign-up date (YYYY-MM-DD).
    #[arg(long, value_parser = crate::names::AsOf::parse_date, default_value = "2022-01-01")]
    pub start: chrono::NaiveDate,
    /// Last date with data (YYYY-MM-DD).
    #[arg(long, value_parser = crate::names::AsOf::parse_date, default_value = "2024-12-31")]
    pub end: chrono::NaiveDate,
    /// Customers simulated and written at a time (bounds memory; the files are the same
    /// for every value). Hidden: for tests and memory measurements.
    #[arg(long, hide = true, default_value_t = crate::generate::DEFAULT_CHUNK_CUSTOMERS,
          value_parser = parse_customers)]
    pub chunk_customers: usize,
}

/// A definition folder a command reads: its `[paths]` key in c360.toml.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Folder {
    /// `features` (feature sets).
    Features,
    /// `models`.
    Models,
    /// `jobs`.
    Jobs,
}

impl Folder {
    fn key(self) -> &'static str {
        match self {
            Folder::Features => "features",
            Folder::Models => "models",
            Folder::Jobs => "jobs",
        }
    }

    /// The folder's path in `project`.
    pub fn path(self, project: &Project) -> PathBuf {
        match self {
            Folder::Features => project.features_dir(),
            Folder::Models => project.models_dir(),
            Folder::Jobs => project.jobs_dir(),
        }
    }
}

/// Where to run c360 from when `folder` does not exist in `project`: None when it exists.
/// Without a c360.toml the folders are looked up in the working folder, so the usual cause
/// is running c360 outside the project folder: the text says so and names `--config`.
pub fn missing_folder_hint(project: &Project, folder: Folder) -> Option<String> {
    let dir = folder.path(project);
    if dir.is_dir() {
        return None;
    }
    let key = folder.key();
    Some(match &project.config_file {
        None => {
            let cwd = std::env::current_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_else(|_| "the working folder".into());
            format!(
                "no {key}/ folder in {cwd}, and no c360.toml there (so c360 uses its built-in defaults: features/, models/ and jobs/ in the working folder). Run c360 from your project folder (the one holding c360.toml and features/), or pass --config PATH/TO/c360.toml (or set C360_CONFIG)"
            )
        }
        Some(file) => format!(
            "the {key} folder {} does not exist ([paths] {key} in {}, relative to that file's folder): fix [paths] {key}, or pass --config with the right c360.toml",
            dir.display(),
            file.display()
        ),
    })
}

/// [`missing_folder_hint`] as a refusal (exit 3), for a command that cannot run without
/// the folder.
pub fn need_folder(project: &Project, folder: Folder) -> Result<(), Failure> {
    match missing_folder_hint(project, folder) {
        None => Ok(()),
        Some(hint) => Err(Failure {
            code: exit::INVALID_DEFINITION,
            error: anyhow::anyhow!("{hint}"),
        }),
    }
}

/// What an output flag names: a file, or a folder files are written into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutKind {
    /// A file (`features training-set --out`): its folder is created.
    File,
    /// A folder files go into (`generate --out`): created by the command that writes it.
    Folder,
}

/// The one rule of c360's output paths (`generate --out`, `features training-set --out`,
/// `score --output`, `demo --dir`): missing folders are created (when the output is
/// written: [`create_out_folder`]); a path that cannot be one (a file where a folder must
/// be, a folder where the file goes) is a usage error (exit 2) naming the path, checked
/// here before any work.
pub fn check_out(flag: &str, path: &Path, kind: OutKind) -> Result<(), Failure> {
    let usage = |m: String| Failure {
        code: exit::USAGE,
        error: anyhow::anyhow!("{m}"),
    };
    if kind == OutKind::File && path.is_dir() {
        return Err(usage(format!(
            "{flag} {} is a folder: name the file to write in it",
            path.display()
        )));
    }
    let folder = match kind {
        OutKind::File => path.parent().filter(|d| !d.as_os_str().is_empty()),
        OutKind::Folder => Some(path),
    };
    let Some(folder) = folder else {
        return Ok(());
    };
    // The nearest part of the path that exists must be a folder.
    if let Some(existing) = folder.ancestors().find(|a| a.exists()) {
        if !existing.is_dir() {
            return Err(usage(format!(
                "{flag} {}: {} is not a folder (it is a file); name a path under a folder (missing folders are created)",
                path.display(),
                existing.display()
            )));
        }
    }
    Ok(())
}

/// Refuses an output file `path` (given as `flag`) that is one of the local source's tables
/// (`<source>/<table>.parquet` or `.csv`, or a file in a `<source>/<table>/` folder) for any
/// contract table; S3 and Glue sources are never written here. A training set named
/// `data/customers.parquet` replaced the customers table; one written into `data/orders/`
/// would be read as part of the orders next time. Other files next to the tables are fine.
/// Exit 2 naming both.
pub fn check_out_not_in_source(flag: &str, path: &Path, source_uri: &str) -> Result<(), Failure> {
    if source_uri.contains("://") && !source_uri.starts_with("file://") {
        return Ok(());
    }
    let source = Path::new(source_uri.strip_prefix("file://").unwrap_or(source_uri));
    let Ok(source) = std::fs::canonicalize(source) else {
        return Ok(()); // a missing source is reported when it is opened
    };
    // The output's nearest existing folder, resolved, plus the rest of its path.
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let Some(existing) = absolute.ancestors().find(|a| a.exists()) else {
        return Ok(());
    };
    let Ok(resolved) = std::fs::canonicalize(existing) else {
        return Ok(());
    };
    // The rest does not exist yet: once its folders are made, `..` in it is lexical.
    let mut out = resolved;
    for c in absolute
        .strip_prefix(existing)
        .unwrap_or(Path::new(""))
        .components()
    {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    let Ok(inside) = out.strip_prefix(&source) else {
        return Ok(());
    };
    let mut parts = inside.components();
    let first = parts
        .next()
        .map(|c| c.as_os_str().to_string_lossy().to_string());
    let nested = parts.next().is_some();
    let table = first.as_deref().and_then(|f| {
        crate::source::CONTRACT.iter().map(|t| t.name).find(|t| {
            (nested && f == *t)
                || (!nested && (f == format!("{t}.parquet") || f == format!("{t}.csv")))
        })
    });
    match table {
        Some(t) => Err(Failure {
            code: exit::USAGE,
            error: anyhow::anyhow!(
                "{flag} {} is the source's {t} table ({}): c360 never writes the producers' tables; write it elsewhere",
                path.display(),
                source.display()
            ),
        }),
        None => Ok(()),
    }
}

/// Creates the missing folders of the output file `path` (given as `flag`), just before
/// it is written, so a command that fails earlier leaves no folder behind; a failure
/// (e.g. no permission) is exit 1 naming the folder.
pub fn create_out_folder(flag: &str, path: &Path) -> Result<(), Failure> {
    let Some(folder) = path.parent().filter(|d| !d.as_os_str().is_empty()) else {
        return Ok(());
    };
    std::fs::create_dir_all(folder).map_err(|e| Failure {
        code: exit::FAILURE,
        error: anyhow::anyhow!(
            "{flag} {}: cannot create the folder {}: {e}",
            path.display(),
            folder.display()
        ),
    })
}

/// An error with the exit code it deserves.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        let error = e.into();
        Failure {
            code: classify(&error),
            error,
        }
    }
}

/// Bad input (4), except a source whose store or catalog could not be asked: a failure to
/// retry (1).
fn source_code(se: &crate::source::SourceError) -> i32 {
    use crate::store::StoreError as S;
    match se {
        crate::source::SourceError::Store {
            cause: S::Backend { .. } | S::Io { .. },
            ..
        } => exit::FAILURE,
        _ => exit::BAD_INPUT,
    }
}

fn feature_code(fe: &crate::features::FeatureError) -> i32 {
    use crate::features::FeatureError;
    match fe {
        FeatureError::Definitions(_) | FeatureError::UnknownSet(..) => exit::INVALID_DEFINITION,
        FeatureError::Source(se) => source_code(se),
        FeatureError::Spine { .. } | FeatureError::SpineData { .. } => exit::BAD_INPUT,
        // An unknown --label, or spine dates plus the label's horizon past the sources'
        // data: the question is wrong for these sources (change --label or the spine's
        // dates, or wait for the data), like an --as-of past the data (exit 2); the data
        // itself breaks no rule (exit 4 is for data that must be fixed).
        FeatureError::Label { .. } => exit::USAGE,
        _ => exit::FAILURE,
    }
}

fn classify(e: &anyhow::Error) -> i32 {
    use crate::features::FeatureError;
    for cause in e.chain() {
        if cause.downcast_ref::<crate::features::DefErrors>().is_some()
            || cause
                .downcast_ref::<crate::project::ProjectError>()
                .is_some()
        {
            return exit::INVALID_DEFINITION;
        }
        if let Some(se) = cause.downcast_ref::<crate::source::SourceError>() {
            return source_code(se);
        }
        if let Some(pe) = cause.downcast_ref::<crate::pipeline::PipelineError>() {
            use crate::pipeline::PipelineError as P;
            match pe {
                P::Definition(_) => return exit::INVALID_DEFINITION,
                P::Gate(_) => return exit::GATE_FAILED,
                P::AsOf(_) => return exit::USAGE,
                P::Features(fe) => return feature_code(fe),
                // The catalog's refusals are classified with their cause, below.
                P::Product(_) | P::Mesh(_) => {}
                _ => return exit::FAILURE,
            }
        }
        if let Some(me) = cause.downcast_ref::<crate::mesh::MeshError>() {
            use crate::mesh::MeshError as M;
            return match me {
                // A call that failed (unreachable, denied): try again later.
                M::Aws { .. } => exit::FAILURE,
                // What the definitions or settings ask cannot be registered: change them
                // (bump the major, rename the product, fix [catalog]).
                M::SchemaChange { .. }
                | M::Conflict { .. }
                | M::UnsupportedType { .. }
                | M::Settings { .. } => exit::INVALID_DEFINITION,
            };
        }
        if let Some(fe) = cause.downcast_ref::<FeatureError>() {
            return feature_code(fe);
        }
    }
    exit::FAILURE
}

/// The text printed for a failed command: `error: <message>`, then each cause the message
/// does not already say, on its own line (`  caused by: <cause>`), outermost first. Causes are
/// the `source()` chain (a polars, S3 or I/O error under c360's own message). A cause's text
/// is shown escaped, as c360's messages show source-supplied text: a reader's message quotes
/// file names and values, which must not move the terminal's cursor or start a fake line.
pub fn error_report(e: &anyhow::Error) -> String {
    let mut out = format!("error: {e}");
    for cause in e.chain().skip(1) {
        let text = crate::source::error::escape_text(&cause.to_string());
        if !text.is_empty() && !out.contains(&text) {
            out.push_str("\n  caused by: ");
            out.push_str(&text);
        }
    }
    out
}

/// Whether `-q` was given: status and summary lines are not printed ([`say!`]).
static QUIET: AtomicBool = AtomicBool::new(false);

/// Whether `-q` was given (see [`say!`]).
pub fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Runs the parsed command line; the binary maps the result to an exit code.
///
/// Errors: a `C360_*` variable c360 cannot read is refused first (exit 2,
/// [`env_vars::check`]), before anything is read or written.
pub fn run(cli: Cli) -> Result<(), Failure> {
    QUIET.store(cli.quiet, Ordering::Relaxed);
    if let Some(dir) = cli.config.as_deref().filter(|p| p.is_dir()) {
        // A project folder passed for its c360.toml: say which file to pass.
        let inside = dir.join("c360.toml");
        return Err(Failure {
            code: exit::INVALID_DEFINITION,
            error: anyhow::anyhow!(
                "--config (or C360_CONFIG) {} is a folder: pass the c360.toml file{}",
                dir.display(),
                if inside.is_file() {
                    format!(" ({})", inside.display())
                } else {
                    " (there is none in it)".to_string()
                }
            ),
        });
    }
    if cli.quiet {
        crate::telemetry::hide_progress();
    }
    env_vars::check()?;
    let level = if cli.quiet {
        "warn"
    } else {
        match cli.verbose {
            0 => "warn",
            1 => "info",
            2 => "debug",
            _ => "trace",
        }
    };
    crate::telemetry::init(level);
    match cli.command {
        Command::Demo(a) => demo(cli.config.as_deref(), a),
        Command::Generate(a) => generate(a),
        Command::Validate => validate(cli.config.as_deref()),
        Command::Features(cmd) => features::run(cli.config.as_deref(), cmd),
        Command::Models(cmd) => models::run(cli.config.as_deref(), cmd),
        Command::Run(a) => run::run(cli.config.as_deref(), a),
        Command::Products(cmd) => run::products(cli.config.as_deref(), cmd),
        Command::Catalog(cmd) => catalog::run(cli.config.as_deref(), cmd),
        Command::Score(a) => {
            // A local folder (an s3:// prefix is checked by the store).
            if !a.output.contains("://") {
                check_out("--output", Path::new(&a.output), OutKind::Folder)?;
            }
            score::run(a).map_err(Failure::from)
        }
        Command::Plan(a) => plan::run(a),
        Command::ServeModel(a) => serve_model::run(a).map_err(Failure::from),
        Command::Serve(a) => serve::run(cli.config.as_deref(), a),
    }
}

fn generate(a: GenerateArgs) -> Result<(), Failure> {
    check_out("--out", &a.out, OutKind::Folder)?;
    let cfg = crate::generate::GenConfig {
        customers: a.customers,
        seed: a.seed,
        start: a.start,
        end: a.end,
        chunk_customers: a.chunk_customers,
    };
    let pb = crate::telemetry::bar(a.customers as u64, "generating customers", "customers");
    let t = std::time::Instant::now();
    let s = crate::generate::generate(&cfg, &a.out, &|n| pb.inc(n)).map_err(|e| Failure {
        code: match e {
            crate::generate::GenError::Config(_) => exit::USAGE,
            _ => exit::FAILURE,
        },
        error: e.into(),
    })?;
    pb.finish_and_clear();
    say!(
        "wrote {} customers, {} orders, {} interactions, {} support tickets to {} in {:.1}s ({} customers churn before {})",
        s.customers,
        s.orders,
        s.interactions,
        s.support_tickets,
        a.out.display(),
        t.elapsed().as_secs_f64(),
        s.churners,
        a.end
    );
    Ok(())
}

fn demo(config: Option<&std::path::Path>, a: DemoArgs) -> Result<(), Failure> {
    let project = Project::load(config)?;
    for folder in [Folder::Features, Folder::Models, Folder::Jobs] {
        need_folder(&project, folder)?;
    }
    check_out("--dir", &a.dir, OutKind::Folder)?;
    let data = a.dir.join("data");
    let store_dir = a.dir.join("store");
    let t0 = std::time::Instant::now();
    say!(
        "1/2 generating {} sample customers into {}",
        a.customers,
        data.display()
    );
    generate(GenerateArgs {
        customers: a.customers,
        out: data.clone(),
        seed: a.seed,
        start: chrono::NaiveDate::from_ymd_opt(2022, 1, 1).unwrap_or_default(),
        end: chrono::NaiveDate::from_ymd_opt(2024, 12, 31).unwrap_or_default(),
        chunk_customers: crate::generate::DEFAULT_CHUNK_CUSTOMERS,
    })?;
    let (jobs, _) = crate::pipeline::job::load_all(&project.jobs_dir());
    let Some(job) = jobs.first() else {
        return Err(Failure {
            code: exit::INVALID_DEFINITION,
            error: anyhow::anyhow!(
                "no job under {}: the demo runs the first job (ship jobs/churn_weekly.toml)",
                project.jobs_dir().display()
            ),
        });
    };
    say!(
        "2/2 running job {} as of {} (features, batch transform, gates, publish)",
        job.name,
        a.as_of
    );
    let opts = crate::pipeline::RunOptions {
        as_of: Some(a.as_of),
        source: Some(data.display().to_string()),
        store: Some(store_dir.display().to_string()),
        ..Default::default()
    };
    let report = run::run_job(&project, &job.name, &opts)?;
    let st = crate::store::open(&report.store_uri)?;
    let product = job.product.name.clone();
    let (latest, df) = crate::product::read_latest(st.as_ref(), &product)?;
    say!();
    say!(
        "published {} ({} customers as of {}) in {:.1}s:",
        product,
        df.height(),
        latest.as_of,
        t0.elapsed().as_secs_f64()
    );
    say!("    {}/{}", st.uri(), latest.path);
    let counts = |c: &str| -> Vec<(String, u32)> {
        use polars::prelude::*;
        let Ok(vc) = df
            .clone()
            .lazy()
            .group_by([col(c)])
            .agg([len().alias("n")])
            .sort(
                ["n"],
                SortMultipleOptions::default().with_order_descending(true),
            )
            .collect()
        else {
            return vec![];
        };
        let (Ok(names), Ok(ns)) = (vc.column(c), vc.column("n")) else {
            return vec![];
        };
        (0..vc.height())
            .map(|i| {
                let name = names
                    .get(i)
                    .ok()
                    .and_then(|v| v.get_str().map(String::from))
                    .unwrap_or_else(|| "(no purchase)".into());
                let n = ns.get(i).ok().and_then(|v| v.extract::<u32>()).unwrap_or(0);
                (name, n)
            })
            .collect()
    };
    let fmt = |v: Vec<(String, u32)>, k: usize| {
        v.into_iter()
            .take(k)
            .map(|(n, c)| format!("{n} {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    say!("    risk bands:   {}", fmt(counts("risk_band"), 10));
    if df.column("rfm_segment").is_ok() {
        say!("    top segments: {}", fmt(counts("rfm_segment"), 5));
    }
    say!();
    say!("next:");
    say!(
        "    c360 products show {product} --store {}",
        store_dir.display()
    );
    say!(
        "    c360 products get {product} C0000001 --store {}",
        store_dir.display()
    );
    say!(
        "    c360 run {} --as-of 2024-09-29 --source {} --store {}",
        job.name,
        data.display(),
        store_dir.display()
    );
    Ok(())
}

/// `c360 validate`: prints [`Project::validate_all`]: a summary, or every problem (exit 3).
fn validate(config: Option<&std::path::Path>) -> Result<(), Failure> {
    let project = Project::load(config)?;
    let v = project.validate_all();
    let names = |it: &mut dyn Iterator<Item = &str>| it.collect::<Vec<_>>().join(", ");
    if v.problems.is_empty() {
        say!(
            "ok: {} ({} feature set(s): {}; {} model(s): {}; {} job(s): {})",
            project
                .config_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "built-in defaults".into()),
            v.sets.len(),
            names(&mut v.sets.iter().map(|s| s.name.as_str())),
            v.models.len(),
            v.models.join(", "),
            v.jobs.len(),
            names(&mut v.jobs.iter().map(|j| j.name.as_str())),
        );
        return Ok(());
    }
    let mut lines: Vec<String> = v.problems.iter().map(|e| format!("  {e}")).collect();
    let problems = lines.len();
    if let Some(hint) = missing_folder_hint(&project, Folder::Features) {
        lines.push(format!("hint: {hint}"));
    }
    Err(Failure {
        code: exit::INVALID_DEFINITION,
        error: anyhow::anyhow!("{problems} problem(s):\n{}", lines.join("\n")),
    })
}

#[cfg(test)]
mod tests {
    use super::error_report;

    #[derive(Debug, thiserror::Error)]
    #[error("table orders: cannot read orders.parquet: {source}")]
    struct SaysItsCause {
        source: std::io::Error,
    }

    /// Each cause is on its own line, unless the message above already says it.
    #[test]
    fn causes_print_on_their_own_lines_once() {
        let io = || std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = anyhow::Error::new(io()).context("loading the model from m/");
        assert_eq!(
            error_report(&e),
            "error: loading the model from m/\n  caused by: no such file"
        );
        let e = anyhow::Error::new(SaysItsCause { source: io() });
        assert_eq!(
            error_report(&e),
            "error: table orders: cannot read orders.parquet: no such file"
        );
    }

    /// A cause quoting source text (a file name, a value) is shown escaped, like c360's own
    /// messages, so it cannot move the terminal's cursor or start a fake line.
    #[test]
    fn causes_are_escaped() {
        let io = std::io::Error::other("bad file a\x1b[2J\nerror: fake");
        let e = anyhow::Error::new(io).context("loading the model from m/");
        assert_eq!(
            error_report(&e),
            "error: loading the model from m/\n  caused by: bad file a\\u{1b}[2J\\nerror: fake"
        );
    }
}
