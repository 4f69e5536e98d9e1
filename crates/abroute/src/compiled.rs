//! Compiled routers: the immutable tables a request is decided from.
//!
//! This module holds the types and what they say about themselves: a [`CompiledRouter`] is its
//! conditional routes in order and its default route; a [`CompiledRoute`] is its compiled CEL
//! condition, its [`CompiledVariant`]s with their [`AliasTable`] and (built once, on first need)
//! [`StickyTable`]; a variant is its weight, the [`ModelTarget`]s to try in order (each linked to
//! its model's and provider's [`Health`]), its counters and what it sends besides the model (its
//! effective message templates and generation config). How they are built from a
//! [`RouterConfig`](crate::RouterConfig) is [`compile`](crate::compile)'s job, and how a request
//! is decided from them [`decision`](crate::decision)'s; both sit above this module.
//!
//! ```
//! use abroute::RouterConfig;
//!
//! let config = RouterConfig::from_json(r#"{ "name": "demo", "defaultRoute": {
//!     "route_id": "default", "variants": [
//!     { "variant": { "variant_id": "a", "model_id": "openai/gpt-4o-mini",
//!                    "model_selection": { "models": ["openai/gpt-4.1"] } }, "weight": 1 },
//!     { "variant": { "variant_id": "b", "model_id": "openai/gpt-4.1" }, "weight": 3 } ] } }"#)
//!     .unwrap();
//! let router = config.compile().unwrap();
//! let route = router.default_route().unwrap();
//! assert_eq!(route.total_weight(), 4);
//! assert_eq!(route.share(1), 0.75);
//! let targets: Vec<&str> = route.variants()[0].targets().iter().map(|t| t.id()).collect();
//! assert_eq!(targets, ["openai/gpt-4o-mini", "openai/gpt-4.1"]);
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use once_cell::race::OnceBox;
use std::time::Duration;

use serde_json::Value;

use crate::catalog::{Catalog, Needs};
use crate::condition::Condition;
use crate::config::MessageTemplate;
use crate::health::{Health, Outcome};
use crate::select::ModelMetrics;
use crate::stats::VariantStats;
use crate::sticky::{MAX_STICKY_VARIANTS, StickyTable};
use crate::table::AliasTable;

/// A model a variant may call, with the health of the model and of its provider.
#[derive(Debug, Clone)]
pub struct ModelTarget {
    pub(crate) id: Arc<str>,
    pub(crate) health: Arc<Health>,
    pub(crate) provider: Option<Arc<Health>>,
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

/// One variant of a compiled route.
#[derive(Debug, Clone)]
pub struct CompiledVariant {
    pub(crate) id: Box<str>,
    pub(crate) weight: u32,
    /// Never empty: validation requires a non-empty `model_id`, which is the first target.
    pub(crate) targets: Targets,
    pub(crate) stats: Option<Arc<VariantStats>>,
    /// The effective templates and generation config; `None` when there are neither. Variants
    /// without their own share the router's defaults.
    pub(crate) settings: Option<Arc<VariantSettings>>,
}

/// What a variant sends besides its model: its own `message_templates` and
/// `text_generation_config`, or else the router's `defaults`.
#[derive(Debug, Default)]
pub(crate) struct VariantSettings {
    pub(crate) templates: Option<Box<[MessageTemplate]>>,
    pub(crate) generation: Option<Value>,
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

    /// The variant's counters (`None` in routes past
    /// [`MAX_STATS_VARIANTS`](crate::compile::MAX_STATS_VARIANTS)).
    pub fn stats(&self) -> Option<&VariantStats> {
        self.stats.as_deref()
    }

    /// The effective message templates, checked and typed: the variant's own
    /// `message_templates`, or else the router's `defaults.message_templates` (the variant's
    /// list replaces the default as a whole; an empty own list means none). `None` when neither
    /// is set. [`RouterConfig::effective_message_templates`] gives the value as configured.
    ///
    /// [`RouterConfig::effective_message_templates`]: crate::RouterConfig::effective_message_templates
    pub fn message_templates(&self) -> Option<&[MessageTemplate]> {
        self.settings.as_deref()?.templates.as_deref()
    }

    /// The effective `text_generation_config`: the variant's own, or else the router's
    /// `defaults.text_generation_config`, as given (the variant's replaces the default as a
    /// whole; they are not merged). `None` when neither is set.
    pub fn generation_config(&self) -> Option<&Value> {
        self.settings.as_deref()?.generation.as_ref()
    }
}

/// A variant's targets: most variants have exactly one model, kept inline (no allocation).
#[derive(Debug, Clone)]
pub(crate) enum Targets {
    One(ModelTarget),
    Many(Box<[ModelTarget]>),
}

/// A route with its condition, its variants, and their alias and sticky tables.
#[derive(Debug)]
pub struct CompiledRoute {
    pub(crate) id: Box<str>,
    /// The route's position among its router's routes (see [`CompiledRoute::index`]).
    pub(crate) index: u32,
    pub(crate) condition: Option<Condition>,
    /// How many evaluations of the condition ended in an error (and so counted as false).
    pub(crate) condition_errors: AtomicU64,
    pub(crate) variants: Box<[CompiledVariant]>,
    pub(crate) table: AliasTable,
    pub(crate) total_weight: u64,
    pub(crate) across_variants: bool,
    /// The sticky salt: the route's `salt`, or the router name, a NUL byte and the route_id.
    pub(crate) salt: Box<[u8]>,
    /// XXH3-64 of the salt: the seed of sticky key hashes.
    pub(crate) salt_seed: u64,
    /// Built on first need (or by [`CompiledRouter::prepare`]); `None` past
    /// [`MAX_STICKY_VARIANTS`], where sticky keys are hashed into the alias table instead.
    pub(crate) sticky: OnceBox<Option<Arc<StickyTable>>>,
}

impl CompiledRoute {
    /// The route's position among its router's routes, in [`CompiledRouter::routes`] order:
    /// the conditional routes from 0, then the default route. What hosts index per-route data
    /// by (the HTTP adapter's prepared generation parameters, say).
    pub fn index(&self) -> usize {
        self.index as usize
    }

    /// The route's sticky table, built on first use; `None` for routes with more than
    /// [`MAX_STICKY_VARIANTS`] variants, whose sticky keys are hashed into the alias table.
    ///
    /// A first use builds outside any lock: callers that race each build a table (the same one)
    /// and the first stored by a compare-and-swap is kept, so no request waits on another's
    /// build or takes a lock.
    pub fn sticky_table(&self) -> Option<&StickyTable> {
        if let Some(table) = self.sticky.get() {
            return table.as_deref();
        }
        let built = self.new_sticky_table().map(Arc::new);
        self.sticky.get_or_init(|| Box::new(built)).as_deref()
    }

    /// Builds the route's sticky table from its salt, ids and weights; `None` past
    /// [`MAX_STICKY_VARIANTS`].
    pub(crate) fn new_sticky_table(&self) -> Option<StickyTable> {
        if self.variants.len() > MAX_STICKY_VARIANTS {
            return None;
        }
        let variants: Vec<(&str, u32)> = self.variants.iter().map(|v| (v.id(), v.weight)).collect();
        // Validation guarantees what the table needs: unique ids, a positive sum.
        StickyTable::new(&self.salt, &variants).ok()
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
    pub(crate) name: Box<str>,
    pub(crate) version: u64,
    /// Present when capability routing is on: the catalog requests' needs are checked against.
    pub(crate) catalog: Option<Arc<Catalog>>,
    /// Where successful attempts' latency goes, for latency and throughput sorting.
    pub(crate) metrics: Arc<ModelMetrics>,
    pub(crate) routes: Box<[CompiledRoute]>,
    pub(crate) default_route: Option<CompiledRoute>,
    /// Whether some condition mentions `messages` (found once, when compiling).
    pub(crate) uses_messages: bool,
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

    /// The route with this `route_id`, if any.
    pub fn route(&self, route_id: &str) -> Option<&CompiledRoute> {
        self.routes().find(|r| r.id() == route_id)
    }

    /// Builds everything a request could otherwise build lazily (the sticky tables), so that no
    /// request pays for it. The engine does this before publishing a router.
    pub fn prepare(&self) {
        for route in self.routes() {
            let _ = route.sticky_table();
        }
    }

    /// Whether any condition mentions `messages`: a host can skip parsing a request's messages
    /// for routers that never read them. Conservative (a textual check of the sources, made
    /// once when compiling).
    pub fn uses_messages(&self) -> bool {
        self.uses_messages
    }

    /// The observed latency and throughput store this router reports to.
    pub fn metrics(&self) -> &ModelMetrics {
        &self.metrics
    }

    /// The catalog requests' needs are checked against, when capability routing is on.
    pub fn capability_catalog(&self) -> Option<&Catalog> {
        self.catalog.as_deref()
    }
}
