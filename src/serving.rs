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

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Serialize;

use crate::model::{format_predictions, parse_csv, Booster, CsvError};

/// SageMaker's default payload limit; also what `/execution-parameters` advertises.
pub const DEFAULT_MAX_PAYLOAD_MB: u64 = 6;
/// Bytes in SageMaker's megabyte.
pub const MB: u64 = 1_048_576;
/// Default request-body limit: the advertised payload plus room for framing differences.
pub const DEFAULT_MAX_BODY_BYTES: usize = (DEFAULT_MAX_PAYLOAD_MB * MB) as usize + 64 * 1024;

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
pub fn is_csv(content_type: Option<&str>) -> bool {
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

// ---------------------------------------------------------------- bounded HTTP serving

/// Default time for a request's headers to arrive, counted from the connection's opening
/// or from the end of the previous response (so it is also the keep-alive idle timeout).
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time for a whole request body to arrive at the model server (the largest
/// SageMaker payload, 100 MB, at about 2 MB/s).
pub const DEFAULT_MODEL_BODY_TIMEOUT: Duration = Duration::from_secs(60);
/// Default number of connections served at once; more wait in the listen backlog.
pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
/// The largest request body the model server can be configured to take: SageMaker's
/// largest `MaxPayloadInMB` (100) plus the 64 KiB of slack.
pub const MAX_MODEL_BODY_BYTES: usize = (100 * MB) as usize + 64 * 1024;
/// Bounds of the settings (checked by [`ServerLimits::check`]).
pub const TIMEOUT_RANGE_SECONDS: (f64, f64) = (0.05, 3600.0);
pub const MAX_CONNECTIONS_RANGE: (usize, usize) = (1, 65_536);
/// Descriptors kept free for everything but client connections (store files, logs, the
/// listener, outgoing calls).
const RESERVED_DESCRIPTORS: u64 = 64;

/// What bounds every connection of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// A request's headers must be complete this long after the connection opened or the
    /// previous response ended (keep-alive idle); otherwise the connection is closed.
    pub header_timeout: Duration,
    /// The whole request body must arrive within this, or the answer is 408 and the
    /// connection is closed. Also the longest a response write may stay blocked (a client
    /// that stops reading the response is cut off).
    pub body_timeout: Duration,
    /// Connections served at once; further ones wait in the kernel's listen backlog until
    /// a slot frees (never past the process's descriptor limit).
    pub max_connections: usize,
    /// The largest request body: a larger `Content-Length` gets 413 before any body byte
    /// is read; a chunked body gets 413 as soon as it passes the limit.
    pub max_body_bytes: usize,
}

impl ServerLimits {
    /// Checks every bound (no zero, nothing absurd); the error names the setting.
    pub fn check(&self, body_limit_max: usize) -> Result<(), String> {
        for (name, d) in [
            ("header timeout", self.header_timeout),
            ("body timeout", self.body_timeout),
        ] {
            check_seconds(name, d.as_secs_f64())?;
        }
        let (lo, hi) = MAX_CONNECTIONS_RANGE;
        if !(lo..=hi).contains(&self.max_connections) {
            return Err(format!(
                "max connections {}: {lo} to {hi}",
                self.max_connections
            ));
        }
        if self.max_body_bytes == 0 || self.max_body_bytes > body_limit_max {
            return Err(format!(
                "max body bytes {}: 1 to {body_limit_max}",
                self.max_body_bytes
            ));
        }
        Ok(())
    }
}

/// Checks a timeout in seconds against [`TIMEOUT_RANGE_SECONDS`].
pub fn check_seconds(name: &str, secs: f64) -> Result<Duration, String> {
    let (lo, hi) = TIMEOUT_RANGE_SECONDS;
    if secs.is_finite() && (lo..=hi).contains(&secs) {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(format!("{name} {secs} s: {lo} to {hi} seconds"))
    }
}

/// Parses a timeout given in seconds (for command-line flags and environment variables).
pub fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    check_seconds("timeout", secs)
}

/// The listen backlog: a burst of connections waits in the kernel instead of having its
/// handshakes dropped (the 128 of a plain bind overflows under a burst of idle clients).
pub const LISTEN_BACKLOG: u32 = 1024;

/// Binds `addr` (`HOST:PORT`, the host a name or an address) with [`LISTEN_BACKLOG`].
pub async fn bind(addr: &str) -> std::io::Result<tokio::net::TcpListener> {
    let mut last = None;
    for a in tokio::net::lookup_host(addr).await? {
        let socket = if a.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        #[cfg(unix)]
        socket.set_reuseaddr(true)?;
        match socket.bind(a).and_then(|()| socket.listen(LISTEN_BACKLOG)) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::AddrNotAvailable,
            format!("{addr} resolves to no address"),
        )
    }))
}

/// The process's soft limit on open descriptors, where the system tells it.
fn descriptor_limit() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// The connection limit actually applied: the setting, lowered to leave descriptors free.
fn effective_max_connections(configured: usize) -> usize {
    match descriptor_limit() {
        Some(fds) => {
            let room = fds.saturating_sub(RESERVED_DESCRIPTORS).max(1);
            let room = usize::try_from(room).unwrap_or(usize::MAX);
            if room < configured {
                tracing::warn!(
                    configured,
                    applied = room,
                    descriptor_limit = fds,
                    "the connection limit is above what the descriptor limit (ulimit -n) allows; lowered"
                );
            }
            configured.min(room)
        }
        None => configured,
    }
}

/// A connection whose writes may stall at most `limit`: a client that stops reading the
/// response (its receive window full) is cut off instead of holding a connection slot for
/// ever. The timer runs only while a write is blocked, so a slow handler is never cut.
struct WriteStall<T> {
    io: T,
    limit: Duration,
    timer: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
}

impl<T> WriteStall<T> {
    fn new(io: T, limit: Duration) -> Self {
        WriteStall {
            io,
            limit,
            timer: None,
        }
    }

    fn progress<R>(
        &mut self,
        p: std::task::Poll<std::io::Result<R>>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<R>> {
        use std::task::Poll;
        match p {
            Poll::Ready(r) => {
                self.timer = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let limit = self.limit;
                let t = self
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
                match t.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        self.timer = None;
                        Poll::Ready(Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!(
                                "the client read nothing of the response for {} s",
                                limit.as_secs_f64()
                            ),
                        )))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<T: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for WriteStall<T> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<T: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for WriteStall<T> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let p = std::pin::Pin::new(&mut this.io).poll_write(cx, buf);
        this.progress(p, cx)
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let p = std::pin::Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.progress(p, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let p = std::pin::Pin::new(&mut this.io).poll_flush(cx);
        this.progress(p, cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let p = std::pin::Pin::new(&mut this.io).poll_shutdown(cx);
        this.progress(p, cx)
    }
}

/// How a refusal by the body guard is written.
#[derive(Debug, Clone, Copy)]
struct BodyGuard {
    limits: ServerLimits,
    json: bool,
}

fn refuse(g: BodyGuard, status: StatusCode, code: &str, message: String) -> Response {
    let mut r = if g.json {
        (
            status,
            Json(serde_json::json!({"error": code, "message": message})),
        )
            .into_response()
    } else {
        (status, format!("{message}\n")).into_response()
    };
    // The rest of the body is not read: the connection cannot be reused.
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

/// Reads the whole request body before the handler runs: 413 at once when the declared
/// length is over the limit, 413 as soon as a chunked body passes it, 408 when the body
/// does not arrive within the body timeout.
async fn guard_body(State(g): State<BodyGuard>, req: Request, next: Next) -> Response {
    use http_body_util::BodyExt as _;
    let limit = g.limits.max_body_bytes;
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(n) = declared {
        if n > limit as u64 {
            return refuse(
                g,
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("request body of {n} bytes exceeds the limit of {limit} bytes"),
            );
        }
    }
    let (parts, body) = req.into_parts();
    if http_body::Body::is_end_stream(&body) {
        return next.run(Request::from_parts(parts, body)).await;
    }
    let limited = http_body_util::Limited::new(body, limit);
    match tokio::time::timeout(g.limits.body_timeout, limited.collect()).await {
        Ok(Ok(collected)) => {
            let bytes = collected.to_bytes();
            next.run(Request::from_parts(parts, Body::from(bytes)))
                .await
        }
        Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => refuse(
            g,
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("request body exceeds the limit of {limit} bytes"),
        ),
        Ok(Err(e)) => refuse(
            g,
            StatusCode::BAD_REQUEST,
            "bad_request",
            format!("reading the request body: {e}"),
        ),
        Err(_) => refuse(
            g,
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            format!(
                "the request body did not arrive within {} s",
                g.limits.body_timeout.as_secs_f64()
            ),
        ),
    }
}

/// Adds the body guard (and the matching axum body limit) to `app`. `json` says how
/// refusals are written (JSON errors for the API, plain text for the model server).
pub fn bound_router(app: Router, limits: ServerLimits, json: bool) -> Router {
    app.layer(middleware::from_fn_with_state(
        BodyGuard { limits, json },
        guard_body,
    ))
    .layer(DefaultBodyLimit::max(limits.max_body_bytes))
}

/// Serves `app` on `listener` until `shutdown` resolves, every connection bounded by
/// `limits` (see [`ServerLimits`]; add the body guard with [`bound_router`]). On shutdown
/// it stops accepting, closes idle connections, and waits for in-flight requests (at most
/// the header and body timeouts plus 10 s, then the rest are dropped).
pub async fn serve_bounded(
    listener: tokio::net::TcpListener,
    app: Router,
    limits: ServerLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;

    let max = effective_max_connections(limits.max_connections);
    let slots = Arc::new(tokio::sync::Semaphore::new(max));
    let (close_tx, close_rx) = tokio::sync::watch::channel(false);
    let mut conns = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let open = Arc::new(std::sync::Mutex::new(OpenConnections::default()));
    loop {
        // Accept, then take a slot. At the limit, the connection that has waited longest
        // with no request in progress (headers never finished, or idle keep-alive) is
        // closed to make room: slow or idle clients cannot starve new ones (health checks
        // among them). When every slot has a request in progress, the new connection gets
        // a slot within 200 ms or is closed; descriptors stay bounded by the limit.
        let (stream, _peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(s) => s,
                Err(e) => {
                    // Out of descriptors or a connection reset before accept: wait a
                    // moment rather than spin, and go on serving.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let permit = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if let Ok(mut o) = open.lock() {
                    o.evict_oldest_idle();
                }
                match tokio::time::timeout(
                    Duration::from_millis(200),
                    slots.clone().acquire_owned(),
                )
                .await
                {
                    Ok(Ok(p)) => p,
                    _ => {
                        tracing::debug!("every connection slot has a request in progress; a new connection was closed");
                        continue;
                    }
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let active = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let evict = Arc::new(tokio::sync::Notify::new());
        let id = match open.lock() {
            Ok(mut o) => o.add(active.clone(), evict.clone()),
            Err(_) => 0,
        };
        let svc = Tracking {
            inner: TowerToHyperService::new(app.clone()),
            active,
        };
        let mut closing = close_rx.clone();
        let header_timeout = limits.header_timeout;
        let io = TokioIo::new(WriteStall::new(stream, limits.body_timeout));
        let open = open.clone();
        conns.spawn(async move {
            let _permit = permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .keep_alive(true);
            let conn = builder.serve_connection(io, svc);
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(error = %e, "connection closed");
                    }
                }
                _ = async { let _ = closing.wait_for(|v| *v).await; } => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
                _ = evict.notified() => {
                    tracing::debug!("idle connection closed to make room for a new one");
                }
            }
            if let Ok(mut o) = open.lock() {
                o.remove(id);
            }
        });
        while conns.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = close_tx.send(true);
    let drain = limits.header_timeout + limits.body_timeout + Duration::from_secs(10);
    let drained =
        tokio::time::timeout(drain, async { while conns.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            left = conns.len(),
            "connections still open after the drain period; dropped"
        );
        conns.abort_all();
    }
    Ok(())
}

/// The open connections of [`serve_bounded`], oldest first: whether each has a request in
/// progress, and how to close it.
#[derive(Default)]
struct OpenConnections {
    next: u64,
    conns: std::collections::VecDeque<(
        u64,
        Arc<std::sync::atomic::AtomicBool>,
        Arc<tokio::sync::Notify>,
    )>,
}

impl OpenConnections {
    fn add(
        &mut self,
        active: Arc<std::sync::atomic::AtomicBool>,
        evict: Arc<tokio::sync::Notify>,
    ) -> u64 {
        self.next += 1;
        self.conns.push_back((self.next, active, evict));
        self.next
    }

    fn remove(&mut self, id: u64) {
        self.conns.retain(|c| c.0 != id);
    }

    /// Closes the oldest connection without a request in progress, if any.
    fn evict_oldest_idle(&mut self) {
        use std::sync::atomic::Ordering;
        if let Some(i) = self.conns.iter().position(|c| !c.1.load(Ordering::SeqCst)) {
            if let Some((_, _, evict)) = self.conns.remove(i) {
                evict.notify_one();
            }
        }
    }
}

/// A connection's service that records whether a request is in progress (from its
/// headers to its response), so that idle connections can be told apart.
#[derive(Clone)]
struct Tracking<S> {
    inner: S,
    active: Arc<std::sync::atomic::AtomicBool>,
}

impl<S, R> hyper::service::Service<R> for Tracking<S>
where
    S: hyper::service::Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = std::pin::Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn call(&self, req: R) -> Self::Future {
        use std::sync::atomic::Ordering;
        self.active.store(true, Ordering::SeqCst);
        let fut = self.inner.call(req);
        let active = self.active.clone();
        Box::pin(async move {
            let r = fut.await;
            active.store(false, Ordering::SeqCst);
            r
        })
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
mod tests {
    use super::*;

    fn model() -> Booster {
        let v = serde_json::json!({"learner": {
            "learner_model_param": {"base_score": "[1E0]", "num_class": "0", "num_feature": "2"},
            "objective": {"name": "reg:squarederror"},
            "gradient_booster": {"name": "gbtree", "model": {"tree_info": [0], "trees": [
                {"left_children": [1, -1, -1], "right_children": [2, -1, -1],
                 "split_indices": [1, 0, 0], "split_conditions": [0.5, 10.0, 20.0],
                 "default_left": [0, 0, 0]}]}}}});
        Booster::from_bytes(v.to_string().as_bytes(), "m.json").unwrap()
    }

    #[test]
    fn invoke_scores_refuses_and_maps_statuses() {
        let m = model();
        assert_eq!(
            invoke(&m, Some("text/csv; charset=utf-8"), b"0,0\n0,1\n0,\n").unwrap(),
            Invocation::Predictions {
                body: b"11\n21\n21\n".to_vec(),
                rows: 3
            }
        );
        assert_eq!(invoke(&m, None, b"\n \n").unwrap(), Invocation::Empty);
        let e = invoke(&m, Some("application/json"), b"[1,2]").unwrap_err();
        assert_eq!(e.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let e = invoke(&m, Some("text/csv"), b"1,2,3\n").unwrap_err();
        assert_eq!(e.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(e.to_string().contains("line 1 has 3 fields, expected 2"));
        let e = InvocationError::TooLarge { size: 2, limit: 1 };
        assert_eq!(e.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn a_client_that_stops_reading_is_cut_off() {
        use tokio::io::AsyncWriteExt as _;
        let (a, _b) = tokio::io::duplex(1024);
        let mut w = WriteStall::new(a, Duration::from_millis(200));
        let t = std::time::Instant::now();
        let big = vec![0u8; 64 * 1024];
        let e = w.write_all(&big).await.unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::TimedOut);
        assert!(e
            .to_string()
            .contains("read nothing of the response for 0.2 s"));
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(190) && took < Duration::from_secs(2),
            "{took:?}"
        );
        // A reader that keeps up is never cut, however long it takes overall.
        let (a, mut b) = tokio::io::duplex(1024);
        let mut w = WriteStall::new(a, Duration::from_millis(200));
        let reader = tokio::spawn(async move {
            use tokio::io::AsyncReadExt as _;
            let mut n = 0;
            let mut buf = [0u8; 512];
            loop {
                tokio::time::sleep(Duration::from_millis(20)).await;
                match b.read(&mut buf).await {
                    Ok(0) | Err(_) => return n,
                    Ok(k) => n += k,
                }
            }
        });
        w.write_all(&vec![1u8; 16 * 1024]).await.unwrap();
        w.shutdown().await.unwrap();
        drop(w);
        assert_eq!(reader.await.unwrap(), 16 * 1024);
    }

    #[test]
    fn server_limits_are_range_checked() {
        assert_eq!(parse_seconds(" 0.5 "), Ok(Duration::from_millis(500)));
        for bad in ["0", "-1", "nan", "inf", "1e300", "3601", "x", ""] {
            assert!(parse_seconds(bad).is_err(), "{bad}");
        }
        let ok = ServeConfig::default().limits();
        assert_eq!(ok.check(MAX_MODEL_BODY_BYTES), Ok(()));
        let e = ServerLimits {
            max_connections: 0,
            ..ok
        }
        .check(MAX_MODEL_BODY_BYTES)
        .unwrap_err();
        assert_eq!(e, "max connections 0: 1 to 65536");
        let e = ServerLimits {
            max_body_bytes: MAX_MODEL_BODY_BYTES + 1,
            ..ok
        }
        .check(MAX_MODEL_BODY_BYTES)
        .unwrap_err();
        assert!(
            e.starts_with("max body bytes 104923137: 1 to 104923136"),
            "{e}"
        );
        assert_eq!(effective_max_connections(1), 1);
    }

    #[test]
    fn execution_parameters_serialize_like_the_contract() {
        let p = ExecutionParameters {
            max_concurrent_transforms: 4,
            batch_strategy: ContractBatchStrategy::MultiRecord,
            max_payload_in_mb: 6,
        };
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            r#"{"MaxConcurrentTransforms":4,"BatchStrategy":"MULTI_RECORD","MaxPayloadInMB":6}"#
        );
    }
}
