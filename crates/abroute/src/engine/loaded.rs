//! Loaded routers: a compiled router with the config it came from, and one slot for what a
//! host derives from them.
//!
//! A host or an adapter often keeps per-router data beside the compiled tables (the HTTP
//! adapter's rendered generation parameters and template pieces). A [`LoadedRouter`] has one
//! slot for it, filled either when the engine publishes the router, by the engine's [`Prepare`]
//! hook (set with [`EngineConfig::prepare`](crate::EngineConfig::prepare)), or lazily by the
//! first request that asks ([`LoadedRouter::extension`]). A changed router is a new
//! `LoadedRouter`, so the data never outlives its config; preparing at publication keeps its
//! cost off the request path.

use std::any::Any;
use std::fmt;
use std::sync::OnceLock;

use crate::compiled::CompiledRouter;
use crate::config::RouterConfig;

/// Derives a host's data for a router when the engine publishes it: on every
/// [`upsert`](crate::Engine::upsert), [`apply`](crate::Engine::apply),
/// [`replace_all`](crate::Engine::replace_all) and [`refresh`](crate::Engine::refresh), once per
/// router it publishes, and never on the request path. The value is kept in the router's
/// extension slot ([`LoadedRouter::prepared`], [`LoadedRouter::extension`]).
///
/// The engine calls it after compiling the router (sticky tables built, unless
/// [`lazy_sticky_tables`](crate::EngineConfig::lazy_sticky_tables) is on) and before publishing
/// it; for [`upsert`](crate::Engine::upsert), `apply` and `replace_all` that is before the
/// writer lock, so the router's [`version`](CompiledRouter::version) is not stamped yet (0): a
/// prepared value should derive from the config and the compiled tables, not the version.
///
/// Closures `Fn(&LoadedRouter) -> Box<dyn Any + Send + Sync>` implement it.
///
/// ```
/// use std::sync::Arc;
/// use abroute::{EngineConfig, LoadedRouter, RouterConfig};
///
/// /// How many variants each router has, counted once per published router.
/// struct Variants(usize);
///
/// let engine = EngineConfig::new()
///     .prepare(Arc::new(|r: &LoadedRouter| {
///         let n = r.compiled().routes().map(|route| route.variants().len()).sum();
///         Box::new(Variants(n)) as Box<dyn std::any::Any + Send + Sync>
///     }))
///     .build();
/// engine.upsert(RouterConfig::from_json(r#"{ "name": "demo", "defaultRoute": {
///     "route_id": "default", "variants": [
///     { "variant": { "variant_id": "a", "model_id": "openai/gpt-4o-mini" }, "weight": 1 },
///     { "variant": { "variant_id": "b", "model_id": "openai/gpt-4.1" }, "weight": 1 } ] } }"#)?)?;
/// let snapshot = engine.load();
/// let router = snapshot.router("demo").unwrap();
/// assert_eq!(router.prepared::<Variants>().map(|v| v.0), Some(2));
/// # Ok::<(), abroute::ConfigErrors>(())
/// ```
pub trait Prepare: Send + Sync + 'static {
    /// The data to keep with `router`.
    fn prepare(&self, router: &LoadedRouter) -> Box<dyn Any + Send + Sync>;
}

impl<F> Prepare for F
where
    F: Fn(&LoadedRouter) -> Box<dyn Any + Send + Sync> + Send + Sync + 'static,
{
    fn prepare(&self, router: &LoadedRouter) -> Box<dyn Any + Send + Sync> {
        self(router)
    }
}

impl fmt::Debug for dyn Prepare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Prepare")
    }
}

/// A loaded router: the compiled tables and the config they came from.
#[derive(Debug)]
pub struct LoadedRouter {
    compiled: CompiledRouter,
    config: RouterConfig,
    extension: Extension,
}

/// What a host derived from one loaded router (see [`LoadedRouter::extension`]).
#[derive(Default)]
struct Extension(OnceLock<Box<dyn Any + Send + Sync>>);

impl fmt::Debug for Extension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "Extension(built)"
        } else {
            "Extension(empty)"
        })
    }
}

impl LoadedRouter {
    /// The router as the engine publishes it: `preparer`, if any, fills the extension slot.
    pub(crate) fn new(
        compiled: CompiledRouter,
        config: RouterConfig,
        preparer: Option<&dyn Prepare>,
    ) -> LoadedRouter {
        let loaded = LoadedRouter {
            compiled,
            config,
            extension: Extension::default(),
        };
        if let Some(p) = preparer {
            // The slot is empty: nothing else has seen this router yet.
            let _ = loaded.extension.0.set(p.prepare(&loaded));
        }
        loaded
    }

    /// Stamps the version of the change that publishes this router.
    pub(crate) fn set_version(&mut self, version: u64) {
        self.compiled.set_version(version);
    }

    /// Data a host or adapter derives from this router's config, such as the HTTP adapter's
    /// rendered generation parameters: built by `build` on the first call, then shared by every
    /// request that loads this router (one atomic load; no lock once built). A changed router
    /// is a new `LoadedRouter`, so the data never outlives its config. When the engine's
    /// [`Prepare`] hook already filled the slot, `build` is not called and the prepared value is
    /// returned (if it is a `T`).
    ///
    /// One type per router: `None` when the slot already holds a value of another type.
    pub fn extension<T: Any + Send + Sync>(
        &self,
        build: impl FnOnce(&RouterConfig) -> T,
    ) -> Option<&T> {
        self.extension
            .0
            .get_or_init(|| Box::new(build(&self.config)))
            .downcast_ref::<T>()
    }

    /// The value the engine's [`Prepare`] hook (or an earlier
    /// [`extension`](Self::extension) call) put in the slot, if it is a `T`. Never builds:
    /// `None` when the slot is empty or holds another type. One atomic load.
    pub fn prepared<T: Any + Send + Sync>(&self) -> Option<&T> {
        self.extension.0.get()?.downcast_ref::<T>()
    }

    /// The compiled tables.
    pub fn compiled(&self) -> &CompiledRouter {
        &self.compiled
    }

    /// The config as accepted (name normalized).
    pub fn config(&self) -> &RouterConfig {
        &self.config
    }
}
