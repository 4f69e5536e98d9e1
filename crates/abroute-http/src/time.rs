//! Time, as the layer reads it: a [`Clock`] for `now`, a [`Timer`] for timeouts, and the
//! [`TimedOut`] error an inner service may return.
//!
//! A leaf: it imports nothing from the crate, so the layer, the attempt loop and the stream
//! tap (which measures `total_duration_ms` when a stream ends) all read time through it without
//! importing each other.
//!
//! **Timeouts** need a runtime's timer, which this crate does not pick. Two ways, both
//! supported:
//!
//! - give the layer a [`Timer`] (three lines for tokio, see its docs). It then enforces
//!   [`LayerOptions::attempt_timeout`](crate::LayerOptions::attempt_timeout) and, for
//!   streaming requests, `extra_body.fallback.ttft_timeout` (time to the first body frame,
//!   reported as a slow first token);
//! - or let the inner service time out itself and fail with [`TimedOut`] (or any error whose
//!   source chain holds a `TimedOut` or an `io::Error` of kind `TimedOut`): the layer classifies
//!   it as a timeout. The TTFT limit of the request is in
//!   [`UpstreamAttempt::ttft_timeout`](crate::UpstreamAttempt::ttft_timeout).
//!
//! With the default [`NoTimer`], the layer never times out on its own.

use std::future::Future;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// A source of `now` for health and latencies: a duration since any fixed epoch.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> Duration;
}

impl<F: Fn() -> Duration + Send + Sync + 'static> Clock for F {
    fn now(&self) -> Duration {
        self()
    }
}

/// `std::time::Instant`, measured from the first time any `MonotonicClock` is read.
#[derive(Debug, Clone, Copy, Default)]
pub struct MonotonicClock;

impl Clock for MonotonicClock {
    fn now(&self) -> Duration {
        static EPOCH: OnceLock<Instant> = OnceLock::new();
        EPOCH.get_or_init(Instant::now).elapsed()
    }
}

/// A runtime's timer, for attempt and first-token timeouts.
///
/// For tokio:
///
/// ```ignore
/// #[derive(Clone)]
/// struct TokioTimer;
/// impl abroute_http::Timer for TokioTimer {
///     type Sleep = tokio::time::Sleep;
///     fn sleep(&self, d: std::time::Duration) -> tokio::time::Sleep { tokio::time::sleep(d) }
/// }
/// ```
pub trait Timer: Send + Sync + 'static {
    /// The future `sleep` returns.
    type Sleep: Future<Output = ()> + Send;
    /// A future that completes after `duration`.
    fn sleep(&self, duration: Duration) -> Self::Sleep;
}

/// No timer: sleeps never end, so the layer never times out on its own.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoTimer;

impl Timer for NoTimer {
    type Sleep = std::future::Pending<()>;
    fn sleep(&self, _duration: Duration) -> Self::Sleep {
        std::future::pending()
    }
}

/// The error an inner service returns (or holds in its source chain) for an upstream call
/// that timed out: the layer reports it as [`FailureClass::Timeout`](abroute::FailureClass)
/// and tries the next attempt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TimedOut;

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the upstream call timed out")
    }
}

impl std::error::Error for TimedOut {}
