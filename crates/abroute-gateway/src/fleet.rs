//! The replica: a gateway whose routers come from a store shared by the whole fleet
//! (PostgreSQL, `[store] url`).
//!
//! At start the replica reads the whole store ([`Fleet::start`]) and publishes it as one
//! snapshot at the store's revision; then a task follows the store's watch and hands every item
//! to the [engine writer](crate::writer) as one snapshot ([`EngineWriter::follow`]): a batch of
//! changes with `Engine::apply_carrying` at its revision, a reset with
//! `Engine::replace_all_carrying`. So every router's version is the store's revision (even on a
//! replica whose watched directory took its snapshot past it) and every replica reports the same
//! version for the same routers. A router in the store that does not validate is refused (logged with its
//! name and JSON path, counted in `abroute_config_changes_total{source="store",result="rejected"}`)
//! and the rest of the batch applies; the watched directory's routers keep their precedence.
//! After each item the replica writes its local copy (`[store] path`: the routers it applied and
//! the revision), which it serves from when the store is unreachable at its next start.
//!
//! A change of the management API ([`Fleet::commit`]) goes to the store first, as a
//! compare-and-set, and is applied like any other replica's: through the watch. The replica
//! answers once its own engine serves that revision (bounded by [`COMMIT_WAIT`]), so a client
//! reads its own writes. The API's versions are the routers' engine versions (the revision of
//! the batch that last published each); the replica maps them to the store's mod_revisions.
//! Routing never waits for the store: chats read the engine's snapshot only.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use abroute::RouterConfig;
use abroute_http::{CommitError, Committed, Expect, RouterChange};
use tokio::sync::watch;

use crate::store::{
    Expect as StoreExpect, FileStore, Revision, RouterStore, State, StoreError, WatchItem,
    WatchStatus,
};
use crate::watch::WatchedNames;
use crate::writer::{EngineWriter, Followed, WriteError};

/// How long a write of the API waits for its own engine to serve the revision it wrote.
pub const COMMIT_WAIT: Duration = Duration::from_secs(5);

/// The routers applied from the store, by name, with their mod_revisions.
type Mirror = BTreeMap<String, (RouterConfig, Revision)>;

/// A replica of the fleet: the shared store, the writer it feeds, and what it applied.
pub struct Fleet {
    store: Arc<dyn RouterStore>,
    writer: EngineWriter,
    watched: WatchedNames,
    /// The store revision the engine serves.
    applied: watch::Sender<Revision>,
    mirror: Mutex<Mirror>,
    /// The engine version each router of the mirror was published at, recorded with it: a
    /// write's expectation is mapped through this, never through an engine that may have
    /// published a batch the mirror does not hold yet.
    versions: Mutex<BTreeMap<String, u64>>,
    local: Option<Arc<FileStore>>,
    status: Mutex<Option<Arc<WatchStatus>>>,
    /// How long the store keeps a tombstone; this replica compacts every quarter of it.
    retention: Duration,
}

/// Aborts a task when dropped: the compactor stops with the follower.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// How often a replica compacts the store's tombstones, for a `retention`: every quarter of
/// it, between 250 ms and 5 minutes.
pub fn compaction_interval(retention: Duration) -> Duration {
    (retention / 4).clamp(Duration::from_millis(250), Duration::from_secs(300))
}

/// Removes the store's tombstones older than `retention`, every [`compaction_interval`], until
/// aborted. Every replica does it (it is idempotent, and a fleet has no leader); a failure (the
/// store away) is tried again at the next tick.
async fn compact_every(store: Arc<dyn RouterStore>, retention: Duration) {
    let mut tick = tokio::time::interval(compaction_interval(retention));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match store.compact(retention).await {
            Ok(horizon) => tracing::debug!(horizon = horizon.get(), "store: tombstones compacted"),
            Err(e) => tracing::debug!(error = %e, "store: cannot compact now"),
        }
    }
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet")
            .field("applied", &*self.applied.borrow())
            .finish_non_exhaustive()
    }
}

impl Fleet {
    /// Loads the whole store into the engine (through `writer`) at its revision and writes the
    /// local copy. Returns the replica and its follower, to run until the gateway stops; the
    /// follower also compacts the store's tombstones older than `retention`.
    ///
    /// # Errors
    ///
    /// When the store cannot be read (the message names it, never with a password) or the
    /// writer has stopped.
    pub async fn start(
        store: Arc<dyn RouterStore>,
        writer: EngineWriter,
        watched: WatchedNames,
        local: Option<Arc<FileStore>>,
        retention: Duration,
    ) -> Result<(Arc<Fleet>, impl Future<Output = ()> + Send + 'static), String> {
        let stored = store.load_all().await.map_err(|e| e.to_string())?;
        let fleet = Arc::new(Fleet {
            store,
            writer,
            watched,
            applied: watch::channel(Revision::ZERO).0,
            mirror: Mutex::new(Mirror::new()),
            versions: Mutex::new(BTreeMap::new()),
            local,
            status: Mutex::new(None),
            retention,
        });
        let reset = WatchItem::Reset {
            revision: stored.revision,
            routers: stored.routers,
        };
        fleet.apply(reset).await.map_err(|e| e.to_string())?;
        let follower = Arc::clone(&fleet).follow(stored.revision);
        Ok((fleet, follower))
    }

    /// The store revision the engine serves.
    pub fn revision(&self) -> Revision {
        *self.applied.borrow()
    }

    /// Whether the store's watch is connected.
    pub fn up(&self) -> bool {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_some_and(|s| s.up())
    }

    /// Follows the store's watch from `from`, until the gateway stops.
    async fn follow(self: Arc<Fleet>, from: Revision) {
        let mut watch = self.store.watch(from);
        *self.status.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(Arc::clone(&watch.status));
        let compactor = tokio::spawn(compact_every(Arc::clone(&self.store), self.retention));
        let _compactor = AbortOnDrop(compactor.abort_handle());
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                item = watch.items.recv() => {
                    let Some(item) = item else { return };
                    let revision = item.revision();
                    if matches!(item, WatchItem::Reset { .. }) {
                        // The history after this replica's cursor was compacted.
                        metrics::counter!("abroute_store_resets_total").increment(1);
                    }
                    if let Err(e) = self.apply(item).await {
                        tracing::error!(error = %e, "store: cannot apply a change; stopping the follower");
                        return;
                    }
                    // Commit (by the store's clock, at the read) to served here.
                    for committed in watch.status.take_committed(revision) {
                        metrics::histogram!("abroute_store_propagation_seconds")
                            .record(committed.elapsed().as_secs_f64());
                    }
                }
                _ = tick.tick() => {}
            }
            metrics::gauge!("abroute_store_up").set(f64::from(u8::from(watch.status.up())));
        }
    }

    /// Applies one item through the writer, then records it (mirror, local copy, metrics).
    async fn apply(&self, item: WatchItem) -> Result<(), WriteError> {
        let started = Instant::now();
        let revision = item.revision();
        let reset = matches!(item, WatchItem::Reset { .. });
        let keep = self
            .watched
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Followed {
            version,
            applied,
            rejected,
            routers,
        } = self.writer.follow(item, keep).await?;
        for (name, errors) in &rejected {
            for e in errors.errors() {
                tracing::warn!(router = %name, path = %e.path, error = %e.kind, revision = revision.get(), "store: router refused; the one served keeps serving");
            }
        }
        metrics::counter!("abroute_config_changes_total", "source" => "store", "result" => "rejected")
            .increment(rejected.len() as u64);
        metrics::counter!("abroute_config_changes_total", "source" => "store", "result" => "applied")
            .increment(applied as u64);
        let copy = {
            let mut mirror = self.mirror.lock().unwrap_or_else(PoisonError::into_inner);
            if reset {
                mirror.clear();
            }
            for (name, router) in routers {
                match router {
                    Some(r) => mirror.insert(name, r),
                    None => mirror.remove(&name),
                };
            }
            let mut versions = self.versions.lock().unwrap_or_else(PoisonError::into_inner);
            versions.clear();
            for name in mirror.keys() {
                if let Some(v) = self.served_version(name) {
                    versions.insert(name.clone(), v);
                }
            }
            mirror.clone()
        };
        self.applied.send_replace(revision);
        metrics::gauge!("abroute_store_revision").set(revision.get() as f64);
        metrics::histogram!("abroute_store_apply_seconds").record(started.elapsed().as_secs_f64());
        tracing::info!(
            revision = revision.get(),
            version,
            applied,
            rejected = rejected.len(),
            reset,
            "store: applied"
        );
        if let Some(local) = &self.local {
            let state = State {
                revision,
                routers: copy,
            };
            if let Err(e) = local.replace(state).await {
                tracing::warn!(error = %e, "store: cannot write the local copy");
            }
        }
        Ok(())
    }

    /// The store's expectation for the API's: `Version(v)` is the router's engine version,
    /// mapped to its mod_revision; `Err` with the engine's current version when the API read
    /// a router the engine no longer serves at `v`.
    ///
    /// The API read `v` from the engine, which publishes a batch a moment before this replica
    /// records it: when the engine serves `v` and the record does not know it yet, this waits
    /// (at most [`COMMIT_WAIT`]) for the record, rather than answering a conflict the API would
    /// spend a try on.
    async fn expectation(&self, name: &str, expect: Expect) -> Result<StoreExpect, CommitError> {
        let v = match expect {
            Expect::Any => return Ok(StoreExpect::Any),
            Expect::Absent => return Ok(StoreExpect::Absent),
            Expect::Version(v) => v,
        };
        let mut applied = self.applied.subscribe();
        let deadline = tokio::time::Instant::now() + COMMIT_WAIT;
        loop {
            {
                let mirror = self.mirror.lock().unwrap_or_else(PoisonError::into_inner);
                let versions = self.versions.lock().unwrap_or_else(PoisonError::into_inner);
                if let (Some((_, m)), Some(ev)) = (mirror.get(name), versions.get(name))
                    && *ev == v
                {
                    return Ok(StoreExpect::At(*m));
                }
            }
            let served = self.served_version(name);
            let recording = served == Some(v);
            if !recording
                || tokio::time::timeout_at(deadline, applied.changed())
                    .await
                    .is_err()
            {
                return Err(CommitError::Conflict { current: served });
            }
        }
    }

    /// A change of the management API: validated with the engine's options, written to the
    /// store as a compare-and-set, and answered once this replica serves it (or after
    /// [`COMMIT_WAIT`]).
    ///
    /// # Errors
    ///
    /// [`CommitError::Invalid`] for a router the engine would refuse, [`CommitError::Conflict`]
    /// when the expectation fails (with the router's engine version once this replica serves
    /// the store's), [`CommitError::Unavailable`] when the store is unreachable.
    pub async fn commit(&self, change: RouterChange) -> Result<Committed, CommitError> {
        let written = match &change {
            RouterChange::Put { config, expect } => {
                let engine = Arc::clone(self.writer.engine());
                let checked = config.clone();
                let valid = tokio::task::spawn_blocking(move || {
                    checked.compile_with(engine.options()).map(|_| ())
                })
                .await;
                match valid {
                    Ok(Ok(())) => {}
                    Ok(Err(errors)) => return Err(CommitError::Invalid(errors)),
                    Err(_) => return Err(CommitError::Unavailable("validation failed".into())),
                }
                let expect = self.expectation(&config.name, *expect).await?;
                self.store.put(config, expect).await
            }
            RouterChange::Delete { name, expect } => {
                let expect = self.expectation(name, *expect).await?;
                self.store.delete(name, expect).await
            }
        };
        let name = match &change {
            RouterChange::Put { config, .. } => config.name.as_str(),
            RouterChange::Delete { name, .. } => name.as_str(),
        };
        match written {
            Ok(revision) => {
                self.served(revision).await;
                // A put is answered with the version the router is served at (its next
                // expectation); a delete with the revision.
                let served = self.served_version(name);
                Ok(Committed {
                    version: served.unwrap_or(revision.get()),
                })
            }
            Err(StoreError::Conflict(c)) => {
                // Answer in the engine's versions, once it serves what the store holds.
                if let Some(current) = c.current {
                    self.served(current).await;
                }
                let served = self.served_version(name);
                Err(CommitError::Conflict {
                    current: c.current.and(served),
                })
            }
            Err(StoreError::Unavailable(m)) => {
                tracing::warn!(router = name, error = %m, "management write refused: the router store is unreachable or failed");
                Err(CommitError::Unavailable(format!(
                    "the router store is unreachable or failed: {m}"
                )))
            }
        }
    }

    /// The engine version router `name` is served at.
    fn served_version(&self, name: &str) -> Option<u64> {
        self.writer
            .engine()
            .load()
            .router(name)
            .map(|r| r.compiled().version())
    }

    /// Waits (up to [`COMMIT_WAIT`]) until the engine serves `revision`.
    async fn served(&self, revision: Revision) {
        let mut applied = self.applied.subscribe();
        let waited = tokio::time::timeout(COMMIT_WAIT, applied.wait_for(|r| *r >= revision)).await;
        if waited.is_err() {
            tracing::warn!(
                revision = revision.get(),
                "store: this replica does not serve its own write yet"
            );
        }
    }
}
