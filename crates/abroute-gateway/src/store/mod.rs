//! The router store: where the routers created through the management API are kept, behind
//! one async interface shaped like etcd's.
//!
//! [`RouterStore`] is what the gateway asks of a store: every router with the store's
//! [`Revision`] ([`load_all`](RouterStore::load_all)); each change made through the API
//! ([`put`](RouterStore::put), [`delete`](RouterStore::delete)) as a compare-and-set on the
//! router's mod_revision ([`Expect`]), failing with a [`StoreError::Conflict`] naming the current
//! one, recorded *before* the engine serves it; and [`watch`](RouterStore::watch) from a revision:
//! ordered batches of changes, or a reset when the history is compacted. Its methods return boxed
//! futures, so a store is used as `Arc<dyn RouterStore>` and a backend may do real I/O without
//! blocking a thread. Three backends:
//!
//! - [`FileStore`] (`file`): the JSON state file of `[store] path` (its revision and each
//!   router's mod_revision in it), rewritten atomically on every change, its blocking file I/O
//!   on tokio's blocking pool;
//! - [`MemoryStore`] (`memory`): the state when no path is configured; nothing survives a
//!   restart;
//! - [`PostgresStore`](postgres::PostgresStore) (`postgres`): the fleet's, shared by every
//!   replica ([`RouterStore::shared`]); `docs/fleet.md` is its long form.
//!
//! The two local stores share their revisioned state (`local`): their watch yields the changes
//! made through the store itself, from a bounded history (older cursors get a reset). A store
//! must be safe to call concurrently: each serializes its own writes.
//!
//! An etcd backend maps one to one: `load_all` is a range read of the prefix (its header
//! revision), `put` and `delete` a transaction comparing the key's `mod_revision` (or its
//! absence) then putting or deleting, and `watch` etcd's watch from a revision, `ErrCompacted`
//! becoming the reset (the table is in [`postgres`]'s doc).

mod file;
mod local;
mod memory;
pub mod postgres;
pub mod revision;

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use abroute::{ConfigErrors, RouterConfig};

pub use file::{
    FileStore, STATE_FORMAT, State, StoreOpenError, parse_state, parse_state_file, render_state,
    write_atomically,
};
pub use local::HISTORY;
pub use memory::MemoryStore;
pub use revision::{
    COMMITTED_KEPT, Conflict, Event, Expect, Revision, StoredRouter, Watch, WatchItem, WatchStatus,
};

/// The future a [`RouterStore`] method returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Everything a store holds at one revision, as [`RouterStore::load_all`] reads it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stored {
    /// The store's revision.
    pub revision: Revision,
    /// Every router with its mod_revision, in name order, as stored (the caller validates).
    pub routers: Vec<StoredRouter>,
}

impl Stored {
    /// The routers as configs, in name order.
    ///
    /// # Errors
    ///
    /// The first router that does not parse, with its name.
    pub fn configs(&self) -> Result<Vec<RouterConfig>, (String, ConfigErrors)> {
        self.routers
            .iter()
            .map(|r| RouterConfig::from_value(&r.config).map_err(|e| (r.name.clone(), e)))
            .collect()
    }
}

/// Persistence for the routers of the management API, shaped like etcd's API: one store-wide
/// [`Revision`], compare-and-set writes, and a watch from a revision.
pub trait RouterStore: Send + Sync + 'static {
    /// Every stored router and the store's revision, read at once.
    ///
    /// # Errors
    ///
    /// When the store cannot be read.
    fn load_all(&self) -> StoreFuture<'_, Stored>;

    /// Records `router` (created or updated) if `expect` holds; the revision of the change.
    /// Resolves once the change is durable.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] when `expect` does not hold, [`StoreError::Unavailable`] when it
    /// could not be recorded; the store is then as it was.
    fn put<'a>(&'a self, router: &'a RouterConfig, expect: Expect) -> StoreFuture<'a, Revision>;

    /// Deletes the router `name` (bare) if it exists and `expect` holds; the revision of the
    /// change.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] (`current: None` when there is no such router) or
    /// [`StoreError::Unavailable`]; the store is then as it was.
    fn delete<'a>(&'a self, name: &'a str, expect: Expect) -> StoreFuture<'a, Revision>;

    /// The changes after `from`, in revision order, each once, or a reset when the history
    /// they need is gone; runs until the [`Watch`]'s receiver is dropped. The local stores yield
    /// their own changes (every change comes through this process).
    fn watch(&self, from: Revision) -> Watch;

    /// Removes the tombstones of routers deleted more than `retention` ago (etcd's `Compact`);
    /// the compaction horizon: a watcher whose cursor is below it gets a reset. The local
    /// stores keep a bounded history of their own and do nothing here.
    ///
    /// # Errors
    ///
    /// [`StoreError::Unavailable`] when the store cannot be written.
    fn compact(&self, retention: Duration) -> StoreFuture<'_, Revision> {
        let _ = retention;
        Box::pin(async { Ok(Revision::ZERO) })
    }

    /// Whether other processes write this store too (a fleet's): the engine then follows the
    /// store's watch, and its versions are the store's revisions.
    fn shared(&self) -> bool {
        false
    }
}

/// Why a store call failed. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The write's expectation did not hold: what the store holds under that name.
    Conflict(Conflict),
    /// The store could not be read or written (the disk, a connection). The message is for
    /// the gateway's logs: it may name paths or hosts (never a password), so clients get a
    /// generic 503.
    Unavailable(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Conflict(c) => write!(f, "router store: conflict: {c}"),
            StoreError::Unavailable(m) => write!(f, "router store: {m}"),
        }
    }
}

impl std::error::Error for StoreError {}
