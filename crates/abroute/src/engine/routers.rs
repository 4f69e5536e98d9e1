//! The routers of a snapshot, in shards that snapshots share.
//!
//! A change used to clone the whole map of routers, so one upsert cost time in proportion to
//! the routers already loaded (about 40 ms with 100,000). Here the routers are spread over
//! [`SHARDS`] hash tables by a hash of their name, each behind an `Arc`: a new snapshot clones
//! the array of shard pointers (256 reference counts) and only the shards its change touches
//! (about `n / 256` entries each, an `Arc` clone per entry). A lookup hashes the name once: bits
//! 32..40 of the hash pick the shard, and the shard's table uses the same hash (its low bits
//! for the bucket, its top 7 for the control byte), so the shard bits do not cluster a table.
//! docs/design.md section 5 has the choice against a persistent map.
//!
//! The names are also kept sorted, in chunks of at most [`2 · CHUNK`](CHUNK) shared the same way,
//! so that a page of a listing costs the page (and a binary search), not a sort of every name.

use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;

use super::loaded::LoadedRouter;

/// log2 of [`SHARDS`].
const SHARD_BITS: u32 = 8;

/// How many shards a snapshot's routers are spread over.
pub(crate) const SHARDS: usize = 1 << SHARD_BITS;

/// A router with the hash of its name (so that growing a table and comparing entries never
/// rehash).
type Entry = (u64, Arc<LoadedRouter>);

/// One shard: routers whose names hash to it.
#[derive(Clone, Default)]
struct Shard(HashTable<Entry>);

/// Every router of a snapshot, by name.
#[derive(Clone)]
pub(crate) struct Routers {
    shards: Box<[Arc<Shard>]>,
    len: usize,
    names: Names,
}

/// Half the most names a chunk of [`Names`] holds: a fuller chunk is split in two of this size.
const CHUNK: usize = 512;

/// Every router name, sorted, in chunks that snapshots share: a new name copies one chunk and
/// the array of chunk pointers (`n / CHUNK` of them at most).
#[derive(Clone, Default)]
struct Names {
    chunks: Vec<Arc<Vec<Arc<str>>>>,
}

impl Names {
    /// The chunk where `name` is or would go: the first whose last name is not below it, else
    /// the last chunk.
    fn chunk_for(&self, name: &str) -> usize {
        let i = self
            .chunks
            .partition_point(|c| c.last().is_none_or(|l| &**l < name));
        i.min(self.chunks.len().saturating_sub(1))
    }

    /// Adds `name`, which is not there yet.
    fn insert(&mut self, name: &str) {
        if self.chunks.is_empty() {
            self.chunks.push(Arc::new(vec![name.into()]));
            return;
        }
        let i = self.chunk_for(name);
        let chunk = Arc::make_mut(&mut self.chunks[i]);
        let at = chunk.partition_point(|n| &**n < name);
        chunk.insert(at, name.into());
        if chunk.len() > 2 * CHUNK {
            let tail = chunk.split_off(CHUNK);
            self.chunks.insert(i + 1, Arc::new(tail));
        }
    }

    /// Removes `name`, which is there.
    fn remove(&mut self, name: &str) {
        if self.chunks.is_empty() {
            return;
        }
        let i = self.chunk_for(name);
        let chunk = Arc::make_mut(&mut self.chunks[i]);
        if let Ok(at) = chunk.binary_search_by(|n| (**n).cmp(name)) {
            chunk.remove(at);
            if chunk.is_empty() {
                self.chunks.remove(i);
            }
        }
    }

    /// The names after `after` (all of them for `None`), in order.
    fn after<'a>(&'a self, after: Option<&str>) -> impl Iterator<Item = &'a str> + 'a {
        let (first, at) = match after {
            None => (0, 0),
            Some(a) => {
                let i = self
                    .chunks
                    .partition_point(|c| c.last().is_none_or(|l| &**l <= a));
                let at = self
                    .chunks
                    .get(i)
                    .map_or(0, |c| c.partition_point(|n| &**n <= a));
                (i, at)
            }
        };
        self.chunks
            .iter()
            .skip(first)
            .enumerate()
            .flat_map(move |(k, c)| c[if k == 0 { at } else { 0 }..].iter().map(|n| &**n))
    }
}

impl Default for Routers {
    fn default() -> Self {
        let empty = Arc::new(Shard::default());
        Routers {
            shards: (0..SHARDS).map(|_| Arc::clone(&empty)).collect(),
            len: 0,
            names: Names::default(),
        }
    }
}

impl std::fmt::Debug for Routers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routers").field("len", &self.len).finish()
    }
}

/// The hash of a router name.
#[inline]
fn hash(name: &str) -> u64 {
    FxBuildHasher.hash_one(name)
}

/// The shard of a name's hash.
#[inline]
fn shard_of(hash: u64) -> usize {
    (hash >> 32) as usize & (SHARDS - 1)
}

impl Routers {
    /// The router called `name`.
    #[inline]
    pub(crate) fn get(&self, name: &str) -> Option<&Arc<LoadedRouter>> {
        let h = hash(name);
        self.shards[shard_of(h)]
            .0
            .find(h, |(eh, r)| *eh == h && r.config().name == name)
            .map(|(_, r)| r)
    }

    /// How many routers there are.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Adds `router` under `name`, or replaces the one with this name. Clones its shard when
    /// another snapshot shares it.
    pub(crate) fn insert(&mut self, name: &str, router: Arc<LoadedRouter>) {
        let h = hash(name);
        let shard = Arc::make_mut(&mut self.shards[shard_of(h)]);
        match shard
            .0
            .find_mut(h, |(eh, r)| *eh == h && r.config().name == name)
        {
            Some(entry) => entry.1 = router,
            None => {
                shard.0.insert_unique(h, (h, router), |e| e.0);
                self.len += 1;
                self.names.insert(name);
            }
        }
    }

    /// Removes the router called `name`; true if it was there. Clones its shard only then.
    pub(crate) fn remove(&mut self, name: &str) -> bool {
        let h = hash(name);
        let i = shard_of(h);
        let eq = |(eh, r): &Entry| *eh == h && r.config().name == name;
        if self.shards[i].0.find(h, eq).is_none() {
            return false;
        }
        let shard = Arc::make_mut(&mut self.shards[i]);
        if let Ok(entry) = shard.0.find_entry(h, eq) {
            entry.remove();
            self.len -= 1;
            self.names.remove(name);
        }
        true
    }

    /// Removes every router.
    pub(crate) fn clear(&mut self) {
        *self = Routers::default();
    }

    /// The names after `after` (every name for `None`), sorted.
    pub(crate) fn names_after<'a>(
        &'a self,
        after: Option<&str>,
    ) -> impl Iterator<Item = &'a str> + 'a {
        self.names.after(after)
    }

    /// Every router, in no particular order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &Arc<LoadedRouter>> {
        self.shards.iter().flat_map(|s| s.0.iter().map(|(_, r)| r))
    }

    /// Replaces, in place, every router for which `change` returns a new one; true if any did.
    /// Clones only the shards with a replaced router.
    pub(crate) fn replace_where(
        &mut self,
        mut change: impl FnMut(&Arc<LoadedRouter>) -> Option<Arc<LoadedRouter>>,
    ) -> bool {
        let mut changed = false;
        for shard in self.shards.iter_mut() {
            let replaced: Vec<(u64, Arc<LoadedRouter>)> = shard
                .0
                .iter()
                .filter_map(|(h, r)| change(r).map(|new| (*h, new)))
                .collect();
            if replaced.is_empty() {
                continue;
            }
            changed = true;
            let shard = Arc::make_mut(shard);
            for (h, new) in replaced {
                let name = new.config().name.as_str();
                if let Some(entry) = shard
                    .0
                    .find_mut(h, |(eh, r)| *eh == h && r.config().name == name)
                {
                    entry.1 = new;
                }
            }
        }
        changed
    }
}
