//! The background tasks of a running gateway: the engine writer, the watched directory, the
//! metrics upkeep and the refresh timer.
//!
//! They run from the end of the start until [`Gateway::shutdown`](super::Gateway::shutdown)
//! aborts them, after the server has drained. The two that change the engine (the watcher and
//! the refresh timer) do it through the engine writer, like every other source.

use std::time::Duration;

use abroute_http::{Clock, MonotonicClock};
use tokio::task::JoinHandle;

use crate::telemetry;
use crate::watch::DirWatcher;
use crate::writer::EngineWriter;

/// How often routers sorted by observed latency or throughput are recompiled with the latest
/// averages ([`Engine::refresh`](abroute::Engine::refresh)).
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(2);

/// How long a model may go without a report before its averages return to the priors, so that
/// a model that was slow once is tried again.
pub const METRICS_MAX_AGE: Duration = Duration::from_secs(600);

/// Starts the tasks: `writer_task` (already running) is kept to be stopped with the others;
/// `watcher` watches from the fingerprint it loaded.
pub(super) fn spawn(
    writer_task: JoinHandle<()>,
    watcher: Option<(DirWatcher, u64)>,
    writer: EngineWriter,
) -> Vec<JoinHandle<()>> {
    let mut tasks = vec![writer_task];
    if let Some((watcher, print)) = watcher {
        tasks.push(tokio::spawn(watcher.run(print)));
    }
    tasks.push(tokio::spawn(async {
        loop {
            tokio::time::sleep(Duration::from_secs(5)).await;
            telemetry::prometheus().run_upkeep();
        }
    }));
    tasks.push(tokio::spawn(refresh_metrics_sorted(writer)));
    tasks
}

/// Keeps latency- and throughput-sorted attempt orders current: every [`REFRESH_INTERVAL`],
/// forgets averages older than [`METRICS_MAX_AGE`] and has the writer call
/// [`Engine::refresh`](abroute::Engine::refresh) (off the async threads: it compiles). Routers
/// that read no metrics are never recompiled, so this costs nothing for them.
async fn refresh_metrics_sorted(writer: EngineWriter) {
    loop {
        tokio::time::sleep(REFRESH_INTERVAL).await;
        let engine = writer.engine();
        let forgotten = engine
            .metrics()
            .forget_older_than(MonotonicClock.now(), METRICS_MAX_AGE);
        let before = engine.version();
        let Ok(after) = writer.refresh().await else {
            return;
        };
        if after != before || forgotten > 0 {
            tracing::debug!(
                version = after,
                forgotten,
                "metric-sorted routers refreshed"
            );
        }
    }
}
