//! The engine: every compiled router in one immutable snapshot, swapped atomically.
//!
//! Readers call [`Engine::load`] and route from the [`SnapshotGuard`] it returns: one
//! `arc-swap` load (no lock, no reference-count write in the common case), one hash lookup by
//! name, one alias-table pick. Writers ([`upsert`](Engine::upsert), [`remove`](Engine::remove),
//! [`replace_all`](Engine::replace_all)) validate and compile *before* taking the writer lock,
//! then publish a new snapshot with one atomic store. A config that fails validation never
//! replaces anything: the old snapshot keeps serving, untouched. Requests that loaded the old
//! snapshot finish on it; a request never sees half of a change.
//!
//! An engine is built from an [`EngineConfig`] (validation, health thresholds, catalog,
//! capability routing, and an optional [`Prepare`] hook run for each router before it is
//! published); each published router is a [`LoadedRouter`], the compiled tables with their
//! config and one slot for what a host derives from them ([`LoadedRouter::prepared`],
//! [`LoadedRouter::extension`]).
//!
//! ```
//! use abroute::{Engine, RequestContext, RouterConfig};
//!
//! let engine = Engine::new();
//! let config = RouterConfig::from_json(r#"{ "name": "demo", "defaultRoute": {
//!     "route_id": "default", "variants": [
//!     { "variant": { "variant_id": "a", "model_id": "openai/gpt-4o-mini" }, "weight": 50 },
//!     { "variant": { "variant_id": "b", "model_id": "openai/gpt-4.1" }, "weight": 50 } ] } }"#)
//!     .unwrap();
//! let version = engine.upsert(config).unwrap();
//!
//! let snapshot = engine.load();
//! let decision = snapshot.route("demo", &RequestContext::new()).unwrap();
//! assert!(["a", "b"].contains(&decision.variant_id()));
//! assert_eq!(decision.version(), version);
//! assert!(snapshot.route("nope", &RequestContext::new()).is_err());
//! ```

mod builder;
mod loaded;
mod routers;
mod staged;

pub use builder::EngineConfig;
pub use loaded::{LoadedRouter, Prepare};
pub use staged::StagedRouter;

use routers::Routers;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::{ArcSwap, Guard};
use rustc_hash::FxHashMap;

use crate::catalog::Catalog;
use crate::compile::Registries;
use crate::compiled::CompiledRouter;
use crate::config::RouterConfig;
use crate::context::RequestContext;
use crate::decision::Decision;
use crate::error::{ConfigError, ConfigErrorKind, ConfigErrors, JsonPath, RouteError};
use crate::health::{HealthConfig, HealthRegistry, Outcome};
use crate::select::ModelMetrics;
use crate::stats::VariantStatsSnapshot;
use crate::validate::ValidationOptions;

/// Every router at one version. Immutable once published.
#[derive(Debug, Default)]
pub struct Snapshot {
    version: u64,
    routers: Routers,
}

impl Snapshot {
    /// The version of the last accepted change (0 for the empty engine).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The router called `name`, if loaded.
    #[inline]
    pub fn router(&self, name: &str) -> Option<&LoadedRouter> {
        self.routers.get(name).map(|r| &**r)
    }

    /// Decides where a request for router `name` goes. Allocates nothing on success.
    ///
    /// # Errors
    ///
    /// [`RouteError::UnknownRouter`] for a name that is not loaded,
    /// [`RouteError::NoRouteMatched`] when the router has no route for this request.
    #[inline]
    pub fn route(&self, name: &str, ctx: &RequestContext<'_>) -> Result<Decision<'_>, RouteError> {
        match self.routers.get(name) {
            Some(r) => r.compiled().decide(ctx),
            None => Err(RouteError::UnknownRouter(name.to_owned())),
        }
    }

    /// How many routers are loaded.
    pub fn len(&self) -> usize {
        self.routers.len()
    }

    /// True when no router is loaded.
    pub fn is_empty(&self) -> bool {
        self.routers.len() == 0
    }

    /// Every variant's counters in router `name`: (route_id, variant_id, counters), routes in
    /// order. Empty for an unknown router.
    pub fn stats(&self, name: &str) -> Vec<(String, String, VariantStatsSnapshot)> {
        let Some(r) = self.routers.get(name) else {
            return Vec::new();
        };
        r.compiled()
            .routes()
            .flat_map(|route| {
                route.variants().iter().filter_map(move |v| {
                    v.stats()
                        .map(|s| (route.id().to_owned(), v.id().to_owned(), s.snapshot()))
                })
            })
            .collect()
    }

    /// The names of the loaded routers, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.routers.names_after(None).collect()
    }

    /// The names of the loaded routers after `after` (all of them for `None`), sorted: a page of
    /// a listing costs the page and a binary search, not a sort of every name (the names are
    /// kept sorted in the snapshot, in chunks that snapshots share).
    pub fn names_after<'a>(&'a self, after: Option<&str>) -> impl Iterator<Item = &'a str> + 'a {
        self.routers.names_after(after)
    }
}

/// A reader's hold on the current snapshot. Decisions borrow from it.
///
/// Hold it for one request, not longer: it keeps its snapshot alive.
pub struct SnapshotGuard {
    guard: Guard<Arc<Snapshot>>,
}

impl std::ops::Deref for SnapshotGuard {
    type Target = Snapshot;
    #[inline]
    fn deref(&self) -> &Snapshot {
        &self.guard
    }
}

impl std::fmt::Debug for SnapshotGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotGuard")
            .field("version", &self.guard.version)
            .field("routers", &self.guard.routers.len())
            .finish()
    }
}

/// Puts a loaded router into a snapshot's map, stamped with the snapshot's version.
fn insert(routers: &mut Routers, version: u64, mut loaded: LoadedRouter) {
    loaded.set_version(version);
    let loaded = Arc::new(loaded);
    routers.insert(&loaded.config().name, Arc::clone(&loaded));
}

/// Whether any variant of `config` has an attempt order that observed metrics can change.
fn reads_metrics(config: &RouterConfig, catalog: &Catalog) -> bool {
    let default = crate::config::ModelSelection::default();
    config
        .all_routes()
        .flat_map(|route| &route.variants)
        .any(|wv| {
            let v = &wv.variant;
            let selection = v.model_selection.as_ref().unwrap_or(&default);
            crate::select::uses_metrics(&v.model_id, selection, catalog)
        })
}

/// One change of an [`Engine::apply`] batch.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Add the router, or replace the one with the same name.
    Upsert(RouterConfig),
    /// Remove the router with this name (bare or `routers/<name>`).
    Remove(String),
}

impl Change {
    /// The router this change is about (bare name).
    pub fn name(&self) -> &str {
        match self {
            Change::Upsert(config) => &config.name,
            Change::Remove(name) => name.strip_prefix("routers/").unwrap_or(name),
        }
    }
}

/// One change of an [`Engine::apply`] batch, compiled and prepared, ready to publish.
enum Step {
    Load(Box<LoadedRouter>),
    Remove(Change),
}

/// Holds every compiled router and swaps them atomically while requests keep flowing.
#[derive(Debug)]
pub struct Engine {
    current: ArcSwap<Snapshot>,
    /// Serializes writers so versions grow by one per change; readers never touch it.
    writer: Mutex<()>,
    options: ValidationOptions,
    /// Health and counters, keyed by model and variant ids so they outlive snapshots.
    registries: Registries,
    /// Called for every router before it is published ([`EngineConfig::prepare`]).
    preparer: Option<Arc<dyn Prepare>>,
    /// Sticky tables on first use instead of before publishing
    /// ([`EngineConfig::lazy_sticky_tables`]).
    lazy_sticky: bool,
}

impl Default for Engine {
    fn default() -> Self {
        Engine::new()
    }
}

impl Engine {
    /// An empty engine with default options (`EngineConfig::new().build()`).
    pub fn new() -> Engine {
        EngineConfig::new().build()
    }

    /// An empty engine validating every change with `options`
    /// (`EngineConfig::new().validation(options).build()`).
    pub fn with_options(options: ValidationOptions) -> Engine {
        EngineConfig::new().validation(options).build()
    }

    /// An empty engine with these validation options and health thresholds
    /// (`EngineConfig::new().validation(options).health(health).build()`).
    pub fn with_health(options: ValidationOptions, health: HealthConfig) -> Engine {
        EngineConfig::new()
            .validation(options)
            .health(health)
            .build()
    }

    /// Uses `catalog` instead of the shipped OpenAI catalog (call before loading routers; or
    /// set it with [`EngineConfig::catalog`]).
    pub fn with_catalog(mut self, catalog: Catalog) -> Engine {
        self.registries.catalog = Arc::new(catalog);
        self
    }

    /// Turns capability routing on or off (off by default; call before loading routers): a
    /// request that declares needs ([`RequestContext::with_needs`]) skips variants whose models
    /// cannot serve it, the split renormalized exactly over the rest. Or set it with
    /// [`EngineConfig::capability_routing`].
    pub fn with_capability_routing(mut self, on: bool) -> Engine {
        self.registries.capability_routing = on;
        self
    }

    /// The options every change is validated with, so that a management API or a config
    /// checker validates exactly as the engine will.
    pub fn options(&self) -> &ValidationOptions {
        &self.options
    }

    /// The model catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.registries.catalog
    }

    /// Observed latency and throughput per model, for latency and throughput sorting.
    pub fn metrics(&self) -> &ModelMetrics {
        &self.registries.metrics
    }

    /// Recompiles the loaded routers whose attempt order depends on observed metrics (a variant
    /// sorted by latency or throughput, which `auto` and bare model names are by default),
    /// keeping each router's version, so that they pick up the latest [`ModelMetrics`]. Other
    /// routers are left as they are, and when no router reads metrics nothing is published.
    /// Returns the snapshot version (grown by one when something was recompiled); decisions keep
    /// reporting their router's config version. Hosts call it every few seconds.
    pub fn refresh(&self) -> u64 {
        let catalog = &self.registries.catalog;
        let any = self
            .load()
            .routers
            .values()
            .any(|r| reads_metrics(r.config(), catalog));
        if !any {
            return self.version();
        }
        let version = self.publish(|routers, _| {
            routers.replace_where(|loaded| {
                if !reads_metrics(loaded.config(), catalog) {
                    return None;
                }
                // Each config compiled once already: it cannot fail now.
                let mut compiled = self.compile(loaded.config()).ok()?;
                // The router keeps its version; the preparer sees the new tables.
                compiled.set_version(loaded.compiled().version());
                Some(Arc::new(self.loaded(compiled, loaded.config().clone())))
            })
        });
        version.unwrap_or_else(|| self.version())
    }

    /// The health of every model and provider named by a loaded router.
    pub fn health(&self) -> &HealthRegistry {
        &self.registries.health
    }

    /// Reports an attempt's outcome for `model` by name (and its provider), at `now`.
    /// Hosts that keep the [`AttemptPlan`](crate::AttemptPlan) report through it instead.
    pub fn report(&self, model: &str, outcome: Outcome, now: Duration) {
        self.registries.health.report(model, outcome, now);
    }

    /// The current snapshot, for routing. Lock-free.
    #[inline]
    pub fn load(&self) -> SnapshotGuard {
        SnapshotGuard {
            guard: self.current.load(),
        }
    }

    /// The current snapshot as an owned `Arc`, to keep beyond one request.
    pub fn load_full(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// The version of the last accepted change.
    pub fn version(&self) -> u64 {
        self.current.load().version
    }

    /// Validates and compiles, and builds the sticky tables (unless they are lazy), all before
    /// any lock: a request never pays for building, but with lazy tables for its route's table.
    fn compile(&self, config: &RouterConfig) -> Result<CompiledRouter, ConfigErrors> {
        let compiled = config.compile_in(&self.options, &self.registries)?;
        if !self.lazy_sticky {
            compiled.prepare_with(&self.registries);
        }
        Ok(compiled)
    }

    /// The router as it will be published, with the preparer's value in its slot.
    fn loaded(&self, compiled: CompiledRouter, config: RouterConfig) -> LoadedRouter {
        LoadedRouter::new(compiled, config, self.preparer.as_deref())
    }

    /// Publishes `change` applied to the current routers, as version `current + 1`.
    fn publish(&self, change: impl FnOnce(&mut Routers, u64) -> bool) -> Option<u64> {
        self.publish_at(At::Next, change).unwrap_or_default()
    }

    /// Publishes `change` as the version `at` says; `change` is given the version its routers
    /// carry. `Err(current)` when [`At::Exactly`] is not ahead of the current version, and
    /// nothing is published then.
    fn publish_at(
        &self,
        at: At,
        change: impl FnOnce(&mut Routers, u64) -> bool,
    ) -> Result<Option<u64>, u64> {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let old = self.current.load();
        let (version, routers_at) = match at {
            At::Exactly(at) if at <= old.version => return Err(old.version),
            At::Exactly(at) => (at, at),
            At::Next => (old.version + 1, old.version + 1),
            At::Carrying(at) => (at.max(old.version + 1), at),
        };
        let mut routers = old.routers.clone();
        if !change(&mut routers, routers_at) {
            return Ok(None);
        }
        self.current.store(Arc::new(Snapshot { version, routers }));
        Ok(Some(version))
    }

    /// Adds a router or replaces the one with the same name. Returns the new version.
    ///
    /// # Errors
    ///
    /// Every validation problem; the engine is then unchanged.
    pub fn upsert(&self, config: RouterConfig) -> Result<u64, ConfigErrors> {
        let loaded = self.loaded(self.compile(&config)?, config);
        let version = self.publish(|routers, version| {
            insert(routers, version, loaded);
            true
        });
        // `publish` only declines when the change closure says so; this one never does.
        Ok(version.unwrap_or_default())
    }

    /// Removes the router `name` (bare or `routers/<name>`). True if it existed; the version
    /// grows only then.
    pub fn remove(&self, name: &str) -> bool {
        let name = name.strip_prefix("routers/").unwrap_or(name);
        self.publish(|routers, _| routers.remove(name)).is_some()
    }

    /// Applies several changes as one snapshot: every upsert is validated and compiled first,
    /// and then all of them, with every removal, are published at once, as one version. Readers
    /// see either none of the batch or all of it; a watched directory of router files or a
    /// deployment that changes two routers together never serves a mix of old and new.
    ///
    /// Errors carry the index of the change in their path (`[2].defaultRoute.variants`). A
    /// name that appears twice in one batch is an error; removing a name that is not loaded
    /// changes nothing. Returns the new version, or the current one for an empty batch (nothing
    /// is published then).
    ///
    /// # Errors
    ///
    /// Every problem in every change; the engine is then unchanged.
    pub fn apply(&self, changes: Vec<Change>) -> Result<u64, ConfigErrors> {
        if changes.is_empty() {
            return Ok(self.version());
        }
        self.apply_to(changes, At::Next)
    }

    /// [`apply`](Engine::apply), published as `version` instead of the next one: a host whose
    /// routers come from a store with revisions (a fleet's) publishes each batch at the store's
    /// revision, so every replica reports the same version for the same routers. `version`
    /// must be ahead of the engine's; an empty batch publishes the same routers as `version`.
    /// Returns `version`.
    ///
    /// # Errors
    ///
    /// Every problem in every change, or [`ConfigErrorKind::VersionNotAhead`] when `version`
    /// is not ahead of the engine's; the engine is then unchanged.
    pub fn apply_at(&self, changes: Vec<Change>, version: u64) -> Result<u64, ConfigErrors> {
        self.apply_to(changes, At::Exactly(version))
    }

    /// [`apply_at`](Engine::apply_at) for a host that also publishes changes of its own (a
    /// fleet's replica with a watched directory, or with routers re-sorted by observed
    /// metrics), which may have taken the engine's version past `version`: the batch's
    /// routers carry `version` (so decisions and etags report the store's revision on every
    /// replica), and the snapshot is published as `version` when that is ahead of the engine's,
    /// else as the next version (a snapshot's version only grows). Returns the snapshot's.
    ///
    /// # Errors
    ///
    /// Every problem in every change; the engine is then unchanged.
    pub fn apply_carrying(&self, changes: Vec<Change>, version: u64) -> Result<u64, ConfigErrors> {
        self.apply_to(changes, At::Carrying(version))
    }

    /// One batch, published as `at` says.
    fn apply_to(&self, changes: Vec<Change>, at: At) -> Result<u64, ConfigErrors> {
        let compiled = self.compile_batch(changes.iter().map(|c| match c {
            Change::Upsert(config) => (c.name(), Some(config)),
            Change::Remove(_) => (c.name(), None),
        }))?;
        // Prepared before the lock, in batch order. `compile_batch` compiles every upsert.
        let steps: Vec<Step> = changes
            .into_iter()
            .zip(compiled)
            .filter_map(|(change, compiled)| match (change, compiled) {
                (Change::Upsert(config), Some(compiled)) => {
                    Some(Step::Load(Box::new(self.loaded(compiled, config))))
                }
                (change @ Change::Remove(_), _) => Some(Step::Remove(change)),
                (Change::Upsert(_), None) => None,
            })
            .collect();
        let version = self.publish_at(at, |routers, version| {
            for step in steps {
                match step {
                    Step::Load(loaded) => insert(routers, version, *loaded),
                    Step::Remove(change) => {
                        routers.remove(change.name());
                    }
                }
            }
            true
        });
        // `publish` only declines when the change closure says so; this one never does.
        Ok(version
            .map_err(|current| not_ahead(at, current))?
            .unwrap_or_default())
    }

    /// Replaces every router at once: all of `configs` are loaded, or none is.
    ///
    /// Errors carry the index of the config in their path (`[2].defaultRoute.variants`).
    ///
    /// # Errors
    ///
    /// Every problem in every config, and duplicate names; the engine is then unchanged.
    pub fn replace_all(&self, configs: Vec<RouterConfig>) -> Result<u64, ConfigErrors> {
        self.replace_all_to(configs, At::Next)
    }

    /// [`replace_all`](Engine::replace_all), published as `version` instead of the next one (a
    /// fleet's reset: the whole state at the store's revision). `version` must be ahead of the
    /// engine's. Returns `version`.
    ///
    /// # Errors
    ///
    /// Every problem in every config, duplicate names, or
    /// [`ConfigErrorKind::VersionNotAhead`]; the engine is then unchanged.
    pub fn replace_all_at(
        &self,
        configs: Vec<RouterConfig>,
        version: u64,
    ) -> Result<u64, ConfigErrors> {
        self.replace_all_to(configs, At::Exactly(version))
    }

    /// [`replace_all_at`](Engine::replace_all_at) for a host that also publishes changes of
    /// its own: every router carries `version`, and the snapshot is published as `version`
    /// when that is ahead of the engine's, else as the next version (as
    /// [`apply_carrying`](Engine::apply_carrying)). Returns the snapshot's version.
    ///
    /// # Errors
    ///
    /// Every problem in every config, and duplicate names; the engine is then unchanged.
    pub fn replace_all_carrying(
        &self,
        configs: Vec<RouterConfig>,
        version: u64,
    ) -> Result<u64, ConfigErrors> {
        self.replace_all_to(configs, At::Carrying(version))
    }

    /// Every router replaced, published as `at` says.
    fn replace_all_to(&self, configs: Vec<RouterConfig>, at: At) -> Result<u64, ConfigErrors> {
        let compiled = self.compile_batch(configs.iter().map(|c| (c.name.as_str(), Some(c))))?;
        // Prepared before the lock. `compile_batch` compiles every config.
        let loaded: Vec<LoadedRouter> = compiled
            .into_iter()
            .zip(configs)
            .filter_map(|(compiled, config)| Some(self.loaded(compiled?, config)))
            .collect();
        self.publish_all(loaded, at)
    }

    /// Publishes `loaded` as every router, at the version `at` says.
    fn publish_all(&self, loaded: Vec<LoadedRouter>, at: At) -> Result<u64, ConfigErrors> {
        let version = self.publish_at(at, |routers, version| {
            routers.clear();
            for loaded in loaded {
                insert(routers, version, loaded);
            }
            true
        });
        // `publish` only declines when the change closure says so; this one never does.
        Ok(version
            .map_err(|current| not_ahead(at, current))?
            .unwrap_or_default())
    }

    /// Validates and compiles a batch of changes, each a router name and the config to load
    /// under it (`None` for a removal): one compiled router per config, or every problem,
    /// each prefixed with its change's index, and names that appear twice.
    fn compile_batch<'a>(
        &self,
        batch: impl Iterator<Item = (&'a str, Option<&'a RouterConfig>)>,
    ) -> Result<Vec<Option<CompiledRouter>>, ConfigErrors> {
        let mut errors = Vec::new();
        let mut seen: FxHashMap<&str, usize> = FxHashMap::default();
        let mut compiled = Vec::with_capacity(batch.size_hint().0);
        for (i, (name, config)) in batch.enumerate() {
            let prefix = JsonPath::root().index(i);
            if seen.insert(name, i).is_some() {
                errors.push(ConfigError::new(
                    prefix.key("name"),
                    ConfigErrorKind::DuplicateRouterName {
                        name: name.to_owned(),
                    },
                ));
            }
            match config.map(|c| self.compile(c)) {
                Some(Ok(c)) => compiled.push(Some(c)),
                Some(Err(e)) => errors.extend(e.prefixed(&prefix)),
                None => compiled.push(None),
            }
        }
        match ConfigErrors::from_vec(errors) {
            Some(errors) => Err(errors),
            None => Ok(compiled),
        }
    }
}

/// The version a publication takes.
#[derive(Debug, Clone, Copy)]
pub(super) enum At {
    /// The next one, for the snapshot and the routers changed.
    Next,
    /// This one, for both; it must be ahead of the current version.
    Exactly(u64),
    /// The routers changed carry this one; the snapshot takes it when it is ahead, else the
    /// next one.
    Carrying(u64),
}

impl At {
    /// The version asked for, if any.
    fn asked(self) -> Option<u64> {
        match self {
            At::Next => None,
            At::Exactly(v) | At::Carrying(v) => Some(v),
        }
    }
}

/// The error of a batch asked to publish at `at`, not ahead of `current`.
fn not_ahead(at: At, current: u64) -> ConfigErrors {
    let at = at.asked();
    let kind = ConfigErrorKind::VersionNotAhead {
        version: at.unwrap_or_default(),
        current,
    };
    ConfigError::new(JsonPath::root(), kind).into()
}
