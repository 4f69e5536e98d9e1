//! The revisioned state of a store that lives in this process (memory, the state file): the
//! routers, the store's revision, a bounded history of changes, and watchers of it.
//!
//! Every change to such a store is made by this process, so its watch yields exactly the changes
//! made through the store itself (the gateway's own writes). The history kept for watchers is the
//! last [`HISTORY`] changes, and the changes since the store was opened: a watcher whose cursor is
//! older gets a [`WatchItem::Reset`], as after a compaction of the PostgreSQL store.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use abroute::RouterConfig;
use tokio::sync::{Mutex, MutexGuard, mpsc, watch};

use super::Stored;
use super::revision::{
    Conflict, Event, Expect, Revision, StoredRouter, Watch, WatchItem, WatchStatus,
};

/// How many changes a local store keeps for watchers.
pub const HISTORY: usize = 1024;

/// The routers and the revision of a local store, with its history.
#[derive(Debug, Clone, Default)]
pub(super) struct LocalState {
    /// Every router with its mod_revision.
    pub(super) routers: BTreeMap<String, (RouterConfig, Revision)>,
    /// The store's revision.
    pub(super) revision: Revision,
    /// The last changes, by ascending revision.
    history: VecDeque<Event>,
    /// The revision the history starts after: a cursor below it needs a reset.
    horizon: Revision,
}

impl LocalState {
    /// A state at `revision` holding `routers`, with no history before it.
    pub(super) fn new(
        routers: BTreeMap<String, (RouterConfig, Revision)>,
        revision: Revision,
    ) -> LocalState {
        LocalState {
            routers,
            revision,
            history: VecDeque::new(),
            horizon: revision,
        }
    }

    /// Everything, as `load_all` reads it.
    pub(super) fn stored(&self) -> Stored {
        Stored {
            revision: self.revision,
            routers: self
                .routers
                .iter()
                .map(|(name, (config, mod_revision))| stored_router(name, config, *mod_revision))
                .collect(),
        }
    }

    /// Records a put (`Some`) or a delete (`None`) of `name` if `expect` holds; the revision.
    pub(super) fn write(
        &mut self,
        name: &str,
        config: Option<&RouterConfig>,
        expect: Expect,
    ) -> Result<Revision, Conflict> {
        let current = self.routers.get(name).map(|(_, r)| *r);
        if !expect.admits(current) || (config.is_none() && current.is_none()) {
            return Err(Conflict { current });
        }
        let revision = Revision(self.revision.0 + 1);
        self.revision = revision;
        let event = match config {
            Some(config) => {
                self.routers
                    .insert(name.to_owned(), (config.clone(), revision));
                Event::Put {
                    name: name.to_owned(),
                    config: to_value(config),
                    mod_revision: revision,
                }
            }
            None => {
                self.routers.remove(name);
                Event::Delete {
                    name: name.to_owned(),
                    mod_revision: revision,
                }
            }
        };
        self.history.push_back(event);
        while self.history.len() > HISTORY {
            if let Some(dropped) = self.history.pop_front() {
                self.horizon = dropped.mod_revision();
            }
        }
        Ok(revision)
    }

    /// Forgets the history: a watcher behind the current revision gets a reset.
    pub(super) fn compact(&mut self) -> Revision {
        self.history.clear();
        self.horizon = self.revision;
        self.horizon
    }

    /// What a reader at `cursor` needs: `None` when it is up to date.
    fn since(&self, cursor: Revision) -> Option<WatchItem> {
        if cursor == self.revision {
            return None;
        }
        if cursor < self.horizon || cursor > self.revision {
            let Stored { revision, routers } = self.stored();
            return Some(WatchItem::Reset { revision, routers });
        }
        // Only the last change of each router, by ascending revision.
        let mut last: BTreeMap<&str, &Event> = BTreeMap::new();
        for e in self.history.iter().filter(|e| e.mod_revision() > cursor) {
            last.insert(e.name(), e);
        }
        let mut events: Vec<Event> = last.into_values().cloned().collect();
        events.sort_by_key(Event::mod_revision);
        Some(WatchItem::Changes {
            revision: self.revision,
            events,
        })
    }
}

/// A router as stored, its config as JSON.
fn stored_router(name: &str, config: &RouterConfig, mod_revision: Revision) -> StoredRouter {
    StoredRouter {
        name: name.to_owned(),
        config: to_value(config),
        mod_revision,
    }
}

fn to_value(config: &RouterConfig) -> serde_json::Value {
    serde_json::to_value(config).unwrap_or_default()
}

/// A [`LocalState`] shared with its watchers, and the signal that wakes them.
#[derive(Debug)]
pub(super) struct Shared {
    state: Mutex<LocalState>,
    wake: watch::Sender<Revision>,
}

impl Shared {
    /// Shares `state`.
    pub(super) fn new(state: LocalState) -> Arc<Shared> {
        let (wake, _) = watch::channel(state.revision);
        Arc::new(Shared {
            state: Mutex::new(state),
            wake,
        })
    }

    /// The state, locked. Call [`Shared::changed`] after a write.
    pub(super) async fn lock(&self) -> MutexGuard<'_, LocalState> {
        self.state.lock().await
    }

    /// Wakes the watchers: the store is at `revision` now.
    pub(super) fn changed(&self, revision: Revision) {
        self.wake.send_replace(revision);
    }

    /// A watcher of the changes after `from` (a task of its own, until its receiver is dropped).
    pub(super) fn watch(self: &Arc<Shared>, from: Revision) -> Watch {
        let (tx, items) = mpsc::channel(64);
        let status = Arc::new(WatchStatus::new(true, from));
        let shared = Arc::clone(self);
        let seen = Arc::clone(&status);
        let mut wake = self.wake.subscribe();
        tokio::spawn(async move {
            let mut cursor = from;
            loop {
                let item = shared.state.lock().await.since(cursor);
                if let Some(item) = item {
                    cursor = item.revision();
                    if tx.send(item).await.is_err() {
                        return;
                    }
                    seen.set_revision(cursor);
                    continue;
                }
                tokio::select! {
                    changed = wake.changed() => if changed.is_err() { return },
                    () = tx.closed() => return,
                }
            }
        });
        Watch { items, status }
    }
}
