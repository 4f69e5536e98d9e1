//! The experiment's books: what streamed answers tell at their end, cost per arm, and the
//! sample-ratio guard.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `abroute_time_to_first_token_seconds` | histogram | `router`, `route`, `variant` (assigned), `model` (served): routing to the first byte of a streamed answer |
//! | `abroute_stream_duration_seconds` | histogram | the same: routing to the end of the stream |
//! | `abroute_stream_errors_total` | counter | the same and `cause` (`upstream_reset`, `client_closed`) |
//! | `abroute_cost_usd_total` | counter | `router`, `route`, `variant`, `served_variant`, `model`: tokens times the catalog's prices |
//! | `abroute_unpriced_tokens_total` | counter | the same: tokens of models the catalog has no prices for |
//! | `abroute_srm_p_value` | gauge | `router`, `route`: the SRM test of the assigned counts under the current config version |
//! | `abroute_srm_assignments` | gauge | `router`, `route`: the assignments that test read |
//! | `abroute_srm_excluded_total` | counter | `router`, `route`: requests left out of it (capability re-picks, fail-open) |
//!
//! Streams add their tokens to `abroute_input_tokens_total` / `abroute_output_tokens_total`
//! and their output tokens over their duration to the model's throughput average.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use abroute::cost::{BilledTokens, Cost, cost};
use abroute::record::AssignmentRecord;
use abroute::srm::{ALARM_P, MIN_ASSIGNMENTS, SrmCounter};
use abroute::{DecisionRecord, Engine};
use abroute_http::stream_tap::{StreamEnd, StreamObserver};

/// The served model of a record (or the last tried, or the assigned one).
fn served_model(record: &DecisionRecord) -> &str {
    record
        .served_model_id
        .as_deref()
        .or_else(|| record.attempts.last().map(|a| a.model.as_str()))
        .unwrap_or(&record.assigned_model_id)
}

/// Adds an answer's cost (or its unpriced tokens) to the counters of its arm.
pub fn record_cost(engine: &Engine, record: &DecisionRecord, tokens: BilledTokens) {
    if tokens.total() == 0 {
        return;
    }
    let model = served_model(record);
    let pricing = engine.catalog().get(model).and_then(|m| m.price.as_ref());
    let labels = [
        ("router", record.router.clone()),
        ("route", record.route_id.clone()),
        ("variant", record.assigned_variant_id.clone()),
        (
            "served_variant",
            record.served_variant_id.clone().unwrap_or_default(),
        ),
        ("model", model.to_owned()),
    ];
    match cost(pricing, tokens) {
        Cost::Priced(usd) => add_cost(&labels, usd),
        Cost::Unpriced(n) => {
            metrics::counter!("abroute_unpriced_tokens_total", &labels).increment(n);
        }
    }
}

/// The running cost per label set (the facade's counters count whole numbers; a cost is a
/// fraction of a dollar), shown through a gauge named like a counter.
fn add_cost(labels: &[(&'static str, String); 5], usd: f64) {
    type Totals = Mutex<HashMap<[String; 5], f64>>;
    static TOTALS: OnceLock<Totals> = OnceLock::new();
    let mut totals = TOTALS
        .get_or_init(Totals::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    let key = labels.clone().map(|(_, v)| v);
    let total = totals.entry(key).or_insert(0.0);
    *total += usd;
    metrics::gauge!("abroute_cost_usd_total", labels).set(*total);
}

/// The gateway's [`StreamObserver`]: the stream metrics, tokens, cost and throughput.
#[derive(Debug, Clone)]
pub struct StreamMetrics {
    engine: Arc<Engine>,
}

impl StreamMetrics {
    /// Observes streams answered from `engine`'s routers (its catalog prices them).
    pub fn new(engine: Arc<Engine>) -> StreamMetrics {
        StreamMetrics { engine }
    }
}

impl StreamObserver for StreamMetrics {
    fn stream_ended(&self, end: StreamEnd) {
        let record = &end.record;
        let model = served_model(record).to_owned();
        let labels = [
            ("router", record.router.clone()),
            ("route", record.route_id.clone()),
            ("variant", record.assigned_variant_id.clone()),
            ("model", model.clone()),
        ];
        if let Some(ttft) = end.time_to_first_token {
            metrics::histogram!("abroute_time_to_first_token_seconds", &labels)
                .record(ttft.as_secs_f64());
        }
        metrics::histogram!("abroute_stream_duration_seconds", &labels)
            .record(end.duration.as_secs_f64());
        if let Some(cause) = end.error {
            let mut with_cause = labels.to_vec();
            with_cause.push(("cause", cause.name().to_owned()));
            metrics::counter!("abroute_stream_errors_total", &with_cause).increment(1);
        }
        let usage = end.usage;
        if usage.is_empty() {
            return;
        }
        crate::token_metrics::count_tokens(record, usage.to_usage());
        let (input, cached_input) = usage.billed_input(end.api);
        let output = usage.output_tokens.unwrap_or(0);
        record_cost(
            &self.engine,
            record,
            BilledTokens {
                input,
                cached_input,
                output,
            },
        );
        if end.error.is_none()
            && let Some(m) = self.engine.metrics().handle(&model)
        {
            m.record_throughput(output, end.duration);
        }
    }
}

/// One route's SRM counter under one config version.
struct RouteBook {
    counter: SrmCounter,
    weights: Vec<u32>,
    variants: Vec<String>,
    warned: bool,
}

/// The most (router, route, version) books kept; beyond, new ones are not counted.
pub const MAX_BOOKS: usize = 4_096;

type Books = Mutex<HashMap<(String, String, u64), RouteBook>>;

fn books() -> &'static Books {
    static BOOKS: OnceLock<Books> = OnceLock::new();
    BOOKS.get_or_init(Books::default)
}

/// Counts one routed request's assignment for the SRM test of its route and config version,
/// updates `abroute_srm_p_value`, and warns once per route and version when the split looks
/// broken (p < 0.001 after at least 1,000 assignments).
pub fn count_assignment(engine: &Engine, record: &DecisionRecord) {
    let key = (
        record.router.clone(),
        record.route_id.clone(),
        record.version,
    );
    let mut books = books().lock().unwrap_or_else(PoisonError::into_inner);
    if !books.contains_key(&key) {
        if books.len() >= MAX_BOOKS {
            // Drop the books of versions no longer served first.
            let snapshot = engine.load();
            books.retain(|(r, _, v), _| {
                snapshot
                    .router(r)
                    .is_some_and(|l| l.compiled().version() == *v)
            });
            if books.len() >= MAX_BOOKS {
                return;
            }
        }
        let snapshot = engine.load();
        let Some(router) = snapshot.router(&record.router) else {
            return;
        };
        if router.compiled().version() != record.version {
            return;
        }
        let Some(route) = router
            .compiled()
            .routes()
            .find(|r| r.id() == record.route_id)
        else {
            return;
        };
        let variants: Vec<String> = route.variants().iter().map(|v| v.id().to_owned()).collect();
        let weights = route.variants().iter().map(|v| v.weight()).collect();
        books.insert(
            key.clone(),
            RouteBook {
                counter: SrmCounter::new(variants.len()),
                weights,
                variants,
                warned: false,
            },
        );
    }
    let Some(book) = books.get_mut(&key) else {
        return;
    };
    let labels = [
        ("router", record.router.clone()),
        ("route", record.route_id.clone()),
    ];
    if !record.skipped.is_empty() || record.fail_open {
        book.counter.exclude();
        metrics::counter!("abroute_srm_excluded_total", &labels).increment(1);
        return;
    }
    let Some(arm) = book
        .variants
        .iter()
        .position(|v| *v == record.assigned_variant_id)
    else {
        return;
    };
    match &record.assignment {
        AssignmentRecord::Random { .. } => book.counter.assign_random(arm),
        AssignmentRecord::Sticky { key_hash, .. } | AssignmentRecord::Hashed { key_hash } => {
            let hash = u64::from_str_radix(key_hash, 16).unwrap_or(0);
            book.counter.assign_sticky(hash, arm);
        }
    }
    let total = book.counter.total();
    // The test costs O(√n) terms: run every request up to the alarm threshold, then every
    // 64th assignment.
    if total < MIN_ASSIGNMENTS || total % 64 == 0 {
        let Some(p) = book.counter.p_value(&book.weights) else {
            return;
        };
        metrics::gauge!("abroute_srm_p_value", &labels).set(p);
        metrics::gauge!("abroute_srm_assignments", &labels).set(total as f64);
        if p < ALARM_P && total >= MIN_ASSIGNMENTS && !book.warned {
            book.warned = true;
            tracing::warn!(
                router = %record.router,
                route = %record.route_id,
                version = record.version,
                p_value = p,
                assignments = total,
                counts = ?book.counter.counts(),
                weights = ?book.weights,
                "sample ratio mismatch: the arms did not get the traffic their weights promise"
            );
        }
    }
}

/// The SRM state of one route under one config version, for the readout.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SrmReadout {
    /// The route.
    pub route: String,
    /// The config version.
    pub version: u64,
    /// Variant ids, in the route's order.
    pub variants: Vec<String>,
    /// Their weights.
    pub weights: Vec<u32>,
    /// The counts the test reads (random assignments plus sampled sticky keys).
    pub assigned: Vec<u64>,
    /// The p-value, with two arms or more of positive weight.
    pub p_value: Option<f64>,
    /// Requests left out of the test.
    pub excluded: u64,
    /// Sticky requests seen (each, not once per key).
    pub sticky_requests: u64,
    /// The sticky sample's level: each key is in it with probability 2^-level.
    pub sticky_sample_level: u32,
}

/// The SRM books of `router`'s routes.
pub fn srm_readout(router: &str) -> Vec<SrmReadout> {
    let books = books().lock().unwrap_or_else(PoisonError::into_inner);
    let mut out: Vec<SrmReadout> = books
        .iter()
        .filter(|((r, _, _), _)| r == router)
        .map(|((_, route, version), b)| SrmReadout {
            route: route.clone(),
            version: *version,
            variants: b.variants.clone(),
            weights: b.weights.clone(),
            assigned: b.counter.counts(),
            p_value: b.counter.p_value(&b.weights),
            excluded: b.counter.excluded(),
            sticky_requests: b.counter.sticky_requests(),
            sticky_sample_level: b.counter.level(),
        })
        .collect();
    out.sort_by(|a, b| (&a.route, a.version).cmp(&(&b.route, b.version)));
    out
}
