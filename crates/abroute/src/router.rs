//! Compiled routers: the immutable tables a request is decided from.
//!
//! [`RouterConfig::compile`] validates a config and turns every route into an [`AliasTable`], so
//! that [`CompiledRouter::decide`] is a handful of loads: pick the route, draw one `u64`, look up
//! one bucket. A [`Decision`] borrows from the compiled router; it allocates nothing.
//!
//! Conditional routes are compiled and kept, but their CEL conditions are not evaluated yet:
//! a request goes to the default route, and [`Decision::unevaluated_routes`] says how many
//! conditional routes were passed over without evaluation. They are never treated as matches.
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

use std::sync::Arc;
use std::time::Duration;

use rustc_hash::FxHashMap;

use crate::config::{Route, RouterConfig};
use crate::context::RequestContext;
use crate::error::{ConfigError, ConfigErrorKind, ConfigErrors, JsonPath, RouteError};
use crate::fallback::{Fallbacks, RandomFallbacks};
use crate::health::{Health, HealthRegistry, Outcome, provider_of};
use crate::plan::AttemptPlan;
use crate::stats::{StatsRegistry, VariantStats};
use crate::table::{AliasTable, WeightError};
use crate::validate::{ValidationOptions, validate};

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

/// The shared state compiled routers link to: health by model and provider, counters by variant.
#[derive(Debug, Default)]
pub(crate) struct Registries {
    pub(crate) health: HealthRegistry,
    pub(crate) stats: StatsRegistry,
}

/// One variant of a compiled route.
#[derive(Debug, Clone)]
pub struct CompiledVariant {
    id: Box<str>,
    weight: u32,
    /// Never empty: validation requires a non-empty `model_id`, which is the first target.
    targets: Box<[ModelTarget]>,
    stats: Option<Arc<VariantStats>>,
}

impl CompiledVariant {
    /// The `variant_id`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The `model_id` (the first of [`targets`](Self::targets)).
    pub fn model_id(&self) -> &str {
        self.targets.first().map_or("", |t| &t.id)
    }

    /// The configured weight.
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// The models to try for this variant: `model_id`, then `model_selection.models` in order,
    /// without duplicates.
    pub fn targets(&self) -> &[ModelTarget] {
        &self.targets
    }

    /// The variant's counters (`None` in routes past [`MAX_STATS_VARIANTS`]).
    pub fn stats(&self) -> Option<&VariantStats> {
        self.stats.as_deref()
    }
}

/// A route with its variants and their alias table.
#[derive(Debug, Clone)]
pub struct CompiledRoute {
    id: Box<str>,
    condition: Option<Box<str>>,
    variants: Box<[CompiledVariant]>,
    table: AliasTable,
    total_weight: u64,
    across_variants: bool,
}

/// Per-compile cache of model targets by model id, so that a model named by many variants
/// costs one registry lookup and one allocation; the keys borrow from the config.
#[derive(Default)]
pub(crate) struct TargetCache<'c> {
    targets: FxHashMap<&'c str, ModelTarget>,
    providers: FxHashMap<&'c str, Arc<Health>>,
}

impl<'c> TargetCache<'c> {
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
        condition: Option<&str>,
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
                    max: crate::validate::MAX_VARIANTS,
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
                let fallbacks = v.model_selection.iter().flat_map(|m| m.models.iter());
                let mut targets: Vec<ModelTarget> = Vec::with_capacity(1);
                for model in std::iter::once(&v.model_id).chain(fallbacks) {
                    if model.is_empty() || targets.iter().any(|t| *t.id == **model) {
                        continue;
                    }
                    targets.push(cache.target(model, registries));
                }
                CompiledVariant {
                    id: v.variant_id.as_str().into(),
                    weight: wv.weight,
                    targets: targets.into_boxed_slice(),
                    stats: with_stats.then(|| {
                        registries
                            .stats
                            .variant(router, &route.route_id, &v.variant_id)
                    }),
                }
            })
            .collect();
        Ok(CompiledRoute {
            id: route.route_id.as_str().into(),
            condition: condition.map(Into::into),
            variants,
            table,
            total_weight: weights.iter().map(|&w| u64::from(w)).sum(),
            across_variants: false,
        })
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
        self.condition.as_deref()
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
#[derive(Debug, Clone)]
pub struct CompiledRouter {
    name: Box<str>,
    version: u64,
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
        validate(self, options)?;
        let mut cache = TargetCache::default();
        let root = JsonPath::root();
        let mut errors = Vec::new();
        let mut routes = Vec::with_capacity(self.routes.len());
        for (i, item) in self.routes.iter().enumerate() {
            let condition = item.condition.as_ref().map(|c| c.cel_expression.as_str());
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
            routes: routes.into_boxed_slice(),
            default_route,
        })
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

    /// Decides where a request goes. O(1); allocates nothing.
    ///
    /// Conditions are not evaluated yet: the request takes the default route.
    ///
    /// # Errors
    ///
    /// [`RouteError::NoRouteMatched`] when there is no default route.
    #[inline]
    pub fn decide(&self, ctx: &RequestContext<'_>) -> Result<Decision<'_>, RouteError> {
        let Some(route) = self.default_route.as_ref() else {
            return Err(RouteError::NoRouteMatched);
        };
        let draw = ctx.draw();
        let variant = route.table.index_for(draw);
        if let Some(stats) = &route.variants[variant].stats {
            stats.record_request();
        }
        Ok(Decision {
            router: self,
            route,
            variant: variant as u32,
            assignment: Assignment::Random { draw },
        })
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
}

/// Where one request goes: router, route, variant and model. Borrows from the snapshot.
#[derive(Debug, Clone, Copy)]
pub struct Decision<'a> {
    router: &'a CompiledRouter,
    route: &'a CompiledRoute,
    variant: u32,
    assignment: Assignment,
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
    /// [`fallback`](crate::fallback)), reproducible from the decision's draw. Off the hot path:
    /// it allocates a small bitset.
    pub fn fallbacks(&self) -> Fallbacks<'a> {
        match self.assignment {
            Assignment::Random { draw } => Fallbacks::Random(RandomFallbacks::new(
                self.route,
                self.variant as usize,
                draw,
            )),
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

    /// The compiled router.
    pub fn compiled_router(&self) -> &'a CompiledRouter {
        self.router
    }

    /// How many conditional routes were passed over because conditions are not evaluated yet.
    /// They are never treated as matches.
    pub fn unevaluated_routes(&self) -> usize {
        self.router.routes.len()
    }
}
