//! `c360 run` and `c360 products`.

use std::path::Path;

use clap::Subcommand;
use indicatif::ProgressBar;

use super::Failure;
use crate::pipeline::{self, Observer, RunOptions, StepRecord};
use crate::product;
use crate::project::Project;

/// `c360 run`
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  c360 run churn_weekly --as-of 2024-09-30\n  c360 run churn_weekly --dry-run\n\n\
Steps: features (build or reuse snapshots) -> transform_input -> transform -> gates -> publish.\n\
The ledger is runs/<job>/<run_id>/run.json. Running the same job and as-of again resumes an\n\
interrupted run or reuses a finished one; nothing is duplicated. A failed gate or transform\n\
publishes nothing and leaves the previous version as latest (exit code 5 for a gate)."
)]
pub struct RunArgs {
    /// The job (jobs/<JOB>.toml).
    pub job: String,
    /// Score as of this date instead of the job's rule (YYYY-MM-DD).
    #[arg(long)]
    pub as_of: Option<chrono::NaiveDate>,
    /// Override the job's backend.
    #[arg(long, value_parser = ["local", "sagemaker"])]
    pub backend: Option<String>,
    /// Print the plan (inputs, parts, transform settings, outputs) and touch nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Customer 360 source folder or URI (default: [source] uri in c360.toml).
    #[arg(long)]
    pub source: Option<String>,
    /// Store folder or URI (default: [store] uri in c360.toml).
    #[arg(long)]
    pub store: Option<String>,
    /// Score even when --as-of is after the sources' last event (refused by default: the
    /// features would miss data that has not arrived, and the product's latest version never
    /// moves backwards).
    #[arg(long)]
    pub allow_as_of_past_data: bool,
}

struct Ui {
    pb: ProgressBar,
    transform: TransformBar,
}

struct TransformBar(ProgressBar);

impl crate::transform::Progress for TransformBar {
    fn object_started(&self, _input: &str, records: u64) {
        self.0.inc_length(records);
    }
    fn records_done(&self, n: u64) {
        self.0.inc(n);
    }
}

impl Observer for Ui {
    fn step_started(&self, name: &str, what: &str) {
        self.pb.set_message(format!("{name}: {what}"));
        if name == "transform" {
            self.transform.0.reset();
            self.transform.0.set_length(0);
        }
    }
    fn step_finished(&self, r: &StepRecord) {
        let rows = r.rows.map(|n| format!("{n} rows, ")).unwrap_or_default();
        let status = match r.error.as_deref() {
            None => "ok".to_string(),
            Some(e) => format!("FAILED: {e}"),
        };
        self.pb.println(format!(
            "  {:<16} {rows}{:.2}s  {status}",
            r.name,
            r.seconds.unwrap_or(0.0)
        ));
    }
    fn transform_progress(&self) -> Option<&dyn crate::transform::Progress> {
        Some(&self.transform)
    }
}

/// Runs a job with step lines and progress bars.
pub fn run_job(
    project: &Project,
    job: &str,
    opts: &RunOptions,
) -> Result<pipeline::RunReport, Failure> {
    let ui = Ui {
        pb: crate::telemetry::spinner("preparing"),
        transform: TransformBar(crate::telemetry::bar(0, "scoring", "records")),
    };
    let report = pipeline::run(project, job, opts, &ui);
    ui.pb.finish_and_clear();
    ui.transform.0.finish_and_clear();
    Ok(report?)
}

pub fn run(config: Option<&Path>, a: RunArgs) -> Result<(), Failure> {
    let project = Project::load(config)?;
    let opts = RunOptions {
        as_of: a.as_of,
        backend: a.backend,
        dry_run: a.dry_run,
        source: a.source,
        store: a.store,
        today: None,
        data_plane: None,
        allow_as_of_past_data: a.allow_as_of_past_data,
    };
    let report = run_job(&project, &a.job, &opts)?;
    if a.dry_run {
        println!("plan (dry run, nothing written):");
        println!(
            "{}",
            serde_json::to_string_pretty(&report.plan).unwrap_or_default()
        );
        let t = &report.plan["transform"];
        if t["plan"].is_object() {
            use crate::transform::planner::{format_duration, format_usd};
            let line = |p: &serde_json::Value| {
                format!(
                    "{} x {}, {} input part(s), MaxConcurrentTransforms {}, MaxPayloadInMB {}: about {}, {}",
                    p["instance_count"],
                    p["instance_type"].as_str().unwrap_or("?"),
                    p["parts"],
                    p["max_concurrent_transforms"],
                    p["max_payload_mb"],
                    format_duration(p["est_seconds"].as_f64().unwrap_or(0.0)),
                    format_usd(p["est_cost_usd"].as_f64().unwrap_or(0.0)),
                )
            };
            println!();
            println!(
                "SageMaker plan for {} rows (from {}):",
                t["plan"]["rows"],
                t["plan"]["rows_from"].as_str().unwrap_or("?")
            );
            println!("  chosen:  {}", line(&t["plan"]));
            println!("  default: {}", line(&t["default_plan"]));
            for r in t["plan"]["reasons"].as_array().into_iter().flatten() {
                println!("  - {}", r.as_str().unwrap_or_default());
            }
        }
        return Ok(());
    }
    let l = &report.ledger;
    if report.reused {
        println!(
            "{} as of {}: already published by run {} (nothing redone)",
            l.job, l.as_of, l.run_id
        );
    } else {
        println!("{} as of {}: run {} succeeded", l.job, l.as_of, l.run_id);
    }
    if let Some(s) = &report.summary {
        println!(
            "  product {} -> {}/{} ({} rows){}",
            s["product"].as_str().unwrap_or(""),
            report.store_uri,
            s["partition"].as_str().unwrap_or(""),
            s["rows"],
            if s["latest_moved"].as_bool() == Some(false) {
                " (latest not moved: a newer version exists)"
            } else {
                ""
            }
        );
    }
    println!(
        "  ledger {}/{}",
        report.store_uri,
        pipeline::ledger_key(&l.job, &l.run_id)
    );
    Ok(())
}

#[derive(Debug, Subcommand)]
pub enum ProductsCmd {
    /// List the published data products.
    List {
        #[arg(long)]
        store: Option<String>,
    },
    /// Show a product: owner, contract, versions, latest statistics.
    Show {
        product: String,
        #[arg(long)]
        store: Option<String>,
    },
    /// One customer's row of the latest version, as JSON.
    Get {
        product: String,
        customer_id: String,
        #[arg(long)]
        store: Option<String>,
    },
}

pub fn products(config: Option<&Path>, cmd: ProductsCmd) -> Result<(), Failure> {
    let project = Project::load(config)?;
    let open =
        |s: &Option<String>| crate::store::open(&s.clone().unwrap_or_else(|| project.store_uri()));
    match cmd {
        ProductsCmd::List { store } => {
            let st = open(&store)?;
            let list = product::list(st.as_ref())?;
            if list.is_empty() {
                println!(
                    "no products in {} yet (publish one with `c360 run JOB`)",
                    st.uri()
                );
            }
            println!(
                "{:<28} {:<14} {:<12} {:>9}  owner",
                "product", "domain", "latest", "versions"
            );
            for e in list {
                let latest = product::latest(st.as_ref(), &e.name)?
                    .map(|l| l.as_of.to_string())
                    .unwrap_or_else(|| "-".into());
                println!(
                    "{:<28} {:<14} {:<12} {:>9}  {}",
                    e.name,
                    e.domain,
                    latest,
                    e.versions.len(),
                    e.owner
                );
            }
            Ok(())
        }
        ProductsCmd::Show {
            product: name,
            store,
        } => {
            let st = open(&store)?;
            let entry = product::list(st.as_ref())?
                .into_iter()
                .find(|e| e.name == name)
                .ok_or_else(|| product::ProductError::NotFound(name.clone()))?;
            println!(
                "{}  ({} domain, owner {})",
                entry.name, entry.domain, entry.owner
            );
            println!("{}", entry.description);
            println!("consumers: {}", entry.consumers.join(", "));
            println!("contract:  {}/{}", st.uri(), entry.contract);
            println!(
                "versions:  {}",
                entry
                    .versions
                    .iter()
                    .map(|d| d.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            if let Some((l, m)) = product::resolve_latest(st.as_ref(), &name)? {
                println!(
                    "latest:    {} ({} rows, run {}, committed {})",
                    l.as_of, l.rows, l.run_id, l.committed_at
                );
                if let Some(s) = m.extra.get("score_statistics") {
                    println!(
                        "scores:    {}",
                        serde_json::to_string(s).unwrap_or_default()
                    );
                }
            }
            println!("columns:");
            for c in entry.columns {
                println!("  {:<20} {}", c.name, c.dtype);
            }
            Ok(())
        }
        ProductsCmd::Get {
            product: name,
            customer_id,
            store,
        } => {
            let st = open(&store)?;
            let row = product::get_customer(st.as_ref(), &name, &customer_id)?;
            println!("{}", serde_json::to_string_pretty(&row).unwrap_or_default());
            Ok(())
        }
    }
}
