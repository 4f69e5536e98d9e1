//! Compiled routers: the immutable tables a request is decided from.
//!
//! [`RouterConfig::compile`] validates a config, compiles every route's CEL condition once, and
//! turns every route into an [`AliasTable`] and a [`StickyTable`], so that
//! [`CompiledRouter::decide`] is a handful of steps: evaluate the conditions in order (the first
//! true one wins, else the default route), then either hash the request's sticky key into the
//! route's sticky table or draw one `u64` for its alias table. A [`Decision`] borrows from the
//! compiled router; it allocates nothing.
//!
//! A condition that cannot be evaluated (a missing metadata key, a type error) counts as false,
//! and the route counts the error ([`CompiledRoute::condition_errors`]);
//! [`CompiledRouter::explain`] says, route by route, what each condition gave and why.
//!
//! ```
//! use abroute::{RequestContext, RouterConfig};
//!
//! let config = RouterConfig::from_json(r#"{ "name": "demo", "defaultRoute": {
//!     "route_id": "default", "variants": [
//!     { "variant": { "variant_id": "a", "model_id": "openai/gpt-4o-mini" }, "weight": 1 },
//!     { "variant": { "variant_id": "b", "model_id": "openai/gpt-4.1" }, "weight": 3 } ] } }"#)
//!     .unwrap();
//! let router = config.compile().unwrap();
//! let d = router.decide(&RequestContext::new().with_random(u64::MAX)).unwrap();
//! assert_eq!(d.route_id(), "default");
//! assert_eq!(d.variant_id(), "b");
//! ```

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use rustc_hash::FxHashMap;

use crate::catalog::{Catalog, Needs};
use crate::condition::{Condition, ConditionOutcome, Variables};
use crate::config::{ModelSelection, Route, RouterConfig};
use crate::context::RequestContext;
use crate::error::{ConfigError, ConfigErrorKind, ConfigErrors, JsonPath, RouteError};
use crate::fallback::{Fallbacks, RandomFallbacks};
use crate::health::{Health, HealthRegistry, Outcome, provider_of};
use crate::plan::AttemptPlan;
use crate::select::{ModelMetrics, order_models, selection_errors};
use crate::stats::{StatsRegistry, VariantStats};
use crate::sticky::{MAX_STICKY_VARIANTS, StickyTable, key_hash_with, salt_seed};
use crate::table::{AliasTable, WeightError};
use crate::validate::{ValidationOptions, validate_and_compile_conditions};

/// Routes with more variants than this keep no per-variant counters (they would cost 2 KiB per
/// variant); decision records still name every variant.
pub const MAX_STATS_VARIANTS: usize = 4096;

/// A model a variant may call, with the health of the model and of its provider.
#[derive(Debug, Clone)]
pub struct ModelTarget {
    id: Arc<str>,
    health: Arc<Health>,
    provider: Option<Arc<Health>>,
}

impl ModelTarget {
    /// The model id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The model's health.
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// The provider's health (`openai` for `openai/gpt-4.1`), if the id names a provider.
    pub fn provider_health(&self) -> Option<&Health> {
        self.provider.as_deref()
    }

    /// Whether a request may be sent to this model at `now`: the provider is not ejected and the
    /// model is available (healthy, or this caller holds its half-open probe).
    #[inline]
    pub fn is_available(&self, now: Duration) -> bool {
        !self.provider.as_ref().is_some_and(|p| p.is_ejected(now)) && self.health.is_available(now)
    }

    /// Reports an outcome to the model's and the provider's health.
    pub fn report(&self, outcome: Outcome, now: Duration) {
        self.health.report(outcome, now);
        if let Some(p) = &self.provider {
            p.report(outcome, now);
        }
    }
}

/// The shared state compiled routers link to: health by model and provider, counters by
/// variant, and sticky tables by content.
#[derive(Debug)]
pub(crate) struct Registries {
    pub(crate) health: HealthRegistry,
    pub(crate) stats: StatsRegistry,
    pub(crate) sticky: StickyCache,
    /// Model facts, for `auto`, bare model names, sorting and capability routing.
    pub(crate) catalog: Arc<Catalog>,
    /// Observed latency and throughput, for latency and throughput sorting.
    pub(crate) metrics: Arc<ModelMetrics>,
    /// Whether requests that declare needs skip variants whose models cannot serve them.
    pub(crate) capability_routing: bool,
}

impl Default for Registries {
    fn default() -> Self {
        Registries {
            health: HealthRegistry::default(),
            stats: StatsRegistry::default(),
            sticky: StickyCache::default(),
            catalog: Catalog::default_openai_shared(),
            metrics: Arc::new(ModelMetrics::new()),
            capability_routing: false,
        }
    }
}

/// What a sticky table is built from: the salt, and every variant's id and weight in order.
type StickyKey = (Box<[u8]>, Box<[(Box<str>, u32)]>);

/// Sticky tables by what they were built from. A table is kept while some loaded router uses
/// it (a weak reference) and, beyond that, while it is among the [`RECENT_STICKY_TABLES`] most
/// recently built (a strong one): an unchanged route reuses its table across config swaps, and
/// a config flipped back and forth does not rebuild on every flip.
#[derive(Debug, Default)]
pub(crate) struct StickyCache {
    inner: std::sync::Mutex<StickyCacheInner>,
}

/// How many recently built sticky tables the cache keeps alive (at most 128 KiB each).
pub const RECENT_STICKY_TABLES: usize = 32;

#[derive(Debug, Default)]
struct StickyCacheInner {
    tables: FxHashMap<StickyKey, std::sync::Weak<StickyTable>>,
    recent: std::collections::VecDeque<Arc<StickyTable>>,
}

impl StickyCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, StickyCacheInner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn get(&self, key: &StickyKey) -> Option<Arc<StickyTable>> {
        self.lock()
            .tables
            .get(key)
            .and_then(std::sync::Weak::upgrade)
    }

    fn insert(&self, key: StickyKey, table: &Arc<StickyTable>) {
        let mut inner = self.lock();
        inner.recent.push_back(Arc::clone(table));
        if inner.recent.len() > RECENT_STICKY_TABLES {
            inner.recent.pop_front();
        }
        inner.tables.retain(|_, w| w.strong_count() > 0);
        inner.tables.insert(key, Arc::downgrade(table));
    }
}

/// One variant of a compiled route.
#[derive(Debug, Clone)]
pub struct CompiledVariant {
    id: Box<str>,
    weight: u32,
    /// Never empty: validation requires a non-empty `model_id`, which is the first target.
    targets: Targets,
    stats: Option<Arc<VariantStats>>,
}

impl CompiledVariant {
    /// The `variant_id`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The `model_id` (the first of [`targets`](Self::targets)).
    pub fn model_id(&self) -> &str {
        self.targets().first().map_or("", |t| &t.id)
    }

    /// The configured weight.
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// The models to try for this variant: `model_id`, then `model_selection.models` in order,
    /// without duplicates.
    pub fn targets(&self) -> &[ModelTarget] {
        match &self.targets {
            Targets::One(t) => std::slice::from_ref(t),
            Targets::Many(ts) => ts,
        }
    }

    /// Whether some model of this variant can serve a request with `needs`.
    pub fn can_serve(&self, catalog: &Catalog, needs: &Needs) -> bool {
        self.targets()
            .iter()
            .any(|t| catalog.can_serve(t.id(), needs).is_ok())
    }

    /// The variant's counters (`None` in routes past [`MAX_STATS_VARIANTS`]).
    pub fn stats(&self) -> Option<&VariantStats> {
        self.stats.as_deref()
    }
}

/// A route with its condition, its variants, and their alias and sticky tables.
#[derive(Debug)]
pub struct CompiledRoute {
    id: Box<str>,
    condition: Option<Condition>,
    /// How many evaluations of the condition ended in an error (and so counted as false).
    condition_errors: AtomicU64,
    variants: Box<[CompiledVariant]>,
    table: AliasTable,
    total_weight: u64,
    across_variants: bool,
    /// The sticky salt: the route's `salt`, or the router name, a NUL byte and the route_id.
    salt: Box<[u8]>,
    /// XXH3-64 of the salt: the seed of sticky key hashes.
    salt_seed: u64,
    /// Built on first need (or by [`CompiledRouter::prepare`]); `None` past
    /// [`MAX_STICKY_VARIANTS`], where sticky keys are hashed into the alias table instead.
    sticky: OnceLock<Option<Arc<StickyTable>>>,
}

/// A variant's targets: most variants have exactly one model, kept inline (no allocation).
#[derive(Debug, Clone)]
enum Targets {
    One(ModelTarget),
    Many(Box<[ModelTarget]>),
}

/// Collects a variant's targets without allocating until a second one arrives.
#[derive(Default)]
struct TargetList {
    first: Option<ModelTarget>,
    more: Vec<ModelTarget>,
}

impl TargetList {
    fn contains(&self, id: &str) -> bool {
        self.first.iter().chain(&self.more).any(|t| *t.id == *id)
    }

    fn push(&mut self, t: ModelTarget) {
        if self.first.is_none() {
            self.first = Some(t);
        } else {
            self.more.push(t);
        }
    }

    fn finish(self) -> Targets {
        match self.first {
            Some(only) if self.more.is_empty() => Targets::One(only),
            Some(first) => {
                let mut all = Vec::with_capacity(1 + self.more.len());
                all.push(first);
                all.extend(self.more);
                Targets::Many(all.into_boxed_slice())
            }
            None => Targets::Many(Box::new([])),
        }
    }
}

/// Per-compile cache of model targets by model id, so that a model named by many variants
/// costs one registry lookup and one allocation; the keys borrow from the config.
#[derive(Default)]
pub(crate) struct TargetCache<'c> {
    targets: FxHashMap<&'c str, ModelTarget>,
    providers: FxHashMap<&'c str, Arc<Health>>,
}

/// The ordered candidates of a variant that needs the catalog: `auto`, a bare model name, or a
/// `model_selection` with sort keys (see [`order_models`]). Empty for a plain
/// `provider/model` with unsorted fallbacks (the common case, which allocates nothing here), and
/// for a bare name the catalog does not know, which is then called as written.
fn selected_models(v: &crate::config::Variant, registries: &Registries) -> Vec<String> {
    let sorted = v
        .model_selection
        .as_ref()
        .is_some_and(|s| !s.sort.is_empty());
    if !(v.model_id == "auto" || !v.model_id.contains('/') || sorted) {
        return Vec::new();
    }
    let default = ModelSelection::default();
    let selection = v.model_selection.as_ref().unwrap_or(&default);
    order_models(
        &v.model_id,
        selection,
        &registries.catalog,
        &registries.metrics,
    )
}

impl<'c> TargetCache<'c> {
    /// A target for a model name that does not borrow from the config (one the catalog chose).
    fn owned_target(&mut self, model: &str, registries: &Registries) -> ModelTarget {
        if let Some(t) = self.targets.get(model) {
            return t.clone();
        }
        ModelTarget {
            id: model.into(),
            health: registries.health.model(model),
            provider: provider_of(model).map(|p| registries.health.provider(p)),
        }
    }

    fn target(&mut self, model: &'c str, registries: &Registries) -> ModelTarget {
        if let Some(t) = self.targets.get(model) {
            return t.clone();
        }
        let provider = provider_of(model).map(|p| {
            Arc::clone(
                self.providers
                    .entry(p)
                    .or_insert_with(|| registries.health.provider(p)),
            )
        });
        let target = ModelTarget {
            id: model.into(),
            health: registries.health.model(model),
            provider,
        };
        self.targets.insert(model, target.clone());
        target
    }
}

impl CompiledRoute {
    fn compile<'c>(
        router: &str,
        route: &'c Route,
        condition: Option<Condition>,
        path: &JsonPath,
        registries: &Registries,
        cache: &mut TargetCache<'c>,
    ) -> Result<Self, ConfigError> {
        let weights: Vec<u32> = route.variants.iter().map(|v| v.weight).collect();
        let table = AliasTable::new(&weights).map_err(|e| {
            let kind = match e {
                WeightError::Empty => ConfigErrorKind::NoVariants,
                WeightError::AllZero => ConfigErrorKind::AllWeightsZero,
                WeightError::TooMany { len } => ConfigErrorKind::TooMany {
                    what: "variants",
                    count: len,
                    max: crate::limits::MAX_VARIANTS,
                },
            };
            ConfigError::new(path.key("variants"), kind)
        })?;
        let with_stats = route.variants.len() <= MAX_STATS_VARIANTS;
        let variants = route
            .variants
            .iter()
            .map(|wv| {
                let v = &wv.variant;
                let mut targets = TargetList::default();
                let ordered = selected_models(v, registries);
                if ordered.is_empty() {
                    let fallbacks = v.model_selection.iter().flat_map(|m| m.models.iter());
                    for model in std::iter::once(&v.model_id).chain(fallbacks) {
                        if model.is_empty() || targets.contains(model) {
                            continue;
                        }
                        targets.push(cache.target(model, registries));
                    }
                } else {
                    for model in &ordered {
                        if !targets.contains(model) {
                            targets.push(cache.owned_target(model, registries));
                        }
                    }
                }
                CompiledVariant {
                    id: v.variant_id.as_str().into(),
                    weight: wv.weight,
                    targets: targets.finish(),
                    stats: with_stats.then(|| {
                        registries
                            .stats
                            .variant(router, &route.route_id, &v.variant_id)
                    }),
                }
            })
            .collect();
        let salt: Box<[u8]> = match &route.salt {
            Some(salt) => salt.as_bytes().into(),
            // Router names never hold a NUL byte, so the first NUL ends the name unambiguously.
            None => [router.as_bytes(), &[0], route.route_id.as_bytes()]
                .concat()
                .into_boxed_slice(),
        };
        Ok(CompiledRoute {
            id: route.route_id.as_str().into(),
            condition,
            condition_errors: AtomicU64::new(0),
            variants,
            table,
            total_weight: weights.iter().map(|&w| u64::from(w)).sum(),
            across_variants: route.failover.as_ref().is_some_and(|f| f.across_variants),
            salt_seed: salt_seed(&salt),
            salt,
            sticky: OnceLock::new(),
        })
    }

    /// The route's sticky table, built on first use; `None` for routes with more than
    /// [`MAX_STICKY_VARIANTS`] variants, whose sticky keys are hashed into the alias table.
    pub fn sticky_table(&self) -> Option<&StickyTable> {
        self.sticky
            .get_or_init(|| self.build_sticky(None))
            .as_deref()
    }

    /// Builds the sticky table, or takes an identical one (same salt, ids and weights) from
    /// `cache`, so that a config swap that leaves a route's split alone costs nothing here.
    fn build_sticky(&self, cache: Option<&StickyCache>) -> Option<Arc<StickyTable>> {
        if self.variants.len() > MAX_STICKY_VARIANTS {
            return None;
        }
        let key: StickyKey = (
            self.salt.clone(),
            self.variants
                .iter()
                .map(|v| (v.id.clone(), v.weight))
                .collect(),
        );
        if let Some(table) = cache.and_then(|c| c.get(&key)) {
            return Some(table);
        }
        let variants: Vec<(&str, u32)> = self.variants.iter().map(|v| (v.id(), v.weight)).collect();
        // Validation guarantees what the table needs: unique ids, a positive sum.
        let table = Arc::new(StickyTable::new(&self.salt, &variants).ok()?);
        if let Some(c) = cache {
            c.insert(key, &table);
        }
        Some(table)
    }

    /// Capability routing: the assigned `variant` cannot serve `needs`; pick again among the
    /// variants that can, from the conditional distribution (a random request: a fresh draw
    /// over the servable weights; a sticky one: the first servable variant in the key's own
    /// fallback order). Keeps `variant` when none can (fail open). Runs only in that case.
    #[cold]
    fn repick(
        &self,
        variant: usize,
        assignment: Assignment,
        catalog: &Catalog,
        needs: &Needs,
    ) -> usize {
        let servable = |v: &CompiledVariant| v.weight > 0 && v.can_serve(catalog, needs);
        match assignment {
            Assignment::Random { draw } => {
                let total: u64 = self
                    .variants
                    .iter()
                    .filter(|v| servable(v))
                    .map(|v| u64::from(v.weight))
                    .sum();
                if total == 0 {
                    return variant;
                }
                let x = crate::random::mix64(draw ^ 0x6361_7061_6269_6c69); // "capabili"
                let u = ((u128::from(x) * u128::from(total)) >> 64) as u64;
                let mut acc = 0u64;
                for (i, v) in self.variants.iter().enumerate() {
                    if servable(v) {
                        acc += u64::from(v.weight);
                        if u < acc {
                            return i;
                        }
                    }
                }
                variant
            }
            Assignment::Sticky { key_hash, .. } => match self.sticky_table() {
                Some(table) => table
                    .fallbacks(&table.assign_hashed(key_hash))
                    .find(|&i| self.variants.get(i).is_some_and(servable))
                    .unwrap_or(variant),
                None => variant,
            },
            Assignment::Hashed { key_hash } => RandomFallbacks::new(self, variant, key_hash)
                .find(|(_, v)| servable(v))
                .map_or(variant, |(i, _)| i),
        }
    }

    /// The sticky salt in bytes: the route's `salt`, or `router name ‖ 0x00 ‖ route_id`.
    pub fn salt(&self) -> &[u8] {
        &self.salt
    }

    /// The compiled CEL condition; `None` for the default route.
    pub fn compiled_condition(&self) -> Option<&Condition> {
        self.condition.as_ref()
    }

    /// How many evaluations of this route's condition ended in an error (counted as false).
    pub fn condition_errors(&self) -> u64 {
        self.condition_errors.load(Ordering::Relaxed)
    }

    /// Whether the condition holds for these variables; an error counts as false (and is
    /// counted). The default route always matches.
    #[inline]
    fn matches(&self, vars: Variables<'_, '_>) -> bool {
        match &self.condition {
            None => true,
            Some(c) => match c.evaluate(vars) {
                Ok(b) => b,
                Err(_) => {
                    self.condition_errors.fetch_add(1, Ordering::Relaxed);
                    false
                }
            },
        }
    }

    /// Picks the variant for `ctx` in this route: sticky when the request has a key, random
    /// otherwise.
    #[inline]
    fn pick(&self, ctx: &RequestContext<'_>) -> (usize, Assignment) {
        match ctx.user() {
            Some(user) => match self.sticky_table() {
                Some(table) => {
                    let a = table.assign(user.as_bytes());
                    (
                        a.variant(),
                        Assignment::Sticky {
                            key_hash: a.key_hash(),
                            bucket: a.bucket(),
                        },
                    )
                }
                None => {
                    let key_hash = key_hash_with(self.salt_seed, user.as_bytes());
                    (
                        self.table.index_for(key_hash),
                        Assignment::Hashed { key_hash },
                    )
                }
            },
            None => {
                let draw = ctx.draw();
                (self.table.index_for(draw), Assignment::Random { draw })
            }
        }
    }

    /// Whether failover continues to the route's other variants (`failover.across_variants`).
    pub fn across_variants(&self) -> bool {
        self.across_variants
    }

    /// The `route_id`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The CEL condition's source; `None` for the default route.
    pub fn condition(&self) -> Option<&str> {
        self.condition.as_ref().map(Condition::source)
    }

    /// The variants in configured order.
    pub fn variants(&self) -> &[CompiledVariant] {
        &self.variants
    }

    /// The sampler over [`variants`](Self::variants).
    pub fn table(&self) -> &AliasTable {
        &self.table
    }

    /// The sum of the variants' weights (positive).
    pub fn total_weight(&self) -> u64 {
        self.total_weight
    }

    /// The share of traffic variant `index` is configured to get: `weight / total`.
    pub fn share(&self, index: usize) -> f64 {
        self.variants
            .get(index)
            .map_or(0.0, |v| f64::from(v.weight) / self.total_weight as f64)
    }
}

/// A validated router, compiled for O(1) decisions. Immutable; share it behind an `Arc`.
#[derive(Debug)]
pub struct CompiledRouter {
    name: Box<str>,
    version: u64,
    /// Present when capability routing is on: the catalog requests' needs are checked against.
    catalog: Option<Arc<Catalog>>,
    /// Where successful attempts' latency goes, for latency and throughput sorting.
    metrics: Arc<ModelMetrics>,
    routes: Box<[CompiledRoute]>,
    default_route: Option<CompiledRoute>,
}

impl RouterConfig {
    /// Validates with default options and compiles.
    ///
    /// # Errors
    ///
    /// Every validation problem at once (see [`crate::validate::validate`]).
    pub fn compile(&self) -> Result<CompiledRouter, ConfigErrors> {
        self.compile_with(&ValidationOptions::default())
    }

    /// Validates with `options` and compiles.
    ///
    /// # Errors
    ///
    /// Every validation problem at once.
    pub fn compile_with(
        &self,
        options: &ValidationOptions,
    ) -> Result<CompiledRouter, ConfigErrors> {
        self.compile_in(options, &Registries::default())
    }

    /// Validates and compiles, linking models and variants to the engine's shared state.
    pub(crate) fn compile_in(
        &self,
        options: &ValidationOptions,
        registries: &Registries,
    ) -> Result<CompiledRouter, ConfigErrors> {
        let mut conditions = validate_and_compile_conditions(self, options)?.into_iter();
        if let Some(errors) = ConfigErrors::from_vec(self.selection_errors(&registries.catalog)) {
            return Err(errors);
        }
        let mut cache = TargetCache::default();
        let root = JsonPath::root();
        let mut errors = Vec::new();
        let mut routes = Vec::with_capacity(self.routes.len());
        for (i, item) in self.routes.iter().enumerate() {
            // Validation compiled one condition per conditional route, in order.
            let condition = conditions.next();
            let path = root.key("routes").index(i).key("route");
            match CompiledRoute::compile(
                &self.name,
                &item.route,
                condition,
                &path,
                registries,
                &mut cache,
            ) {
                Ok(r) => routes.push(r),
                Err(e) => errors.push(e),
            }
        }
        let default_route = match &self.default_route {
            Some(r) => match CompiledRoute::compile(
                &self.name,
                r,
                None,
                &root.key("defaultRoute"),
                registries,
                &mut cache,
            ) {
                Ok(r) => Some(r),
                Err(e) => {
                    errors.push(e);
                    None
                }
            },
            None => None,
        };
        if let Some(errors) = ConfigErrors::from_vec(errors) {
            return Err(errors);
        }
        Ok(CompiledRouter {
            name: self.name.as_str().into(),
            version: 0,
            catalog: registries
                .capability_routing
                .then(|| Arc::clone(&registries.catalog)),
            metrics: Arc::clone(&registries.metrics),
            routes: routes.into_boxed_slice(),
            default_route,
        })
    }
}

impl RouterConfig {
    /// Every problem of the `auto` variants' model selections against `catalog`, with paths.
    fn selection_errors(&self, catalog: &Catalog) -> Vec<ConfigError> {
        let root = JsonPath::root();
        let conditional = self
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| (&r.route, root.key("routes").index(i).key("route")));
        let routes = conditional.chain(
            self.default_route
                .iter()
                .map(|r| (r, root.key("defaultRoute"))),
        );
        let mut errors = Vec::new();
        let default = ModelSelection::default();
        for (route, path) in routes {
            for (j, wv) in route.variants.iter().enumerate() {
                if wv.variant.model_id != "auto" {
                    continue;
                }
                let selection = wv.variant.model_selection.as_ref().unwrap_or(&default);
                let vpath = path.key("variants").index(j).key("variant");
                for e in selection_errors("auto", selection, catalog) {
                    errors.push(ConfigError::new(
                        e.path.prefixed(&vpath),
                        ConfigErrorKind::Selection {
                            message: e.kind.to_string(),
                        },
                    ));
                }
            }
        }
        errors
    }
}

impl CompiledRouter {
    /// The router's name (bare, without `routers/`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The config version this router was compiled at: 0 when compiled by hand, the engine's
    /// version of the change that loaded it otherwise.
    pub fn version(&self) -> u64 {
        self.version
    }

    pub(crate) fn set_version(&mut self, version: u64) {
        self.version = version;
    }

    /// The conditional routes, in order.
    pub fn conditional_routes(&self) -> &[CompiledRoute] {
        &self.routes
    }

    /// The default route, if configured.
    pub fn default_route(&self) -> Option<&CompiledRoute> {
        self.default_route.as_ref()
    }

    /// Every route: conditional routes in order, then the default route.
    pub fn routes(&self) -> impl Iterator<Item = &CompiledRoute> {
        self.routes.iter().chain(self.default_route.as_ref())
    }

    /// Builds everything a request could otherwise build lazily (the sticky tables), so that no
    /// request pays for it. The engine does this before publishing a router.
    pub fn prepare(&self) {
        for route in self.routes() {
            let _ = route.sticky_table();
        }
    }

    /// [`prepare`](Self::prepare), reusing identical sticky tables from the engine's cache.
    pub(crate) fn prepare_with(&self, registries: &Registries) {
        for route in self.routes() {
            let _ = route
                .sticky
                .get_or_init(|| route.build_sticky(Some(&registries.sticky)));
        }
    }

    /// Decides where a request goes: the first conditional route whose condition holds, else
    /// the default route; then the sticky or random variant. Allocates nothing.
    ///
    /// # Errors
    ///
    /// [`RouteError::NoRouteMatched`] when no condition holds and there is no default route.
    #[inline]
    pub fn decide(&self, ctx: &RequestContext<'_>) -> Result<Decision<'_>, RouteError> {
        let route = if self.routes.is_empty() {
            self.default_route.as_ref()
        } else {
            let vars = Variables::new(ctx);
            self.routes
                .iter()
                .find(|r| r.matches(vars))
                .or(self.default_route.as_ref())
        };
        let Some(route) = route else {
            return Err(RouteError::NoRouteMatched);
        };
        Ok(self.decision(route, ctx))
    }

    #[inline]
    fn decision<'a>(&'a self, route: &'a CompiledRoute, ctx: &RequestContext<'_>) -> Decision<'a> {
        let (mut variant, assignment) = route.pick(ctx);
        let mut needs = None;
        if let (Some(catalog), Some(n)) = (&self.catalog, ctx.needs())
            && !n.is_empty()
        {
            needs = Some(*n);
            if !route.variants[variant].can_serve(catalog, n) {
                variant = route.repick(variant, assignment, catalog, n);
            }
        }
        if let Some(stats) = &route.variants[variant].stats {
            stats.record_request();
        }
        Decision {
            router: self,
            route,
            variant: variant as u32,
            assignment,
            needs,
        }
    }

    /// Whether any condition mentions `messages`: a host can skip parsing a request's messages
    /// for routers that never read them. Conservative (a textual check of the sources).
    pub fn uses_messages(&self) -> bool {
        self.routes
            .iter()
            .filter_map(CompiledRoute::condition)
            .any(|c| c.contains("messages"))
    }

    /// The observed latency and throughput store this router reports to.
    pub fn metrics(&self) -> &ModelMetrics {
        &self.metrics
    }

    /// The catalog requests' needs are checked against, when capability routing is on.
    pub fn capability_catalog(&self) -> Option<&Catalog> {
        self.catalog.as_deref()
    }

    /// Decides like [`decide`](Self::decide), and says why: for each conditional route in
    /// order, whether its condition was true, false or an error (and which), up to the one that
    /// matched. For debugging and the CLI's `explain`; it allocates.
    pub fn explain<'a>(&'a self, ctx: &RequestContext<'_>) -> Explanation<'a> {
        let vars = Variables::new(ctx);
        let mut conditions = Vec::new();
        let mut chosen = None;
        for route in self.routes.iter() {
            let outcome = match &route.condition {
                Some(c) => c.explain(vars),
                None => ConditionOutcome::True,
            };
            let matched = outcome.matched();
            conditions.push(ConditionExplanation {
                route_id: route.id(),
                condition: route.condition().unwrap_or(""),
                outcome: outcome.to_string(),
                matched,
            });
            if matched {
                chosen = Some(route);
                break;
            }
        }
        let chosen = chosen.or(self.default_route.as_ref());
        Explanation {
            conditions,
            decision: match chosen {
                Some(route) => Ok(self.decision(route, ctx)),
                None => Err(RouteError::NoRouteMatched),
            },
        }
    }
}

/// One conditional route in an [`Explanation`].
#[derive(Debug, Clone)]
pub struct ConditionExplanation<'a> {
    /// The route's id.
    pub route_id: &'a str,
    /// The CEL source.
    pub condition: &'a str,
    /// `true`, `false`, or `error (counted as false): <why>`.
    pub outcome: String,
    /// Whether the route was taken.
    pub matched: bool,
}

/// Why a request went where it went: see [`CompiledRouter::explain`].
#[derive(Debug)]
pub struct Explanation<'a> {
    /// The conditional routes evaluated, in order, up to the first that matched.
    pub conditions: Vec<ConditionExplanation<'a>>,
    /// The decision (or why there is none).
    pub decision: Result<Decision<'a>, RouteError>,
}

impl fmt::Display for Explanation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in &self.conditions {
            writeln!(f, "route {:?}: {} → {}", c.route_id, c.condition, c.outcome)?;
        }
        match &self.decision {
            Ok(d) => write!(
                f,
                "decision: route {:?}, variant {:?}, model {:?} ({})",
                d.route_id(),
                d.variant_id(),
                d.model_id(),
                d.assignment()
            ),
            Err(e) => write!(f, "decision: {e}"),
        }
    }
}

/// How a decision chose its variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Assignment {
    /// A weighted random pick from this uniform 64-bit value.
    Random {
        /// The value given to [`AliasTable::index_for`].
        draw: u64,
    },
    /// A sticky assignment: the request's key, hashed, looked up in the route's sticky table.
    Sticky {
        /// XXH3-64 of the key, seeded with the route's salt seed.
        key_hash: u64,
        /// The sticky table's slot the key fell in.
        bucket: u32,
    },
    /// A sticky key in a route too large for a sticky table (more than
    /// [`MAX_STICKY_VARIANTS`] variants): the key's hash is given to the alias table, so the key
    /// still always gets the same variant, but a change of weights moves more keys.
    Hashed {
        /// XXH3-64 of the key, seeded with the route's salt seed.
        key_hash: u64,
    },
}

impl fmt::Display for Assignment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Assignment::Random { draw } => write!(f, "random, draw {draw:016x}"),
            Assignment::Sticky { key_hash, bucket } => {
                write!(f, "sticky, key hash {key_hash:016x}, bucket {bucket}")
            }
            Assignment::Hashed { key_hash } => write!(f, "hashed, key hash {key_hash:016x}"),
        }
    }
}

/// Where one request goes: router, route, variant and model. Borrows from the snapshot.
#[derive(Clone, Copy)]
pub struct Decision<'a> {
    router: &'a CompiledRouter,
    route: &'a CompiledRoute,
    variant: u32,
    assignment: Assignment,
    /// The request's needs, when capability routing checked them.
    needs: Option<Needs>,
}

impl fmt::Debug for Decision<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decision")
            .field("router", &self.router())
            .field("route", &self.route_id())
            .field("variant", &self.variant_id())
            .field("model", &self.model_id())
            .field("version", &self.version())
            .field("assignment", &self.assignment)
            .finish()
    }
}

impl<'a> Decision<'a> {
    /// The router's name.
    pub fn router(&self) -> &'a str {
        &self.router.name
    }

    /// The chosen route's `route_id`.
    pub fn route_id(&self) -> &'a str {
        &self.route.id
    }

    /// The chosen variant's `variant_id`.
    pub fn variant_id(&self) -> &'a str {
        &self.variant().id
    }

    /// The chosen variant's `model_id`: the model to call first.
    pub fn model_id(&self) -> &'a str {
        self.variant().model_id()
    }

    /// The chosen variant's position in its route's `variants` list.
    pub fn variant_index(&self) -> usize {
        self.variant as usize
    }

    /// The config version that produced this decision.
    pub fn version(&self) -> u64 {
        self.router.version
    }

    /// How the variant was chosen.
    pub fn assignment(&self) -> Assignment {
        self.assignment
    }

    /// The chosen route.
    pub fn route(&self) -> &'a CompiledRoute {
        self.route
    }

    /// The chosen variant.
    pub fn variant(&self) -> &'a CompiledVariant {
        // `variant` came from the route's own table, so it is in range.
        &self.route.variants[self.variant as usize]
    }

    /// The other variants of the chosen route, in the order to try them when this one fails:
    /// never the chosen variant, never a weight-0 one, each other variant exactly once.
    ///
    /// For a random decision this is weighted sampling without replacement (see
    /// [`fallback`](crate::fallback)), reproducible from the decision's draw; for a sticky one,
    /// the key's own preference order, the same on every replica. Off the hot path: it
    /// allocates.
    pub fn fallbacks(&self) -> Fallbacks<'a> {
        let primary = self.variant as usize;
        match self.assignment {
            Assignment::Random { draw } => {
                Fallbacks::Random(RandomFallbacks::new(self.route, primary, draw))
            }
            Assignment::Hashed { key_hash } => {
                Fallbacks::Random(RandomFallbacks::new(self.route, primary, key_hash))
            }
            Assignment::Sticky { key_hash, .. } => match self.route.sticky_table() {
                Some(table) => {
                    Fallbacks::Sticky(self.route, table.fallbacks(&table.assign_hashed(key_hash)))
                }
                None => Fallbacks::Random(RandomFallbacks::new(self.route, primary, key_hash)),
            },
        }
    }

    /// The attempt plan at `now`: the models to try in order, with ejected ones skipped (see
    /// [`plan`](crate::plan)). `ctx` supplies the request's own fallback models.
    pub fn plan<'p>(&self, ctx: &'p RequestContext<'_>, now: Duration) -> AttemptPlan<'p>
    where
        'a: 'p,
    {
        AttemptPlan::new(*self, ctx.models(), now)
    }

    /// The request's needs, when capability routing checked them for this decision.
    pub fn needs(&self) -> Option<&Needs> {
        self.needs.as_ref()
    }

    /// Capability routing: the variants of the route that cannot serve the request, each with
    /// why (its primary model's reason). Empty when capability routing did not apply.
    pub fn skipped_variants(&self) -> Vec<(&'a CompiledVariant, crate::catalog::Unsuitable)> {
        let (Some(catalog), Some(needs)) = (self.router.catalog.as_deref(), self.needs.as_ref())
        else {
            return Vec::new();
        };
        self.route
            .variants
            .iter()
            .filter(|v| v.weight > 0 && !v.can_serve(catalog, needs))
            .filter_map(|v| {
                catalog
                    .can_serve(v.model_id(), needs)
                    .err()
                    .map(|why| (v, why))
            })
            .collect()
    }

    /// The compiled router.
    pub fn compiled_router(&self) -> &'a CompiledRouter {
        self.router
    }
}
