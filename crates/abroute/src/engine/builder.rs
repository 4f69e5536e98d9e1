//! Building an engine: [`EngineConfig`] gathers every option an [`Engine`] is made with.
//!
//! Validation rules, health thresholds, the model catalog, capability routing and the
//! publish-time [`Prepare`] hook are all fixed before the first router loads, so they are
//! settings of one builder rather than setters on a live engine. Each has a documented default;
//! [`Engine::new`], [`Engine::with_options`] and [`Engine::with_health`] are shorthands over it.
//!
//! ```
//! use abroute::{Catalog, EngineConfig, HealthConfig, ValidationOptions};
//!
//! let engine = EngineConfig::new()
//!     .validation(ValidationOptions::strict())
//!     .health(HealthConfig::default())
//!     .catalog(Catalog::default_openai())
//!     .build();
//! assert!(engine.options().require_sum_100);
//! ```

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use super::{Engine, Prepare, Snapshot};
use crate::catalog::Catalog;
use crate::compile::Registries;
use crate::health::{HealthConfig, HealthRegistry};
use crate::validate::ValidationOptions;

/// The options of an [`Engine`], set before it is built.
#[derive(Debug, Clone, Default)]
pub struct EngineConfig {
    validation: ValidationOptions,
    health: HealthConfig,
    catalog: Option<Arc<Catalog>>,
    capability_routing: bool,
    preparer: Option<Arc<dyn Prepare>>,
    lazy_sticky: bool,
}

impl EngineConfig {
    /// The defaults: default validation ([`ValidationOptions::default`]), default health
    /// thresholds, the shipped OpenAI catalog, capability routing off, no preparer.
    pub fn new() -> EngineConfig {
        EngineConfig::default()
    }

    /// Validates every change with `options`.
    pub fn validation(mut self, options: ValidationOptions) -> EngineConfig {
        self.validation = options;
        self
    }

    /// Ejects and restores models and providers with these thresholds.
    pub fn health(mut self, health: HealthConfig) -> EngineConfig {
        self.health = health;
        self
    }

    /// Uses `catalog` instead of the shipped OpenAI catalog, for `auto`, bare model names,
    /// sorting and capability routing.
    pub fn catalog(mut self, catalog: Catalog) -> EngineConfig {
        self.catalog = Some(Arc::new(catalog));
        self
    }

    /// Turns capability routing on or off (off by default): a request that declares needs
    /// ([`RequestContext::with_needs`](crate::RequestContext::with_needs)) skips variants whose
    /// models cannot serve it, the split renormalized exactly over the rest.
    pub fn capability_routing(mut self, on: bool) -> EngineConfig {
        self.capability_routing = on;
        self
    }

    /// Calls `preparer` for every router the engine publishes, before publishing it, and keeps
    /// its value in the router's extension slot ([`LoadedRouter::prepared`]).
    ///
    /// [`LoadedRouter::prepared`]: crate::LoadedRouter::prepared
    pub fn prepare(mut self, preparer: Arc<dyn Prepare>) -> EngineConfig {
        self.preparer = Some(preparer);
        self
    }

    /// Builds each route's sticky table on the first sticky request that needs it instead of
    /// before publishing (off by default). A table takes a few milliseconds to build, so with
    /// tens of thousands of routers this is most of the load time; the price is that the first
    /// sticky request of each route waits for its table once (docs/benchmarks.md has the figure).
    /// The tables are the same either way, and no request takes a lock for them (concurrent
    /// first requests of one route may each build it, and one table is kept).
    pub fn lazy_sticky_tables(mut self, on: bool) -> EngineConfig {
        self.lazy_sticky = on;
        self
    }

    /// An empty engine with these options.
    pub fn build(self) -> Engine {
        let defaults = Registries::default();
        Engine {
            current: ArcSwap::from_pointee(Snapshot::default()),
            writer: Mutex::new(()),
            options: self.validation,
            registries: Registries {
                health: HealthRegistry::new(self.health),
                catalog: self.catalog.unwrap_or(defaults.catalog),
                capability_routing: self.capability_routing,
                ..defaults
            },
            preparer: self.preparer,
            lazy_sticky: self.lazy_sticky,
        }
    }
}
