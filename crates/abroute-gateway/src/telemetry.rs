//! Metrics (Prometheus text through the `metrics` facade) and structured logs (`tracing`).
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `abroute_requests_total` | counter | `router`, `route`, `variant` (assigned), `served_variant`, `model` (served), `status` |
//! | `abroute_request_duration_seconds` | histogram | `router`, `route`, `variant`, `model`: time to the response head (for streams, to the first token) |
//! | `abroute_attempts_total` | counter | `router`, `route`, `variant` (of the attempt), `model`, `outcome` (`success`, `rate_limited`, `server_error`, `timeout`, `slow_first_token`, `client_error`) |
//! | `abroute_attempt_duration_seconds` | histogram | `model`, `outcome` |
//! | `abroute_failovers_total` | counter | `router`, `route`, `variant` (assigned), `model` (served) |
//! | `abroute_input_tokens_total`, `abroute_output_tokens_total` | counter | `router`, `route`, `variant` (assigned), `served_variant`, `model` (served): the answer's `usage` (non-streaming answers read whole to merge `metadata`; streams when they end) |
//! | `abroute_ejections_total` | counter | `router`, `route`, `variant`, `model`: ejections of the model so far |
//! | `abroute_model_ejected` | gauge | `model`: 1 while ejected |
//! | `abroute_unrouted_requests_total` | counter | `status`: requests that named no router or were refused before routing |
//! | `abroute_config_changes_total` | counter | `source` (`api`, `watch`, `store`), `result` |
//! | `abroute_routers` / `abroute_config_version` | gauge | |
//! | `abroute_store_up` / `abroute_store_revision` | gauge | a fleet's shared store: its watch connected; the revision applied |
//! | `abroute_store_apply_seconds` | histogram | the time to apply one item of the store's watch |
//! | `abroute_store_propagation_seconds` | histogram | a fleet's store change, from its commit (the store's clock) to served by this replica |
//! | `abroute_store_resets_total` | counter | watch resets (the history after the replica's cursor was compacted) |
//! | streams, cost, SRM | | see [`experiment`](crate::experiment) and docs/experiments.md |
//!
//! Request-level calls (a model that names no router, with `auto` or the router's keys in
//! `extra_body`) are counted in the same metrics with `router="_request"` (which no router can be
//! named) and `route` `direct` or `auto`; their `variant` labels are model ids.
//!
//! Logs never hold keys or message contents: a routed request logs its router, route,
//! variants, model, status, latency and attempts (at `debug`, or `info` with
//! `log.requests = true`).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use abroute::{DecisionRecord, Engine, FailureClass, Outcome};
use abroute_http::Usage;
use http::{Request, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::config::{LogConfig, LogFormat};

/// Latency buckets, in seconds.
const BUCKETS: [f64; 18] = [
    0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0, 60.0, 120.0,
];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process's Prometheus recorder, installed on first use (once per process; every gateway
/// in the process shares it).
pub fn prometheus() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets(&BUCKETS)
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Another recorder may be installed already (a host embedding the gateway): then these
        // metrics go there and `/metrics` shows only what this handle sees.
        let _ = metrics::set_global_recorder(recorder);
        describe();
        crate::experiment::describe();
        handle
    })
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "abroute_requests_total",
        "Routed requests, by assigned and served variant"
    );
    describe_histogram!(
        "abroute_request_duration_seconds",
        Unit::Seconds,
        "Time to the response head of routed requests (first token for streams)"
    );
    describe_counter!("abroute_attempts_total", "Upstream attempts, by outcome");
    describe_counter!(
        "abroute_input_tokens_total",
        "Prompt tokens of answered requests (the answer's usage)"
    );
    describe_counter!(
        "abroute_output_tokens_total",
        "Generated tokens of answered requests (the answer's usage)"
    );
    describe_histogram!(
        "abroute_attempt_duration_seconds",
        Unit::Seconds,
        "Upstream attempt latency (to the first body bytes)"
    );
    describe_counter!(
        "abroute_failovers_total",
        "Requests served by another attempt than the first"
    );
    describe_counter!(
        "abroute_ejections_total",
        "Ejections of the model by passive health"
    );
    describe_gauge!("abroute_model_ejected", "1 while the model is ejected");
    describe_counter!(
        "abroute_unrouted_requests_total",
        "Requests not routed (no router named, or refused before routing)"
    );
    describe_counter!(
        "abroute_config_changes_total",
        "Router changes, by source and result"
    );
    describe_gauge!("abroute_routers", "Routers loaded");
    describe_gauge!("abroute_config_version", "The engine's config version");
    describe_gauge!(
        "abroute_store_up",
        "1 while the shared store's watch is connected"
    );
    describe_gauge!(
        "abroute_store_revision",
        "The shared store's revision this replica serves"
    );
    describe_histogram!(
        "abroute_store_apply_seconds",
        Unit::Seconds,
        "Time to apply one item of the shared store's watch"
    );
    describe_histogram!(
        "abroute_store_propagation_seconds",
        Unit::Seconds,
        "A shared store change, from its commit to served by this replica"
    );
    describe_counter!(
        "abroute_store_resets_total",
        "Resets of the shared store's watch (history compacted past the cursor)"
    );
}

/// Renders `/metrics`, after refreshing the gauges read from the engine (ejections, routers).
pub fn render(engine: &Engine, now: Duration) -> String {
    let snapshot = engine.load();
    metrics::gauge!("abroute_routers").set(snapshot.len() as f64);
    metrics::gauge!("abroute_config_version").set(snapshot.version() as f64);
    for name in snapshot.names() {
        let Some(router) = snapshot.router(name) else {
            continue;
        };
        for route in router.compiled().routes() {
            for variant in route.variants() {
                for target in variant.targets() {
                    let health = target.health();
                    metrics::counter!(
                        "abroute_ejections_total",
                        "router" => name.to_owned(),
                        "route" => route.id().to_owned(),
                        "variant" => variant.id().to_owned(),
                        "model" => target.id().to_owned()
                    )
                    .absolute(health.total_ejections());
                    metrics::gauge!("abroute_model_ejected", "model" => target.id().to_owned())
                        .set(if health.is_ejected(now) { 1.0 } else { 0.0 });
                }
            }
        }
    }
    drop(snapshot);
    prometheus().render()
}

/// The snake-case name of an outcome.
pub fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Success => "success",
        Outcome::Failure(FailureClass::RateLimited) => "rate_limited",
        Outcome::Failure(FailureClass::ServerError) => "server_error",
        Outcome::Failure(FailureClass::Timeout) => "timeout",
        Outcome::Failure(FailureClass::SlowFirstToken) => "slow_first_token",
        Outcome::Failure(FailureClass::ClientError) => "client_error",
        #[allow(unreachable_patterns)]
        _ => "other",
    }
}

fn status_label(status: u16) -> &'static str {
    const EXACT: [(u16, &str); 12] = [
        (200, "200"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (413, "413"),
        (422, "422"),
        (429, "429"),
        (500, "500"),
        (502, "502"),
        (503, "503"),
        (504, "504"),
    ];
    if let Some((_, s)) = EXACT.iter().find(|(c, _)| *c == status) {
        return s;
    }
    match status / 100 {
        1 => "1xx",
        2 => "2xx",
        3 => "3xx",
        4 => "4xx",
        _ => "5xx",
    }
}

/// Records the metrics and the log line of one routed request; `usage` is the answer's token
/// counts when the adapter read them ([`Usage`]).
pub fn observe_routed(
    record: &DecisionRecord,
    usage: Option<Usage>,
    status: u16,
    elapsed: Duration,
    log_info: bool,
) {
    let served_variant = record.served_variant_id.as_deref().unwrap_or("");
    let model = record
        .served_model_id
        .as_deref()
        .or_else(|| record.attempts.last().map(|a| a.model.as_str()))
        .unwrap_or(&record.assigned_model_id);
    metrics::counter!(
        "abroute_requests_total",
        "router" => record.router.clone(),
        "route" => record.route_id.clone(),
        "variant" => record.assigned_variant_id.clone(),
        "served_variant" => served_variant.to_owned(),
        "model" => model.to_owned(),
        "status" => status_label(status)
    )
    .increment(1);
    metrics::histogram!(
        "abroute_request_duration_seconds",
        "router" => record.router.clone(),
        "route" => record.route_id.clone(),
        "variant" => record.assigned_variant_id.clone(),
        "model" => model.to_owned()
    )
    .record(elapsed.as_secs_f64());
    for a in &record.attempts {
        let outcome = outcome_name(a.outcome);
        metrics::counter!(
            "abroute_attempts_total",
            "router" => record.router.clone(),
            "route" => record.route_id.clone(),
            "variant" => a.variant_id.clone(),
            "model" => a.model.clone(),
            "outcome" => outcome
        )
        .increment(1);
        metrics::histogram!(
            "abroute_attempt_duration_seconds",
            "model" => a.model.clone(),
            "outcome" => outcome
        )
        .record(a.latency_ms as f64 / 1000.0);
    }
    let usage = usage.unwrap_or_default();
    crate::token_metrics::count_tokens(record, usage);
    let failover = record.served_model_id.is_some() && record.attempts.len() > 1;
    if failover {
        metrics::counter!(
            "abroute_failovers_total",
            "router" => record.router.clone(),
            "route" => record.route_id.clone(),
            "variant" => record.assigned_variant_id.clone(),
            "model" => model.to_owned()
        )
        .increment(1);
    }
    let latency_us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
    macro_rules! request_event {
        ($level:ident) => {
            tracing::$level!(
                router = %record.router,
                route = %record.route_id,
                variant = %record.assigned_variant_id,
                served_variant = %served_variant,
                model = %model,
                version = record.version,
                status,
                latency_us,
                attempts = record.attempts.len(),
                input_tokens = usage.input_tokens,
                output_tokens = usage.output_tokens,
                failover,
                fail_open = record.fail_open,
                "request"
            )
        };
    }
    if log_info {
        request_event!(info);
    } else {
        request_event!(debug);
    }
}

/// Records a request that was not routed.
pub fn observe_unrouted(status: u16) {
    metrics::counter!("abroute_unrouted_requests_total", "status" => status_label(status))
        .increment(1);
}

/// Wraps the chat service: takes the decision record out of each response and records it.
#[derive(Debug, Clone)]
pub struct Observe<S> {
    inner: S,
    log_info: bool,
    /// Set: cost per arm and the SRM guard ([`crate::experiment`]).
    engine: Option<Arc<Engine>>,
}

impl<S> Observe<S> {
    /// Observes `inner`; routed requests log at `info` when `log_info`, else at `debug`.
    pub fn new(inner: S, log_info: bool) -> Observe<S> {
        Observe {
            inner,
            log_info,
            engine: None,
        }
    }

    /// Also counts each routed request's cost and its assignment for the SRM guard, from
    /// `engine`'s catalog and routers.
    pub fn experiment(mut self, engine: Arc<Engine>) -> Observe<S> {
        self.engine = Some(engine);
        self
    }
}

impl<S, ReqB, ResB> tower::Service<Request<ReqB>> for Observe<S>
where
    S: tower::Service<Request<ReqB>, Response = Response<ResB>, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response<ResB>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<ResB>, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqB>) -> Self::Future {
        let start = Instant::now();
        let fut = self.inner.call(req);
        let log_info = self.log_info;
        let engine = self.engine.clone();
        Box::pin(async move {
            let Ok(mut response) = fut.await;
            let status = response.status().as_u16();
            let usage = response.extensions().get::<Usage>().copied();
            match response.extensions_mut().remove::<DecisionRecord>() {
                Some(record) => {
                    observe_routed(&record, usage, status, start.elapsed(), log_info);
                    if let Some(engine) = &engine {
                        let elapsed = start.elapsed();
                        crate::experiment::observe_request(engine, &record, status, elapsed, usage);
                    }
                }
                None => observe_unrouted(status),
            }
            Ok(response)
        })
    }
}

/// Sets up `tracing` for the process (`RUST_LOG` wins over `log.level`). Once per process;
/// later calls do nothing.
pub fn init_logging(config: &LogConfig) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match config.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
}
