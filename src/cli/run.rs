//! `c360 run`: runs a job with step lines and progress bars, or prints its plan
//! (`--dry-run`). The `products` commands live in [`super::products`].

use std::path::Path;

use indicatif::ProgressBar;

use super::Failure;
use crate::pipeline::{self, Observer, RunOptions, Step, StepRecord};
use crate::project::Project;
use crate::transform::planner::Plan;

pub use super::products::{products, ProductsCmd};

/// `c360 run`
#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  c360 run churn_weekly --as-of 2024-09-30\n  c360 run churn_weekly --dry-run\n\n\
Steps: features (build or reuse snapshots) -> transform_input -> transform -> gates -> publish.\n\
The ledger is runs/<job>/<run_id>/run.json. Running the same job and as-of again resumes an\n\
interrupted run or reuses a finished one; nothing is duplicated (a finished run whose version\n\
was since replaced by another run publishes its own again: a rollback). A failed gate or\n\
transform publishes nothing and leaves the previous version as latest.\n\n\
With [catalog] kind = \"glue\" and [events] kind = \"eventbridge\" (c360.toml), the publish\n\
commits in the order parts -> manifest -> Glue partition -> latest.json -> event; --dry-run\n\
lists those actions. See README \"Data mesh\".\n\n\
Exit codes: 0 published (or already), 1 failure (store, SageMaker, catalog unreachable: retry),\n\
2 usage or an as-of the sources cannot support, 3 invalid definition or config (also a product\n\
schema change its major does not allow), 4 input data breaking the contract, 5 a quality gate\n\
refused the version."
)]
pub struct RunArgs {
    /// The job (jobs/<JOB>.toml).
    pub job: String,
    /// Score as of this date instead of the job's rule (YYYY-MM-DD).
    #[arg(long, value_parser = crate::names::AsOf::parse_date)]
    pub as_of: Option<chrono::NaiveDate>,
    /// Override the job's backend.
    #[arg(long, value_parser = ["local", "sagemaker"])]
    pub backend: Option<String>,
    /// Print the plan (inputs, parts, transform settings, outputs, catalog and event actions)
    /// and write nothing (it reads the store, the sources and, for glue:// sources, Glue).
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
    fn step_started(&self, name: Step, what: &str) {
        self.pb.set_message(format!("{name}: {what}"));
        if name == Step::Transform {
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
    super::need_folder(&project, super::Folder::Jobs)?;
    // clap only lets `local` and `sagemaker` through; the parse cannot fail.
    let backend = a.backend.as_deref().map(str::parse).transpose().map_err(
        |e: crate::transform::UnknownBackend| pipeline::PipelineError::Definition(e.to_string()),
    )?;
    let opts = RunOptions {
        as_of: a.as_of,
        backend,
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
        let t = &report.plan.transform;
        if let (Some(chosen), Some(default)) = (&t.plan, &t.default_plan) {
            println!();
            println!(
                "SageMaker plan for {} rows (from {}):",
                chosen.rows, chosen.rows_from
            );
            println!("  chosen:  {}", plan_line(&chosen.plan));
            println!("  default: {}", plan_line(default));
            for r in &chosen.plan.reasons {
                println!("  - {r}");
            }
        }
        let pp = &report.plan.product;
        if !pp.catalog.is_empty() || !pp.events.is_empty() {
            println!();
            println!("data mesh (after the manifest commits, in this order):");
            for a in pp.catalog.iter().chain(&pp.events) {
                println!("  - {a}");
            }
        }
        return Ok(());
    }
    let l = &report.ledger;
    if report.reused {
        say!(
            "{} as of {}: already published by run {} (nothing redone)",
            l.job,
            l.as_of,
            l.run_id
        );
    } else {
        say!("{} as of {}: run {} succeeded", l.job, l.as_of, l.run_id);
    }
    if let Some(s) = &report.summary {
        say!(
            "  product {} -> {}/{} ({} rows){}",
            s.product,
            report.store_uri,
            s.partition,
            s.rows,
            if !s.latest_moved {
                " (latest not moved: a newer version exists)"
            } else {
                ""
            }
        );
        if let Some(c) = &s.catalog {
            say!(
                "  glue {}.{}: partition as_of={} -> {}",
                c.database,
                c.table,
                l.as_of,
                c.location
            );
        }
        if let Some(e) = &s.event {
            match (&e.event_id, &e.error) {
                // A warning: printed under -q too.
                (_, Some(err)) => println!(
                    "  event NOT delivered to bus {} after {} attempt(s): {err}",
                    e.bus, e.attempts
                ),
                (id, None) => say!(
                    "  event {} sent to bus {} (id {})",
                    e.detail_type,
                    e.bus,
                    id.as_deref().unwrap_or("-")
                ),
            }
        }
    }
    say!(
        "  ledger {}/{}",
        report.store_uri,
        pipeline::ledger_key(&l.job, &l.run_id)
    );
    Ok(())
}

/// One line of a SageMaker plan: instances, parts, settings, time and cost.
fn plan_line(p: &Plan) -> String {
    use crate::transform::planner::{format_duration, format_usd};
    format!(
        "{} x {}, {} input part(s), MaxConcurrentTransforms {}, MaxPayloadInMB {}: about {}, {}",
        p.instance_count,
        p.instance_type,
        p.parts,
        p.max_concurrent_transforms,
        p.max_payload_mb,
        format_duration(p.est_seconds),
        format_usd(p.est_cost_usd),
    )
}
