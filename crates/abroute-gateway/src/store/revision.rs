//! The revisioned vocabulary of a router store, shaped like etcd's API.
//!
//! A store has one [`Revision`] for all its routers: a counter that grows by one with every
//! change that commits, and never goes back. Each stored router carries the revision of its last
//! change ([`StoredRouter::mod_revision`], etcd's `kv.mod_revision`). A write names what it
//! expects to find ([`Expect`]: anything, nothing, or the router at a given revision) and fails
//! with a [`Conflict`] naming what is there instead, so a read-modify-write never loses another
//! writer's change. A watcher reads [`WatchItem`]s: ordered batches of [`Event`]s, each batch
//! tagged with the revision it brings the reader to, or a [`WatchItem::Reset`] with the whole
//! state when the history the watcher needs is gone (etcd's `ErrCompacted`).
//!
//! These types hold router configs as JSON [`Value`]s: a store keeps what was written, and the
//! caller validates it when it applies it (a row written by another tool may not be a router).

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use tokio::sync::mpsc;

use serde_json::Value;

/// A store-wide revision: the number of changes committed so far. Only grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Revision(pub u64);

impl Revision {
    /// The revision of an empty store that was never written.
    pub const ZERO: Revision = Revision(0);

    /// The number.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a write expects to find under the router's name (compare-and-set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Anything: the write is unconditional (a delete still needs the router to exist).
    Any,
    /// No router by this name (a create).
    Absent,
    /// The router, last changed at exactly this revision (a read-modify-write, an `etag`).
    At(Revision),
}

impl Expect {
    /// Whether a router whose current mod_revision is `current` (`None`: absent) meets this.
    pub fn admits(self, current: Option<Revision>) -> bool {
        match self {
            Expect::Any => true,
            Expect::Absent => current.is_none(),
            Expect::At(r) => current == Some(r),
        }
    }
}

/// A write whose [`Expect`] did not hold: what the store holds under that name now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Conflict {
    /// The router's mod_revision now; `None` when there is no such router.
    pub current: Option<Revision>,
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.current {
            Some(r) => write!(f, "the router was last changed at revision {r}"),
            None => f.write_str("there is no router by that name"),
        }
    }
}

impl std::error::Error for Conflict {}

/// A router as stored: its name, its config as written, and the revision of its last change.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRouter {
    /// The router's name (the store's key).
    pub name: String,
    /// The config JSON as written; the caller validates it.
    pub config: Value,
    /// The revision at which it was last written.
    pub mod_revision: Revision,
}

/// One change, as a watcher sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The router was created or replaced.
    Put {
        /// The router's name.
        name: String,
        /// Its config JSON as written.
        config: Value,
        /// The revision of this change.
        mod_revision: Revision,
    },
    /// The router was deleted.
    Delete {
        /// The router's name.
        name: String,
        /// The revision of this change.
        mod_revision: Revision,
    },
}

impl Event {
    /// The router's name.
    pub fn name(&self) -> &str {
        match self {
            Event::Put { name, .. } | Event::Delete { name, .. } => name,
        }
    }

    /// The revision of this change.
    pub fn mod_revision(&self) -> Revision {
        match self {
            Event::Put { mod_revision, .. } | Event::Delete { mod_revision, .. } => *mod_revision,
        }
    }
}

/// What a watcher hands on: changes since its cursor, or the whole state.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchItem {
    /// Every change after the reader's cursor up to `revision`, in revision order. Only the last
    /// change of each router is in it (etcd's watch replays every revision; a store that keeps
    /// one row per router cannot, and a reader that applies state needs only the last): applied
    /// in order they bring the reader's state to the store's at `revision`.
    Changes {
        /// The revision the reader is at once these are applied.
        revision: Revision,
        /// The changes, by ascending mod_revision. Never empty from a watcher; a one-off read
        /// (`changes_since`) gives an empty list when nothing changed.
        events: Vec<Event>,
    },
    /// The history after the reader's cursor was compacted (or the cursor is ahead of the
    /// store): here is the whole state at `revision`, to replace everything the reader holds.
    Reset {
        /// The revision of this state.
        revision: Revision,
        /// Every router, by name.
        routers: Vec<StoredRouter>,
    },
}

impl WatchItem {
    /// The revision the reader is at once this is applied.
    pub fn revision(&self) -> Revision {
        match self {
            WatchItem::Changes { revision, .. } | WatchItem::Reset { revision, .. } => *revision,
        }
    }
}

/// A running watcher: its items, and its status for metrics.
#[derive(Debug)]
pub struct Watch {
    /// Changes and resets, in revision order. Dropping it stops the watcher.
    pub items: mpsc::Receiver<WatchItem>,
    /// Whether the watcher is connected, and the revision it has read up to.
    pub status: Arc<WatchStatus>,
}

/// What a watcher reports about itself (`abroute_store_up`, `abroute_store_revision`), and when
/// the changes it handed on were committed (`abroute_store_propagation_seconds`).
#[derive(Debug)]
pub struct WatchStatus {
    up: AtomicBool,
    revision: AtomicU64,
    /// The commit time of each change handed on and not yet taken, in revision order, at most
    /// [`COMMITTED_KEPT`].
    committed: Mutex<VecDeque<(Revision, Instant)>>,
}

/// How many commit times a [`WatchStatus`] keeps for its reader (the oldest go first).
pub const COMMITTED_KEPT: usize = 1024;

impl WatchStatus {
    /// A status, up or not, at `revision`.
    pub(crate) fn new(up: bool, revision: Revision) -> WatchStatus {
        WatchStatus {
            up: AtomicBool::new(up),
            revision: AtomicU64::new(revision.0),
            committed: Mutex::new(VecDeque::new()),
        }
    }

    /// Records that the change of `revision`, about to be handed on, was committed at `at`
    /// (this process's clock).
    pub(crate) fn note_committed(&self, revision: Revision, at: Instant) {
        let mut committed = self
            .committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if committed.len() == COMMITTED_KEPT {
            committed.pop_front();
        }
        committed.push_back((revision, at));
    }

    /// The commit times of the changes up to `revision` (the reader applied them), taken out.
    /// Empty for a store that records none (the local stores).
    pub fn take_committed(&self, revision: Revision) -> Vec<Instant> {
        let mut committed = self
            .committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let upto = committed.partition_point(|(r, _)| *r <= revision);
        committed.drain(..upto).map(|(_, at)| at).collect()
    }

    /// Records whether the watcher is up; whether it was.
    pub(crate) fn set_up(&self, up: bool) -> bool {
        self.up.swap(up, Ordering::Relaxed)
    }

    /// Records the revision handed on.
    pub(crate) fn set_revision(&self, revision: Revision) {
        self.revision.store(revision.0, Ordering::Relaxed);
    }

    /// Whether the watcher's connection is open and its last catch-up succeeded.
    pub fn up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// The revision the watcher has handed on everything up to.
    pub fn revision(&self) -> Revision {
        Revision(self.revision.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations() {
        let at = |r| Some(Revision(r));
        assert!(Expect::Any.admits(None) && Expect::Any.admits(at(3)));
        assert!(Expect::Absent.admits(None) && !Expect::Absent.admits(at(3)));
        assert!(Expect::At(Revision(3)).admits(at(3)));
        assert!(!Expect::At(Revision(3)).admits(at(4)) && !Expect::At(Revision(3)).admits(None));
        assert_eq!(
            Conflict { current: at(7) }.to_string(),
            "the router was last changed at revision 7"
        );
    }
}
