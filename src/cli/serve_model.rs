//! `c360 serve-model`: the SageMaker inference-container contract over HTTP (also what
//! `c360 serve` runs when SageMaker starts the image).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::model;
use crate::serving::{self, ExecutionParameters, ServeConfig};
use crate::store::MIB;

const EXAMPLES: &str = "\
Examples:
  # Serve a model directory (model.toml + artifact) on port 8080
  c360 serve-model --model-dir models/churn_xgb

  # Serve a bare xgboost file on another port, accepting 20 MB requests
  c360 serve-model --model-dir model.ubj --port 9000 --max-payload-mb 20

  # Then, from another shell:
  curl -s localhost:8080/ping
  curl -s localhost:8080/execution-parameters
  curl -s -H 'Content-Type: text/csv' --data-binary @rows.csv localhost:8080/invocations

Answers: GET /ping 200; GET /execution-parameters {\"MaxConcurrentTransforms\": <cpus>,
\"BatchStrategy\": \"MULTI_RECORD\", \"MaxPayloadInMB\": 6}; POST /invocations with text/csv
(no header, no label, one record per line, empty field = missing) answers one prediction per
line (multi:softprob: the class probabilities, comma-separated); an empty payload 204, a wrong
content type or unparsable CSV 415, a body over the limit 413 (before it is read when
Content-Length says so), a body slower than --body-timeout-seconds 408. Headers must arrive
within --header-timeout-seconds (also the keep-alive idle limit); at most --max-connections
connections are served at once, the rest wait in the listen backlog.";

/// Arguments of `c360 serve-model`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_long_help = EXAMPLES)]
pub struct ServeModelArgs {
    /// The model: a directory with model.toml and its artifact, a directory holding the
    /// artifact alone (`xgboost-model` or one file, as SageMaker unpacks model.tar.gz), or a
    /// bare xgboost JSON/UBJSON file.
    #[arg(long, value_name = "DIR|FILE", default_value = "/opt/ml/model")]
    pub model_dir: PathBuf,
    /// The TCP port (SageMaker uses 8080, or SAGEMAKER_BIND_TO_PORT).
    #[arg(long, default_value_t = 8080, env = "SAGEMAKER_BIND_TO_PORT")]
    pub port: u16,
    /// The address to listen on.
    #[arg(long, default_value = "0.0.0.0")]
    pub host: String,
    /// The payload size advertised by /execution-parameters; requests larger than this
    /// (plus 64 KiB of slack) get 413. MAX_CONTENT_LENGTH (bytes), as in SageMaker's XGBoost
    /// container, overrides the limit.
    #[arg(long, default_value_t = 6, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_payload_mb: u32,
    /// Seconds for a request's headers to arrive, from the connection's opening or the end
    /// of the previous response (also the keep-alive idle timeout); then the connection is
    /// closed. 0.05 to 3600.
    #[arg(long, value_name = "SECONDS", default_value = "10", env = "C360_SERVE_HEADER_TIMEOUT_SECONDS", value_parser = serving::parse_seconds)]
    pub header_timeout_seconds: Duration,
    /// Seconds for a whole request body to arrive (past it 408), and the longest a response
    /// write may stay blocked by a client that stops reading. 0.05 to 3600.
    #[arg(long, value_name = "SECONDS", default_value = "60", env = "C360_SERVE_BODY_TIMEOUT_SECONDS", value_parser = serving::parse_seconds)]
    pub body_timeout_seconds: Duration,
    /// Connections served at once; more wait in the listen backlog (lowered to fit the
    /// descriptor limit). 1 to 65536.
    #[arg(long, value_name = "N", default_value_t = serving::DEFAULT_MAX_CONNECTIONS, env = "C360_SERVE_MAX_CONNECTIONS", value_parser = parse_max_connections)]
    pub max_connections: usize,
}

pub(crate) fn parse_max_connections(s: &str) -> Result<usize, String> {
    let (lo, hi) = serving::MAX_CONNECTIONS_RANGE;
    s.trim()
        .parse::<usize>()
        .ok()
        .filter(|n| (lo..=hi).contains(n))
        .ok_or_else(|| format!("{s:?}: a number of connections, {lo} to {hi}"))
}

/// The model server's arguments from the environment alone (as SageMaker starts the
/// image), each variable checked like its flag.
fn env_or<T>(
    name: &str,
    default: T,
    parse: impl Fn(&str) -> Result<T, String>,
) -> anyhow::Result<T> {
    match std::env::var(name) {
        Ok(v) => parse(&v).map_err(|e| anyhow::anyhow!("{name}: {e}")),
        Err(_) => Ok(default),
    }
}

/// Serves until Ctrl-C or SIGTERM.
pub fn run(args: ServeModelArgs) -> anyhow::Result<()> {
    let loaded = model::load(&args.model_dir)
        .with_context(|| format!("loading the model from {}", args.model_dir.display()))?;
    let mut params = ExecutionParameters::for_this_machine();
    params.max_payload_in_mb = args.max_payload_mb;
    let mut max_body = (u64::from(args.max_payload_mb) * MIB) as usize + 64 * 1024;
    if let Ok(v) = std::env::var("MAX_CONTENT_LENGTH") {
        max_body = v
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=serving::MAX_MODEL_BODY_BYTES).contains(n))
            .with_context(|| {
                format!(
                    "MAX_CONTENT_LENGTH={v:?} is not a number of bytes from 1 to {}",
                    serving::MAX_MODEL_BODY_BYTES
                )
            })?;
    }
    let cfg = ServeConfig {
        max_body_bytes: max_body,
        execution_parameters: params,
        header_timeout: args.header_timeout_seconds,
        body_timeout: args.body_timeout_seconds,
        max_connections: args.max_connections,
    };
    cfg.limits()
        .check(serving::MAX_MODEL_BODY_BYTES)
        .map_err(|e| anyhow::anyhow!("server limits: {e}"))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async move {
        let addr = format!("{}:{}", args.host, args.port);
        let listener = serving::bind(&addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        // With port 0 the OS picks one: say which.
        let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or(addr);
        let b = Arc::new(loaded.booster);
        tracing::info!(
            addr = %addr,
            artifact = %loaded.artifact.display(),
            objective = b.objective().name(),
            trees = b.num_trees(),
            features = b.num_feature(),
            "serving the model"
        );
        eprintln!(
            "c360 serve-model: {} ({}, {} trees, {} features) on http://{addr}",
            loaded.artifact.display(),
            b.objective().name(),
            b.num_trees(),
            b.num_feature()
        );
        let mut handle = serving::start(listener, b, cfg)?;
        let stop = handle.take_shutdown();
        tokio::spawn(async move {
            crate::service::shutdown_signal().await;
            if let Some(tx) = stop {
                let _ = tx.send(());
            }
        });
        handle.wait().await.context("serving")
    })
}

/// `c360 serve` as SageMaker starts the image: the model under `/opt/ml/model`, port 8080
/// (or `SAGEMAKER_BIND_TO_PORT`).
pub fn run_sagemaker_serve() -> anyhow::Result<()> {
    let port = match std::env::var("SAGEMAKER_BIND_TO_PORT") {
        Ok(p) => p
            .trim()
            .parse()
            .with_context(|| format!("SAGEMAKER_BIND_TO_PORT={p:?} is not a port"))?,
        Err(_) => 8080,
    };
    run(ServeModelArgs {
        model_dir: PathBuf::from("/opt/ml/model"),
        port,
        host: "0.0.0.0".into(),
        max_payload_mb: 6,
        header_timeout_seconds: env_or(
            "C360_SERVE_HEADER_TIMEOUT_SECONDS",
            serving::DEFAULT_HEADER_TIMEOUT,
            serving::parse_seconds,
        )?,
        body_timeout_seconds: env_or(
            "C360_SERVE_BODY_TIMEOUT_SECONDS",
            serving::DEFAULT_MODEL_BODY_TIMEOUT,
            serving::parse_seconds,
        )?,
        max_connections: env_or(
            "C360_SERVE_MAX_CONNECTIONS",
            serving::DEFAULT_MAX_CONNECTIONS,
            parse_max_connections,
        )?,
    })
}
