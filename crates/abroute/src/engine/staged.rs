//! Routers compiled apart and published as one batch: how a host loads many routers on several
//! threads (the core itself starts none).
//!
//! [`Engine::stage`] validates, compiles and prepares one router (the [`Prepare`](super::Prepare)
//! hook included) without publishing it and without the writer lock, so a host may call it
//! from as many threads as it likes; [`Engine::replace_all_staged`] then publishes them all as
//! one snapshot, exactly as [`Engine::replace_all`] would have (the same routers, the same
//! errors for names given twice). The gateway's start uses it with `std::thread::scope`.
//!
//! ```
//! use abroute::{Engine, RouterConfig};
//!
//! let engine = Engine::new();
//! let configs: Vec<RouterConfig> = (0..4)
//!     .map(|i| {
//!         RouterConfig::from_json(&format!(
//!             r#"{{"name":"r{i}","defaultRoute":{{"route_id":"d","variants":[{{"variant":{{"variant_id":"a","model_id":"openai/gpt-4.1"}},"weight":1}}]}}}}"#
//!         ))
//!         .unwrap()
//!     })
//!     .collect();
//! let staged = std::thread::scope(|s| {
//!     let handles: Vec<_> = configs
//!         .into_iter()
//!         .map(|c| s.spawn(|| engine.stage(c)))
//!         .collect();
//!     handles.into_iter().map(|h| h.join().unwrap().unwrap()).collect::<Vec<_>>()
//! });
//! engine.replace_all_staged(staged).unwrap();
//! assert_eq!(engine.load().len(), 4);
//! ```

use std::fmt;

use rustc_hash::FxHashMap;

use super::{At, Engine, LoadedRouter};
use crate::config::RouterConfig;
use crate::error::{ConfigError, ConfigErrorKind, ConfigErrors, JsonPath};

/// A router validated, compiled and prepared by [`Engine::stage`], not yet published.
///
/// Borrows the engine that staged it; published to another engine, it is compiled again there
/// (its health and counters belong to the engine that compiled it).
pub struct StagedRouter<'e> {
    engine: &'e Engine,
    loaded: LoadedRouter,
}

impl fmt::Debug for StagedRouter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StagedRouter")
            .field("name", &self.config().name)
            .finish_non_exhaustive()
    }
}

impl StagedRouter<'_> {
    /// The config it was compiled from.
    pub fn config(&self) -> &RouterConfig {
        self.loaded.config()
    }
}

impl Engine {
    /// Validates, compiles and prepares `config` as [`upsert`](Engine::upsert) would, without
    /// publishing it: no lock is taken, so many threads may stage at once. Publish the result
    /// with [`replace_all_staged`](Engine::replace_all_staged).
    ///
    /// # Errors
    ///
    /// Every validation problem of `config`.
    pub fn stage(&self, config: RouterConfig) -> Result<StagedRouter<'_>, ConfigErrors> {
        let compiled = self.compile(&config)?;
        Ok(StagedRouter {
            engine: self,
            loaded: self.loaded(compiled, config),
        })
    }

    /// [`replace_all`](Engine::replace_all) with routers staged beforehand: all of `routers`
    /// become the engine's routers at once, as one version. Errors carry the router's index in
    /// `routers` (`[2].name`), as `replace_all`'s do.
    ///
    /// # Errors
    ///
    /// Names given twice, or a problem compiling a router staged by another engine; the engine
    /// is then unchanged.
    pub fn replace_all_staged(&self, routers: Vec<StagedRouter<'_>>) -> Result<u64, ConfigErrors> {
        self.replace_all_staged_to(routers, At::Next)
    }

    /// [`replace_all_staged`](Engine::replace_all_staged), published as `version` (see
    /// [`replace_all_at`](Engine::replace_all_at)).
    ///
    /// # Errors
    ///
    /// As `replace_all_staged`, or [`ConfigErrorKind::VersionNotAhead`].
    pub fn replace_all_staged_at(
        &self,
        routers: Vec<StagedRouter<'_>>,
        version: u64,
    ) -> Result<u64, ConfigErrors> {
        self.replace_all_staged_to(routers, At::Exactly(version))
    }

    fn replace_all_staged_to(
        &self,
        routers: Vec<StagedRouter<'_>>,
        at: At,
    ) -> Result<u64, ConfigErrors> {
        let mut errors = Vec::new();
        let mut seen: FxHashMap<&str, usize> = FxHashMap::default();
        for (i, staged) in routers.iter().enumerate() {
            let name = staged.config().name.as_str();
            if seen.insert(name, i).is_some() {
                errors.push(ConfigError::new(
                    JsonPath::root().index(i).key("name"),
                    ConfigErrorKind::DuplicateRouterName {
                        name: name.to_owned(),
                    },
                ));
            }
        }
        drop(seen);
        let mut loaded = Vec::with_capacity(routers.len());
        for (i, staged) in routers.into_iter().enumerate() {
            if std::ptr::eq(staged.engine, self) {
                loaded.push(staged.loaded);
                continue;
            }
            let config = staged.loaded.config().clone();
            match self.compile(&config) {
                Ok(compiled) => loaded.push(self.loaded(compiled, config)),
                Err(e) => errors.extend(e.prefixed(&JsonPath::root().index(i))),
            }
        }
        if let Some(errors) = ConfigErrors::from_vec(errors) {
            return Err(errors);
        }
        self.publish_all(loaded, at)
    }
}
