//! [`serve_bounded`]: serving a router under [`ServerLimits`]: the body guard (size and
//! read time checked before a handler runs), the connection limit with eviction of the
//! oldest idle connection, and graceful shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};

use super::limits::{effective_max_connections, ServerLimits};
use super::stall::WriteStall;

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
