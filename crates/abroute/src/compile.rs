//! Compiling: a validated [`RouterConfig`] into a [`CompiledRouter`].
//!
//! [`RouterConfig::compile`] validates a config (every problem at once, see
//! [`validate`](crate::validate)), keeps the CEL conditions validation compiled, and turns every
//! route into an [`AliasTable`] and its variants into [`ModelTarget`] lists: a variant's
//! `model_id` and fallbacks, or the catalog's order for `auto`, bare model names and sorted
//! selections ([`order_models`]). It resolves what each variant sends besides its model (its own
//! `message_templates` and `text_generation_config`, else the router's `defaults`), typing the
//! templates once. Sticky tables are built on first need, or by the engine before it publishes a
//! router.
//!
//! The engine compiles against its registries: the shared state that outlives a snapshot (health
//! by model and provider, counters by variant, identical sticky tables by content, the catalog
//! and observed metrics), so that a router swapped for a new version keeps its models' health
//! and reuses what did not change.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use once_cell::race::OnceBox;

use rustc_hash::FxHashMap;

use crate::catalog::Catalog;
use crate::compiled::{
    CompiledRoute, CompiledRouter, CompiledVariant, ModelTarget, Targets, VariantSettings,
};
use crate::condition::Condition;
use crate::config::{
    GENERATION_CONFIG, MESSAGE_TEMPLATES, MessageTemplate, ModelSelection, Route, RouterConfig,
    Variant,
};
use crate::error::{ConfigError, ConfigErrorKind, ConfigErrors, JsonPath};
use crate::health::{Health, HealthRegistry, provider_of};
use crate::limits::MAX_VARIANTS;
use crate::select::{ModelMetrics, order_models, selection_errors};
use crate::stats::StatsRegistry;
use crate::sticky::{MAX_STICKY_VARIANTS, StickyTable, salt_seed};
use crate::table::{AliasTable, WeightError};
use crate::validate::{ValidationOptions, validate_and_compile_conditions};

/// Routes with more variants than this keep no per-variant counters (they would cost 2 KiB per
/// variant); decision records still name every variant.
pub const MAX_STATS_VARIANTS: usize = 4096;

/// How many recently built sticky tables the cache keeps alive (at most 128 KiB each).
pub const RECENT_STICKY_TABLES: usize = 32;

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

    /// The sticky table of `route`: an identical one (same salt, ids and weights) from the
    /// cache, so that a config swap that leaves a route's split alone costs nothing here, or
    /// else a new one, kept. `None` past [`MAX_STICKY_VARIANTS`].
    fn table_for(&self, route: &CompiledRoute) -> Option<Arc<StickyTable>> {
        if route.variants.len() > MAX_STICKY_VARIANTS {
            return None;
        }
        let key: StickyKey = (
            route.salt.clone(),
            route
                .variants
                .iter()
                .map(|v| (v.id.clone(), v.weight))
                .collect(),
        );
        if let Some(table) = self.get(&key) {
            return Some(table);
        }
        let table = Arc::new(route.new_sticky_table()?);
        self.insert(key, &table);
        Some(table)
    }
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
struct TargetCache<'c> {
    targets: FxHashMap<&'c str, ModelTarget>,
    providers: FxHashMap<&'c str, Arc<Health>>,
}

/// The ordered candidates of a variant that needs the catalog: `auto`, a bare model name, or a
/// `model_selection` with sort keys (see [`order_models`]). Empty for a plain
/// `provider/model` with unsorted fallbacks (the common case, which allocates nothing here), and
/// for a bare name the catalog does not know, which is then called as written.
fn selected_models(v: &Variant, registries: &Registries) -> Vec<String> {
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

    /// The targets of variant `v`: `model_id`, then `model_selection.models`, without
    /// duplicates; or the catalog's order when the variant needs it.
    fn variant_targets(&mut self, v: &'c Variant, registries: &Registries) -> Targets {
        let mut targets = TargetList::default();
        let ordered = selected_models(v, registries);
        if ordered.is_empty() {
            let fallbacks = v.model_selection.iter().flat_map(|m| m.models.iter());
            for model in std::iter::once(&v.model_id).chain(fallbacks) {
                if model.is_empty() || targets.contains(model) {
                    continue;
                }
                targets.push(self.target(model, registries));
            }
        } else {
            for model in &ordered {
                if !targets.contains(model) {
                    targets.push(self.owned_target(model, registries));
                }
            }
        }
        targets.finish()
    }
}

/// Reads a `message_templates` value (validation accepted it: the errors, with `path`, are
/// those validation would have reported).
fn templates(
    value: &serde_json::Value,
    path: &JsonPath,
) -> Result<Box<[MessageTemplate]>, Vec<ConfigError>> {
    crate::config::message_templates(value, path).map(Vec::into_boxed_slice)
}

/// The router-wide settings (`defaults.message_templates`, `defaults.text_generation_config`),
/// shared by every variant that has neither of its own. `None` when the defaults set neither.
fn default_settings(
    config: &RouterConfig,
) -> Result<Option<Arc<VariantSettings>>, Vec<ConfigError>> {
    let templates = match config.default_member(MESSAGE_TEMPLATES) {
        Some((name, t)) => Some(templates(t, &JsonPath::root().key("defaults").key(name))?),
        None => None,
    };
    let generation = config
        .default_member(GENERATION_CONFIG)
        .map(|(_, g)| g.clone());
    Ok((templates.is_some() || generation.is_some()).then(|| {
        Arc::new(VariantSettings {
            templates,
            generation,
        })
    }))
}

/// A variant's effective settings: the defaults' (shared) when it has none of its own, else
/// its own `message_templates` and `text_generation_config`, each or else the default.
/// `path` (the variant's) is only built on error.
fn variant_settings(
    v: &Variant,
    defaults: Option<&Arc<VariantSettings>>,
    path: impl FnOnce() -> JsonPath,
) -> Result<Option<Arc<VariantSettings>>, Vec<ConfigError>> {
    if v.message_templates.is_none() && v.text_generation_config.is_none() {
        return Ok(defaults.cloned());
    }
    let templates = match &v.message_templates {
        Some(t) => Some(templates(t, &path().key("message_templates"))?),
        None => defaults.and_then(|d| d.templates.clone()),
    };
    let generation = match &v.text_generation_config {
        Some(g) => Some(g.clone()),
        None => defaults.and_then(|d| d.generation.clone()),
    };
    Ok(Some(Arc::new(VariantSettings {
        templates,
        generation,
    })))
}

/// What every route of one router is compiled with.
struct RouterScope<'c, 'r> {
    router: &'c str,
    registries: &'r Registries,
    defaults: Option<Arc<VariantSettings>>,
    targets: TargetCache<'c>,
}

impl CompiledRoute {
    fn compile<'c>(
        scope: &mut RouterScope<'c, '_>,
        route: &'c Route,
        condition: Option<Condition>,
        path: &JsonPath,
        index: usize,
    ) -> Result<Self, Vec<ConfigError>> {
        let weights: Vec<u32> = route.variants.iter().map(|v| v.weight).collect();
        let table = AliasTable::new(&weights).map_err(|e| {
            let kind = match e {
                WeightError::Empty => ConfigErrorKind::NoVariants,
                WeightError::AllZero => ConfigErrorKind::AllWeightsZero,
                WeightError::TooMany { len } => ConfigErrorKind::TooMany {
                    what: "variants",
                    count: len,
                    max: MAX_VARIANTS,
                },
            };
            vec![ConfigError::new(path.key("variants"), kind)]
        })?;
        let with_stats = route.variants.len() <= MAX_STATS_VARIANTS;
        let registries = scope.registries;
        let mut variants = Vec::with_capacity(route.variants.len());
        for (j, wv) in route.variants.iter().enumerate() {
            let v = &wv.variant;
            let settings = variant_settings(v, scope.defaults.as_ref(), || {
                path.key("variants").index(j).key("variant")
            })?;
            variants.push(CompiledVariant {
                id: v.variant_id.as_str().into(),
                weight: wv.weight,
                targets: scope.targets.variant_targets(v, registries),
                stats: with_stats.then(|| {
                    registries
                        .stats
                        .variant(scope.router, &route.route_id, &v.variant_id)
                }),
                settings,
            });
        }
        let salt: Box<[u8]> = match &route.salt {
            Some(salt) => salt.as_bytes().into(),
            // Router names never hold a NUL byte, so the first NUL ends the name unambiguously.
            None => [scope.router.as_bytes(), &[0], route.route_id.as_bytes()]
                .concat()
                .into_boxed_slice(),
        };
        Ok(CompiledRoute {
            id: route.route_id.as_str().into(),
            // At most MAX_ROUTES + 1 routes: validation refused more.
            index: u32::try_from(index).unwrap_or(u32::MAX),
            condition,
            condition_errors: AtomicU64::new(0),
            variants: variants.into_boxed_slice(),
            table,
            total_weight: weights.iter().map(|&w| u64::from(w)).sum(),
            across_variants: route.failover.as_ref().is_some_and(|f| f.across_variants),
            salt_seed: salt_seed(&salt),
            salt,
            sticky: OnceBox::new(),
        })
    }
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
        let mut errors = Vec::new();
        let defaults = default_settings(self).unwrap_or_else(|e| {
            errors.extend(e);
            None
        });
        let mut scope = RouterScope {
            router: &self.name,
            registries,
            defaults,
            targets: TargetCache::default(),
        };
        let mut routes = Vec::with_capacity(self.routes.len());
        let mut default_route = None;
        for (i, (route, path)) in self.routes_with_paths().enumerate() {
            // Validation compiled one condition per conditional route, in order.
            let conditional = i < self.routes.len();
            let condition = if conditional { conditions.next() } else { None };
            match CompiledRoute::compile(&mut scope, route, condition, &path, i) {
                Ok(r) if conditional => routes.push(r),
                Ok(r) => default_route = Some(r),
                Err(e) => errors.extend(e),
            }
        }
        if let Some(errors) = ConfigErrors::from_vec(errors) {
            return Err(errors);
        }
        let uses_messages = routes
            .iter()
            .filter_map(CompiledRoute::condition)
            .any(|c| c.contains("messages"));
        Ok(CompiledRouter {
            name: self.name.as_str().into(),
            version: 0,
            catalog: registries
                .capability_routing
                .then(|| Arc::clone(&registries.catalog)),
            metrics: Arc::clone(&registries.metrics),
            routes: routes.into_boxed_slice(),
            default_route,
            uses_messages,
        })
    }

    /// Every problem of the `auto` variants' model selections against `catalog`, with paths.
    fn selection_errors(&self, catalog: &Catalog) -> Vec<ConfigError> {
        let mut errors = Vec::new();
        let default = ModelSelection::default();
        for (route, path) in self.routes_with_paths() {
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
    /// [`prepare`](Self::prepare), reusing identical sticky tables from the engine's cache.
    pub(crate) fn prepare_with(&self, registries: &Registries) {
        for route in self.routes() {
            let _ = route
                .sticky
                .get_or_init(|| Box::new(registries.sticky.table_for(route)));
        }
    }
}
