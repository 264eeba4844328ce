//! The limits every HTTP server of the binary runs under (timeouts, body size, connections),
//! their range checks, and binding a listener with c360's backlog.

use std::time::Duration;

use crate::store::MIB;

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
pub const MAX_MODEL_BODY_BYTES: usize = (100 * MIB) as usize + 64 * 1024;
/// Bounds of the settings (checked by [`ServerLimits::check`]).
pub(crate) const TIMEOUT_RANGE_SECONDS: (f64, f64) = (0.05, 3600.0);
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
pub(crate) const LISTEN_BACKLOG: u32 = 1024;

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
pub(super) fn effective_max_connections(configured: usize) -> usize {
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
