//! The router store: where the routers created through the management API are kept, behind
//! one async interface.
//!
//! [`RouterStore`] is what the gateway asks of a store: every router at start
//! ([`load_all`](RouterStore::load_all)), and each change made through the API
//! ([`put`](RouterStore::put), [`delete`](RouterStore::delete)), recorded *before* the engine
//! serves it, so that what the API answered 200 survives a restart. Its methods return boxed
//! futures, so a store is used as `Arc<dyn RouterStore>` and a backend may do real I/O (a
//! database round trip) without blocking a thread. Two backends:
//!
//! - [`FileStore`] (`file`): the JSON state file of `[store] path`, rewritten atomically on
//!   every change, its blocking file I/O on tokio's blocking pool;
//! - [`MemoryStore`] (`memory`): the state when no path is configured; nothing survives a
//!   restart.
//!
//! The engine writer ([`crate::writer`]) calls `put` and `delete` for the management API, one
//! change at a time, between checking the change's expectation and applying it to the engine.
//! (Until the adapter's host-based management API is merged, the API still calls them itself,
//! through a temporary blocking shim in `server`.) A store must be safe to call concurrently all
//! the same: each serializes its own writes.
//!
//! # How the fleet store (issue 13) extends it
//!
//! The interface is shaped after etcd's so that a shared store is an extension, not a rewrite:
//!
//! - **Revision.** [`Stored`] is a struct so that it gains the store-wide `revision` (and each
//!   router its `mod_revision`) without a change to the callers that read `routers`; `put` and
//!   `delete` then resolve to the revision they wrote at instead of `()`. The file store keeps
//!   its revision in the state file (a new `abroute_state` format, read beside format 1).
//! - **Compare-and-set.** `put` and `delete` gain an expectation (absent, at a revision, any)
//!   and [`StoreError`] a `Conflict` naming the current revision. The writer already holds the
//!   API's [`Expect`](abroute_http::Expect) at the point where it calls the store (it checks it
//!   against the engine today), so only the writer's commit changes: the check moves from the
//!   engine into the store's transaction.
//! - **Watch.** A `watch(from_revision)` method giving ordered batches of changes, or a reset
//!   when the history it needs is compacted, with a default for the backends that have no other
//!   writer (file and memory: every change comes through this process, so the watch never
//!   yields). The engine writer gains a second input that applies each batch with
//!   `Engine::apply` and a reset with `Engine::replace_all`.
//! - **Backends.** PostgreSQL is a third implementation beside these two. An etcd backend maps
//!   one to one: `load_all` is a range read of the prefix (its header revision), `put` and
//!   `delete` a transaction comparing the key's `mod_revision` (or its absence) then putting or
//!   deleting, and `watch` etcd's watch from a revision, `ErrCompacted` becoming the reset.

mod file;
mod memory;
pub mod postgres;
pub mod revision;

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use abroute::RouterConfig;

pub use file::{
    FileStore, STATE_FORMAT, StoreOpenError, parse_state, render_state, write_atomically,
};
pub use memory::MemoryStore;

/// The future a [`RouterStore`] method returns.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// Everything a store holds, as [`RouterStore::load_all`] reads it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stored {
    /// Every router, in name order.
    pub routers: Vec<RouterConfig>,
}

/// Persistence for the routers of the management API.
pub trait RouterStore: Send + Sync + 'static {
    /// Every stored router, for the start.
    ///
    /// # Errors
    ///
    /// When the store cannot be read.
    fn load_all(&self) -> StoreFuture<'_, Stored>;

    /// Records `router` (created or updated), replacing any with the same name. Resolves once
    /// the change is durable.
    ///
    /// # Errors
    ///
    /// When it could not be recorded; the store is then as it was.
    fn put<'a>(&'a self, router: &'a RouterConfig) -> StoreFuture<'a, ()>;

    /// Deletes the router `name` (bare). Deleting a router that is not stored is not an error.
    ///
    /// # Errors
    ///
    /// When the deletion could not be recorded; the store is then as it was.
    fn delete<'a>(&'a self, name: &'a str) -> StoreFuture<'a, ()>;
}

/// Why a store call failed. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The store could not be read or written (the disk, a connection). The message is for
    /// the gateway's logs: it may name paths or hosts, so clients get a generic 503.
    Unavailable(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Unavailable(m) => write!(f, "router store: {m}"),
        }
    }
}

impl std::error::Error for StoreError {}
