//! The client side's limits: how long a client may take to send a request, how many
//! connections and requests are served at once, and what is answered past each limit.
//!
//! The listener's accept loop ([`serve`]) serves each connection with hyper's HTTP/1.1 server
//! (`header_read_timeout`: the head, and the idle wait between two requests of a keep-alive
//! connection), under two counts:
//!
//! - **connections**: up to `max_connections` are served in full. The next
//!   `reserved_connections` are served for the operations endpoints only (`/healthz`,
//!   `/readyz`, `/metrics`; anything else gets 503 `overloaded`), one request each, so a
//!   monitor can still look at a gateway that is full. Past both, a new connection is closed as
//!   soon as it is accepted: nothing is queued, and the client knows at once.
//! - **requests in flight** (`max_in_flight`): a chat request takes a permit before it is
//!   routed and keeps it until its response body ends (a stream holds it to its last event).
//!   Without a permit it is answered at once with 503 `overloaded` and `Retry-After: 1`, in the
//!   OpenAI error shape. The management API and the operations endpoints take no permit.
//!
//! A request's body must arrive within `body_timeout` of its head ([`DeadlineBody`]); past it
//! the request is answered with 408 and the connection closed.
//!
//! Every refusal is counted: `abroute_shed_requests_total{reason}` (`in_flight`,
//! `connections`), `abroute_refused_connections_total`, `abroute_client_timeouts_total{phase}`
//! (`head`, `body`); `abroute_open_connections` is the connections open now.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use abroute_http::ApiError;
use axum::body::Body;
use bytes::Bytes;
use http::header::{CONNECTION, RETRY_AFTER};
use http::{HeaderValue, Request, Response, StatusCode};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;
use tower::Service;

use crate::config::Limits;

/// File descriptors kept for everything that is not a client or upstream connection (the
/// store, the state file, the watched directory, logs).
const SPARE_FDS: u64 = 64;

/// The operations endpoints: never shed, served on reserved connections.
const OPERATIONS: [&str; 3] = ["/healthz", "/readyz", "/metrics"];

/// The limits of `[limits]` with their defaults worked out for this process and machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Time to a request's head (and the keep-alive idle time).
    pub header_timeout: Duration,
    /// Time to a request's whole body, from its head.
    pub body_timeout: Duration,
    /// Connections served in full.
    pub max_connections: usize,
    /// Connections past those that serve the operations endpoints only.
    pub reserved_connections: usize,
    /// Chat requests in flight.
    pub max_in_flight: usize,
}

impl ServerLimits {
    /// `limits` with its defaults: `max_connections` from `nofile` (the process's file limit),
    /// `max_in_flight` from `cpus`.
    pub fn resolve(limits: &Limits, nofile: u64, cpus: usize) -> ServerLimits {
        let max_connections = limits
            .max_connections
            .unwrap_or_else(|| default_max_connections(nofile, limits.reserved_connections));
        let max_in_flight = limits
            .max_in_flight
            .unwrap_or_else(|| cpus.saturating_mul(1024).clamp(1, max_connections.max(1)));
        ServerLimits {
            header_timeout: limits.header_timeout,
            body_timeout: limits.body_timeout,
            max_connections,
            reserved_connections: limits.reserved_connections,
            max_in_flight,
        }
    }
}

/// Half of what the file limit leaves after the spare descriptors and the reserved
/// connections: each client connection in flight may hold one upstream connection.
fn default_max_connections(nofile: u64, reserved: usize) -> usize {
    let left = nofile.saturating_sub(SPARE_FDS + reserved as u64) / 2;
    usize::try_from(left).unwrap_or(usize::MAX).max(16)
}

/// Raises the soft file limit to the hard one (as Go's runtime does) and returns it: the
/// default soft limit (often 1,024) is far below what a gateway of idle keep-alive clients
/// needs, while the hard limit is what the administrator allowed.
pub fn raise_file_limit() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let (Some(current), maximum) = (limit.current, limit.maximum) else {
        return u64::MAX;
    };
    // Unlimited (`None`) is refused by some kernels for NOFILE: keep a large finite value.
    let target = maximum.unwrap_or(1 << 20);
    if target > current
        && setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(target),
                maximum,
            },
        )
        .is_ok()
    {
        return target;
    }
    current
}

/// Describes the metrics of this module (after the recorder is installed).
pub fn describe() {
    use metrics::{describe_counter, describe_gauge};
    describe_counter!(
        "abroute_shed_requests_total",
        "Requests answered 503 overloaded at once, by reason (in_flight, connections)"
    );
    describe_counter!(
        "abroute_refused_connections_total",
        "Connections closed on accept: past max_connections and reserved_connections"
    );
    describe_counter!(
        "abroute_client_timeouts_total",
        "Client connections or requests cut by a client timeout, by phase (head, body)"
    );
    describe_gauge!("abroute_open_connections", "Client connections open now");
}

/// 503 `overloaded` with `Retry-After: 1`, in the OpenAI error shape, counted with `reason`.
fn overloaded(reason: &'static str, message: &'static str) -> Response<Body> {
    metrics::counter!("abroute_shed_requests_total", "reason" => reason).increment(1);
    let mut r = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "api_error",
        "overloaded",
        message,
    )
    .to_response()
    .map(Body::from);
    r.headers_mut()
        .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// 408: the body did not arrive within `body_timeout`; the connection is closed after it.
fn body_timed_out(timeout: Duration) -> Response<Body> {
    metrics::counter!("abroute_client_timeouts_total", "phase" => "body").increment(1);
    let mut r = ApiError::new(
        StatusCode::REQUEST_TIMEOUT,
        "invalid_request_error",
        "request_timeout",
        format!(
            "the request body did not arrive within {} ms (limits.body_timeout)",
            timeout.as_millis()
        ),
    )
    .to_response()
    .map(Body::from);
    r.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
    r
}

/// A request body that fails once its deadline has passed, and says so in `timed_out` (its
/// connection's flag: HTTP/1.1 serves one request of a connection at a time). The timer is made
/// only if the body has to wait for the client (most bodies are read at once with their head).
pub struct DeadlineBody {
    inner: Incoming,
    deadline: Instant,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    timed_out: Arc<AtomicBool>,
}

/// The error of a body past its deadline.
#[derive(Debug)]
pub struct BodyTimedOut;

impl std::fmt::Display for BodyTimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the request body did not arrive within limits.body_timeout")
    }
}

impl std::error::Error for BodyTimedOut {}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(r) => Poll::Ready(r.map(|f| f.map_err(Into::into))),
            Poll::Pending => {
                let deadline = this.deadline;
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                match sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        this.timed_out.store(true, Ordering::Relaxed);
                        Poll::Ready(Some(Err(Box::new(BodyTimedOut))))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that holds a permit of the in-flight count until it ends (or is dropped).
pub struct PermitBody {
    inner: Body,
    _permit: Option<OwnedSemaphorePermit>,
}

impl http_body::Body for PermitBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether a path takes a permit of the in-flight count: everything but the operations
/// endpoints and the management API.
fn takes_permit(path: &str) -> bool {
    !(OPERATIONS.contains(&path) || path.starts_with("/router/"))
}

/// The app as one connection serves it: with the body deadline and the in-flight count, or
/// (on a reserved connection) the operations endpoints only.
#[derive(Clone)]
struct ConnectionService {
    app: axum::Router,
    in_flight: Arc<Semaphore>,
    body_timeout: Duration,
    operations_only: bool,
    /// Set when the body of the connection's current request missed its deadline.
    body_timed_out: Arc<AtomicBool>,
}

impl hyper::service::Service<Request<Incoming>> for ConnectionService {
    type Response = Response<PermitBody>;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<PermitBody>, Self::Error>> + Send>>;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let path = req.uri().path();
        let permit = if self.operations_only {
            if !OPERATIONS.contains(&path) {
                let r = overloaded(
                    "connections",
                    "the gateway has as many connections open as it serves; retry later",
                );
                return Box::pin(std::future::ready(Ok(r.map(|inner| PermitBody {
                    inner,
                    _permit: None,
                }))));
            }
            None
        } else if takes_permit(path) {
            match Arc::clone(&self.in_flight).try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    let r = overloaded(
                        "in_flight",
                        "the gateway has as many requests in flight as it serves; retry later",
                    );
                    return Box::pin(std::future::ready(Ok(r.map(|inner| PermitBody {
                        inner,
                        _permit: None,
                    }))));
                }
            }
        } else {
            None
        };
        let timeout = self.body_timeout;
        let timed_out = Arc::clone(&self.body_timed_out);
        timed_out.store(false, Ordering::Relaxed);
        let req = req.map(|inner| {
            Body::new(DeadlineBody {
                inner,
                deadline: Instant::now() + timeout,
                sleep: None,
                timed_out: Arc::clone(&timed_out),
            })
        });
        let mut app = self.app.clone();
        Box::pin(async move {
            let Ok(mut r) = app.call(req).await;
            // The layer (or the management API) answers a body it could not read with a 400:
            // when the deadline cut it, a 408.
            if timed_out.load(Ordering::Relaxed) {
                r = body_timed_out(timeout);
            }
            Ok(r.map(|inner| PermitBody {
                inner,
                _permit: permit,
            }))
        })
    }
}

/// Serves `app` on `listener` within `limits` until `stopped`, then lets the open connections
/// finish (idle keep-alive connections are closed, requests in flight complete).
///
/// # Errors
///
/// Never: a failed accept (out of file descriptors, say) is retried after 10 ms, logged at most
/// once a second.
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    limits: ServerLimits,
    stopped: tokio::sync::oneshot::Receiver<()>,
) -> std::io::Result<()> {
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let reserved = Arc::new(Semaphore::new(limits.reserved_connections));
    let in_flight = Arc::new(Semaphore::new(limits.max_in_flight));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let graceful = GracefulShutdown::new();
    let mut stopped = std::pin::pin!(stopped);
    let open = metrics::gauge!("abroute_open_connections");
    let mut last_warning = None;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut stopped => break,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                // Out of descriptors, say: at most one line a second, not one per retry.
                if last_warning.is_none_or(|t: Instant| t.elapsed() >= Duration::from_secs(1)) {
                    tracing::warn!(error = %e, "cannot accept a connection");
                    last_warning = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let (permit, operations_only) = match Arc::clone(&connections).try_acquire_owned() {
            Ok(p) => (p, false),
            Err(_) => match Arc::clone(&reserved).try_acquire_owned() {
                Ok(p) => (p, true),
                Err(_) => {
                    metrics::counter!("abroute_refused_connections_total").increment(1);
                    drop(tcp);
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        let service = ConnectionService {
            app: app.clone(),
            in_flight: Arc::clone(&in_flight),
            body_timeout: limits.body_timeout,
            operations_only,
            body_timed_out: Arc::default(),
        };
        let mut conn_http = http.clone();
        conn_http.keep_alive(!operations_only);
        let conn = conn_http.serve_connection(TokioIo::new(tcp), service);
        let conn = graceful.watch(conn);
        let open = open.clone();
        open.increment(1.0);
        tokio::spawn(async move {
            if let Err(e) = conn.await
                && e.is_timeout()
            {
                metrics::counter!("abroute_client_timeouts_total", "phase" => "head").increment(1);
            }
            open.decrement(1.0);
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_file_limit_and_the_cpus() {
        let limits = Limits::default();
        let l = ServerLimits::resolve(&limits, 1024, 2);
        assert_eq!(l.max_connections, (1024 - 64 - 32) / 2);
        assert_eq!(l.max_in_flight, 464, "at most max_connections");
        let l = ServerLimits::resolve(&limits, 1 << 20, 2);
        assert_eq!(l.max_in_flight, 2048);
        assert_eq!(l.header_timeout, Duration::from_secs(10));
        let l = ServerLimits::resolve(&limits, 10, 2);
        assert_eq!(l.max_connections, 16, "a floor");
        let set = Limits {
            max_connections: Some(5),
            max_in_flight: Some(3),
            ..Limits::default()
        };
        let l = ServerLimits::resolve(&set, 1 << 20, 8);
        assert_eq!((l.max_connections, l.max_in_flight), (5, 3));
    }

    #[test]
    fn operations_and_management_take_no_permit() {
        assert!(!takes_permit("/healthz"));
        assert!(!takes_permit("/metrics"));
        assert!(!takes_permit("/router/v1/routers"));
        assert!(takes_permit("/v1/chat/completions"));
        assert!(takes_permit("/v1/models"));
    }

    #[test]
    fn limits_are_read_from_the_config_and_zeros_refused() {
        use crate::config::GatewayConfig;
        let c = GatewayConfig::from_toml_str(
            "[limits]\nheader_timeout = \"2s\"\nbody_timeout = \"3s\"\nmax_connections = 100\n\
             reserved_connections = 4\nmax_in_flight = 50\nmax_upstream_head_bytes = 9000\n\
             max_upstream_body_bytes = 1000000\nupstream_idle_timeout = \"7s\"\n",
        )
        .expect("valid limits");
        let l = ServerLimits::resolve(&c.limits, 1 << 20, 2);
        assert_eq!(l.header_timeout, Duration::from_secs(2));
        assert_eq!(l.body_timeout, Duration::from_secs(3));
        assert_eq!(
            (l.max_connections, l.reserved_connections, l.max_in_flight),
            (100, 4, 50)
        );
        assert_eq!(c.limits.max_upstream_head_bytes, 9000);
        assert_eq!(c.limits.max_upstream_body_bytes, 1_000_000);
        assert_eq!(c.limits.upstream_idle_timeout, Duration::from_secs(7));
        let e =
            GatewayConfig::from_toml_str("[limits]\nheader_timeout = \"0s\"\nmax_in_flight = 0\n")
                .expect_err("zeros are refused")
                .to_string();
        assert!(
            e.contains("limits.header_timeout: must be longer than 0"),
            "{e}"
        );
        assert!(
            e.contains("limits.max_in_flight: must be at least 1"),
            "{e}"
        );
    }
}
