//! The long-running service (`c360 serve`): the cron scheduler, the HTTP API with bearer
//! token access control, the in-memory customer lookup index and Prometheus metrics, in
//! one tokio process with one shutdown signal (SIGTERM/SIGINT: stop accepting, drain
//! in-flight requests, give runs a grace period, leave the rest resumable).
//!
//! Errors map to HTTP statuses in one place: [`ServiceError`]'s `IntoResponse`.

pub mod api;
pub mod auth;
pub mod index;
pub mod metrics;
pub mod openapi;
pub mod runner;
pub mod scheduler;

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;

use crate::pipeline::PipelineError;
use crate::product::ProductError;
use crate::project::Project;
use crate::store::{self, DynStore, StoreError};

/// Everything a request or a scheduled fire can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("missing or unknown bearer token")]
    Unauthorized,
    #[error("role {role} may not {action}")]
    Forbidden { role: String, action: String },
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unprocessable(String),
    /// The project's feature-set definitions do not load (422), every problem kept.
    #[error(transparent)]
    Definitions(crate::features::DefErrors),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
    /// A store failure other than a missing key (500), with its cause.
    #[error(transparent)]
    Store(StoreError),
    /// A product failure other than a missing product or customer (500), with its cause.
    #[error(transparent)]
    Product(ProductError),
    /// A pipeline failure other than a definition or as-of problem (500), with its cause.
    #[error(transparent)]
    Pipeline(Box<PipelineError>),
    /// A blocking task panicked or was cancelled (500).
    #[error("a background task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
    /// A page of product rows could not be encoded as CSV (500).
    #[error("encoding CSV: {0}")]
    Csv(#[source] polars::error::PolarsError),
    /// An I/O failure of the server itself (500); `context` says what it was doing.
    #[error("{context}: {source}")]
    Io {
        context: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid service configuration: {0}")]
    Config(String),
    /// A token or role problem in `[service]`.
    #[error("invalid service configuration: {0}")]
    AuthConfig(#[source] auth::AuthConfigError),
}

impl ServiceError {
    /// The one place errors become HTTP statuses.
    pub fn status(&self) -> StatusCode {
        self.kind().0
    }

    /// The machine-readable `code` of the error body.
    fn code(&self) -> &'static str {
        self.kind().1
    }

    /// Status and code of each kind of error, side by side.
    fn kind(&self) -> (StatusCode, &'static str) {
        match self {
            ServiceError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ServiceError::Forbidden { .. } => (StatusCode::FORBIDDEN, "forbidden"),
            ServiceError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ServiceError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ServiceError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ServiceError::Unprocessable(_) | ServiceError::Definitions(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, "unprocessable")
            }
            ServiceError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ServiceError::Internal(_)
            | ServiceError::Store(_)
            | ServiceError::Product(_)
            | ServiceError::Pipeline(_)
            | ServiceError::Task(_)
            | ServiceError::Csv(_)
            | ServiceError::Io { .. }
            | ServiceError::Config(_)
            | ServiceError::AuthConfig(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ServiceError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let body =
            axum::Json(serde_json::json!({"error": self.code(), "message": self.to_string()}));
        if status == StatusCode::UNAUTHORIZED {
            (status, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response()
        } else {
            (status, body).into_response()
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { key, .. } => ServiceError::NotFound(format!("{key} not found")),
            e => ServiceError::Store(e),
        }
    }
}

impl From<ProductError> for ServiceError {
    fn from(e: ProductError) -> Self {
        match e {
            ProductError::NotFound(_) | ProductError::NoCustomer { .. } => {
                ServiceError::NotFound(e.to_string())
            }
            e => ServiceError::Product(e),
        }
    }
}

impl From<PipelineError> for ServiceError {
    fn from(e: PipelineError) -> Self {
        match e {
            PipelineError::Definition(m) | PipelineError::AsOf(m) => ServiceError::Unprocessable(m),
            e => ServiceError::Pipeline(Box::new(e)),
        }
    }
}

impl From<tokio::task::JoinError> for ServiceError {
    fn from(e: tokio::task::JoinError) -> Self {
        ServiceError::Task(e)
    }
}

/// The default listen address.
pub const DEFAULT_BIND: &str = "127.0.0.1:8360";

/// `[service]` validated (no I/O beyond reading the tokens variable).
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub bind: SocketAddr,
    pub scheduler: bool,
    pub lease: Duration,
    pub reload: Duration,
    pub grace: Duration,
    pub auth: auth::Auth,
    /// Header and body timeouts, connection and body limits of the HTTP server.
    pub limits: crate::serving::ServerLimits,
}

/// Default `[service] body_timeout_seconds`.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `[service] max_body_bytes`: the API takes small JSON bodies only.
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// The largest `[service] max_body_bytes`.
pub const MAX_BODY_BYTES: usize = 100 * 1024 * 1024;

/// `[service]` server bounds, validated; errors name the key.
fn server_limits(
    s: &crate::project::ServiceSection,
) -> Result<crate::serving::ServerLimits, ServiceError> {
    use crate::serving::{check_seconds, MAX_CONNECTIONS_RANGE};
    let secs = |key: &str, v: Option<f64>, default: Duration| match v {
        None => Ok(default),
        Some(v) => check_seconds(key, v).map_err(ServiceError::Config),
    };
    let header_timeout = secs(
        "header_timeout_seconds",
        s.header_timeout_seconds,
        crate::serving::DEFAULT_HEADER_TIMEOUT,
    )?;
    let body_timeout = secs(
        "body_timeout_seconds",
        s.body_timeout_seconds,
        DEFAULT_BODY_TIMEOUT,
    )?;
    let (lo, hi) = MAX_CONNECTIONS_RANGE;
    let max_connections = match s.max_connections {
        None => crate::serving::DEFAULT_MAX_CONNECTIONS,
        Some(n) => usize::try_from(n)
            .ok()
            .filter(|n| (lo..=hi).contains(n))
            .ok_or_else(|| ServiceError::Config(format!("max_connections {n}: {lo} to {hi}")))?,
    };
    let max_body_bytes = match s.max_body_bytes {
        None => DEFAULT_MAX_BODY_BYTES,
        Some(n) => usize::try_from(n)
            .ok()
            .filter(|n| (1..=MAX_BODY_BYTES).contains(n))
            .ok_or_else(|| {
                ServiceError::Config(format!("max_body_bytes {n}: 1 to {MAX_BODY_BYTES}"))
            })?,
    };
    Ok(crate::serving::ServerLimits {
        header_timeout,
        body_timeout,
        max_connections,
        max_body_bytes,
    })
}

impl ServiceConfig {
    pub fn from_project(project: &Project, bind: Option<&str>) -> Result<Self, ServiceError> {
        let s = project.config.service.clone().unwrap_or_default();
        let bind = bind
            .map(str::to_string)
            .or_else(|| s.bind.clone())
            .unwrap_or_else(|| DEFAULT_BIND.into());
        let bind: SocketAddr = bind
            .parse()
            .map_err(|_| ServiceError::Config(format!("bind {bind:?} is not ADDRESS:PORT")))?;
        let env_name = s
            .tokens_env
            .clone()
            .unwrap_or_else(|| auth::DEFAULT_TOKENS_ENV.into());
        // An environment variable name (an empty one would silently read nothing).
        let valid_env = env_name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && env_name.len() <= 128
            && env_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid_env {
            return Err(ServiceError::Config(format!(
                "tokens_env {:?} is not an environment variable name (letters, digits and _, not starting with a digit; default {})",
                env_name.escape_debug().to_string(),
                auth::DEFAULT_TOKENS_ENV
            )));
        }
        let env_tokens = match std::env::var(&env_name) {
            Ok(v) => Some(v),
            Err(std::env::VarError::NotPresent) => None,
            // Never shown: it holds tokens.
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(ServiceError::Config(format!(
                    "{env_name} is not valid UTF-8 (its value is not shown: it holds tokens)"
                )))
            }
        };
        let auth = auth::Auth::from_config(Some(&s), env_tokens.as_deref())
            .map_err(ServiceError::AuthConfig)?;
        let d = s.durations().map_err(ServiceError::Config)?;
        Ok(ServiceConfig {
            bind,
            scheduler: s.scheduler.unwrap_or(true),
            lease: d.lease,
            reload: d.reload,
            grace: d.grace,
            auth,
            limits: server_limits(&s)?,
        })
    }
}

/// What every handler and task shares.
#[derive(Debug)]
pub struct AppState {
    pub project: Project,
    pub store: DynStore,
    pub config: ServiceConfig,
    pub auth: auth::Auth,
    pub metrics: metrics::Metrics,
    pub index: Arc<index::ProductIndex>,
    pub runner: runner::Runner,
}

impl AppState {
    pub fn new(project: Project, config: ServiceConfig) -> Result<Arc<AppState>, ServiceError> {
        let store = store::open(&project.store_uri())?;
        Ok(Arc::new(AppState {
            store,
            auth: config.auth.clone(),
            runner: runner::Runner::new(config.lease),
            config,
            project,
            metrics: metrics::Metrics::default(),
            index: Arc::new(index::ProductIndex::default()),
        }))
    }
}

/// Resolves on SIGTERM or SIGINT (shared by every server in the binary).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// Polls each loaded product's `latest.json` and reloads indexes that moved; also loads
/// products that appear in the catalog.
async fn reloader(state: Arc<AppState>, mut shutdown: watch::Receiver<bool>) {
    loop {
        let st = state.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let mut names: Vec<String> = crate::product::list(st.store.as_ref())
                .map(|l| l.into_iter().map(|e| e.name).collect())
                .unwrap_or_default();
            for p in st.index.products() {
                if !names.contains(&p) {
                    names.push(p);
                }
            }
            for p in names {
                match st.index.refresh(&st.store, &p) {
                    Ok((l, reloaded)) => {
                        if reloaded {
                            st.metrics.inc(
                                "c360_lookup_index_reloads_total",
                                &[("product", &p)],
                                1.0,
                            );
                        }
                        st.metrics.set(
                            "c360_lookup_index_rows",
                            &[("product", &p)],
                            l.rows.len() as f64,
                        );
                    }
                    Err(ServiceError::NotFound(_)) => {}
                    Err(e) => tracing::warn!(product = %p, error = %e, "lookup index not reloaded"),
                }
            }
        })
        .await;
        tokio::select! {
            _ = tokio::time::sleep(state.config.reload) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Runs the service until SIGTERM/SIGINT. Prints `listening on http://ADDR` on stdout
/// once the socket is bound (with `--bind 127.0.0.1:0` the port the OS chose).
pub async fn serve(project: Project, config: ServiceConfig) -> Result<(), ServiceError> {
    let listener = crate::serving::bind(&config.bind.to_string())
        .await
        .map_err(|e| ServiceError::Config(format!("cannot bind {}: {e}", config.bind)))?;
    let addr = listener.local_addr().map_err(|source| ServiceError::Io {
        context: "cannot read the listening socket's address",
        source,
    })?;
    let scheduler_on = config.scheduler;
    let grace = config.grace;
    let limits = config.limits;
    let state = AppState::new(project, config)?;
    if state.auth.token_count() == 0 {
        tracing::warn!("no tokens configured ([[service.tokens]] or C360_SERVICE_TOKENS): every protected route answers 401");
    }
    let (tx, rx) = watch::channel(false);
    let mut tasks = vec![tokio::spawn(reloader(state.clone(), rx.clone()))];
    tasks.extend(scheduler::resume_interrupted(&state, &rx));
    if scheduler_on {
        tasks.extend(scheduler::start(&state, &rx));
    }
    let (app, _) = api::router(state.clone());
    let app = crate::serving::bound_router(app, limits, true);
    let mut srx = rx.clone();
    let server = tokio::spawn(crate::serving::serve_bounded(
        listener,
        app,
        limits,
        async move {
            let _ = srx.wait_for(|v| *v).await;
        },
    ));
    {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "listening on http://{addr}");
        let _ = out.flush();
    }
    tracing::info!(%addr, store = %state.store.uri(), scheduler = scheduler_on, "c360 serve started");
    shutdown_signal().await;
    tracing::info!("shutting down: draining requests and runs");
    let _ = tx.send(true);
    match server.await {
        Ok(Err(e)) => tracing::error!(error = %e, "server error"),
        Err(e) => tracing::error!(error = %e, "server task failed"),
        Ok(Ok(())) => {}
    }
    for t in tasks {
        t.abort();
    }
    if state.runner.drain(grace).await {
        tracing::info!("stopped; no run in progress");
    } else {
        // Ask the runs to stop at their next step boundary (and stop SageMaker jobs), give
        // them a moment to record it, then leave them to be resumed.
        state.runner.cancel_all();
        let _ = state.runner.drain(Duration::from_secs(5)).await;
        let st = state.clone();
        let _ = tokio::task::spawn_blocking(move || runner::release_all(&st)).await;
        tracing::warn!(running = ?state.runner.running(), "stopped with runs in progress; the next start resumes them from their last finished step");
    }
    Ok(())
}

#[cfg(test)]
#[path = "errors_tests.rs"]
mod errors_tests;
