//! What the management API asks of its host: may this router change, and make this change.
//!
//! The API validates every change in full, then hands it to the host as one
//! [`RouterChange`] with a compare-and-set [`Expect`]ation. The host decides where it goes:
//! a store first and then the engine (the gateway: its state file or the fleet's database, and
//! its one task that writes the engine), or straight into the engine ([`EngineHost`], for hosts
//! without persistence and for tests). The API never writes the engine itself, so a host that
//! serializes its writes (one writer task, a store's transaction) keeps that guarantee for the
//! API's changes too.
//!
//! The expectation makes a create, an update and a delete safe under concurrent writers
//! without a lock held across the commit: create expects the router [`Expect::Absent`], update
//! and delete expect the version they read ([`Expect::Version`]). A host checks it where it
//! applies the change (atomically with it) and answers [`CommitError::Conflict`] with the
//! router's current version when it fails; the API then answers 409 for a create, 404 for a
//! router deleted meanwhile, and re-reads and retries an update, so no update is lost.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use abroute::{ConfigErrors, Engine, RouterConfig, Snapshot};

/// What the router must be for a change to apply: the compare of a compare-and-set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Whatever it is (or is not).
    Any,
    /// The router must not exist (a create).
    Absent,
    /// The router must exist at this config version ([`abroute::CompiledRouter::version`]):
    /// an update or delete of what the API read.
    Version(u64),
}

impl Expect {
    /// Whether a router at `current` (`None`: absent) meets the expectation.
    pub fn holds(self, current: Option<u64>) -> bool {
        match self {
            Expect::Any => true,
            Expect::Absent => current.is_none(),
            Expect::Version(v) => current == Some(v),
        }
    }
}

/// A validated change for the host to make durable and live.
#[derive(Debug, Clone)]
pub enum RouterChange {
    /// Create or replace a router (validated with the API's options).
    Put {
        /// The router.
        config: RouterConfig,
        /// The condition on the router now stored under its name.
        expect: Expect,
    },
    /// Delete a router.
    Delete {
        /// Its bare name.
        name: String,
        /// The condition on the router now stored under that name.
        expect: Expect,
    },
}

impl RouterChange {
    /// The bare name of the router it changes.
    pub fn name(&self) -> &str {
        match self {
            RouterChange::Put { config, .. } => &config.name,
            RouterChange::Delete { name, .. } => name,
        }
    }

    /// Its expectation.
    pub fn expect(&self) -> Expect {
        match self {
            RouterChange::Put { expect, .. } | RouterChange::Delete { expect, .. } => *expect,
        }
    }

    /// Checks the expectation against the router `snapshot` holds under its name: what a host
    /// that applies changes to an engine does just before applying one, while no other change
    /// can be applied.
    ///
    /// # Errors
    ///
    /// [`CommitError::Conflict`] with the router's version in `snapshot` when it fails.
    pub fn check(&self, snapshot: &Snapshot) -> Result<(), CommitError> {
        let current = snapshot.router(self.name()).map(|r| r.compiled().version());
        if self.expect().holds(current) {
            Ok(())
        } else {
            Err(CommitError::Conflict { current })
        }
    }
}

/// A change the host made: the engine serves it from this version on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    /// The engine's version after the change (for a put, the router's config version).
    pub version: u64,
}

/// Why the host did not make a change. Nothing was changed in any case.
#[derive(Debug, Clone)]
pub enum CommitError {
    /// The expectation failed; `current` is the router's version now (`None`: it does not
    /// exist).
    Conflict {
        /// The router's version now.
        current: Option<u64>,
    },
    /// The change could not be recorded (the store failed, the host is shutting down): 503.
    /// The message is for the host's logs, not for clients.
    Unavailable(String),
    /// The engine refused the config (its validation options are stricter than the API's):
    /// 400, with every problem.
    Invalid(ConfigErrors),
}

impl std::fmt::Display for CommitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CommitError::Conflict { current: Some(v) } => {
                write!(f, "the router changed meanwhile (it is at version {v} now)")
            }
            CommitError::Conflict { current: None } => {
                f.write_str("the router does not exist (or no longer)")
            }
            CommitError::Unavailable(m) => write!(f, "the change could not be recorded: {m}"),
            CommitError::Invalid(e) => write!(f, "the engine refused the router:\n{e}"),
        }
    }
}

impl std::error::Error for CommitError {}

/// The future [`RouterHost::commit`] returns.
pub type CommitFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Committed, CommitError>> + Send + 'a>>;

/// The host of a [`ManagementApi`](crate::ManagementApi): where its changes go.
pub trait RouterHost: Send + Sync + 'static {
    /// Whether the router `name` (bare) may be created, changed or deleted through the API.
    /// `Err(reason)`: the API answers 409 `FAILED_PRECONDITION` with `reason` and changes
    /// nothing (a gateway refuses routers that a watched directory owns, say). Asked only of
    /// an authorized write, before the change is validated.
    fn may_change(&self, name: &str) -> Result<(), String> {
        let _ = name;
        Ok(())
    }

    /// Makes `change` durable (if the host persists) and live, all or nothing; resolves once
    /// the engine serves it. The expectation is checked atomically with the change.
    fn commit(&self, change: RouterChange) -> CommitFuture<'_>;

    /// The experiment readout of router `name` (bare), for
    /// `GET /router/v1/routers/{name}/experiment`: what the host booked of its traffic
    /// (assigned and served counts per arm, the sample-ratio test, rates, latencies, cost).
    /// `None` (the default): the host keeps none, and the API answers 404.
    fn experiment(&self, name: &str) -> Option<serde_json::Value> {
        let _ = name;
        None
    }
}

/// A [`RouterHost`] that applies changes straight to an engine, with no persistence: for hosts
/// that keep routers elsewhere (or nowhere) and for tests. Its commits are ready at once (no
/// I/O); they are serialized by a mutex held only while the change is checked and applied.
#[derive(Debug)]
pub struct EngineHost {
    engine: Arc<Engine>,
    writer: Mutex<()>,
}

impl EngineHost {
    /// A host over `engine`.
    pub fn new(engine: Arc<Engine>) -> EngineHost {
        EngineHost {
            engine,
            writer: Mutex::new(()),
        }
    }

    /// Checks and applies `change` now.
    ///
    /// # Errors
    ///
    /// [`CommitError::Conflict`] when the expectation fails, [`CommitError::Invalid`] when the
    /// engine refuses the config.
    pub fn apply(&self, change: RouterChange) -> Result<Committed, CommitError> {
        let _writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        change.check(&self.engine.load())?;
        let version = match change {
            RouterChange::Put { config, .. } => {
                self.engine.upsert(config).map_err(CommitError::Invalid)?
            }
            RouterChange::Delete { name, .. } => {
                self.engine.remove(&name);
                self.engine.version()
            }
        };
        Ok(Committed { version })
    }
}

impl RouterHost for EngineHost {
    fn commit(&self, change: RouterChange) -> CommitFuture<'_> {
        let result = self.apply(change);
        Box::pin(std::future::ready(result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(name: &str) -> RouterConfig {
        RouterConfig::from_json(&format!(
            r#"{{"name": "{name}", "defaultRoute": {{"route_id": "default", "variants": [
              {{"variant": {{"variant_id": "a", "model_id": "openai/gpt-4.1"}}, "weight": 1}}]}}}}"#
        ))
        .expect("valid router")
    }

    #[test]
    fn expectations_are_checked_where_the_change_applies() {
        let engine = Arc::new(Engine::new());
        let host = EngineHost::new(Arc::clone(&engine));
        let put = |expect| RouterChange::Put {
            config: config("r"),
            expect,
        };
        let v1 = host.apply(put(Expect::Absent)).expect("created").version;
        assert!(matches!(
            host.apply(put(Expect::Absent)),
            Err(CommitError::Conflict { current: Some(v) }) if v == v1
        ));
        assert!(matches!(
            host.apply(put(Expect::Version(v1 + 7))),
            Err(CommitError::Conflict { current: Some(v) }) if v == v1
        ));
        let v2 = host
            .apply(put(Expect::Version(v1)))
            .expect("updated")
            .version;
        assert!(v2 > v1);
        let delete = |expect| RouterChange::Delete {
            name: "r".into(),
            expect,
        };
        assert!(matches!(
            host.apply(delete(Expect::Version(v1))),
            Err(CommitError::Conflict { current: Some(v) }) if v == v2
        ));
        host.apply(delete(Expect::Version(v2))).expect("deleted");
        assert!(engine.load().router("r").is_none());
        assert!(host.apply(delete(Expect::Any)).is_ok());
        assert!(matches!(
            host.apply(delete(Expect::Version(v2))),
            Err(CommitError::Conflict { current: None })
        ));
    }
}
