//! The SageMaker inference-container contract over HTTP: `GET /ping`,
//! `GET /execution-parameters`, `POST /invocations` (`text/csv` in, one prediction per line
//! out). [`invoke`] is the contract's scoring step without HTTP, shared with the in-process
//! invoker of the local batch transform so both answer byte for byte alike.
//!
//! Status mapping lives in one place, [`InvocationError::status`]: empty payload 204,
//! unsupported content type or unparsable payload 415, too large 413.
//!
//! Both HTTP servers of the binary (this one and `c360 serve`) run through
//! [`serve_bounded`]: a header read timeout (which also bounds keep-alive idleness), a
//! whole-body read timeout, a body limit checked before the body is read, and a limit on
//! connections served at once, so slow or idle clients can never starve `/ping` or
//! `/healthz` nor run the process out of file descriptors.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;

use crate::model::{format_predictions, parse_csv, Booster, CsvError};
use crate::store::MIB;

mod bounded;
mod limits;
mod stall;

pub use bounded::{bound_router, serve_bounded};
pub use limits::{bind, check_seconds, parse_seconds, ServerLimits};
pub use limits::{DEFAULT_HEADER_TIMEOUT, DEFAULT_MAX_CONNECTIONS, DEFAULT_MODEL_BODY_TIMEOUT};
pub use limits::{MAX_CONNECTIONS_RANGE, MAX_MODEL_BODY_BYTES};

/// SageMaker's default payload limit; also what `/execution-parameters` advertises.
pub(crate) const DEFAULT_MAX_PAYLOAD_MB: u64 = 6;
/// Default request-body limit: the advertised payload plus room for framing differences.
pub const DEFAULT_MAX_BODY_BYTES: usize = (DEFAULT_MAX_PAYLOAD_MB * MIB) as usize + 64 * 1024;

/// What `GET /execution-parameters` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct ExecutionParameters {
    #[serde(rename = "MaxConcurrentTransforms")]
    pub max_concurrent_transforms: u32,
    #[serde(rename = "BatchStrategy")]
    pub batch_strategy: ContractBatchStrategy,
    #[serde(rename = "MaxPayloadInMB")]
    pub max_payload_in_mb: u32,
}

/// The batch strategy as the contract spells it (`MULTI_RECORD` / `SINGLE_RECORD`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub enum ContractBatchStrategy {
    #[serde(rename = "MULTI_RECORD")]
    MultiRecord,
    #[serde(rename = "SINGLE_RECORD")]
    SingleRecord,
}

impl ExecutionParameters {
    /// One worker per CPU, multi-record, 6 MB: what the built-in XGBoost container answers.
    pub fn for_this_machine() -> ExecutionParameters {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1);
        ExecutionParameters {
            max_concurrent_transforms: cpus,
            batch_strategy: ContractBatchStrategy::MultiRecord,
            max_payload_in_mb: DEFAULT_MAX_PAYLOAD_MB as u32,
        }
    }
}

/// Why an invocation was refused.
#[derive(Debug, thiserror::Error)]
pub enum InvocationError {
    #[error("unsupported content type {0:?}: this model takes text/csv")]
    UnsupportedContentType(String),
    #[error("unparsable text/csv payload: {0}")]
    Unparsable(#[from] CsvError),
    #[error("payload of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
}

impl InvocationError {
    /// The HTTP status of each refusal (the one place it is decided).
    pub fn status(&self) -> StatusCode {
        match self {
            InvocationError::UnsupportedContentType(_) | InvocationError::Unparsable(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            InvocationError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        }
    }
}

impl IntoResponse for InvocationError {
    fn into_response(self) -> Response {
        (self.status(), format!("{self}\n")).into_response()
    }
}

/// The answer to one invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Invocation {
    /// The payload held no record: HTTP 204, no body.
    Empty,
    /// `text/csv` predictions, one line per record.
    Predictions { body: Vec<u8>, rows: usize },
}

/// Whether `content_type` is CSV (parameters like `; charset=utf-8` allowed). A missing
/// content type is taken as CSV, the only type the model reads.
pub(crate) fn is_csv(content_type: Option<&str>) -> bool {
    match content_type {
        None => true,
        Some(ct) => {
            let base = ct.split(';').next().unwrap_or("").trim();
            base.is_empty() || base.eq_ignore_ascii_case("text/csv")
        }
    }
}

/// Scores one payload under the container contract (no HTTP): content type check, CSV parse
/// (one record per non-empty line, as many fields as the model has features), predictions
/// formatted one line per record.
pub fn invoke(
    model: &Booster,
    content_type: Option<&str>,
    payload: &[u8],
) -> Result<Invocation, InvocationError> {
    if !is_csv(content_type) {
        return Err(InvocationError::UnsupportedContentType(
            content_type.unwrap_or("").to_string(),
        ));
    }
    if payload.iter().all(|b| b.is_ascii_whitespace()) {
        return Ok(Invocation::Empty);
    }
    let m = parse_csv(payload, Some(model.num_feature()))?;
    // The widths were checked while parsing, so predict cannot refuse the matrix.
    let preds = model.predict(&m).unwrap_or_default();
    let mut body = Vec::new();
    format_predictions(&preds, model.output_width(), &mut body);
    Ok(Invocation::Predictions { body, rows: m.rows })
}

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Requests with a larger body get 413 (before the body is read when it declares its
    /// length).
    pub max_body_bytes: usize,
    /// What `/execution-parameters` answers.
    pub execution_parameters: ExecutionParameters,
    /// Header timeout, body timeout and connection limit (the body limit is
    /// `max_body_bytes`).
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_connections: usize,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            execution_parameters: ExecutionParameters::for_this_machine(),
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            body_timeout: DEFAULT_MODEL_BODY_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

impl ServeConfig {
    /// The bounds [`serve_bounded`] applies.
    pub fn limits(&self) -> ServerLimits {
        ServerLimits {
            header_timeout: self.header_timeout,
            body_timeout: self.body_timeout,
            max_connections: self.max_connections,
            max_body_bytes: self.max_body_bytes,
        }
    }
}

struct AppState {
    model: Arc<Booster>,
    cfg: ServeConfig,
}

/// The contract's routes, ready to serve.
pub fn router(model: Arc<Booster>, cfg: ServeConfig) -> Router {
    let limits = cfg.limits();
    let state = Arc::new(AppState { model, cfg });
    let app = Router::new()
        .route("/ping", get(ping))
        .route("/execution-parameters", get(execution_parameters))
        .route("/invocations", post(invocations))
        .with_state(state);
    bound_router(app, limits, false)
}

async fn ping() -> StatusCode {
    StatusCode::OK
}

async fn execution_parameters(State(s): State<Arc<AppState>>) -> Json<ExecutionParameters> {
    Json(s.cfg.execution_parameters)
}

async fn invocations(State(s): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or("(not text)").to_string());
    if body.len() > s.cfg.max_body_bytes {
        return InvocationError::TooLarge {
            size: body.len(),
            limit: s.cfg.max_body_bytes,
        }
        .into_response();
    }
    let model = s.model.clone();
    // Scoring is CPU work: keep it off the async workers so /ping stays responsive.
    let r = tokio::task::spawn_blocking(move || invoke(&model, ct.as_deref(), &body)).await;
    match r {
        Ok(Ok(Invocation::Empty)) => StatusCode::NO_CONTENT.into_response(),
        Ok(Ok(Invocation::Predictions { body, .. })) => {
            ([(header::CONTENT_TYPE, "text/csv")], body).into_response()
        }
        Ok(Err(e)) => e.into_response(),
        Err(e) => {
            tracing::error!(error = %e, "scoring task failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "scoring failed\n").into_response()
        }
    }
}

/// A running server: its address and the way to stop it.
pub struct ServerHandle {
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl ServerHandle {
    /// Stops accepting, lets in-flight requests finish, and waits for the server to end.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        match (&mut self.task).await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }

    /// Waits until the server ends (it ends on [`ServerHandle::shutdown`] or an I/O error).
    pub async fn wait(mut self) -> std::io::Result<()> {
        match (&mut self.task).await {
            Ok(r) => r,
            Err(e) => Err(std::io::Error::other(e)),
        }
    }

    /// A sender that stops the server when fired (for signal handlers).
    pub fn take_shutdown(&mut self) -> Option<tokio::sync::oneshot::Sender<()>> {
        self.shutdown.take()
    }
}

/// Serves the contract on `listener` (bind `127.0.0.1:0` in tests) until shut down. Must be
/// called inside a tokio runtime.
pub fn start(
    listener: tokio::net::TcpListener,
    model: Arc<Booster>,
    cfg: ServeConfig,
) -> std::io::Result<ServerHandle> {
    let addr = listener.local_addr()?;
    let limits = cfg.limits();
    limits
        .check(usize::MAX)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let app = router(model, cfg);
    let task = tokio::spawn(serve_bounded(listener, app, limits, async move {
        let _ = rx.await;
    }));
    Ok(ServerHandle {
        addr,
        shutdown: Some(tx),
        task,
    })
}

#[cfg(test)]
mod tests;
