//! `c360 serve`: the scheduler and the HTTP API in one process (see `crate::service`).
//! Inside a SageMaker container without a `[service]` section it is the inference server
//! instead, because SageMaker starts an inference image as `docker run IMAGE serve`.

use std::path::Path;

use super::{exit, Failure};
use crate::project::Project;
use crate::service::{self, ServiceConfig};

const EXAMPLES: &str = "\
Examples:
  c360 serve                                 # 127.0.0.1:8360, scheduler on
  c360 serve --bind 0.0.0.0:8360
  C360_SERVICE_TOKENS=me:admin:$(openssl rand -hex 16) c360 serve

  curl -s localhost:8360/healthz
  curl -s -H \"Authorization: Bearer $TOKEN\" localhost:8360/products/customer_churn_scores/customers/C0000042
  curl -s -X POST -H \"Authorization: Bearer $TOKEN\" -d '{\"as_of\":\"2024-09-29\"}' localhost:8360/jobs/churn_weekly/runs

Tokens: [[service.tokens]] in c360.toml (SHA-256 hashes, `echo -n TOKEN | sha256sum`) or
C360_SERVICE_TOKENS=name:role:token,... Roles: admin, operator, marketing (or [[service.roles]]).
The routes are described at /openapi.json. SIGTERM/SIGINT: drain requests, give runs
shutdown_grace_seconds, leave the rest to be resumed by the next start.
Bounds ([service] keys): header_timeout_seconds = 10 (also the keep-alive idle limit),
body_timeout_seconds = 30 (then 408), max_body_bytes = 1048576 (a larger Content-Length
gets 413 before the body is read), max_connections = 512 (more wait in the backlog).";

/// Arguments of `c360 serve`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_long_help = EXAMPLES)]
pub struct ServeArgs {
    /// Address to listen on (default: [service] bind, else 127.0.0.1:8360); port 0 picks a
    /// free port (printed on stdout).
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<String>,
}

/// True when the process runs as SageMaker starts an inference container.
fn in_sagemaker() -> bool {
    Path::new("/opt/ml/model").exists()
        || std::env::var_os("SM_MODEL_DIR").is_some()
        || std::env::var_os("SAGEMAKER_BIND_TO_PORT").is_some()
}

pub fn run(config: Option<&Path>, args: ServeArgs) -> Result<(), Failure> {
    let project = Project::load(config);
    let has_service = matches!(&project, Ok(p) if p.config.service.is_some());
    if in_sagemaker() && !has_service && args.bind.is_none() {
        return super::serve_model::run_sagemaker_serve().map_err(Failure::from);
    }
    let project = project?;
    let cfg = ServiceConfig::from_project(&project, args.bind.as_deref()).map_err(|e| Failure {
        code: exit::INVALID_DEFINITION,
        error: e.into(),
    })?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("c360-serve")
        .build()
        .map_err(Failure::from)?;
    let res = rt.block_on(service::serve(project, cfg));
    // Runs still going after the grace period are left to be resumed: do not wait for
    // their blocking threads.
    rt.shutdown_timeout(std::time::Duration::from_millis(500));
    res.map_err(Failure::from)
}
