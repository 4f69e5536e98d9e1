//! Model selection: the ordered candidate list of a variant (`auto`, bare names, fallbacks).
//!
//! Inworld's `model_selection` turns a variant's `model_id` into a list of models to try in
//! order. [`order_models`] computes that list from the config, the [`Catalog`] and the latency
//! and throughput the host has reported ([`ModelMetrics`]); [`validate_selection`] rejects, at
//! compile time, configs whose order could not be computed as asked.
//!
//! What the list is depends on `model_id`:
//!
//! - **`auto`**: the pool `model_selection.models` (a bare name in it stands for every catalog
//!   entry serving it), without the models `ignore` drops, sorted by `sort` (default: latency,
//!   fastest first).
//! - **A bare name** (no `/`, like `gpt-oss-120b`): the catalog entries serving it, providers
//!   named in `provider.order` first in that order, then, if `allow_fallbacks` (the default), the
//!   other providers sorted by `sort` (default: latency). With `allow_fallbacks: false` only the
//!   providers of `order` are used, or only the best one when `order` is empty. Then the
//!   fallback models.
//! - **`provider/model`**: that model, then the fallback models.
//!
//! The fallback models are `model_selection.models` (bare names expanded as for `auto`), without
//! the ignored ones, sorted by `sort` when it is given and in configured order otherwise. No
//! model appears twice. `ignore` drops a model when an entry equals its id, its provider or its
//! bare name; it never drops an explicit `provider/model` `model_id`, only candidates around it.
//!
//! Sorting compares the first key, then the next on a tie, then the model id (byte order), so
//! the result is a deterministic function of its inputs. The metrics:
//!
//! - `SORT_METRIC_PRICE`: the catalog's blended price, `(3 × input + 1 × output) / 4` per million
//!   tokens ([`Pricing::blended`](crate::catalog::Pricing::blended)), compared exactly.
//! - `SORT_METRIC_LATENCY`, `SORT_METRIC_THROUGHPUT`: [`ModelMetrics`], an EWMA of what the host
//!   reports, with a prior for models without reports.
//! - `SORT_METRIC_INTELLIGENCE`, `_MATH`, `_CODING`: the catalog's [`Scores`](crate::catalog::Scores).
//!
//! A model with no value for a catalog metric sorts last whatever the direction; configs where
//! that would happen are the ones [`validate_selection`] rejects.
//!
//! ```
//! use abroute::catalog::Catalog;
//! use abroute::config::{ModelSelection, SortDirection, SortKey, SortMetric};
//! use abroute::select::{ModelMetrics, order_models, validate_selection};
//!
//! let catalog = Catalog::default_openai();
//! let selection = ModelSelection {
//!     models: vec!["openai/gpt-4.1".into(), "openai/gpt-4o-mini".into(), "openai/gpt-5-nano".into()],
//!     sort: vec![SortKey { metric: SortMetric::Price, direction: SortDirection::Ascending }],
//!     ..ModelSelection::default()
//! };
//! validate_selection("auto", &selection, &catalog).unwrap();
//! let order = order_models("auto", &selection, &catalog, &ModelMetrics::new());
//! assert_eq!(order, ["openai/gpt-5-nano", "openai/gpt-4o-mini", "openai/gpt-4.1"]);
//! ```

use std::cmp::Ordering as CmpOrdering;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;
use rustc_hash::{FxHashMap, FxHashSet};

use crate::catalog::Catalog;
use crate::config::{ModelSelection, SortDirection, SortKey, SortMetric};
use crate::error::JsonPath;

/// The `model_id` that selects automatically from `model_selection.models`.
pub const AUTO: &str = "auto";

/// The sort used where Inworld sorts without `sort` given (the `auto` pool, and the providers of
/// a bare name): latency, fastest first.
pub const DEFAULT_SORT: [SortKey; 1] = [SortKey {
    metric: SortMetric::Latency,
    direction: SortDirection::Ascending,
}];

/// What a `model_id` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelKind {
    /// `auto`: pick from the pool.
    Auto,
    /// A model name without provider (`gpt-oss-120b`): pick a provider.
    Bare,
    /// `provider/model`.
    Qualified,
}

impl ModelKind {
    /// Classifies a `model_id`: `auto`, then anything with a `/` is qualified, the rest bare.
    pub fn of(model_id: &str) -> ModelKind {
        if model_id == AUTO {
            ModelKind::Auto
        } else if model_id.contains('/') {
            ModelKind::Qualified
        } else {
            ModelKind::Bare
        }
    }
}

/// Whether `ignore` drops `model`: an entry equal to the model id, to its provider (the part
/// before the first `/`) or to its bare name (the part after).
pub fn is_ignored(model: &str, ignore: &[String]) -> bool {
    let id = crate::model::ModelId::new(model);
    let (provider, bare) = (id.provider(), id.name());
    ignore
        .iter()
        .any(|i| *i == model || Some(i.as_str()) == provider || *i == bare)
}

// ---------------------------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------------------------

/// The smoothing and priors of [`ModelMetrics`]. Every field has a documented default.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricsConfig {
    /// The weight of a new report in the average: `avg ← avg + smoothing × (sample − avg)`.
    /// Default 0.2 (a report's weight halves after about three more; the last ten reports hold
    /// 89% of the weight). In `(0, 1]`.
    pub smoothing: f64,
    /// The latency of a model without reports. Default 1,000 ms.
    pub latency_prior: Duration,
    /// The throughput of a model without reports, in output tokens per second. Default 50.
    pub throughput_prior: f64,
    /// The most models tracked; reports about further models are dropped (they sort by the
    /// priors). Default 10,000.
    pub max_models: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            smoothing: 0.2,
            latency_prior: Duration::from_millis(1_000),
            throughput_prior: 50.0,
            max_models: 10_000,
        }
    }
}

/// Why a [`MetricsConfig`] was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MetricsConfigError {
    /// `smoothing` is not in `(0, 1]`.
    Smoothing,
    /// `throughput_prior` is not a positive finite number.
    ThroughputPrior,
}

impl fmt::Display for MetricsConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MetricsConfigError::Smoothing => "smoothing must be in (0, 1]",
            MetricsConfigError::ThroughputPrior => {
                "throughput_prior must be a positive finite number of tokens per second"
            }
        })
    }
}

impl std::error::Error for MetricsConfigError {}

/// The bits of an average that has no report yet (a NaN, which no report can produce).
const NO_DATA: u64 = 0x7ff8_0000_0000_0000;

/// The latency and throughput averages of one model. Lock-free: each average is one atomic
/// holding an `f64`'s bits, updated by compare-and-swap; reads are plain loads.
#[derive(Debug)]
#[repr(align(64))]
pub struct ModelEwma {
    latency_ms: AtomicU64,
    throughput: AtomicU64,
    reports: AtomicU64,
    /// The latest `now` reported, in ms, plus one; 0 for never.
    last_report: AtomicU64,
    config: MetricsConfig,
}

/// A point-in-time view of one model's averages.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct MetricsSnapshot {
    /// The latency average in milliseconds, or the prior.
    pub latency_ms: f64,
    /// The throughput average in output tokens per second, or the prior.
    pub throughput: f64,
    /// Reports since the start or the last reset.
    pub reports: u64,
    /// Whether `latency_ms` is the prior (no report yet).
    pub latency_is_prior: bool,
    /// Whether `throughput` is the prior (no report with output tokens yet).
    pub throughput_is_prior: bool,
    /// The latest `now` reported, in milliseconds since the host's epoch.
    pub last_report_ms: Option<u64>,
}

fn ewma_update(cell: &AtomicU64, sample: f64, smoothing: f64) {
    // The closure always returns `Some`, so this cannot fail.
    let _ = cell.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
        let old = f64::from_bits(bits);
        let new = if old.is_nan() {
            sample
        } else {
            old + smoothing * (sample - old)
        };
        Some(new.to_bits())
    });
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl ModelEwma {
    fn new(config: MetricsConfig) -> ModelEwma {
        ModelEwma {
            latency_ms: AtomicU64::new(NO_DATA),
            throughput: AtomicU64::new(NO_DATA),
            reports: AtomicU64::new(0),
            last_report: AtomicU64::new(0),
            config,
        }
    }

    /// Records one served request: its latency (start to last token) and output tokens.
    ///
    /// The first report replaces the prior; later ones move the average by
    /// [`MetricsConfig::smoothing`]. Throughput is `output_tokens / latency` and is only
    /// updated when both are positive.
    pub fn record(&self, latency: Duration, output_tokens: u64, now: Duration) {
        let secs = latency.as_secs_f64();
        ewma_update(&self.latency_ms, secs * 1e3, self.config.smoothing);
        if output_tokens > 0 && secs > 0.0 {
            ewma_update(
                &self.throughput,
                output_tokens as f64 / secs,
                self.config.smoothing,
            );
        }
        self.reports.fetch_add(1, Ordering::Relaxed);
        self.last_report
            .fetch_max(ms(now).saturating_add(1), Ordering::Relaxed);
    }

    /// Records a served request's throughput only (`output_tokens / latency`), for hosts that
    /// learn the token count after reporting the latency. Ignored unless both are positive.
    pub fn record_throughput(&self, output_tokens: u64, latency: Duration) {
        let secs = latency.as_secs_f64();
        if output_tokens > 0 && secs > 0.0 {
            ewma_update(
                &self.throughput,
                output_tokens as f64 / secs,
                self.config.smoothing,
            );
        }
    }

    /// The latency average in milliseconds, or the prior.
    #[inline]
    pub fn latency_ms(&self) -> f64 {
        let v = f64::from_bits(self.latency_ms.load(Ordering::Relaxed));
        if v.is_nan() {
            self.config.latency_prior.as_secs_f64() * 1e3
        } else {
            v
        }
    }

    /// The throughput average in output tokens per second, or the prior.
    #[inline]
    pub fn throughput(&self) -> f64 {
        let v = f64::from_bits(self.throughput.load(Ordering::Relaxed));
        if v.is_nan() {
            self.config.throughput_prior
        } else {
            v
        }
    }

    /// Forgets every report: both averages go back to the priors.
    pub fn reset(&self) {
        self.latency_ms.store(NO_DATA, Ordering::Relaxed);
        self.throughput.store(NO_DATA, Ordering::Relaxed);
        self.reports.store(0, Ordering::Relaxed);
        self.last_report.store(0, Ordering::Relaxed);
    }

    /// The averages now.
    pub fn snapshot(&self) -> MetricsSnapshot {
        let last = self.last_report.load(Ordering::Relaxed);
        MetricsSnapshot {
            latency_ms: self.latency_ms(),
            throughput: self.throughput(),
            reports: self.reports.load(Ordering::Relaxed),
            latency_is_prior: self.latency_ms.load(Ordering::Relaxed) == NO_DATA,
            throughput_is_prior: self.throughput.load(Ordering::Relaxed) == NO_DATA,
            last_report_ms: last.checked_sub(1),
        }
    }
}

type EwmaMap = FxHashMap<Box<str>, Arc<ModelEwma>>;

/// Latency and throughput per model, from the host's reports: an exponentially weighted moving
/// average (EWMA) each, with a prior for models without reports ([`MetricsConfig`]).
///
/// Readers never wait: the map from model id to its [`ModelEwma`] sits behind an `arc-swap`
/// (one lock-free load), and each average is one atomic. A report about a known model is two
/// compare-and-swaps on that model's own cache line; only the first report about a model takes
/// a lock, to publish a new map. Like health, the core reads no clock: `now` is the host's
/// time since an epoch of its choice, kept as the model's last report time, so a host can
/// [`forget_older_than`](Self::forget_older_than) averages that stopped getting reports (a model
/// that sorts last gets no traffic, hence no reports that could redeem it).
#[derive(Debug)]
pub struct ModelMetrics {
    config: MetricsConfig,
    map: ArcSwap<EwmaMap>,
    writer: Mutex<()>,
}

impl Default for ModelMetrics {
    fn default() -> Self {
        ModelMetrics::new()
    }
}

impl ModelMetrics {
    /// An empty store with the default [`MetricsConfig`].
    pub fn new() -> ModelMetrics {
        ModelMetrics {
            config: MetricsConfig::default(),
            map: ArcSwap::from_pointee(EwmaMap::default()),
            writer: Mutex::new(()),
        }
    }

    /// An empty store with `config`.
    ///
    /// # Errors
    ///
    /// A smoothing factor outside `(0, 1]` or a throughput prior that is not positive and finite.
    pub fn with_config(config: MetricsConfig) -> Result<ModelMetrics, MetricsConfigError> {
        if !(config.smoothing > 0.0 && config.smoothing <= 1.0) {
            return Err(MetricsConfigError::Smoothing);
        }
        if !(config.throughput_prior.is_finite() && config.throughput_prior > 0.0) {
            return Err(MetricsConfigError::ThroughputPrior);
        }
        Ok(ModelMetrics {
            config,
            ..ModelMetrics::new()
        })
    }

    /// The configuration.
    pub fn config(&self) -> &MetricsConfig {
        &self.config
    }

    /// Records one served request of `model` (see [`ModelEwma::record`]). Report successes
    /// only: failures are health's business and their latency says nothing about serving speed.
    pub fn record(&self, model: &str, latency: Duration, output_tokens: u64, now: Duration) {
        // The common case touches no reference count: update through the loaded map.
        if let Some(e) = self.map.load().get(model) {
            e.record(latency, output_tokens, now);
            return;
        }
        if let Some(e) = self.entry(model) {
            e.record(latency, output_tokens, now);
        }
    }

    /// Records `model`'s throughput only (see [`ModelEwma::record_throughput`]).
    pub fn record_throughput(&self, model: &str, output_tokens: u64, latency: Duration) {
        if let Some(e) = self.map.load().get(model) {
            e.record_throughput(output_tokens, latency);
            return;
        }
        if let Some(e) = self.entry(model) {
            e.record_throughput(output_tokens, latency);
        }
    }

    /// The averages of `model`, created at the priors if needed, to keep and report to without
    /// a map lookup (as compiled routers keep health). `None` once
    /// [`MetricsConfig::max_models`] models are tracked.
    pub fn handle(&self, model: &str) -> Option<Arc<ModelEwma>> {
        self.entry(model)
    }

    fn entry(&self, model: &str) -> Option<Arc<ModelEwma>> {
        if let Some(e) = self.map.load().get(model) {
            return Some(Arc::clone(e));
        }
        let _guard = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let current = self.map.load_full();
        if let Some(e) = current.get(model) {
            return Some(Arc::clone(e));
        }
        if current.len() >= self.config.max_models {
            return None;
        }
        let e = Arc::new(ModelEwma::new(self.config));
        let mut next = EwmaMap::clone(&current);
        next.insert(model.into(), Arc::clone(&e));
        self.map.store(Arc::new(next));
        Some(e)
    }

    /// The latency average of `model` in milliseconds, or the prior.
    #[inline]
    pub fn latency_ms(&self, model: &str) -> f64 {
        match self.map.load().get(model) {
            Some(e) => e.latency_ms(),
            None => self.config.latency_prior.as_secs_f64() * 1e3,
        }
    }

    /// The throughput average of `model` in output tokens per second, or the prior.
    #[inline]
    pub fn throughput(&self, model: &str) -> f64 {
        match self.map.load().get(model) {
            Some(e) => e.throughput(),
            None => self.config.throughput_prior,
        }
    }

    /// The averages of `model` (the priors, with no reports, if it has none).
    pub fn get(&self, model: &str) -> MetricsSnapshot {
        match self.map.load().get(model) {
            Some(e) => e.snapshot(),
            None => ModelEwma::new(self.config).snapshot(),
        }
    }

    /// Every tracked model's averages, in id order.
    pub fn snapshot(&self) -> Vec<(String, MetricsSnapshot)> {
        let map = self.map.load();
        let mut out: Vec<(String, MetricsSnapshot)> = map
            .iter()
            .map(|(k, e)| (k.to_string(), e.snapshot()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Resets to the priors every model whose last report is older than `age` at `now` (or that
    /// never had one). Call it from time to time so that a model that was slow once gets a fresh
    /// chance. Returns how many models were reset.
    pub fn forget_older_than(&self, now: Duration, age: Duration) -> usize {
        let cutoff = ms(now.saturating_sub(age)).saturating_add(1);
        let mut n = 0;
        for e in self.map.load().values() {
            let last = e.last_report.load(Ordering::Relaxed);
            if last < cutoff && e.reports.load(Ordering::Relaxed) > 0 {
                e.reset();
                n += 1;
            }
        }
        n
    }

    /// Resets `model` to the priors.
    pub fn reset(&self, model: &str) {
        if let Some(e) = self.map.load().get(model) {
            e.reset();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Candidate lists
// ---------------------------------------------------------------------------------------------

/// Where a model of a candidate list comes from in the variant's config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ModelRef {
    /// The `model_id` (for a bare name: each catalog entry serving it).
    ModelId,
    /// `model_selection.models[i]` (for a bare name: each catalog entry serving it).
    Models(usize),
}

impl ModelRef {
    /// The path of the config value, relative to the variant object.
    pub fn path(self) -> JsonPath {
        match self {
            ModelRef::ModelId => JsonPath::root().key("model_id"),
            ModelRef::Models(i) => JsonPath::root()
                .key("model_selection")
                .key("models")
                .index(i),
        }
    }
}

/// One model of a group, and where the config names it.
#[derive(Debug, Clone, Copy)]
struct Member<'a> {
    id: &'a str,
    at: ModelRef,
}

/// A run of the candidate list: its members, and how they are ordered.
#[derive(Debug)]
struct Group<'a> {
    members: Vec<Member<'a>>,
    /// Sorted by these keys (then id), or kept in order when `None`.
    sort: Option<&'a [SortKey]>,
    /// Only the first this many (after sorting) are used.
    limit: Option<usize>,
}

/// What [`resolve`] found besides the groups, for validation.
#[derive(Debug, Default)]
struct Resolution<'a> {
    groups: Vec<Group<'a>>,
    /// Auto: the pool's size before `ignore` (after expansion).
    pool_before_ignore: usize,
    /// Bare: the providers serving the name, before `ignore` and provider preferences.
    bare_providers: Vec<&'a str>,
}

fn provider_of(id: &str) -> &str {
    crate::model::ModelId::new(id).provider().unwrap_or("")
}

/// `name` expanded: itself if qualified; the catalog entries serving it if bare (itself if
/// none).
fn expand<'a>(name: &'a str, at: ModelRef, catalog: &'a Catalog, out: &mut Vec<Member<'a>>) {
    if name.contains('/') {
        out.push(Member { id: name, at });
        return;
    }
    let before = out.len();
    out.extend(catalog.by_name(name).map(|m| Member {
        id: m.id.as_str(),
        at,
    }));
    if out.len() == before {
        out.push(Member { id: name, at });
    }
}

/// The fallback models: `models` expanded, without ignored ones.
fn fallbacks<'a>(selection: &'a ModelSelection, catalog: &'a Catalog) -> Vec<Member<'a>> {
    let mut out = Vec::new();
    for (i, m) in selection.models.iter().enumerate() {
        if m.is_empty() {
            continue;
        }
        expand(m, ModelRef::Models(i), catalog, &mut out);
    }
    out.retain(|m| !is_ignored(m.id, &selection.ignore));
    out
}

fn resolve<'a>(
    model_id: &'a str,
    selection: &'a ModelSelection,
    catalog: &'a Catalog,
) -> Resolution<'a> {
    let given_sort = (!selection.sort.is_empty()).then_some(selection.sort.as_slice());
    let effective_sort: &'a [SortKey] = given_sort.unwrap_or(&DEFAULT_SORT);
    let mut r = Resolution::default();
    match ModelKind::of(model_id) {
        ModelKind::Auto => {
            let mut pool = Vec::new();
            for (i, m) in selection.models.iter().enumerate() {
                if !m.is_empty() {
                    expand(m, ModelRef::Models(i), catalog, &mut pool);
                }
            }
            let mut seen = FxHashSet::default();
            pool.retain(|m| seen.insert(m.id));
            r.pool_before_ignore = pool.len();
            pool.retain(|m| !is_ignored(m.id, &selection.ignore));
            r.groups.push(Group {
                members: pool,
                sort: Some(effective_sort),
                limit: None,
            });
        }
        ModelKind::Bare => {
            let serving: Vec<&'a str> = catalog.by_name(model_id).map(|m| m.id.as_str()).collect();
            r.bare_providers = serving.clone();
            if serving.is_empty() {
                // Unknown to the catalog: the host resolves the name (`validate_selection` rejects this;
                // compiling checks only `auto` variants, so a router may name such a model).
                r.groups.push(Group {
                    members: vec![Member {
                        id: model_id,
                        at: ModelRef::ModelId,
                    }],
                    sort: None,
                    limit: None,
                });
            } else {
                let allowed: Vec<&'a str> = serving
                    .into_iter()
                    .filter(|id| !is_ignored(id, &selection.ignore))
                    .collect();
                let prefs = selection.provider.as_ref();
                let order: &[String] = prefs.map_or(&[], |p| p.order.as_slice());
                let allow_fallbacks = prefs.and_then(|p| p.allow_fallbacks).unwrap_or(true);
                let member = |id: &'a str| Member {
                    id,
                    at: ModelRef::ModelId,
                };
                let mut ordered: Vec<Member<'a>> = Vec::new();
                for p in order {
                    for &id in &allowed {
                        if provider_of(id) == p && !ordered.iter().any(|m| m.id == id) {
                            ordered.push(member(id));
                        }
                    }
                }
                let rest: Vec<Member<'a>> = allowed
                    .iter()
                    .copied()
                    .filter(|&id| !ordered.iter().any(|m| m.id == id))
                    .map(member)
                    .collect();
                let rest_limit = match (allow_fallbacks, order.is_empty()) {
                    (true, _) => None,
                    (false, true) => Some(1),
                    (false, false) => Some(0),
                };
                r.groups.push(Group {
                    members: ordered,
                    sort: None,
                    limit: None,
                });
                r.groups.push(Group {
                    members: rest,
                    sort: Some(effective_sort),
                    limit: rest_limit,
                });
            }
            r.groups.push(Group {
                members: fallbacks(selection, catalog),
                sort: given_sort,
                limit: None,
            });
        }
        ModelKind::Qualified => {
            r.groups.push(Group {
                members: vec![Member {
                    id: model_id,
                    at: ModelRef::ModelId,
                }],
                sort: None,
                limit: None,
            });
            r.groups.push(Group {
                members: fallbacks(selection, catalog),
                sort: given_sort,
                limit: None,
            });
        }
    }
    // No model twice: a later mention (a fallback equal to the primary, a pool entry given
    // twice or through a bare name) is dropped.
    let mut seen = FxHashSet::default();
    for group in &mut r.groups {
        group.members.retain(|m| seen.insert(m.id));
    }
    r
}

/// One model's value for one sort key.
#[derive(Debug, Clone, Copy)]
enum KeyValue {
    Int(u64),
    Float(f64),
    Missing,
}

fn key_value(metric: SortMetric, id: &str, catalog: &Catalog, metrics: &ModelMetrics) -> KeyValue {
    let score = |f: fn(&crate::catalog::Scores) -> Option<f64>| {
        catalog
            .get(id)
            .and_then(|m| f(&m.scores))
            .map_or(KeyValue::Missing, KeyValue::Float)
    };
    match metric {
        SortMetric::Price => catalog
            .get(id)
            .and_then(|m| m.price)
            .map_or(KeyValue::Missing, |p| KeyValue::Int(p.blend_numerator())),
        SortMetric::Latency => KeyValue::Float(metrics.latency_ms(id)),
        SortMetric::Throughput => KeyValue::Float(metrics.throughput(id)),
        SortMetric::Intelligence => score(|s| s.intelligence),
        SortMetric::Math => score(|s| s.math),
        SortMetric::Coding => score(|s| s.coding),
    }
}

/// Compares two values of one key: missing last in both directions.
fn compare(a: KeyValue, b: KeyValue, direction: SortDirection) -> CmpOrdering {
    let ord = match (a, b) {
        (KeyValue::Missing, KeyValue::Missing) => return CmpOrdering::Equal,
        (KeyValue::Missing, _) => return CmpOrdering::Greater,
        (_, KeyValue::Missing) => return CmpOrdering::Less,
        (KeyValue::Int(x), KeyValue::Int(y)) => x.cmp(&y),
        (KeyValue::Float(x), KeyValue::Float(y)) => x.total_cmp(&y),
        // One metric always gives the same kind of value.
        (KeyValue::Int(_), KeyValue::Float(_)) => CmpOrdering::Less,
        (KeyValue::Float(_), KeyValue::Int(_)) => CmpOrdering::Greater,
    };
    match direction {
        SortDirection::Ascending => ord,
        SortDirection::Descending => ord.reverse(),
    }
}

fn sort_members(
    members: &mut Vec<Member<'_>>,
    keys: &[SortKey],
    catalog: &Catalog,
    metrics: &ModelMetrics,
) {
    let mut keyed: Vec<(Vec<KeyValue>, Member<'_>)> = members
        .drain(..)
        .map(|m| {
            let values = keys
                .iter()
                .map(|k| key_value(k.metric, m.id, catalog, metrics))
                .collect();
            (values, m)
        })
        .collect();
    keyed.sort_by(|(va, a), (vb, b)| {
        keys.iter()
            .zip(va.iter().zip(vb))
            .map(|(k, (&x, &y))| compare(x, y, k.direction))
            .find(|o| o.is_ne())
            .unwrap_or_else(|| a.id.cmp(b.id))
    });
    members.extend(keyed.into_iter().map(|(_, m)| m));
}

/// The ordered candidate list of a variant: the models to try, first to last (see the
/// [module documentation](self) for the rules). Never lists a model twice.
///
/// Deterministic for given inputs; the latency and throughput keys read `metrics` as they are
/// now, so the order changes as reports come in. Cost: one catalog lookup per model and sort
/// key, one sort of the pool; allocates the list.
///
/// Empty only when [`validate_selection`] fails (an `auto` pool that is empty or all ignored,
/// or a bare name with no allowed provider and no fallback).
pub fn order_models(
    model_id: &str,
    selection: &ModelSelection,
    catalog: &Catalog,
    metrics: &ModelMetrics,
) -> Vec<String> {
    let resolution = resolve(model_id, selection, catalog);
    let mut out: Vec<String> = Vec::new();
    for mut group in resolution.groups {
        if let Some(keys) = group.sort {
            sort_members(&mut group.members, keys, catalog, metrics);
        }
        let limit = group.limit.unwrap_or(usize::MAX);
        out.extend(group.members.iter().take(limit).map(|m| m.id.to_owned()));
    }
    out
}

/// Whether the order [`order_models`] gives can change with `metrics`: true when a list of two
/// or more candidates is sorted by a key that reads latency or throughput (which is the default
/// for `auto` and for the providers of a bare name). When false, the order is a function of the
/// config and the catalog only, and can be computed once at compile time.
pub fn uses_metrics(model_id: &str, selection: &ModelSelection, catalog: &Catalog) -> bool {
    resolve(model_id, selection, catalog)
        .groups
        .iter()
        .any(|g| {
            g.members.len() >= 2
                && g.limit != Some(0)
                && g.sort.is_some_and(|keys| {
                    keys.iter()
                        .any(|k| matches!(k.metric, SortMetric::Latency | SortMetric::Throughput))
                })
        })
}

/// What is wrong with a variant's model selection.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SelectionErrorKind {
    /// `auto` with no `model_selection.models`.
    EmptyPool,
    /// `auto` whose every pool model is ignored.
    PoolAllIgnored {
        /// How many models the pool had.
        pool: usize,
    },
    /// A sort key needs a catalog value of a model that is not in the catalog.
    UnknownModel {
        /// The model.
        model: String,
        /// The sort key's metric.
        metric: SortMetric,
    },
    /// A sort key needs a catalog value the model's entry does not have.
    MissingMetric {
        /// The model.
        model: String,
        /// The sort key's metric.
        metric: SortMetric,
    },
    /// A bare model name that no catalog entry serves.
    NoProvider {
        /// The name.
        model: String,
    },
    /// A bare model name whose every provider is ignored or excluded by `provider.order` with
    /// `allow_fallbacks: false`.
    NoAllowedProvider {
        /// The name.
        model: String,
        /// The catalog entries serving it.
        serving: Vec<String>,
    },
}

fn metric_name(metric: SortMetric) -> &'static str {
    SortMetric::ALL
        .iter()
        .position(|&m| m == metric)
        .map_or("?", |i| SortMetric::NAMES[i])
}

fn metric_value(metric: SortMetric) -> &'static str {
    match metric {
        SortMetric::Price => "price (`usd_per_million_tokens`)",
        SortMetric::Intelligence => "intelligence score (`scores.intelligence`)",
        SortMetric::Math => "math score (`scores.math`)",
        SortMetric::Coding => "coding score (`scores.coding`)",
        SortMetric::Latency | SortMetric::Throughput => "value",
    }
}

impl fmt::Display for SelectionErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use SelectionErrorKind as K;
        match self {
            K::EmptyPool => f.write_str(
                "`auto` picks from model_selection.models, which is empty; list the models to \
                 pick from",
            ),
            K::PoolAllIgnored { pool } => write!(
                f,
                "`ignore` drops all {pool} models of the `auto` pool, so there is nothing to pick"
            ),
            K::UnknownModel { model, metric } => write!(
                f,
                "{model} is not in the model catalog, so it has no {} to sort by ({}); add it to \
                 the catalog or remove the sort key",
                metric_value(*metric),
                metric_name(*metric)
            ),
            K::MissingMetric { model, metric } => write!(
                f,
                "{model} has no {} in the model catalog, needed to sort by {}; add it to its \
                 catalog entry or remove the sort key",
                metric_value(*metric),
                metric_name(*metric)
            ),
            K::NoProvider { model } => write!(
                f,
                "no provider in the model catalog serves {model:?}; name it as provider/model or \
                 add it to the catalog"
            ),
            K::NoAllowedProvider { model, serving } => write!(
                f,
                "{model:?} is served by {} in the model catalog, but `ignore` and \
                 `provider.order` (with allow_fallbacks false) leave none of them",
                serving.join(", ")
            ),
        }
    }
}

/// A problem in a variant's model selection: where (relative to the variant object) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelectionError {
    /// The config value at fault, relative to the variant (`model_selection.models[2]`); put
    /// the variant's own path in front with [`JsonPath::prefixed`].
    pub path: JsonPath,
    /// What is wrong.
    pub kind: SelectionErrorKind,
}

impl fmt::Display for SelectionError {
    /// `path: message`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.kind)
    }
}

impl std::error::Error for SelectionError {}

/// Every problem with a variant's model selection against `catalog`, in config order (see
/// [`validate_selection`]).
pub fn selection_errors(
    model_id: &str,
    selection: &ModelSelection,
    catalog: &Catalog,
) -> Vec<SelectionError> {
    let selection_path = JsonPath::root().key("model_selection");
    let mut errors = Vec::new();
    let kind = ModelKind::of(model_id);
    let resolution = resolve(model_id, selection, catalog);
    if kind == ModelKind::Auto {
        if resolution.pool_before_ignore == 0 {
            errors.push(SelectionError {
                path: selection_path.key("models"),
                kind: SelectionErrorKind::EmptyPool,
            });
        } else if resolution.groups.iter().all(|g| g.members.is_empty()) {
            errors.push(SelectionError {
                path: selection_path.key("ignore"),
                kind: SelectionErrorKind::PoolAllIgnored {
                    pool: resolution.pool_before_ignore,
                },
            });
        }
    }
    if kind == ModelKind::Bare {
        if resolution.bare_providers.is_empty() {
            errors.push(SelectionError {
                path: JsonPath::root().key("model_id"),
                kind: SelectionErrorKind::NoProvider {
                    model: model_id.to_owned(),
                },
            });
        } else if resolution.groups[..2]
            .iter()
            .all(|g| g.members.is_empty() || g.limit == Some(0))
        {
            let by_provider = selection
                .provider
                .as_ref()
                .is_some_and(|p| p.allow_fallbacks == Some(false) && !p.order.is_empty());
            errors.push(SelectionError {
                path: selection_path.key(if by_provider { "provider" } else { "ignore" }),
                kind: SelectionErrorKind::NoAllowedProvider {
                    model: model_id.to_owned(),
                    serving: resolution
                        .bare_providers
                        .iter()
                        .map(|s| (*s).to_owned())
                        .collect(),
                },
            });
        }
    }
    let mut reported: Vec<(&str, SortMetric)> = Vec::new();
    for group in &resolution.groups {
        let Some(keys) = group.sort else { continue };
        // A group of one is never compared, so it needs no values.
        if group.members.len() < 2 || group.limit == Some(0) {
            continue;
        }
        for key in keys {
            if matches!(key.metric, SortMetric::Latency | SortMetric::Throughput) {
                continue;
            }
            for m in &group.members {
                if reported.contains(&(m.id, key.metric)) {
                    continue;
                }
                let missing = match catalog.get(m.id) {
                    None => Some(SelectionErrorKind::UnknownModel {
                        model: m.id.to_owned(),
                        metric: key.metric,
                    }),
                    Some(info) => {
                        let present = match key.metric {
                            SortMetric::Price => info.price.is_some(),
                            SortMetric::Intelligence => info.scores.intelligence.is_some(),
                            SortMetric::Math => info.scores.math.is_some(),
                            SortMetric::Coding => info.scores.coding.is_some(),
                            SortMetric::Latency | SortMetric::Throughput => true,
                        };
                        (!present).then(|| SelectionErrorKind::MissingMetric {
                            model: m.id.to_owned(),
                            metric: key.metric,
                        })
                    }
                };
                if let Some(kind) = missing {
                    reported.push((m.id, key.metric));
                    errors.push(SelectionError {
                        path: m.at.path(),
                        kind,
                    });
                }
            }
        }
    }
    errors
}

/// Checks, at compile time, that a variant's model order can be computed as configured:
///
/// - `auto` needs a pool (`model_selection.models`) that `ignore` does not empty;
/// - a bare `model_id` must be served by at least one catalog entry, and `ignore` and
///   `provider.order` with `allow_fallbacks: false` must leave at least one;
/// - a sort by price, intelligence, math or coding needs that value in the catalog for every
///   model it compares (the `auto` pool, the providers of a bare name beyond `provider.order`,
///   and the fallback models; not an explicit `provider/model` `model_id`, which always comes
///   first). Latency and throughput need nothing: models without reports sort by the priors.
///
/// # Errors
///
/// The first problem, in config order; [`selection_errors`] gives all of them.
pub fn validate_selection(
    model_id: &str,
    selection: &ModelSelection,
    catalog: &Catalog,
) -> Result<(), SelectionError> {
    match selection_errors(model_id, selection, catalog)
        .into_iter()
        .next()
    {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ewma_first_report_replaces_prior_then_smooths() {
        let m = ModelMetrics::new();
        assert_eq!(m.latency_ms("x/y"), 1_000.0);
        assert_eq!(m.throughput("x/y"), 50.0);
        m.record(
            "x/y",
            Duration::from_millis(500),
            100,
            Duration::from_secs(1),
        );
        assert_eq!(m.latency_ms("x/y"), 500.0);
        assert_eq!(m.throughput("x/y"), 200.0);
        m.record(
            "x/y",
            Duration::from_millis(1_500),
            0,
            Duration::from_secs(2),
        );
        assert!((m.latency_ms("x/y") - 700.0).abs() < 1e-9);
        assert_eq!(m.throughput("x/y"), 200.0);
    }

    #[test]
    fn ignore_matches_id_provider_and_bare_name() {
        let ignore = |s: &[&str]| s.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(is_ignored("openai/gpt-4o", &ignore(&["openai"])));
        assert!(is_ignored("openai/gpt-4o", &ignore(&["openai/gpt-4o"])));
        assert!(is_ignored("openai/gpt-4o", &ignore(&["gpt-4o"])));
        assert!(!is_ignored(
            "openai/gpt-4o",
            &ignore(&["gpt-4o-mini", "groq"])
        ));
    }
}
