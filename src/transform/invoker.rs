//! How the runner calls a model: in process (the evaluator behind the same contract as
//! `/invocations`) or over HTTP against a running container.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::model::Booster;
use crate::serving::{self, ExecutionParameters, Invocation};

/// Why one invocation failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InvokeError {
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("the model answered HTTP {status}: {message}")]
    Status { status: u16, message: String },
    #[error("transport error: {0}")]
    Transport(String),
}

/// Calls a model with one payload. Implementations must honour `timeout` (return
/// [`InvokeError::Timeout`] rather than block past it) and be callable from many threads.
pub trait Invoker: Send + Sync + fmt::Debug {
    /// Sends `payload`; the response body (empty for HTTP 204).
    fn invoke(
        &self,
        payload: &[u8],
        content_type: &str,
        timeout: Duration,
    ) -> Result<Vec<u8>, InvokeError>;

    /// What the model's `/execution-parameters` answers, if it answers.
    fn execution_parameters(&self) -> Option<ExecutionParameters> {
        None
    }
}

/// Scores in this process with the native evaluator, answering exactly like
/// `POST /invocations` would.
#[derive(Debug)]
pub struct InProcessInvoker {
    model: Arc<Booster>,
    params: ExecutionParameters,
    busy_nanos: AtomicU64,
}

impl InProcessInvoker {
    pub fn new(model: Arc<Booster>) -> InProcessInvoker {
        InProcessInvoker {
            model,
            params: ExecutionParameters::for_this_machine(),
            busy_nanos: AtomicU64::new(0),
        }
    }

    /// Time spent inside invocations (parse + predict + format), summed over threads.
    pub fn busy(&self) -> Duration {
        Duration::from_nanos(self.busy_nanos.load(Ordering::Relaxed))
    }
}

impl Invoker for InProcessInvoker {
    fn invoke(
        &self,
        payload: &[u8],
        content_type: &str,
        timeout: Duration,
    ) -> Result<Vec<u8>, InvokeError> {
        let t0 = Instant::now();
        let r = serving::invoke(&self.model, Some(content_type), payload);
        let took = t0.elapsed();
        self.busy_nanos
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
        // Scoring cannot be interrupted; a call that overran still counts as a timeout, as
        // the container's caller would have given up on it.
        if took > timeout {
            return Err(InvokeError::Timeout(timeout));
        }
        match r {
            Ok(Invocation::Empty) => Ok(Vec::new()),
            Ok(Invocation::Predictions { body, .. }) => Ok(body),
            Err(e) => Err(InvokeError::Status {
                status: e.status().as_u16(),
                message: e.to_string(),
            }),
        }
    }

    fn execution_parameters(&self) -> Option<ExecutionParameters> {
        Some(self.params)
    }
}

/// Posts to a container's `/invocations` (e.g. `http://127.0.0.1:8080`), like SageMaker's
/// agent does. Owns a small tokio runtime so the (synchronous) runner can call it from any
/// plain thread; do not call or drop it from inside another tokio runtime (use
/// `spawn_blocking` there).
pub struct HttpInvoker {
    base: String,
    client: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

impl fmt::Debug for HttpInvoker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpInvoker")
            .field("base", &self.base)
            .finish()
    }
}

impl HttpInvoker {
    pub fn new(base_url: &str) -> Result<HttpInvoker, InvokeError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .map_err(|e| InvokeError::Transport(format!("cannot start the HTTP runtime: {e}")))?;
        let client = reqwest::Client::builder()
            .build()
            .map_err(|e| InvokeError::Transport(e.to_string()))?;
        Ok(HttpInvoker {
            base: base_url.trim_end_matches('/').to_string(),
            client,
            rt,
        })
    }
}

impl Invoker for HttpInvoker {
    fn invoke(
        &self,
        payload: &[u8],
        content_type: &str,
        timeout: Duration,
    ) -> Result<Vec<u8>, InvokeError> {
        let req = self
            .client
            .post(format!("{}/invocations", self.base))
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .timeout(timeout)
            .body(payload.to_vec());
        self.rt.block_on(async {
            let to_err = |e: reqwest::Error| {
                if e.is_timeout() {
                    InvokeError::Timeout(timeout)
                } else {
                    InvokeError::Transport(e.to_string())
                }
            };
            let resp = req.send().await.map_err(to_err)?;
            let status = resp.status();
            let body = resp.bytes().await.map_err(to_err)?;
            if status.is_success() {
                Ok(body.to_vec())
            } else {
                Err(InvokeError::Status {
                    status: status.as_u16(),
                    message: String::from_utf8_lossy(&body)
                        .trim()
                        .chars()
                        .take(500)
                        .collect(),
                })
            }
        })
    }

    fn execution_parameters(&self) -> Option<ExecutionParameters> {
        let url = format!("{}/execution-parameters", self.base);
        self.rt.block_on(async {
            let resp = self
                .client
                .get(url)
                .timeout(Duration::from_secs(10))
                .send()
                .await
                .ok()?;
            if !resp.status().is_success() {
                return None;
            }
            resp.json::<ExecutionParameters>().await.ok()
        })
    }
}
