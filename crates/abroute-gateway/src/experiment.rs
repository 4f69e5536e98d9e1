//! The experiment's books: what streamed answers tell at their end, cost per arm, and the
//! sample-ratio guard.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `abroute_time_to_first_token_seconds` | histogram | `router`, `route`, `variant` (assigned), `model` (served): routing to the first byte of a streamed answer |
//! | `abroute_stream_duration_seconds` | histogram | the same: routing to the end of the stream |
//! | `abroute_stream_errors_total` | counter | the same and `cause` (`upstream_reset`, `upstream_stalled`: silent past `limits.upstream_idle_timeout`, `client_closed`) |
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
use std::time::Duration;

use abroute::cost::{BilledTokens, Cost, cost};
use abroute::record::AssignmentRecord;
use abroute::srm::{ALARM_P, MIN_ASSIGNMENTS, SrmCounter};
use abroute::stats::LATENCY_BUCKETS_MS;
use abroute::{DecisionRecord, Engine};
use abroute_http::stream_tap::{StreamEnd, StreamError, StreamObserver};
use serde_json::{Value, json};

/// Describes the metrics of this module (called once, with the recorder's installation).
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_histogram!(
        "abroute_time_to_first_token_seconds",
        Unit::Seconds,
        "Streams: routing to the first byte the client got"
    );
    describe_histogram!(
        "abroute_stream_duration_seconds",
        Unit::Seconds,
        "Streams: routing to the end of the stream"
    );
    describe_counter!(
        "abroute_stream_errors_total",
        "Streams that ended early, by cause (upstream_reset, upstream_stalled, client_closed)"
    );
    describe_gauge!(
        "abroute_cost_usd_total",
        "Running cost in US dollars (tokens times catalog prices); never decreases"
    );
    describe_counter!(
        "abroute_unpriced_tokens_total",
        "Tokens of answers from models without catalog prices"
    );
    describe_gauge!(
        "abroute_srm_p_value",
        "Sample-ratio test of the assigned split under the current config version"
    );
    describe_gauge!(
        "abroute_srm_assignments",
        "Assignments the sample-ratio test read (sticky keys once each)"
    );
    describe_counter!(
        "abroute_srm_excluded_total",
        "Requests left out of the sample-ratio test (capability re-picks, fail-open)"
    );
}

/// The served model of a record (or the last tried, or the assigned one).
fn served_model(record: &DecisionRecord) -> &str {
    record
        .served_model_id
        .as_deref()
        .or_else(|| record.attempts.last().map(|a| a.model.as_str()))
        .unwrap_or(&record.assigned_model_id)
}

/// Adds an answer's cost (or its unpriced tokens) to the counters of its arm.
pub fn record_cost(engine: &Engine, record: &DecisionRecord, tokens: BilledTokens) -> Option<f64> {
    if tokens.total() == 0 {
        return None;
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
        Cost::Priced(usd) => {
            add_cost(&labels, usd);
            Some(usd)
        }
        Cost::Unpriced(n) => {
            metrics::counter!("abroute_unpriced_tokens_total", &labels).increment(n);
            None
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
        with_arm(record, |arm| {
            if let Some(t) = end.time_to_first_token {
                arm.ttft.record(t);
            }
            if end.error.is_some_and(|e| e != StreamError::ClientClosed) {
                arm.stream_errors += 1;
            }
        });
        // A stream that broke after its first byte was reported a success when it began: the
        // break goes to passive health as a failure of the model that served it (a server
        // error, or a timeout for a stall past the idle limit).
        let class = match end.error {
            Some(StreamError::UpstreamReset) => Some(abroute::FailureClass::ServerError),
            Some(StreamError::UpstreamStalled) => Some(abroute::FailureClass::Timeout),
            Some(StreamError::ClientClosed) | None => None,
        };
        if let Some(class) = class {
            let failure = abroute::Outcome::Failure(class);
            self.engine.health().report(&model, failure, end.ended_at);
        }
        let usage = end.usage;
        if usage.is_empty() {
            return;
        }
        crate::token_metrics::count_tokens(record, usage.to_usage());
        let (input, cached_input) = usage.billed_input(end.api);
        let output = usage.output_tokens.unwrap_or(0);
        let tokens = BilledTokens {
            input,
            cached_input,
            output,
        };
        let usd = record_cost(&self.engine, record, tokens);
        with_arm(record, |arm| arm.answer(tokens.total(), usd));
        if end.error.is_none()
            && let Some(m) = self.engine.metrics().handle(&model)
        {
            m.record_throughput(output, end.duration);
        }
    }
}

/// A latency histogram over [`LATENCY_BUCKETS_MS`] (and one bucket above).
#[derive(Debug, Clone, Default)]
struct Histogram {
    counts: [u64; LATENCY_BUCKETS_MS.len() + 1],
}

impl Histogram {
    fn record(&mut self, d: Duration) {
        let ms = d.as_secs_f64() * 1e3;
        let i = LATENCY_BUCKETS_MS
            .iter()
            .position(|&b| ms <= b as f64)
            .unwrap_or(LATENCY_BUCKETS_MS.len());
        self.counts[i] += 1;
    }

    /// The `q` quantile in milliseconds, interpolated linearly inside its bucket (the last
    /// bucket reads as its lower bound); `None` when empty.
    fn quantile(&self, q: f64) -> Option<f64> {
        let n: u64 = self.counts.iter().sum();
        if n == 0 {
            return None;
        }
        let rank = q * n as f64;
        let mut seen = 0.0;
        for (i, &c) in self.counts.iter().enumerate() {
            let next = seen + c as f64;
            if c > 0 && next >= rank {
                let lo = if i == 0 {
                    0.0
                } else {
                    LATENCY_BUCKETS_MS[i - 1] as f64
                };
                let Some(&hi) = LATENCY_BUCKETS_MS.get(i) else {
                    return Some(lo);
                };
                return Some(lo + (hi as f64 - lo) * ((rank - seen) / c as f64).clamp(0.0, 1.0));
            }
            seen = next;
        }
        None
    }
}

/// A running mean and variance (Welford).
#[derive(Debug, Clone, Copy, Default)]
struct Moments {
    n: u64,
    mean: f64,
    m2: f64,
}

impl Moments {
    fn add(&mut self, x: f64) {
        self.n += 1;
        let d = x - self.mean;
        self.mean += d / self.n as f64;
        self.m2 += d * (x - self.mean);
    }

    /// The mean with its 95% normal interval.
    fn interval(&self) -> Option<[f64; 3]> {
        if self.n == 0 {
            return None;
        }
        let half = if self.n > 1 {
            Z95 * (self.m2 / (self.n - 1) as f64).sqrt() / (self.n as f64).sqrt()
        } else {
            f64::INFINITY
        };
        Some([self.mean, self.mean - half, self.mean + half])
    }
}

/// The 97.5% quantile of the standard normal: 95% two-sided intervals.
const Z95: f64 = 1.959_963_984_540_054;

/// The Wilson score interval of `x` successes in `n` (95%): `[estimate, low, high]`.
pub fn wilson(x: u64, n: u64) -> Option<[f64; 3]> {
    if n == 0 {
        return None;
    }
    let (n, p) = (n as f64, x as f64 / n as f64);
    let z2 = Z95 * Z95;
    let denom = 1.0 + z2 / n;
    let center = (p + z2 / (2.0 * n)) / denom;
    let half = Z95 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt() / denom;
    Some([p, (center - half).max(0.0), (center + half).min(1.0)])
}

/// One arm's figures under one config version.
#[derive(Debug, Clone, Default)]
struct ArmBook {
    assigned: u64,
    served: u64,
    failovers: u64,
    errors: u64,
    stream_errors: u64,
    latency: Histogram,
    ttft: Histogram,
    tokens: Moments,
    cost: Moments,
}

impl ArmBook {
    fn answer(&mut self, tokens: u64, usd: Option<f64>) {
        self.tokens.add(tokens as f64);
        if let Some(usd) = usd {
            self.cost.add(usd);
        }
    }
}

/// One route's books under one config version: the SRM counter and each arm's figures.
struct RouteBook {
    counter: SrmCounter,
    weights: Vec<u32>,
    variants: Vec<String>,
    arms: Vec<ArmBook>,
    warned: bool,
}

/// The most (router, route, version) books kept; beyond, the books of versions no longer
/// served are dropped, and if none is, new ones are not kept.
pub const MAX_BOOKS: usize = 4_096;

type Books = Mutex<HashMap<(String, String, u64), RouteBook>>;

fn books() -> &'static Books {
    static BOOKS: OnceLock<Books> = OnceLock::new();
    BOOKS.get_or_init(Books::default)
}

fn lock_books() -> std::sync::MutexGuard<'static, HashMap<(String, String, u64), RouteBook>> {
    books().lock().unwrap_or_else(PoisonError::into_inner)
}

fn key_of(record: &DecisionRecord) -> (String, String, u64) {
    (
        record.router.clone(),
        record.route_id.clone(),
        record.version,
    )
}

/// Runs `f` on the book of the record's assigned arm, if it is kept.
fn with_arm(record: &DecisionRecord, f: impl FnOnce(&mut ArmBook)) {
    let mut books = lock_books();
    let Some(book) = books.get_mut(&key_of(record)) else {
        return;
    };
    if let Some(i) = book
        .variants
        .iter()
        .position(|v| *v == record.assigned_variant_id)
    {
        f(&mut book.arms[i]);
    }
}

/// The book of a record's route and version, made from the engine's router when new.
fn book_for<'b>(
    books: &'b mut HashMap<(String, String, u64), RouteBook>,
    engine: &Engine,
    record: &DecisionRecord,
) -> Option<&'b mut RouteBook> {
    let key = key_of(record);
    if !books.contains_key(&key) {
        let snapshot = engine.load();
        if books.len() >= MAX_BOOKS {
            books.retain(|(r, _, v), _| {
                snapshot
                    .router(r)
                    .is_some_and(|l| l.compiled().version() == *v)
            });
            if books.len() >= MAX_BOOKS {
                return None;
            }
        }
        let router = snapshot.router(&record.router)?;
        if router.compiled().version() != record.version {
            return None;
        }
        let route = router
            .compiled()
            .routes()
            .find(|r| r.id() == record.route_id)?;
        let variants: Vec<String> = route.variants().iter().map(|v| v.id().to_owned()).collect();
        let weights = route.variants().iter().map(|v| v.weight()).collect();
        books.insert(
            key.clone(),
            RouteBook {
                counter: SrmCounter::new(variants.len()),
                arms: vec![ArmBook::default(); variants.len()],
                weights,
                variants,
                warned: false,
            },
        );
    }
    books.get_mut(&key)
}

/// Books one routed request: its assignment for the SRM test of its route and config version
/// (updating `abroute_srm_p_value`, and warning once per route and version when the split
/// looks broken: p < 0.001 after at least 1,000 assignments), its arm's counts and latency,
/// and, with `usage`, its tokens and cost.
pub fn observe_request(
    engine: &Engine,
    record: &DecisionRecord,
    status: u16,
    elapsed: Duration,
    usage: Option<abroute_http::Usage>,
) {
    let usd = usage.and_then(|u| {
        let tokens = BilledTokens {
            input: u.input_tokens.unwrap_or(0),
            cached_input: 0,
            output: u.output_tokens.unwrap_or(0),
        };
        record_cost(engine, record, tokens).map(|usd| (tokens.total(), usd))
    });
    let mut books = lock_books();
    let Some(book) = book_for(&mut books, engine, record) else {
        return;
    };
    let arm = book
        .variants
        .iter()
        .position(|v| *v == record.assigned_variant_id);
    if let Some(a) = arm {
        let figures = &mut book.arms[a];
        figures.assigned += 1;
        figures.latency.record(elapsed);
        if status >= 500 || record.served_model_id.is_none() {
            figures.errors += 1;
        }
        if record.served_model_id.is_some() && record.attempts.len() > 1 {
            figures.failovers += 1;
        }
        if let Some(u) = usage {
            let tokens = u.input_tokens.unwrap_or(0) + u.output_tokens.unwrap_or(0);
            figures.answer(tokens, usd.map(|(_, c)| c));
        }
    }
    if let Some(served) = &record.served_variant_id
        && let Some(s) = book.variants.iter().position(|v| v == served)
    {
        book.arms[s].served += 1;
    }
    let labels = [
        ("router", record.router.clone()),
        ("route", record.route_id.clone()),
    ];
    if !record.skipped.is_empty() || record.fail_open {
        book.counter.exclude();
        metrics::counter!("abroute_srm_excluded_total", &labels).increment(1);
        return;
    }
    let Some(arm) = arm else {
        return;
    };
    match &record.assignment {
        AssignmentRecord::Random { .. } => book.counter.assign_random(arm),
        AssignmentRecord::Sticky { key_hash, .. } | AssignmentRecord::Hashed { key_hash } => {
            let hash = u64::from_str_radix(key_hash, 16).unwrap_or(0);
            book.counter.assign_sticky(hash, arm);
        }
        // A request-level pick (no router) has no weights to be tested against.
        AssignmentRecord::Request => return,
    }
    let total = book.counter.total();
    // The test costs O(√n) terms: run on every assignment up to the alarm threshold, then
    // on every 64th.
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

/// The readout of one router (see docs/experiments.md): per route and config version, the
/// SRM test, and per arm the counts, shares, rates with Wilson intervals, latency and TTFT
/// percentiles, tokens and cost per request with normal intervals. `None` when nothing of
/// the router was booked.
pub fn readout(router: &str) -> Option<Value> {
    let books = lock_books();
    let mut routes: Vec<(&(String, String, u64), &RouteBook)> =
        books.iter().filter(|((r, _, _), _)| r == router).collect();
    if routes.is_empty() {
        return None;
    }
    routes.sort_by(|a, b| (&a.0.1, a.0.2).cmp(&(&b.0.1, b.0.2)));
    let routes: Vec<Value> = routes
        .into_iter()
        .map(|((_, route, version), b)| {
            let assigned: u64 = b.arms.iter().map(|a| a.assigned).sum();
            let served: u64 = b.arms.iter().map(|a| a.served).sum();
            let weight_total: u64 = b.weights.iter().map(|&w| u64::from(w)).sum();
            let share = |x: u64, n: u64| if n == 0 { 0.0 } else { x as f64 / n as f64 };
            let arms: Vec<Value> = b
                .variants
                .iter()
                .zip(&b.weights)
                .zip(&b.arms)
                .map(|((v, &w), a)| {
                    let pct = |h: &Histogram| {
                        json!({ "p50": h.quantile(0.5), "p95": h.quantile(0.95), "p99": h.quantile(0.99) })
                    };
                    json!({
                        "variant": v,
                        "weight": w,
                        "weight_share": share(u64::from(w), weight_total),
                        "assigned": a.assigned,
                        "assigned_share": share(a.assigned, assigned),
                        "served": a.served,
                        "served_share": share(a.served, served),
                        "failover_rate": wilson(a.failovers, a.assigned),
                        "error_rate": wilson(a.errors + a.stream_errors, a.assigned),
                        "latency_ms": pct(&a.latency),
                        "ttft_ms": pct(&a.ttft),
                        "tokens_per_request": a.tokens.interval(),
                        "cost_usd_per_request": a.cost.interval(),
                    })
                })
                .collect();
            json!({
                "route": route,
                "version": version,
                "srm": {
                    "p_value": b.counter.p_value(&b.weights),
                    "assignments": b.counter.total(),
                    "counts": b.counter.counts(),
                    "excluded": b.counter.excluded(),
                    "sticky_requests": b.counter.sticky_requests(),
                    "sticky_sample_level": b.counter.level(),
                    "alarm": b.counter.p_value(&b.weights).is_some_and(|p| p < ALARM_P)
                        && b.counter.total() >= MIN_ASSIGNMENTS,
                },
                "arms": arms,
            })
        })
        .collect();
    Some(json!({ "router": router, "routes": routes }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_stream_is_a_failure_of_its_model_in_passive_health() {
        let health = abroute::HealthConfig {
            consecutive_failures: 1,
            ..abroute::HealthConfig::default()
        };
        let engine = Arc::new(abroute::EngineConfig::new().health(health).build());
        let router = r#"{ "name": "hb", "defaultRoute": { "route_id": "default", "variants": [
            { "variant": { "variant_id": "a", "model_id": "p/broken" }, "weight": 1 } ] } }"#;
        let config = abroute::RouterConfig::from_json(router).unwrap_or_else(|e| panic!("{e}"));
        engine.upsert(config).unwrap_or_else(|e| panic!("{e}"));
        let record: DecisionRecord = serde_json::from_str(
            r#"{"router":"hb","route_id":"default","assigned_variant_id":"a",
              "assigned_model_id":"p/broken","served_variant_id":"a","served_model_id":"p/broken",
              "version":1,"assignment":{"kind":"random","draw":"0000000000000001"},
              "attempts":[],"fail_open":false}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let now = Duration::from_secs(100);
        let observer = StreamMetrics::new(Arc::clone(&engine));
        let end = |error| StreamEnd {
            record: record.clone(),
            api: abroute_http::Api::ChatCompletions,
            usage: Default::default(),
            time_to_first_token: None,
            duration: Duration::from_millis(5),
            ended_at: now,
            error,
        };
        let model = || engine.health().get_model("p/broken");
        assert!(model().is_some_and(|h| !h.is_ejected(now)));
        observer.stream_ended(end(Some(
            abroute_http::stream_tap::StreamError::ClientClosed,
        )));
        assert!(
            model().is_some_and(|h| !h.is_ejected(now)),
            "a client leaving is no failure"
        );
        observer.stream_ended(end(Some(
            abroute_http::stream_tap::StreamError::UpstreamReset,
        )));
        assert!(model().is_some_and(|h| h.is_ejected(now)), "a reset is");
    }

    #[test]
    fn wilson_matches_known_values() {
        // 10 of 100: [0.0552, 0.1744] (the Wilson interval).
        let [p, lo, hi] = wilson(10, 100).unwrap_or_default();
        assert!((p - 0.1).abs() < 1e-12);
        assert!(
            (lo - 0.055_2).abs() < 1e-4 && (hi - 0.174_4).abs() < 1e-4,
            "{lo} {hi}"
        );
        let [_, lo, hi] = wilson(0, 20).unwrap_or_default();
        assert_eq!(lo, 0.0);
        assert!((hi - 0.161_1).abs() < 1e-4, "{hi}");
        assert_eq!(wilson(0, 0), None);
    }

    #[test]
    fn histogram_quantiles_interpolate_in_their_bucket() {
        let mut h = Histogram::default();
        for ms in [3u64, 4, 4, 30, 2_000_000] {
            h.record(Duration::from_millis(ms));
        }
        // Three of five in (2, 5]: the median is inside it.
        let p50 = h.quantile(0.5).unwrap_or(0.0);
        assert!(p50 > 2.0 && p50 <= 5.0, "{p50}");
        assert_eq!(h.quantile(1.0), Some(60_000.0));
        assert_eq!(Histogram::default().quantile(0.5), None);
        let mut m = Moments::default();
        for x in [1.0, 2.0, 3.0] {
            m.add(x);
        }
        let [mean, lo, hi] = m.interval().unwrap_or_default();
        assert!((mean - 2.0).abs() < 1e-12 && (hi - mean - (mean - lo)).abs() < 1e-12);
        assert!((hi - mean - Z95 / 3f64.sqrt()).abs() < 1e-12);
    }
}
