//! `c360 score`: batch-transform a file or folder of records with a model, locally, with
//! SageMaker batch transform's semantics.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;

use crate::model;
use crate::transform::{
    AssembleWith, BatchStrategy, BatchTransform, DataProcessing, InProcessInvoker, JobStatus,
    JoinSource, LocalTransform, ObjectResult, Progress, SplitType, TransformJobSpec,
};

const EXAMPLES: &str = "\
Examples:
  # Score one CSV file (no header; columns in the model's feature order)
  c360 score --model models/churn_xgb --input features.csv --output scores/
  #   -> scores/features.csv.out, one probability per line

  # Score a folder of part files like SageMaker: parts/a/part-0.csv -> out/a/part-0.csv.out
  c360 score --model xgboost-model.json --input parts/ --output out/ --instance-count 2

  # Input rows are `customer_id,f1,...,f30`: send only the features, keep `customer_id,score`
  c360 score --model models/churn_xgb --input features.csv --output scores/ \\
      --input-filter '$[1:]' --join-source input --output-filter '$[0,-1]'

Filters are SageMaker's JSONPath subset over CSV fields: $ (all), $[0], $[0,-1], $[1:],
$[1:3], negative indexes from the end.

Defaults are SageMaker's, except --split-type (line, since CSV records are lines) and
--assemble-with (line when a join or output filter needs it, else none: the responses
concatenated, which for this model is also one line per record). With --batch-strategy,
--max-payload-mb and --max-concurrent-transforms omitted, the model's execution parameters
apply: multi-record, 6 MB, one request per CPU.

The run fails (non-zero exit) when any input object fails; that object gets no .out and the
message names it. RAYON_NUM_THREADS caps the scoring threads.";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SplitArg {
    Line,
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BatchArg {
    MultiRecord,
    SingleRecord,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum JoinArg {
    None,
    Input,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum AssembleArg {
    Line,
    None,
}

/// Arguments of `c360 score`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_long_help = EXAMPLES)]
pub struct ScoreArgs {
    /// The model: a directory with model.toml and its artifact, a directory holding one
    /// model file (`xgboost-model`, as SageMaker unpacks model.tar.gz), or a bare xgboost
    /// JSON/UBJSON file written by Booster.save_model.
    #[arg(long, value_name = "DIR|FILE")]
    pub model: PathBuf,
    /// One input object (a file) or a folder of them (every file below it, recursively).
    #[arg(long, value_name = "FILE|DIR")]
    pub input: String,
    /// Where `<input path>.out` files go (created if missing).
    #[arg(long, value_name = "DIR")]
    pub output: String,
    /// The content type sent with every request (the model reads text/csv).
    #[arg(long, default_value = "text/csv")]
    pub content_type: String,
    /// How objects split into records: line (each line a record) or none (the whole object
    /// in one request).
    #[arg(long, value_enum, default_value_t = SplitArg::Line)]
    pub split_type: SplitArg,
    /// multi-record packs as many whole records as fit in --max-payload-mb per request;
    /// single-record sends one [default: the model's execution parameters: multi-record].
    #[arg(long, value_enum)]
    pub batch_strategy: Option<BatchArg>,
    /// Request size limit in MB of 1,048,576 bytes, 1..=100; a longer record fails its object
    /// [default: the model's execution parameters: 6].
    #[arg(long, value_name = "MB", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_payload_mb: Option<u32>,
    /// Requests in flight per instance; 0 asks the model (one per CPU). Times
    /// --max-payload-mb at most 100.
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub max_concurrent_transforms: u32,
    /// Fields of each input record sent to the model, e.g. '$[1:]' to drop an id column.
    #[arg(long, value_name = "JSONPATH", default_value = "$")]
    pub input_filter: String,
    /// input: append the model's output to the input record (before --output-filter).
    #[arg(long, value_enum, default_value_t = JoinArg::None)]
    pub join_source: JoinArg,
    /// Fields written out, e.g. '$[0,-1]' to keep the id and the score after a join.
    #[arg(long, value_name = "JSONPATH", default_value = "$")]
    pub output_filter: String,
    /// line: one output record per line, in input order; none: responses concatenated
    /// [default: line with a join or output filter, else none].
    #[arg(long, value_enum)]
    pub assemble_with: Option<AssembleArg>,
    /// Simulated instances; input objects (not records) are spread over them.
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub instance_count: u32,
    /// Seconds each request may take, 1..=3600.
    #[arg(long, value_name = "SECONDS", default_value_t = 600, value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub invocation_timeout: u32,
    /// Retries of a failed request, 0..=3.
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=3))]
    pub max_retries: u32,
    /// No progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Benchmark mode: parse --input (one file) and time the evaluator in process, print one
    /// JSON line, write nothing.
    #[arg(long, hide = true)]
    pub bench_in_process: bool,
    /// Repetitions of the prediction in benchmark mode (the best is reported).
    #[arg(long, hide = true, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub bench_repeat: u32,
}

struct Bar(indicatif::ProgressBar);

impl Progress for Bar {
    fn object_started(&self, _input: &str, records: u64) {
        self.0.inc_length(records);
    }
    fn records_done(&self, n: u64) {
        self.0.inc(n);
    }
    fn object_finished(&self, r: &ObjectResult) {
        if let Some(e) = &r.error {
            self.0.println(format!("failed: {}: {e}", r.input));
        }
    }
}

pub fn run(args: ScoreArgs) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let loaded = model::load(&args.model)
        .with_context(|| format!("loading the model from {}", args.model.display()))?;
    let load_time = t0.elapsed();
    if args.bench_in_process {
        return bench(&args, &loaded.booster, load_time.as_secs_f64());
    }
    let booster = Arc::new(loaded.booster);
    let invoker = Arc::new(InProcessInvoker::new(booster.clone()));
    let join_source = match args.join_source {
        JoinArg::None => JoinSource::None,
        JoinArg::Input => JoinSource::Input,
    };
    let per_record = join_source == JoinSource::Input || args.output_filter.trim() != "$";
    let assemble_with = match args.assemble_with {
        Some(AssembleArg::Line) => AssembleWith::Line,
        Some(AssembleArg::None) => AssembleWith::None,
        None if per_record => AssembleWith::Line,
        None => AssembleWith::None,
    };
    let job = TransformJobSpec {
        job_name: "c360-score".into(),
        input_uri: args.input.clone(),
        output_uri: args.output.clone(),
        content_type: args.content_type.clone(),
        split_type: match args.split_type {
            SplitArg::Line => SplitType::Line,
            SplitArg::None => SplitType::None,
        },
        batch_strategy: args.batch_strategy.map(|b| match b {
            BatchArg::MultiRecord => BatchStrategy::MultiRecord,
            BatchArg::SingleRecord => BatchStrategy::SingleRecord,
        }),
        max_payload_mb: args.max_payload_mb,
        max_concurrent_transforms: args.max_concurrent_transforms,
        instance_count: args.instance_count,
        data_processing: DataProcessing {
            input_filter: args.input_filter.clone(),
            join_source,
            output_filter: args.output_filter.clone(),
        },
        assemble_with,
        invocation_timeout_secs: args.invocation_timeout,
        invocation_max_retries: args.max_retries,
    };
    let bar = indicatif::ProgressBar::new(0);
    if args.no_progress || !std::io::stderr().is_terminal() {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:40}] {human_pos}/{human_len} records ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    let progress = Bar(bar);
    let runner = LocalTransform::new(invoker.clone());
    let result = runner.run(&job, &progress)?;
    progress.0.finish_and_clear();

    let secs = result.elapsed.as_secs_f64();
    let ok = result.objects.iter().filter(|o| o.error.is_none()).count();
    // Under -q only a failed job's tally prints (the error follows it).
    if !super::quiet() || result.status == JobStatus::Failed {
        eprintln!(
            "{}: {} objects ({} ok), {} records, {} requests, {:.1} MB in, {:.1} MB out",
            match result.status {
                JobStatus::Completed => "Completed",
                JobStatus::Failed => "Failed",
            },
            result.objects.len(),
            ok,
            result.records,
            result.requests,
            result.bytes_in as f64 / 1e6,
            result.bytes_out as f64 / 1e6,
        );
        eprintln!(
            "timing: model load {:.3}s, transform {:.3}s ({:.0} records/s), in-model {:.3}s over {} concurrent requests x {} MB, {:?}",
            load_time.as_secs_f64(),
            secs,
            result.records as f64 / secs.max(1e-9),
            invoker.busy().as_secs_f64(),
            result.effective.max_concurrent_transforms,
            result.effective.max_payload_mb,
            result.effective.batch_strategy,
        );
    }
    for o in &result.objects {
        if let Some(out) = &o.output {
            tracing::debug!(input = %o.input, output = %out, records = o.records, "object done");
        }
    }
    match result.status {
        JobStatus::Completed => Ok(()),
        JobStatus::Failed => anyhow::bail!(
            "{}",
            result
                .failure_reason
                .unwrap_or_else(|| "the transform failed".into())
        ),
    }
}

/// `--bench-in-process`: the evaluator alone, data already in memory, like timing
/// `booster.predict(dmatrix)` in Python.
fn bench(args: &ScoreArgs, b: &model::Booster, load_s: f64) -> anyhow::Result<()> {
    let t = Instant::now();
    let data = std::fs::read(&args.input).with_context(|| format!("reading {}", args.input))?;
    let read_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let m = model::parse_csv(&data, Some(b.num_feature()))
        .with_context(|| format!("parsing {}", args.input))?;
    let parse_s = t.elapsed().as_secs_f64();
    drop(data);
    let mut best = f64::INFINITY;
    let mut checksum = 0f64;
    for _ in 0..args.bench_repeat.max(1) {
        let t = Instant::now();
        let p = b
            .predict(&m)
            .context("the matrix does not match the model's features")?;
        best = best.min(t.elapsed().as_secs_f64());
        checksum = p.iter().map(|v| *v as f64).sum();
    }
    println!(
        "{{\"rows\": {}, \"threads\": {}, \"load_s\": {load_s:.6}, \"read_s\": {read_s:.6}, \"parse_s\": {parse_s:.6}, \"predict_s\": {best:.6}, \"rows_per_s\": {:.1}, \"checksum\": {checksum:.6}}}",
        m.rows,
        rayon::current_num_threads(),
        m.rows as f64 / best.max(1e-12),
    );
    Ok(())
}
